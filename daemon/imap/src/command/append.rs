//! APPEND (RFC 9051 6.3.12) with MULTIAPPEND (RFC 3502), BINARY literal8 (RFC 3516 4.4) and
//! UTF8 (RFC 6855 4).

use super::{mailbox, AppendMessage, CommandBody, Flag};
use crate::datetime::DateTime;
use crate::parser::{PResult, Parser};

pub(super) fn append(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 3502 6: append = "APPEND" SP mailbox 1*append-message
    //   append-message = append-opts SP append-data
    //   append-opts = [SP flag-list] [SP date-time]
    p.sp()?;
    let mailbox = mailbox(p)?;
    let mut messages = Vec::new();
    while p.eat(b' ') {
        let mut flags = Vec::new();
        let mut internal_date = None;
        if p.peek() == Some(b'(') {
            flags = Flag::parse_list(p)?;
            p.sp()?;
        }
        if p.peek() == Some(b'"') {
            internal_date = Some(DateTime::parse(p)?);
            p.sp()?;
        }
        let (data, binary, utf8) = if p.eat_keyword("UTF8") {
            // RFC 6855 4: append-data =/ "UTF8" SP "(" literal8 ")"
            p.sp()?;
            p.expect(b'(')?;
            let (data, _) = p.literal_any(true)?;
            p.expect(b')')?;
            (data, true, true)
        } else {
            let (data, binary) = p.literal_any(true)?;
            (data, binary, false)
        };
        messages.push(AppendMessage {
            flags,
            internal_date,
            data,
            binary,
            utf8,
        });
    }
    if messages.is_empty() {
        return Err(p.error("expected a message literal"));
    }
    Ok(CommandBody::Append { mailbox, messages })
}

#[cfg(test)]
mod tests {
    use crate::command::{parse, CommandBody, Flag};
    use crate::mutf7::Mailbox;

    #[test]
    fn append_forms() {
        let c = parse(
            b"A003 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5}\r\nhello\r\n",
        )
        .unwrap();
        let CommandBody::Append { mailbox, messages } = c.body else {
            panic!()
        };
        assert_eq!(mailbox, Mailbox(b"saved-messages".to_vec()));
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].flags, vec![Flag("\\Seen".into())]);
        assert_eq!(messages[0].internal_date.unwrap().unix, 837_596_665);
        assert_eq!(messages[0].data, b"hello");
        assert!(!messages[0].binary);

        let c = parse(b"a APPEND x {2+}\r\nab\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Append { messages, .. } if messages[0].data == b"ab")
        );
        // RFC 3516 4.4: literal8 with NUL.
        let c = parse(b"a APPEND x () ~{3}\r\na\0b\r\n").unwrap();
        assert!(
            matches!(&c.body, CommandBody::Append { messages, .. } if messages[0].binary && messages[0].data == b"a\0b")
        );
        // RFC 3502 MULTIAPPEND.
        let c = parse(
            b"a APPEND x (\\Seen) {1}\r\na \"01-Jan-2020 00:00:00 +0000\" {1}\r\nb {1}\r\nc\r\n",
        )
        .unwrap();
        assert!(
            matches!(&c.body, CommandBody::Append { messages, .. } if messages.len() == 3
            && messages[1].internal_date.is_some() && messages[2].data == b"c")
        );
        // RFC 6855 4.
        let c = parse(b"a APPEND x UTF8 (~{2}\r\n\xc3\xa9)\r\n").unwrap();
        assert!(matches!(&c.body, CommandBody::Append { messages, .. } if messages[0].utf8));
        for bad in [
            &b"a APPEND x\r\n"[..],
            b"a APPEND x (\\Seen)\r\n",
            b"a APPEND x \"bad date\" {1}\r\na\r\n",
            b"a APPEND x {1}\r\na extra\r\n",
            b"a APPEND x {3}\r\na\0b\r\n",
            b"a APPEND x {5}\r\nab\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
