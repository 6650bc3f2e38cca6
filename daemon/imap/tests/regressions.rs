//! Inputs the fuzz targets found, kept as regression tests: rendering and searching them
//! must not panic (tests/regressions/*).

use std::path::Path;

use postern_imap::command::{Section, SectionText};
use postern_imap::message::Message;

#[test]
fn fuzz_findings_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("regressions dir") {
        let raw = std::fs::read(e.expect("entry").path()).expect("read");
        let m = Message::parse(&raw);
        let _ = m.envelope();
        let _ = m.body_structure(true);
        for part in [vec![], vec![1], vec![2], vec![3, 1]] {
            let _ = m.section(&Section {
                part: part.clone(),
                text: if part.is_empty() {
                    Some(SectionText::Text)
                } else {
                    None
                },
            });
            let _ = m.binary(&part);
        }
        n += 1;
    }
    assert!(n >= 1);
}
