//! Drives one POP3 connection: feeds the sans-IO `postern_pop3::Session` from the socket and
//! carries out what it asks for (TLS, password checks, the maildrop snapshot, reads, the
//! durable UPDATE).

use std::net::SocketAddr;
use std::sync::Arc;

use postern_pop3::{
    events, Action, Answer, MaildropError, MessageInfo, ReadError, Session, SessionParams,
};
use postern_store::{FlagOp, MailboxId, MessageMeta, StoreError};
use tokio::net::TcpStream;

use super::MaildropLock;
use crate::login::{self, Attempt, Service};
use crate::server::Shared;
use crate::smtp::connection::Connection;

/// Bytes read from the socket per call; the session buffers what it needs.
const READ_CHUNK: usize = 16 * 1024;
/// Serves one POP3 connection until it ends: port 110 (`implicit_tls` false, STLS) or 995.
pub async fn run(
    shared: Arc<Shared>,
    _shard: usize,
    implicit_tls: bool,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let label = if implicit_tls { "pop3s" } else { "pop3" };
    let metrics = &shared.metrics.pop3;
    metrics
        .connections
        .get_or_create(&vec![("listener", label.to_string())])
        .inc();
    let slot = match shared.pop3.connection_limits.acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            let reason = match refusal {
                crate::connection_limits::Refusal::TooManyTotal => "too_many_connections",
                crate::connection_limits::Refusal::TooManyFromAddress => {
                    "too_many_connections_from_ip"
                }
            };
            tracing::warn!(event = "pop3.connection.refused", %peer, reason);
            metrics
                .connections_refused
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc();
            let mut conn = Connection::Plain(tcp);
            if !implicit_tls {
                // RFC 2449 8 / RFC 3206 4: a temporary refusal instead of the greeting.
                let _ = conn
                    .write_all(b"-ERR [SYS/TEMP] Too many connections, try again later\r\n")
                    .await;
            }
            conn.shutdown().await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    metrics.connections_active.inc();
    tracing::debug!(event = "pop3.connection.opened", %peer, listener = label);
    let mut conn = Connection::Plain(tcp);
    let handshake_ok = if implicit_tls {
        // RFC 8314 3.3: implicit TLS from the first byte.
        match conn.start_tls(shared.tls.clone()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(event = "pop3.tls.handshake_failed", %peer, %error);
                crate::peer_noise::handshake_failed(&error);
                false
            }
        }
    } else {
        true
    };
    if handshake_ok {
        let mut session = Session::new(SessionParams {
            hostname: shared.config.server.hostname.clone(),
            limits: shared.pop3.limits.clone(),
            tls_active: implicit_tls,
            tls_available: true,
        });
        let mut driver = Driver {
            shared: &shared,
            label,
            peer,
            out: session.greeting(),
            conn,
            maildrop: None,
        };
        driver.drive(&mut session).await;
        driver.conn.shutdown().await;
        // The maildrop lock goes with the driver.
    }
    shared.metrics.pop3.connections_active.dec();
    drop(slot);
    tracing::debug!(event = "pop3.connection.closed", %peer);
}

/// The maildrop of the TRANSACTION state: the INBOX snapshot taken at login.
struct Maildrop {
    user: String,
    mailbox: MailboxId,
    messages: Vec<MessageMeta>,
    _lock: MaildropLock,
}

struct Driver<'a> {
    shared: &'a Shared,
    label: &'static str,
    peer: SocketAddr,
    conn: Connection,
    /// Responses not yet written: flushed before every read so pipelined responses go out
    /// together (RFC 2449 6.6).
    out: Vec<u8>,
    maildrop: Option<Maildrop>,
}

impl Driver<'_> {
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        // A client that stops reading (a large RETR) must not hold the connection and the
        // maildrop lock forever: writes get the inactivity timer too (RFC 1939 3).
        let limit = self.shared.pop3.limits.timeout;
        let ok = matches!(
            tokio::time::timeout(limit, self.conn.write_all(&self.out)).await,
            Ok(Ok(()))
        );
        if !ok {
            tracing::info!(event = "pop3.write_failed", peer = %self.peer, pending = self.out.len());
        }
        self.out.clear();
        ok
    }

    async fn drive(&mut self, session: &mut Session) {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        // DESIGN.md 6: timeouts are deadlines, not idle timers that each byte restarts. The
        // whole AUTHORIZATION state (STLS and login included) has one deadline of
        // `timeout_login_secs` from the greeting; after login each command gets `timeout_secs`
        // from when the server starts waiting for it (RFC 1939 3).
        let login_deadline = tokio::time::Instant::now() + self.shared.pop3.limits.timeout_login;
        let mut deadline = login_deadline;
        let mut unit = None;
        loop {
            match session.next_action() {
                Action::Send(bytes) => {
                    self.out.extend_from_slice(&bytes);
                    // Large responses (RETR) go out at once rather than accumulating.
                    if self.out.len() >= READ_CHUNK && !self.flush().await {
                        return;
                    }
                }
                Action::NeedInput => {
                    if !self.flush().await {
                        return;
                    }
                    if !session.is_authenticated() {
                        deadline = login_deadline;
                    } else if unit != Some(session.progress()) {
                        unit = Some(session.progress());
                        deadline = tokio::time::Instant::now() + session.current_timeout();
                    }
                    buf.clear();
                    match tokio::time::timeout_at(deadline, self.conn.read_buf(&mut buf)).await {
                        // RFC 1939 6: a connection that ends without QUIT removes nothing.
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(_)) => session.receive(&buf),
                        Err(_) => session.on_timeout(),
                    }
                }
                Action::StartTls => {
                    if !self.flush().await {
                        return;
                    }
                    match self.conn.start_tls(self.shared.tls.clone()).await {
                        Ok(()) => session.tls_started(),
                        Err(error) => {
                            tracing::debug!(event = "pop3.tls.handshake_failed", peer = %self.peer, %error);
                            crate::peer_noise::handshake_failed(&error);
                            return;
                        }
                    }
                }
                Action::Authenticate {
                    mechanism,
                    username,
                    password,
                } => {
                    // Flush what came before: a failed check waits before it is answered.
                    if !self.flush().await {
                        return;
                    }
                    let attempt = Attempt {
                        service: Service::Pop3,
                        peer: self.peer,
                        mechanism,
                        username: &username,
                    };
                    let answer = match login::verify(self.shared, attempt, password).await {
                        login::Verdict::Accepted => Answer::Auth(true),
                        login::Verdict::Refused => Answer::Auth(false),
                        login::Verdict::Blocked => Answer::AuthBlocked,
                    };
                    session.resolve(answer);
                }
                Action::LoadMaildrop { username } => {
                    let answer = self.load_maildrop(&username).await;
                    session.resolve(Answer::Maildrop(answer));
                }
                Action::Retrieve { msg, top } => {
                    let answer = self.retrieve(msg, top).await;
                    session.resolve(Answer::Message(answer));
                }
                Action::Commit { deleted } => {
                    let answer = self.commit(&deleted).await;
                    session.resolve(Answer::Committed(answer));
                }
                Action::Log(event) => self.log(event.name, &event.detail),
                Action::Close => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    fn log(&self, name: &'static str, detail: &str) {
        // The driver logs these itself with the fields only it knows.
        let logged_by_driver = [
            events::AUTH_SUCCEEDED,
            events::AUTH_FAILED,
            events::LOGIN,
            events::UPDATE,
            events::UPDATE_FAILED,
        ]
        .contains(&name);
        if name == events::TIMEOUT {
            tracing::info!(event = name, peer = %self.peer, user = self.maildrop.as_ref().map(|m| m.user.as_str()));
        } else if !logged_by_driver {
            tracing::info!(event = name, peer = %self.peer, detail = %detail);
        }
        let metrics = &self.shared.metrics.pop3;
        if let Some(reason) = name.strip_prefix("pop3.reject.") {
            metrics.reject(reason);
        } else if name == events::TIMEOUT {
            metrics.reject("timeout");
        }
    }

    async fn load_maildrop(&mut self, username: &str) -> Result<Vec<MessageInfo>, MaildropError> {
        // The account as the store knows it (deliveries use the normalized address).
        let Ok(user) = postern_accounts::normalize_address(username) else {
            return Err(MaildropError::Temporary);
        };
        let Some(lock) = self.shared.pop3.lock(&user) else {
            // The session logs pop3.reject.in_use.
            return Err(MaildropError::InUse);
        };
        let mailbox = match self.shared.inboxes.inbox(&user).await {
            Ok(mailbox) => mailbox,
            Err(error) => {
                tracing::error!(event = "store.mailbox_failed", user = %user, error = %format!("{error:#}"));
                return Err(MaildropError::Temporary);
            }
        };
        let Some(info) = self.shared.store.mailbox(mailbox) else {
            return Err(MaildropError::Temporary);
        };
        let messages = self.shared.store.messages(mailbox);
        // The octets RETR sends (CRLF endings), not the stored size (module documentation).
        let sizes = self
            .shared
            .pop3
            .wire_sizes(&self.shared.store, mailbox, &messages)
            .await;
        let list = messages
            .iter()
            .zip(&sizes)
            .map(|(m, &size)| MessageInfo {
                size,
                uid: format!("{}.{}", info.uidvalidity, m.uid),
            })
            .collect();
        let size: u64 = sizes.iter().sum();
        tracing::info!(event = "pop3.login", peer = %self.peer, user = %user, listener = self.label, messages = messages.len(), size);
        self.shared
            .metrics
            .pop3
            .logins
            .get_or_create(&vec![("listener", self.label.to_string())])
            .inc();
        self.maildrop = Some(Maildrop {
            user,
            mailbox,
            messages,
            _lock: lock,
        });
        Ok(list)
    }

    async fn retrieve(&self, msg: usize, top: Option<usize>) -> Result<Vec<u8>, ReadError> {
        let Some(drop) = &self.maildrop else {
            return Err(ReadError::Temporary);
        };
        let Some(meta) = msg
            .checked_sub(1)
            .and_then(|i| drop.messages.get(i))
            .cloned()
        else {
            return Err(ReadError::Gone);
        };
        let store = self.shared.store.clone();
        let uid = meta.uid;
        // A positioned read of the segment file: off the event loop.
        let read = tokio::task::spawn_blocking(move || store.read_message(&meta)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(StoreError::UnknownMessage { .. })) => return Err(ReadError::Gone),
            Ok(Err(error)) => {
                // A message that another session expunged may have had its space reclaimed:
                // that is not a storage fault.
                let visible = self
                    .shared
                    .store
                    .messages(drop.mailbox)
                    .iter()
                    .any(|m| m.uid == uid);
                if !visible {
                    return Err(ReadError::Gone);
                }
                tracing::error!(event = "store.read_failed", user = %drop.user, uid, error = %error);
                return Err(ReadError::Temporary);
            }
            Err(_) => return Err(ReadError::Temporary),
        };
        let metrics = &self.shared.metrics.pop3;
        metrics.bytes_sent.inc_by(bytes.len() as u64);
        if top.is_none() {
            metrics.messages_retrieved.inc();
            // RETR marks the message \Seen so IMAP shows it read (module documentation).
            // A message expunged meanwhile is skipped by the store; a failure here does not
            // fail the RETR.
            let seen = ["\\Seen".to_string()];
            if let Err(error) = self
                .shared
                .store
                .update_flags(drop.mailbox, &[uid], FlagOp::Add, &seen, None)
                .await
            {
                tracing::warn!(event = "pop3.seen_failed", user = %drop.user, uid, error = %error);
            }
        }
        tracing::debug!(event = "pop3.retrieve", peer = %self.peer, user = %drop.user, uid, top = ?top, size = bytes.len());
        Ok(bytes)
    }

    /// RFC 1939 6 UPDATE: the +OK goes out only after the expunge is durable.
    async fn commit(&self, deleted: &[usize]) -> Result<(), ()> {
        let Some(drop) = &self.maildrop else {
            return Err(());
        };
        let uids: Vec<u32> = deleted
            .iter()
            .filter_map(|&n| n.checked_sub(1).and_then(|i| drop.messages.get(i)))
            .map(|m| m.uid)
            .collect();
        match self.shared.store.expunge(drop.mailbox, uids.clone()).await {
            Ok(modseq) => {
                self.shared
                    .metrics
                    .pop3
                    .messages_deleted
                    .inc_by(uids.len() as u64);
                tracing::info!(event = "pop3.update", peer = %self.peer, user = %drop.user, deleted = uids.len(), modseq);
                Ok(())
            }
            Err(error) => {
                tracing::error!(event = "pop3.update.failed", peer = %self.peer, user = %drop.user, error = %error);
                Err(())
            }
        }
    }
}
