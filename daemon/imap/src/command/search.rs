//! SEARCH (RFC 9051 6.4.4) with ESEARCH return options (RFC 4731 3.1), SAVE and "$" (RFC
//! 5182), MODSEQ (RFC 7162 3.1.5) and OLDER/YOUNGER (RFC 5032).

use super::CommandBody;
use crate::datetime::Date;
use crate::parser::{PResult, ParseError, Parser};
use crate::sequence::SequenceSet;

/// RFC 4731 3.1 / RFC 5182 2.1 result options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// RFC 7162 3.1.5: the optional metadata item of MODSEQ (entry name and type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModSeqEntry {
    /// The flag of `"/flags/<flag>"`.
    pub flag: String,
    /// "priv", "shared" or "all" (lower-cased).
    pub kind: String,
}

/// A search key (RFC 9051 6.4.4). Strings are the client's text in UTF-8 (the CHARSET was
/// UTF-8 or US-ASCII; other charsets are answered with `[BADCHARSET]` by the server before
/// evaluating, see [`crate::search::check_charset`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// Several keys in sequence or in parentheses: all must match.
    And(Vec<SearchKey>),
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u64),
    /// RFC 3501 6.4.4 (IMAP4rev1): NEW = RECENT UNSEEN.
    New,
    Not(Box<SearchKey>),
    /// RFC 3501: OLD = NOT RECENT.
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// RFC 3501: RECENT.
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// A set of message sequence numbers (or "$").
    SequenceSet(SequenceSet),
    /// RFC 7162 3.1.5.
    ModSeq {
        entry: Option<ModSeqEntry>,
        modseq: u64,
    },
    /// RFC 5032: internal date at least / less than this many seconds ago.
    Older(u32),
    Younger(u32),
}

impl SearchKey {
    /// Whether evaluating the key may need the message's header or body (otherwise index
    /// data suffices).
    pub fn needs_message(&self) -> bool {
        use SearchKey::*;
        match self {
            And(v) => v.iter().any(SearchKey::needs_message),
            Not(k) => k.needs_message(),
            Or(a, b) => a.needs_message() || b.needs_message(),
            Bcc(_) | Body(_) | Cc(_) | From(_) | Header(..) | SentBefore(_) | SentOn(_)
            | SentSince(_) | Subject(_) | Text(_) | To(_) => true,
            _ => false,
        }
    }

    /// Whether the key uses "$" (RFC 5182 2.1).
    pub fn uses_saved(&self) -> bool {
        use SearchKey::*;
        match self {
            And(v) => v.iter().any(SearchKey::uses_saved),
            Not(k) => k.uses_saved(),
            Or(a, b) => a.uses_saved() || b.uses_saved(),
            Uid(s) | SequenceSet(s) => matches!(s, crate::sequence::SequenceSet::Saved),
            _ => false,
        }
    }

    /// Whether the key uses MODSEQ (RFC 7162 3.1.5: the response then carries MODSEQ).
    pub fn uses_modseq(&self) -> bool {
        use SearchKey::*;
        match self {
            And(v) => v.iter().any(SearchKey::uses_modseq),
            Not(k) => k.uses_modseq(),
            Or(a, b) => a.uses_modseq() || b.uses_modseq(),
            ModSeq { .. } => true,
            _ => false,
        }
    }
}

/// Search strings: UTF-8 is required for UTF-8/US-ASCII (or no) CHARSET; with another
/// charset the program is only parsed (the server answers BADCHARSET).
struct StringMode {
    strict: bool,
}

impl StringMode {
    fn string(&self, p: &mut Parser<'_>) -> PResult<String> {
        let b = p.astring()?;
        if self.strict {
            String::from_utf8(b).map_err(|_| ParseError::new("invalid UTF-8 in search string"))
        } else {
            Ok(String::from_utf8_lossy(&b).into_owned())
        }
    }
}

pub(crate) fn is_utf8_charset(c: &str) -> bool {
    c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("US-ASCII")
}

fn search_key(p: &mut Parser<'_>, m: &StringMode) -> PResult<SearchKey> {
    use SearchKey as K;
    match p.peek() {
        Some(b'(') => {
            let keys = p.paren_list(false, |p| search_key(p, m))?;
            return Ok(K::And(keys));
        }
        Some(c) if c.is_ascii_digit() || c == b'*' || c == b'$' => {
            return Ok(K::SequenceSet(SequenceSet::parse(p)?));
        }
        _ => {}
    }
    let k = p.keyword()?;
    let date = |p: &mut Parser<'_>| -> PResult<Date> {
        p.sp()?;
        Date::parse(p)
    };
    let string = |p: &mut Parser<'_>| -> PResult<String> {
        p.sp()?;
        m.string(p)
    };
    let keyword = |p: &mut Parser<'_>| -> PResult<String> {
        p.sp()?;
        let a = p.atom()?;
        Ok(String::from_utf8_lossy(a).into_owned())
    };
    Ok(match k.as_str() {
        "ALL" => K::All,
        "ANSWERED" => K::Answered,
        "BCC" => K::Bcc(string(p)?),
        "BEFORE" => K::Before(date(p)?),
        "BODY" => K::Body(string(p)?),
        "CC" => K::Cc(string(p)?),
        "DELETED" => K::Deleted,
        "DRAFT" => K::Draft,
        "FLAGGED" => K::Flagged,
        "FROM" => K::From(string(p)?),
        "HEADER" => {
            let name = string(p)?;
            let value = string(p)?;
            K::Header(name, value)
        }
        "KEYWORD" => K::Keyword(keyword(p)?),
        "LARGER" => {
            p.sp()?;
            K::Larger(p.number64()?)
        }
        "NEW" => K::New,
        "NOT" => {
            p.sp()?;
            p.enter()?;
            let k = search_key(p, m)?;
            p.leave();
            K::Not(Box::new(k))
        }
        "OLD" => K::Old,
        "ON" => K::On(date(p)?),
        "OR" => {
            p.enter()?;
            p.sp()?;
            let a = search_key(p, m)?;
            p.sp()?;
            let b = search_key(p, m)?;
            p.leave();
            K::Or(Box::new(a), Box::new(b))
        }
        "RECENT" => K::Recent,
        "SEEN" => K::Seen,
        "SENTBEFORE" => K::SentBefore(date(p)?),
        "SENTON" => K::SentOn(date(p)?),
        "SENTSINCE" => K::SentSince(date(p)?),
        "SINCE" => K::Since(date(p)?),
        "SMALLER" => {
            p.sp()?;
            K::Smaller(p.number64()?)
        }
        "SUBJECT" => K::Subject(string(p)?),
        "TEXT" => K::Text(string(p)?),
        "TO" => K::To(string(p)?),
        "UID" => {
            p.sp()?;
            K::Uid(SequenceSet::parse(p)?)
        }
        "UNANSWERED" => K::Unanswered,
        "UNDELETED" => K::Undeleted,
        "UNDRAFT" => K::Undraft,
        "UNFLAGGED" => K::Unflagged,
        "UNKEYWORD" => K::Unkeyword(keyword(p)?),
        "UNSEEN" => K::Unseen,
        "MODSEQ" => {
            // RFC 7162 7: search-modsequence = "MODSEQ" [search-modseq-ext] SP
            //   mod-sequence-valzer; search-modseq-ext = SP entry-name SP entry-type-req
            p.sp()?;
            let mut entry = None;
            if p.peek() == Some(b'"') {
                let name = p.quoted()?;
                let name = String::from_utf8_lossy(&name).into_owned();
                let Some(flag) = name
                    .get(..7)
                    .filter(|pre| pre.eq_ignore_ascii_case("/flags/"))
                    .map(|_| name[7..].to_string())
                else {
                    return Err(ParseError::new("invalid MODSEQ entry name"));
                };
                p.sp()?;
                let kind = p.keyword()?.to_ascii_lowercase();
                if !matches!(kind.as_str(), "priv" | "shared" | "all") {
                    return Err(ParseError::new("invalid MODSEQ entry type"));
                }
                p.sp()?;
                entry = Some(ModSeqEntry { flag, kind });
            }
            K::ModSeq {
                entry,
                modseq: p.number64()?,
            }
        }
        "OLDER" => {
            p.sp()?;
            K::Older(p.nz_number()?)
        }
        "YOUNGER" => {
            p.sp()?;
            K::Younger(p.nz_number()?)
        }
        _ => return Err(ParseError::new(format!("unknown search key {k}"))),
    })
}

/// RFC 4731 3.1: search-return-opts = SP "RETURN" SP "(" [search-return-opt
/// *(SP search-return-opt)] ")". Called after "RETURN" was consumed.
pub(crate) fn return_opts(p: &mut Parser<'_>) -> PResult<Vec<SearchReturn>> {
    p.sp()?;
    p.paren_list(true, |p| {
        let k = p.keyword()?;
        Ok(match k.as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" => SearchReturn::Save,
            _ => return Err(ParseError::new(format!("unknown return option {k}"))),
        })
    })
}

/// RFC 9051 9: search-program = ["CHARSET" SP charset SP] search-key *(SP search-key).
/// Returns the charset and the keys (one key, or `And` of several).
pub(crate) fn program(
    p: &mut Parser<'_>,
    charset: Option<String>,
) -> PResult<(Option<String>, SearchKey)> {
    let mode = StringMode {
        strict: charset.as_deref().is_none_or(is_utf8_charset),
    };
    let mut keys = vec![search_key(p, &mode)?];
    while p.eat(b' ') {
        keys.push(search_key(p, &mode)?);
    }
    let key = if keys.len() == 1 {
        keys.pop().unwrap_or(SearchKey::All)
    } else {
        SearchKey::And(keys)
    };
    Ok((charset, key))
}

pub(super) fn search(p: &mut Parser<'_>, uid: bool) -> PResult<CommandBody> {
    p.sp()?;
    let mut returns = None;
    if p.eat_keyword("RETURN") {
        returns = Some(return_opts(p)?);
        p.sp()?;
    }
    let mut charset = None;
    if p.eat_keyword("CHARSET") {
        p.sp()?;
        charset = Some(String::from_utf8_lossy(&p.astring()?).into_owned());
        p.sp()?;
    }
    let (charset, criteria) = program(p, charset)?;
    Ok(CommandBody::Search {
        uid,
        charset,
        criteria,
        returns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{parse, parse_command, ParseOptions};

    fn key(s: &str) -> SearchKey {
        match parse(format!("a SEARCH {s}\r\n").as_bytes()) {
            Ok(c) => match c.body {
                CommandBody::Search { criteria, .. } => criteria,
                _ => unreachable!(),
            },
            Err(e) => panic!("{s:?}: {e:?}"),
        }
    }

    #[test]
    fn all_keys() {
        use SearchKey as K;
        let d = Date::new(1994, 2, 1).unwrap();
        let cases: Vec<(&str, SearchKey)> = vec![
            ("ALL", K::All),
            ("ANSWERED", K::Answered),
            ("BCC joe", K::Bcc("joe".into())),
            ("BEFORE 1-Feb-1994", K::Before(d)),
            ("BODY \"hello world\"", K::Body("hello world".into())),
            ("CC {3}\r\nabc", K::Cc("abc".into())),
            ("DELETED", K::Deleted),
            ("DRAFT", K::Draft),
            ("FLAGGED", K::Flagged),
            ("FROM Smith", K::From("Smith".into())),
            ("HEADER X-Foo \"\"", K::Header("X-Foo".into(), "".into())),
            ("KEYWORD $Junk", K::Keyword("$Junk".into())),
            ("LARGER 100", K::Larger(100)),
            ("NEW", K::New),
            ("NOT SEEN", K::Not(Box::new(K::Seen))),
            ("OLD", K::Old),
            ("ON \"1-Feb-1994\"", K::On(d)),
            (
                "OR SEEN FLAGGED",
                K::Or(Box::new(K::Seen), Box::new(K::Flagged)),
            ),
            ("RECENT", K::Recent),
            ("SEEN", K::Seen),
            ("SENTBEFORE 1-Feb-1994", K::SentBefore(d)),
            ("SENTON 1-Feb-1994", K::SentOn(d)),
            ("SENTSINCE 1-Feb-1994", K::SentSince(d)),
            ("SINCE 1-Feb-1994", K::Since(d)),
            ("SMALLER 5", K::Smaller(5)),
            ("SUBJECT \"caf\u{e9}\"", K::Subject("caf\u{e9}".into())),
            ("TEXT x", K::Text("x".into())),
            ("TO y", K::To("y".into())),
            ("UID 1:*", K::Uid(SequenceSet::parse_str("1:*").unwrap())),
            ("UNANSWERED", K::Unanswered),
            ("UNDELETED", K::Undeleted),
            ("UNDRAFT", K::Undraft),
            ("UNFLAGGED", K::Unflagged),
            ("UNKEYWORD foo", K::Unkeyword("foo".into())),
            ("UNSEEN", K::Unseen),
            (
                "2:4,*",
                K::SequenceSet(SequenceSet::parse_str("2:4,*").unwrap()),
            ),
            ("$", K::SequenceSet(SequenceSet::Saved)),
            (
                "MODSEQ 20010715194045007",
                K::ModSeq {
                    entry: None,
                    modseq: 20010715194045007,
                },
            ),
            (
                "MODSEQ \"/flags/\\\\draft\" all 620162338",
                K::ModSeq {
                    entry: Some(ModSeqEntry {
                        flag: "\\draft".into(),
                        kind: "all".into(),
                    }),
                    modseq: 620162338,
                },
            ),
            ("OLDER 3600", K::Older(3600)),
            ("YOUNGER 60", K::Younger(60)),
            ("(SEEN FLAGGED)", K::And(vec![K::Seen, K::Flagged])),
            ("seen flagged", K::And(vec![K::Seen, K::Flagged])),
        ];
        for (s, want) in cases {
            assert_eq!(key(s), want, "{s}");
        }
    }

    #[test]
    fn return_and_charset() {
        let c = parse(
            b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        )
        .unwrap();
        let CommandBody::Search {
            returns,
            criteria,
            charset,
            uid,
        } = c.body
        else {
            panic!()
        };
        assert!(!uid && charset.is_none());
        assert_eq!(returns, Some(vec![SearchReturn::Min, SearchReturn::Count]));
        assert!(matches!(criteria, SearchKey::And(v) if v.len() == 3));
        let c = parse(b"a UID SEARCH RETURN () CHARSET utf-8 TEXT \"x\"\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Search { uid: true, returns: Some(r), charset: Some(cs), .. }
            if r.is_empty() && cs == "utf-8")
        );
        let c = parse(b"a SEARCH RETURN (SAVE ALL MAX) 1:3\r\n").unwrap();
        assert!(matches!(&c.body, CommandBody::Search { returns: Some(r), .. } if r.len() == 3));
        // Another charset: parsed, strings lossy; the server answers BADCHARSET.
        let c = parse(b"a SEARCH CHARSET ISO-8859-1 SUBJECT \"caf\xe9\"\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Search { charset: Some(cs), .. } if cs == "ISO-8859-1")
        );
        assert!(parse(b"a SEARCH SUBJECT \"caf\xe9\"\r\n").is_err());
    }

    #[test]
    fn invalid() {
        for bad in [
            "a SEARCH\r\n",
            "a SEARCH FOO\r\n",
            "a SEARCH BEFORE 32-Jan-2000\r\n",
            "a SEARCH NOT\r\n",
            "a SEARCH OR SEEN\r\n",
            "a SEARCH ()\r\n",
            "a SEARCH (SEEN\r\n",
            "a SEARCH RETURN (FOO) ALL\r\n",
            "a SEARCH RETURN ALL\r\n",
            "a SEARCH CHARSET\r\n",
            "a SEARCH HEADER x\r\n",
            "a SEARCH LARGER x\r\n",
            "a SEARCH UID\r\n",
            "a SEARCH MODSEQ \"/foo/x\" all 1\r\n",
            "a SEARCH MODSEQ \"/flags/x\" any 1\r\n",
            "a SEARCH 0\r\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let opts = ParseOptions { max_depth: 32 };
        let deep = format!("a SEARCH {}SEEN\r\n", "NOT ".repeat(100));
        assert!(parse_command(deep.as_bytes(), opts).is_err());
        let ok = format!("a SEARCH {}SEEN\r\n", "NOT ".repeat(20));
        assert!(parse_command(ok.as_bytes(), opts).is_ok());
        let deep = format!("a SEARCH {}SEEN{}\r\n", "(".repeat(100), ")".repeat(100));
        assert!(parse_command(deep.as_bytes(), opts).is_err());
        let deep = format!("a SEARCH {}SEEN{}\r\n", "OR SEEN ".repeat(100), "");
        assert!(parse_command(deep.as_bytes(), opts).is_err());
        // A hostile million-deep chain fails quickly without exhausting the stack.
        let huge = format!("a SEARCH {}SEEN\r\n", "NOT ".repeat(1_000_000));
        assert!(parse_command(huge.as_bytes(), opts).is_err());
    }
}
