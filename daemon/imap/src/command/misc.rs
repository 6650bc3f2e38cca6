//! ENABLE (RFC 5161), ID (RFC 2971), GETQUOTA/GETQUOTAROOT/SETQUOTA (RFC 9208).

use super::{mailbox, CommandBody};
use crate::parser::{PResult, ParseError, Parser};

/// A SETQUOTA resource limit (RFC 9208 4.3: setquota-resource = resource-name SP number64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLimit {
    /// Upper-cased resource name (STORAGE, MESSAGE, MAILBOX, ANNOTATION-STORAGE).
    pub resource: String,
    pub limit: u64,
}

pub(super) fn enable(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 5161 4: enable = "ENABLE" 1*(SP capability)
    let mut caps = Vec::new();
    while p.eat(b' ') {
        caps.push(p.keyword()?);
    }
    if caps.is_empty() {
        return Err(p.error("expected a capability"));
    }
    Ok(CommandBody::Enable(caps))
}

pub(super) fn id(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 2971 4: id = "ID" SP id_params_list;
    //   id_params_list ::= "(" #(string SPACE nstring) ")" / nil
    p.sp()?;
    if p.eat_keyword("NIL") {
        return Ok(CommandBody::Id(None));
    }
    let pairs = p.paren_list(true, |p| {
        let field = p.string()?;
        p.sp()?;
        let value = p.nstring()?;
        Ok((
            String::from_utf8_lossy(&field).into_owned(),
            value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        ))
    })?;
    // RFC 2971 3.3: at most 30 field-value pairs, fields at most 30 octets, values 1024.
    if pairs.len() > 30
        || pairs
            .iter()
            .any(|(f, v)| f.len() > 30 || v.as_ref().is_some_and(|v| v.len() > 1024))
    {
        return Err(ParseError::new("ID parameters exceed RFC 2971 limits"));
    }
    Ok(CommandBody::Id(Some(pairs)))
}

pub(super) fn getquota(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 9208 6: getquota = "GETQUOTA" SP quota-root-name; quota-root-name = astring
    p.sp()?;
    Ok(CommandBody::GetQuota(p.astring()?))
}

pub(super) fn getquotaroot(p: &mut Parser<'_>) -> PResult<CommandBody> {
    p.sp()?;
    Ok(CommandBody::GetQuotaRoot(mailbox(p)?))
}

pub(super) fn setquota(p: &mut Parser<'_>) -> PResult<CommandBody> {
    // RFC 9208 6: setquota = "SETQUOTA" SP quota-root-name SP setquota-list
    //   setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"
    p.sp()?;
    let root = p.astring()?;
    p.sp()?;
    let limits = p.paren_list(true, |p| {
        let resource = p.keyword()?;
        p.sp()?;
        let limit = p.number64()?;
        Ok(QuotaLimit { resource, limit })
    })?;
    Ok(CommandBody::SetQuota { root, limits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::mutf7::Mailbox;

    #[test]
    fn enable() {
        let c = parse(b"t2 ENABLE CONDSTORE qresync\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()])
        );
        assert!(parse(b"t2 ENABLE\r\n").is_err());
    }

    #[test]
    fn id() {
        let c =
            parse(b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)\r\n").unwrap();
        assert_eq!(
            c.body,
            CommandBody::Id(Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), Some("19.34".into())),
                ("vendor".into(), None)
            ]))
        );
        assert_eq!(parse(b"a ID NIL\r\n").unwrap().body, CommandBody::Id(None));
        assert_eq!(
            parse(b"a ID ()\r\n").unwrap().body,
            CommandBody::Id(Some(vec![]))
        );
        assert!(parse(b"a ID (\"name\")\r\n").is_err());
        assert!(parse(b"a ID\r\n").is_err());
        let many: String = (0..31).map(|i| format!("\"k{i}\" NIL ")).collect();
        assert!(parse(format!("a ID ({})\r\n", many.trim_end()).as_bytes()).is_err());
    }

    #[test]
    fn quota() {
        assert_eq!(
            parse(b"G0001 GETQUOTA \"!partition/sda4\"\r\n")
                .unwrap()
                .body,
            CommandBody::GetQuota(b"!partition/sda4".to_vec())
        );
        assert_eq!(
            parse(b"A003 GETQUOTAROOT INBOX\r\n").unwrap().body,
            CommandBody::GetQuotaRoot(Mailbox(b"INBOX".to_vec()))
        );
        assert_eq!(
            parse(b"S0000 SETQUOTA \"User quota\" (STORAGE 510)\r\n")
                .unwrap()
                .body,
            CommandBody::SetQuota {
                root: b"User quota".to_vec(),
                limits: vec![QuotaLimit {
                    resource: "STORAGE".into(),
                    limit: 510
                }]
            }
        );
        assert!(parse(b"S SETQUOTA x (STORAGE)\r\n").is_err());
        assert!(parse(b"S GETQUOTA\r\n").is_err());
    }
}
