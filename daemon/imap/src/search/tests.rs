use std::cell::Cell;

use super::*;
use crate::command::{parse_command, CommandBody, ParseOptions};

const MSG: &[u8] = b"Date: Wed, 17 Jul 1996 23:50:00 -0700\r\n\
From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n\
To: Keith Moore <moore@cs.utk.edu>\r\n\
Cc: team@example.org\r\n\
Subject: =?utf-8?b?UmU6IENhZsOp?= meeting\r\n\
X-Priority: High\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Voil=E0 the agenda for the caf=E9.\r\n\
--b\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
PGI+U2VjcmV0IHdvcmQ8L2I+\r\n\
--b--\r\n";

fn program(s: &str) -> (Option<String>, SearchKey) {
    let c = parse_command(
        format!("a SEARCH {s}\r\n").as_bytes(),
        ParseOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{s}: {e:?}"));
    match c.body {
        CommandBody::Search {
            charset, criteria, ..
        } => (charset, criteria),
        _ => unreachable!(),
    }
}

fn ctx<'a>(flags: &'a [String], saved: &'a [u32]) -> MessageContext<'a> {
    MessageContext {
        seq: 3,
        uid: 30,
        flags,
        recent: true,
        modseq: 500,
        // 1996-07-18 06:50:00 UTC (the Date above in UTC).
        internal_date: 837_672_600,
        size: MSG.len() as u64,
        max_seq: 10,
        max_uid: 100,
        saved_seqs: saved,
        saved_uids: &[],
    }
}

fn check(s: &str) -> bool {
    let flags = vec!["\\Seen".to_string(), "$Important".to_string()];
    let saved = [1, 3];
    let c = ctx(&flags, &saved);
    let (_, key) = program(s);
    let read = matches(&key, &c, None, || Some(MSG.to_vec()));
    // The cached header summary must answer exactly as reading the message does.
    let summary = HeaderSummary::new(MSG);
    let cached = matches(&key, &c, Some(&summary), || Some(MSG.to_vec()));
    assert_eq!(read, cached, "{s}: summary disagrees with the message");
    read
}

#[test]
fn flag_and_index_keys() {
    for (k, want) in [
        ("ALL", true),
        ("SEEN", true),
        ("UNSEEN", false),
        ("ANSWERED", false),
        ("UNANSWERED", true),
        ("DELETED", false),
        ("UNDELETED", true),
        ("DRAFT", false),
        ("UNDRAFT", true),
        ("FLAGGED", false),
        ("UNFLAGGED", true),
        ("KEYWORD $important", true),
        ("UNKEYWORD $Important", false),
        ("KEYWORD $Other", false),
        ("RECENT", true),
        ("NEW", false),
        ("OLD", false),
        ("LARGER 10", true),
        ("SMALLER 10", false),
        (&format!("SMALLER {}", MSG.len() + 1), true),
        (&format!("LARGER {}", MSG.len()), false),
        ("UID 30", true),
        ("UID 1:29,31:*", false),
        ("UID *", false),
        ("UID 100:*", false),
        ("3", true),
        ("1,2,4:*", false),
        ("*", false),
        ("$", true),
        ("MODSEQ 500", true),
        ("MODSEQ 501", false),
        ("MODSEQ \"/flags/\\\\seen\" all 400", true),
        ("NOT SEEN", false),
        ("OR DELETED SEEN", true),
        ("OR DELETED DRAFT", false),
        ("(SEEN UNFLAGGED) UID 30", true),
        ("SEEN FLAGGED", false),
        ("YOUNGER 60", false),
        ("OLDER 60", true),
    ] {
        assert_eq!(check(k), want, "{k}");
    }
}

#[test]
fn date_keys() {
    // Internal date 18-Jul-1996 (UTC); sent date 17-Jul-1996 in its own zone.
    for (k, want) in [
        ("ON 18-Jul-1996", true),
        ("ON 17-Jul-1996", false),
        ("BEFORE 18-Jul-1996", false),
        ("BEFORE 19-Jul-1996", true),
        ("SINCE 18-Jul-1996", true),
        ("SINCE 19-Jul-1996", false),
        ("SENTON 17-Jul-1996", true),
        ("SENTON 18-Jul-1996", false),
        ("SENTBEFORE 17-Jul-1996", false),
        ("SENTBEFORE 18-Jul-1996", true),
        ("SENTSINCE 17-Jul-1996", true),
        ("SENTSINCE 18-Jul-1996", false),
    ] {
        assert_eq!(check(k), want, "{k}");
    }
}

#[test]
fn text_keys_decode() {
    for (k, want) in [
        // RFC 2047 in headers, case-insensitive substring.
        ("FROM \"andré\"", true),
        ("FROM \"ANDRÉ PIRARD\"", true),
        ("FROM pirard@vm1", true),
        ("FROM moore", false),
        ("TO moore@CS.utk.edu", true),
        ("CC team", true),
        ("BCC team", false),
        ("SUBJECT \"re: café\"", true),
        ("SUBJECT meeting", true),
        ("SUBJECT agenda", false),
        ("HEADER X-Priority high", true),
        ("HEADER x-priority \"\"", true),
        ("HEADER X-Missing \"\"", false),
        // Quoted-printable ISO-8859-1 and base64 UTF-8 bodies.
        ("BODY \"voilà\"", true),
        ("BODY \"CAFÉ.\"", true),
        ("BODY \"secret WORD\"", true),
        ("BODY meeting", false),
        ("TEXT meeting", true),
        ("TEXT \"voilà\"", true),
        ("TEXT nowhere", false),
        ("CHARSET UTF-8 BODY \"voilà\"", true),
    ] {
        assert_eq!(check(k), want, "{k}");
    }
}

#[test]
fn body_loaded_lazily_and_once() {
    let flags = vec![];
    let c = ctx(&flags, &[]);
    let calls = Cell::new(0);
    let load = || {
        calls.set(calls.get() + 1);
        Some(MSG.to_vec())
    };
    let (_, key) = program("UNSEEN UID 30 LARGER 1");
    assert!(matches(&key, &c, None, load));
    assert_eq!(calls.get(), 0);
    let load = || {
        calls.set(calls.get() + 1);
        Some(MSG.to_vec())
    };
    let (_, key) = program("OR SUBJECT x OR FROM y OR BODY z TEXT meeting");
    assert!(matches(&key, &c, None, load));
    assert_eq!(calls.get(), 1);
    // A failed load matches no text key.
    let (_, key) = program("SUBJECT meeting");
    assert!(!matches(&key, &c, None, || None));
    let (_, key) = program("NOT SUBJECT meeting");
    assert!(matches(&key, &c, None, || None));
}

#[test]
fn summary_answers_header_keys_without_reading() {
    let flags = vec![];
    let c = ctx(&flags, &[]);
    let summary = HeaderSummary::new(MSG);
    let (_, key) = program("OR SUBJECT meeting OR FROM nobody SENTSINCE 1-Jan-2000");
    assert!(uses_summary(&key));
    assert!(matches(&key, &c, Some(&summary), || panic!("read")));
    let (_, key) = program("HEADER X-Other x");
    assert!(!uses_summary(&key));
    let (_, key) = program("BODY x");
    assert!(!uses_summary(&key));
}

#[test]
fn summary_keeps_every_field_of_a_name() {
    let msg = b"To: First <a@example.org>\r\nSubject: =?UTF-8?Q?Caf=C3=A9?=\r\n\
To: Second <b@example.org>\r\nCc:\r\n\r\nbody\r\n";
    let flags = vec![];
    let c = ctx(&flags, &[]);
    let summary = HeaderSummary::new(msg);
    for (program_text, want) in [
        ("TO first", true),
        ("TO second", true),
        ("TO b@example", true),
        ("SUBJECT CAF", true),
        // Decoded (RFC 2047), not the raw encoded word.
        ("SUBJECT =?UTF-8", false),
        // An empty string matches messages that have the field (Cc: is present, empty).
        ("CC \"\"", true),
        ("BCC \"\"", false),
        ("HEADER To \"\"", true),
        ("FROM \"\"", false),
    ] {
        let (_, key) = program(program_text);
        let read = matches(&key, &c, None, || Some(msg.to_vec()));
        let cached = matches(&key, &c, Some(&summary), || panic!("read"));
        assert_eq!(read, want, "{program_text} reading the message");
        assert_eq!(cached, want, "{program_text} from the summary");
    }
}

#[test]
fn charsets() {
    assert!(check_charset(None).is_ok());
    assert!(check_charset(Some("utf-8")).is_ok());
    assert!(check_charset(Some("US-ASCII")).is_ok());
    let e = check_charset(Some("ISO-8859-1")).unwrap_err();
    assert_eq!(e.code(), "BADCHARSET (UTF-8 US-ASCII)");
}

#[test]
fn deep_programs_are_bounded() {
    // Built in code past the parser's bound: evaluation stops instead of overflowing.
    let mut k = SearchKey::All;
    for _ in 0..100_000 {
        k = SearchKey::Not(Box::new(k));
    }
    let flags = vec![];
    let c = ctx(&flags, &[]);
    let _ = matches(&k, &c, None, || None);
    // Dropping a deep Box chain recursively would overflow too; unwind it iteratively.
    while let SearchKey::Not(inner) = k {
        k = *inner;
    }
}

#[test]
fn responses() {
    assert_eq!(search_response(&[2, 5, 9], None), b"* SEARCH 2 5 9\r\n");
    assert_eq!(search_response(&[], Some(7)), b"* SEARCH\r\n");
    assert_eq!(
        search_response(&[1], Some(917162500)),
        b"* SEARCH 1 (MODSEQ 917162500)\r\n"
    );
    use SearchReturn::*;
    // RFC 4731 3.1 examples.
    assert_eq!(
        esearch_response("A282", false, &[Min, Count], &[2, 10, 11], None),
        b"* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"
    );
    assert_eq!(
        esearch_response("A283", false, &[], &[2, 10, 11], None),
        b"* ESEARCH (TAG \"A283\") ALL 2,10:11\r\n"
    );
    assert_eq!(
        esearch_response("A284", false, &[Min], &[], None),
        b"* ESEARCH (TAG \"A284\")\r\n"
    );
    assert_eq!(
        esearch_response("A285", true, &[Min, Max], &[7, 3800], None),
        b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n"
    );
    assert_eq!(
        esearch_response("A286", false, &[Count], &[], None),
        b"* ESEARCH (TAG \"A286\") COUNT 0\r\n"
    );
    assert_eq!(
        esearch_response("a", true, &[All, Count], &[1, 2, 3, 5], Some(9)),
        b"* ESEARCH (TAG \"a\") UID ALL 1:3,5 COUNT 4 MODSEQ 9\r\n"
    );
    assert!(esearch_response("a", false, &[Save], &[1], None).is_empty());
    assert_eq!(
        esearch_response("a", false, &[Save, Min], &[4, 8], None),
        b"* ESEARCH (TAG \"a\") MIN 4\r\n"
    );
}
