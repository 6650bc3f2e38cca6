//! SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) response decoding for
//! SMTP AUTH (RFC 4954).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// RFC 4954 4: a response that is not valid base64 is answered 501 5.5.2.
    #[error("invalid base64")]
    Base64,
    #[error("malformed SASL response")]
    Malformed,
}

/// Decodes a base64 client response. "=" is the empty response (RFC 4954 4).
pub fn decode(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_matches(' ');
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::Base64)
}

/// Splits a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 2) into
/// (username, password). A non-empty authorization identity different from the
/// authentication identity would be proxy authorization, which is not supported.
pub fn parse_plain(msg: &[u8]) -> Result<(String, String), SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authc.is_empty() || (!authz.is_empty() && authz != authc) {
        return Err(SaslError::Malformed);
    }
    let user = String::from_utf8(authc.to_vec()).map_err(|_| SaslError::Malformed)?;
    let pass = String::from_utf8(pass.to_vec()).map_err(|_| SaslError::Malformed)?;
    Ok((user, pass))
}

/// Decodes one LOGIN step (username or password) into UTF-8 text.
pub fn parse_login_step(line: &str) -> Result<String, SaslError> {
    let raw = decode(line)?;
    String::from_utf8(raw).map_err(|_| SaslError::Malformed)
}

pub fn encode(text: &str) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let raw = decode("AHVzZXIAcGFzcw==").unwrap();
        assert_eq!(
            parse_plain(&raw).unwrap(),
            ("user".to_string(), "pass".to_string())
        );
        assert_eq!(decode("not base64!"), Err(SaslError::Base64));
        assert_eq!(parse_plain(b"a\0b"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"x\0user\0p"), Err(SaslError::Malformed));
        assert!(parse_plain(b"user\0user\0p").is_ok());
    }
}
