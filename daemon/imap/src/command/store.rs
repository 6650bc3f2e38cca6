//! STORE (RFC 9051 6.4.6) with UNCHANGEDSINCE (RFC 7162 3.1.3).

use super::{CommandBody, Flag};
use crate::parser::{PResult, ParseError, Parser};
use crate::sequence::SequenceSet;

/// FLAGS, +FLAGS or -FLAGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Replace,
    Add,
    Remove,
}

pub(super) fn store(p: &mut Parser<'_>, uid: bool) -> PResult<CommandBody> {
    // RFC 7162 7: store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
    p.sp()?;
    let set = SequenceSet::parse(p)?;
    p.sp()?;
    let mut unchanged_since = None;
    if p.peek() == Some(b'(') {
        p.paren_list(false, |p| {
            let k = p.keyword()?;
            if k != "UNCHANGEDSINCE" {
                return Err(ParseError::new(format!("unknown store modifier {k}")));
            }
            p.sp()?;
            unchanged_since = Some(p.number64()?);
            Ok(())
        })?;
        p.sp()?;
    }
    // store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
    let kind = if p.eat(b'+') {
        StoreKind::Add
    } else if p.eat(b'-') {
        StoreKind::Remove
    } else {
        StoreKind::Replace
    };
    let silent = if p.eat_keyword("FLAGS") {
        false
    } else if p.eat_keyword("FLAGS.SILENT") {
        true
    } else {
        return Err(p.error("expected FLAGS"));
    };
    p.sp()?;
    let flags = if p.peek() == Some(b'(') {
        Flag::parse_list(p)?
    } else {
        let mut v = vec![Flag::parse(p)?];
        while p.eat(b' ') {
            v.push(Flag::parse(p)?);
        }
        v
    };
    Ok(CommandBody::Store {
        uid,
        set,
        kind,
        silent,
        flags,
        unchanged_since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    #[test]
    fn store_forms() {
        let c = parse(b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Store {
                uid: false,
                set: SequenceSet::parse_str("2:4").unwrap(),
                kind: StoreKind::Add,
                silent: false,
                flags: vec![Flag("\\Deleted".into())],
                unchanged_since: None
            }
        );
        let c = parse(b"a UID STORE 1 -flags.silent \\Seen $Junk\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Store { uid: true, kind: StoreKind::Remove,
            silent: true, flags, .. } if flags.len() == 2)
        );
        let c = parse(b"a STORE 1 FLAGS ()\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Store { kind: StoreKind::Replace, flags, .. }
            if flags.is_empty())
        );
        // RFC 7162 3.1.3 example.
        let c = parse(b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n")
            .unwrap();
        assert!(matches!(
            c.body,
            CommandBody::Store {
                unchanged_since: Some(320162338),
                silent: true,
                ..
            }
        ));
        for bad in [
            &b"a STORE 1 FLAGS\r\n"[..],
            b"a STORE 1 +FLAGZ (\\Seen)\r\n",
            b"a STORE 1 FLAGS (\\Recent)\r\n",
            b"a STORE 1 (FOO 1) FLAGS (\\Seen)\r\n",
            b"a STORE 1 (UNCHANGEDSINCE x) FLAGS (\\Seen)\r\n",
            b"a STORE 1 FLAGS (\\Seen\r\n",
            b"a STORE FLAGS (\\Seen)\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
