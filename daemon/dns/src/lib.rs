//! Postern's DNS layer (DESIGN.md 3.5) and inbound sender authentication.
//!
//! All DNS goes through one interface, [`Resolver`], whose answers carry their DNSSEC status
//! ([`Dnssec`]). Implementations: [`HickoryResolver`] (production: hickory-resolver with
//! DNSSEC validation, timeouts, the configured or the system's nameservers) and
//! [`MemoryResolver`] (unit tests: a zone held in memory). [`Cached`] wraps either in a
//! bounded, TTL-honouring cache. A failure to get an answer (timeout, SERVFAIL, a bogus
//! DNSSEC signature) is [`DnsError::Temporary`]: callers turn it into a 4xx, never a pass.
//!
//! [`auth`] verifies inbound mail (SPF, DKIM, DMARC, ARC, iprev) with the mail-auth crate,
//! whose every DNS question is answered through this interface.

pub mod auth;
pub use mail_auth;
pub mod authres;
pub mod bridge;
mod cache;
mod hickory;
mod memory;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

pub use cache::Cached;
pub use hickory::{HickoryResolver, ResolverSettings};
pub use memory::MemoryResolver;

/// The record types Postern asks for: sender authentication (TXT, A, AAAA, MX, PTR),
/// outbound delivery and DANE (MX, TLSA), DNSBLs (A, TXT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    A,
    Aaaa,
    Mx,
    Txt,
    Ptr,
    Tlsa,
}

/// One resource record's data (RFC 1035 3.3, RFC 3596, RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// RFC 1035 3.3.9; `exchange` lower-case, without the trailing dot.
    Mx {
        preference: u16,
        exchange: String,
    },
    /// RFC 1035 3.3.14: the character-strings of one TXT record, in order (RFC 7208 3.3 and
    /// RFC 6376 3.6.2.2 join them without separators).
    Txt(Vec<Vec<u8>>),
    /// RFC 1035 3.3.12; lower-case, without the trailing dot.
    Ptr(String),
    /// RFC 6698 2.1.
    Tlsa {
        usage: u8,
        selector: u8,
        matching: u8,
        data: Vec<u8>,
    },
}

impl Rdata {
    /// A TXT record's strings joined (RFC 7208 3.3).
    pub fn txt_joined(&self) -> Option<Vec<u8>> {
        match self {
            Rdata::Txt(parts) => Some(parts.concat()),
            _ => None,
        }
    }
}

/// DNSSEC status of an answer (RFC 4035 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dnssec {
    /// A chain of trust from a trust anchor validated the RRset.
    Secure,
    /// Provably unsigned (no chain of trust), or validation is off.
    Insecure,
    /// The resolver did not (or could not) say.
    Indeterminate,
}

/// An answer: the records of the asked type (empty = NODATA: the name exists without
/// records of that type, RFC 2308 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub records: Vec<Rdata>,
    pub dnssec: Dnssec,
    /// Seconds the answer may be kept (the smallest TTL of its records, or the negative TTL).
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// RFC 1035 4.1.1 RCODE 3: the name does not exist.
    #[error("{name}: no such domain (NXDOMAIN)")]
    NxDomain { name: String, dnssec: Dnssec },
    /// No answer now: timeout, SERVFAIL, REFUSED, a network error or a DNSSEC validation
    /// failure. Try later (RFC 7208 2.6.6, RFC 6376 6.1.2, RFC 7489 6.6.3: temperror).
    #[error("{name}: temporary DNS failure: {reason}")]
    Temporary { name: String, reason: String },
    /// The question itself is unusable (a name that is not a domain name).
    #[error("{name}: invalid query: {reason}")]
    Invalid { name: String, reason: String },
}

impl DnsError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsError::Temporary { .. })
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one DNS interface (DESIGN.md 3.5). `name` is a domain name, with or without the
/// trailing dot; for PTR use [`reverse_name`].
pub trait Resolver: Send + Sync {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>>;
}

impl<R: Resolver + ?Sized> Resolver for std::sync::Arc<R> {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>> {
        (**self).lookup(name, rtype)
    }
}

/// Lower-case, without the trailing dot: the form names are compared and cached in.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The reverse-mapping name of an address (RFC 1035 3.5, RFC 3596 2.5), without the
/// trailing dot.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
                name.push('.');
                name.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
                name.push('.');
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The resolver when the real one cannot be built (no usable system configuration, no CA
/// roots for hickory's TLS client): every lookup is a temporary failure naming why, so the
/// daemon still starts, serves IMAP, POP3 and submission, and answers verified MX mail with
/// a 4xx that the sender retries, instead of exiting and restarting in a loop.
pub struct Unavailable {
    reason: String,
}

impl Unavailable {
    pub fn new(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
        }
    }
}

impl Resolver for Unavailable {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        _rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>> {
        Box::pin(async move {
            Err(DnsError::Temporary {
                name: normalize(name),
                reason: format!("no DNS resolver: {}", self.reason),
            })
        })
    }
}

/// The name a DNS block list is asked about an address (RFC 5782 2.1 and 2.4): the
/// address's octets (IPv4) or nibbles (IPv6) in reverse order, as in the reverse-mapping
/// tree, under the list's zone: 192.0.2.99 on `dnsbl.example` is
/// `99.2.0.192.dnsbl.example`. None when the name would pass 253 characters (RFC 1035
/// 2.3.4) or the zone is empty.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> Option<String> {
    let zone = zone.trim_end_matches('.');
    if zone.is_empty() {
        return None;
    }
    let reversed = reverse_name(ip);
    let labels = reversed
        .strip_suffix(".in-addr.arpa")
        .or_else(|| reversed.strip_suffix(".ip6.arpa"))?;
    let name = format!("{labels}.{zone}");
    (name.len() <= 253).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unavailable_resolver_fails_every_lookup_temporarily() {
        let r = Unavailable::new("No CA certificates were loaded");
        let err = r
            .lookup("Example.COM.", RecordType::Txt)
            .await
            .expect_err("no answer without a resolver");
        assert!(err.is_temporary(), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("example.com:"), "{text}");
        assert!(text.contains("No CA certificates"), "{text}");
    }

    #[test]
    fn dnsbl_names_follow_rfc_5782() {
        // RFC 5782 2.1's own example, and 2.4's IPv6 nibble form.
        assert_eq!(
            dnsbl_name("192.0.2.99".parse().unwrap(), "bad.example.com.").as_deref(),
            Some("99.2.0.192.bad.example.com")
        );
        assert_eq!(
            dnsbl_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example.com"
            )
            .as_deref(),
            Some(
                "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
            )
        );
        assert_eq!(dnsbl_name("192.0.2.1".parse().unwrap(), ""), None);
        assert_eq!(
            dnsbl_name("::1".parse().unwrap(), &"x".repeat(200)),
            None,
            "past 253 characters"
        );
    }

    #[test]
    fn reverse_names_follow_rfc_1035_and_3596() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
