//! posternd configuration.
//!
//! The file is TOML; every key has a default, so an empty file is a valid production
//! configuration. Unknown keys are errors. Every key is documented in `reference.toml` next to
//! this crate, and a test checks that the reference and the code agree (DESIGN.md section 7).
//!
//! Errors come back as `path:line:col: message`, one per line, and semantic problems are all
//! collected, so `postern config check` shows everything wrong in one run.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod raw;
mod validate;

/// The documented reference configuration (every key, its default and meaning).
pub const REFERENCE_TOML: &str = include_str!("../reference.toml");

/// The built-in development profile used by `posternd --dev`.
pub const DEV_TOML: &str = include_str!("../dev.toml");

/// The whole daemon configuration, validated, with paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    /// Never empty after validation.
    pub listeners: Vec<ListenerConfig>,
    pub smtp: SmtpConfig,
    pub imap: ImapConfig,
    pub pop3: Pop3Config,
    pub store: StoreConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub health: HealthConfig,
    pub auth: AuthConfig,
    pub filter: FilterConfig,
    pub admin: AdminConfig,
    pub dns: DnsConfig,
    pub sender_auth: SenderAuthConfig,
    pub dnsbl: DnsblConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Name used in the greeting and `Received` headers. The file's `""` means the system
    /// hostname, resolved when the configuration is loaded.
    pub hostname: String,
    /// Absolute, or relative to the current directory when the config file path was.
    pub data_dir: PathBuf,
    /// 0 = one worker per CPU core; see [`Config::effective_workers`].
    pub workers: usize,
    /// `None` = `<data_dir>/admin.sock`; see [`Config::admin_socket_path`].
    pub admin_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// PEM certificate chain; `None` = a self-signed certificate in `<data_dir>/tls/`.
    /// Validation guarantees `certificate` and `private_key` are both set or both unset.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub min_version: TlsVersion,
    /// Poll interval for certificate file changes; 0 = no polling (SIGHUP still reloads).
    pub reload_check_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    /// Never empty after validation.
    pub bind: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Inbound mail from other servers, port 25 (RFC 5321).
    Mx,
    /// Message submission with STARTTLS, port 587 (RFC 6409, RFC 3207).
    Submission,
    /// Message submission over implicit TLS, port 465 (RFC 8314 3.3).
    Submissions,
    /// IMAP with STARTTLS (RFC 9051, RFC 3501), port 143; LOGINDISABLED before TLS.
    Imap,
    /// IMAP over implicit TLS, port 993 (RFC 8314 3.3).
    Imaps,
    /// POP3 with STLS (RFC 1939, RFC 2595), port 110; no login before TLS.
    Pop3,
    /// POP3 over implicit TLS, port 995 (RFC 8314 3.3).
    Pop3s,
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerKind::Mx => "mx",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Pop3 => "pop3",
            ListenerKind::Pop3s => "pop3s",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Bytes; advertised with SIZE (RFC 1870).
    pub max_message_size: u64,
    /// RFC 5321 4.5.3.1.8.
    pub max_recipients: u64,
    /// Octets including CRLF; RFC 5321 4.5.3.1.4 requires at least 512.
    pub max_command_line: u64,
    /// Octets including CRLF; RFC 5321 4.5.3.1.6 requires at least 1000.
    pub max_data_line: u64,
    pub max_commands: u64,
    pub max_errors: u64,
    pub max_connections: u64,
    /// Per IP address on the MX listeners.
    pub max_connections_per_ip: u64,
    /// Per IP address on the submission listeners (587 and 465), an allowance of its own.
    pub max_submission_connections_per_ip: u64,
    /// RFC 5321 4.5.3.2.7.
    pub timeout_command_secs: u64,
    /// RFC 5321 4.5.3.2.6.
    pub timeout_data_secs: u64,
    /// Milliseconds an MX listener waits before its 220 greeting; a client that talks
    /// within them is refused with 554 (RFC 5321 3.1, 4.3.2). 0 = no wait.
    pub greeting_delay_ms: u64,
    /// Messages (MAIL FROM commands) per hour from one client address on MX (an IPv6
    /// client's /64); more get 450 4.7.1 until the rate falls. 0 = no limit.
    pub mx_messages_per_ip_per_hour: u64,
    /// Messages per hour one authenticated account may submit; more get 450 4.7.1.
    /// 0 = no limit.
    pub submission_messages_per_hour: u64,
    /// Recipients per message on submission; more get 452 4.5.3 (RFC 5321 4.5.3.1.10).
    /// At most max_recipients.
    pub submission_recipients_per_message: u64,
    /// Recipients per hour one authenticated account may submit to; more get 450 4.7.1.
    /// 0 = no limit.
    pub submission_recipients_per_hour: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: 52_428_800,
            max_recipients: 100,
            max_command_line: 2048,
            max_data_line: 8192,
            max_commands: 1000,
            max_errors: 10,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            max_submission_connections_per_ip: 50,
            timeout_command_secs: 300,
            timeout_data_secs: 180,
            greeting_delay_ms: 1000,
            mx_messages_per_ip_per_hour: 1000,
            submission_messages_per_hour: 200,
            submission_recipients_per_message: 100,
            submission_recipients_per_hour: 1000,
        }
    }
}

impl SmtpConfig {
    pub fn timeout_command(&self) -> Duration {
        Duration::from_secs(self.timeout_command_secs)
    }

    pub fn timeout_data(&self) -> Duration {
        Duration::from_secs(self.timeout_data_secs)
    }

    pub fn greeting_delay(&self) -> Duration {
        Duration::from_millis(self.greeting_delay_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Longest command line in octets, CRLF included, literals excluded.
    pub max_command_line: u64,
    /// Largest literal, and so the largest APPEND (advertised as APPENDLIMIT, RFC 7889).
    pub max_literal_size: u64,
    /// Seconds of inactivity before an authenticated session is closed; RFC 9051 5.4 requires
    /// at least 30 minutes.
    pub timeout_idle_secs: u64,
    /// Seconds before an unauthenticated session must have logged in.
    pub timeout_login_secs: u64,
    /// Failed commands (BAD) per session before the server says BYE.
    pub max_errors: u64,
    pub max_connections: u64,
    pub max_connections_per_ip: u64,
    /// Storage quota per account in bytes (QUOTA, RFC 9208). 0 = unlimited.
    pub quota_bytes: u64,
    /// Memory for the header fields SEARCH reads (Subject, From, To, Cc, Bcc, Date), kept per
    /// message after the first search, in MiB. 0 = no cache: every search reads the mail.
    pub search_cache_mb: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_command_line: 65_536,
            max_literal_size: 52_428_800,
            timeout_idle_secs: 1800,
            timeout_login_secs: 60,
            max_errors: 20,
            max_connections: 20_000,
            max_connections_per_ip: 100,
            quota_bytes: 0,
            search_cache_mb: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Longest command line in octets, CRLF included (RFC 2449 4: 255 octets at least).
    pub max_command_line: u64,
    /// Seconds of inactivity before the session is closed; RFC 1939 3 requires at least 10
    /// minutes.
    pub timeout_secs: u64,
    /// Seconds of inactivity before authentication; a client that has not logged in may be
    /// dropped sooner.
    pub timeout_login_secs: u64,
    /// Failed commands per session before the server closes it.
    pub max_errors: u64,
    pub max_connections: u64,
    pub max_connections_per_ip: u64,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            max_command_line: 512,
            timeout_secs: 600,
            timeout_login_secs: 60,
            max_errors: 10,
            max_connections: 10_000,
            max_connections_per_ip: 50,
        }
    }
}

/// `[auth]`: the verified-credential cache shared by SMTP AUTH, IMAP and POP3 logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Seconds a verified (account, password) pair is answered without argon2; 0 = no cache.
    pub credential_cache_ttl_secs: u64,
    /// Most pairs held; the least recently used goes first. 0 = no cache.
    pub credential_cache_entries: u64,
    /// Failed logins from one client address (an IPv6 client's /64) within
    /// `ban_window_secs` that ban the address; 0 = no address bans.
    pub ban_address_failures: u64,
    /// Failed logins to one account, from any address, within `ban_window_secs` that ban
    /// the account (except from addresses it logged in from before); 0 = no account bans.
    pub ban_account_failures: u64,
    /// Seconds over which failures are counted.
    pub ban_window_secs: u64,
    /// Seconds a ban lasts.
    pub ban_duration_secs: u64,
    /// Networks ("192.0.2.0/24", "2001:db8::/32", or a single address) never counted or banned.
    pub ban_allow: Vec<String>,
    /// Logins remembered per account (`postern user history`); 0 = none.
    pub login_history_entries: u64,
    /// Shortest password `postern user add`/`passwd` accept, in characters; at least 8.
    pub password_min_length: u64,
    /// Lowest zxcvbn strength score (0-4) accepted for a new password.
    pub password_min_strength: u64,
    /// Absolute path of a breached-password list (`SHA1HEX:count` lines, sorted); "" = none.
    pub password_breached_sha1: String,
}

impl AuthConfig {
    /// `ban_allow` parsed; entries that do not parse (validation reports them) are skipped.
    pub fn ban_allow_networks(&self) -> Vec<ipnet::IpNet> {
        self.ban_allow
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect()
    }
}

/// A network in CIDR notation, or a single address (a /32 or /128).
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP network (such as 192.0.2.0/24) or address"))
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            credential_cache_ttl_secs: 300,
            credential_cache_entries: 10_000,
            ban_address_failures: 10,
            ban_account_failures: 30,
            ban_window_secs: 600,
            ban_duration_secs: 900,
            // As fail2ban's default ignoreip: local processes are never banned.
            ban_allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            login_history_entries: 20,
            password_min_length: 12,
            password_min_strength: 3,
            password_breached_sha1: String::new(),
        }
    }
}

/// What a sender on a block list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAction {
    /// 550 5.7.1 at the end of DATA.
    Reject,
    /// Delivered into the recipient's Junk mailbox.
    Junk,
}

/// `[filter]`: the statistical spam filter, sender lists and their verdict (daemon/filter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Off: no header, no lists, no Junk routing, no training.
    pub enabled: bool,
    /// Spam probability (0-1) at or above which MX mail goes to Junk.
    pub junk_threshold: f64,
    /// Spam probability at or above which MX mail is refused (550 5.7.1); 0 = never.
    pub reject_threshold: f64,
    /// What a block-list match does: "reject" or "junk".
    pub block_action: BlockAction,
    /// Senders always delivered (addresses, domains, /regular expressions/).
    pub allow: Vec<String>,
    /// Senders refused or sent to Junk (addresses, domains, /regular expressions/).
    pub block: Vec<String>,
    /// Spam and ham messages each that must be learned before scores count.
    pub min_training: u64,
    /// Tokens kept per database (the global one and each user's); older ones are pruned.
    pub max_tokens: u64,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            enabled: true,
            junk_threshold: 0.9,
            reject_threshold: 0.0,
            block_action: BlockAction::Reject,
            allow: Vec::new(),
            block: Vec::new(),
            min_training: 10,
            max_tokens: 150_000,
        }
    }
}

/// `[admin]`: who may reach the management listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Source networks allowed to connect to the metrics endpoint (and any later network
    /// admin listener); others are refused at accept.
    pub allowed_networks: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            allowed_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

/// `[dns]`: the one resolver every DNS question goes through (DESIGN.md 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Recursive resolvers to ask, "address" or "address:port"; empty = /etc/resolv.conf.
    pub nameservers: Vec<String>,
    /// Milliseconds one query waits for its answer.
    pub timeout_ms: u64,
    /// Retries of a query that timed out.
    pub attempts: u64,
    /// Validate DNSSEC (RFC 4035); answers that fail validation are temporary errors.
    pub dnssec_validation: bool,
    /// Absolute path of a file of DNSKEY records to trust instead of the root's; "" = root.
    pub trust_anchor: String,
    /// Answers kept in the cache; 0 = no cache.
    pub cache_entries: u64,
    /// Longest time an answer is kept, whatever its TTL.
    pub cache_max_ttl_secs: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout_ms: 5000,
            attempts: 2,
            dnssec_validation: true,
            trust_anchor: String::new(),
            cache_entries: 10_000,
            cache_max_ttl_secs: 3600,
        }
    }
}

impl AdminConfig {
    /// `allowed_networks` parsed; entries that do not parse (validation reports them) are
    /// skipped.
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        self.allowed_networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect()
    }
}

impl DnsConfig {
    /// `nameservers` parsed (port 53 when none is given); entries that do not parse
    /// (validation reports them) are skipped.
    pub fn nameserver_addrs(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|n| parse_nameserver(n).ok())
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or "[2001:db8::53]:5353".
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!("{text:?} is not a nameserver address (such as 192.0.2.53 or 127.0.0.1:5353)")
        })
}

/// `[dnsbl]`: DNS block lists (RFC 5782) asked about MX clients and the URL domains of MX
/// mail, weighed by the spam filter's combiner (daemon/filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblConfig {
    /// Lists of client IP addresses (DNSBL/RBL).
    pub client: Vec<DnsListConfig>,
    /// Lists of the registered domains of URLs in the body (SURBL/URIBL).
    pub uri: Vec<DnsListConfig>,
    /// Total weight at or above which the message goes to Junk; 0 = never.
    pub junk_weight: i64,
    /// Total weight at or above which the message is refused; 0 = never.
    pub reject_weight: i64,
    /// Milliseconds one list question may take; past it the list counts as not listing.
    pub timeout_ms: u64,
    /// Distinct URL domains (and addresses) of one message asked about.
    pub max_uri_domains: u64,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        DnsblConfig {
            client: Vec::new(),
            uri: Vec::new(),
            junk_weight: 1,
            reject_weight: 3,
            timeout_ms: 2000,
            max_uri_domains: 20,
        }
    }
}

impl DnsblConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Whether any list is configured (no list: no question is ever asked).
    pub fn any(&self) -> bool {
        !self.client.is_empty() || !self.uri.is_empty()
    }
}

/// One DNS block list of `[dnsbl]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsListConfig {
    /// The list's zone, such as "zen.spamhaus.org".
    pub zone: String,
    /// Added to the total when the list lists; negative for allow lists.
    #[serde(default = "default_list_weight")]
    pub weight: i64,
    /// Answers that count: "127.0.0.2" or "127.0.0.2-127.0.0.11"; empty = any in
    /// 127.0.0.0/8 but 127.255.255.0/24 (lists' error replies).
    #[serde(default)]
    pub codes: Vec<String>,
}

fn default_list_weight() -> i64 {
    1
}

/// `[sender_auth]`: SPF, DKIM, DMARC, ARC and iprev verification of mail received on MX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderAuthConfig {
    /// Verify MX mail and add Authentication-Results; false = neither.
    pub verify: bool,
    /// Apply the sender domain's DMARC policy (reject: 550 5.7.1; quarantine: Junk).
    pub dmarc_enforce: bool,
    /// From domains (and their subdomains) whose DMARC failures are not enforced.
    pub dmarc_exempt_domains: Vec<String>,
    /// Client networks whose DMARC failures are not enforced.
    pub dmarc_exempt_networks: Vec<String>,
}

impl Default for SenderAuthConfig {
    fn default() -> Self {
        SenderAuthConfig {
            verify: true,
            dmarc_enforce: true,
            dmarc_exempt_domains: Vec::new(),
            dmarc_exempt_networks: Vec::new(),
        }
    }
}

impl SenderAuthConfig {
    pub fn exempt_networks(&self) -> Vec<ipnet::IpNet> {
        self.dmarc_exempt_networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// io_uring where the kernel allows it, else portable.
    Auto,
    IoUring,
    Portable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// 0 = same as the effective worker count.
    pub shards: u64,
    /// Bytes.
    pub segment_size: u64,
    pub max_batch: u64,
    /// Log bytes between index checkpoints.
    pub checkpoint_bytes: u64,
    pub checkpoint_interval_secs: u64,
    /// 0 = compaction only on request.
    pub compact_interval_secs: u64,
    pub compact_dead_percent: u64,
    /// Bytes per second; 0 = unlimited.
    pub compact_rate: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Auto,
            shards: 0,
            segment_size: 67_108_864,
            max_batch: 512,
            checkpoint_bytes: 67_108_864,
            checkpoint_interval_secs: 600,
            compact_interval_secs: 300,
            compact_dead_percent: 50,
            compact_rate: 33_554_432,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// `None` = metrics endpoint disabled.
    pub bind: Option<SocketAddr>,
}

/// `[health]`: the storage gate fed by hwmond's health API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// hwmond's health API socket; `None` = no gate (mail is always accepted).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing filter directive list.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// One problem in a configuration file, with a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, schema or semantic problems; Display prints one `path:line:col: message` per line.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{}:{}:{}: {}",
            path.display(),
            p.line,
            p.column,
            p.message
        ));
    }
    out
}

impl Default for Config {
    /// The production defaults, as an empty file would give.
    fn default() -> Self {
        validate::build(raw::RawConfig::default(), "", Path::new("/"))
            .unwrap_or_else(|_| panic!("built-in defaults fail validation (a bug; see tests)"))
    }
}

impl Config {
    /// Reads and validates the file at `path`. Relative paths inside it resolve against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `origin` (used for messages and for resolving relative
    /// paths against `origin`'s directory).
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, origin)
    }

    /// The development profile (`posternd --dev`): data in `./postern-dev` relative to the
    /// current directory, hostname `localhost`, unprivileged loopback ports.
    pub fn dev() -> Config {
        // The embedded file is a compile-time constant checked by the tests, not input.
        Config::parse(DEV_TOML, Path::new("dev.toml"))
            .unwrap_or_else(|e| panic!("embedded dev.toml is invalid (a bug): {e}"))
    }

    pub fn data_dir(&self) -> &Path {
        &self.server.data_dir
    }

    /// `server.admin_socket`, or `<data_dir>/admin.sock`.
    pub fn admin_socket_path(&self) -> PathBuf {
        match &self.server.admin_socket {
            Some(p) => p.clone(),
            None => self.server.data_dir.join("admin.sock"),
        }
    }

    /// Where the self-signed certificate lives when none is configured.
    pub fn tls_dir(&self) -> PathBuf {
        self.server.data_dir.join("tls")
    }

    /// `server.workers`, with 0 meaning one per available CPU core (at least 1).
    pub fn effective_workers(&self) -> usize {
        if self.server.workers > 0 {
            return self.server.workers;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// `store.shards`, with 0 meaning the effective worker count.
    pub fn effective_shards(&self) -> usize {
        match usize::try_from(self.store.shards) {
            Ok(0) | Err(_) => self.effective_workers(),
            Ok(n) => n,
        }
    }

    /// All listeners of one kind, flattened.
    pub fn binds(&self, kind: ListenerKind) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| l.kind == kind)
            .flat_map(|l| l.bind.iter().copied())
            .collect()
    }

    /// This configuration as TOML in the file schema (paths as resolved).
    pub fn to_toml(&self) -> String {
        let raw = validate::unbuild(self);
        toml::to_string(&raw).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
