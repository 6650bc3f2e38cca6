//! Sans-IO IMAP protocol layer for Postern (DESIGN.md 3.2): IMAP4rev2 (RFC 9051) and
//! IMAP4rev1 (RFC 3501) with the extensions Postern announces.
//!
//! No sockets, no store, no async runtime. The session (posternd's `imap` module) feeds
//! received bytes to a [`receiver::CommandReceiver`], which frames commands (CRLF lines,
//! synchronising and non-synchronising literals, binary literals, limits) and parses them
//! into a [`command::Command`]; it answers with the encoders of [`response`], renders message
//! data with [`message`] (ENVELOPE, BODYSTRUCTURE, `BODY[section]`, BINARY) and evaluates
//! SEARCH/SORT programs with [`search`].
//!
//! Why not imap-codec: DESIGN.md 3.2 names it as an option, but imap-codec 2.0 (alpha) has no
//! SORT (RFC 5256), no ESEARCH (RFC 4731) and no LIST-STATUS (RFC 5819), all of which Postern
//! announces, so the parser here is our own, written against the formal syntax of RFC 9051
//! section 9 and the ABNF of each extension RFC. MIME parsing is mail-parser's.

pub mod command;
pub mod datetime;
pub mod message;
pub mod mutf7;
mod parser;
pub mod pattern;
pub mod receiver;
pub mod response;
pub mod search;
pub mod sequence;

pub use command::{Command, CommandBody, Flag, ParseOptions};
pub use datetime::{Date, DateTime};
pub use mutf7::{Mailbox, MailboxNameError};
pub use parser::ParseError;
pub use receiver::{CommandReceiver, Limits, ReceiveError, ReceiveErrorKind, Received};
pub use sequence::SequenceSet;
