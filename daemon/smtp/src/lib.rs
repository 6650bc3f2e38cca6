//! Sans-IO SMTP server protocol for Postern (DESIGN.md 3.2).
//!
//! No sockets inside: the driver feeds received bytes with [`Session::receive`], pulls
//! [`Action`]s with [`Session::next_action`] until [`Action::NeedInput`] or [`Action::Close`],
//! performs them, and answers the ones that need an answer with [`Session::resolve`].
//!
//! Commands are parsed with smtp-proto's `Request` parser; line framing, the strict
//! DATA/BDAT reader (SMTP smuggling), limits, SASL PLAIN/LOGIN and the state machine are here.

pub mod author;
mod data;
mod reply;
mod session;

use std::time::Duration;

pub use author::{authors, Author, AuthorError, AuthorField};
pub use data::{DataError, DataReader};
pub use postern_sasl::SaslError;
pub use reply::Reply;
pub use session::Session;

/// Which listener accepted the connection (DESIGN.md 2: MX on 25, submission on 587 with
/// STARTTLS, submissions on 465 with implicit TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Mx,
    Submission,
    Submissions,
}

impl ListenerKind {
    /// Submission listeners require authentication before MAIL (RFC 6409 section 4.3).
    pub fn is_submission(self) -> bool {
        matches!(self, ListenerKind::Submission | ListenerKind::Submissions)
    }
}

/// Per-session limits (RFC 5321 4.5.3). Defaults match the `[smtp]` configuration defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_command_line: usize,
    pub max_data_line: usize,
    pub max_commands: usize,
    pub max_errors: usize,
    pub timeout_command: Duration,
    pub timeout_data: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: 52_428_800,
            max_recipients: 100,
            max_command_line: 2048,
            max_data_line: 8192,
            max_commands: 1000,
            max_errors: 10,
            // RFC 5321 4.5.3.2.7: server timeout 5 minutes.
            timeout_command: Duration::from_secs(300),
            // RFC 5321 4.5.3.2.6: data block 3 minutes.
            timeout_data: Duration::from_secs(180),
        }
    }
}

/// What the session needs to know about its connection.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub hostname: String,
    pub kind: ListenerKind,
    pub limits: Limits,
    /// Implicit TLS (port 465): TLS is active from the first byte.
    pub tls_active: bool,
    /// STARTTLS may be offered (a certificate is loaded).
    pub tls_available: bool,
    pub peer: std::net::SocketAddr,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bytes for the peer; buffer them and flush before the next read (PIPELINING, RFC 2920).
    Send(Vec<u8>),
    /// Nothing more to do until more input arrives (or an answer is given with `resolve`).
    NeedInput,
    /// "220 2.0.0 Ready to start TLS" was already emitted as a Send: flush it, run the TLS
    /// handshake, then call [`Session::tls_started`].
    StartTls,
    /// Check credentials; answer with [`Answer::Auth`].
    Authenticate {
        mechanism: &'static str,
        username: String,
        password: String,
    },
    /// Decide whether this sender is acceptable; answer with [`Answer::Verdict`].
    CheckSender {
        address: String,
        authenticated_as: Option<String>,
    },
    /// Decide whether this recipient is acceptable (local domain or authenticated relay);
    /// answer with [`Answer::Verdict`].
    CheckRecipient {
        address: String,
        authenticated_as: Option<String>,
    },
    /// Store/queue the message; answer with [`Answer::Delivered`].
    Deliver(Envelope),
    /// Something worth logging or counting.
    Log(SessionEvent),
    /// Close the connection (after flushing what was sent).
    Close,
}

/// The driver's answer to the last Authenticate / CheckSender / CheckRecipient / Deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Auth(bool),
    /// The credentials were not checked: the client or the account is banned for failed
    /// logins. Answered 421 4.7.0 and the connection closed.
    AuthBlocked,
    Verdict(Verdict),
    Delivered(Result<(), Reply>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(Reply),
}

/// A received message and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    /// "" for the null sender (RFC 5321 4.5.5).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Exact message bytes: CRLF line endings, dot-unstuffed.
    pub body: Vec<u8>,
    pub authenticated_as: Option<String>,
    pub tls: bool,
    pub smtputf8: bool,
    pub eight_bit: bool,
    /// "SMTP", "ESMTP", "ESMTPS", "ESMTPA" or "ESMTPSA" (RFC 3848), for the Received header.
    pub protocol: &'static str,
}

/// A logged occurrence with a stable name (see [`events`]) and free-form detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub name: &'static str,
    pub detail: String,
}

/// Stable event names emitted in [`Action::Log`].
pub mod events {
    pub const BARE_LF: &str = "smtp.reject.bare_lf";
    pub const BARE_CR: &str = "smtp.reject.bare_cr";
    /// Bare CR or LF inside DATA/BDAT content (SMTP smuggling attempt).
    pub const SMUGGLING: &str = "smtp.reject.smuggling";
    pub const LINE_TOO_LONG: &str = "smtp.reject.line_too_long";
    pub const DATA_LINE_TOO_LONG: &str = "smtp.reject.data_line_too_long";
    pub const SIZE: &str = "smtp.reject.size";
    /// A NUL octet in DATA/BDAT content (RFC 5322 2.3).
    pub const NUL: &str = "smtp.reject.nul";
    pub const SENDER: &str = "smtp.reject.sender";
    pub const RECIPIENT: &str = "smtp.reject.recipient";
    pub const TOO_MANY_RECIPIENTS: &str = "smtp.reject.too_many_recipients";
    pub const TOO_MANY_ERRORS: &str = "smtp.reject.too_many_errors";
    pub const TOO_MANY_COMMANDS: &str = "smtp.reject.too_many_commands";
    pub const AUTH_REQUIRED: &str = "smtp.reject.auth_required";
    pub const TLS_REQUIRED: &str = "smtp.reject.tls_required";
    pub const INPUT_OVERFLOW: &str = "smtp.reject.input_overflow";
    /// Plaintext pipelined behind STARTTLS was discarded (CVE-2011-0411).
    pub const STARTTLS_INJECTION: &str = "smtp.reject.starttls_injection";
    pub const AUTH_FAILED: &str = "smtp.auth.failed";
    pub const AUTH_SUCCEEDED: &str = "smtp.auth.succeeded";
    pub const STARTTLS: &str = "smtp.starttls";
    pub const TIMEOUT: &str = "smtp.timeout";
    pub const DELIVERED: &str = "smtp.message.accepted";
    pub const DELIVERY_REFUSED: &str = "smtp.message.refused";
}
