//! Sans-IO extraction of the hosts of the URLs in a message body, for URI block lists
//! (SURBL/URIBL: RFC 5782 2.3's domain-name-based lists) and the tokenizer's `url:` tokens.
//!
//! Candidates are found by their scheme (`http://`, `https://`, any case) or a `www.` at the
//! start of a word, in every text part and in the raw markup of every HTML part (links live
//! in `href` attributes, which the HTML-to-text conversion drops). Each candidate is parsed
//! by the `url` crate (the WHATWG URL standard, as browsers parse what a reader clicks): so
//! `http://good.example@evil.example/`, `http:\\evil.example`, `http://EVIL.example:80`,
//! percent-encoded and internationalised host names (to their A-labels, RFC 5891) and
//! numeric IPv4 forms (`http://0x7f.1/`) give the host a browser would visit.
//!
//! Every bound is in [`Limits`]: the raw bytes parsed, the text scanned, the length of one
//! candidate and the distinct hosts kept. A hostile message costs at most those.

use std::borrow::Cow;
use std::net::IpAddr;

use mail_parser::{MessageParser, PartType};

use crate::tokenize::clip;

/// Bounds of one extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Raw message bytes handed to the MIME parser; the rest is ignored.
    pub max_message_bytes: usize,
    /// Decoded text and markup (all parts together) scanned for URLs.
    pub max_text_bytes: usize,
    /// Distinct hosts kept; the first ones win.
    pub max_hosts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 512 * 1024,
            max_text_bytes: 256 * 1024,
            max_hosts: 100,
        }
    }
}

/// The longest URL candidate parsed (browsers accept longer ones, but the host comes first).
const MAX_CANDIDATE_BYTES: usize = 2048;

/// The host of a URL (RFC 3986 3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UrlHost {
    /// Lower-case A-labels, without a trailing dot; at most 253 characters, each label 1 to
    /// 63 of letters, digits, `-` and `_`, at least two labels.
    Domain(String),
    Ip(IpAddr),
}

impl std::fmt::Display for UrlHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlHost::Domain(d) => f.write_str(d),
            UrlHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Distinct hosts in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlHosts {
    pub hosts: Vec<UrlHost>,
    /// True when a limit cut the scan short.
    pub truncated: bool,
}

impl UrlHosts {
    fn push(&mut self, host: UrlHost, max: usize) -> bool {
        if self.hosts.contains(&host) {
            return true;
        }
        if self.hosts.len() >= max {
            self.truncated = true;
            return false;
        }
        self.hosts.push(host);
        true
    }
}

/// The URL hosts of a raw message (as stored: CRLF line ends, headers then body): its text
/// parts (plain, and HTML markup), decoded (RFC 2045 6).
pub fn message_hosts(raw: &[u8], limits: &Limits) -> UrlHosts {
    let mut out = UrlHosts::default();
    let raw = if raw.len() > limits.max_message_bytes {
        out.truncated = true;
        &raw[..limits.max_message_bytes]
    } else {
        raw
    };
    let Some(message) = MessageParser::default().parse(raw) else {
        scan(&String::from_utf8_lossy(raw), limits.max_hosts, &mut out);
        return out;
    };
    let mut budget = limits.max_text_bytes;
    for part in &message.parts {
        let text: &str = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text,
            _ => continue,
        };
        if budget == 0 {
            out.truncated = true;
            break;
        }
        let clipped = clip(text, budget);
        if clipped.len() < text.len() {
            out.truncated = true;
        }
        budget -= clipped.len();
        if !scan(clipped, limits.max_hosts, &mut out) {
            break;
        }
    }
    out
}

/// Adds the hosts of the URLs in `text` to `out` (at most `max_hosts` distinct ones in
/// all); false once `out` is full.
pub fn scan(text: &str, max_hosts: usize, out: &mut UrlHosts) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(start) = next_candidate(bytes, i) else {
            break;
        };
        let end = candidate_end(bytes, start.at);
        // The candidate is ASCII-delimited: `start.at` and `end` are character boundaries.
        let candidate = &text[start.at..end];
        i = end.max(start.at + 1);
        let url: Cow<'_, str> = if start.www {
            Cow::Owned(format!("http://{candidate}"))
        } else {
            Cow::Borrowed(candidate)
        };
        if let Some(host) = host_of(&url) {
            if !out.push(host, max_hosts) {
                return false;
            }
        }
    }
    true
}

struct Start {
    at: usize,
    /// A `www.` without a scheme: read as `http://www.`.
    www: bool,
}

/// The next `http://`, `https://` or word-initial `www.` at or after `from`.
fn next_candidate(bytes: &[u8], from: usize) -> Option<Start> {
    let mut i = from;
    while i + 4 <= bytes.len() {
        let b = bytes[i];
        if b == b'h' || b == b'H' {
            let rest = &bytes[i..];
            let scheme = if starts_with_ci(rest, b"http://") {
                Some(7)
            } else if starts_with_ci(rest, b"https://") || starts_with_ci(rest, b"https:\\\\") {
                Some(8)
            } else if starts_with_ci(rest, b"http:\\\\") {
                Some(7)
            } else {
                None
            };
            if scheme.is_some() {
                return Some(Start { at: i, www: false });
            }
        } else if (b == b'w' || b == b'W')
            && starts_with_ci(&bytes[i..], b"www.")
            && (i == 0 || !is_host_byte(bytes[i - 1]))
        {
            return Some(Start { at: i, www: true });
        }
        i += 1;
    }
    None
}

fn starts_with_ci(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'@' | b':')
}

/// Where a URL candidate ends: at white space, a control character, a quote or an angle
/// bracket (RFC 3986 appendix C: the delimiters of URIs in text), or after
/// [`MAX_CANDIDATE_BYTES`].
fn candidate_end(bytes: &[u8], start: usize) -> usize {
    let limit = bytes.len().min(start + MAX_CANDIDATE_BYTES);
    let mut end = start;
    while end < limit {
        let b = bytes[end];
        if b <= b' ' || b == 0x7f || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`') {
            break;
        }
        end += 1;
    }
    // Past the byte limit, back to a character boundary (a multi-byte character may be cut).
    while end > start && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    end
}

/// The host of one URL as a browser would read it; None when it is not a URL with a usable
/// host.
fn host_of(url: &str) -> Option<UrlHost> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Ipv4(v4) => Some(UrlHost::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Some(UrlHost::Ip(IpAddr::V6(v6))),
        url::Host::Domain(domain) => valid_domain(domain).map(UrlHost::Domain),
    }
}

/// A host name usable in a DNS question (RFC 1035 2.3.4: 253 characters, labels of 1 to
/// 63), lower-case, without a trailing dot, of at least two labels.
fn valid_domain(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.len() > 253 || !domain.contains('.') {
        return None;
    }
    labels_ok(domain).then(|| domain.to_ascii_lowercase())
}

/// Every label of `name` 1 to 63 letters, digits, `-` or `_` (RFC 1035 2.3.4; `_` as in
/// service names and some list zones).
pub(crate) fn labels_ok(name: &str) -> bool {
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The registered domain of a host (the public suffix plus one label, from the Public
/// Suffix List): what SURBL-style lists are asked about (`www.shop.example.co.uk` is
/// listed as `example.co.uk`). None for a public suffix itself (`co.uk`).
pub fn registered_domain(host: &str) -> Option<&str> {
    psl::domain_str(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<String> {
        let mut out = UrlHosts::default();
        scan(text, 100, &mut out);
        out.hosts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn hosts_as_a_browser_reads_them() {
        assert_eq!(
            hosts("Click https://Win.Example/x or HTTP://www.shop.example:8080/?a=b."),
            ["win.example", "www.shop.example"]
        );
        // Userinfo is not the host (RFC 3986 3.2.1); backslashes are slashes (WHATWG).
        assert_eq!(hosts("http://bank.example@evil.example/"), ["evil.example"]);
        assert_eq!(hosts("http:\\\\evil.example\\x"), ["evil.example"]);
        // Percent-encoding and IDNA: the A-label that DNS is asked about.
        assert_eq!(hosts("http://%65vil.example/"), ["evil.example"]);
        assert_eq!(hosts("https://bücher.example/"), ["xn--bcher-kva.example"]);
        // Numeric IPv4 forms, and IPv6 literals.
        assert_eq!(
            hosts("http://0x7f.1/ http://3221225985/"),
            ["127.0.0.1", "192.0.2.1"]
        );
        assert_eq!(hosts("http://[2001:db8::1]/"), ["2001:db8::1"]);
        // A www. word without a scheme; not inside another word.
        assert_eq!(hosts("see www.promo.example today"), ["www.promo.example"]);
        assert_eq!(hosts("awww.example"), Vec::<String>::new());
        // HTML attributes end at their quotes; duplicates are kept once.
        assert_eq!(
            hosts(
                r#"<a href="http://a.example/x">http://a.example</a><a href='https://b.example'>"#
            ),
            ["a.example", "b.example"]
        );
        // Not URLs, or no host a DNS list could be asked about.
        for text in [
            "http://",
            "http:// x",
            "http://localhost/",
            "http://a..b/",
            "mailto:x@y.example",
        ] {
            assert_eq!(hosts(text), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(
            registered_domain("www.shop.example.co.uk"),
            Some("example.co.uk")
        );
        assert_eq!(registered_domain("a.b.example.com"), Some("example.com"));
        assert_eq!(registered_domain("spam.test"), Some("spam.test"));
        assert_eq!(registered_domain("co.uk"), None);
    }

    #[test]
    fn limits_bound_the_work() {
        let many: String = (0..1000)
            .map(|i| format!("http://h{i}.example/ "))
            .collect();
        let mut out = UrlHosts::default();
        assert!(!scan(&many, 10, &mut out));
        assert_eq!(out.hosts.len(), 10);
        assert!(out.truncated);
        let raw = format!("Subject: x\r\n\r\n{many}\r\n");
        let small = Limits {
            max_text_bytes: 200,
            ..Limits::default()
        };
        let out = message_hosts(raw.as_bytes(), &small);
        assert!(out.truncated && out.hosts.len() < 20, "{out:?}");
        // A candidate far longer than any URL is cut, and its host still read.
        let long = format!("http://long.example/{}", "a".repeat(1 << 20));
        assert_eq!(hosts(&long), ["long.example"]);
    }

    #[test]
    fn html_links_and_encoded_parts_are_read() {
        let raw = "From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naHR0cDovL3BsYWluLmV4YW1wbGUv\r\n--XX\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<a href=3D\"https://linked.example/\">click</a>\r\n--XX--\r\n";
        let out = message_hosts(raw.as_bytes(), &Limits::default());
        let found: Vec<String> = out.hosts.iter().map(ToString::to_string).collect();
        assert_eq!(found, ["plain.example", "linked.example"]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"http",
            b"https://\xff\xfe",
            b"www.",
            b"\r\n\r\nhttp://[::1",
            "http://é".as_bytes(),
        ] {
            let _ = message_hosts(raw, &Limits::default());
            let _ = hosts(&String::from_utf8_lossy(raw));
        }
    }
}
