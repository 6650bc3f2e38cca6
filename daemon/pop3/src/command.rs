//! POP3 command parsing (RFC 1939 3, 5, 6, 7; RFC 2449 5; RFC 2595 4; RFC 5034 4).

/// A message number as given by the client. Numbers too large for `usize` saturate; the
/// session answers "no such message" for them like for any number outside the maildrop.
pub type MsgNum = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 1939 7: USER name.
    User(String),
    /// RFC 1939 7: PASS string. The whole rest of the line, spaces included.
    Pass(String),
    /// RFC 1939 7: APOP; recognised so it can be refused (not offered: it needs the
    /// plaintext password on the server).
    Apop,
    /// RFC 5034 4: AUTH mechanism [initial-response]; with no mechanism, list them.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    /// RFC 2449 5.
    Capa,
    /// RFC 2595 4.
    Stls,
    Stat,
    List(Option<MsgNum>),
    Uidl(Option<MsgNum>),
    Retr(MsgNum),
    /// RFC 1939 7: TOP msg n.
    Top(MsgNum, usize),
    Dele(MsgNum),
    Rset,
    Noop,
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command")]
    Unknown,
    /// Wrong arguments; the text is the usage line.
    #[error("syntax: {0}")]
    Syntax(&'static str),
}

/// Parses one command line (terminator already removed).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // RFC 1939 3: a keyword, then arguments separated by a single space.
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if keyword.is_empty() || keyword.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let mut upper = [0u8; 4];
    for (dst, src) in upper.iter_mut().zip(keyword) {
        *dst = src.to_ascii_uppercase();
    }
    let keyword = &upper[..keyword.len()];
    // Arguments other than USER's and PASS's are tokens; extra spaces are tolerated.
    let args: Vec<&[u8]> = rest
        .map(|r| r.split(|&b| b == b' ').filter(|a| !a.is_empty()).collect())
        .unwrap_or_default();
    let none = |cmd: Command, usage| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::Syntax(usage))
        }
    };
    match keyword {
        b"USER" => {
            let name = rest.map(trim_spaces).unwrap_or_default();
            if name.is_empty() {
                return Err(ParseError::Syntax("USER name"));
            }
            let name = std::str::from_utf8(name).map_err(|_| ParseError::Syntax("USER name"))?;
            Ok(Command::User(name.to_string()))
        }
        b"PASS" => {
            // RFC 1939 7: "the server may treat spaces in the argument as part of the
            // password, instead of as argument separators".
            let pass = rest.unwrap_or_default();
            let pass = std::str::from_utf8(pass).map_err(|_| ParseError::Syntax("PASS string"))?;
            Ok(Command::Pass(pass.to_string()))
        }
        b"APOP" => Ok(Command::Apop),
        b"AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mech] | [mech, _] => {
                let text = |b: &[u8]| {
                    std::str::from_utf8(b)
                        .map(str::to_string)
                        .map_err(|_| ParseError::Syntax("AUTH mechanism [initial-response]"))
                };
                Ok(Command::Auth {
                    mechanism: Some(text(mech)?.to_ascii_uppercase()),
                    initial: args.get(1).map(|b| text(b)).transpose()?,
                })
            }
            _ => Err(ParseError::Syntax("AUTH mechanism [initial-response]")),
        },
        b"CAPA" => none(Command::Capa, "CAPA"),
        b"STLS" => none(Command::Stls, "STLS"),
        b"STAT" => none(Command::Stat, "STAT"),
        b"RSET" => none(Command::Rset, "RSET"),
        b"NOOP" => none(Command::Noop, "NOOP"),
        b"QUIT" => none(Command::Quit, "QUIT"),
        b"LIST" => optional_msg(&args, "LIST [msg]").map(Command::List),
        b"UIDL" => optional_msg(&args, "UIDL [msg]").map(Command::Uidl),
        b"RETR" => one_msg(&args, "RETR msg").map(Command::Retr),
        b"DELE" => one_msg(&args, "DELE msg").map(Command::Dele),
        b"TOP" => match args.as_slice() {
            [msg, lines] => {
                let usage = "TOP msg n";
                Ok(Command::Top(
                    number(msg).ok_or(ParseError::Syntax(usage))?,
                    number(lines).ok_or(ParseError::Syntax(usage))?,
                ))
            }
            _ => Err(ParseError::Syntax("TOP msg n")),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn trim_spaces(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ').map_or(start, |e| e + 1);
    &b[start..end]
}

/// A non-negative decimal number; digits only (no sign), saturating when too large.
fn number(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn one_msg(args: &[&[u8]], usage: &'static str) -> Result<MsgNum, ParseError> {
    match args {
        [msg] => number(msg).ok_or(ParseError::Syntax(usage)),
        _ => Err(ParseError::Syntax(usage)),
    }
}

fn optional_msg(args: &[&[u8]], usage: &'static str) -> Result<Option<MsgNum>, ParseError> {
    match args {
        [] => Ok(None),
        [msg] => number(msg).map(Some).ok_or(ParseError::Syntax(usage)),
        _ => Err(ParseError::Syntax(usage)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse(b"stat"), Ok(Command::Stat));
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"capa"), Ok(Command::Capa));
        assert_eq!(parse(b"Stls"), Ok(Command::Stls));
        assert_eq!(parse(b"noop"), Ok(Command::Noop));
        assert_eq!(parse(b"rset"), Ok(Command::Rset));
        assert_eq!(parse(b"apop a b"), Ok(Command::Apop));
    }

    #[test]
    fn user_and_pass() {
        assert_eq!(
            parse(b"USER alice@example.test"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(parse(b"USER"), Err(ParseError::Syntax("USER name")));
        assert_eq!(parse(b"USER   "), Err(ParseError::Syntax("USER name")));
        // Spaces are part of the password, leading and trailing ones too.
        assert_eq!(
            parse(b"PASS  two words "),
            Ok(Command::Pass(" two words ".into()))
        );
        assert_eq!(parse(b"PASS"), Ok(Command::Pass(String::new())));
        assert!(parse(b"PASS \xff").is_err());
    }

    #[test]
    fn message_arguments() {
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"UIDL"), Ok(Command::Uidl(None)));
        assert_eq!(parse(b"uidl 12"), Ok(Command::Uidl(Some(12))));
        assert_eq!(parse(b"RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(parse(b"DELE 0"), Ok(Command::Dele(0)));
        assert_eq!(parse(b"TOP 2 10"), Ok(Command::Top(2, 10)));
        assert_eq!(
            parse(b"RETR 99999999999999999999999999"),
            Ok(Command::Retr(usize::MAX))
        );
        for bad in [
            &b"RETR"[..],
            b"RETR -1",
            b"RETR +1",
            b"RETR x",
            b"RETR 1 2",
            b"DELE",
            b"LIST a",
            b"LIST 1 2",
            b"TOP 1",
            b"TOP 1 x",
            b"TOP 1 2 3",
            b"STAT 1",
            b"QUIT now",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn auth() {
        assert_eq!(
            parse(b"AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            parse(b"AUTH plain"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into())
            })
        );
        assert!(parse(b"AUTH PLAIN a b").is_err());
    }

    #[test]
    fn unknown_commands() {
        for bad in [
            &b""[..],
            b" STAT",
            b"LAST",
            b"XTND XMIT",
            b"STATUS",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Unknown));
        }
    }
}
