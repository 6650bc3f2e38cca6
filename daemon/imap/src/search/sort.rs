//! SORT keys (RFC 5256 3, RFC 5957 DISPLAYFROM/DISPLAYTO) and base subject extraction
//! (RFC 5256 2.1).

use std::cmp::Ordering;

use super::{decode_header_value, HeaderSummary, SortField};
use crate::command::{SortCriterion, SortKey};
use crate::message::{find_field, parse_addresses, AddressItem};

/// One sort key's value for a message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    Number(i64),
    /// Compared as is; made case-insensitive (lower-cased) when built (RFC 5256 2.1
    /// i;unicode-casemap, approximated by Unicode lower-casing).
    Text(String),
}

/// The values of all sort criteria for one message, plus its sequence number, the final
/// tie-breaker (RFC 5256 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortValues {
    pub values: Vec<SortValue>,
    pub seq: u32,
}

/// RFC 5256 3: the addr-mailbox of the first address, or "" (for CC, FROM, TO).
fn first_mailbox(fields: &[crate::message::header::Field<'_>], name: &str) -> String {
    let Some(f) = find_field(fields, name) else {
        return String::new();
    };
    for item in parse_addresses(f.value) {
        if let AddressItem::Mailbox { mailbox, .. } = item {
            if mailbox == b"MISSING_MAILBOX" {
                return String::new();
            }
            return String::from_utf8_lossy(&mailbox).to_lowercase();
        }
    }
    String::new()
}

/// RFC 5957 3: the display name of the first address if it has one (decoded), else its
/// addr-spec.
fn first_display(fields: &[crate::message::header::Field<'_>], name: &str) -> String {
    let Some(f) = find_field(fields, name) else {
        return String::new();
    };
    for item in parse_addresses(f.value) {
        if let AddressItem::Mailbox {
            name,
            mailbox,
            host,
            ..
        } = item
        {
            if let Some(n) = name {
                let d = decode_header_value(&n);
                let d = d.trim();
                if !d.is_empty() {
                    return d.to_lowercase();
                }
            }
            return format!(
                "{}@{}",
                String::from_utf8_lossy(&mailbox),
                String::from_utf8_lossy(&host)
            )
            .to_lowercase();
        }
    }
    String::new()
}

/// The SORT values of a message's header fields, in [`SortField`] order (see
/// [`HeaderSummary`], which keeps them).
pub(super) fn sort_fields(fields: &[crate::message::header::Field<'_>]) -> [String; 6] {
    [
        find_field(fields, "Subject")
            .map(|f| base_subject(&decode_header_value(f.value)).to_lowercase())
            .unwrap_or_default(),
        first_mailbox(fields, "From"),
        first_mailbox(fields, "To"),
        first_mailbox(fields, "Cc"),
        first_display(fields, "From"),
        first_display(fields, "To"),
    ]
}

/// Computes the values `criteria` sort on, from the message's [`HeaderSummary`] (made
/// from the message, or cached by the server). DATE is the Date: field in UTC, or the
/// internal date when it is missing or unparsable (RFC 5256 3).
pub fn sort_key(
    criteria: &[SortCriterion],
    summary: &HeaderSummary,
    internal_date: i64,
    size: u64,
    seq: u32,
) -> SortValues {
    let text = |f: SortField| SortValue::Text(summary.sort_field(f).to_string());
    let values = criteria
        .iter()
        .map(|c| match c.key {
            SortKey::Arrival => SortValue::Number(internal_date),
            SortKey::Size => SortValue::Number(i64::try_from(size).unwrap_or(i64::MAX)),
            SortKey::Date => SortValue::Number(summary.sent_time().unwrap_or(internal_date)),
            SortKey::Cc => text(SortField::CcMailbox),
            SortKey::From => text(SortField::FromMailbox),
            SortKey::To => text(SortField::ToMailbox),
            SortKey::DisplayFrom => text(SortField::DisplayFrom),
            SortKey::DisplayTo => text(SortField::DisplayTo),
            SortKey::Subject => text(SortField::BaseSubject),
        })
        .collect();
    SortValues { values, seq }
}

/// Orders two messages by `criteria` (REVERSE per key), then by sequence number.
pub fn compare(criteria: &[SortCriterion], a: &SortValues, b: &SortValues) -> Ordering {
    for (i, c) in criteria.iter().enumerate() {
        let (Some(x), Some(y)) = (a.values.get(i), b.values.get(i)) else {
            break;
        };
        let o = x.cmp(y);
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.seq.cmp(&b.seq)
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| &s[p.len()..])
}

/// subj-blob = "[" *BLOBCHAR "]" *WSP; returns the rest after it.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    if !rest[end..].starts_with(']') {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches(' '))
}

/// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"; returns the rest after it.
fn strip_refwd(s: &str) -> Option<&str> {
    let rest = strip_prefix_ci(s, "re")
        .or_else(|| strip_prefix_ci(s, "fwd"))
        .or_else(|| strip_prefix_ci(s, "fw"))?;
    let rest = rest.trim_start_matches(' ');
    let rest = strip_blob(rest).unwrap_or(rest);
    rest.strip_prefix(':')
}

/// subj-leader = (*subj-blob subj-refwd) / WSP; returns the rest after one leader.
fn strip_leader(s: &str) -> Option<&str> {
    if let Some(r) = s.strip_prefix(' ') {
        return Some(r);
    }
    let mut rest = s;
    loop {
        if let Some(r) = strip_refwd(rest) {
            return Some(r);
        }
        rest = strip_blob(rest)?;
    }
}

/// The base subject (RFC 5256 2.1), used by SORT SUBJECT and THREAD.
pub fn base_subject(subject: &str) -> String {
    // (1) Tabs and line breaks to spaces, runs of spaces to one (RFC 2047 decoding is done
    // by the caller).
    let mut s = String::with_capacity(subject.len());
    let mut last_space = false;
    for c in subject.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if !last_space {
                s.push(' ');
            }
            last_space = true;
        } else {
            s.push(c);
            last_space = false;
        }
    }
    let mut s = s.as_str().to_string();
    // Bounded: every round removes at least one character.
    for _ in 0..subject.len() + 1 {
        // (2) subj-trailer = "(fwd)" / WSP, repeatedly from the end.
        loop {
            if let Some(t) = s.strip_suffix(' ') {
                s = t.to_string();
            } else if s.len() >= 5
                && s.is_char_boundary(s.len() - 5)
                && s[s.len() - 5..].eq_ignore_ascii_case("(fwd)")
            {
                s.truncate(s.len() - 5);
            } else {
                break;
            }
        }
        // (3)-(5) leaders and blobs, while something is left.
        loop {
            if let Some(r) = strip_leader(&s) {
                s = r.to_string();
                continue;
            }
            if let Some(r) = strip_blob(&s) {
                if !r.is_empty() {
                    s = r.to_string();
                    continue;
                }
            }
            break;
        }
        // (6) "[fwd:" ... "]"
        if let Some(inner) = strip_prefix_ci(&s, "[fwd:") {
            if let Some(inner) = inner.strip_suffix(']') {
                s = inner.to_string();
                continue;
            }
        }
        break;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (subject, base) in [
            ("Hello", "Hello"),
            ("Re: Hello", "Hello"),
            ("RE: re: Fwd: Hello", "Hello"),
            ("Re: [list] Re: Hello", "Hello"),
            ("[list] Hello", "Hello"),
            ("[list]", "[list]"),
            ("Hello (fwd)", "Hello"),
            ("Hello (FWD) (fwd)  ", "Hello"),
            ("[Fwd: Re: Hello]", "Hello"),
            ("Re[2]: Hello", "Hello"),
            ("fw: x", "x"),
            ("  Re:\t Re:   spaced   out ", "spaced out"),
            ("", ""),
            ("Re:", ""),
            ("[", "["),
            ("Réponse: é", "Réponse: é"),
            ("[Fwd: unterminated", "[Fwd: unterminated"),
        ] {
            assert_eq!(base_subject(subject), base, "{subject:?}");
        }
    }

    fn crit(key: SortKey, reverse: bool) -> SortCriterion {
        SortCriterion { reverse, key }
    }

    #[test]
    fn keys_and_order() {
        let a = b"From: Zed <zed@example.com>\r\nTo: bob@x\r\nCc: Carol <carol@y>\r\nSubject: Re: apples\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\n\r\nx";
        let b = b"From: \"Adam\" <adam@example.com>\r\nTo: =?utf-8?q?=C3=89mile?= <emile@x>\r\nSubject: Bananas\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\nxyz";
        let c = b"Subject: [list] apples\r\n\r\n";
        let crits = [crit(SortKey::Subject, false), crit(SortKey::Arrival, true)];
        let va = sort_key(&crits, &HeaderSummary::new(a), 100, 1, 1);
        let vb = sort_key(&crits, &HeaderSummary::new(b), 200, 3, 2);
        let vc = sort_key(&crits, &HeaderSummary::new(c), 300, 0, 3);
        assert_eq!(va.values[0], SortValue::Text("apples".into()));
        // Same base subject: REVERSE ARRIVAL puts the later one first.
        assert_eq!(compare(&crits, &vc, &va), Ordering::Less);
        assert_eq!(compare(&crits, &va, &vb), Ordering::Less);
        let from = [crit(SortKey::From, false)];
        assert_eq!(
            sort_key(&from, &HeaderSummary::new(a), 0, 0, 1).values[0],
            SortValue::Text("zed".into())
        );
        // A missing From sorts first ("" < anything).
        assert_eq!(
            compare(
                &from,
                &sort_key(&from, &HeaderSummary::new(c), 0, 0, 9),
                &sort_key(&from, &HeaderSummary::new(a), 0, 0, 1)
            ),
            Ordering::Less
        );
        let disp = [
            crit(SortKey::DisplayTo, false),
            crit(SortKey::DisplayFrom, false),
        ];
        let vb = sort_key(&disp, &HeaderSummary::new(b), 0, 0, 2);
        assert_eq!(vb.values[0], SortValue::Text("émile".into()));
        assert_eq!(vb.values[1], SortValue::Text("adam".into()));
        let va = sort_key(&disp, &HeaderSummary::new(a), 0, 0, 1);
        assert_eq!(va.values[0], SortValue::Text("bob@x".into()));
        let date = [crit(SortKey::Date, false)];
        let (da, db, dc) = (
            sort_key(&date, &HeaderSummary::new(a), 5, 0, 1),
            sort_key(&date, &HeaderSummary::new(b), 5, 0, 2),
            sort_key(&date, &HeaderSummary::new(c), 5, 0, 3),
        );
        assert_eq!(db.values[0], SortValue::Number(978_307_200));
        // No Date: the internal date is used.
        assert_eq!(dc.values[0], SortValue::Number(5));
        assert_eq!(compare(&date, &db, &da), Ordering::Less);
        let size = [crit(SortKey::Size, true)];
        assert_eq!(
            compare(
                &size,
                &sort_key(&size, &HeaderSummary::new(a), 0, 10, 1),
                &sort_key(&size, &HeaderSummary::new(b), 0, 5, 2)
            ),
            Ordering::Less
        );
        // Equal keys: sequence order, even with REVERSE.
        assert_eq!(
            compare(
                &size,
                &sort_key(&size, &HeaderSummary::new(a), 0, 5, 2),
                &sort_key(&size, &HeaderSummary::new(b), 0, 5, 1)
            ),
            Ordering::Greater
        );
        let cc = [crit(SortKey::Cc, false)];
        assert_eq!(
            sort_key(&cc, &HeaderSummary::new(a), 0, 0, 1).values[0],
            SortValue::Text("carol".into())
        );
    }
}
