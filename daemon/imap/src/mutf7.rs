//! Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3, RFC 9051 5.1.3 for IMAP4rev1
//! clients) and UTF-8 (RFC 9051 5.1, RFC 6855 3 once UTF8=ACCEPT is enabled).

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// A mailbox name that is not valid on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxNameError {
    #[error("invalid modified UTF-7 in mailbox name")]
    BadModifiedUtf7,
    #[error("mailbox name is not valid UTF-8")]
    BadUtf8,
    #[error("mailbox name contains control characters")]
    Control,
}

/// RFC 3501 5.1.3: modified BASE64 uses "," instead of "/" and no padding.
fn engine() -> Option<GeneralPurpose> {
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").ok()?;
    Some(GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    ))
}

/// Encodes a UTF-8 name in modified UTF-7 (RFC 3501 5.1.3): printable US-ASCII except "&"
/// stands for itself, "&" is "&-", everything else is UTF-16 in modified BASE64 between "&"
/// and "-".
pub fn encode_modified_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        if let Some(e) = engine() {
            out.push_str(&e.encode(bytes));
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 name (RFC 3501 5.1.3). Strict: 8-bit bytes, unterminated or
/// non-canonical shifts ("&" followed by an encoding of printable ASCII) and bad UTF-16 are
/// errors.
pub fn decode_modified_utf7(raw: &[u8]) -> Result<String, MailboxNameError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if !(0x20..0x7f).contains(&c) {
            return Err(MailboxNameError::BadModifiedUtf7);
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let Some(rel) = raw[i + 1..].iter().position(|&b| b == b'-') else {
            return Err(MailboxNameError::BadModifiedUtf7);
        };
        let enc = &raw[i + 1..i + 1 + rel];
        i += rel + 2;
        if enc.is_empty() {
            out.push('&');
            continue;
        }
        let bytes = engine()
            .and_then(|e| e.decode(enc).ok())
            .ok_or(MailboxNameError::BadModifiedUtf7)?;
        if bytes.len() % 2 != 0 {
            return Err(MailboxNameError::BadModifiedUtf7);
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let s = String::from_utf16(&units).map_err(|_| MailboxNameError::BadModifiedUtf7)?;
        // RFC 3501 5.1.3: printable US-ASCII must represent itself.
        if s.chars().any(|ch| (' '..='~').contains(&ch)) {
            return Err(MailboxNameError::BadModifiedUtf7);
        }
        out.push_str(&s);
    }
    Ok(out)
}

/// A mailbox name as the client sent it (RFC 9051 9: mailbox = "INBOX" / astring).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox(pub Vec<u8>);

impl Mailbox {
    /// The user-visible UTF-8 name: UTF-8 as is when `utf8` (UTF8=ACCEPT enabled or an
    /// IMAP4rev2 session, RFC 9051 5.1), otherwise decoded from modified UTF-7. "INBOX" is
    /// case-insensitive (RFC 9051 5.1) and is returned as "INBOX".
    pub fn decode(&self, utf8: bool) -> Result<String, MailboxNameError> {
        let name = if utf8 {
            String::from_utf8(self.0.clone()).map_err(|_| MailboxNameError::BadUtf8)?
        } else {
            decode_modified_utf7(&self.0)?
        };
        if name.chars().any(|c| c.is_control()) {
            return Err(MailboxNameError::Control);
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".to_string());
        }
        Ok(name)
    }

    /// Whether the name is INBOX in any case.
    pub fn is_inbox(&self) -> bool {
        self.0.eq_ignore_ascii_case(b"INBOX")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 5.1.3: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is "~peter/mail/台北/日本語".
        let d = decode_modified_utf7(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap();
        assert_eq!(d, "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}");
        assert_eq!(encode_modified_utf7(&d), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "INBOX",
            "a&b",
            "&",
            "Entwürfe",
            "日本語/テスト",
            "emoji \u{1F600} x",
            "mixed&\u{e9}&",
        ] {
            let e = encode_modified_utf7(s);
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e}");
            assert_eq!(decode_modified_utf7(e.as_bytes()).unwrap(), s);
        }
        assert_eq!(encode_modified_utf7("a&b"), "a&-b");
        assert_eq!(encode_modified_utf7("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn rejects_bad() {
        for bad in [
            &b"&"[..],
            b"&U,BTFw",
            b"&AGE-",    // "a" encoded: printable ASCII must stand for itself
            b"&2D0-",    // lone surrogate
            b"\xc3\xa9", // 8-bit
            b"&U,BTF-",  // trailing bits
        ] {
            assert!(decode_modified_utf7(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mailbox_decode() {
        assert_eq!(Mailbox(b"inbox".to_vec()).decode(false).unwrap(), "INBOX");
        assert_eq!(
            Mailbox("Entwürfe".as_bytes().to_vec())
                .decode(true)
                .unwrap(),
            "Entwürfe"
        );
        assert!(Mailbox("Entwürfe".as_bytes().to_vec())
            .decode(false)
            .is_err());
        assert_eq!(Mailbox(b"a&-b".to_vec()).decode(false).unwrap(), "a&b");
        assert_eq!(Mailbox(b"a&-b".to_vec()).decode(true).unwrap(), "a&-b");
    }
}
