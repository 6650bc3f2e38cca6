//! AUTHENTICATE (RFC 9051 6.2.2, SASL-IR RFC 4959) and LOGIN (RFC 9051 6.2.3).

use super::CommandBody;
use crate::parser::{PResult, ParseError, Parser};

/// Decodes one SASL response line (RFC 9051 6.2.2: BASE64, or "=" for an empty response
/// with SASL-IR, RFC 4959 3). Used for the initial response and for continuation lines read
/// with [`CommandReceiver::next_line`](crate::receiver::CommandReceiver::next_line).
/// The decoding is postern-sasl's, shared with SMTP and POP3.
pub fn decode_sasl_response(line: &[u8]) -> Result<Vec<u8>, ParseError> {
    postern_sasl::decode_response(line).map_err(ParseError::new)
}

/// RFC 9051 6.2.2: a continuation line of "*" cancels the exchange (postern-sasl's check).
pub use postern_sasl::is_cancel as is_sasl_cancel;

pub(super) fn authenticate(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]
    p.sp()?;
    let mechanism = p.keyword()?;
    let initial_response = if p.eat(b' ') {
        let start = p.rest();
        let len = start
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
            .count();
        if len == 0 {
            return Err(p.error("expected an initial response"));
        }
        let data = decode_sasl_response(&start[..len])?;
        p.advance(len);
        Some(data)
    } else {
        None
    };
    Ok(CommandBody::Authenticate {
        mechanism,
        initial_response,
    })
}

pub(super) fn login(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // login = "LOGIN" SP userid SP password; both astrings.
    p.sp()?;
    let username = p.astring()?;
    p.sp()?;
    let password = p.astring()?;
    Ok(CommandBody::Login { username, password })
}

#[cfg(test)]
mod tests {
    use crate::command::{parse, CommandBody};

    #[test]
    fn authenticate() {
        let c = parse(b"a AUTHENTICATE plain\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Authenticate {
                mechanism: "PLAIN".into(),
                initial_response: None
            }
        );
        let c = parse(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Authenticate {
                mechanism: "PLAIN".into(),
                initial_response: Some(b"\0alice\0secret".to_vec())
            }
        );
        let c = parse(b"a AUTHENTICATE PLAIN =\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Authenticate {
                mechanism: "PLAIN".into(),
                initial_response: Some(vec![])
            }
        );
        assert!(parse(b"a AUTHENTICATE PLAIN !!\r\n").is_err());
        assert!(parse(b"a AUTHENTICATE PLAIN AGFsaWNl*\r\n").is_err());
        assert!(parse(b"a AUTHENTICATE\r\n").is_err());
        assert!(parse(b"a AUTHENTICATE PLAIN \r\n").is_err());
    }

    #[test]
    fn login() {
        let c = parse(b"a1 LOGIN alice \"p a\\\"ss\"\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Login {
                username: b"alice".to_vec(),
                password: b"p a\"ss".to_vec()
            }
        );
        let c = parse(b"a1 LOGIN {5+}\r\nalice {3}\r\n\xc3\xa9x\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Login {
                username: b"alice".to_vec(),
                password: b"\xc3\xa9x".to_vec()
            }
        );
        assert!(parse(b"a1 LOGIN alice\r\n").is_err());
        assert!(parse(b"a1 LOGIN alice b c\r\n").is_err());
    }
}
