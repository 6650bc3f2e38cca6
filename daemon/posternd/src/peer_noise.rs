//! Log records a remote peer causes are summarised, never printed one per handshake
//! (DESIGN.md 6): otherwise anyone who can connect can write to the log at line rate.
//!
//! rustls logs (through the `log` crate, bridged into tracing) a warning for things a client
//! sends, such as an IP address as the SNI name (RFC 6066 3 forbids literal addresses there)
//! or a duplicate SNI entry. Every rustls record is therefore taken off the printed log
//! (see [`is_peer_caused`]); those at warn or error level are counted here, and
//! [`report`] (run every [`SUMMARY_INTERVAL`] and at shutdown) logs one
//! `tls.peer_warnings` event with how many there were and the last one.
//!
//! Failed TLS handshakes (garbage, scanners, clients that give up) are logged one by one
//! only at debug level; [`handshake_failed`] counts them, and [`report`] logs one
//! `tls.handshake_failures` event per interval with their number and the last error.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How often suppressed peer-caused warnings are summarised.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());
static HANDSHAKES_FAILED: AtomicU64 = AtomicU64::new(0);
static LAST_HANDSHAKE_ERROR: Mutex<String> = Mutex::new(String::new());

/// Counts a failed TLS handshake for the next summary (the caller logs it at debug level).
pub fn handshake_failed(error: &dyn fmt::Display) {
    HANDSHAKES_FAILED.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = LAST_HANDSHAKE_ERROR.lock() {
        // Peer-influenced text: one short line, once per interval.
        *last = error.to_string().chars().take(200).collect();
    }
}

/// True for records whose content a remote peer decides: everything the TLS library logs
/// (it reports on the handshakes and records of peers). Such records never reach the
/// printed log.
pub fn is_peer_caused(meta: &Metadata<'_>) -> bool {
    is_peer_target(meta.target())
}

fn is_peer_target(target: &str) -> bool {
    target == "rustls" || target.starts_with("rustls::")
}

/// Counts the peer-caused records at warn and error level (what the default level would
/// have printed), keeping the last one's message.
pub struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // tracing orders levels by verbosity: ERROR < WARN < INFO.
        if *meta.level() > Level::WARN {
            return;
        }
        let mut record = Record::default();
        event.record(&mut record);
        // A record bridged from the `log` crate carries its real target in a field (its
        // metadata is that of the bridge).
        let peer = is_peer_caused(meta) || record.log_target.as_deref().is_some_and(is_peer_target);
        if !peer {
            return;
        }
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = LAST.lock() {
            // Peer-influenced text: one short line, once per interval.
            *last = record.message.chars().take(200).collect();
        }
    }
}

#[derive(Default)]
struct Record {
    message: String,
    log_target: Option<String>,
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "log.target" => self.log_target = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Logs one `tls.peer_warnings` event for the records counted since the last call, and one
/// `tls.handshake_failures` event for the failed handshakes, each only if there were any.
pub fn report() {
    let count = SUPPRESSED.swap(0, Ordering::Relaxed);
    if count > 0 {
        let last = LAST.lock().map(|l| l.clone()).unwrap_or_default();
        tracing::info!(event = "tls.peer_warnings", count, last = %last);
    }
    let count = HANDSHAKES_FAILED.swap(0, Ordering::Relaxed);
    if count > 0 {
        let last = LAST_HANDSHAKE_ERROR
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        tracing::info!(event = "tls.handshake_failures", count, last = %last);
    }
}
