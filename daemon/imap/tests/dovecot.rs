//! postern-imap's message rendering against Dovecot 2.3.19's, recorded by
//! tests/dovecot/record.py from the messages in tests/messages: ENVELOPE, BODY,
//! BODYSTRUCTURE, body sections, partial ranges and BINARY must be byte-identical.

use std::path::Path;

use postern_imap::command::{parse_command, CommandBody, FetchAttr, ParseOptions};
use postern_imap::message::{partial, Message};

/// Renders one FETCH item the way the server writes its value.
fn render(msg: &Message<'_>, raw: &[u8], item: &str) -> Vec<u8> {
    let cmd = format!("t FETCH 1 ({item})\r\n");
    let c = parse_command(cmd.as_bytes(), ParseOptions::default()).expect("item parses");
    let CommandBody::Fetch { attributes, .. } = c.body else {
        panic!("not a fetch")
    };
    let mut out = Vec::new();
    match &attributes[0] {
        FetchAttr::Envelope => out = msg.envelope(),
        FetchAttr::BodyStructure => out = msg.body_structure(true),
        FetchAttr::Body => out = msg.body_structure(false),
        FetchAttr::Rfc822Size => out = raw.len().to_string().into_bytes(),
        FetchAttr::BodySection {
            section,
            partial: p,
            ..
        } => {
            let data = msg.section(section);
            postern_imap::response::literal(&mut out, partial(&data, *p));
        }
        FetchAttr::Binary {
            part, partial: p, ..
        } => match msg.binary(part) {
            Ok(d) => {
                let d = partial(&d, *p);
                // Dovecot sends literal8 unless the part needed no decoding; compare data.
                postern_imap::response::literal(&mut out, d);
            }
            Err(_) => out = b"NO [UNKNOWN-CTE]".to_vec(),
        },
        FetchAttr::BinarySize { part } => match msg.binary_size(part) {
            Ok(n) => out = n.to_string().into_bytes(),
            Err(_) => out = b"NO [UNKNOWN-CTE]".to_vec(),
        },
        other => panic!("unexpected {other:?}"),
    }
    out
}

const ITEMS: &[&str] = &[
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822.SIZE",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[2.1]",
    "BODY.PEEK[1.1]",
    "BODY.PEEK[3]",
    "BODY.PEEK[4]",
    "BODY.PEEK[HEADER.FIELDS (From Subject)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (From)]",
    "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]",
    "BODY.PEEK[1]<2.5>",
    "BODY.PEEK[]<0.20>",
    "BINARY.PEEK[1]",
    "BINARY.PEEK[2]",
    "BINARY.PEEK[3]",
    "BINARY.SIZE[1]",
    "BINARY.SIZE[3]",
    "BINARY.PEEK[]",
];

fn file_name(item: &str) -> String {
    let mut s = String::new();
    let mut last_us = false;
    for c in item.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            s.push(c);
            last_us = false;
        } else if !last_us {
            s.push('_');
            last_us = true;
        }
    }
    s.trim_matches('_').to_string()
}

/// Dovecot sends `~{n}` for decoded BINARY data; the data is what must match.
fn normalise(expected: &[u8]) -> Vec<u8> {
    match expected.strip_prefix(b"~") {
        Some(rest) => rest.to_vec(),
        None => expected.to_vec(),
    }
}

#[test]
fn matches_dovecot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut names: Vec<_> = std::fs::read_dir(root.join("messages"))
        .expect("messages dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 15);
    let mut failures = Vec::new();
    let mut compared = 0;
    for name in &names {
        let mut raw = std::fs::read(root.join("messages").join(name)).expect("read");
        if !raw.contains(&b'\r') {
            // Dovecot's maildir stores bare-LF messages with CRLF; so does Postern's store.
            raw = String::from_utf8_lossy(&raw)
                .replace('\n', "\r\n")
                .into_bytes();
        }
        let msg = Message::parse(&raw);
        let base = name.trim_end_matches(".eml");
        for item in ITEMS {
            let exp_path = root
                .join("dovecot")
                .join(format!("{base}.{}.expected", file_name(item)));
            let Ok(expected) = std::fs::read(&exp_path) else {
                failures.push(format!("missing {}", exp_path.display()));
                continue;
            };
            let expected = normalise(&expected);
            if expected.starts_with(b"NO ") {
                // Dovecot refused (UNKNOWN-CTE, or PARSE for broken base64 where we decode
                // leniently): only UNKNOWN-CTE must agree.
                if expected.windows(11).any(|w| w == b"UNKNOWN-CTE") {
                    let got = render(&msg, &raw, item);
                    if got != b"NO [UNKNOWN-CTE]" {
                        failures.push(format!("{base} {item}: expected UNKNOWN-CTE"));
                    }
                }
                continue;
            }
            let got = render(&msg, &raw, item);
            compared += 1;
            if got != expected {
                failures.push(format!(
                    "{base} {item}:\n  dovecot: {}\n  postern: {}",
                    String::from_utf8_lossy(&expected).escape_debug(),
                    String::from_utf8_lossy(&got).escape_debug()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The mailbox of tests/dovecot/record_search.py: message i (sorted names, from 1) has UID
/// and sequence number i, these flags and internal dates.
const FLAGS: [&str; 15] = [
    "S", "", "F", "RS", "", "D", "S", "", "T", "", "FS", "", "S", "", "R",
];
const BASE: i64 = 1_704_110_400; // 2024-01-01 12:00:00 UTC

fn maildir_flags(f: &str) -> Vec<String> {
    f.chars()
        .filter_map(|c| match c {
            'S' => Some("\\Seen"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'T' => Some("\\Deleted"),
            'D' => Some("\\Draft"),
            _ => None,
        })
        .map(String::from)
        .collect()
}

#[test]
fn search_and_sort_match_dovecot() {
    use postern_imap::search::{compare, matches, sort_key, HeaderSummary, MessageContext};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut names: Vec<_> = std::fs::read_dir(root.join("messages"))
        .expect("messages dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    // The first 15 messages form the recorded mailbox.
    names.truncate(FLAGS.len());
    assert_eq!(names.len(), FLAGS.len());
    let msgs: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let raw = std::fs::read(root.join("messages").join(n)).expect("read");
            if raw.contains(&b'\r') {
                raw
            } else {
                String::from_utf8_lossy(&raw)
                    .replace('\n', "\r\n")
                    .into_bytes()
            }
        })
        .collect();
    let flags: Vec<Vec<String>> = FLAGS.iter().map(|f| maildir_flags(f)).collect();
    let expected = std::fs::read_to_string(root.join("dovecot/search.expected")).expect("read");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in expected.lines() {
        let mut cols = line.splitn(3, '\t');
        let (Some(kind), Some(program), Some(want)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!("bad line {line:?}")
        };
        n += 1;
        let got: Vec<u32> = if kind == "SEARCH" {
            let cmd = format!("a UID SEARCH CHARSET UTF-8 {program}\r\n");
            let c = parse_command(cmd.as_bytes(), ParseOptions::default()).expect("parses");
            let CommandBody::Search { criteria, .. } = c.body else {
                panic!()
            };
            (0..msgs.len())
                .filter(|&i| {
                    let ctx = MessageContext {
                        seq: i as u32 + 1,
                        uid: i as u32 + 1,
                        flags: &flags[i],
                        recent: false,
                        modseq: 1,
                        internal_date: BASE + i as i64 * 86_400,
                        size: msgs[i].len() as u64,
                        max_seq: msgs.len() as u32,
                        max_uid: msgs.len() as u32,
                        saved_seqs: &[],
                        saved_uids: &[],
                    };
                    let read = matches(&criteria, &ctx, None, || Some(msgs[i].clone()));
                    // posternd answers header keys from cached summaries: they must agree.
                    let summary = HeaderSummary::new(&msgs[i]);
                    let cached = matches(&criteria, &ctx, Some(&summary), || Some(msgs[i].clone()));
                    assert_eq!(read, cached, "{program}: message {i}: summary disagrees");
                    read
                })
                .map(|i| i as u32 + 1)
                .collect()
        } else {
            let cmd = format!("a UID SORT {program} UTF-8 ALL\r\n");
            let c = parse_command(cmd.as_bytes(), ParseOptions::default()).expect("parses");
            let CommandBody::Sort { criteria, .. } = c.body else {
                panic!()
            };
            let mut keyed: Vec<_> = (0..msgs.len())
                .map(|i| {
                    let k = sort_key(
                        &criteria,
                        &HeaderSummary::new(&msgs[i]),
                        BASE + i as i64 * 86_400,
                        msgs[i].len() as u64,
                        i as u32 + 1,
                    );
                    (k, i as u32 + 1)
                })
                .collect();
            keyed.sort_by(|a, b| compare(&criteria, &a.0, &b.0));
            keyed.into_iter().map(|(_, u)| u).collect()
        };
        let got = got
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if got != want {
            failures.push(format!(
                "{kind} {program}: dovecot [{want}] postern [{got}]"
            ));
        }
    }
    assert!(n >= 50);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
