//! The file layer: exactly the TOML schema, every key with its default, unknown keys rejected.
//!
//! Values that need checking (addresses, paths) stay strings here; `crate::validate` turns this
//! into the typed [`crate::Config`] and reports every problem with its position in the file.

use serde::{Deserialize, Serialize};

use crate::{ListenerKind, TlsVersion};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub smtp: crate::SmtpConfig,
    pub imap: crate::ImapConfig,
    pub pop3: crate::Pop3Config,
    pub store: crate::StoreConfig,
    pub metrics: RawMetrics,
    pub log: crate::LogConfig,
    pub health: RawHealth,
    pub auth: crate::AuthConfig,
    pub filter: crate::FilterConfig,
    pub admin: crate::AdminConfig,
    pub dns: crate::DnsConfig,
    pub sender_auth: crate::SenderAuthConfig,
    pub dnsbl: crate::DnsblConfig,
    // Last: TOML serialisation puts arrays of tables after plain tables anyway.
    #[serde(rename = "listener")]
    pub listeners: Vec<RawListener>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            server: RawServer::default(),
            tls: RawTls::default(),
            smtp: crate::SmtpConfig::default(),
            imap: crate::ImapConfig::default(),
            pop3: crate::Pop3Config::default(),
            store: crate::StoreConfig::default(),
            metrics: RawMetrics::default(),
            log: crate::LogConfig::default(),
            health: RawHealth::default(),
            auth: crate::AuthConfig::default(),
            filter: crate::FilterConfig::default(),
            admin: crate::AdminConfig::default(),
            dns: crate::DnsConfig::default(),
            sender_auth: crate::SenderAuthConfig::default(),
            dnsbl: crate::DnsblConfig::default(),
            listeners: default_listeners(),
        }
    }
}

/// The production listeners used when the file has no `[[listener]]` at all.
pub(crate) fn default_listeners() -> Vec<RawListener> {
    vec![
        RawListener {
            kind: ListenerKind::Mx,
            bind: vec!["0.0.0.0:25".into()],
        },
        RawListener {
            kind: ListenerKind::Submission,
            bind: vec!["0.0.0.0:587".into()],
        },
        RawListener {
            kind: ListenerKind::Submissions,
            bind: vec!["0.0.0.0:465".into()],
        },
        RawListener {
            kind: ListenerKind::Imap,
            bind: vec!["0.0.0.0:143".into()],
        },
        RawListener {
            kind: ListenerKind::Imaps,
            bind: vec!["0.0.0.0:993".into()],
        },
        RawListener {
            kind: ListenerKind::Pop3,
            bind: vec!["0.0.0.0:110".into()],
        },
        RawListener {
            kind: ListenerKind::Pop3s,
            bind: vec!["0.0.0.0:995".into()],
        },
    ]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub hostname: String,
    pub data_dir: String,
    pub workers: u64,
    pub admin_socket: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            hostname: String::new(),
            data_dir: "/var/lib/postern".into(),
            workers: 0,
            admin_socket: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTls {
    pub certificate: String,
    pub private_key: String,
    pub min_version: TlsVersion,
    pub reload_check_secs: u64,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            certificate: String::new(),
            private_key: String::new(),
            min_version: TlsVersion::V1_2,
            reload_check_secs: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub kind: ListenerKind,
    pub bind: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHealth {
    pub socket: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMetrics {
    pub bind: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            bind: "127.0.0.1:9187".into(),
        }
    }
}
