//! Sans-IO POP3 server protocol for Postern (DESIGN.md 3.2): RFC 1939 (POP3), RFC 2449
//! (CAPA, response codes), RFC 2595 (STLS), RFC 5034 (AUTH with SASL PLAIN, RFC 4616) and
//! RFC 3206 (SYS/TEMP, AUTH response codes).
//!
//! No sockets inside: the driver feeds received bytes with [`Session::receive`], pulls
//! [`Action`]s with [`Session::next_action`] until [`Action::NeedInput`] or [`Action::Close`],
//! performs them, and answers the ones that need an answer with [`Session::resolve`].
//!
//! The parts are usable alone: [`receiver::LineReceiver`] frames command lines with a length
//! limit, [`command::parse`] turns one line into a [`command::Command`], and
//! [`response::multiline`] renders a message as a byte-stuffed multi-line response.

pub mod command;
pub mod receiver;
pub mod response;
mod session;

use std::time::Duration;

pub use command::{Command, ParseError};
pub use postern_sasl::SaslError;
pub use receiver::{LineError, LineReceiver};
pub use session::Session;

/// Per-session limits. Defaults match the `[pop3]` configuration defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line in octets, CRLF included (RFC 2449 4: at least 255).
    pub max_command_line: usize,
    /// -ERR replies tolerated before the session is closed.
    pub max_errors: usize,
    /// Inactivity timer once authenticated (RFC 1939 3: at least 10 minutes).
    pub timeout: Duration,
    /// Inactivity timer before authentication.
    pub timeout_login: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_command_line: 512,
            max_errors: 10,
            timeout: Duration::from_secs(600),
            timeout_login: Duration::from_secs(60),
        }
    }
}

/// What the session needs to know about its connection.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub hostname: String,
    pub limits: Limits,
    /// Implicit TLS (port 995, RFC 8314 3.3): TLS is active from the first byte.
    pub tls_active: bool,
    /// STLS may be offered (a certificate is loaded).
    pub tls_available: bool,
}

/// What the driver must do next. Its Debug form never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Bytes for the peer; buffer them and flush before the next read (RFC 2449 6.6
    /// PIPELINING: responses to pipelined commands may go out together).
    Send(Vec<u8>),
    /// Nothing more to do until more input arrives (or an answer is given with `resolve`).
    NeedInput,
    /// "+OK Begin TLS negotiation" was already emitted as a Send: flush it, run the TLS
    /// handshake, then call [`Session::tls_started`] (RFC 2595 4).
    StartTls,
    /// Check credentials; answer with [`Answer::Auth`]. `mechanism` is "USER" (USER/PASS)
    /// or "PLAIN" (AUTH PLAIN). The password must never be logged.
    Authenticate {
        mechanism: &'static str,
        username: String,
        password: String,
    },
    /// The user authenticated: lock and snapshot the maildrop; answer with
    /// [`Answer::Maildrop`]. Message numbers are fixed for the session (RFC 1939 5).
    LoadMaildrop { username: String },
    /// Read message `msg` (1-based, as in the maildrop snapshot); answer with
    /// [`Answer::Message`] carrying the whole message. `top` is None for RETR (the driver
    /// may mark the message seen) and Some(lines) for TOP; the session cuts the body.
    Retrieve { msg: usize, top: Option<usize> },
    /// The UPDATE state (RFC 1939 6): remove these messages (1-based numbers, ascending)
    /// durably, then answer with [`Answer::Committed`].
    Commit { deleted: Vec<usize> },
    /// Something worth logging or counting.
    Log(SessionEvent),
    /// Close the connection (after flushing what was sent).
    Close,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Send(b) => f
                .debug_tuple("Send")
                .field(&String::from_utf8_lossy(b))
                .finish(),
            Action::NeedInput => f.write_str("NeedInput"),
            Action::StartTls => f.write_str("StartTls"),
            Action::Authenticate {
                mechanism,
                username,
                ..
            } => f
                .debug_struct("Authenticate")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Action::LoadMaildrop { username } => f
                .debug_struct("LoadMaildrop")
                .field("username", username)
                .finish(),
            Action::Retrieve { msg, top } => f
                .debug_struct("Retrieve")
                .field("msg", msg)
                .field("top", top)
                .finish(),
            Action::Commit { deleted } => {
                f.debug_struct("Commit").field("deleted", deleted).finish()
            }
            Action::Log(e) => f.debug_tuple("Log").field(e).finish(),
            Action::Close => f.write_str("Close"),
        }
    }
}

/// One message of the maildrop snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Size in octets as sent (CRLF line endings, before byte-stuffing; RFC 1939 11).
    pub size: u64,
    /// The unique-id listing (RFC 1939 7: 1 to 70 characters in 0x21..=0x7E).
    pub uid: String,
}

/// Why a maildrop could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MaildropError {
    /// Another POP3 session holds it (RFC 2449 8.1.1 [IN-USE]).
    #[error("maildrop in use")]
    InUse,
    /// A storage problem that may go away (RFC 3206 4 [SYS/TEMP]).
    #[error("temporary failure")]
    Temporary,
}

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Removed by another session (IMAP EXPUNGE) and no longer readable.
    #[error("message removed")]
    Gone,
    #[error("temporary failure")]
    Temporary,
}

/// The driver's answer to the last Authenticate / LoadMaildrop / Retrieve / Commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Auth(bool),
    /// The credentials were not checked: the client or the account is banned for failed
    /// logins. Answered -ERR [SYS/TEMP] and the connection closed.
    AuthBlocked,
    Maildrop(Result<Vec<MessageInfo>, MaildropError>),
    Message(Result<Vec<u8>, ReadError>),
    /// Ok once the removals are durable; Err(()) when they could not be made.
    Committed(Result<(), ()>),
}

/// A logged occurrence with a stable name (see [`events`]) and free-form detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub name: &'static str,
    pub detail: String,
}

/// Stable event names emitted in [`Action::Log`].
pub mod events {
    pub const LINE_TOO_LONG: &str = "pop3.reject.line_too_long";
    pub const BAD_COMMAND: &str = "pop3.reject.bad_command";
    pub const TOO_MANY_ERRORS: &str = "pop3.reject.too_many_errors";
    pub const TLS_REQUIRED: &str = "pop3.reject.tls_required";
    /// Plaintext pipelined behind STLS was discarded (CVE-2011-0411).
    pub const STLS_INJECTION: &str = "pop3.reject.stls_injection";
    pub const IN_USE: &str = "pop3.reject.in_use";
    pub const AUTH_FAILED: &str = "pop3.auth.failed";
    pub const AUTH_SUCCEEDED: &str = "pop3.auth.succeeded";
    pub const STLS: &str = "pop3.stls";
    pub const TIMEOUT: &str = "pop3.timeout";
    /// The maildrop is open: TRANSACTION state.
    pub const LOGIN: &str = "pop3.login";
    /// QUIT in TRANSACTION: deletions committed (detail: how many).
    pub const UPDATE: &str = "pop3.update";
    pub const UPDATE_FAILED: &str = "pop3.update.failed";
}
