//! Authentication-Results fields already in a received message (RFC 8601 5): a border MTA
//! removes those that claim its own authserv-id before adding its own, so a sender cannot
//! forge our verdicts. Sans-IO: bytes in, bytes out.

/// The header fields of `message` (up to the empty line, RFC 5322 2.1) as byte ranges,
/// continuation lines included (RFC 5322 2.2.3).
fn header_fields(message: &[u8]) -> (Vec<std::ops::Range<usize>>, usize) {
    let mut fields: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let end = match message[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at + i + 1,
            None => message.len(),
        };
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.end = end,
            _ => fields.push(at..end),
        }
        at = end;
    }
    (fields, at)
}

/// Skips CFWS (RFC 5322 3.2.2): white space, line breaks and nested comments.
fn skip_cfws(value: &[u8], mut at: usize) -> usize {
    let mut depth = 0usize;
    while at < value.len() {
        match value[at] {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'(' => {
                depth += 1;
                at += 1;
            }
            b')' if depth > 0 => {
                depth -= 1;
                at += 1;
            }
            b'\\' if depth > 0 => at += 2,
            _ if depth > 0 => at += 1,
            _ => break,
        }
    }
    at.min(value.len())
}

/// The authserv-id of an Authentication-Results field value (RFC 8601 2.2: `[CFWS]
/// authserv-id`, a value: an RFC 2045 token or a quoted-string). None if there is none.
pub fn authserv_id(value: &[u8]) -> Option<String> {
    let at = skip_cfws(value, 0);
    let rest = value.get(at..)?;
    let id: Vec<u8> = if rest.first() == Some(&b'"') {
        let mut id = Vec::new();
        let mut i = 1;
        loop {
            match rest.get(i)? {
                b'"' => break,
                b'\\' => {
                    id.push(*rest.get(i + 1)?);
                    i += 2;
                }
                &b => {
                    id.push(b);
                    i += 1;
                }
            }
        }
        id
    } else {
        // RFC 2045 5.1 token: no space, controls or tspecials.
        rest.iter()
            .take_while(|&&b| b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b))
            .copied()
            .collect()
    };
    if id.is_empty() {
        return None;
    }
    String::from_utf8(id).ok()
}

/// `message` without the Authentication-Results fields whose authserv-id is `authserv_id`
/// (compared without case, RFC 8601 2.5), and how many were removed.
pub fn strip_own_results(message: &[u8], authserv_id: &str) -> (Vec<u8>, usize) {
    let (fields, _header_end) = header_fields(message);
    let mut out = Vec::with_capacity(message.len());
    let mut removed = 0;
    let mut copied_to = 0;
    for field in fields {
        let bytes = &message[field.clone()];
        let Some(colon) = bytes.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = bytes[..colon].trim_ascii_end();
        if !name.eq_ignore_ascii_case(b"Authentication-Results") {
            continue;
        }
        let claimed = self::authserv_id(&bytes[colon + 1..]);
        if claimed.is_some_and(|id| {
            id.trim_end_matches('.')
                .eq_ignore_ascii_case(authserv_id.trim_end_matches('.'))
        }) {
            out.extend_from_slice(&message[copied_to..field.start]);
            copied_to = field.end;
            removed += 1;
        }
    }
    out.extend_from_slice(&message[copied_to..]);
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authserv_id_is_read_through_comments_and_quotes() {
        assert_eq!(
            authserv_id(b" mx.example.org; spf=pass").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            authserv_id(b" (a (nested) comment)\r\n\tmx.example.org 1; none").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            authserv_id(b" \"mx.ex\\\"ample\"; none").as_deref(),
            Some("mx.ex\"ample")
        );
        assert_eq!(authserv_id(b" ; none"), None);
        assert_eq!(authserv_id(b" (unclosed"), None);
    }

    #[test]
    fn only_fields_claiming_our_id_are_removed() {
        let message = b"Received: x\r\n\
Authentication-Results: MX.Example.Org;\r\n\tdkim=pass header.d=bank.example\r\n\
Authentication-Results: other.example; spf=fail\r\n\
authentication-results : (forged) mx.example.org.; dmarc=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body stays\r\n";
        let (out, removed) = strip_own_results(message, "mx.example.org");
        assert_eq!(removed, 2);
        assert_eq!(
            out,
            b"Received: x\r\n\
Authentication-Results: other.example; spf=fail\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body stays\r\n"
                .to_vec()
        );
    }
}
