//! Sinks: where events and snapshots go (DESIGN.md 3.6). hwmon-ipmi fills this module with the
//! Prometheus metrics, e-mail, webhook and syslog sinks; the structured-log sink lives in
//! `crate::log_sink` and the health API in `crate::api`.
//!
//! The daemon owns every sink on one thread: `event` is called for each [`Event`] in order,
//! `snapshot` after every collector poll. Sinks that do slow I/O (SMTP, HTTP) hand the work
//! to their own thread and must not block the caller.

use serde::{Deserialize, Serialize};

use crate::model::{Event, Snapshot};

pub mod email;
pub mod metrics;
pub mod smtp;
pub mod syslog;
pub mod webhook;

pub use email::{EmailConfig, EmailSink};
pub use metrics::{MetricsConfig, MetricsSink};
pub use syslog::{SyslogConfig, SyslogSink};
pub use webhook::{WebhookConfig, WebhookSink};

/// A destination for events and snapshots.
pub trait Sink: Send {
    /// Stable name for logs (`log`, `metrics`, `email`, `webhook`, `syslog`).
    fn name(&self) -> &str;
    /// One event (a transition or a named collector event), with the model after it.
    fn event(&mut self, event: &Event, snapshot: &Snapshot);
    /// The whole model after a collector poll (for metrics). Default: nothing.
    fn snapshot(&mut self, _snapshot: &Snapshot) {}
}

/// The `[sinks]` section of hwmond's configuration. hwmon-ipmi adds the sub-sections
/// (`[sinks.metrics]`, `[sinks.email]`, `[sinks.webhook]`, `[sinks.syslog]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// `[sinks.metrics]`: Prometheus /metrics over HTTP.
    pub metrics: MetricsConfig,
    /// `[sinks.email]`: alert mail to the admin over SMTP.
    pub email: EmailConfig,
    /// `[sinks.webhook]`: HTTP POST of each event as JSON.
    pub webhook: WebhookConfig,
    /// `[sinks.syslog]`: RFC 5424 messages to /dev/log or a UDP collector.
    pub syslog: SyslogConfig,
}

/// Errors building sinks from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink}: {message}")]
    Config { sink: String, message: String },
    #[error("sink {sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
}

/// The sinks the configuration enables (besides the log sink, which the daemon always adds).
pub fn build(config: &SinksConfig) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut out: Vec<Box<dyn Sink>> = Vec::new();
    if config.metrics.enable {
        out.push(Box::new(MetricsSink::start(&config.metrics)?));
    }
    if config.email.enable {
        out.push(Box::new(EmailSink::start(&config.email)?));
    }
    if config.webhook.enable {
        out.push(Box::new(WebhookSink::start(&config.webhook)?));
    }
    if config.syslog.enable {
        out.push(Box::new(SyslogSink::start(&config.syslog)?));
    }
    Ok(out)
}

/// A value of `[sinks.<sink>]` that the sink refuses at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub sink: &'static str,
    pub key: &'static str,
    pub message: String,
}

/// The first problem of the enabled sinks' configuration: what [`build`] would refuse. The
/// configuration check runs this, so that `hwmond check-config` and `hwmond run` agree.
pub fn check(config: &SinksConfig) -> Result<(), Problem> {
    let problem = |sink: &'static str| {
        move |(key, message): (&'static str, String)| Problem { sink, key, message }
    };
    if config.metrics.enable {
        MetricsSink::check(&config.metrics).map_err(problem("metrics"))?;
    }
    if config.email.enable {
        EmailSink::check(&config.email).map_err(problem("email"))?;
    }
    if config.webhook.enable {
        WebhookSink::check(&config.webhook).map_err(problem("webhook"))?;
    }
    if config.syslog.enable {
        SyslogSink::check(&config.syslog).map_err(problem("syslog"))?;
    }
    Ok(())
}

pub(crate) fn config_error(sink: &str, message: impl Into<String>) -> SinkError {
    SinkError::Config {
        sink: sink.into(),
        message: message.into(),
    }
}

/// Whether `addr` is on loopback: the metrics listener and the syslog UDP target are local
/// by design (DESIGN.md 6: nothing listens beyond what the appliance needs).
pub(crate) fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, REFERENCE_TOML};

    /// hwmond.reference.toml documents [ipmi] and [sinks.*] with their defaults.
    #[test]
    fn reference_sections_are_the_defaults() {
        let c = Config::parse(
            REFERENCE_TOML,
            std::path::Path::new("/etc/postern/hwmond.toml"),
        )
        .unwrap();
        assert_eq!(c.ipmi, crate::collectors::ipmi::IpmiConfig::default());
        assert_eq!(c.sinks, super::SinksConfig::default());
    }
}
