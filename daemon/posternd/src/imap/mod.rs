//! IMAP4rev2 / IMAP4rev1 sessions (RFC 9051, RFC 3501) over the store.
//!
//! The driver here owns the socket: it feeds received bytes to postern-imap's sans-IO
//! `CommandReceiver`, hands complete commands to the [`session::Session`], writes what it
//! produced, and carries out the steps that need the socket (STARTTLS, AUTHENTICATE
//! continuations, IDLE, COMPRESS).

mod encode;
mod fetch;
mod header_cache;
mod search;
mod session;
mod stream;
mod view;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use postern_imap::receiver::{CommandReceiver, Limits, ReceiveErrorKind, Received};
use tokio::net::TcpStream;

pub use header_cache::HeaderCache;

use crate::connection_limits::{ConnectionLimits, Refusal};
use crate::server::Shared;
use crate::smtp::connection::Connection;
use session::{Next, Session};
use stream::ImapStream;

/// IMAP's own connection limits (config.imap), shared by every worker.
fn limits(shared: &Shared) -> Arc<ConnectionLimits> {
    static LIMITS: OnceLock<Arc<ConnectionLimits>> = OnceLock::new();
    LIMITS
        .get_or_init(|| {
            ConnectionLimits::new(
                usize::try_from(shared.config.imap.max_connections).unwrap_or(usize::MAX),
                usize::try_from(shared.config.imap.max_connections_per_ip).unwrap_or(usize::MAX),
            )
        })
        .clone()
}

fn receiver_limits(shared: &Shared) -> Limits {
    let imap = &shared.config.imap;
    let max_line = usize::try_from(imap.max_command_line).unwrap_or(usize::MAX);
    Limits {
        max_line,
        max_append_literal: imap.max_literal_size,
        max_literal: 65_536.min(imap.max_literal_size),
        max_command: usize::try_from(imap.max_literal_size)
            .unwrap_or(usize::MAX)
            .saturating_add(max_line)
            .saturating_mul(2),
        literal_minus: false,
        ..Limits::default()
    }
}

/// The largest read buffer a session grows to.
const READ_MAX: usize = 64 * 1024;

/// Serves one IMAP connection until it ends.
pub async fn run(
    shared: Arc<Shared>,
    shard: usize,
    implicit_tls: bool,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let listener = if implicit_tls { "imaps" } else { "imap" };
    let slot = match limits(&shared).acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::TooManyTotal => "too_many_connections",
                Refusal::TooManyFromAddress => "too_many_connections_from_ip",
            };
            tracing::warn!(event = "imap.connection.refused", %peer, reason);
            shared
                .metrics
                .imap_connections
                .get_or_create(&vec![
                    ("listener", listener.to_string()),
                    ("outcome", reason.to_string()),
                ])
                .inc();
            let mut conn = Connection::Plain(tcp);
            if !implicit_tls {
                // RFC 9051 7.1.5: BYE instead of a greeting.
                let _ = conn
                    .write_all(b"* BYE Too many connections, try again later\r\n")
                    .await;
            }
            conn.shutdown().await;
            return;
        }
    };
    shared
        .metrics
        .imap_connections
        .get_or_create(&vec![
            ("listener", listener.to_string()),
            ("outcome", "accepted".to_string()),
        ])
        .inc();
    let _ = tcp.set_nodelay(true);
    let mut stream = ImapStream::new(Connection::Plain(tcp));
    if implicit_tls {
        // RFC 8314 3.3: TLS from the first byte.
        match stream.start_tls(shared.tls.clone()).await {
            Ok(()) => {}
            Err(error) => {
                tracing::debug!(event = "imap.tls.handshake_failed", %peer, %error);
                crate::peer_noise::handshake_failed(&error);
                return;
            }
        }
    }
    shared.metrics.imap_connections_active.inc();
    tracing::debug!(event = "imap.connection.opened", %peer, listener);
    let mut driver = Driver {
        receiver: CommandReceiver::new(receiver_limits(&shared)),
        session: Session::new(shared.clone(), shard, peer, implicit_tls),
        stream,
        errors: 0,
        buf: Vec::with_capacity(stream::READ_MIN),
        login_deadline: tokio::time::Instant::now()
            + Duration::from_secs(shared.config.imap.timeout_login_secs.max(1)),
        command_deadline: tokio::time::Instant::now(),
    };
    driver.serve().await;
    driver.stream.shutdown().await;
    shared.metrics.imap_connections_active.dec();
    drop(slot);
    tracing::debug!(event = "imap.connection.closed", %peer);
}

struct Driver {
    receiver: CommandReceiver,
    session: Session,
    stream: ImapStream,
    errors: u64,
    buf: Vec<u8>,
    login_deadline: tokio::time::Instant,
    /// Once logged in: when the command being received (or the IDLE in progress) is
    /// overdue. Set when the server starts waiting for a command; bytes that arrive do not
    /// extend it (DESIGN.md 6).
    command_deadline: tokio::time::Instant,
}

enum Input {
    Data,
    Closed,
    Timeout,
}

impl Driver {
    fn shared(&self) -> &Shared {
        &self.session.shared
    }

    async fn flush(&mut self) -> bool {
        if self.session.out.is_empty() {
            return true;
        }
        let out = std::mem::take(&mut self.session.out);
        // A client that stops reading is dropped after the session timeout.
        let timeout = self.timeout();
        matches!(
            tokio::time::timeout(timeout, self.stream.write_all(&out)).await,
            Ok(Ok(()))
        )
    }

    /// How long a write may take: the idle timeout once logged in; before that, what is
    /// left of the login deadline.
    fn timeout(&self) -> Duration {
        let imap = &self.shared().config.imap;
        if self.session.user.is_some() {
            Duration::from_secs(imap.timeout_idle_secs.max(1))
        } else {
            self.login_deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(1))
        }
    }

    /// When the input awaited now is overdue: before login, the login deadline (a client
    /// trickling bytes cannot stay unauthenticated longer than `timeout_login_secs`); after,
    /// the deadline of the command being received (RFC 9051 5.4: the autologout timer).
    fn deadline(&self) -> tokio::time::Instant {
        if self.session.user.is_some() {
            self.command_deadline
        } else {
            self.login_deadline
        }
    }

    /// A new command may start: its deadline runs from now.
    fn next_command(&mut self) {
        let idle = Duration::from_secs(self.shared().config.imap.timeout_idle_secs.max(1));
        self.command_deadline = tokio::time::Instant::now() + idle;
    }

    /// Reads more input into the receiver, until the current deadline.
    async fn fill(&mut self) -> Input {
        // Memory of idle sessions (10,000 in IDLE must stay small): a read that filled the
        // buffer doubles it for the next one (a large APPEND streams in big reads), a short
        // read lets it fall back to READ_MIN before the session waits.
        let filled = !self.buf.is_empty() && self.buf.len() == self.buf.capacity();
        if filled && self.buf.capacity() < READ_MAX {
            self.buf.reserve(self.buf.capacity());
        } else if !filled && self.buf.capacity() > stream::READ_MIN {
            self.buf = Vec::with_capacity(stream::READ_MIN);
        }
        self.buf.clear();
        self.receiver.release_consumed();
        let deadline = self.deadline();
        match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Input::Closed,
            Ok(Ok(_)) => {
                self.receiver.push(&self.buf);
                Input::Data
            }
            Err(_) => Input::Timeout,
        }
    }

    async fn bye_timeout(&mut self) {
        // RFC 9051 5.4: autologout with BYE.
        tracing::info!(event = "imap.timeout", peer = %self.session.peer);
        self.session
            .out
            .extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
        self.flush().await;
    }

    async fn serve(&mut self) {
        self.session.out = self.session.greeting();
        self.next_command();
        loop {
            if !self.flush().await {
                return;
            }
            let item = match self.receiver.next() {
                Some(item) => item,
                None => match self.fill().await {
                    Input::Data => continue,
                    Input::Closed => return,
                    Input::Timeout => {
                        self.bye_timeout().await;
                        return;
                    }
                },
            };
            match item {
                Ok(Received::NeedContinuation { .. }) => {
                    self.session
                        .out
                        .extend_from_slice(&postern_imap::response::continuation("Ready"));
                }
                Ok(Received::Command(cmd)) => {
                    let name = cmd.body.name();
                    let (status, next) = self.session.handle(cmd).await;
                    if !matches!(next, Next::Stream(_)) {
                        self.count(name, status);
                    }
                    if status == "BAD" && self.too_many_errors() {
                        self.flush().await;
                        return;
                    }
                    if !self.step(next).await {
                        return;
                    }
                    self.next_command();
                }
                Err(e) => {
                    tracing::debug!(event = "imap.bad_input", peer = %self.session.peer, error = %e);
                    self.session.out.extend_from_slice(&e.response());
                    let status = match e.kind {
                        ReceiveErrorKind::LiteralTooLarge { append: true, .. } => "NO",
                        _ => "BAD",
                    };
                    self.count("INVALID", status);
                    if self.too_many_errors() {
                        self.flush().await;
                        return;
                    }
                    self.next_command();
                }
            }
        }
    }

    /// Sends a FETCH's responses as its reader renders them, then its tagged reply. A
    /// client that stops reading is dropped after the session timeout; dropping the
    /// chunk receiver stops the reader.
    async fn stream(&mut self, mut fetch: fetch::FetchStream) -> bool {
        if !self.flush().await {
            return false;
        }
        while let Some(chunk) = fetch.chunks.recv().await {
            let timeout = self.timeout();
            if !matches!(
                tokio::time::timeout(timeout, self.stream.write_all(&chunk)).await,
                Ok(Ok(()))
            ) {
                return false;
            }
        }
        let outcome = fetch.outcome().await;
        let status = self.session.finish_fetch(outcome);
        self.count("FETCH", status);
        true
    }

    fn count(&self, command: &str, status: &str) {
        self.shared()
            .metrics
            .imap_commands
            .get_or_create(&vec![
                ("command", command.to_string()),
                ("result", status.to_ascii_lowercase()),
            ])
            .inc();
    }

    fn too_many_errors(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= self.shared().config.imap.max_errors {
            tracing::warn!(event = "imap.too_many_errors", peer = %self.session.peer);
            self.session
                .out
                .extend_from_slice(b"* BYE Too many invalid commands\r\n");
            return true;
        }
        false
    }

    /// Carries out what a command asked for; false ends the connection.
    async fn step(&mut self, next: Next) -> bool {
        match next {
            Next::Continue => true,
            Next::Logout | Next::Close => {
                self.flush().await;
                false
            }
            Next::StartTls => {
                if !self.flush().await {
                    return false;
                }
                // RFC 9051 6.2.1: anything the client pipelined after STARTTLS is discarded.
                let injected = self.receiver.take_buffered();
                if !injected.is_empty() {
                    tracing::warn!(event = "imap.tls.plaintext_injection", peer = %self.session.peer, bytes = injected.len());
                }
                let tls = self.shared().tls.clone();
                match self.stream.start_tls(tls).await {
                    Ok(()) => {
                        self.session.tls = true;
                        true
                    }
                    Err(error) => {
                        tracing::debug!(event = "imap.tls.handshake_failed", peer = %self.session.peer, %error);
                        crate::peer_noise::handshake_failed(&error);
                        false
                    }
                }
            }
            Next::Compress => {
                if !self.flush().await {
                    return false;
                }
                // RFC 4978 3: bytes after the command are already compressed.
                let rest = self.receiver.take_buffered();
                self.stream.start_deflate();
                if !rest.is_empty() {
                    self.stream.push_compressed(&rest);
                }
                true
            }
            Next::AuthContinue { tag } => {
                if !self.flush().await {
                    return false;
                }
                let line = loop {
                    match self.receiver.next_line() {
                        Some(Ok(line)) => break line,
                        Some(Err(_)) => {
                            let (status, next) = self.session.bad_now(&tag, "Response too long");
                            self.count("AUTHENTICATE", status);
                            return Box::pin(self.step(next)).await;
                        }
                        None => match self.fill().await {
                            Input::Data => continue,
                            Input::Closed => return false,
                            Input::Timeout => {
                                self.bye_timeout().await;
                                return false;
                            }
                        },
                    }
                };
                let (status, next) = self.session.authenticate_line(&tag, &line).await;
                self.session.finish();
                self.count("AUTHENTICATE", status);
                Box::pin(self.step(next)).await
            }
            Next::Idle { tag } => self.idle(tag).await,
            Next::Stream(fetch) => self.stream(*fetch).await,
        }
    }

    /// RFC 2177 / RFC 9051 6.3.13: report changes as they happen until DONE.
    async fn idle(&mut self, tag: String) -> bool {
        // RFC 2177 3: the server may log out an IDLE client after its autologout timer; the
        // client re-issues IDLE at least every 29 minutes. Updates sent meanwhile do not
        // extend the deadline.
        self.next_command();
        loop {
            if !self.flush().await {
                return false;
            }
            match self.receiver.next_line() {
                Some(Ok(line)) => {
                    if line.eq_ignore_ascii_case(b"DONE") {
                        self.session.sync(true);
                        self.session
                            .out
                            .extend_from_slice(format!("{tag} OK IDLE terminated\r\n").as_bytes());
                        self.count("IDLE", "OK");
                        return true;
                    }
                    self.session
                        .out
                        .extend_from_slice(format!("{tag} BAD Expected DONE\r\n").as_bytes());
                    self.count("IDLE", "BAD");
                    return !self.too_many_errors();
                }
                Some(Err(_)) => {
                    self.session
                        .out
                        .extend_from_slice(format!("{tag} BAD Line too long\r\n").as_bytes());
                    self.count("IDLE", "BAD");
                    return !self.too_many_errors();
                }
                None => {}
            }
            let mut feed = self.session.selected.as_ref().and_then(|v| v.feed.clone());
            self.buf.clear();
            // True when the feed ended (the mailbox was deleted).
            let changed = async {
                match feed.as_mut() {
                    Some(f) => f.changed().await.is_err(),
                    None => std::future::pending::<bool>().await,
                }
            };
            enum Woke {
                Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
                Changed(bool),
            }
            let woke = {
                let read =
                    tokio::time::timeout_at(self.deadline(), self.stream.read(&mut self.buf));
                tokio::select! {
                    r = read => Woke::Read(r),
                    closed = changed => Woke::Changed(closed),
                }
            };
            match woke {
                Woke::Read(Ok(Ok(0))) | Woke::Read(Ok(Err(_))) => return false,
                Woke::Read(Ok(Ok(_))) => self.receiver.push(&self.buf),
                Woke::Read(Err(_)) => {
                    self.bye_timeout().await;
                    return false;
                }
                Woke::Changed(closed) => {
                    if let Some(v) = self.session.selected.as_mut() {
                        // A deleted mailbox: report it empty once, then only wait for DONE.
                        v.feed = if closed { None } else { feed };
                    }
                    self.session.sync(true);
                }
            }
        }
    }
}
