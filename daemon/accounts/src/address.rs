//! Address and domain syntax, and the canonical (lowercased) form used for storage and lookup.
//!
//! Choice: the local part is compared case-insensitively, like the domain. RFC 5321 2.4 lets
//! the local part be case-sensitive, but also says hosts SHOULD avoid relying on that; users
//! type "John.Doe@" and "john.doe@" interchangeably and expect the same mailbox, and treating
//! them as different accounts would let one user register a look-alike of another.
//! Addresses are therefore stored lowercased (Unicode-aware for SMTPUTF8 local parts).

use crate::AccountError;

/// The subaddress separator: "user+tag@domain" delivers to "user@domain".
pub const SUBADDRESS_SEPARATOR: char = '+';

/// Returns the canonical form of a domain name, or why it is not acceptable.
///
/// Accepts LDH host names (RFC 1035 2.3.1, RFC 1123 2.1) with at least two labels; IDNs must be
/// given in their A-label (`xn--`) form.
pub fn normalize_domain(domain: &str) -> Result<String, AccountError> {
    let bad = |why: &'static str| AccountError::InvalidDomain {
        domain: domain.to_string(),
        why,
    };
    if !domain.is_ascii() {
        return Err(bad(
            "internationalized names must be given in A-label (xn--) form",
        ));
    }
    let d = domain.to_ascii_lowercase();
    if d.is_empty() {
        return Err(bad("empty"));
    }
    // RFC 1035 2.3.4: 255 octets on the wire, 253 characters in text form.
    if d.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(
            "a mail domain needs at least two labels, e.g. example.com",
        ));
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, hyphens and dots are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with a hyphen"));
        }
    }
    // An all-numeric top-level label is an IP address, not a domain (RFC 3696 2).
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("the last label may not be all digits"));
    }
    Ok(d)
}

/// Returns the canonical form of an address, or why it is not acceptable.
///
/// Local parts must be dot-atoms (RFC 5322 3.4.1 via RFC 5321 4.1.2), with UTF-8 allowed as in
/// RFC 6531 3.3; quoted-string local parts are not accepted for accounts.
pub fn normalize_address(address: &str) -> Result<String, AccountError> {
    let bad = |why: &'static str| AccountError::InvalidAddress {
        address: address.to_string(),
        why,
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(bad("expected local-part@domain"));
    };
    if local.is_empty() {
        return Err(bad("empty local part"));
    }
    // RFC 5321 4.5.3.1.1: local parts up to 64 octets.
    if local.len() > 64 {
        return Err(bad("local part longer than 64 octets"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad(
            "local part may not start or end with a dot or contain two dots",
        ));
    }
    if !local.chars().all(is_atext_or_dot) {
        return Err(bad("local part has a character that needs quoting"));
    }
    let domain = normalize_domain(domain).map_err(|e| match e {
        AccountError::InvalidDomain { why, .. } => bad(why),
        other => other,
    })?;
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

/// RFC 5322 3.2.3 atext, plus '.', plus non-ASCII (RFC 6531 3.3 UTF8-non-ascii).
fn is_atext_or_dot(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// Splits a canonical address into (local, domain).
pub(crate) fn split(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

/// "user+tag@domain" -> Some("user@domain"); None when there is no tag.
pub(crate) fn strip_subaddress(address: &str) -> Option<String> {
    let (local, domain) = split(address);
    let (base, _tag) = local.split_once(SUBADDRESS_SEPARATOR)?;
    if base.is_empty() {
        return None;
    }
    Some(format!("{base}@{domain}"))
}
