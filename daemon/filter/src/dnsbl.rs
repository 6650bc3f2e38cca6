//! DNS block lists (RFC 5782): IP-address lists asked about the SMTP client (DNSBL/RBL,
//! RFC 5782 2.1 and 2.4) and domain lists asked about the hosts of the URLs in a message
//! (SURBL/URIBL, RFC 5782 2.3), each with a weight, as Postfix's postscreen weighs its
//! `postscreen_dnsbl_sites`. The sum of the weights of the lists that answered is what the
//! combiner ([`crate::verdict`]) weighs against `[dnsbl]` junk_weight and reject_weight.
//!
//! Every question goes through Postern's [`Resolver`] (its cache and DNSSEC handling) and is
//! bounded by its own timeout. A list that does not answer in time, or fails, counts as not
//! listing: block lists are advisory, so their failure lets mail through (fails open), and
//! [`Listed::failed`] says which list it was so the daemon can log it.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use postern_dns::{DnsError, Rdata, RecordType, Resolver};

use crate::urls::{registered_domain, UrlHost};

/// Which side of the message a list judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The client's IP address (RFC 5782 2.1, 2.4).
    Client,
    /// The hosts of URLs in the body (RFC 5782 2.3).
    Uri,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Client => "dnsbl",
            Kind::Uri => "uribl",
        }
    }
}

/// One configured list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsList {
    /// The list's zone, lower-case, without a trailing dot.
    pub zone: String,
    /// Added to the total when the list answers with a counted code; may be negative (an
    /// allow list such as list.dnswl.org subtracts).
    pub weight: i64,
    /// The answers (127.0.0.x) that count, as inclusive ranges; empty = any in 127.0.0.0/8
    /// except 127.255.255.0/24.
    pub codes: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// Answers in 127.255.255.0/24 are not listings but a list's error replies (Spamhaus, for
/// instance, answers 127.255.255.254 to queries through public resolvers): never counted
/// unless a list's codes name them.
fn is_error_code(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 127 && o[1] == 255 && o[2] == 255
}

impl DnsList {
    pub fn new(zone: &str, weight: i64, codes: &[String]) -> Result<DnsList, String> {
        let zone = postern_dns::normalize(zone);
        check_zone(&zone)?;
        let codes = codes
            .iter()
            .map(|c| parse_code(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DnsList {
            zone,
            weight,
            codes,
        })
    }

    /// Whether an A record of the list's answer is a listing that counts (RFC 5782 2.1:
    /// listings are A records in 127.0.0.0/8; lists give their codes meanings, such as
    /// zen.spamhaus.org's 127.0.0.2 for SBL and 127.0.0.10-11 for PBL).
    pub fn counts(&self, answer: Ipv4Addr) -> bool {
        if self.codes.is_empty() {
            return answer.octets()[0] == 127 && !is_error_code(answer);
        }
        self.codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&answer))
    }
}

/// A list zone: a domain name of at least two labels, short enough to leave room for the
/// 72 characters of an IPv6 question (RFC 5782 2.4).
pub fn check_zone(zone: &str) -> Result<(), String> {
    let zone = zone.trim_end_matches('.');
    if zone.is_empty() || !crate::urls::labels_ok(zone) || !zone.contains('.') {
        return Err(format!(
            "{zone:?} is not a DNS list zone (a domain name such as zen.spamhaus.org)"
        ));
    }
    if zone.len() > 180 {
        return Err(format!("zone {zone:?} is longer than 180 characters"));
    }
    Ok(())
}

/// An answer code: "127.0.0.2", or an inclusive range "127.0.0.2-127.0.0.11".
pub fn parse_code(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let bad = || {
        format!(
            "{text:?} is not an answer code (such as \"127.0.0.2\" or \"127.0.0.2-127.0.0.11\")"
        )
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (text.trim(), text.trim()),
    };
    let lo: Ipv4Addr = lo.parse().map_err(|_| bad())?;
    let hi: Ipv4Addr = hi.parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(format!(
            "{text:?}: the range's first address is above its last"
        ));
    }
    Ok((lo, hi))
}

/// One list that listed something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub kind: Kind,
    pub zone: String,
    pub weight: i64,
    /// What was listed: the client address or the domain (or URL address) asked about.
    pub listed: String,
    /// The first counted answer.
    pub code: Ipv4Addr,
}

/// A list that could not answer (timeout or DNS failure): counted as not listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub zone: String,
    pub queried: String,
    /// "timeout", or the DNS failure.
    pub reason: String,
}

/// What the lists said about one client or message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// At most one hit per list and listed item.
    pub hits: Vec<Hit>,
    pub failed: Vec<Failure>,
}

impl Listed {
    /// The sum of the weights: each list counts once however many of the message's domains
    /// it lists (a message with 20 links to one listed domain is not 20 times worse).
    pub fn weight(&self) -> i64 {
        let mut seen: Vec<(Kind, &str)> = Vec::new();
        let mut total = 0i64;
        for hit in &self.hits {
            if !seen.contains(&(hit.kind, hit.zone.as_str())) {
                seen.push((hit.kind, hit.zone.as_str()));
                total = total.saturating_add(hit.weight);
            }
        }
        total
    }

    /// The zones that listed, each once, in order (for reply texts and the header).
    pub fn zones(&self, kind: Kind) -> Vec<&str> {
        let mut zones: Vec<&str> = Vec::new();
        for hit in self.hits.iter().filter(|h| h.kind == kind) {
            if !zones.contains(&hit.zone.as_str()) {
                zones.push(&hit.zone);
            }
        }
        zones
    }

    pub fn extend(&mut self, other: Listed) {
        self.hits.extend(other.hits);
        self.failed.extend(other.failed);
    }
}

/// Asks every client list about `ip`, all at once, each bounded by `timeout`.
pub async fn check_client(
    resolver: &dyn Resolver,
    lists: &[DnsList],
    ip: IpAddr,
    timeout: Duration,
) -> Listed {
    let questions = lists
        .iter()
        .filter_map(|list| {
            // RFC 5782 2.1 (IPv4) and 2.4 (IPv6: 32 nibbles).
            let name = postern_dns::dnsbl_name(ip, &list.zone)?;
            Some((Kind::Client, list, ip.to_string(), name))
        })
        .collect();
    ask(resolver, questions, timeout).await
}

/// Asks every URI list about the registered domains of `hosts` (RFC 5782 2.3; SURBL and
/// URIBL list registered domains, so `www.spam-shop.co.uk` is asked as
/// `spam-shop.co.uk.<zone>`) and about URL addresses in reversed form (2.1, as SURBL
/// lists them), at most `max_items` distinct items, each question bounded by `timeout`.
pub async fn check_uris(
    resolver: &dyn Resolver,
    lists: &[DnsList],
    hosts: &[UrlHost],
    max_items: usize,
    timeout: Duration,
) -> Listed {
    let mut items: Vec<(String, Option<IpAddr>)> = Vec::new();
    for host in hosts {
        let item = match host {
            UrlHost::Ip(ip) => (ip.to_string(), Some(*ip)),
            UrlHost::Domain(d) => match registered_domain(d) {
                Some(reg) => (reg.to_string(), None),
                None => continue,
            },
        };
        if !items.contains(&item) {
            if items.len() >= max_items {
                break;
            }
            items.push(item);
        }
    }
    let mut questions = Vec::new();
    for list in lists {
        for (item, ip) in &items {
            let name = match ip {
                Some(ip) => postern_dns::dnsbl_name(*ip, &list.zone),
                None => Some(format!("{item}.{}", list.zone)).filter(|n| n.len() <= 253),
            };
            if let Some(name) = name {
                questions.push((Kind::Uri, list, item.clone(), name));
            }
        }
    }
    ask(resolver, questions, timeout).await
}

type Question<'l> = (Kind, &'l DnsList, String, String);

type Lookup<'r> = Pin<
    Box<
        dyn Future<
                Output = Result<Result<postern_dns::Answer, DnsError>, tokio::time::error::Elapsed>,
            > + Send
            + 'r,
    >,
>;

async fn ask(resolver: &dyn Resolver, questions: Vec<Question<'_>>, timeout: Duration) -> Listed {
    let lookups: Vec<Lookup<'_>> = questions
        .iter()
        .map(|(_, _, _, name)| {
            Box::pin(tokio::time::timeout(
                timeout,
                resolver.lookup(name, RecordType::A),
            )) as Lookup<'_>
        })
        .collect();
    let answers = join_all(lookups).await;
    let mut listed = Listed::default();
    for ((kind, list, item, _), answer) in questions.iter().zip(answers) {
        let failure = |reason: String| Failure {
            kind: *kind,
            zone: list.zone.clone(),
            queried: item.clone(),
            reason,
        };
        match answer {
            Err(_elapsed) => listed.failed.push(failure("timeout".into())),
            Ok(Ok(answer)) => {
                let code = answer.records.into_iter().find_map(|r| match r {
                    Rdata::A(a) if list.counts(a) => Some(a),
                    _ => None,
                });
                if let Some(code) = code {
                    listed.hits.push(Hit {
                        kind: *kind,
                        zone: list.zone.clone(),
                        weight: list.weight,
                        listed: item.clone(),
                        code,
                    });
                }
            }
            // RFC 5782 2.1: not listed is NXDOMAIN (or no A record).
            Ok(Err(DnsError::NxDomain { .. })) | Ok(Err(DnsError::Invalid { .. })) => {}
            Ok(Err(error @ DnsError::Temporary { .. })) => {
                listed.failed.push(failure(error.to_string()))
            }
        }
    }
    listed
}

/// Polls every future until all are ready; the answers in order (no extra dependency for
/// what `futures::join_all` does).
async fn join_all<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *slot = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_dns::{BoxFuture, MemoryResolver};

    fn listing(zone: &MemoryResolver, name: &str, code: &str) {
        zone.add(name, Rdata::A(code.parse().unwrap()));
    }

    fn list(zone: &str, weight: i64, codes: &[&str]) -> DnsList {
        let codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
        DnsList::new(zone, weight, &codes).unwrap()
    }

    #[test]
    fn codes_and_zones_are_checked() {
        assert_eq!(
            parse_code("127.0.0.2-127.0.0.11"),
            Ok(("127.0.0.2".parse().unwrap(), "127.0.0.11".parse().unwrap()))
        );
        assert!(parse_code("127.0.0.11-127.0.0.2").is_err());
        assert!(parse_code("127.0.0").is_err());
        assert!(DnsList::new("zen.spamhaus.org.", 3, &[]).is_ok());
        assert!(DnsList::new("localhost", 1, &[]).is_err());
        assert!(DnsList::new("bad zone.example", 1, &[]).is_err());
        let any = list("dnsbl.example", 1, &[]);
        assert!(any.counts("127.0.0.2".parse().unwrap()));
        assert!(
            !any.counts("127.255.255.254".parse().unwrap()),
            "an error reply"
        );
        assert!(!any.counts("192.0.2.1".parse().unwrap()), "outside 127/8");
        let sbl = list("zen.example", 3, &["127.0.0.2", "127.0.0.4-127.0.0.7"]);
        assert!(sbl.counts("127.0.0.5".parse().unwrap()));
        assert!(!sbl.counts("127.0.0.10".parse().unwrap()));
    }

    #[tokio::test]
    async fn client_lists_are_asked_by_reversed_address_and_weighed() {
        let zone = MemoryResolver::new();
        listing(&zone, "2.0.0.127.zen.example", "127.0.0.10");
        listing(&zone, "2.0.0.127.zen.example", "127.0.0.2");
        listing(&zone, "2.0.0.127.other.example", "127.0.0.2");
        listing(&zone, "2.0.0.127.pbl-only.example", "127.0.0.10");
        zone.fail("2.0.0.127.down.example");
        let lists = [
            list("zen.example", 3, &["127.0.0.2-127.0.0.9"]),
            list("other.example", 1, &[]),
            list("pbl-only.example", 5, &["127.0.0.2"]),
            list("down.example", 9, &[]),
            list("clean.example", 9, &[]),
        ];
        let ip = "127.0.0.2".parse().unwrap();
        let listed = check_client(&zone, &lists, ip, Duration::from_secs(1)).await;
        assert_eq!(listed.zones(Kind::Client), ["zen.example", "other.example"]);
        assert_eq!(
            listed.hits[0].code,
            "127.0.0.2".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(listed.weight(), 4);
        assert_eq!(listed.failed.len(), 1);
        assert_eq!(listed.failed[0].zone, "down.example");
        // IPv6 clients: 32 nibbles (RFC 5782 2.4).
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        zone.add(
            &postern_dns::dnsbl_name(v6, "zen.example").unwrap(),
            Rdata::A("127.0.0.3".parse().unwrap()),
        );
        let listed = check_client(&zone, &lists, v6, Duration::from_secs(1)).await;
        assert_eq!(listed.weight(), 3);
    }

    /// A resolver that never answers: the lookups time out and fail open.
    struct Silent;
    impl Resolver for Silent {
        fn lookup<'a>(
            &'a self,
            _: &'a str,
            _: RecordType,
        ) -> BoxFuture<'a, Result<postern_dns::Answer, DnsError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_silent_list_times_out_within_the_bound() {
        let lists = [list("slow.example", 5, &[]), list("slow2.example", 5, &[])];
        let started = std::time::Instant::now();
        let listed = check_client(
            &Silent,
            &lists,
            "192.0.2.1".parse().unwrap(),
            Duration::from_millis(200),
        )
        .await;
        // Asked together: one timeout, not one per list.
        assert!(started.elapsed() < Duration::from_millis(390));
        assert_eq!(listed.weight(), 0);
        assert_eq!(listed.failed.len(), 2);
        assert!(listed.failed.iter().all(|f| f.reason == "timeout"));
    }

    #[tokio::test]
    async fn uri_lists_are_asked_by_registered_domain_and_reversed_address() {
        let zone = MemoryResolver::new();
        listing(&zone, "spam-shop.co.uk.uribl.example", "127.0.0.2");
        listing(&zone, "1.2.0.192.uribl.example", "127.0.0.4");
        let hosts = vec![
            UrlHost::Domain("www.spam-shop.co.uk".into()),
            UrlHost::Domain("shop.spam-shop.co.uk".into()),
            UrlHost::Domain("clean.example".into()),
            UrlHost::Ip("192.0.2.1".parse().unwrap()),
        ];
        let lists = [list("uribl.example", 2, &[])];
        let listed = check_uris(&zone, &lists, &hosts, 10, Duration::from_secs(1)).await;
        let items: Vec<&str> = listed.hits.iter().map(|h| h.listed.as_str()).collect();
        assert_eq!(items, ["spam-shop.co.uk", "192.0.2.1"]);
        // One list, counted once however many domains it lists.
        assert_eq!(listed.weight(), 2);
        // At most max_items distinct items are asked about.
        let listed = check_uris(&zone, &lists, &hosts, 1, Duration::from_secs(1)).await;
        assert_eq!(listed.hits.len(), 1);
        let listed = check_uris(&zone, &lists, &hosts[2..3], 10, Duration::from_secs(1)).await;
        assert_eq!(listed, Listed::default());
    }
}
