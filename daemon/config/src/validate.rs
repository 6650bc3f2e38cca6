//! Parsing with positions, semantic validation (all problems collected) and conversion from the
//! file layer to the typed [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::raw::{RawConfig, RawHealth, RawListener, RawMetrics, RawServer, RawTls};
use crate::{Config, ConfigError, ListenerConfig, MetricsConfig, Problem, ServerConfig, TlsConfig};

/// Hard upper bound on worker threads and store shards: far above any appliance, low enough
/// that a typo (an extra zero or three) is caught before the daemon spawns thousands of threads.
const MAX_WORKERS: u64 = 1024;
/// The longest greeting delay accepted (`[smtp] greeting_delay_ms`).
const MAX_GREETING_DELAY_MS: u64 = 30_000;
const MAX_CREDENTIAL_CACHE_TTL_SECS: u64 = 86_400;
const MAX_CREDENTIAL_CACHE_ENTRIES: u64 = 1_000_000;
const MAX_BAN_DURATION_SECS: u64 = 604_800;
const MAX_LOGIN_HISTORY_ENTRIES: u64 = 1000;

pub(crate) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: origin.to_path_buf(),
        problems,
    };
    // Syntax first, with recovery, so that every syntax error is reported at once.
    let (_, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let problems = errors
            .iter()
            .map(|e| problem_at(text, e.span(), e.message()))
            .collect();
        return Err(invalid(problems));
    }
    // Unknown keys, all of them, checked against the schema itself (the serialized defaults).
    let unknown = unknown_keys(text);
    if !unknown.is_empty() {
        return Err(invalid(unknown));
    }
    // Wrong types and bad enum values. serde stops at the first one.
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| invalid(vec![problem_at(text, e.span(), e.message())]))?;
    build(raw, text, origin)
}

/// Every key in `text` that the schema does not have, at the key's position.
fn unknown_keys(text: &str) -> Vec<Problem> {
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    let Ok(schema) = toml::Value::try_from(RawConfig::default()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let toml::Value::Table(schema) = &schema {
        check_table(text, doc.get_ref(), schema, "", &mut out);
    }
    out.sort_by_key(|p| (p.line, p.column));
    out
}

fn check_table(
    text: &str,
    doc: &DeTable<'_>,
    schema: &toml::Table,
    section: &str,
    out: &mut Vec<Problem>,
) {
    for (key, value) in doc.iter() {
        let name: &str = key.get_ref();
        let Some(expected) = schema.get(name) else {
            let known: Vec<&str> = schema.keys().map(String::as_str).collect();
            let place = if section.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{section}]")
            };
            let message = format!(
                "unknown key `{name}` {place}; expected one of: {}",
                known.join(", ")
            );
            out.push(problem_at(text, Some(key.span()), &message));
            continue;
        };
        let sub = if section.is_empty() {
            name.to_string()
        } else {
            format!("{section}.{name}")
        };
        match (expected, value.get_ref()) {
            (toml::Value::Table(s), DeValue::Table(t)) => check_table(text, t, s, &sub, out),
            (toml::Value::Array(s), DeValue::Array(items)) => {
                if let Some(toml::Value::Table(s)) = s.first() {
                    for item in items.iter() {
                        if let DeValue::Table(t) = item.get_ref() {
                            check_table(text, t, s, &sub, out);
                        }
                    }
                }
            }
            // Type mismatches are left to serde, which names the expected type.
            _ => {}
        }
    }
}

/// Validates `raw` (taken from `text`, read from `origin`) and builds the typed configuration.
pub(crate) fn build(raw: RawConfig, text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text)
        .map(|d| d.into_inner())
        .unwrap_or_default();
    let mut v = Validator {
        text,
        doc: &doc,
        problems: Vec::new(),
    };
    let base = origin.parent().unwrap_or(Path::new(""));
    let config = v.build(raw, base);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError::Invalid {
            path: origin.to_path_buf(),
            problems: v.problems,
        })
    }
}

/// The file-layer view of a typed configuration (for `Config::to_toml`).
pub(crate) fn unbuild(c: &Config) -> RawConfig {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    RawConfig {
        server: RawServer {
            hostname: c.server.hostname.clone(),
            data_dir: c.server.data_dir.display().to_string(),
            workers: c.server.workers as u64,
            admin_socket: path(&c.server.admin_socket),
        },
        tls: RawTls {
            certificate: path(&c.tls.certificate),
            private_key: path(&c.tls.private_key),
            min_version: c.tls.min_version,
            reload_check_secs: c.tls.reload_check_secs,
        },
        smtp: c.smtp.clone(),
        imap: c.imap.clone(),
        pop3: c.pop3.clone(),
        store: c.store.clone(),
        metrics: RawMetrics {
            bind: c.metrics.bind.map(|a| a.to_string()).unwrap_or_default(),
        },
        log: c.log.clone(),
        health: RawHealth {
            socket: path(&c.health.socket),
        },
        auth: c.auth.clone(),
        filter: c.filter.clone(),
        admin: c.admin.clone(),
        dns: c.dns.clone(),
        sender_auth: c.sender_auth.clone(),
        dnsbl: c.dnsbl.clone(),
        listeners: c
            .listeners
            .iter()
            .map(|l| RawListener {
                kind: l.kind,
                bind: l.bind.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
    }
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}
use Seg::{Idx, Key};

struct Validator<'a> {
    text: &'a str,
    doc: &'a DeTable<'a>,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    /// Records a problem at the value found at `path`, or at the nearest enclosing item present
    /// in the file (a default value has no position of its own), or at 1:1.
    fn error(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let span = self.span_of(path);
        let message = message.into();
        self.problems.push(problem_at(self.text, span, &message));
    }

    fn span_of(&self, path: &[Seg<'_>]) -> Option<std::ops::Range<usize>> {
        let mut best = None;
        let mut table: Option<&DeTable<'_>> = Some(self.doc);
        let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for seg in path {
            let found = match (*seg, table, array) {
                (Key(k), Some(t), _) => t.get(k),
                (Idx(i), _, Some(a)) => a.get(i),
                _ => None,
            };
            let Some(found) = found else { break };
            best = Some(found.span());
            table = found.get_ref().as_table();
            array = found.get_ref().as_array().map(|a| a.as_ref());
        }
        best
    }

    fn build(&mut self, raw: RawConfig, base: &Path) -> Config {
        let server = self.server(raw.server, base);
        let tls = self.tls(raw.tls, base);
        let mut seen: Vec<(SocketAddr, String, Vec<Seg<'static>>)> = Vec::new();
        let listeners = self.listeners(raw.listeners, &mut seen);
        let metrics = self.metrics(raw.metrics, &mut seen);
        self.smtp(&raw.smtp);
        self.imap(&raw.imap);
        self.pop3(&raw.pop3);
        self.store(&raw.store);
        self.log(&raw.log);
        self.auth(&raw.auth);
        self.filter(&raw.filter);
        self.admin(&raw.admin);
        self.dns(&raw.dns);
        self.sender_auth(&raw.sender_auth);
        self.dnsbl(&raw.dnsbl);
        if raw.dnsbl.any() && !raw.filter.enabled {
            // The lists' weights are weighed by the spam filter's combiner: without it they
            // would be asked and then ignored.
            self.error(
                &[Key("dnsbl")],
                "DNS block lists need the spam filter: set [filter] enabled = true, or remove the lists",
            );
        }
        Config {
            server,
            tls,
            listeners,
            smtp: raw.smtp,
            imap: raw.imap,
            pop3: raw.pop3,
            store: raw.store,
            metrics,
            log: raw.log,
            health: crate::HealthConfig {
                socket: optional_path(base, &raw.health.socket),
            },
            auth: raw.auth,
            filter: raw.filter,
            admin: raw.admin,
            dns: raw.dns,
            sender_auth: raw.sender_auth,
            dnsbl: raw.dnsbl,
        }
    }

    fn dnsbl(&mut self, d: &crate::DnsblConfig) {
        let at = |k| [Key("dnsbl"), Key(k)];
        for (key, lists) in [("client", &d.client), ("uri", &d.uri)] {
            let mut zones: Vec<String> = Vec::new();
            for (i, list) in lists.iter().enumerate() {
                let here = |k| [Key("dnsbl"), Key(key), Idx(i), Key(k)];
                if let Err(why) = postern_filter::dnsbl::check_zone(&list.zone) {
                    self.error(&here("zone"), why);
                }
                let zone = list.zone.trim_end_matches('.').to_ascii_lowercase();
                if zones.contains(&zone) {
                    self.error(
                        &here("zone"),
                        format!("zone {zone:?} is listed twice in dnsbl.{key}"),
                    );
                }
                zones.push(zone);
                if !(-100..=100).contains(&list.weight) || list.weight == 0 {
                    self.error(
                        &here("weight"),
                        format!(
                            "weight = {} must be between -100 and 100, not 0 (negative for allow lists)",
                            list.weight
                        ),
                    );
                }
                for (j, code) in list.codes.iter().enumerate() {
                    if let Err(why) = postern_filter::dnsbl::parse_code(code) {
                        self.error(&[Key("dnsbl"), Key(key), Idx(i), Key("codes"), Idx(j)], why);
                    }
                }
            }
        }
        for (key, value) in [
            ("junk_weight", d.junk_weight),
            ("reject_weight", d.reject_weight),
        ] {
            if !(0..=1000).contains(&value) {
                self.error(
                    &at(key),
                    format!("{key} = {value} must be between 0 (never) and 1000"),
                );
            }
        }
        if d.junk_weight > 0 && d.reject_weight > 0 && d.reject_weight < d.junk_weight {
            self.error(
                &at("reject_weight"),
                format!(
                    "reject_weight = {} is below junk_weight = {}",
                    d.reject_weight, d.junk_weight
                ),
            );
        }
        // RFC 5321 4.5.3.2.6: the client waits 10 minutes for the reply to the end of data;
        // the questions are asked together, so one timeout bounds them.
        if !(100..=30_000).contains(&d.timeout_ms) {
            self.error(
                &at("timeout_ms"),
                format!(
                    "timeout_ms = {} must be between 100 and 30000",
                    d.timeout_ms
                ),
            );
        }
        if !(1..=100).contains(&d.max_uri_domains) {
            self.error(
                &at("max_uri_domains"),
                format!(
                    "max_uri_domains = {} must be between 1 and 100",
                    d.max_uri_domains
                ),
            );
        }
    }

    fn filter(&mut self, f: &crate::FilterConfig) {
        let at = |k| [Key("filter"), Key(k)];
        if !(f.junk_threshold > 0.0 && f.junk_threshold <= 1.0) {
            self.error(
                &at("junk_threshold"),
                format!(
                    "junk_threshold = {} must be above 0 and at most 1",
                    f.junk_threshold
                ),
            );
        }
        if f.reject_threshold != 0.0
            && !(f.reject_threshold >= f.junk_threshold && f.reject_threshold <= 1.0)
        {
            self.error(
                &at("reject_threshold"),
                format!(
                    "reject_threshold = {} must be 0 (never) or between junk_threshold ({}) and 1",
                    f.reject_threshold, f.junk_threshold
                ),
            );
        }
        for (key, list) in [("allow", &f.allow), ("block", &f.block)] {
            for (i, entry) in list.iter().enumerate() {
                if let Err(why) = postern_filter::Entry::parse(entry) {
                    self.error(&[Key("filter"), Key(key), Idx(i)], why);
                }
            }
        }
        if !(1..=100_000).contains(&f.min_training) {
            self.error(
                &at("min_training"),
                format!(
                    "min_training = {} must be between 1 and 100000",
                    f.min_training
                ),
            );
        }
        if !(1000..=10_000_000).contains(&f.max_tokens) {
            self.error(
                &at("max_tokens"),
                format!(
                    "max_tokens = {} must be between 1000 and 10000000",
                    f.max_tokens
                ),
            );
        }
    }

    fn dns(&mut self, s: &crate::DnsConfig) {
        let at = |k| [Key("dns"), Key(k)];
        for (i, server) in s.nameservers.iter().enumerate() {
            if let Err(why) = crate::parse_nameserver(server) {
                self.error(&[Key("dns"), Key("nameservers"), Idx(i)], why);
            }
        }
        // A query that may wait a minute holds the SMTP client at the end of DATA longer
        // than RFC 5321 4.5.3.2.6 lets it wait for the reply (10 minutes, over all queries).
        if !(100..=60_000).contains(&s.timeout_ms) {
            self.error(
                &at("timeout_ms"),
                format!(
                    "timeout_ms = {} must be between 100 and 60000",
                    s.timeout_ms
                ),
            );
        }
        if s.attempts > 5 {
            self.error(
                &at("attempts"),
                format!("attempts = {} is above 5", s.attempts),
            );
        }
        if !s.trust_anchor.is_empty() && !Path::new(&s.trust_anchor).is_absolute() {
            self.error(
                &at("trust_anchor"),
                format!("trust_anchor {:?} must be an absolute path", s.trust_anchor),
            );
        }
        if s.cache_entries > 1_000_000 {
            self.error(
                &at("cache_entries"),
                format!("cache_entries = {} is above 1000000", s.cache_entries),
            );
        }
    }

    fn admin(&mut self, a: &crate::AdminConfig) {
        for (i, network) in a.allowed_networks.iter().enumerate() {
            if let Err(why) = crate::parse_network(network) {
                self.error(&[Key("admin"), Key("allowed_networks"), Idx(i)], why);
            }
        }
    }

    fn sender_auth(&mut self, s: &crate::SenderAuthConfig) {
        for (i, domain) in s.dmarc_exempt_domains.iter().enumerate() {
            if let Err(why) = check_hostname(domain.trim_end_matches('.')) {
                self.error(
                    &[Key("sender_auth"), Key("dmarc_exempt_domains"), Idx(i)],
                    format!("invalid domain {domain:?}: {why}"),
                );
            }
        }
        for (i, network) in s.dmarc_exempt_networks.iter().enumerate() {
            if let Err(why) = crate::parse_network(network) {
                self.error(
                    &[Key("sender_auth"), Key("dmarc_exempt_networks"), Idx(i)],
                    why,
                );
            }
        }
    }

    fn server(&mut self, s: RawServer, base: &Path) -> ServerConfig {
        let at = |k| [Key("server"), Key(k)];
        let hostname = if s.hostname.is_empty() {
            system_hostname()
        } else {
            if let Err(why) = check_hostname(&s.hostname) {
                self.error(
                    &at("hostname"),
                    format!("invalid hostname {:?}: {why}", s.hostname),
                );
            }
            s.hostname
        };
        if s.data_dir.is_empty() {
            self.error(&at("data_dir"), "data_dir must not be empty");
        }
        if s.workers > MAX_WORKERS {
            self.error(
                &at("workers"),
                format!(
                    "workers = {} is above the maximum of {MAX_WORKERS} (0 = one per CPU core)",
                    s.workers
                ),
            );
        }
        ServerConfig {
            hostname,
            data_dir: resolve(base, &s.data_dir),
            workers: usize::try_from(s.workers).unwrap_or(usize::MAX),
            admin_socket: optional_path(base, &s.admin_socket),
        }
    }

    fn tls(&mut self, t: RawTls, base: &Path) -> TlsConfig {
        let at = |k| [Key("tls"), Key(k)];
        match (t.certificate.is_empty(), t.private_key.is_empty()) {
            (false, true) => self.error(
                &at("certificate"),
                "certificate is set but private_key is not; set both, or neither for a \
                 self-signed certificate",
            ),
            (true, false) => self.error(
                &at("private_key"),
                "private_key is set but certificate is not; set both, or neither for a \
                 self-signed certificate",
            ),
            _ => {}
        }
        TlsConfig {
            certificate: optional_path(base, &t.certificate),
            private_key: optional_path(base, &t.private_key),
            min_version: t.min_version,
            reload_check_secs: t.reload_check_secs,
        }
    }

    fn listeners(
        &mut self,
        raw: Vec<RawListener>,
        seen: &mut Vec<(SocketAddr, String, Vec<Seg<'static>>)>,
    ) -> Vec<ListenerConfig> {
        if raw.is_empty() {
            self.error(
                &[Key("listener")],
                "at least one [[listener]] is required (omit the key entirely for the defaults)",
            );
        }
        let mut out = Vec::with_capacity(raw.len());
        for (i, l) in raw.into_iter().enumerate() {
            if l.bind.is_empty() {
                self.error(
                    &[Key("listener"), Idx(i), Key("bind")],
                    format!("listener #{} ({}) has no bind address", i + 1, l.kind),
                );
            }
            let mut bind = Vec::with_capacity(l.bind.len());
            for (j, text) in l.bind.iter().enumerate() {
                let path = vec![Key("listener"), Idx(i), Key("bind"), Idx(j)];
                let who = format!("listener #{} ({})", i + 1, l.kind);
                if let Some(addr) = self.bind_addr(text, &path, who, seen) {
                    bind.push(addr);
                }
            }
            out.push(ListenerConfig { kind: l.kind, bind });
        }
        out
    }

    fn metrics(
        &mut self,
        m: RawMetrics,
        seen: &mut Vec<(SocketAddr, String, Vec<Seg<'static>>)>,
    ) -> MetricsConfig {
        if m.bind.is_empty() {
            return MetricsConfig { bind: None };
        }
        let path = vec![Key("metrics"), Key("bind")];
        MetricsConfig {
            bind: self.bind_addr(&m.bind, &path, "metrics".into(), seen),
        }
    }

    /// Parses one bind address and checks it against those already seen: two sockets on the
    /// same address, or a specific address and the wildcard of its family on the same port,
    /// cannot both be bound.
    fn bind_addr(
        &mut self,
        text: &str,
        path: &[Seg<'static>],
        who: String,
        seen: &mut Vec<(SocketAddr, String, Vec<Seg<'static>>)>,
    ) -> Option<SocketAddr> {
        let addr: SocketAddr = match text.parse() {
            Ok(a) => a,
            Err(_) => {
                self.error(
                    path,
                    format!(
                        "invalid bind address {text:?}: expected IP:port, such as \
                         \"0.0.0.0:25\" or \"[::]:25\""
                    ),
                );
                return None;
            }
        };
        if addr.port() == 0 {
            self.error(path, format!("bind address {text:?} has port 0"));
            return None;
        }
        let clash = seen.iter().find(|(other, _, _)| {
            other.port() == addr.port()
                && other.is_ipv4() == addr.is_ipv4()
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((other, other_who, _)) = clash {
            let msg = if *other == addr {
                format!("duplicate bind address {addr}: already used by {other_who}")
            } else {
                format!("bind address {addr} overlaps {other} used by {other_who}")
            };
            self.error(path, msg);
        }
        seen.push((addr, who, path.to_vec()));
        Some(addr)
    }

    /// Every listed key of `section` must be at least 1.
    fn at_least_one(&mut self, section: &'static str, keys: &[(&'static str, u64)]) {
        for &(key, value) in keys {
            if value == 0 {
                self.error(
                    &[Key(section), Key(key)],
                    format!("{key} must be at least 1"),
                );
            }
        }
    }

    /// A per-IP connection limit above the section's total could never apply.
    fn per_ip_within_total(&mut self, section: &'static str, total: u64, per_ip: u64) {
        self.allowance_within_total(section, "max_connections_per_ip", total, per_ip);
    }

    fn allowance_within_total(
        &mut self,
        section: &'static str,
        key: &'static str,
        total: u64,
        per_ip: u64,
    ) {
        if per_ip > total {
            self.error(
                &[Key(section), Key(key)],
                format!("{key} = {per_ip} exceeds max_connections = {total}"),
            );
        }
    }

    fn smtp(&mut self, s: &crate::SmtpConfig) {
        let at = |k| [Key("smtp"), Key(k)];
        // RFC 5321 4.5.3.1.7: a server must accept messages of at least 64K octets.
        if s.max_message_size < 65_536 {
            self.error(
                &at("max_message_size"),
                format!(
                    "max_message_size = {} is below 65536 octets, the minimum of RFC 5321 4.5.3.1.7",
                    s.max_message_size
                ),
            );
        }
        // RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted.
        if s.max_recipients < 100 {
            self.error(
                &at("max_recipients"),
                format!(
                    "max_recipients = {} is below 100, the minimum of RFC 5321 4.5.3.1.8",
                    s.max_recipients
                ),
            );
        }
        // RFC 5321 4.5.3.1.4: command lines of 512 octets including CRLF must be accepted.
        if s.max_command_line < 512 {
            self.error(
                &at("max_command_line"),
                format!(
                    "max_command_line = {} is below 512 octets, the minimum of RFC 5321 4.5.3.1.4",
                    s.max_command_line
                ),
            );
        }
        // RFC 5321 4.5.3.1.6: text lines of 1000 octets including CRLF must be accepted.
        if s.max_data_line < 1000 {
            self.error(
                &at("max_data_line"),
                format!(
                    "max_data_line = {} is below 1000 octets, the minimum of RFC 5321 4.5.3.1.6",
                    s.max_data_line
                ),
            );
        }
        self.at_least_one(
            "smtp",
            &[
                ("max_commands", s.max_commands),
                ("max_errors", s.max_errors),
                ("max_connections", s.max_connections),
                ("max_connections_per_ip", s.max_connections_per_ip),
                (
                    "max_submission_connections_per_ip",
                    s.max_submission_connections_per_ip,
                ),
                ("timeout_command_secs", s.timeout_command_secs),
                ("timeout_data_secs", s.timeout_data_secs),
                (
                    "submission_recipients_per_message",
                    s.submission_recipients_per_message,
                ),
            ],
        );
        // The per-transaction limit of every listener already stops RCPT at max_recipients;
        // a submission limit above it could never apply.
        if s.submission_recipients_per_message > s.max_recipients {
            self.error(
                &at("submission_recipients_per_message"),
                format!(
                    "submission_recipients_per_message = {} exceeds max_recipients = {}",
                    s.submission_recipients_per_message, s.max_recipients
                ),
            );
        }
        self.per_ip_within_total("smtp", s.max_connections, s.max_connections_per_ip);
        // RFC 5321 4.5.3.2.1: clients wait 5 minutes for the greeting; a delay near that
        // would lose mail, and more than a few seconds only slows every sender.
        if s.greeting_delay_ms > MAX_GREETING_DELAY_MS {
            self.error(
                &at("greeting_delay_ms"),
                format!(
                    "greeting_delay_ms = {} exceeds {MAX_GREETING_DELAY_MS}",
                    s.greeting_delay_ms
                ),
            );
        }
        self.allowance_within_total(
            "smtp",
            "max_submission_connections_per_ip",
            s.max_connections,
            s.max_submission_connections_per_ip,
        );
    }

    fn imap(&mut self, s: &crate::ImapConfig) {
        let at = |k| [Key("imap"), Key(k)];
        // RFC 9051 4: a server should accept command lines of at least 8000 octets.
        if s.max_command_line < 8000 {
            self.error(
                &at("max_command_line"),
                format!(
                    "max_command_line = {} is below 8000 octets, the minimum RFC 9051 4 recommends",
                    s.max_command_line
                ),
            );
        }
        // RFC 9051 5.4: the autologout timer must be at least 30 minutes.
        if s.timeout_idle_secs < 1800 {
            self.error(
                &at("timeout_idle_secs"),
                format!(
                    "timeout_idle_secs = {} is below 1800, the minimum of RFC 9051 5.4",
                    s.timeout_idle_secs
                ),
            );
        }
        self.at_least_one(
            "imap",
            &[
                ("max_literal_size", s.max_literal_size),
                ("timeout_login_secs", s.timeout_login_secs),
                ("max_errors", s.max_errors),
                ("max_connections", s.max_connections),
                ("max_connections_per_ip", s.max_connections_per_ip),
            ],
        );
        self.per_ip_within_total("imap", s.max_connections, s.max_connections_per_ip);
    }

    fn pop3(&mut self, s: &crate::Pop3Config) {
        let at = |k| [Key("pop3"), Key(k)];
        // RFC 2449 4: commands may be up to 255 octets, CRLF included.
        if s.max_command_line < 255 {
            self.error(
                &at("max_command_line"),
                format!(
                    "max_command_line = {} is below 255 octets, the minimum of RFC 2449 4",
                    s.max_command_line
                ),
            );
        }
        // RFC 1939 3: an inactivity autologout timer must be at least 10 minutes.
        if s.timeout_secs < 600 {
            self.error(
                &at("timeout_secs"),
                format!(
                    "timeout_secs = {} is below 600, the minimum of RFC 1939 3",
                    s.timeout_secs
                ),
            );
        }
        self.at_least_one(
            "pop3",
            &[
                ("timeout_login_secs", s.timeout_login_secs),
                ("max_errors", s.max_errors),
                ("max_connections", s.max_connections),
                ("max_connections_per_ip", s.max_connections_per_ip),
            ],
        );
        self.per_ip_within_total("pop3", s.max_connections, s.max_connections_per_ip);
    }

    fn auth(&mut self, s: &crate::AuthConfig) {
        let at = |k| [Key("auth"), Key(k)];
        // Clients reconnect within minutes, so a longer TTL saves no argon2 runs worth having;
        // it would only keep proofs of a password in memory longer.
        if s.credential_cache_ttl_secs > MAX_CREDENTIAL_CACHE_TTL_SECS {
            self.error(
                &at("credential_cache_ttl_secs"),
                format!(
                    "credential_cache_ttl_secs = {} is above {MAX_CREDENTIAL_CACHE_TTL_SECS} (a day)",
                    s.credential_cache_ttl_secs
                ),
            );
        }
        // Each entry is about 100 bytes: the bound keeps the cache's memory at ~100 MB.
        if s.credential_cache_entries > MAX_CREDENTIAL_CACHE_ENTRIES {
            self.error(
                &at("credential_cache_entries"),
                format!(
                    "credential_cache_entries = {} is above {MAX_CREDENTIAL_CACHE_ENTRIES}",
                    s.credential_cache_entries
                ),
            );
        }
        for (i, network) in s.ban_allow.iter().enumerate() {
            if let Err(why) = crate::parse_network(network) {
                self.error(&[Key("auth"), Key("ban_allow"), Idx(i)], why);
            }
        }
        // A window or a ban of zero seconds would count nothing or ban nobody while the
        // thresholds say otherwise; a ban over a week is a block list's job.
        let bans_on = s.ban_address_failures > 0 || s.ban_account_failures > 0;
        if bans_on && s.ban_window_secs == 0 {
            self.error(&at("ban_window_secs"), "ban_window_secs must be at least 1");
        }
        if bans_on && !(1..=MAX_BAN_DURATION_SECS).contains(&s.ban_duration_secs) {
            self.error(
                &at("ban_duration_secs"),
                format!(
                    "ban_duration_secs = {} must be between 1 and {MAX_BAN_DURATION_SECS} (a week)",
                    s.ban_duration_secs
                ),
            );
        }
        if s.ban_window_secs > MAX_BAN_DURATION_SECS {
            self.error(
                &at("ban_window_secs"),
                format!(
                    "ban_window_secs = {} is above {MAX_BAN_DURATION_SECS} (a week)",
                    s.ban_window_secs
                ),
            );
        }
        // 8: the floor every stored password obeys (postern-accounts MIN_PASSWORD_CHARS,
        // NIST SP 800-63B); 1024 characters is more than any passphrase needs.
        if !(8..=1024).contains(&s.password_min_length) {
            self.error(
                &at("password_min_length"),
                format!(
                    "password_min_length = {} must be between 8 and 1024",
                    s.password_min_length
                ),
            );
        }
        if s.password_min_strength > 4 {
            self.error(
                &at("password_min_strength"),
                format!(
                    "password_min_strength = {} must be a zxcvbn score, 0 to 4",
                    s.password_min_strength
                ),
            );
        }
        // The CLI runs from any directory: a relative path would name different files.
        if !s.password_breached_sha1.is_empty()
            && !std::path::Path::new(&s.password_breached_sha1).is_absolute()
        {
            self.error(
                &at("password_breached_sha1"),
                format!(
                    "password_breached_sha1 = {:?} must be an absolute path",
                    s.password_breached_sha1
                ),
            );
        }
        // Each entry is about 100 bytes per account.
        if s.login_history_entries > MAX_LOGIN_HISTORY_ENTRIES {
            self.error(
                &at("login_history_entries"),
                format!(
                    "login_history_entries = {} is above {MAX_LOGIN_HISTORY_ENTRIES}",
                    s.login_history_entries
                ),
            );
        }
    }

    fn store(&mut self, s: &crate::StoreConfig) {
        let at = |k| [Key("store"), Key(k)];
        if s.shards > MAX_WORKERS {
            self.error(
                &at("shards"),
                format!(
                    "shards = {} is above the maximum of {MAX_WORKERS} (0 = same as workers)",
                    s.shards
                ),
            );
        }
        // Segments are written with page-aligned I/O; below 1 MiB the per-segment overhead
        // dominates.
        if s.segment_size < 1 << 20 || !s.segment_size.is_multiple_of(4096) {
            self.error(
                &at("segment_size"),
                format!(
                    "segment_size = {} must be at least 1048576 bytes and a multiple of 4096",
                    s.segment_size
                ),
            );
        }
        if s.max_batch == 0 || s.max_batch > 65_536 {
            self.error(
                &at("max_batch"),
                format!("max_batch = {} must be between 1 and 65536", s.max_batch),
            );
        }
        if s.checkpoint_bytes < 1 << 20 {
            self.error(
                &at("checkpoint_bytes"),
                format!(
                    "checkpoint_bytes = {} must be at least 1048576",
                    s.checkpoint_bytes
                ),
            );
        }
        if !(10..=86_400).contains(&s.checkpoint_interval_secs) {
            self.error(
                &at("checkpoint_interval_secs"),
                format!(
                    "checkpoint_interval_secs = {} must be between 10 and 86400",
                    s.checkpoint_interval_secs
                ),
            );
        }
        if s.compact_interval_secs > 86_400 {
            self.error(
                &at("compact_interval_secs"),
                format!(
                    "compact_interval_secs = {} must be at most 86400 (0 = only on request)",
                    s.compact_interval_secs
                ),
            );
        }
        if !(1..=100).contains(&s.compact_dead_percent) {
            self.error(
                &at("compact_dead_percent"),
                format!(
                    "compact_dead_percent = {} must be between 1 and 100",
                    s.compact_dead_percent
                ),
            );
        }
    }

    fn log(&mut self, l: &crate::LogConfig) {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let level = l.level.trim();
        let directive = level.contains('=') || level.contains(',');
        if level.is_empty()
            || (!directive && !LEVELS.contains(&level.to_ascii_lowercase().as_str()))
        {
            self.error(
                &[Key("log"), Key("level")],
                format!(
                    "invalid log level {:?}: expected one of off, error, warn, info, debug, \
                     trace, or a filter such as \"info,postern_smtp=debug\"",
                    l.level
                ),
            );
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn optional_path(base: &Path, p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| resolve(base, p))
}

/// RFC 1123 2.1 / RFC 952 host name syntax: dot-separated labels of letters, digits and
/// hyphens, 1-63 octets each, no hyphen at either end, 253 octets in all.
fn check_hostname(h: &str) -> Result<(), &'static str> {
    if h.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with a hyphen");
        }
    }
    Ok(())
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| check_hostname(s).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Converts a byte span into a 1-based line and column (columns count characters).
fn problem_at(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> Problem {
    let (line, column) = match span {
        Some(span) => line_col(text, span.start),
        None => (1, 1),
    };
    Problem {
        line,
        column,
        message: message.trim().to_string(),
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
