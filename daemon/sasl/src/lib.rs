//! SASL for Postern's SMTP AUTH (RFC 4954), POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE
//! (RFC 9051 6.2.2, SASL-IR RFC 4959): one implementation of what the three protocols share.
//!
//! Sans-IO and protocol-neutral: the callers frame the lines and choose the replies.
//! - [`decode_response`]: a client response, base64 or "=" for an empty one.
//! - [`is_cancel`]: the "*" line that cancels an exchange.
//! - [`parse_plain`] / [`parse_plain_message`]: the PLAIN message (RFC 4616 2).
//! - [`decode_text`]: one LOGIN step (draft-murchison-sasl-login), UTF-8 text.
//! - [`encode`]: a base64 challenge.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The longest client response line a server must accept, CRLF included
/// (RFC 4954 4: 12288 octets). POP3 uses the same bound (RFC 5034 4 sets none).
pub const MAX_RESPONSE_LINE: usize = 12288;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64 (RFC 4954 4, RFC 5034 4, RFC 9051 6.2.2: the exchange fails).
    #[error("invalid base64 in SASL response")]
    Base64,
    /// Not a well-formed message of the mechanism (RFC 4616 2: two NULs, UTF-8, a
    /// non-empty authcid).
    #[error("malformed SASL response")]
    Malformed,
    /// An authorization identity other than the authentication identity (proxy
    /// authorization, RFC 4616 2), which Postern does not support.
    #[error("authorization identity differs from the authentication identity")]
    Authorization,
}

/// Decodes one base64 client response (a continuation line without CRLF, or an initial
/// response). "=" is the empty response (RFC 4954 4, RFC 5034 4, RFC 4959 3).
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line == b"=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::Base64)
}

/// A client response of "*" cancels the exchange (RFC 4954 4, RFC 5034 4, RFC 9051 6.2.2).
pub fn is_cancel(line: &[u8]) -> bool {
    line == b"*"
}

/// The three fields of a PLAIN message (RFC 4616 2), as sent.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: String,
    pub authcid: String,
    pub passwd: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("passwd", &"<redacted>")
            .finish()
    }
}

/// Splits `[authzid] NUL authcid NUL passwd` (RFC 4616 2). Exactly two NULs, UTF-8 fields
/// and a non-empty authcid (`authcid = 1*SAFE`); otherwise [`SaslError::Malformed`].
pub fn parse_plain_message(msg: &[u8]) -> Result<PlainMessage, SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authc.is_empty() {
        return Err(SaslError::Malformed);
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    Ok(PlainMessage {
        authzid: text(authz)?,
        authcid: text(authc)?,
        passwd: text(pass)?,
    })
}

/// The (username, password) of a PLAIN message. An authzid is accepted only when empty or
/// equal to the authcid: anything else would be proxy authorization
/// ([`SaslError::Authorization`]).
pub fn parse_plain(msg: &[u8]) -> Result<(String, String), SaslError> {
    let m = parse_plain_message(msg)?;
    if !m.authzid.is_empty() && m.authzid != m.authcid {
        return Err(SaslError::Authorization);
    }
    Ok((m.authcid, m.passwd))
}

/// Decodes one base64 response carrying UTF-8 text (a LOGIN username or password step).
pub fn decode_text(line: &[u8]) -> Result<String, SaslError> {
    let raw = decode_response(line)?;
    String::from_utf8(raw).map_err(|_| SaslError::Malformed)
}

/// A base64 challenge (RFC 4954 4 "334 <base64>", RFC 5034 4 "+ <base64>").
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        assert_eq!(
            decode_response(b"AHVzZXIAcGFzcw=="),
            Ok(b"\0user\0pass".to_vec())
        );
        // RFC 4954 4 / RFC 5034 4 / RFC 4959 3: "=" is an empty response.
        assert_eq!(decode_response(b"="), Ok(Vec::new()));
        assert_eq!(decode_response(b""), Ok(Vec::new()));
        assert_eq!(decode_response(b"not base64!"), Err(SaslError::Base64));
        assert_eq!(decode_response(b"AGFsaWNl*"), Err(SaslError::Base64));
        assert_eq!(decode_response(b"=="), Err(SaslError::Base64));
        assert_eq!(
            decode_response(b" AHVzZXIAcGFzcw=="),
            Err(SaslError::Base64)
        );
        assert!(is_cancel(b"*"));
        assert!(!is_cancel(b"**"));
        assert!(!is_cancel(b"* "));
        assert!(!is_cancel(b""));
    }

    #[test]
    fn plain() {
        let raw = decode_response(b"AHVzZXIAcGFzcw==").unwrap();
        assert_eq!(parse_plain(&raw), Ok(("user".into(), "pass".into())));
        assert_eq!(
            parse_plain(b"user\0user\0p"),
            Ok(("user".into(), "p".into()))
        );
        // Empty passwords are well-formed; the account check refuses them.
        assert_eq!(parse_plain(b"\0u\0"), Ok(("u".into(), String::new())));
        assert_eq!(parse_plain(b""), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"a\0b"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0\0p"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0u\0p\0"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0\xff\0p"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0u\0\xc3"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"x\0user\0p"), Err(SaslError::Authorization));
        let m = parse_plain_message(b"x\0user\0p").unwrap();
        assert_eq!((m.authzid.as_str(), m.authcid.as_str()), ("x", "user"));
        assert!(!format!("{m:?}").contains("\"p\""));
    }

    #[test]
    fn login_steps_and_challenges() {
        assert_eq!(encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(decode_text(b"VXNlcm5hbWU6"), Ok("Username:".into()));
        assert_eq!(decode_text(b"/w=="), Err(SaslError::Malformed));
        assert_eq!(decode_text(b"%%"), Err(SaslError::Base64));
    }

    #[test]
    fn limits() {
        // A PLAIN response at the RFC 4954 4 bound (12288 octets with CRLF) decodes; the
        // decoded message is 3/4 of it and the password keeps every octet.
        let pass = "p".repeat(9000);
        let line = encode(format!("\0user\0{pass}").as_bytes());
        assert!(line.len() + 2 <= MAX_RESPONSE_LINE);
        let raw = decode_response(line.as_bytes()).unwrap();
        assert_eq!(parse_plain(&raw), Ok(("user".into(), pass)));
        // Many NULs or a huge field never panic and stay malformed.
        assert_eq!(
            parse_plain(&vec![0u8; MAX_RESPONSE_LINE]),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_response(&vec![b'A'; MAX_RESPONSE_LINE + 1]),
            Err(SaslError::Base64)
        );
    }
}
