//! SASL PLAIN (RFC 4616) responses for POP3 AUTH (RFC 5034).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("invalid base64")]
    Base64,
    #[error("malformed SASL response")]
    Malformed,
}

/// Decodes a base64 client response. "=" is the empty response (RFC 5034 4).
pub fn decode(text: &str) -> Result<Vec<u8>, SaslError> {
    if text == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(text).map_err(|_| SaslError::Base64)
}

/// Splits a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 2) into
/// (username, password). An authorization identity different from the authentication
/// identity (proxy authorization) is refused.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let raw = decode("AHVzZXIAcGFzcw==").unwrap();
        assert_eq!(parse_plain(&raw), Ok(("user".into(), "pass".into())));
        assert_eq!(decode("="), Ok(Vec::new()));
        assert_eq!(decode("not base64!"), Err(SaslError::Base64));
        assert_eq!(parse_plain(b""), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"a\0b"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0\0p"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"x\0user\0p"), Err(SaslError::Malformed));
        assert!(parse_plain(b"user\0user\0p").is_ok());
        assert_eq!(parse_plain(b"\0u\0p\0"), Err(SaslError::Malformed));
    }
}
