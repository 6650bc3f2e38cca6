//! LIST (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154)
//! and LSUB (RFC 3501 6.3.9).

use super::mailbox::StatusItem;
use super::CommandBody;
use crate::mutf7::Mailbox;
use crate::parser::{PResult, ParseError, Parser};

/// Selection options (RFC 5258 3.1, RFC 6154 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

/// Return options (RFC 5258 3.2, RFC 5819 2, RFC 6154 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

pub(super) fn list(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 5258 6: list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
    //   [SP list-return-opts]
    p.sp()?;
    let mut extended = false;
    let mut selection = Vec::new();
    if p.peek() == Some(b'(') {
        extended = true;
        selection = p.paren_list(true, |p| {
            let k = p.keyword()?;
            Ok(match k.as_str() {
                "SUBSCRIBED" => ListSelect::Subscribed,
                "REMOTE" => ListSelect::Remote,
                "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                "SPECIAL-USE" => ListSelect::SpecialUse,
                _ => return Err(ParseError::new(format!("unknown selection option {k}"))),
            })
        })?;
        // RFC 5258 3.1: RECURSIVEMATCH needs another selection option that is not REMOTE.
        if selection.contains(&ListSelect::RecursiveMatch)
            && !selection
                .iter()
                .any(|s| matches!(s, ListSelect::Subscribed | ListSelect::SpecialUse))
        {
            return Err(ParseError::new(
                "RECURSIVEMATCH needs another selection option",
            ));
        }
        p.sp()?;
    }
    let reference = Mailbox(p.astring()?);
    p.sp()?;
    let patterns = if p.peek() == Some(b'(') {
        extended = true;
        p.paren_list(false, |p| p.list_mailbox().map(Mailbox))?
    } else {
        vec![Mailbox(p.list_mailbox()?)]
    };
    let mut returns = Vec::new();
    if p.eat(b' ') {
        extended = true;
        if !p.eat_keyword("RETURN") {
            return Err(p.error("expected RETURN"));
        }
        p.sp()?;
        returns = p.paren_list(true, |p| {
            let k = p.keyword()?;
            Ok(match k.as_str() {
                "SUBSCRIBED" => ListReturn::Subscribed,
                "CHILDREN" => ListReturn::Children,
                "SPECIAL-USE" => ListReturn::SpecialUse,
                "STATUS" => {
                    p.sp()?;
                    ListReturn::Status(p.paren_list(false, StatusItem::parse)?)
                }
                _ => return Err(ParseError::new(format!("unknown return option {k}"))),
            })
        })?;
    }
    Ok(CommandBody::List {
        reference,
        patterns,
        selection,
        returns,
        extended,
    })
}

pub(super) fn lsub(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 3501 9: lsub = "LSUB" SP mailbox SP list-mailbox
    p.sp()?;
    let reference = Mailbox(p.astring()?);
    p.sp()?;
    let pattern = Mailbox(p.list_mailbox()?);
    Ok(CommandBody::Lsub { reference, pattern })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn mb(s: &str) -> Mailbox {
        Mailbox(s.as_bytes().to_vec())
    }

    #[test]
    fn basic_list() {
        let c = parse(b"A101 LIST \"\" \"\"\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::List {
                reference: mb(""),
                patterns: vec![mb("")],
                selection: vec![],
                returns: vec![],
                extended: false
            }
        );
        let c = parse(b"A102 LIST #news.comp.mail.misc %\r\n").unwrap();
        let CommandBody::List {
            reference,
            patterns,
            ..
        } = c.body
        else {
            panic!()
        };
        assert_eq!(reference, mb("#news.comp.mail.misc"));
        assert_eq!(patterns, vec![mb("%")]);
        let c = parse(b"A103 LIST /usr/staff/jones *\r\n").unwrap();
        assert!(matches!(c.body, CommandBody::List { .. }));
        let c = parse(b"A LIST \"\" foo/*]%\r\n").unwrap();
        assert!(
            matches!(c.body, CommandBody::List { patterns, .. } if patterns == vec![mb("foo/*]%")])
        );
    }

    #[test]
    fn extended_list() {
        // RFC 5258 5 examples.
        let c = parse(b"A02 LIST (SUBSCRIBED) \"\" \"*\"\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::List { selection, extended: true, .. }
            if selection == &vec![ListSelect::Subscribed])
        );
        let c = parse(b"A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n").unwrap();
        assert!(matches!(&c.body, CommandBody::List { returns, .. }
            if returns == &vec![ListReturn::Children]));
        let c = parse(b"C04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n")
            .unwrap();
        assert!(matches!(c.body, CommandBody::List { .. }));
        let c = parse(b"BBB LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::List { patterns, extended: true, .. }
            if patterns.len() == 3)
        );
        // RFC 5819 3.
        let c = parse(b"A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n").unwrap();
        assert!(matches!(&c.body, CommandBody::List { returns, .. }
            if returns == &vec![ListReturn::Status(vec![StatusItem::Messages, StatusItem::Unseen])]));
        // RFC 6154 5.
        let c =
            parse(b"t1 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)\r\n").unwrap();
        assert!(matches!(c.body, CommandBody::List { .. }));
        for bad in [
            &b"a LIST (RECURSIVEMATCH) \"\" *\r\n"[..],
            b"a LIST (FOO) \"\" *\r\n",
            b"a LIST \"\" * RETURN (FOO)\r\n",
            b"a LIST \"\" * FOO (CHILDREN)\r\n",
            b"a LIST \"\"\r\n",
            b"a LIST \"\" ()\r\n",
            b"a LIST \"\" % RETURN (STATUS ())\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lsub() {
        let c = parse(b"A002 LSUB \"#news.\" \"comp.mail.*\"\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Lsub {
                reference: mb("#news."),
                pattern: mb("comp.mail.*")
            }
        );
        assert!(parse(b"A002 LSUB \"\"\r\n").is_err());
    }
}
