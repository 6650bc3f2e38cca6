//! Content-Transfer-Encoding decoders for BINARY (RFC 3516 4.2, RFC 2045 6.7 and 6.8),
//! lenient: invalid input is skipped (base64) or kept as it is (quoted-printable).

/// RFC 2045 6.8: base64, ignoring characters outside the alphabet.
pub(crate) fn base64(input: &[u8]) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &c in input {
        if c == b'=' {
            // Padding ends the data (RFC 2045 6.8).
            break;
        }
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// RFC 2045 6.7: quoted-printable. "=XX" is a byte, "=" before a line end is a soft line
/// break (whitespace between them allowed), anything else is kept.
pub(crate) fn quoted_printable(input: &[u8]) -> Vec<u8> {
    fn hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        // Soft line break: "=" [WSP...] CRLF / LF / end of data.
        let mut j = i + 1;
        while j < input.len() && matches!(input[j], b' ' | b'\t') {
            j += 1;
        }
        if j >= input.len() {
            i = j;
            continue;
        }
        if input[j] == b'\n' {
            i = j + 1;
            continue;
        }
        if input[j] == b'\r' && input.get(j + 1) == Some(&b'\n') {
            i = j + 2;
            continue;
        }
        match (
            input.get(i + 1).copied().and_then(hex),
            input.get(i + 2).copied().and_then(hex),
        ) {
            (Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64() {
        assert_eq!(base64(b"aMOpbGxvIHfDtnJsZA=="), "héllo wörld".as_bytes());
        assert_eq!(base64(b"AAEC\r\nAw=="), vec![0, 1, 2, 3]);
        assert_eq!(base64(b"QQ"), b"A");
        assert_eq!(base64(b"QUI"), b"AB");
        assert_eq!(base64(b"!!!"), b"");
    }

    #[test]
    fn qp() {
        assert_eq!(
            quoted_printable(b"soft=\r\nbreak =3D eq=20"),
            b"softbreak = eq "
        );
        assert_eq!(quoted_printable(b"a=  \r\nb=\nc="), b"abc");
        assert_eq!(quoted_printable(b"=XY=4"), b"=XY=4");
        assert_eq!(quoted_printable(b"caf=c3=a9"), "café".as_bytes());
    }
}
