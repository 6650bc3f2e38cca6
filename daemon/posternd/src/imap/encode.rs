//! Small response-writing helpers of the session; strings and names use postern-imap's
//! encoders (RFC 9051 4.3).

/// A mailbox name as the client expects it: UTF-8 when UTF8=ACCEPT or IMAP4rev2 is on
/// (RFC 9051 5.1, RFC 6855 3), else modified UTF-7 (RFC 3501 5.1.3).
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    postern_imap::response::mailbox(out, name, utf8);
}

/// `(\Seen \Flagged)`.
pub fn flag_list(out: &mut Vec<u8>, flags: &[String], recent: bool) {
    out.push(b'(');
    let mut first = true;
    for f in flags {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(f.as_bytes());
    }
    if recent {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}

/// A compact sequence set "1:3,7,9:10" from ascending numbers.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_sets() {
        let mut o = Vec::new();
        mailbox(&mut o, "Entwürfe", false);
        assert_eq!(o, b"\"Entw&APw-rfe\"");
        assert_eq!(sequence_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(sequence_set(&[]), "");
    }
}
