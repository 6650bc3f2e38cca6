//! argon2id password hashing (PHC string format) and the password policy.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use crate::AccountError;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Shortest password accepted (NIST SP 800-63B 5.1.1.1 minimum for user-chosen secrets).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted: generous for passphrases, bounded so that one request cannot
/// make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Result<Argon2<'static>, AccountError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub(crate) fn check_policy(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword(format!(
            "at least {MIN_PASSWORD_CHARS} characters are required"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WeakPassword(format!(
            "at most {MAX_PASSWORD_BYTES} bytes are allowed"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(AccountError::WeakPassword(
            "control characters are not allowed".into(),
        ));
    }
    Ok(())
}

/// Hashes `password` with argon2id (m=19456 KiB, t=2, p=1) and a fresh 128-bit random salt,
/// returning a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`). Applies the password policy.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    check_policy(password)?;
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `password` against a PHC hash. The comparison inside argon2 is constant-time; the
/// parameters come from the hash, so hashes made with other costs still verify.
pub(crate) fn verify(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends one verification's worth of time on a hash made with production parameters, so
/// that a login for an unknown user costs the same as one with a wrong password.
pub(crate) fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_unchecked("postern-timing-equaliser").ok());
    if let Some(hash) = dummy {
        let _ = verify(hash, password);
    }
}
