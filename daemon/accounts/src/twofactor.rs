//! Two-factor authentication (TOTP, RFC 6238) and app passwords (DESIGN.md section 2).
//!
//! Mail clients cannot ask for a one-time code, so once an account has 2FA its main password
//! stops working for SMTP, IMAP and POP3, as at the large mail providers; each client gets
//! an app password instead: generated here, for one protocol, named, revocable, shown once.
//! The TOTP secret serves the web console (when it comes) and `postern user 2fa check`.
//!
//! Generated secrets (app passwords, recovery codes) carry 100 bits of randomness, so a
//! SHA-256 digest stores them safely (a slow hash protects only guessable secrets) and
//! checking one costs microseconds instead of an argon2 run per stored app password.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mail protocols an app password can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.to_ascii_lowercase().as_str() {
            "smtp" => Ok(Protocol::Smtp),
            "imap" => Ok(Protocol::Imap),
            "pop3" => Ok(Protocol::Pop3),
            _ => Err(format!("unknown protocol {s:?}: smtp, imap or pop3")),
        }
    }
}

/// An account's TOTP enrolment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpState {
    /// The shared secret, base32 (RFC 4648, no padding) as authenticator apps take it.
    pub secret: String,
    /// Enrolment time, seconds since the Unix epoch.
    pub enabled: i64,
    /// SHA-256 (hex) of each unused recovery code.
    pub recovery: Vec<String>,
}

/// One app password: only its digest is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPassword {
    pub name: String,
    pub protocol: Protocol,
    /// SHA-256 (hex) of the password.
    pub digest: String,
    pub created: i64,
}

/// What enrolment shows the admin, once.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub recovery_codes: Vec<String>,
}

/// RFC 6238 1.2: the HMAC functions TOTP may use; enrolment uses SHA-1, what every
/// authenticator app supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// RFC 6238 4: the time step.
pub const PERIOD: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;

/// RFC 6238 4.2 (HOTP of RFC 4226 5.3 over the time-step counter): the code for `unix` time.
pub fn totp(secret: &[u8], unix: u64, algorithm: Algorithm, digits: u32) -> u32 {
    let counter = (unix / PERIOD).to_be_bytes();
    let mac = match algorithm {
        Algorithm::Sha1 => hmac_of::<Hmac<sha1::Sha1>>(secret, &counter),
        Algorithm::Sha256 => hmac_of::<Hmac<Sha256>>(secret, &counter),
        Algorithm::Sha512 => hmac_of::<Hmac<sha2::Sha512>>(secret, &counter),
    };
    // RFC 4226 5.3: dynamic truncation.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        .unwrap_or(0);
    word % 10u32.pow(digits)
}

fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (RFC 2104 2), so this cannot fail.
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Whether `code` is the SHA-1, 6-digit code of the base32 `secret` at `unix`, or of the step
/// before or after (RFC 6238 5.2 recommends one step of allowed delay).
pub fn verify_totp(secret: &str, code: &str, unix: u64) -> bool {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(key) = BASE32_NOPAD.decode(secret.as_bytes()) else {
        return false;
    };
    [
        unix.saturating_sub(PERIOD),
        unix,
        unix.saturating_add(PERIOD),
    ]
    .iter()
    .any(|&t| {
        let expected = format!(
            "{:0width$}",
            totp(&key, t, Algorithm::Sha1, DIGITS),
            width = DIGITS as usize
        );
        bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
    })
}

/// The key URI authenticator apps scan (Google Authenticator's `otpauth://` format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    let issuer_enc = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{}?secret={secret}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        percent_encode(account)
    )
}

/// RFC 3986 2.3: everything but the unreserved characters is percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A new random secret: 20 bytes (160 bits, RFC 4226 4's recommended length), base32.
pub(crate) fn new_secret() -> String {
    let mut key = [0u8; 20];
    rand::rng().fill_bytes(&mut key);
    BASE32_NOPAD.encode(&key)
}

/// A generated credential: 20 base32 letters (100 bits) in groups of four, easy to type.
pub(crate) fn new_code() -> String {
    let mut bytes = [0u8; 13];
    rand::rng().fill_bytes(&mut bytes);
    let letters: String = BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
        .chars()
        .take(20)
        .collect();
    letters
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The stored form of a generated credential. Spaces, dashes and case do not matter, so a
/// code typed as shown or as one word is the same code.
pub(crate) fn digest(code: &str) -> String {
    let canonical: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time comparison of two digests.
pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: the seeds are the ASCII strings "1234567890" repeated to the
    /// hash's output length.
    fn seed(len: usize) -> Vec<u8> {
        b"1234567890".iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn rfc_6238_appendix_b_test_vectors() {
        let vectors: [(u64, u32, u32, u32); 6] = [
            (59, 94287082, 46119246, 90693936),
            (1111111109, 7081804, 68084774, 25091201),
            (1111111111, 14050471, 67062674, 99943326),
            (1234567890, 89005924, 91819424, 93441116),
            (2000000000, 69279037, 90698825, 38618901),
            (20000000000, 65353130, 77737706, 47863826),
        ];
        for (time, sha1, sha256, sha512) in vectors {
            assert_eq!(totp(&seed(20), time, Algorithm::Sha1, 8), sha1, "{time}");
            assert_eq!(
                totp(&seed(32), time, Algorithm::Sha256, 8),
                sha256,
                "{time}"
            );
            assert_eq!(
                totp(&seed(64), time, Algorithm::Sha512, 8),
                sha512,
                "{time}"
            );
        }
    }

    #[test]
    fn codes_verify_within_one_step_and_not_beyond() {
        let secret = BASE32_NOPAD.encode(&seed(20));
        let t = 1_111_111_111;
        let code = |t: u64| format!("{:06}", totp(&seed(20), t, Algorithm::Sha1, 6));
        assert_eq!(code(59), "287082");
        assert!(verify_totp(&secret, &code(t), t));
        assert!(verify_totp(&secret, &code(t - 30), t));
        assert!(verify_totp(&secret, &format!(" {} ", code(t + 30)), t));
        assert!(!verify_totp(&secret, &code(t - 90), t));
        assert!(!verify_totp(&secret, &code(t + 90), t));
        for bad in ["", "12345", "1234567", "abcdef", "287082"] {
            if bad != code(t) && bad != code(t - 30) && bad != code(t + 30) {
                assert!(!verify_totp(&secret, bad, t), "{bad}");
            }
        }
        assert!(!verify_totp("not base32!", &code(t), t));
    }

    #[test]
    fn otpauth_uri_encodes_the_label() {
        assert_eq!(
            otpauth_uri("Postern mail.example.test", "alice@example.test", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Postern%20mail.example.test:alice%40example.test?secret=JBSWY3DPEHPK3PXP\
             &issuer=Postern%20mail.example.test&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn generated_codes_are_random_and_typed_forms_match() {
        let a = new_code();
        assert_eq!(a.len(), 24, "{a}");
        assert_ne!(a, new_code());
        let plain = a.replace('-', "").to_uppercase();
        assert!(same_digest(&digest(&a), &digest(&plain)));
        assert!(!same_digest(&digest(&a), &digest(&new_code())));
        assert_eq!(
            BASE32_NOPAD.decode(new_secret().as_bytes()).unwrap().len(),
            20
        );
    }
}
