//! The production resolver: hickory-resolver (DESIGN.md 3.5: >= 0.26.2, DNSSEC validation
//! on), with the configured nameservers or the system's (`/etc/resolv.conf`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    current: RwLock<Arc<Built>>,
    settings: ResolverSettings,
    deadline: Duration,
    /// Built from the system's file (no `[dns] nameservers`): re-read when it changes.
    system: Option<Mutex<SystemConf>>,
}

/// One hickory resolver and the nameservers it asks.
struct Built {
    resolver: TokioResolver,
    nameservers: Vec<SocketAddr>,
}

/// The system's resolver file and what it looked like when last read. An appliance starts
/// posternd before its DHCP lease writes the file (image/init: udhcpc writes
/// /run/postern/resolv.conf, which /etc/resolv.conf links to), and hickory reads it only
/// when built: without a re-read, DNS would stay unusable until a restart.
struct SystemConf {
    path: PathBuf,
    checked: Option<Instant>,
    stamp: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    // Follows the link: what changes is the file it names.
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The system's file, checked for a change at most this often (a stat per lookup would do,
/// but one a second is plenty for a file that changes with a DHCP lease).
const RECHECK: Duration = Duration::from_secs(1);
const SYSTEM_CONF: &str = "/etc/resolv.conf";

impl HickoryResolver {
    pub fn new(settings: &ResolverSettings) -> Result<HickoryResolver, String> {
        HickoryResolver::with_system_conf(settings, Path::new(SYSTEM_CONF))
    }

    /// As [`HickoryResolver::new`], with the system's resolver file at `path`.
    pub fn with_system_conf(
        settings: &ResolverSettings,
        path: &Path,
    ) -> Result<HickoryResolver, String> {
        let system = settings.nameservers.is_empty().then(|| SystemConf {
            path: path.to_path_buf(),
            checked: Some(Instant::now()),
            stamp: file_stamp(path),
        });
        let built = build(settings, system.as_ref().map(|s| s.path.as_path()))?;
        Ok(HickoryResolver {
            current: RwLock::new(Arc::new(built)),
            settings: settings.clone(),
            deadline: settings.timeout * (settings.attempts as u32 + 1),
            system: system.map(Mutex::new),
        })
    }

    /// The nameservers lookups go to now.
    pub fn nameservers(&self) -> Vec<SocketAddr> {
        self.current().nameservers.clone()
    }

    fn current(&self) -> Arc<Built> {
        if let Some(system) = &self.system {
            self.reread_system_conf(system);
        }
        match self.current.read() {
            Ok(built) => built.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn reread_system_conf(&self, system: &Mutex<SystemConf>) {
        // Another lookup is checking right now: use what is there.
        let Ok(mut conf) = system.try_lock() else {
            return;
        };
        if conf.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        conf.checked = Some(Instant::now());
        let stamp = file_stamp(&conf.path);
        if stamp == conf.stamp {
            return;
        }
        conf.stamp = stamp;
        match build(&self.settings, Some(&conf.path)) {
            Ok(built) => {
                tracing::info!(event = "dns.system_config_reloaded",
                    path = %conf.path.display(), nameservers = ?built.nameservers,
                    "the system's resolver file changed: lookups use its nameservers now");
                let fresh = Arc::new(built);
                match self.current.write() {
                    Ok(mut current) => *current = fresh,
                    Err(poisoned) => *poisoned.into_inner() = fresh,
                }
            }
            Err(error) => {
                tracing::error!(event = "dns.reload_failed", path = %conf.path.display(),
                    %error, "the system's resolver file changed but no resolver could be built from it; the previous one stays");
            }
        }
    }
}

/// A hickory resolver from the configured nameservers, or from the system's file at
/// `system`.
fn build(settings: &ResolverSettings, system: Option<&Path>) -> Result<Built, String> {
    let (config, mut options) = match system {
        Some(path) => read_system_conf(path),
        None => {
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
        }
    };
    let nameservers = config
        .name_servers()
        .iter()
        .flat_map(|ns| {
            ns.connections
                .iter()
                .map(move |c| SocketAddr::new(ns.ip, c.port))
        })
        .fold(Vec::new(), |mut all, addr| {
            if !all.contains(&addr) {
                all.push(addr);
            }
            all
        });
    options.timeout = settings.timeout;
    options.attempts = settings.attempts;
    options.validate = settings.validate;
    options.use_hosts_file = ResolveHosts::Never;
    // Our own bounded cache sits in front (crate::Cached); hickory's stays small.
    options.cache_size = 256;
    options.edns0 = true;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
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
    Ok(Built {
        resolver,
        nameservers,
    })
}

/// The system's resolver file (resolv.conf(5)). One that is missing or names no usable
/// server (an appliance before its DHCP lease) gives a resolver with no nameserver, so
/// that every lookup is a temporary failure (MX mail gets 4xx and is retried) rather than
/// keep the whole daemon from starting; the file is read again when it changes.
fn read_system_conf(path: &Path) -> (ResolverConfig, ResolverOpts) {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            hickory_resolver::system_conf::parse_resolv_conf(text).map_err(|e| e.to_string())
        });
    parsed.unwrap_or_else(|error| {
        tracing::error!(event = "dns.no_nameservers", path = %path.display(), %error,
            "the system's resolver file names no usable nameserver; DNS lookups fail until it does or [dns] nameservers is set");
        (
            ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            ResolverOpts::default(),
        )
    })
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
            let built = self.current();
            let lookup = match tokio::time::timeout(
                self.deadline,
                built.resolver.lookup(fqdn.as_str(), htype),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_system_resolver_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        // Before the DHCP lease: no nameserver.
        std::fs::write(&path, "# udhcpc has not written this yet\n").expect("write");
        let settings = ResolverSettings {
            validate: false,
            timeout: Duration::from_millis(200),
            attempts: 0,
            ..ResolverSettings::default()
        };
        let resolver = HickoryResolver::with_system_conf(&settings, &path).expect("built");
        assert!(resolver.nameservers().is_empty());
        let err = resolver
            .lookup("example.test", RecordType::A)
            .await
            .expect_err("no nameserver, no answer");
        assert!(err.is_temporary(), "{err}");

        // The lease arrives. Within RECHECK the old resolver is still used...
        std::fs::write(&path, "nameserver 127.0.0.53\nnameserver ::1\n").expect("write");
        assert!(resolver.nameservers().is_empty());
        // ...after it, the next lookup reads the file again.
        let system = resolver.system.as_ref().expect("from the system file");
        system.lock().expect("not poisoned").checked = None;
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().expect("addr"),
            "[::1]:53".parse().expect("addr"),
        ];
        assert_eq!(resolver.nameservers(), expected);

        // Unchanged since: the resolver is not rebuilt (the same Built is handed out).
        let before = resolver.current();
        system.lock().expect("not poisoned").checked = None;
        assert!(Arc::ptr_eq(&before, &resolver.current()));
    }

    #[tokio::test]
    async fn configured_nameservers_never_read_the_system_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.53\n").expect("write");
        let settings = ResolverSettings {
            nameservers: vec!["127.0.0.1:5353".parse().expect("addr")],
            validate: false,
            ..ResolverSettings::default()
        };
        let resolver = HickoryResolver::with_system_conf(&settings, &path).expect("built");
        assert!(resolver.system.is_none());
        assert_eq!(
            resolver.nameservers(),
            vec!["127.0.0.1:5353".parse::<SocketAddr>().expect("addr")]
        );
    }
}
