//! The production resolver: hickory-resolver (DESIGN.md 3.5: >= 0.26.2, DNSSEC validation
//! on), with the configured nameservers or the system's (`/etc/resolv.conf`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HDnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType as HType};
use hickory_resolver::TokioResolver;

use crate::{normalize, Answer, BoxFuture, DnsError, Dnssec, Rdata, RecordType, Resolver};

/// How to build the resolver (`[dns]` in the configuration).
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// Nameservers to ask (UDP, then TCP for truncated answers); empty = the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout; the whole lookup is also bounded by `timeout * (attempts + 1)`.
    pub timeout: Duration,
    pub attempts: usize,
    /// Validate DNSSEC (RFC 4035 5) from the root's trust anchor, or `trust_anchor`.
    pub validate: bool,
    /// A file of DNSKEY records to trust (a private signed zone, tests); None = the root's.
    pub trust_anchor: Option<PathBuf>,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            validate: true,
            trust_anchor: None,
        }
    }
}

pub struct HickoryResolver {
    resolver: TokioResolver,
    deadline: Duration,
}

impl HickoryResolver {
    pub fn new(settings: &ResolverSettings) -> Result<HickoryResolver, String> {
        let (config, mut options) = if settings.nameservers.is_empty() {
            // No usable /etc/resolv.conf yet (an appliance before its DHCP lease names a
            // DNS server): start anyway with no nameserver, so that every lookup is a
            // temporary failure (MX mail gets 4xx and is retried), rather than keep the
            // whole daemon from starting.
            hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
                tracing::error!(event = "dns.no_nameservers", error = %e,
                    "reading /etc/resolv.conf failed; DNS lookups fail until [dns] nameservers is set");
                (
                    ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                    ResolverOpts::default(),
                )
            })
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_parts(None, Vec::new(), servers),
                ResolverOpts::default(),
            )
        };
        options.timeout = settings.timeout;
        options.attempts = settings.attempts;
        options.validate = settings.validate;
        options.use_hosts_file = ResolveHosts::Never;
        // Our own bounded cache sits in front (crate::Cached); hickory's stays small.
        options.cache_size = 256;
        options.edns0 = true;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(options);
        if let Some(path) = &settings.trust_anchor {
            // hickory's `ResolverOpts::trust_anchor` path only switches validation on; the
            // keys must be given to the builder.
            let anchors = TrustAnchors::from_file(path)
                .map_err(|e| format!("trust anchor {}: {e}", path.display()))?;
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let resolver = builder
            .build()
            .map_err(|e| format!("building the resolver: {e}"))?;
        Ok(HickoryResolver {
            resolver,
            deadline: settings.timeout * (settings.attempts as u32 + 1),
        })
    }
}

fn dnssec_of(proof: Proof) -> Dnssec {
    if proof.is_secure() {
        Dnssec::Secure
    } else if proof.is_insecure() {
        Dnssec::Insecure
    } else {
        Dnssec::Indeterminate
    }
}

fn name_text(name: &hickory_resolver::proto::rr::Name) -> String {
    normalize(&name.to_ascii())
}

fn convert(data: &RData) -> Option<Rdata> {
    Some(match data {
        RData::A(a) => Rdata::A(a.0),
        RData::AAAA(a) => Rdata::Aaaa(a.0),
        RData::MX(mx) => Rdata::Mx {
            preference: mx.preference,
            exchange: name_text(&mx.exchange),
        },
        RData::TXT(txt) => Rdata::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
        RData::PTR(ptr) => Rdata::Ptr(name_text(&ptr.0)),
        RData::TLSA(t) => Rdata::Tlsa {
            usage: t.cert_usage.into(),
            selector: t.selector.into(),
            matching: t.matching.into(),
            data: t.cert_data.clone(),
        },
        _ => return None,
    })
}

fn matches(data: &Rdata, rtype: RecordType) -> bool {
    matches!(
        (data, rtype),
        (Rdata::A(_), RecordType::A)
            | (Rdata::Aaaa(_), RecordType::Aaaa)
            | (Rdata::Mx { .. }, RecordType::Mx)
            | (Rdata::Txt(_), RecordType::Txt)
            | (Rdata::Ptr(_), RecordType::Ptr)
            | (Rdata::Tlsa { .. }, RecordType::Tlsa)
    )
}

impl Resolver for HickoryResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>> {
        Box::pin(async move {
            let key = normalize(name);
            // Fully qualified: no search list.
            let fqdn = format!("{key}.");
            let htype = match rtype {
                RecordType::A => HType::A,
                RecordType::Aaaa => HType::AAAA,
                RecordType::Mx => HType::MX,
                RecordType::Txt => HType::TXT,
                RecordType::Ptr => HType::PTR,
                RecordType::Tlsa => HType::TLSA,
            };
            let temporary = |reason: String| DnsError::Temporary {
                name: key.clone(),
                reason,
            };
            let lookup = match tokio::time::timeout(
                self.deadline,
                self.resolver.lookup(fqdn.as_str(), htype),
            )
            .await
            {
                Err(_) => return Err(temporary("timed out".into())),
                Ok(result) => result,
            };
            match lookup {
                Ok(lookup) => {
                    let mut dnssec = None::<Dnssec>;
                    let mut ttl = u32::MAX;
                    let mut records = Vec::new();
                    for record in lookup.answers() {
                        let Some(data) = convert(&record.data) else {
                            continue;
                        };
                        if !matches(&data, rtype) {
                            continue;
                        }
                        let status = dnssec_of(record.proof);
                        if record.proof.is_bogus() {
                            // RFC 4035 5.5: bogus data is never used.
                            return Err(temporary("DNSSEC validation failed (bogus)".into()));
                        }
                        // The RRset is as secure as its weakest record.
                        dnssec = Some(match (dnssec, status) {
                            (None, s) => s,
                            (Some(Dnssec::Secure), s) => s,
                            (Some(d), _) => d,
                        });
                        ttl = ttl.min(record.ttl);
                        records.push(data);
                    }
                    Ok(Answer {
                        records,
                        dnssec: dnssec.unwrap_or(Dnssec::Indeterminate),
                        ttl: if ttl == u32::MAX { 60 } else { ttl },
                    })
                }
                Err(NetError::Dns(HDnsError::NoRecordsFound(none))) => negative(
                    &key,
                    none.response_code,
                    Dnssec::Indeterminate,
                    none.negative_ttl,
                ),
                Err(NetError::Dns(HDnsError::Nsec {
                    response, proof, ..
                })) => {
                    if proof.is_bogus() {
                        return Err(temporary("DNSSEC validation failed (bogus)".into()));
                    }
                    negative(
                        &key,
                        response.metadata.response_code,
                        dnssec_of(proof),
                        None,
                    )
                }
                Err(NetError::Dns(HDnsError::DnssecBogus)) => {
                    Err(temporary("DNSSEC validation failed (bogus)".into()))
                }
                Err(other) => Err(temporary(other.to_string())),
            }
        })
    }
}

fn negative(
    key: &str,
    code: ResponseCode,
    dnssec: Dnssec,
    ttl: Option<u32>,
) -> Result<Answer, DnsError> {
    if code == ResponseCode::NXDomain {
        Err(DnsError::NxDomain {
            name: key.to_string(),
            dnssec,
        })
    } else {
        // NOERROR without records: NODATA (RFC 2308 2.2).
        Ok(Answer {
            records: Vec::new(),
            dnssec,
            ttl: ttl.unwrap_or(60),
        })
    }
}
