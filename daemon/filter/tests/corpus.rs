//! Precision and recall on the generated corpus (tests/fixtures/spam-corpus, written by its
//! generate.py with a fixed seed): train on two thirds of each class, classify the held-out
//! third, print the numbers and hold them above floors.
//!
//! `cargo test -p postern-filter --test corpus -- --nocapture` shows the numbers.

use std::path::PathBuf;

use postern_filter::classify::{classify, Settings};
use postern_filter::db::{message_digest, Class, Settings as DbSettings, TokenDb};
use postern_filter::tokenize::{tokenize, Limits};

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/spam-corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("From corpus@generated ") {
            if let Some(m) = current.take() {
                out.push(m);
            }
            current = Some(String::new());
            continue;
        }
        let Some(m) = current.as_mut() else { continue };
        // mboxrd: one '>' less before "From ".
        let line = if line.trim_start_matches('>').starts_with("From ") && line.starts_with('>') {
            &line[1..]
        } else {
            line
        };
        m.push_str(line);
    }
    out.extend(current);
    // As stored: CRLF line ends (RFC 5322 2.1), without the separator's blank line.
    out.into_iter()
        .map(|m| m.trim_end_matches('\n').replace('\n', "\r\n").into_bytes())
        .collect()
}

#[test]
fn precision_and_recall_on_held_out_messages() {
    let ham = corpus("ham.mbox");
    let spam = corpus("spam.mbox");
    assert_eq!(
        (ham.len(), spam.len()),
        (300, 300),
        "generate.py's default counts"
    );
    let limits = Limits::default();
    let mut db = TokenDb::in_memory(DbSettings::default());
    let held_out = |i: usize| i.is_multiple_of(3);
    for (messages, class) in [(&ham, Class::Ham), (&spam, Class::Spam)] {
        for (i, m) in messages.iter().enumerate() {
            if !held_out(i) {
                db.learn(message_digest(m), &tokenize(m, &limits), class, 1)
                    .unwrap();
            }
        }
    }
    let settings = Settings::default();
    let threshold = 0.9;
    let (mut tp, mut fp, mut fn_, mut tn, mut unsure) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for (messages, is_spam) in [(&ham, false), (&spam, true)] {
        for (i, m) in messages.iter().enumerate() {
            if !held_out(i) {
                continue;
            }
            let score = classify(&tokenize(m, &limits), &[&db], &settings);
            assert!(score.trained);
            let p = score.probability;
            if (0.2..threshold).contains(&p) {
                unsure += 1;
            }
            match (p >= threshold, is_spam) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
    }
    let precision = f64::from(tp) / f64::from((tp + fp).max(1));
    let recall = f64::from(tp) / f64::from((tp + fn_).max(1));
    println!(
        "spam corpus: trained on {} ham + {} spam; held out {} ham + {} spam; threshold {threshold}: \
         precision {precision:.3} recall {recall:.3} (tp {tp} fp {fp} fn {fn_} tn {tn}; unsure {unsure})",
        db.nham,
        db.nspam,
        tn + fp,
        tp + fn_
    );
    assert!(precision >= 0.97, "precision {precision:.3}");
    assert!(recall >= 0.85, "recall {recall:.3}");
    // False positives are the costly error: a ham in Junk.
    assert!(fp <= 2, "{fp} ham messages scored as spam");
}
