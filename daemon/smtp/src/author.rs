//! The author fields of a message: From and Sender (RFC 5322 3.6.2), found in the header
//! section and parsed into the addresses a mail reader shows, so that the submission policy
//! can hold them to what the authenticated user owns (DESIGN.md 2: "the authenticated user
//! may only send as addresses it owns"; RFC 6409 8 lets an MSA check them).
//!
//! Sans-IO: bytes in, addresses out. The header section is split into fields here (the
//! part where readers and checkers must agree on which lines are a From field); each field
//! body goes to mail-parser's address parser, which handles folding, comments, quoted local
//! parts, groups and encoded words (RFC 2047) in display names.
//!
//! Everything a reader could show as the author is checked: every mailbox of From, Sender
//! when present, and any address written inside a display name (`"ceo@bank.example"
//! <alice@example.com>` shows the display name in most readers).

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue};

/// Most mailboxes accepted in one author field. RFC 5322 3.6.2 allows a list (several
/// authors), but a message with more than this many authors is not ordinary mail.
pub const MAX_AUTHOR_MAILBOXES: usize = 64;

/// Which author field an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorField {
    From,
    Sender,
}

impl AuthorField {
    pub fn name(self) -> &'static str {
        match self {
            AuthorField::From => "From",
            AuthorField::Sender => "Sender",
        }
    }
}

/// One mailbox of an author field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub field: AuthorField,
    /// The addr-spec as parsed (local part unquoted).
    pub address: String,
    /// Addresses written in the mailbox's display name (or comment), decoded from RFC 2047
    /// encoded words: readers show these, so they count as claims too.
    pub named: Vec<String>,
}

/// Why the author fields cannot be checked. Each is a refusal: a message whose author
/// cannot be determined cannot be shown to be the user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    /// RFC 5322 3.6: From and Sender occur at most once each.
    #[error("more than one {} field (RFC 5322 3.6 allows one)", .0.name())]
    Duplicate(AuthorField),
    #[error("the {} field has no address that can be parsed (RFC 5322 3.6.2)", .0.name())]
    Unparsable(AuthorField),
    /// RFC 5322 3.6.2: from = "From:" mailbox-list; sender = "Sender:" mailbox. No groups.
    #[error("the {} field holds a group; RFC 5322 3.6.2 allows mailboxes only", .0.name())]
    Group(AuthorField),
    /// RFC 5322 3.6.2: Sender is a single mailbox.
    #[error("the Sender field holds more than one mailbox (RFC 5322 3.6.2)")]
    SeveralSenders,
    #[error("the {} field holds more than {MAX_AUTHOR_MAILBOXES} mailboxes", .0.name())]
    TooMany(AuthorField),
}

/// The author mailboxes of `message` (CRLF lines, the header section first), From first.
/// A message without a From field gives no From mailboxes: it names no author, and its
/// Return-Path (the MAIL FROM, already checked) is what readers fall back to.
pub fn authors(message: &[u8]) -> Result<Vec<Author>, AuthorError> {
    let mut from: Option<Vec<u8>> = None;
    let mut sender: Option<Vec<u8>> = None;
    for (name, body) in header_fields(message) {
        let field = if name.eq_ignore_ascii_case(b"from") {
            AuthorField::From
        } else if name.eq_ignore_ascii_case(b"sender") {
            AuthorField::Sender
        } else {
            continue;
        };
        let slot = match field {
            AuthorField::From => &mut from,
            AuthorField::Sender => &mut sender,
        };
        if slot.is_some() {
            // Readers differ on which of two From fields they show; refuse both.
            return Err(AuthorError::Duplicate(field));
        }
        *slot = Some(body.to_vec());
    }
    let mut out = Vec::new();
    for (field, body) in [(AuthorField::From, from), (AuthorField::Sender, sender)] {
        if let Some(body) = body {
            mailboxes(field, &body, &mut out)?;
        }
    }
    Ok(out)
}

/// The header fields of `message` as (name, raw body) pairs, in order; the body keeps its
/// folding line breaks (RFC 5322 2.2.3) and ends with its line ending. The header section
/// ends at the first empty line (RFC 5322 2.1). A line that is neither a field nor a
/// continuation is skipped and the scan goes on, so a field after it still counts (a
/// lenient reader may show it).
fn header_fields(message: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], std::ops::Range<usize>)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = memchr::memchr(b'\n', &message[pos..]).map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        if matches!(content[0], b' ' | b'\t') {
            // RFC 5322 2.2.3: a line starting with WSP continues the field before it.
            if let Some((_, body)) = fields.last_mut() {
                body.end = end;
            }
        } else if let Some(colon) = memchr::memchr(b':', content) {
            // RFC 5322 4.5 (obs-optional etc.): WSP may stand between name and colon.
            let name = trim_wsp_end(&content[..colon]);
            fields.push((name, pos + colon + 1..end));
        }
        pos = end;
    }
    fields
        .into_iter()
        .map(|(name, body)| (name, &message[body]))
        .collect()
}

fn trim_wsp_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn mailboxes(field: AuthorField, body: &[u8], out: &mut Vec<Author>) -> Result<(), AuthorError> {
    // mail-parser's field parser stops at a line ending not followed by WSP.
    let mut raw = body.to_vec();
    if !raw.ends_with(b"\n") {
        raw.extend_from_slice(b"\r\n");
    }
    let list = match MessageStream::new(&raw).parse_address() {
        HeaderValue::Address(Address::List(list)) => list,
        HeaderValue::Address(Address::Group(_)) => return Err(AuthorError::Group(field)),
        _ => return Err(AuthorError::Unparsable(field)),
    };
    if list.is_empty() {
        return Err(AuthorError::Unparsable(field));
    }
    if list.len() > MAX_AUTHOR_MAILBOXES {
        return Err(AuthorError::TooMany(field));
    }
    if field == AuthorField::Sender && list.len() > 1 {
        return Err(AuthorError::SeveralSenders);
    }
    // Parser-independent backstop: every address-like word anywhere in the raw field
    // (comments, quoted strings, text a lenient reader might take for the address) is a
    // claim of each of its mailboxes, so a reading of the field that differs from
    // mail-parser's cannot show an address the check did not see.
    let raw_claims = addresses_in(&String::from_utf8_lossy(body));
    for addr in &list {
        let mut found = author(field, addr)?;
        for claim in &raw_claims {
            if !found.named.contains(claim) {
                found.named.push(claim.clone());
            }
        }
        out.push(found);
    }
    Ok(())
}

fn author(field: AuthorField, addr: &Addr<'_>) -> Result<Author, AuthorError> {
    // A mailbox without an addr-spec (a bare display name, or text the parser could not
    // read as an address) names nobody the policy can check.
    let address = addr
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| a.contains('@'))
        .ok_or(AuthorError::Unparsable(field))?;
    Ok(Author {
        field,
        address: address.to_string(),
        named: addr.name.as_deref().map(addresses_in).unwrap_or_default(),
    })
}

/// Address-like words in free text (`local@domain`), as a reader would see them.
pub fn addresses_in(text: &str) -> Vec<String> {
    // Atom characters of RFC 5322 3.2.3 and the dot: what a local part shown as text holds.
    let local = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let domain = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for (at, _) in chars.iter().enumerate().filter(|(_, &c)| c == '@') {
        let start = chars[..at]
            .iter()
            .rposition(|&c| !local(c))
            .map_or(0, |i| i + 1);
        let end = chars[at + 1..]
            .iter()
            .position(|&c| !domain(c))
            .map_or(chars.len(), |i| at + 1 + i);
        let left: String = chars[start..at].iter().collect();
        let right: String = chars[at + 1..end].iter().collect();
        let left = left.trim_matches('.');
        let right = right.trim_matches('.');
        if !left.is_empty() && !right.is_empty() {
            found.push(format!("{left}@{right}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_addrs(msg: &str) -> Vec<String> {
        authors(msg.as_bytes())
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect()
    }

    #[test]
    fn plain_display_name_and_list() {
        assert_eq!(
            from_addrs("From: alice@example.test\r\n\r\nbody\r\n"),
            ["alice@example.test"]
        );
        assert_eq!(
            from_addrs("From: Alice Liddell <alice@example.test>\r\nTo: x@y\r\n\r\n"),
            ["alice@example.test"]
        );
        assert_eq!(
            from_addrs("From: a@example.test, \"B\" <b@evil.test>\r\n\r\n"),
            ["a@example.test", "b@evil.test"]
        );
    }

    #[test]
    fn folding_comments_and_case_of_the_name() {
        // RFC 5322 2.2.3 folding inside the field; the second mailbox is on a folded line.
        assert_eq!(
            from_addrs("fRoM: alice@example.test,\r\n\tbob@evil.test\r\n\r\n"),
            ["alice@example.test", "bob@evil.test"]
        );
        // RFC 5322 4.5 obsolete syntax: WSP before the colon still names From.
        assert_eq!(
            from_addrs("From \t: <bob@evil.test>\r\n\r\n"),
            ["bob@evil.test"]
        );
        // A comment is not the address (RFC 5322 3.2.2).
        let a = authors(b"From: (alice@example.test) <bob@evil.test>\r\n\r\n").unwrap();
        assert_eq!(a[0].address, "bob@evil.test");
    }

    #[test]
    fn display_names_and_encoded_words_are_claims() {
        let a = authors(b"From: \"ceo@bank.test\" <alice@example.test>\r\n\r\n").unwrap();
        assert_eq!(a[0].address, "alice@example.test");
        assert_eq!(a[0].named, ["ceo@bank.test", "alice@example.test"]);
        // RFC 2047: the encoded word decodes to an address in the display name.
        let a =
            authors(b"From: =?utf-8?q?ceo=40bank=2Etest?= <alice@example.test>\r\n\r\n").unwrap();
        assert_eq!(a[0].named, ["ceo@bank.test", "alice@example.test"]);
        // An encoded word is never decoded as an addr-spec: it stays literal text there.
        let a = authors(b"From: <=?utf-8?q?alice=40example.test?=>\r\n\r\n");
        assert!(
            a.as_ref().map_or(true, |a| a
                .iter()
                .all(|m| m.address != "alice@example.test")),
            "{a:?}"
        );
    }

    #[test]
    fn quoted_local_part() {
        // mail-parser reads the quoted string as a display name: whatever the reading, the
        // address inside it is a claim.
        let a = authors(b"From: \"bob@evil.test\"@example.test\r\n\r\n").unwrap();
        assert!(a[0].named.iter().any(|n| n == "bob@evil.test"), "{a:?}");
        // Words in comments are claims too (a reader may show them).
        let a = authors(b"From: alice@example.test (for ceo@bank.test)\r\n\r\n").unwrap();
        assert_eq!(a[0].address, "alice@example.test");
        assert!(a[0].named.iter().any(|n| n == "ceo@bank.test"), "{a:?}");
    }

    #[test]
    fn sender_is_checked_and_single() {
        let a = authors(b"From: alice@example.test\r\nSender: bob@evil.test\r\n\r\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].field, AuthorField::Sender);
        assert_eq!(a[1].address, "bob@evil.test");
        assert_eq!(
            authors(b"From: a@x.test\r\nSender: a@x.test, b@x.test\r\n\r\n"),
            Err(AuthorError::SeveralSenders)
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            authors(b"From: a@x.test\r\nFrom: b@y.test\r\n\r\n"),
            Err(AuthorError::Duplicate(AuthorField::From))
        );
        // A second From after a malformed line is still seen.
        assert_eq!(
            authors(b"From: a@x.test\r\nnot a field\r\nFROM: b@y.test\r\n\r\n"),
            Err(AuthorError::Duplicate(AuthorField::From))
        );
        assert_eq!(
            authors(b"From: undisclosed: a@x.test;\r\n\r\n"),
            Err(AuthorError::Group(AuthorField::From))
        );
        assert_eq!(
            authors(b"From: Alice Liddell\r\n\r\n"),
            Err(AuthorError::Unparsable(AuthorField::From))
        );
        assert_eq!(
            authors(b"From:\r\n\r\n"),
            Err(AuthorError::Unparsable(AuthorField::From))
        );
    }

    #[test]
    fn limits() {
        let many = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("u{i}@x.test")).collect();
            format!("From: {}\r\n\r\n", list.join(", "))
        };
        assert_eq!(
            authors(many(MAX_AUTHOR_MAILBOXES).as_bytes()).map(|a| a.len()),
            Ok(MAX_AUTHOR_MAILBOXES)
        );
        assert_eq!(
            authors(many(MAX_AUTHOR_MAILBOXES + 1).as_bytes()),
            Err(AuthorError::TooMany(AuthorField::From))
        );
    }

    #[test]
    fn header_section_ends_at_the_empty_line() {
        assert_eq!(
            authors(b"Subject: x\r\n\r\nFrom: bob@evil.test\r\n"),
            Ok(Vec::new())
        );
        // No From at all: nothing is claimed.
        assert_eq!(authors(b""), Ok(Vec::new()));
        // A message that is only a header section, without the final CRLF.
        assert_eq!(from_addrs("From: a@x.test"), ["a@x.test"]);
    }

    #[test]
    fn addresses_in_text() {
        assert_eq!(addresses_in("Alice"), Vec::<String>::new());
        assert_eq!(addresses_in("mail ceo@bank.test."), ["ceo@bank.test"]);
        assert_eq!(addresses_in("@ a@ @b"), Vec::<String>::new());
    }

    /// What the fuzz target checks, over many generated header sections (cargo-fuzz needs
    /// nightly and is not part of `cargo test`): no panic, and the invariants hold.
    #[test]
    fn generated_header_sections_keep_the_invariants() {
        const PIECES: &[&[u8]] = &[
            b"From:",
            b"from :",
            b"Sender:",
            b"To:",
            b"\r\n",
            b"\r\n\t",
            b"\r\n ",
            b" ",
            b"<",
            b">",
            b"\"",
            b"\\",
            b"(",
            b")",
            b",",
            b";",
            b":",
            b"@",
            b"alice",
            b"example.test",
            b"=?utf-8?q?a=40b.test?=",
            b"=?",
            b"?=",
            b"\r\n\r\n",
            b"\xc3\xa9",
            b"\n",
            b"\r",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next(24) {
                input.extend_from_slice(PIECES[next(PIECES.len())]);
            }
            if let Ok(found) = authors(&input) {
                assert!(
                    found
                        .iter()
                        .filter(|a| a.field == AuthorField::Sender)
                        .count()
                        <= 1
                );
                for a in &found {
                    assert!(a.address.contains('@'), "{input:?} -> {a:?}");
                    assert!(a.named.iter().all(|n| n.contains('@')), "{input:?}");
                }
            }
        }
    }
}
