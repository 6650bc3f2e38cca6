//! FETCH (RFC 9051 6.4.5) with BINARY (RFC 3516), CONDSTORE/QRESYNC modifiers (RFC 7162
//! 3.1.4, 3.2.6) and MODSEQ (RFC 7162 3.1.4.1).

use std::fmt;

use super::CommandBody;
use crate::parser::{PResult, ParseError, Parser};
use crate::sequence::SequenceSet;

/// The text part of a section specification (RFC 9051 9: section-msgtext / "MIME").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as the client sent them.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// RFC 9051 9: section-spec = section-msgtext / (section-part ["." section-text]). An empty
/// `part` with no `text` is `BODY[]`, the whole message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

impl fmt::Display for Section {
    /// The section as it appears between the brackets of a response (RFC 9051 7.5.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part: Vec<String> = self.part.iter().map(|n| n.to_string()).collect();
        f.write_str(&part.join("."))?;
        let Some(text) = &self.text else {
            return Ok(());
        };
        if !self.part.is_empty() {
            f.write_str(".")?;
        }
        let list = |f: &mut fmt::Formatter<'_>, names: &[String]| {
            f.write_str(" (")?;
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                let mut out = Vec::new();
                crate::response::astring(&mut out, n.as_bytes());
                f.write_str(&String::from_utf8_lossy(&out))?;
            }
            f.write_str(")")
        };
        match text {
            SectionText::Header => f.write_str("HEADER"),
            SectionText::HeaderFields(n) => {
                f.write_str("HEADER.FIELDS")?;
                list(f, n)
            }
            SectionText::HeaderFieldsNot(n) => {
                f.write_str("HEADER.FIELDS.NOT")?;
                list(f, n)
            }
            SectionText::Text => f.write_str("TEXT"),
            SectionText::Mime => f.write_str("MIME"),
        }
    }
}

/// One fetch attribute (RFC 9051 9: fetch-att). `partial` is `<origin.count>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822Size,
    /// RFC 3501 6.4.5: RFC822 = `BODY[]`, RFC822.HEADER = `BODY.PEEK[HEADER]`, RFC822.TEXT =
    /// `BODY[TEXT]`.
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// BODY (non-extensible BODYSTRUCTURE).
    Body,
    BodyStructure,
    Uid,
    /// RFC 7162 3.1.4.1.
    ModSeq,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// RFC 3516 4.2.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize {
        part: Vec<u32>,
    },
}

impl FetchAttr {
    /// Whether fetching this attribute sets \Seen (RFC 9051 6.4.5: BODY[...] and BINARY[...]
    /// without .PEEK, RFC822 and RFC822.TEXT).
    pub fn sets_seen(&self) -> bool {
        matches!(
            self,
            FetchAttr::Rfc822
                | FetchAttr::Rfc822Text
                | FetchAttr::BodySection { peek: false, .. }
                | FetchAttr::Binary { peek: false, .. }
        )
    }

    /// Whether the attribute needs the message bytes (as opposed to index data).
    pub fn needs_body(&self) -> bool {
        !matches!(
            self,
            FetchAttr::Flags
                | FetchAttr::InternalDate
                | FetchAttr::Rfc822Size
                | FetchAttr::Uid
                | FetchAttr::ModSeq
        )
    }

    /// The name that labels this item in the FETCH response (RFC 9051 7.5.2), e.g.
    /// "`BODY[HEADER]<0>`", "`BINARY[1]`", "RFC822.SIZE".
    pub fn response_name(&self) -> String {
        let partial = |p: &Option<(u32, u32)>| match p {
            Some((origin, _)) => format!("<{origin}>"),
            None => String::new(),
        };
        let part = |p: &[u32]| {
            p.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(".")
        };
        match self {
            FetchAttr::Envelope => "ENVELOPE".into(),
            FetchAttr::Flags => "FLAGS".into(),
            FetchAttr::InternalDate => "INTERNALDATE".into(),
            FetchAttr::Rfc822Size => "RFC822.SIZE".into(),
            FetchAttr::Rfc822 => "RFC822".into(),
            FetchAttr::Rfc822Header => "RFC822.HEADER".into(),
            FetchAttr::Rfc822Text => "RFC822.TEXT".into(),
            FetchAttr::Body => "BODY".into(),
            FetchAttr::BodyStructure => "BODYSTRUCTURE".into(),
            FetchAttr::Uid => "UID".into(),
            FetchAttr::ModSeq => "MODSEQ".into(),
            FetchAttr::BodySection {
                section,
                partial: p,
                ..
            } => format!("BODY[{section}]{}", partial(p)),
            // RFC 9051 9: msg-att-static = "BINARY" section-binary SP (nstring / literal8):
            // no origin in the response (erratum 7246).
            FetchAttr::Binary { part: pt, .. } => format!("BINARY[{}]", part(pt)),
            FetchAttr::BinarySize { part: pt } => format!("BINARY.SIZE[{}]", part(pt)),
        }
    }
}

/// Reads the attribute name: letters, digits, "." and "-" (stops before "[" and "<").
fn att_name(p: &mut Parser<'_>) -> PResult<String> {
    let rest = p.rest();
    let n = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
        .count();
    if n == 0 {
        return Err(p.error("expected a fetch attribute"));
    }
    let name = String::from_utf8_lossy(&rest[..n]).to_ascii_uppercase();
    p.advance(n);
    Ok(name)
}

fn section_part(p: &mut Parser<'_>) -> PResult<Vec<u32>> {
    let mut part = vec![p.nz_number()?];
    while p.peek() == Some(b'.') && p.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
        p.advance(1);
        part.push(p.nz_number()?);
    }
    Ok(part)
}

fn header_list(p: &mut Parser<'_>) -> PResult<Vec<String>> {
    // RFC 9051 9: header-list = "(" header-fld-name *(SP header-fld-name) ")"
    p.sp()?;
    p.paren_list(false, |p| {
        let n = p.astring()?;
        // RFC 5322 3.6.8: field names are printable US-ASCII except ":".
        if n.iter().any(|&c| !(33..=126).contains(&c) || c == b':') {
            return Err(ParseError::new("invalid header field name"));
        }
        Ok(String::from_utf8_lossy(&n).into_owned())
    })
}

fn section_msgtext(p: &mut Parser<'_>, allow_mime: bool) -> PResult<SectionText> {
    let name = att_name(p)?;
    Ok(match name.as_str() {
        "HEADER" => SectionText::Header,
        "HEADER.FIELDS" => SectionText::HeaderFields(header_list(p)?),
        "HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(header_list(p)?),
        "TEXT" => SectionText::Text,
        "MIME" if allow_mime => SectionText::Mime,
        _ => return Err(ParseError::new(format!("invalid section {name}"))),
    })
}

/// RFC 9051 9: section = "[" [section-spec] "]".
pub(crate) fn section(p: &mut Parser<'_>) -> PResult<Section> {
    p.expect(b'[')?;
    let mut s = Section::default();
    if p.eat(b']') {
        return Ok(s);
    }
    if p.peek().is_some_and(|c| c.is_ascii_digit()) {
        s.part = section_part(p)?;
        if p.eat(b'.') {
            s.text = Some(section_msgtext(p, true)?);
        }
    } else {
        s.text = Some(section_msgtext(p, false)?);
    }
    p.expect(b']')?;
    Ok(s)
}

fn section_binary(p: &mut Parser<'_>) -> PResult<Vec<u32>> {
    // RFC 3516 4.2: section-binary = "[" [section-part] "]"
    p.expect(b'[')?;
    let part = if p.peek() == Some(b']') {
        Vec::new()
    } else {
        section_part(p)?
    };
    p.expect(b']')?;
    Ok(part)
}

fn partial(p: &mut Parser<'_>) -> PResult<Option<(u32, u32)>> {
    // RFC 9051 9: partial = "<" number "." nz-number ">"
    if !p.eat(b'<') {
        return Ok(None);
    }
    let origin = p.number()?;
    p.expect(b'.')?;
    let count = p.nz_number()?;
    p.expect(b'>')?;
    Ok(Some((origin, count)))
}

fn fetch_att(p: &mut Parser<'_>) -> PResult<FetchAttr> {
    let name = att_name(p)?;
    Ok(match name.as_str() {
        "ENVELOPE" => FetchAttr::Envelope,
        "FLAGS" => FetchAttr::Flags,
        "INTERNALDATE" => FetchAttr::InternalDate,
        "RFC822.SIZE" => FetchAttr::Rfc822Size,
        "RFC822" => FetchAttr::Rfc822,
        "RFC822.HEADER" => FetchAttr::Rfc822Header,
        "RFC822.TEXT" => FetchAttr::Rfc822Text,
        "BODYSTRUCTURE" => FetchAttr::BodyStructure,
        "UID" => FetchAttr::Uid,
        "MODSEQ" => FetchAttr::ModSeq,
        "BODY" | "BODY.PEEK" if p.peek() == Some(b'[') => FetchAttr::BodySection {
            peek: name == "BODY.PEEK",
            section: section(p)?,
            partial: partial(p)?,
        },
        "BODY" => FetchAttr::Body,
        "BINARY" | "BINARY.PEEK" => FetchAttr::Binary {
            peek: name == "BINARY.PEEK",
            part: section_binary(p)?,
            partial: partial(p)?,
        },
        "BINARY.SIZE" => FetchAttr::BinarySize {
            part: section_binary(p)?,
        },
        _ => return Err(ParseError::new(format!("unknown fetch attribute {name}"))),
    })
}

pub(super) fn fetch(p: &mut Parser<'_>, uid: bool) -> PResult<CommandBody> {
    p.sp()?;
    let set = SequenceSet::parse(p)?;
    p.sp()?;
    // RFC 9051 6.4.5: macros ALL, FAST, FULL.
    let mut attributes = if p.peek() == Some(b'(') {
        p.paren_list(false, fetch_att)?
    } else if p.eat_keyword("ALL") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
        ]
    } else if p.eat_keyword("FAST") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
        ]
    } else if p.eat_keyword("FULL") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
            FetchAttr::Body,
        ]
    } else {
        vec![fetch_att(p)?]
    };
    let mut changed_since = None;
    let mut vanished = false;
    if p.eat(b' ') {
        // RFC 7162 7: fetch-modifier = chgsince-fetch-mod / "VANISHED"
        p.paren_list(false, |p| {
            let k = p.keyword()?;
            match k.as_str() {
                "CHANGEDSINCE" => {
                    p.sp()?;
                    changed_since = Some(p.number64()?);
                }
                "VANISHED" => vanished = true,
                _ => return Err(ParseError::new(format!("unknown fetch modifier {k}"))),
            }
            Ok(())
        })?;
    }
    // RFC 7162 3.2.6: VANISHED only in UID FETCH and only with CHANGEDSINCE.
    if vanished && (!uid || changed_since.is_none()) {
        return Err(ParseError::new("VANISHED needs UID FETCH and CHANGEDSINCE"));
    }
    // RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ in the response.
    if changed_since.is_some() && !attributes.contains(&FetchAttr::ModSeq) {
        attributes.push(FetchAttr::ModSeq);
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        attributes,
        changed_since,
        vanished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn attrs(s: &str) -> Vec<FetchAttr> {
        match parse(s.as_bytes()).unwrap().body {
            CommandBody::Fetch { attributes, .. } => attributes,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn macros_and_simple() {
        assert_eq!(attrs("a FETCH 1 ALL\r\n").len(), 4);
        assert_eq!(attrs("a FETCH 1 fast\r\n").len(), 3);
        assert_eq!(attrs("a FETCH 1 FULL\r\n")[4], FetchAttr::Body);
        assert_eq!(attrs("a FETCH 1 uid\r\n"), vec![FetchAttr::Uid]);
        assert_eq!(
            attrs("a FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY UID MODSEQ RFC822 RFC822.HEADER RFC822.TEXT)\r\n").len(),
            11
        );
    }

    #[test]
    fn sections() {
        let a = attrs("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n");
        assert_eq!(
            a[1],
            FetchAttr::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec![
                        "DATE".into(),
                        "FROM".into()
                    ]))
                },
                partial: None
            }
        );
        assert_eq!(a[1].response_name(), "BODY[HEADER.FIELDS (DATE FROM)]");
        let a = attrs("a FETCH 1 (BODY.PEEK[1.2.MIME] body[4.2.HEADER.FIELDS.NOT (x-y)]<0.100> BODY[] BODY[3.TEXT] BODY[1] BODY[TEXT]<5.7>)\r\n");
        assert_eq!(a[0].response_name(), "BODY[1.2.MIME]");
        assert!(!a[0].sets_seen());
        assert!(a[1].sets_seen());
        assert_eq!(a[1].response_name(), "BODY[4.2.HEADER.FIELDS.NOT (x-y)]<0>");
        assert_eq!(a[2].response_name(), "BODY[]");
        assert_eq!(a[3].response_name(), "BODY[3.TEXT]");
        assert_eq!(a[4].response_name(), "BODY[1]");
        assert_eq!(
            a[5],
            FetchAttr::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Text)
                },
                partial: Some((5, 7))
            }
        );
        let a = attrs("a FETCH 1 (BINARY[1.2] BINARY.PEEK[]<0.10> BINARY.SIZE[3])\r\n");
        assert_eq!(
            a[0],
            FetchAttr::Binary {
                peek: false,
                part: vec![1, 2],
                partial: None
            }
        );
        assert_eq!(a[1].response_name(), "BINARY[]");
        assert_eq!(a[2].response_name(), "BINARY.SIZE[3]");
    }

    #[test]
    fn modifiers() {
        let c = parse(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n").unwrap();
        let CommandBody::Fetch {
            uid,
            attributes,
            changed_since,
            vanished,
            ..
        } = c.body
        else {
            panic!()
        };
        assert!(uid && vanished);
        assert_eq!(changed_since, Some(12345));
        assert_eq!(attributes, vec![FetchAttr::Flags, FetchAttr::ModSeq]);
    }

    #[test]
    fn invalid() {
        for bad in [
            "a FETCH 1\r\n",
            "a FETCH 1 ()\r\n",
            "a FETCH 1 FOO\r\n",
            "a FETCH 1 BODY[MIME]\r\n",
            "a FETCH 1 BODY[0]\r\n",
            "a FETCH 1 BODY[1.]\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS]\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS (a:b)]\r\n",
            "a FETCH 1 BODY[TEXT\r\n",
            "a FETCH 1 BODY[]<0>\r\n",
            "a FETCH 1 BODY[]<0.0>\r\n",
            "a FETCH 1 BINARY[TEXT]\r\n",
            "a FETCH 1 BINARY.SIZE\r\n",
            "a FETCH 1 (FLAGS) (VANISHED)\r\n",
            "a UID FETCH 1 (FLAGS) (VANISHED)\r\n",
            "a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
            "a FETCH 1 (FLAGS) (FOO)\r\n",
            "a FETCH 1 (FLAGS) ()\r\n",
            "a FETCH 1 ALL extra\r\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
