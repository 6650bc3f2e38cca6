//! The storage gate (DESIGN.md 3.1, 3.3): posternd promises that a 250 means the message is
//! on stable storage. When hwmond says storage cannot keep that promise now (a failed or
//! read-only array, a full data filesystem), new mail is answered with a temporary failure
//! instead of being accepted and perhaps lost; senders retry later (RFC 5321 4.5.4.1).
//!
//! The verdict comes from hwmond's health API (`[health] socket`): `{"get":"state"}` answers
//! one JSON line whose `storage` is `{"safe": bool, "reasons": [..]}`. A thread polls it every
//! second, and sooner when hwmond's event stream (`{"get":"events"}`) reports anything. When
//! hwmond cannot be reached the gate stays open: a monitor that is down must not stop mail
//! (logged as `health.gate.unreachable`, exported as `postern_health_gate_reachable 0`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use postern_smtp::Reply;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How often the verdict is refreshed without events.
const POLL: Duration = Duration::from_secs(1);
/// One request to hwmond may take this long.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A state answer larger than this is refused (it is a few KiB per component).
const MAX_LINE: u64 = 16 << 20;

/// What the gate knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No `[health] socket`: always open.
    Disabled,
    /// hwmond did not answer (yet): open.
    Unreachable(String),
    Safe,
    /// Storage is not safe: closed, with hwmond's reasons.
    Unsafe(Vec<String>),
}

/// Gate metrics (registered with posternd's registry).
#[derive(Clone, Default)]
pub struct GateMetrics {
    /// 1 while mail is refused because storage is unsafe.
    pub closed: Gauge,
    /// 1 while hwmond's health API answers (0 when the gate is disabled or hwmond is down).
    pub reachable: Gauge,
    /// Transactions refused by the gate.
    pub refusals: Counter,
    /// Failed polls of the health API.
    pub poll_errors: Counter,
}

impl GateMetrics {
    pub fn register(registry: &mut Registry) -> GateMetrics {
        let m = GateMetrics::default();
        registry.register(
            "postern_health_gate_closed",
            "1 while new mail is refused because hwmond reports storage unsafe",
            m.closed.clone(),
        );
        registry.register(
            "postern_health_gate_reachable",
            "1 while hwmond's health API answers",
            m.reachable.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "postern_health_gate_refusals",
            "SMTP transactions refused by the storage gate",
            m.refusals.clone(),
        );
        registry.register(
            "postern_health_gate_poll_errors",
            "Failed requests to hwmond's health API",
            m.poll_errors.clone(),
        );
        m
    }
}

/// The gate: a cached verdict, cheap to consult on every transaction.
pub struct HealthGate {
    status: ArcSwap<Status>,
    metrics: GateMetrics,
}

impl HealthGate {
    /// A gate that never closes.
    pub fn disabled(metrics: GateMetrics) -> Arc<HealthGate> {
        Arc::new(HealthGate {
            status: ArcSwap::from_pointee(Status::Disabled),
            metrics,
        })
    }

    /// Starts watching hwmond at `socket` (threads; no runtime needed).
    pub fn start(socket: PathBuf, metrics: GateMetrics) -> std::io::Result<Arc<HealthGate>> {
        let gate = Arc::new(HealthGate {
            status: ArcSwap::from_pointee(Status::Unreachable("not polled yet".into())),
            metrics,
        });
        let (kick, kicked) = mpsc::sync_channel::<()>(1);
        {
            let socket = socket.clone();
            std::thread::Builder::new()
                .name("health-events".into())
                .spawn(move || follow_events(&socket, kick))?;
        }
        let poller = Arc::clone(&gate);
        std::thread::Builder::new()
            .name("health-gate".into())
            .spawn(move || loop {
                poller.refresh(&socket);
                match kicked.recv_timeout(POLL) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
                }
            })?;
        Ok(gate)
    }

    pub fn status(&self) -> Status {
        Status::clone(&self.status.load())
    }

    /// `None` when mail may be accepted; else the reply refusing it (RFC 5321 4.2.2: 451
    /// "local error in processing", or 452 "insufficient system storage" when a filesystem is
    /// full; RFC 3463: 4.3.5 system not capable / 4.3.1 mail system full).
    pub fn check(&self) -> Option<Reply> {
        let status = self.status.load();
        let Status::Unsafe(reasons) = &**status else {
            return None;
        };
        self.metrics.refusals.inc();
        Some(refusal(reasons))
    }

    fn refresh(&self, socket: &Path) {
        let new = match fetch_verdict(socket) {
            Ok((true, _)) => Status::Safe,
            Ok((false, reasons)) => Status::Unsafe(reasons),
            Err(e) => {
                self.metrics.poll_errors.inc();
                Status::Unreachable(e)
            }
        };
        let old = self.status.load();
        if **old != new {
            match &new {
                Status::Safe => {
                    tracing::info!(
                        event = "health.gate.open",
                        "storage is safe: accepting mail"
                    )
                }
                Status::Unsafe(reasons) => tracing::warn!(
                    event = "health.gate.closed",
                    reasons = %reasons.join("; "),
                    "storage is not safe: refusing new mail with 451/452"
                ),
                Status::Unreachable(e) => tracing::warn!(
                    event = "health.gate.unreachable",
                    socket = %socket.display(),
                    error = %e,
                    "hwmond's health API does not answer: accepting mail without a storage verdict"
                ),
                Status::Disabled => {}
            }
        }
        self.metrics
            .closed
            .set(i64::from(matches!(new, Status::Unsafe(_))));
        self.metrics
            .reachable
            .set(i64::from(matches!(new, Status::Safe | Status::Unsafe(_))));
        self.status.store(Arc::new(new));
    }
}

/// The refusal for these reasons.
pub fn refusal(reasons: &[String]) -> Reply {
    let full = reasons.iter().any(|r| r.contains("full"));
    let mut why: String = reasons
        .first()
        .map(String::as_str)
        .unwrap_or("hardware monitor reports storage unsafe")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(160)
        .collect();
    if reasons.len() > 1 {
        why.push_str(&format!(" (+{} more)", reasons.len() - 1));
    }
    let text = format!("Mail storage is not safe now ({why}); please try again later");
    if full {
        Reply::new(452, Some((4, 3, 1)), text)
    } else {
        Reply::new(451, Some((4, 3, 5)), text)
    }
}

/// One `{"get":"state"}` round trip: (safe, reasons).
fn fetch_verdict(socket: &Path) -> Result<(bool, Vec<String>), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"{\"get\":\"state\"}\n")
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_LINE);
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    parse_verdict(&line)
}

/// Reads `storage.safe` and `storage.reasons` from a state answer.
pub fn parse_verdict(line: &[u8]) -> Result<(bool, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("bad answer: {e}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("hwmond: {e}"));
    }
    let storage = v.get("storage").ok_or("answer has no storage verdict")?;
    let safe = storage
        .get("safe")
        .and_then(|s| s.as_bool())
        .ok_or("storage.safe is not a boolean")?;
    let reasons = storage
        .get("reasons")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((safe, reasons))
}

/// Subscribes to hwmond's event stream and kicks the poller on every event, so a failure is
/// seen as soon as hwmond reports it; reconnects (once a second) when hwmond goes away.
fn follow_events(socket: &Path, kick: mpsc::SyncSender<()>) {
    loop {
        if let Ok(mut stream) = UnixStream::connect(socket) {
            if stream.write_all(b"{\"get\":\"events\"}\n").is_ok() {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            // Full channel: a refresh is already pending.
                            let _ = kick.try_send(());
                        }
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn verdicts() {
        assert_eq!(
            parse_verdict(br#"{"overall":"OK","storage":{"safe":true,"reasons":[]}}"#),
            Ok((true, vec![]))
        );
        assert_eq!(
            parse_verdict(br#"{"storage":{"safe":false,"reasons":["array/md0: failed"]}}"#),
            Ok((false, vec!["array/md0: failed".to_string()]))
        );
        assert!(parse_verdict(br#"{"error":"bad request"}"#).is_err());
        assert!(parse_verdict(b"not json").is_err());
        assert!(parse_verdict(br#"{"storage":{}}"#).is_err());
    }

    #[test]
    fn refusal_codes() {
        let r = refusal(&["array/md0: array failed".into()]);
        assert_eq!(r.code, 451);
        assert_eq!(r.enhanced, Some((4, 3, 5)));
        let r = refusal(&[
            "filesystem/data: 99% full".into(),
            "array/md0: degraded".into(),
        ]);
        assert_eq!(r.code, 452);
        assert_eq!(r.enhanced, Some((4, 3, 1)));
    }

    /// Against a scripted health API: unreachable -> open; unsafe -> closed; safe -> open.
    #[test]
    fn follows_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("hwmond.sock");
        let gate = HealthGate::start(sock.clone(), GateMetrics::default()).unwrap();
        let wait_for = |want: &dyn Fn(&Status) -> bool| {
            for _ in 0..100 {
                if want(&gate.status()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        };
        assert!(wait_for(&|s| matches!(s, Status::Unreachable(_))));
        assert!(gate.check().is_none());
        let safe = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = UnixListener::bind(&sock).unwrap();
        let flag = Arc::clone(&safe);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut req = String::new();
                let _ = r.read_line(&mut req);
                let mut w = s;
                if req.contains("events") {
                    // Hold the stream open without events.
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(30));
                        drop(w);
                    });
                    continue;
                }
                let answer = if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    "{\"storage\":{\"safe\":true,\"reasons\":[]}}\n"
                } else {
                    "{\"storage\":{\"safe\":false,\"reasons\":[\"array/md0: failed\"]}}\n"
                };
                let _ = w.write_all(answer.as_bytes());
            }
        });
        assert!(wait_for(&|s| matches!(s, Status::Unsafe(_))));
        let reply = gate.check().unwrap();
        assert_eq!(reply.code, 451);
        safe.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(wait_for(&|s| *s == Status::Safe));
        assert!(gate.check().is_none());
        assert_eq!(gate.metrics.refusals.get(), 1);
    }
}
