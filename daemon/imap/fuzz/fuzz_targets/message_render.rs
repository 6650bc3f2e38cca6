//! Arbitrary messages through ENVELOPE, BODY/BODYSTRUCTURE, sections, BINARY, SEARCH and SORT:
//! never panics, and the structures are well-formed IMAP data (balanced lists of NIL,
//! numbers, quoted strings and literals).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imap::command::{
    parse_command, CommandBody, ParseOptions, Section, SectionText, SortCriterion, SortKey,
};
use postern_imap::message::{partial, Message};
use postern_imap::search::{compare, matches, sort_key, MessageContext};

/// Checks that `s` is exactly one parenthesised IMAP list.
fn well_formed(s: &[u8]) -> bool {
    let mut i = 0;
    let mut depth = 0usize;
    let mut seen_list = false;
    while i < s.len() {
        match s[i] {
            b'(' => {
                depth += 1;
                seen_list = true;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
                i += 1;
                if depth == 0 && i != s.len() {
                    return false;
                }
            }
            b' ' => i += 1,
            b'"' => {
                i += 1;
                loop {
                    match s.get(i) {
                        None | Some(b'\r') | Some(b'\n') => return false,
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) if c >= 0x80 || c == 0 => return false,
                        _ => i += 1,
                    }
                }
            }
            b'{' => {
                let Some(close) = s[i..].iter().position(|&c| c == b'}') else {
                    return false;
                };
                let Ok(n) = std::str::from_utf8(&s[i + 1..i + close])
                    .unwrap_or("x")
                    .parse::<usize>()
                else {
                    return false;
                };
                i += close + 1;
                if s.get(i..i + 2) != Some(b"\r\n") {
                    return false;
                }
                i += 2 + n;
                if i > s.len() {
                    return false;
                }
            }
            b'N' if s[i..].starts_with(b"NIL") => i += 3,
            c if c.is_ascii_digit() => i += 1,
            _ => return false,
        }
    }
    depth == 0 && seen_list
}

/// One program with every string and date key, so that the message is decoded once per
/// input; for typical inputs nothing matches and every key is evaluated.
const PROGRAM: &str = "OR OR OR TEXT zq BODY \"\u{e9}q\" OR SUBJECT req FROM xq \
    OR OR HEADER Content-Type multipartq TO @q OR SENTON 1-Jan-2000 (CC \"\" BCC bq)";

fuzz_target!(|data: &[u8]| {
    let m = Message::parse(data);
    let env = m.envelope();
    assert!(well_formed(&env), "{}", String::from_utf8_lossy(&env));
    for ext in [false, true] {
        let bs = m.body_structure(ext);
        assert!(well_formed(&bs), "{}", String::from_utf8_lossy(&bs));
    }
    let paths: [&[u32]; 6] = [&[], &[1], &[2], &[1, 1], &[1, 2, 1], &[3, 1, 1, 1]];
    for path in paths {
        for text in [
            None,
            Some(SectionText::Header),
            Some(SectionText::Text),
            Some(SectionText::Mime),
            Some(SectionText::HeaderFields(vec![
                "From".into(),
                "Subject".into(),
            ])),
            Some(SectionText::HeaderFieldsNot(vec!["To".into()])),
        ] {
            if path.is_empty() && text == Some(SectionText::Mime) {
                continue;
            }
            let s = m.section(&Section {
                part: path.to_vec(),
                text,
            });
            let origin = data.len() as u32 / 3;
            let p = partial(&s, Some((origin, 7)));
            assert!(p.len() <= 7);
        }
        if let Ok(b) = m.binary(path) {
            assert_eq!(m.binary_size(path), Ok(b.len()));
        }
    }
    let flags = vec!["\\Seen".to_string()];
    let ctx = MessageContext {
        seq: 1,
        uid: 1,
        flags: &flags,
        recent: false,
        modseq: 1,
        internal_date: 0,
        size: data.len() as u64,
        max_seq: 1,
        max_uid: 1,
        saved_seqs: &[],
        saved_uids: &[],
    };
    let cmd = format!("a SEARCH {PROGRAM}\r\n");
    let c = parse_command(cmd.as_bytes(), ParseOptions::default()).expect("program parses");
    if let CommandBody::Search { criteria, .. } = c.body {
        let summary = postern_imap::search::HeaderSummary::new(data);
        let read = matches(&criteria, &ctx, None, || Some(data.to_vec()));
        let cached = matches(&criteria, &ctx, Some(&summary), || Some(data.to_vec()));
        assert_eq!(read, cached, "the header summary disagrees with the message");
    }
    let crit: Vec<SortCriterion> = [
        SortKey::Arrival,
        SortKey::Cc,
        SortKey::Date,
        SortKey::From,
        SortKey::Size,
        SortKey::Subject,
        SortKey::To,
        SortKey::DisplayFrom,
        SortKey::DisplayTo,
    ]
    .into_iter()
    .map(|key| SortCriterion {
        reverse: false,
        key,
    })
    .collect();
    let a = sort_key(&crit, &postern_imap::search::HeaderSummary::new(data), 0, data.len() as u64, 1);
    let mut b = a.clone();
    b.seq = 2;
    assert_eq!(compare(&crit, &a, &b), std::cmp::Ordering::Less);
});
