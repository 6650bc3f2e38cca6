//! SMTP replies (RFC 5321 4.2) with enhanced status codes (RFC 2034, RFC 3463).

use std::fmt::Write as _;

/// One SMTP reply. `text` may hold several lines separated by `\n`; they are sent as a
/// multiline reply (RFC 5321 4.2.1). CR and LF never reach the wire from `text` except as
/// that separator, so a driver-supplied text cannot inject extra replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// Reply with an enhanced status code (RFC 3463), the usual form after EHLO.
    pub fn esc(code: u16, class: u8, subject: u16, detail: u16, text: impl Into<String>) -> Reply {
        Reply::new(code, Some((class, subject, detail)), text)
    }

    /// 250 2.0.0 Ok
    pub fn ok() -> Reply {
        Reply::esc(250, 2, 0, 0, "Ok")
    }

    /// 250 2.0.0 Ok: stored (after a successful Deliver).
    pub fn stored() -> Reply {
        Reply::esc(250, 2, 0, 0, "Ok: stored")
    }

    /// 421 4.7.0 (RFC 5321 3.8: service closing transmission channel).
    pub fn closing(text: impl Into<String>) -> Reply {
        Reply::esc(421, 4, 7, 0, text)
    }

    /// 451 4.3.0 local error in processing (RFC 5321 4.2.2, RFC 3463 X.3.0).
    pub fn temp_failure() -> Reply {
        Reply::esc(451, 4, 3, 0, "Temporary local problem, try again later")
    }

    /// 550 5.7.1 relaying denied (RFC 3463 X.7.1), for the driver's recipient check.
    pub fn relay_denied() -> Reply {
        Reply::esc(550, 5, 7, 1, "Relay access denied")
    }

    /// 550 5.1.1 unknown mailbox (RFC 3463 X.1.1).
    pub fn no_such_user() -> Reply {
        Reply::esc(550, 5, 1, 1, "No such user here")
    }

    /// 553 5.7.1 sender not owned by the authenticated user (RFC 4954 section 7, RFC 6409 6.1).
    pub fn sender_not_owned() -> Reply {
        Reply::esc(
            553,
            5,
            7,
            1,
            "Sender address not owned by authenticated user",
        )
    }

    /// 452 4.3.1 insufficient system storage (RFC 3463 X.3.1), used by the health gate.
    pub fn storage_unavailable() -> Reply {
        Reply::esc(452, 4, 3, 1, "Insufficient system storage, try again later")
    }

    /// True for 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Wire form, every line ending in CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let code = if (200..=599).contains(&self.code) {
            self.code
        } else {
            // A reply code outside 2yz..5yz is a driver bug; never send garbage (RFC 5321 4.2).
            451
        };
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let _ = write!(out, "{code}{sep}");
            if let Some((a, b, c)) = self.enhanced {
                let _ = write!(out, "{a}.{b}.{c} ");
            }
            out.extend(line.chars().filter(|&ch| ch != '\r' && ch != '\n'));
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            String::from_utf8_lossy(&self.to_bytes()).trim_end()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiline() {
        assert_eq!(Reply::ok().to_bytes(), b"250 2.0.0 Ok\r\n");
        let r = Reply::new(250, None, "a\nb");
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
    }

    #[test]
    fn strips_injected_cr() {
        let r = Reply::esc(550, 5, 0, 0, "x\r\n250 ok");
        assert_eq!(r.to_bytes(), b"550-5.0.0 x\r\n550 5.0.0 250 ok\r\n");
    }
}
