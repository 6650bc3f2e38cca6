//! Response encoding (RFC 9051 7, 9): strings (quoted or literal), astring, nstring,
//! mailbox names (modified UTF-7 or UTF-8), flag lists and status/continuation lines.

use crate::mutf7::encode_modified_utf7;
use crate::parser::is_astring_char;

/// Longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

/// Status of a status response (RFC 9051 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// Appends human-readable text (RFC 9051 9: text = 1*TEXT-CHAR): CR, LF and NUL become
/// spaces; an empty text becomes "." since text must not be empty.
pub fn push_text(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        out.push(b'.');
        return;
    }
    out.extend(text.bytes().map(|c| {
        if matches!(c, b'\r' | b'\n' | 0) {
            b' '
        } else {
            c
        }
    }));
}

fn status_line(out: &mut Vec<u8>, status: Status, code: Option<&str>, text: &str) {
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    if let Some(code) = code {
        // RFC 9051 7.1: resp-text = ["[" resp-text-code "]" SP] [text]
        out.push(b'[');
        push_text(out, code);
        out.extend_from_slice(b"] ");
    }
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// `tag STATUS [code] text\r\n` (RFC 9051 7.1).
pub fn tagged(tag: &str, status: Status, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + text.len() + 16);
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    status_line(&mut out, status, code, text);
    out
}

/// `* STATUS [code] text\r\n` (RFC 9051 7.1).
pub fn untagged(status: Status, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    out.extend_from_slice(b"* ");
    status_line(&mut out, status, code, text);
    out
}

/// `* <data>\r\n` for untagged data whose encoding the caller built (e.g. "3 EXISTS").
pub fn untagged_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    out.extend_from_slice(b"* ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A continuation request `+ text\r\n` (RFC 9051 7.5); `text` empty gives `+ Ready`.
pub fn continuation(text: &str) -> Vec<u8> {
    let mut out = b"+ ".to_vec();
    push_text(&mut out, if text.is_empty() { "Ready" } else { text });
    out.extend_from_slice(b"\r\n");
    out
}

/// A continuation request carrying base64 data (RFC 9051 6.2.2 AUTHENTICATE challenge):
/// `+ <base64>\r\n`, or `+ \r\n` for an empty challenge.
pub fn continuation_base64(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let mut out = b"+ ".to_vec();
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out
}

fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&c| !matches!(c, 0 | b'\r' | b'\n') && (c < 0x80 || utf8))
        && (!utf8 || std::str::from_utf8(s).is_ok())
}

/// A quoted string; the caller made sure it is quotable.
fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// A literal `{n}\r\n` followed by the data (RFC 9051 4.3).
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// A literal8 `~{n}\r\n` (RFC 3516 4.3: BINARY data containing NUL).
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("~{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// RFC 9051 9: string = quoted / literal. Quoted when short and 7-bit without CR, LF, NUL;
/// otherwise a literal.
pub fn quoted_or_literal(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s, false) {
        push_quoted(out, s);
    } else {
        literal(out, s);
    }
}

/// Like [`quoted_or_literal`] but UTF-8 may be quoted (RFC 9051 utf8-quoted, RFC 6855 3
/// once UTF8=ACCEPT is enabled).
pub fn quoted_or_literal_utf8(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s, true) {
        push_quoted(out, s);
    } else {
        literal(out, s);
    }
}

/// RFC 9051 9: astring = 1*ASTRING-CHAR / string. "NIL" is quoted so that it is never read
/// as nil.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && s.iter().all(|&c| is_astring_char(c)) && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        quoted_or_literal(out, s);
    }
}

/// RFC 9051 9: nstring = string / nil.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => quoted_or_literal(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name for LIST/STATUS/... responses: UTF-8 when `utf8` (RFC 9051 5.1,
/// RFC 6855 3), else modified UTF-7 (RFC 3501 5.1.3); always quoted (or a literal), as
/// mailbox names may contain list wildcards and spaces.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        quoted_or_literal_utf8(out, name.as_bytes());
    } else {
        quoted_or_literal(out, encode_modified_utf7(name).as_bytes());
    }
}

/// RFC 9051 9: flag-list = "(" [flag *(SP flag)] ")".
pub fn flag_list<S: AsRef<str>>(out: &mut Vec<u8>, flags: &[S]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_ref().as_bytes());
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutf7::Mailbox;
    use crate::parser::Parser;

    fn enc(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(
            enc(|o| quoted_or_literal(o, b"a \"b\" \\")),
            "\"a \\\"b\\\" \\\\\""
        );
        assert_eq!(enc(|o| quoted_or_literal(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(enc(|o| quoted_or_literal(o, "é".as_bytes())), "{2}\r\né");
        assert_eq!(enc(|o| quoted_or_literal_utf8(o, "é".as_bytes())), "\"é\"");
        assert_eq!(
            enc(|o| quoted_or_literal_utf8(o, b"\xff")),
            "{1}\r\n\u{fffd}"
        );
        assert_eq!(enc(|o| astring(o, b"INBOX")), "INBOX");
        assert_eq!(enc(|o| astring(o, b"nil")), "\"nil\"");
        assert_eq!(enc(|o| astring(o, b"")), "\"\"");
        assert_eq!(enc(|o| astring(o, b"a b")), "\"a b\"");
        assert_eq!(enc(|o| nstring(o, None)), "NIL");
        assert_eq!(enc(|o| nstring(o, Some(b"x"))), "\"x\"");
        let long = vec![b'a'; 2000];
        assert!(enc(|o| quoted_or_literal(o, &long)).starts_with("{2000}\r\n"));
        assert_eq!(enc(|o| literal8(o, b"\0")), "~{1}\r\n\0");
    }

    #[test]
    fn round_trip_through_parser() {
        for s in [
            &b""[..],
            b"x",
            b"a b",
            b"\"",
            b"\\",
            b"NIL",
            b"\r\n",
            b"x\xffy",
            b"]",
        ] {
            let mut out = Vec::new();
            astring(&mut out, s);
            out.extend_from_slice(b"\r\n");
            let mut p = Parser::new(&out, 4);
            assert_eq!(p.astring().unwrap(), s, "{out:?}");
            p.end().unwrap();
        }
    }

    #[test]
    fn mailboxes() {
        assert_eq!(enc(|o| mailbox(o, "Entwürfe", false)), "\"Entw&APw-rfe\"");
        assert_eq!(enc(|o| mailbox(o, "Entwürfe", true)), "\"Entwürfe\"");
        assert_eq!(enc(|o| mailbox(o, "a&b", false)), "\"a&-b\"");
        let mut out = Vec::new();
        mailbox(&mut out, "日本語", false);
        let mut p = Parser::new(&out, 4);
        let raw = p.astring().unwrap();
        assert_eq!(Mailbox(raw).decode(false).unwrap(), "日本語");
    }

    #[test]
    fn lines() {
        assert_eq!(
            tagged("a1", Status::Ok, Some("READ-WRITE"), "SELECT completed"),
            b"a1 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(untagged(Status::Bye, None, "bye\r\nx"), b"* BYE bye  x\r\n");
        assert_eq!(continuation(""), b"+ Ready\r\n");
        assert_eq!(continuation_base64(b""), b"+ \r\n");
        assert_eq!(untagged_data(b"3 EXISTS"), b"* 3 EXISTS\r\n");
        let mut o = Vec::new();
        flag_list(&mut o, &["\\Seen", "$Junk"]);
        assert_eq!(o, b"(\\Seen $Junk)");
    }
}
