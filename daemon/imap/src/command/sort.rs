//! SORT (RFC 5256 3) and ESORT return options (RFC 5267 3.2), DISPLAY keys (RFC 5957).

use super::search::{program, return_opts, SearchKey};
use super::CommandBody;
use crate::parser::{PResult, ParseError, Parser};

/// RFC 5256 3: sort-key, RFC 5957 DISPLAYFROM/DISPLAYTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// RFC 5256 3: sort-criterion = ["REVERSE" SP] sort-key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

pub(super) fn sort(p: &mut Parser<'_>, uid: bool) -> PResult<CommandBody> {
    // RFC 5267 3.2: sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP
    //   search-charset 1*(SP search-key)
    p.sp()?;
    let mut returns = None;
    if p.eat_keyword("RETURN") {
        returns = Some(return_opts(p)?);
        p.sp()?;
    }
    let criteria = p.paren_list(false, |p| {
        let reverse = p.eat_keyword("REVERSE");
        if reverse {
            p.sp()?;
        }
        let k = p.keyword()?;
        let key = match k.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(ParseError::new(format!("unknown sort key {k}"))),
        };
        Ok(SortCriterion { reverse, key })
    })?;
    p.sp()?;
    let charset = String::from_utf8_lossy(&p.astring()?).into_owned();
    p.sp()?;
    let (_, search): (Option<String>, SearchKey) = program(p, Some(charset.clone()))?;
    Ok(CommandBody::Sort {
        uid,
        criteria,
        charset,
        search,
        returns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    #[test]
    fn sort_forms() {
        let c = parse(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n").unwrap();
        let CommandBody::Sort {
            uid,
            criteria,
            charset,
            search,
            returns,
        } = c.body
        else {
            panic!()
        };
        assert!(!uid && returns.is_none());
        assert_eq!(
            criteria,
            vec![SortCriterion {
                reverse: false,
                key: SortKey::Subject
            }]
        );
        assert_eq!(charset, "UTF-8");
        assert!(matches!(search, SearchKey::Since(_)));
        let c = parse(b"A283 UID SORT (REVERSE DATE size) US-ASCII SUBJECT \"afternoon\" ALL\r\n")
            .unwrap();
        assert!(
            matches!(&c.body, CommandBody::Sort { uid: true, criteria, search: SearchKey::And(k), .. }
            if criteria.len() == 2 && criteria[0].reverse && k.len() == 2)
        );
        let c = parse(
            b"a SORT RETURN (MIN COUNT) (ARRIVAL DISPLAYFROM DISPLAYTO TO CC FROM) UTF-8 ALL\r\n",
        )
        .unwrap();
        assert!(matches!(&c.body, CommandBody::Sort { returns: Some(r), .. } if r.len() == 2));
        for bad in [
            &b"a SORT () UTF-8 ALL\r\n"[..],
            b"a SORT (FOO) UTF-8 ALL\r\n",
            b"a SORT (SUBJECT) ALL\r\n",
            b"a SORT (SUBJECT) UTF-8\r\n",
            b"a SORT (REVERSE) UTF-8 ALL\r\n",
            b"a SORT SUBJECT UTF-8 ALL\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
