//! Raw header fields (RFC 5322 2.2) and the string encodings Dovecot uses for message data,
//! which our output is compared with byte for byte.

/// One header field: its raw bytes (name, colon, value, CRLF) and its value (after the colon,
/// leading whitespace removed, final line ending removed, folding kept).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
    pub value: &'a [u8],
}

/// Splits a header block into fields (RFC 5322 2.2: a field continues on lines that start
/// with WSP). Lines without a colon are kept as fields with an empty name so that
/// HEADER.FIELDS.NOT can pass them through; the blank line ending the header is not a field.
pub(crate) fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        // The end of this field: a line end not followed by WSP.
        let start = pos;
        let mut end = pos;
        loop {
            match memchr::memchr(b'\n', &header[end..]) {
                None => {
                    end = header.len();
                    break;
                }
                Some(i) => {
                    end += i + 1;
                    if !matches!(header.get(end), Some(b' ') | Some(b'\t')) {
                        break;
                    }
                }
            }
        }
        pos = end;
        let raw = &header[start..end];
        if raw == b"\r\n" || raw == b"\n" {
            // The empty line separating header and body.
            break;
        }
        let line = trim_line_end(raw);
        match memchr::memchr(b':', line) {
            Some(c) => {
                let name = trim_end_ws(&line[..c]);
                let mut value = &line[c + 1..];
                while let Some((&b, rest)) = value.split_first() {
                    if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                        value = rest;
                    } else {
                        break;
                    }
                }
                out.push(Field { name, raw, value });
            }
            None => out.push(Field {
                name: b"",
                raw,
                value: line,
            }),
        }
    }
    out
}

fn trim_line_end(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn trim_end_ws(mut b: &[u8]) -> &[u8] {
    while let Some((&l, rest)) = b.split_last() {
        if matches!(l, b' ' | b'\t') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The first field named `name` (case-insensitive).
pub(crate) fn find<'a>(fields: &[Field<'a>], name: &str) -> Option<Field<'a>> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .copied()
}

/// An IMAP string as Dovecot writes message data: a quoted string with `"` and `\` escaped,
/// or a literal when the data holds 8-bit bytes, NUL, CR or LF (RFC 9051 4.3).
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter()
        .any(|&c| c >= 0x80 || matches!(c, 0 | b'\r' | b'\n'))
    {
        crate::response::literal(out, s);
    } else {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    }
}

pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A header value with its line breaks removed (unfolded), as an nstring.
pub(crate) fn nstring_unfolded(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => {
            let v: Vec<u8> = s
                .iter()
                .copied()
                .filter(|&c| c != b'\r' && c != b'\n')
                .collect();
            string(out, &v);
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Text meant for people (ENVELOPE subject and address names): whitespace runs (including
/// folding) become one space, leading and trailing whitespace goes, NUL becomes 0x80; sent
/// quoted when nothing had to change and nothing needs escaping, otherwise as a literal.
pub(crate) fn for_humans(out: &mut Vec<u8>, src: &[u8]) {
    let mut modify = false;
    let mut remove = 0usize;
    let mut last_ws = true;
    for &c in src {
        match c {
            0 => {
                last_ws = false;
                modify = true;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if c != b' ' {
                    modify = true;
                }
                if last_ws {
                    modify = true;
                    remove += 1;
                }
                last_ws = true;
            }
            b'"' | b'\\' => {
                modify = true;
                last_ws = false;
            }
            c => {
                if c >= 0x80 {
                    modify = true;
                }
                last_ws = false;
            }
        }
    }
    if last_ws && !src.is_empty() && remove < src.len() {
        modify = true;
        remove += 1;
    }
    if !modify {
        out.push(b'"');
        out.extend_from_slice(src);
        out.push(b'"');
        return;
    }
    if remove >= src.len() {
        out.extend_from_slice(b"\"\"");
        return;
    }
    let mut v = Vec::with_capacity(src.len());
    let mut last_ws = true;
    for &c in src {
        match c {
            0 => {
                v.push(0x80);
                last_ws = false;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if !last_ws {
                    v.push(b' ');
                }
                last_ws = true;
            }
            c => {
                v.push(c);
                last_ws = false;
            }
        }
    }
    if last_ws {
        v.pop();
    }
    crate::response::literal(out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &[u8]) -> String {
        let mut o = Vec::new();
        for_humans(&mut o, s);
        String::from_utf8_lossy(&o).into_owned()
    }

    #[test]
    fn humans() {
        assert_eq!(h(b"plain text"), "\"plain text\"");
        assert_eq!(
            h(b"folded\r\n subject  line"),
            "{19}\r\nfolded subject line"
        );
        assert_eq!(h(b"John \"Q\" Doe"), "{12}\r\nJohn \"Q\" Doe");
        assert_eq!(h(b""), "\"\"");
        assert_eq!(h(b"   "), "\"\"");
        assert_eq!(h(b" a "), "{1}\r\na");
        assert_eq!(h(b"a\0b"), "{3}\r\na\u{fffd}b");
    }

    #[test]
    fn field_split() {
        let hdr = b"A: 1\r\nB:  two\r\n  more\r\nbad line\r\nC:\r\n\r\nbody";
        let f = fields(hdr);
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].name, b"B");
        assert_eq!(f[1].value, b"two\r\n  more");
        assert_eq!(f[1].raw, b"B:  two\r\n  more\r\n");
        assert_eq!(f[2].name, b"");
        assert_eq!(f[3].value, b"");
        assert!(find(&f, "b").is_some());
    }
}
