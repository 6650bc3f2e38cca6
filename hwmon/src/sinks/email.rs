//! Alert e-mail to the admin (DESIGN.md 3.6) over SMTP: any SMTP server, in the appliance
//! posternd on loopback. STARTTLS when offered (or required), one message per component for
//! the events of one poll, repeat suppression, recovery mail.
//!
//! What is mailed: events whose new state is at least `min_state` (default WARNING), and
//! recoveries (back to OK from at least `min_state`). Repeat suppression: the same component,
//! event name and new state is not mailed again within `repeat_secs`; a recovery is an event
//! like any other (so a flapping fan gives one failure and one recovery mail per window).
//! Sending runs on its own thread with a bounded queue and bounded retries.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::smtp::{self, SmtpParams, TlsMode};
use super::{config_error, Sink, SinkError};
use crate::model::{ComponentId, Event, Snapshot, State};

/// `[sinks.email]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub enable: bool,
    /// SMTP server, host:port (posternd's MX listener on the appliance).
    pub server: String,
    /// Envelope and header sender.
    pub from: String,
    /// The admin address(es).
    pub to: Vec<String>,
    /// `opportunistic` (STARTTLS when offered, certificate checked only with `ca_file`),
    /// `required` (verified STARTTLS), or `none`.
    pub tls: TlsMode,
    /// PEM file of CAs to trust; empty = the system bundle (`required`) or none
    /// (`opportunistic`).
    pub ca_file: String,
    /// Name the server certificate must carry; empty = the host part of `server`.
    pub tls_name: String,
    /// AUTH PLAIN credentials (sent only over TLS); empty = no AUTH.
    pub username: String,
    pub password: String,
    /// Lowest state that is mailed: `WARNING` or `CRITICAL`.
    pub min_state: State,
    /// The same component + event + state is not mailed again within this many seconds.
    pub repeat_secs: f64,
    /// Events of one component arriving within this many milliseconds go in one message.
    pub batch_ms: u64,
    /// Delivery attempts per message (at least 1), `retry_secs` apart (doubling).
    pub attempts: u32,
    pub retry_secs: f64,
    pub timeout_secs: f64,
    /// Subject prefix.
    pub subject_prefix: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enable: false,
            server: "127.0.0.1:25".into(),
            from: String::new(),
            to: Vec::new(),
            tls: TlsMode::Opportunistic,
            ca_file: String::new(),
            tls_name: String::new(),
            username: String::new(),
            password: String::new(),
            min_state: State::Warning,
            repeat_secs: 3600.0,
            batch_ms: 500,
            attempts: 3,
            retry_secs: 5.0,
            timeout_secs: 30.0,
            subject_prefix: "[hwmond]".into(),
        }
    }
}

/// Decides which events are mailed (pure: unit-tested without a server).
#[derive(Debug)]
pub struct Policy {
    min_state: State,
    repeat: Duration,
    last_sent: HashMap<(ComponentId, String, State), Instant>,
}

impl Policy {
    pub fn new(min_state: State, repeat: Duration) -> Policy {
        Policy {
            min_state,
            repeat,
            last_sent: HashMap::new(),
        }
    }

    /// Whether the event is of the kind we mail at all.
    pub fn wanted(&self, e: &Event) -> bool {
        let min = self.min_state.severity();
        let bad = |s: State| s != State::Unknown && s.severity() >= min;
        bad(e.to) || (e.to == State::Ok && bad(e.from))
    }

    /// Whether to mail it now (records it as sent when so).
    pub fn admit(&mut self, e: &Event, now: Instant) -> bool {
        if !self.wanted(e) {
            return false;
        }
        let key = (e.component.clone(), e.name.clone(), e.to);
        match self.last_sent.get(&key) {
            Some(t) if now.duration_since(*t) < self.repeat => false,
            _ => {
                self.last_sent.insert(key, now);
                true
            }
        }
    }
}

/// The e-mail sink.
pub struct EmailSink {
    tx: SyncSender<Event>,
    policy_min: State,
}

impl EmailSink {
    /// What is wrong with the configuration (the key and why), if anything; the
    /// configuration check runs this too, so `check-config` refuses what `run` would.
    pub fn check(config: &EmailConfig) -> Result<(), (&'static str, String)> {
        if config.to.is_empty() {
            return Err(("to", "to: no recipient".into()));
        }
        if config.from.is_empty() || !config.from.contains('@') {
            return Err(("from", "from: an address is required".into()));
        }
        if !matches!(config.min_state, State::Warning | State::Critical) {
            return Err(("min_state", "min_state: WARNING or CRITICAL".into()));
        }
        if config.tls == TlsMode::Required || !config.ca_file.is_empty() {
            // Fail at start, not at the first alert, when the CA file is unusable.
            smtp::tls_client_config(&config.ca_file).map_err(|e| ("ca_file", e))?;
        }
        Ok(())
    }

    pub fn start(config: &EmailConfig) -> Result<EmailSink, SinkError> {
        EmailSink::check(config).map_err(|(_, m)| config_error("email", m))?;
        let (tx, rx) = mpsc::sync_channel(1024);
        let params = SmtpParams {
            server: config.server.clone(),
            helo: smtp::hostname(),
            from: config.from.clone(),
            to: config.to.clone(),
            tls: config.tls,
            ca_file: config.ca_file.clone(),
            tls_name: config.tls_name.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            timeout: Duration::from_secs_f64(config.timeout_secs.clamp(1.0, 600.0)),
        };
        let worker = Worker {
            params,
            policy: Policy::new(
                config.min_state,
                Duration::from_secs_f64(config.repeat_secs.max(0.0)),
            ),
            batch: Duration::from_millis(config.batch_ms.min(60_000)),
            attempts: config.attempts.clamp(1, 20),
            retry: Duration::from_secs_f64(config.retry_secs.clamp(0.0, 3600.0)),
            prefix: config.subject_prefix.clone(),
            host: smtp::hostname(),
            counter: 0,
        };
        std::thread::Builder::new()
            .name("hwmon-email".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| SinkError::Io {
                sink: "email".into(),
                source,
            })?;
        Ok(EmailSink {
            tx,
            policy_min: config.min_state,
        })
    }
}

impl Sink for EmailSink {
    fn name(&self) -> &str {
        "email"
    }

    fn event(&mut self, event: &Event, _snapshot: &Snapshot) {
        // Cheap pre-filter on the model thread; the worker applies the full policy.
        let probe = Policy::new(self.policy_min, Duration::ZERO);
        if !probe.wanted(event) {
            return;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(event = "hwmon.email.dropped", component = %event.component,
                    "alert mail queue full; event not mailed");
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(event = "hwmon.email.dead", "alert mail worker stopped");
            }
        }
    }
}

struct Worker {
    params: SmtpParams,
    policy: Policy,
    batch: Duration,
    attempts: u32,
    retry: Duration,
    prefix: String,
    host: String,
    counter: u64,
}

impl Worker {
    fn run(mut self, rx: Receiver<Event>) {
        while let Ok(first) = rx.recv() {
            let mut events = vec![first];
            let deadline = Instant::now() + self.batch;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(e) => events.push(e),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let now = Instant::now();
            let mut by_component: BTreeMap<ComponentId, Vec<Event>> = BTreeMap::new();
            for e in events {
                if self.policy.admit(&e, now) {
                    by_component.entry(e.component.clone()).or_default().push(e);
                } else {
                    tracing::info!(event = "hwmon.email.suppressed", component = %e.component,
                        name = %e.name, to = %e.to, "alert mail suppressed (repeat window)");
                }
            }
            for (component, events) in by_component {
                for episode in episodes(events) {
                    self.deliver(&component, &episode);
                }
            }
        }
    }

    fn deliver(&mut self, component: &ComponentId, events: &[Event]) {
        self.counter += 1;
        let message = compose(
            &self.prefix,
            &self.host,
            &self.params,
            component,
            events,
            self.counter,
        );
        let mut wait = self.retry;
        for attempt in 1..=self.attempts {
            match smtp::send(&self.params, message.as_bytes()) {
                Ok(()) => {
                    tracing::info!(event = "hwmon.email.sent", component = %component,
                        events = events.len(), "alert mail sent");
                    return;
                }
                Err(e) => {
                    tracing::warn!(event = "hwmon.email.error", component = %component,
                        attempt, error = %e, "alert mail failed");
                    if e.is_permanent() || attempt == self.attempts {
                        return;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(600));
                }
            }
        }
    }
}

/// Splits one component's batch where it recovers: a fault that asserted and cleared within
/// one batch (a PSU failure seen only in the BMC's event log) is mailed as the failure and
/// then the recovery, not as one RECOVERED mail that hides the failure in its body.
fn episodes(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    for e in events {
        let recovers = e.to == State::Ok && e.from != State::Ok;
        // Only a change into a bad state is a failure of its own; a named event on a
        // component that was already failing (CRITICAL -> CRITICAL) stays with its recovery.
        let failed_before = current.iter().any(|p| p.to != State::Ok && p.from != p.to);
        if recovers && failed_before {
            out.push(std::mem::take(&mut current));
        }
        current.push(e);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The message (RFC 5322, UTF-8 body). Subject: `<prefix> CRITICAL fan/FAN1: reason` or
/// `<prefix> RECOVERED fan/FAN1`.
pub fn compose(
    prefix: &str,
    host: &str,
    params: &SmtpParams,
    component: &ComponentId,
    events: &[Event],
    counter: u64,
) -> String {
    let last = events.last();
    let to_state = last.map(|e| e.to).unwrap_or(State::Unknown);
    let recovered = to_state == State::Ok;
    let reason = events
        .iter()
        .rev()
        .find(|e| !e.reason.is_empty())
        .map(|e| e.reason.as_str())
        .unwrap_or("");
    let mut subject = if recovered {
        format!("{prefix} RECOVERED {component}")
    } else if reason.is_empty() {
        format!("{prefix} {to_state} {component}")
    } else {
        format!("{prefix} {to_state} {component}: {reason}")
    };
    // RFC 5322 2.1.1: keep header lines short; the body has everything.
    subject = subject.replace(['\r', '\n'], " ");
    if subject.len() > 200 {
        let mut cut = 200;
        while !subject.is_char_boundary(cut) {
            cut -= 1;
        }
        subject.truncate(cut);
    }
    let ts = last.map(|e| e.timestamp_ms).unwrap_or(0);
    let mut body = String::new();
    let _ = writeln!(body, "Host: {host}");
    let _ = writeln!(body, "Component: {component}");
    let _ = writeln!(body, "State: {to_state}");
    if !reason.is_empty() {
        let _ = writeln!(body, "Reason: {reason}");
    }
    let _ = writeln!(body);
    for e in events {
        let _ = writeln!(
            body,
            "{} #{} {}: {} -> {}{}",
            smtp::rfc3339(e.timestamp_ms),
            e.seq,
            e.name,
            e.from,
            e.to,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.reason)
            }
        );
    }
    if let Some(e) = last {
        if !e.readings.is_empty() {
            let _ = writeln!(body, "\nReadings:");
            for r in &e.readings {
                let _ = write!(body, "  {} = {} {}", r.name, r.value, r.unit.suffix());
                let t = &r.thresholds;
                let mut lim = Vec::new();
                for (n, v) in [
                    ("lnr", t.lower_non_recoverable),
                    ("lc", t.lower_critical),
                    ("lnc", t.lower_non_critical),
                    ("unc", t.upper_non_critical),
                    ("uc", t.upper_critical),
                    ("unr", t.upper_non_recoverable),
                ] {
                    if let Some(v) = v {
                        lim.push(format!("{n} {v}"));
                    }
                }
                if !lim.is_empty() {
                    let _ = write!(body, " (thresholds: {})", lim.join(", "));
                }
                let _ = writeln!(body);
            }
        }
    }
    let mut m = String::new();
    let _ = write!(m, "Date: {}\r\n", smtp::rfc5322_date(ts));
    let _ = write!(m, "From: hwmond <{}>\r\n", params.from);
    let _ = write!(m, "To: {}\r\n", params.to.join(", "));
    let _ = write!(m, "Subject: {}\r\n", encode_subject(&subject));
    let _ = write!(
        m,
        "Message-ID: <hwmond.{ts}.{counter}.{}@{host}>\r\n",
        std::process::id()
    );
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    m.push_str("Auto-Submitted: auto-generated\r\n");
    let _ = write!(m, "X-Postern-Component: {component}\r\n");
    let _ = write!(
        m,
        "X-Postern-State: {}\r\n",
        if recovered {
            "RECOVERED".to_string()
        } else {
            to_state.to_string()
        }
    );
    m.push_str("\r\n");
    for line in body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m
}

/// RFC 2047 encoded-word for non-ASCII subjects (base64, UTF-8).
fn encode_subject(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    use base64::Engine as _;
    format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ComponentKind, Reading, Unit};

    fn ev(name: &str, from: State, to: State) -> Event {
        Event {
            seq: 1,
            timestamp_ms: 1_795_563_660_000,
            component: ComponentId::new(ComponentKind::Fan, "FAN1"),
            from,
            to,
            name: name.into(),
            reason: if to == State::Ok {
                String::new()
            } else {
                "FAN1 stopped (0 RPM)".into()
            },
            readings: vec![Reading::new("speed", 0.0, Unit::Rpm)],
        }
    }

    #[test]
    fn policy_mails_failures_and_recoveries_once_per_window() {
        let mut p = Policy::new(State::Warning, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(p.admit(&ev("StateChanged", State::Ok, State::Critical), t0));
        assert!(p.admit(&ev("StateChanged", State::Critical, State::Ok), t0));
        // Flap within the window: suppressed.
        let t1 = t0 + Duration::from_secs(10);
        assert!(!p.admit(&ev("StateChanged", State::Ok, State::Critical), t1));
        assert!(!p.admit(&ev("StateChanged", State::Critical, State::Ok), t1));
        // A different event name is news.
        assert!(p.admit(
            &ev(
                "SelLowerCriticalGoingLowAsserted",
                State::Ok,
                State::Critical
            ),
            t1
        ));
        // After the window: mailed again.
        let t2 = t0 + Duration::from_secs(61);
        assert!(p.admit(&ev("StateChanged", State::Ok, State::Critical), t2));
        // Not mailed at all: OK -> OK, UNKNOWN, WARNING under a CRITICAL minimum.
        assert!(!p.admit(&ev("Discovered", State::Unknown, State::Ok), t2));
        assert!(!p.admit(&ev("Disappeared", State::Ok, State::Unknown), t2));
        let crit_only = Policy::new(State::Critical, Duration::ZERO);
        assert!(!crit_only.wanted(&ev("StateChanged", State::Ok, State::Warning)));
        assert!(!crit_only.wanted(&ev("StateChanged", State::Warning, State::Ok)));
    }

    #[test]
    fn a_fault_cleared_within_a_batch_is_mailed_then_recovered() {
        let batch = vec![
            ev("SelFailureDetectedAsserted", State::Ok, State::Critical),
            ev("StateChanged", State::Ok, State::Critical),
            ev("SelFailureDetectedDeasserted", State::Critical, State::Ok),
            ev("StateChanged", State::Critical, State::Ok),
        ];
        let split = episodes(batch);
        assert_eq!(split.len(), 2);
        assert!(split[0].iter().all(|e| e.to == State::Critical));
        assert!(split[1].iter().all(|e| e.to == State::Ok));
        // A plain recovery stays one mail, also with an event of the failing state before it.
        let plain = episodes(vec![ev("StateChanged", State::Critical, State::Ok)]);
        assert_eq!(plain.len(), 1);
        let late = episodes(vec![
            ev(
                "SelLowerCriticalGoingLowAsserted",
                State::Critical,
                State::Critical,
            ),
            ev("StateChanged", State::Critical, State::Ok),
        ]);
        assert_eq!(late.len(), 1);
    }

    #[test]
    fn message_format() {
        let params = SmtpParams {
            server: "127.0.0.1:25".into(),
            helo: "h".into(),
            from: "hwmond@example.test".into(),
            to: vec!["admin@example.test".into()],
            tls: TlsMode::Opportunistic,
            ca_file: String::new(),
            tls_name: String::new(),
            username: String::new(),
            password: String::new(),
            timeout: Duration::from_secs(1),
        };
        let id = ComponentId::new(ComponentKind::Fan, "FAN1");
        let m = compose(
            "[hwmond]",
            "box",
            &params,
            &id,
            &[ev("StateChanged", State::Ok, State::Critical)],
            1,
        );
        assert!(m.contains("Subject: [hwmond] CRITICAL fan/FAN1: FAN1 stopped (0 RPM)\r\n"));
        assert!(m.contains("Date: Tue, 24 Nov 2026 23:41:00 +0000\r\n"));
        assert!(m.contains("X-Postern-State: CRITICAL\r\n"));
        assert!(m.contains("StateChanged: OK -> CRITICAL (FAN1 stopped (0 RPM))\r\n"));
        assert!(m.contains("  speed = 0 RPM\r\n"));
        let r = compose(
            "[hwmond]",
            "box",
            &params,
            &id,
            &[ev("StateChanged", State::Critical, State::Ok)],
            2,
        );
        assert!(r.contains("Subject: [hwmond] RECOVERED fan/FAN1\r\n"));
        assert!(r.contains("X-Postern-State: RECOVERED\r\n"));
        assert_eq!(encode_subject("é"), "=?utf-8?b?w6k=?=");
    }
}
