//! SELECT/EXAMINE (RFC 9051 6.3.2/6.3.3, RFC 7162 CONDSTORE/QRESYNC parameters), CREATE
//! (RFC 9051 6.3.4, RFC 6154 5.3 USE) and STATUS (RFC 9051 6.3.11).

use super::{mailbox, CommandBody};
use crate::parser::{PResult, ParseError, Parser};
use crate::sequence::SequenceSet;

/// The QRESYNC select parameter (RFC 7162 3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence set, known UID set): seq-match-data.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// STATUS data items (RFC 9051 6.3.11, RFC 7162 3.1.6 HIGHESTMODSEQ, RFC 7889 APPENDLIMIT,
/// RECENT for IMAP4rev1 clients, RFC 3501 6.3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }

    pub(crate) fn parse(p: &mut Parser<'_>) -> PResult<StatusItem> {
        let k = p.keyword()?;
        Ok(match k.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return Err(ParseError::new(format!("unknown status item {k}"))),
        })
    }
}

pub(super) fn select(p: &mut Parser<'_>, examine: bool) -> PResult<CommandBody> {
    p.sp()?;
    let mailbox = mailbox(p)?;
    let mut condstore = false;
    let mut qresync = None;
    if p.eat(b' ') {
        // RFC 7162 7: select-params = SP "(" select-param *(SP select-param) ")"
        p.paren_list(false, |p| {
            let k = p.keyword()?;
            match k.as_str() {
                "CONDSTORE" => condstore = true,
                "QRESYNC" => {
                    p.sp()?;
                    qresync = Some(qresync_param(p)?);
                }
                _ => return Err(ParseError::new(format!("unknown select parameter {k}"))),
            }
            Ok(())
        })?;
    }
    Ok(if examine {
        CommandBody::Examine {
            mailbox,
            condstore,
            qresync,
        }
    } else {
        CommandBody::Select {
            mailbox,
            condstore,
            qresync,
        }
    })
}

fn qresync_param(p: &mut Parser<'_>) -> PResult<QResync> {
    // RFC 7162 7: "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
    //   [SP seq-match-data] ")"
    p.expect(b'(')?;
    p.enter()?;
    let uidvalidity = p.nz_number()?;
    p.sp()?;
    let modseq = p.number64()?;
    let mut known_uids = None;
    let mut seq_match = None;
    if p.eat(b' ') {
        if p.peek() != Some(b'(') {
            known_uids = Some(SequenceSet::parse(p)?);
            if p.eat(b' ') {
                seq_match = Some(seq_match_data(p)?);
            }
        } else {
            seq_match = Some(seq_match_data(p)?);
        }
    }
    p.expect(b')')?;
    p.leave();
    if matches!(known_uids, Some(SequenceSet::Saved)) {
        return Err(ParseError::new("$ is not allowed in QRESYNC"));
    }
    Ok(QResync {
        uidvalidity,
        modseq,
        known_uids,
        seq_match,
    })
}

fn seq_match_data(p: &mut Parser<'_>) -> PResult<(SequenceSet, SequenceSet)> {
    p.expect(b'(')?;
    let seqs = SequenceSet::parse(p)?;
    p.sp()?;
    let uids = SequenceSet::parse(p)?;
    p.expect(b')')?;
    Ok((seqs, uids))
}

pub(super) fn create(p: &mut Parser<'_>) -> PResult<CommandBody> {
    p.sp()?;
    let mailbox = mailbox(p)?;
    let mut special_use = Vec::new();
    if p.eat(b' ') {
        // RFC 6154 6: create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"
        p.paren_list(false, |p| {
            let k = p.keyword()?;
            if k != "USE" {
                return Err(ParseError::new(format!("unknown CREATE parameter {k}")));
            }
            p.sp()?;
            let attrs = p.paren_list(true, |p| {
                p.expect(b'\\')?;
                let a = p.atom()?;
                Ok(format!("\\{}", String::from_utf8_lossy(a)))
            })?;
            special_use.extend(attrs);
            Ok(())
        })?;
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

pub(super) fn status(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
    p.sp()?;
    let mailbox = mailbox(p)?;
    p.sp()?;
    let items = p.paren_list(false, StatusItem::parse)?;
    Ok(CommandBody::Status { mailbox, items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::mutf7::Mailbox;

    #[test]
    fn select_examine() {
        let c = parse(b"a SELECT INBOX\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Select {
                mailbox: Mailbox(b"INBOX".to_vec()),
                condstore: false,
                qresync: None
            }
        );
        let c = parse(b"a EXAMINE x (CONDSTORE)\r\n").unwrap();
        assert!(matches!(
            c.body,
            CommandBody::Examine {
                condstore: true,
                ..
            }
        ));
        // RFC 7162 3.2.5.2 example.
        let c =
            parse(b"A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41,43:211,214:541))\r\n")
                .unwrap();
        let CommandBody::Select { qresync, .. } = c.body else {
            panic!()
        };
        let q = qresync.unwrap();
        assert_eq!(q.uidvalidity, 67890007);
        assert_eq!(q.modseq, 90060115194045000);
        assert_eq!(
            q.known_uids,
            Some(SequenceSet::parse_str("41,43:211,214:541").unwrap())
        );
        let c = parse(
            b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
        )
        .unwrap();
        let CommandBody::Select { qresync, .. } = c.body else {
            panic!()
        };
        assert!(qresync.unwrap().seq_match.is_some());
        let c = parse(b"a SELECT INBOX (QRESYNC (1 2 (1:2 3:4)))\r\n").unwrap();
        let CommandBody::Select { qresync, .. } = c.body else {
            panic!()
        };
        let q = qresync.unwrap();
        assert!(q.known_uids.is_none() && q.seq_match.is_some());
        for bad in [
            &b"a SELECT\r\n"[..],
            b"a SELECT INBOX ()\r\n",
            b"a SELECT INBOX (FOO)\r\n",
            b"a SELECT INBOX (QRESYNC (0 1))\r\n",
            b"a SELECT INBOX (QRESYNC (1))\r\n",
            b"a SELECT INBOX (QRESYNC (1 2 $))\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create() {
        let c = parse(b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Create {
                mailbox: Mailbox(b"MySpecial".to_vec()),
                special_use: vec!["\\Drafts".into(), "\\Sent".into()]
            }
        );
        let c = parse(b"t1 CREATE x\r\n").unwrap();
        assert!(
            matches!(c.body, CommandBody::Create { special_use, .. } if special_use.is_empty())
        );
        assert!(parse(b"t1 CREATE x (FOO (\\Sent))\r\n").is_err());
        assert!(parse(b"t1 CREATE x (USE (Sent))\r\n").is_err());
    }

    #[test]
    fn status() {
        let c = parse(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES highestmodseq size deleted unseen uidvalidity recent appendlimit)\r\n").unwrap();
        let CommandBody::Status { items, .. } = c.body else {
            panic!()
        };
        assert_eq!(items.len(), 9);
        assert_eq!(items[0], StatusItem::UidNext);
        assert!(parse(b"a STATUS x ()\r\n").is_err());
        assert!(parse(b"a STATUS x (FOO)\r\n").is_err());
        assert!(parse(b"a STATUS x\r\n").is_err());
    }
}
