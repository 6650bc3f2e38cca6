//! The configurable password policy (DESIGN.md section 2: minimum length, a strength
//! estimate, a block list of common and breached passwords; no forced periodic resets),
//! applied where an admin or a user chooses a password (`postern user add`, `user passwd`).
//! It adds to the fixed rules every stored password obeys (`password::check_policy`: at least
//! [`crate::MIN_PASSWORD_CHARS`], at most [`crate::MAX_PASSWORD_BYTES`], no control
//! characters), in the order NIST SP 800-63B 3.1.1.2 lists the checks:
//!
//! 1. the minimum length;
//! 2. the shipped list of the 10,000 most common passwords (`data/common-passwords.txt`);
//! 3. an optional breach list in the format breach databases publish (Have I Been Pwned's
//!    `SHA1HEX:count` lines, sorted by hash), searched on disk by bisection so that a list of
//!    any size (the full HIBP list is over 30 GB) costs a few dozen reads;
//! 4. zxcvbn's strength estimate (score 0 to 4), with the account's own address as a hint,
//!    so that `alice.example2026` is weak for alice@example.com.
//!
//! Every refusal is an [`AccountError::WeakPassword`] that says which rule refused it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use sha1::{Digest, Sha1};

use crate::AccountError;

/// The shipped block list: one password a line, `#` comments.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// How many passwords the shipped list holds (for messages and tests).
pub fn common_password_count() -> usize {
    COMMON.len()
}

/// The policy's settings (`[auth]` password_* in posternd's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Characters (Unicode scalar values), at least [`crate::MIN_PASSWORD_CHARS`].
    pub min_length: usize,
    /// The lowest zxcvbn score accepted: 0 (anything) to 4.
    pub min_strength: u8,
    /// A sorted `SHA1HEX:count` file of breached passwords.
    pub breached_sha1: Option<PathBuf>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 12,
            min_strength: 3,
            breached_sha1: None,
        }
    }
}

impl PasswordPolicy {
    /// Ok when `password` may be set for `address`; otherwise why not, in words for the admin.
    pub fn check(&self, password: &str, address: &str) -> Result<(), AccountError> {
        crate::password::check_policy(password)?;
        let weak = |why: String| Err(AccountError::WeakPassword(why));
        let length = password.chars().count();
        if length < self.min_length {
            return weak(format!(
                "too short: {length} characters, at least {} are required",
                self.min_length
            ));
        }
        if COMMON.contains(password.to_lowercase().as_str()) {
            return weak(format!(
                "it is one of the {} most common passwords",
                common_password_count()
            ));
        }
        if let Some(list) = &self.breached_sha1 {
            match breach_count(list, password) {
                Ok(Some(count)) => {
                    return weak(format!(
                        "it appears in the breached-password list {} ({count} times)",
                        list.display()
                    ))
                }
                Ok(None) => {}
                // Fail closed: a configured list that cannot be read must not let every
                // password through unchecked.
                Err(error) => {
                    return weak(format!(
                        "the breached-password list {} cannot be read: {error}",
                        list.display()
                    ))
                }
            }
        }
        let hints = hints(address);
        let hints: Vec<&str> = hints.iter().map(String::as_str).collect();
        let estimate = zxcvbn::zxcvbn(password, &hints);
        let score = u8::from(estimate.score());
        if score < self.min_strength {
            let mut why = format!(
                "too easy to guess (strength {score} of 4, at least {} is required)",
                self.min_strength
            );
            if let Some(feedback) = estimate.feedback() {
                if let Some(warning) = feedback.warning() {
                    why.push_str(&format!(": {warning}"));
                }
                for suggestion in feedback.suggestions() {
                    why.push_str(&format!(" {suggestion}"));
                }
            }
            return weak(why);
        }
        Ok(())
    }
}

/// Words a guesser would try first for this account: the address, its local part and the
/// labels of its domain.
fn hints(address: &str) -> Vec<String> {
    let address = address.to_lowercase();
    let mut out = vec![address.clone()];
    if let Some((local, domain)) = address.rsplit_once('@') {
        out.push(local.to_string());
        out.extend(domain.split('.').map(str::to_string));
    }
    out.retain(|w| !w.is_empty());
    out
}

/// How often `password` occurs in a breach list of `SHA1HEX:count` lines sorted by hash
/// (upper- or lower-case hex, LF or CRLF), or None when it does not. A lower-bound bisection
/// over byte offsets, as look(1) does: for an offset p, take the first line that starts at
/// or after p; whether its hash sorts at or after the one wanted (or there is no such line)
/// only turns from false to true as p grows, so the smallest p where it holds names the
/// only line that can match.
pub fn breach_count(list: &Path, password: &str) -> std::io::Result<Option<u64>> {
    let digest = Sha1::digest(password.as_bytes());
    let wanted: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    let mut file = File::open(list)?;
    let (mut low, mut high) = (0u64, file.metadata()?.len());
    while low < high {
        let mid = low + (high - low) / 2;
        let at_or_after = match line_from(&mut file, mid)? {
            Some(line) => hash_of(&line)? >= wanted,
            None => true,
        };
        if at_or_after {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    match line_from(&mut file, low)? {
        Some(line) if hash_of(&line)? == wanted => Ok(Some(count_of(&line))),
        _ => Ok(None),
    }
}

/// The first whole line that starts at or after `offset`; None past the last line.
fn line_from(file: &mut File, offset: u64) -> std::io::Result<Option<String>> {
    // From offset-1, so that a line starting exactly at `offset` is not skipped.
    let from = offset.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(&mut *file);
    if offset > 0 {
        let mut skipped = Vec::new();
        reader.read_until(b'\n', &mut skipped)?;
        if skipped.last() != Some(&b'\n') {
            return Ok(None);
        }
    }
    // A line is at most 40 hex digits, a colon and a count: bound what a damaged file can
    // make us read.
    let mut line = Vec::new();
    reader.take(4096).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn hash_of(line: &str) -> std::io::Result<String> {
    let hash = line.split(':').next().unwrap_or("").trim();
    if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not a SHA1HEX:count line: {:?}",
                line.trim_end().chars().take(60).collect::<String>()
            ),
        ));
    }
    Ok(hash.to_ascii_uppercase())
}

fn count_of(line: &str) -> u64 {
    line.split(':')
        .nth(1)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@example.test";

    fn sha1_hex(p: &str) -> String {
        Sha1::digest(p.as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    fn refusal(policy: &PasswordPolicy, password: &str) -> String {
        match policy.check(password, ALICE) {
            Err(AccountError::WeakPassword(why)) => why,
            other => panic!("{password:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn the_shipped_list_holds_ten_thousand_common_passwords() {
        assert_eq!(common_password_count(), 10_000);
        for p in ["123456", "password", "qwerty", "iloveyou", "trustno1"] {
            assert!(COMMON.contains(p), "{p}");
        }
    }

    #[test]
    fn short_common_and_guessable_passwords_are_refused_with_the_rule_that_refused_them() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            refusal(&policy, "Xk9#mQ2v"),
            "too short: 8 characters, at least 12 are required"
        );
        // Long enough, but on the list (compared case-insensitively).
        let why = refusal(&policy, "LeaveMeAlone");
        assert_eq!(why, "it is one of the 10000 most common passwords");
        refusal(&policy, "QWERTY123456");
        // Long, not on the list, yet predictable: the estimate refuses it and says why.
        let why = refusal(&policy, "aaaaaaaaaaaaaaaa");
        assert!(why.starts_with("too easy to guess (strength"), "{why}");
        assert!(
            why.contains("Repeats like \"aaa\" are easy to guess"),
            "{why}"
        );
        // The account's own name is a hint: strong enough for another account, not its own.
        policy
            .check("alice@example.test", "bob@elsewhere.test")
            .unwrap();
        let why = refusal(&policy, "alice@example.test");
        assert!(why.starts_with("too easy to guess"), "{why}");
        // The fixed rules still apply first.
        assert!(refusal(&policy, "tab\there-is-long-enough").contains("control characters"));
    }

    #[test]
    fn strong_passwords_and_passphrases_pass() {
        let policy = PasswordPolicy::default();
        for p in [
            "Alice-Secret-9f3Kq27xLm",
            "correct horse battery staple orbit",
            "Bench-Passw0rd-4kQ9zX",
        ] {
            policy.check(p, ALICE).unwrap();
        }
    }

    #[test]
    fn the_limits_are_configurable() {
        let policy = PasswordPolicy {
            min_length: 8,
            min_strength: 0,
            breached_sha1: None,
        };
        policy.check("zz9plural", ALICE).unwrap();
        // The shipped list applies whatever the strength setting.
        refusal(&policy, "baseball");
    }

    /// A HIBP-format file: sorted hashes with counts, CRLF as downloaded.
    fn breach_list(dir: &Path, passwords: &[&str], filler: usize) -> PathBuf {
        let mut lines: Vec<String> = passwords
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}:{}", sha1_hex(p), 1000 + i))
            .collect();
        // Filler hashes around them, so that the bisection has real work to do.
        for i in 0..filler {
            lines.push(format!("{}:{}", sha1_hex(&format!("filler-{i}")), i + 1));
        }
        lines.sort();
        let path = dir.join("pwned.txt");
        std::fs::write(&path, lines.join("\r\n") + "\r\n").unwrap();
        path
    }

    #[test]
    fn breach_list_lookup_finds_every_listed_hash_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let listed = ["Tr0ub4dor&3-purple-ostrich", "Zebra-Quilt-Lamp-81", "x"];
        let path = breach_list(dir.path(), &listed, 5000);
        for (i, p) in listed.iter().enumerate() {
            assert_eq!(
                breach_count(&path, p).unwrap(),
                Some(1000 + i as u64),
                "{p}"
            );
        }
        for i in [0, 1, 2499, 4999] {
            assert!(breach_count(&path, &format!("filler-{i}"))
                .unwrap()
                .is_some());
        }
        for p in ["not listed", "Tr0ub4dor&3-purple-ostricH", ""] {
            assert_eq!(breach_count(&path, p).unwrap(), None, "{p}");
        }
        // The first and last lines of the file, and a one-line file.
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap().to_string();
        let last = text.lines().last().unwrap().to_string();
        for line in [first, last] {
            let probe = dir.path().join("one.txt");
            std::fs::write(&probe, format!("{line}\n")).unwrap();
            let hash = &line[..40];
            let found = listed
                .iter()
                .chain(&["filler-0"])
                .map(|p| p.to_string())
                .chain((0..5000).map(|i| format!("filler-{i}")))
                .find(|p| sha1_hex(p) == hash)
                .unwrap();
            assert!(breach_count(&probe, &found).unwrap().is_some());
            assert!(breach_count(&path, &found).unwrap().is_some());
        }
        // An empty file lists nothing.
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(breach_count(&empty, "x").unwrap(), None);
    }

    #[test]
    fn a_breached_password_is_refused_even_when_strong() {
        let dir = tempfile::tempdir().unwrap();
        let breached = "Tr0ub4dor&3-purple-ostrich";
        let path = breach_list(dir.path(), &[breached], 100);
        let mut policy = PasswordPolicy::default();
        policy.check(breached, ALICE).unwrap();
        policy.breached_sha1 = Some(path.clone());
        let why = refusal(&policy, breached);
        assert_eq!(
            why,
            format!(
                "it appears in the breached-password list {} (1000 times)",
                path.display()
            )
        );
        policy.check("Alice-Secret-9f3Kq27xLm", ALICE).unwrap();
        // A list that cannot be read refuses rather than letting everything through.
        policy.breached_sha1 = Some(dir.path().join("missing.txt"));
        assert!(refusal(&policy, "Alice-Secret-9f3Kq27xLm").contains("cannot be read"));
        // So does a file that is not a breach list.
        let junk = dir.path().join("junk.txt");
        std::fs::write(&junk, "hello\nworld\n").unwrap();
        policy.breached_sha1 = Some(junk);
        assert!(refusal(&policy, "Alice-Secret-9f3Kq27xLm").contains("not a SHA1HEX:count line"));
    }
}
