//! Sinks: where events and snapshots go (DESIGN.md 3.6). hwmon-ipmi fills this module with the
//! Prometheus metrics, e-mail, webhook and syslog sinks; the structured-log sink lives in
//! `crate::log_sink` and the health API in `crate::api`.
//!
//! The daemon owns every sink on one thread: `event` is called for each [`Event`] in order,
//! `snapshot` after every collector poll. Sinks that do slow I/O (SMTP, HTTP) hand the work
//! to their own thread and must not block the caller.

use serde::{Deserialize, Serialize};

use crate::model::{Event, Snapshot};

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
pub struct SinksConfig {}

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
pub fn build(_config: &SinksConfig) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    Ok(Vec::new())
}
