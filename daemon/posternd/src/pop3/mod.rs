//! POP3 sessions (RFC 1939, RFC 2449, RFC 2595, RFC 5034) over the store; the protocol
//! itself lives in the sans-IO `postern-pop3`.
//!
//! The maildrop is the user's INBOX. Decisions documented here:
//! - Message numbers are a snapshot of the INBOX taken at login (RFC 1939 5: they do not
//!   change during a session); messages delivered later appear in the next session.
//! - UIDL is "<UIDVALIDITY>.<UID>", the same message identity IMAP uses, so it is unique
//!   and stable across sessions (RFC 1939 7) and never reused.
//! - RETR marks the message \Seen in the store (as Dovecot does), so IMAP clients see it
//!   read; TOP does not.
//! - QUIT in TRANSACTION expunges the messages marked with DELE and answers +OK only once
//!   the expunge is durable; a connection that drops or times out removes nothing (RFC 1939
//!   6). A message that IMAP expunged meanwhile is still served while its bytes remain, and
//!   deleting it again is harmless.
//! - One POP3 session per user at a time: a second login gets -ERR [IN-USE] (RFC 2449
//!   8.1.1). IMAP sessions are not locked out.

pub mod metrics;
mod session;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use postern_config::Config;
use postern_pop3::Limits;

use crate::connection_limits::ConnectionLimits;

pub use session::run;

/// POP3 state shared by every worker: limits, connection slots and maildrop locks.
pub struct Pop3State {
    pub limits: Limits,
    pub connection_limits: Arc<ConnectionLimits>,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl Pop3State {
    pub fn new(config: &Config) -> Pop3State {
        let pop3 = &config.pop3;
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Pop3State {
            limits: Limits {
                max_command_line: size(pop3.max_command_line),
                max_errors: size(pop3.max_errors),
                timeout: std::time::Duration::from_secs(pop3.timeout_secs),
                timeout_login: std::time::Duration::from_secs(pop3.timeout_login_secs),
            },
            connection_limits: ConnectionLimits::new(
                size(pop3.max_connections),
                size(pop3.max_connections_per_ip),
            ),
            locks: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Takes the maildrop lock of `user`; None when another POP3 session holds it.
    pub fn lock(&self, user: &str) -> Option<MaildropLock> {
        let mut locks = self.locks.lock().ok()?;
        if !locks.insert(user.to_string()) {
            return None;
        }
        Some(MaildropLock {
            locks: self.locks.clone(),
            user: user.to_string(),
        })
    }
}

/// Held while a session is in the TRANSACTION state; released on drop, whatever way the
/// session ends.
pub struct MaildropLock {
    locks: Arc<Mutex<HashSet<String>>>,
    user: String,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Ok(mut locks) = self.locks.lock() {
            locks.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_per_user_released_on_drop() {
        let state = Pop3State::new(&Config::default());
        let a = state.lock("alice@example.test").unwrap();
        assert!(state.lock("alice@example.test").is_none());
        let _b = state.lock("bob@example.test").unwrap();
        drop(a);
        assert!(state.lock("alice@example.test").is_some());
    }
}
