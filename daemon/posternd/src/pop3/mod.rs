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
//! - LIST, STAT and the login's size are the octets RETR sends (RFC 1939 11: CRLF line
//!   endings, before byte-stuffing; Dovecot's "virtual size"), not the stored size: a message
//!   stored with bare LF (IMAP APPEND, an import) counts each bare LF as two octets. Each
//!   message is read once to count them; the counts are kept per INBOX across sessions
//!   ([`Pop3State::wire_sizes`]), so a login reads only the messages that arrived since.

pub mod metrics;
mod session;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use postern_config::Config;
use postern_pop3::Limits;
use postern_store::{MailboxId, MessageMeta, Store};

use crate::connection_limits::ConnectionLimits;

pub use session::run;

/// POP3 state shared by every worker: limits, connection slots and maildrop locks.
pub struct Pop3State {
    pub limits: Limits,
    pub connection_limits: Arc<ConnectionLimits>,
    locks: Arc<Mutex<HashSet<String>>>,
    /// RETR octet counts by INBOX and UID (stored bytes never change and UIDs are never
    /// reused, so an entry stays right); each login keeps only its maildrop's current UIDs.
    wire_sizes: Mutex<HashMap<MailboxId, HashMap<u32, u64>>>,
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
            wire_sizes: Mutex::new(HashMap::new()),
        }
    }

    /// The octets RETR sends for each of `messages` (of `mailbox`), in order: cached counts,
    /// and one read of each message not counted before (off the event loop). A message that
    /// cannot be read (expunged and reclaimed meanwhile) counts its stored size and is not
    /// cached.
    pub async fn wire_sizes(
        &self,
        store: &Store,
        mailbox: MailboxId,
        messages: &[MessageMeta],
    ) -> Vec<u64> {
        let cached = self
            .wire_sizes
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&mailbox))
            .unwrap_or_default();
        let missing: Vec<MessageMeta> = messages
            .iter()
            .filter(|m| !cached.contains_key(&m.uid))
            .cloned()
            .collect();
        let mut known: HashMap<u32, u64> = HashMap::with_capacity(messages.len());
        for m in messages {
            if let Some(&size) = cached.get(&m.uid) {
                known.insert(m.uid, size);
            }
        }
        if !missing.is_empty() {
            let store = store.clone();
            let counted = tokio::task::spawn_blocking(move || {
                missing
                    .iter()
                    .filter_map(|m| {
                        let bytes = store.read_message(m).ok()?;
                        Some((m.uid, wire_size(&bytes)))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            known.extend(counted);
        }
        let sizes = messages
            .iter()
            .map(|m| known.get(&m.uid).copied().unwrap_or(m.size))
            .collect();
        if let Ok(mut c) = self.wire_sizes.lock() {
            c.insert(mailbox, known);
        }
        sizes
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

/// The octets of `message` as a RETR response carries it, without the terminator and
/// before byte-stuffing: every line ends in CRLF (a stored CRLF counts 2, a bare LF 2, a
/// last line without one gets one). Mirrors `postern_pop3::response::multiline`.
pub fn wire_size(message: &[u8]) -> u64 {
    let mut size = 0u64;
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        size += line.len() as u64 + 2;
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_size_is_what_retr_sends() {
        let cases: [&[u8]; 12] = [
            b"",
            b"a\r\n",
            b"a\n",
            b"a",
            b"a\r",
            b"a\r\r\n",
            b"\n\n\n",
            b"Subject: x\n\nbody\n.dot\n..two\n.\nlast",
            b"Subject: x\r\n\r\nmixed\nendings\r\n",
            b"bare\rcr inside\r\n",
            b"\r\n",
            b"x\r\ny",
        ];
        for m in cases {
            let wire = postern_pop3::response::multiline(m, None);
            let unstuffed = postern_pop3::response::unstuff(&wire).unwrap();
            assert_eq!(wire_size(m), unstuffed.len() as u64, "{m:?}");
        }
        assert_eq!(wire_size(b"a\nb\n"), 6);
        assert_eq!(wire_size(b"a\r\nb\r\n"), 6);
    }

    #[tokio::test]
    async fn wire_sizes_are_counted_once_and_kept_for_the_current_messages() {
        let t = crate::test_store::open();
        let (store, inbox) = (&t.store, t.inbox);
        for body in [
            &b"A: 1\r\n\r\ncrlf\r\n"[..],
            b"A: 2\n\nbare\nlf",
            b"A: 3\n\nx\n",
        ] {
            let request = crate::test_store::request(inbox, body);
            store.append(0, request).await.unwrap();
        }
        let messages = store.messages(inbox);
        assert_eq!(
            messages.iter().map(|m| m.size).collect::<Vec<_>>(),
            [14, 13, 8]
        );
        let state = Pop3State::new(&Config::default());
        let sizes = state.wire_sizes(store, inbox, &messages).await;
        assert_eq!(sizes, [14, 18, 11]);

        // Unreadable copies of the metadata: what was counted comes from the cache, the
        // rest falls back to the stored size (and is not cached). The mailbox is one the
        // store does not know, so the read cannot find the message's current place either.
        let unreadable = |m: &MessageMeta| {
            let mut m = m.clone();
            m.location.len = 0;
            m.mailbox = postern_store::MailboxId(u32::MAX);
            m.size = 999;
            m
        };
        let broken: Vec<MessageMeta> = messages.iter().map(unreadable).collect();
        assert_eq!(
            state.wire_sizes(store, inbox, &broken).await,
            [14, 18, 11],
            "counted messages are not read again"
        );
        // A login whose maildrop lacks message 2 (expunged) drops it from the cache.
        assert_eq!(state.wire_sizes(store, inbox, &broken[..1]).await, [14]);
        assert_eq!(
            state.wire_sizes(store, inbox, &broken).await,
            [14, 999, 999]
        );
        // Readable again: counted (and cached) again.
        assert_eq!(
            state.wire_sizes(store, inbox, &messages).await,
            [14, 18, 11]
        );
        store.shutdown();
    }

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
