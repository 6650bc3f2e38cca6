//! The command AST (RFC 9051 6, RFC 3501 6 and the extensions Postern announces) and its
//! parser. One file per command family; [`parse_command`] dispatches on the command name.

mod append;
mod auth;
mod fetch;
mod list;
mod mailbox;
mod misc;
mod search;
mod sort;
mod store;

pub use auth::{decode_sasl_response, is_sasl_cancel};
pub use fetch::{FetchAttr, Section, SectionText};
pub use list::{ListReturn, ListSelect};
pub use mailbox::{QResync, StatusItem};
pub use misc::QuotaLimit;
pub use search::{ModSeqEntry, SearchKey, SearchReturn};
pub use sort::{SortCriterion, SortKey};
pub use store::StoreKind;

use crate::datetime::DateTime;
use crate::mutf7::Mailbox;
use crate::parser::{PResult, ParseError, Parser};
use crate::sequence::SequenceSet;

/// A complete tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A message flag (RFC 9051 2.3.2): system flags in their canonical spelling ("\\Seen",
/// "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"), other "\\" flags as
/// given, keywords as given (keywords compare case-insensitively, RFC 9051 2.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flag(pub String);

impl Flag {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Canonical spelling of a flag string as the store keeps it.
    pub fn canonical(s: &str) -> Flag {
        const SYSTEM: [&str; 6] = [
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft",
            "\\Recent",
        ];
        for f in SYSTEM {
            if f.eq_ignore_ascii_case(s) {
                return Flag(f.to_string());
            }
        }
        Flag(s.to_string())
    }

    /// Case-insensitive comparison (RFC 9051 2.3.2).
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }

    /// RFC 9051 9: flag = "\Answered" / ... / flag-keyword / flag-extension; `\*` only when
    /// `allow_star` (never in commands; PERMANENTFLAGS is a response).
    pub(crate) fn parse(p: &mut Parser<'_>) -> PResult<Flag> {
        let backslash = p.eat(b'\\');
        let atom = p.atom()?;
        let s = std::str::from_utf8(atom).map_err(|_| ParseError::new("invalid flag"))?;
        if backslash {
            let f = Flag::canonical(&format!("\\{s}"));
            if f.0 == "\\Recent" {
                // RFC 3501 2.3.2: \Recent cannot be altered by the client.
                return Err(p.error("\\Recent cannot be set"));
            }
            Ok(f)
        } else {
            Ok(Flag(s.to_string()))
        }
    }

    /// RFC 9051 9: flag-list = "(" [flag *(SP flag)] ")".
    pub(crate) fn parse_list(p: &mut Parser<'_>) -> PResult<Vec<Flag>> {
        p.paren_list(true, Flag::parse)
    }
}

/// One message of APPEND (RFC 9051 6.3.12; several with MULTIAPPEND, RFC 3502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub internal_date: Option<DateTime>,
    pub data: Vec<u8>,
    /// Sent as a literal8 `~{n}` (RFC 3516 4.4): the message may contain binary content.
    pub binary: bool,
    /// Sent as `UTF8 (literal8)` (RFC 6855 4).
    pub utf8: bool,
}

/// What a command asks for. `uid` marks the `UID` variants (RFC 9051 6.4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // RFC 9051 6.1: any state.
    Capability,
    Noop,
    Logout,
    // RFC 9051 6.2: not authenticated state.
    StartTls,
    /// RFC 9051 6.2.2; `initial_response` is the SASL-IR (RFC 4959) argument, base64-decoded:
    /// `Some(vec![])` for "=" (an empty response).
    Authenticate {
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    Login {
        username: Vec<u8>,
        password: Vec<u8>,
    },
    // RFC 9051 6.3: authenticated state.
    /// RFC 5161.
    Enable(Vec<String>),
    /// RFC 9051 6.3.2 / 6.3.3 with RFC 7162 3.1.8 (CONDSTORE) and 3.2.5 (QRESYNC).
    Select {
        mailbox: Mailbox,
        condstore: bool,
        qresync: Option<QResync>,
    },
    Examine {
        mailbox: Mailbox,
        condstore: bool,
        qresync: Option<QResync>,
    },
    /// RFC 9051 6.3.4; `special_use` from RFC 6154 5.3 `(USE (\Sent))`.
    Create {
        mailbox: Mailbox,
        special_use: Vec<String>,
    },
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    /// RFC 9051 6.3.9 with RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS), RFC 6154.
    /// `patterns` holds one pattern, or several with the parenthesised form of RFC 5258.
    List {
        reference: Mailbox,
        patterns: Vec<Mailbox>,
        selection: Vec<ListSelect>,
        returns: Vec<ListReturn>,
        /// The LIST-EXTENDED syntax was used (selection options or RETURN), so the server
        /// answers with extended-data items (RFC 5258 3).
        extended: bool,
    },
    /// RFC 3501 6.3.9.
    Lsub {
        reference: Mailbox,
        pattern: Mailbox,
    },
    /// RFC 2342.
    Namespace,
    /// RFC 9051 6.3.11.
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: Mailbox,
        messages: Vec<AppendMessage>,
    },
    /// RFC 9051 6.3.13.
    Idle,
    /// RFC 2971: NIL or field/value pairs.
    Id(Option<Vec<(String, Option<String>)>>),
    /// RFC 9208 4.2.
    GetQuota(Vec<u8>),
    GetQuotaRoot(Mailbox),
    SetQuota {
        root: Vec<u8>,
        limits: Vec<QuotaLimit>,
    },
    /// RFC 4978.
    Compress(String),
    // RFC 9051 6.4: selected state.
    /// RFC 3501 6.4.1.
    Check,
    Close,
    /// RFC 3691.
    Unselect,
    Expunge,
    /// RFC 4315 2.1 / RFC 9051 6.4.9.
    UidExpunge(SequenceSet),
    /// RFC 9051 6.4.4 with RFC 4731 (ESEARCH RETURN), RFC 5182 (SAVE).
    /// `returns` is None without RETURN; `Some(vec![])` for "RETURN ()" (= ALL, RFC 4731 3.1).
    Search {
        uid: bool,
        charset: Option<String>,
        criteria: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    },
    /// RFC 5256 3; `returns` for ESORT (RFC 5267 3.2).
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: String,
        search: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    },
    /// RFC 9051 6.4.5 with RFC 7162 3.1.4 (CHANGEDSINCE) and 3.2.6 (VANISHED). Macros (ALL,
    /// FAST, FULL) are expanded into their attributes.
    Fetch {
        uid: bool,
        set: SequenceSet,
        attributes: Vec<FetchAttr>,
        changed_since: Option<u64>,
        vanished: bool,
    },
    /// RFC 9051 6.4.6 with RFC 7162 3.1.3 (UNCHANGEDSINCE).
    Store {
        uid: bool,
        set: SequenceSet,
        kind: StoreKind,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    /// RFC 6851.
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
}

impl CommandBody {
    /// The command's name as a client writes it (for logs and metrics), e.g. "UID FETCH".
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            Capability => "CAPABILITY",
            Noop => "NOOP",
            Logout => "LOGOUT",
            StartTls => "STARTTLS",
            Authenticate { .. } => "AUTHENTICATE",
            Login { .. } => "LOGIN",
            Enable(_) => "ENABLE",
            Select { .. } => "SELECT",
            Examine { .. } => "EXAMINE",
            Create { .. } => "CREATE",
            Delete(_) => "DELETE",
            Rename { .. } => "RENAME",
            Subscribe(_) => "SUBSCRIBE",
            Unsubscribe(_) => "UNSUBSCRIBE",
            List { .. } => "LIST",
            Lsub { .. } => "LSUB",
            Namespace => "NAMESPACE",
            Status { .. } => "STATUS",
            Append { .. } => "APPEND",
            Idle => "IDLE",
            Id(_) => "ID",
            GetQuota(_) => "GETQUOTA",
            GetQuotaRoot(_) => "GETQUOTAROOT",
            SetQuota { .. } => "SETQUOTA",
            Compress(_) => "COMPRESS",
            Check => "CHECK",
            Close => "CLOSE",
            Unselect => "UNSELECT",
            Expunge => "EXPUNGE",
            UidExpunge(_) => "UID EXPUNGE",
            Search { uid: false, .. } => "SEARCH",
            Search { uid: true, .. } => "UID SEARCH",
            Sort { uid: false, .. } => "SORT",
            Sort { uid: true, .. } => "UID SORT",
            Fetch { uid: false, .. } => "FETCH",
            Fetch { uid: true, .. } => "UID FETCH",
            Store { uid: false, .. } => "STORE",
            Store { uid: true, .. } => "UID STORE",
            Copy { uid: false, .. } => "COPY",
            Copy { uid: true, .. } => "UID COPY",
            Move { uid: false, .. } => "MOVE",
            Move { uid: true, .. } => "UID MOVE",
        }
    }
}

/// Parser settings.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Maximum nesting of parenthesised lists and of NOT/OR in search programs.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions { max_depth: 32 }
    }
}

/// Parses one complete command: tag, name, arguments, CRLF (literals inline, as the
/// [`CommandReceiver`](crate::receiver::CommandReceiver) assembles them). On error, the tag
/// is returned when it could be read, so that the server answers `tag BAD` (RFC 9051 7.1.3).
pub fn parse_command(
    buf: &[u8],
    opts: ParseOptions,
) -> Result<Command, (Option<String>, ParseError)> {
    let mut p = Parser::new(buf, opts.max_depth);
    let tag = p.tag().map_err(|e| (None, e))?;
    let body = (|| {
        p.sp()?;
        let body = parse_body(&mut p)?;
        p.end()?;
        Ok(body)
    })()
    .map_err(|e| (Some(tag.clone()), e))?;
    Ok(Command { tag, body })
}

fn mailbox(p: &mut Parser<'_>) -> PResult<Mailbox> {
    p.astring().map(Mailbox)
}

fn parse_body(p: &mut Parser<'_>) -> PResult<CommandBody> {
    let name = p.keyword()?;
    let body = match name.as_str() {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "AUTHENTICATE" => auth::authenticate(p)?,
        "LOGIN" => auth::login(p)?,
        "ENABLE" => misc::enable(p)?,
        "SELECT" => mailbox::select(p, false)?,
        "EXAMINE" => mailbox::select(p, true)?,
        "CREATE" => mailbox::create(p)?,
        "DELETE" => {
            p.sp()?;
            CommandBody::Delete(mailbox(p)?)
        }
        "RENAME" => {
            p.sp()?;
            let from = mailbox(p)?;
            p.sp()?;
            let to = mailbox(p)?;
            CommandBody::Rename { from, to }
        }
        "SUBSCRIBE" => {
            p.sp()?;
            CommandBody::Subscribe(mailbox(p)?)
        }
        "UNSUBSCRIBE" => {
            p.sp()?;
            CommandBody::Unsubscribe(mailbox(p)?)
        }
        "LIST" => list::list(p)?,
        "LSUB" => list::lsub(p)?,
        "NAMESPACE" => CommandBody::Namespace,
        "STATUS" => mailbox::status(p)?,
        "APPEND" => append::append(p)?,
        "IDLE" => CommandBody::Idle,
        "ID" => misc::id(p)?,
        "GETQUOTA" => misc::getquota(p)?,
        "GETQUOTAROOT" => misc::getquotaroot(p)?,
        "SETQUOTA" => misc::setquota(p)?,
        "COMPRESS" => {
            p.sp()?;
            CommandBody::Compress(p.keyword()?)
        }
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "EXPUNGE" => CommandBody::Expunge,
        "SEARCH" => search::search(p, false)?,
        "SORT" => sort::sort(p, false)?,
        "FETCH" => fetch::fetch(p, false)?,
        "STORE" => store::store(p, false)?,
        "COPY" => copy_move(p, false, false)?,
        "MOVE" => copy_move(p, false, true)?,
        "UID" => {
            // RFC 9051 6.4.9: UID COPY / MOVE / FETCH / SEARCH / STORE / EXPUNGE (+ SORT).
            p.sp()?;
            let sub = p.keyword()?;
            match sub.as_str() {
                "SEARCH" => search::search(p, true)?,
                "SORT" => sort::sort(p, true)?,
                "FETCH" => fetch::fetch(p, true)?,
                "STORE" => store::store(p, true)?,
                "COPY" => copy_move(p, true, false)?,
                "MOVE" => copy_move(p, true, true)?,
                "EXPUNGE" => {
                    p.sp()?;
                    CommandBody::UidExpunge(SequenceSet::parse(p)?)
                }
                _ => return Err(ParseError::new(format!("unknown UID command {sub}"))),
            }
        }
        _ => return Err(ParseError::new(format!("unknown command {name}"))),
    };
    Ok(body)
}

fn copy_move(p: &mut Parser<'_>, uid: bool, is_move: bool) -> PResult<CommandBody> {
    // RFC 9051 6.4.7 / 6.4.8: COPY/MOVE sequence-set SP mailbox.
    p.sp()?;
    let set = SequenceSet::parse(p)?;
    p.sp()?;
    let mailbox = mailbox(p)?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}

/// Shorthand for tests: parse with default options.
#[cfg(test)]
pub(crate) fn parse(s: &[u8]) -> Result<Command, (Option<String>, ParseError)> {
    parse_command(s, ParseOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> CommandBody {
        match parse(s.as_bytes()) {
            Ok(c) => c.body,
            Err(e) => panic!("{s:?}: {e:?}"),
        }
    }

    fn bad(s: &str) -> Option<String> {
        match parse(s.as_bytes()) {
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
            Err((tag, _)) => tag,
        }
    }

    #[test]
    fn simple_commands() {
        assert_eq!(body("a CAPABILITY\r\n"), CommandBody::Capability);
        assert_eq!(body("a noop\r\n"), CommandBody::Noop);
        assert_eq!(body("a LOGOUT\r\n"), CommandBody::Logout);
        assert_eq!(body("a STARTTLS\r\n"), CommandBody::StartTls);
        assert_eq!(body("a CHECK\r\n"), CommandBody::Check);
        assert_eq!(body("a CLOSE\r\n"), CommandBody::Close);
        assert_eq!(body("a UNSELECT\r\n"), CommandBody::Unselect);
        assert_eq!(body("a EXPUNGE\r\n"), CommandBody::Expunge);
        assert_eq!(body("a IDLE\r\n"), CommandBody::Idle);
        assert_eq!(body("a NAMESPACE\r\n"), CommandBody::Namespace);
        assert_eq!(
            body("a COMPRESS deflate\r\n"),
            CommandBody::Compress("DEFLATE".into())
        );
        assert_eq!(
            body("a UID EXPUNGE 1:3,5\r\n"),
            CommandBody::UidExpunge(SequenceSet::parse_str("1:3,5").unwrap())
        );
        assert_eq!(
            body("a DELETE \"foo bar\"\r\n"),
            CommandBody::Delete(Mailbox(b"foo bar".to_vec()))
        );
        assert_eq!(
            body("a RENAME a {1}\r\nb\r\n"),
            CommandBody::Rename {
                from: Mailbox(b"a".to_vec()),
                to: Mailbox(b"b".to_vec())
            }
        );
        assert_eq!(
            body("a SUBSCRIBE x\r\n"),
            CommandBody::Subscribe(Mailbox(b"x".to_vec()))
        );
        assert_eq!(
            body("a UNSUBSCRIBE x\r\n"),
            CommandBody::Unsubscribe(Mailbox(b"x".to_vec()))
        );
        assert_eq!(
            body("a COPY 1:* Trash\r\n"),
            CommandBody::Copy {
                uid: false,
                set: SequenceSet::parse_str("1:*").unwrap(),
                mailbox: Mailbox(b"Trash".to_vec())
            }
        );
        assert_eq!(
            body("a UID MOVE $ Trash\r\n"),
            CommandBody::Move {
                uid: true,
                set: SequenceSet::Saved,
                mailbox: Mailbox(b"Trash".to_vec())
            }
        );
    }

    #[test]
    fn invalid_commands() {
        assert_eq!(bad("a FOO\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a NOOP extra\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a  NOOP\r\n").as_deref(), Some("a"));
        assert_eq!(bad("+a NOOP\r\n"), None);
        assert_eq!(bad("\r\n"), None);
        assert_eq!(bad("a UID\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a UID NOOP\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a COPY 0 x\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a COPY 1\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a DELETE\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a RENAME x\r\n").as_deref(), Some("a"));
        assert_eq!(bad("a UID EXPUNGE\r\n").as_deref(), Some("a"));
    }

    #[test]
    fn names() {
        assert_eq!(body("a UID FETCH 1 UID\r\n").name(), "UID FETCH");
        assert_eq!(body("a SEARCH ALL\r\n").name(), "SEARCH");
    }

    #[test]
    fn flags() {
        let mut p = Parser::new(b"(\\seen $Junk \\Foo)", 4);
        assert_eq!(
            Flag::parse_list(&mut p).unwrap(),
            vec![
                Flag("\\Seen".into()),
                Flag("$Junk".into()),
                Flag("\\Foo".into())
            ]
        );
        let mut p = Parser::new(b"(\\Recent)", 4);
        assert!(Flag::parse_list(&mut p).is_err());
        let mut p = Parser::new(b"()", 4);
        assert!(Flag::parse_list(&mut p).unwrap().is_empty());
    }
}
