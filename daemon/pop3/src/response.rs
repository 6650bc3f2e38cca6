//! POP3 responses (RFC 1939 3): status lines and byte-stuffed multi-line responses.

/// "+OK text" CRLF. CR and LF never reach the wire from `text`.
pub fn ok(text: &str) -> Vec<u8> {
    status("+OK", None, text)
}

/// "-ERR [CODE] text" CRLF, with an optional RFC 2449 8 response code.
pub fn err(code: Option<&str>, text: &str) -> Vec<u8> {
    status("-ERR", code, text)
}

fn status(indicator: &str, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut out = String::with_capacity(indicator.len() + text.len() + 16);
    out.push_str(indicator);
    if let Some(code) = code {
        out.push_str(" [");
        out.push_str(code);
        out.push(']');
    }
    if !text.is_empty() {
        out.push(' ');
        out.extend(text.chars().filter(|c| !c.is_control()));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Appends `line` to a multi-line response body, byte-stuffed: RFC 1939 3, a line that
/// starts with "." gets another "." so that it cannot be taken for the terminator.
fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// A multi-line response body from text lines (CAPA, LIST, UIDL), terminator included.
pub fn lines<I, S>(items: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for item in items {
        push_line(&mut out, item.as_ref());
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A message as a multi-line response body (RFC 1939 7, RETR and TOP), terminator
/// included. Lines end in CRLF on the wire whatever they ended in when stored (a final line
/// without a terminator gets one); the CR of a stored CRLF is not doubled. With `top`, only
/// the header, the blank line that ends it, and the first `top` lines of the body are sent.
pub fn multiline(message: &[u8], top: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut in_body = false;
    let mut body_lines = 0usize;
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if let Some(n) = top {
                if body_lines >= n {
                    break;
                }
                body_lines += 1;
            }
        }
        push_line(&mut out, line);
        if !in_body && line.is_empty() {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Reverses [`multiline`] for CRLF-terminated content (tests and the fuzz target): the
/// body lines up to the terminator, un-stuffed, each with CRLF. None when the terminator
/// is missing or a line is not CRLF-terminated.
pub fn unstuff(wire: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(wire.len());
    let mut rest = wire;
    loop {
        let i = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..i];
        rest = &rest[i + 2..];
        if line == b"." {
            return rest.is_empty().then_some(out);
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(ok("fine"), b"+OK fine\r\n");
        assert_eq!(ok(""), b"+OK\r\n");
        assert_eq!(err(Some("IN-USE"), "locked"), b"-ERR [IN-USE] locked\r\n");
        assert_eq!(err(None, "x\r\n+OK y"), b"-ERR x+OK y\r\n");
    }

    #[test]
    fn byte_stuffing() {
        let msg = b"Subject: a\r\n\r\n.\r\n..two\r\nplain\r\n.\r\n";
        let wire = multiline(msg, None);
        assert_eq!(
            wire,
            b"Subject: a\r\n\r\n..\r\n...two\r\nplain\r\n..\r\n.\r\n".to_vec()
        );
        assert_eq!(unstuff(&wire).as_deref(), Some(&msg[..]));
        assert_eq!(lines([".x", "y"]), b"..x\r\ny\r\n.\r\n");
    }

    #[test]
    fn line_endings_are_normalised() {
        assert_eq!(multiline(b"a\nb", None), b"a\r\nb\r\n.\r\n");
        assert_eq!(multiline(b"", None), b".\r\n");
        // A CR inside a line stays as it is; only CRLF and LF end lines.
        assert_eq!(multiline(b"a\rb\r\n", None), b"a\rb\r\n.\r\n");
    }

    #[test]
    fn top_cuts_the_body() {
        let msg = b"H1: a\r\nH2: b\r\n\r\nl1\r\n\r\nl3\r\nl4\r\n";
        assert_eq!(multiline(msg, Some(0)), b"H1: a\r\nH2: b\r\n\r\n.\r\n");
        assert_eq!(
            multiline(msg, Some(2)),
            b"H1: a\r\nH2: b\r\n\r\nl1\r\n\r\n.\r\n"
        );
        assert_eq!(multiline(msg, Some(99)), multiline(msg, None));
        // No blank line: the whole message is header.
        assert_eq!(multiline(b"H: x\r\n", Some(0)), b"H: x\r\n.\r\n");
    }

    #[test]
    fn unstuff_needs_a_terminator() {
        assert_eq!(unstuff(b"a\r\n"), None);
        assert_eq!(unstuff(b"a\r\n.\r\nextra"), None);
    }
}
