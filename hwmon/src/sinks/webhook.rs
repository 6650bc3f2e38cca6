//! Webhook: each event as JSON in an HTTP/1.1 POST (RFC 9110 9.3.3, RFC 9112) to a
//! configured URL (`http://` or `https://` with rustls), on its own thread with a bounded
//! queue; failed deliveries (connection errors, 5xx, 429) are retried a bounded number of
//! times with doubling back-off, 4xx answers are not.
//!
//! Body: `{"event": <Event>, "overall": "CRITICAL", "storage": {"safe": .., "reasons": [..]},
//! "host": "..."}`.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::smtp;
use super::{config_error, Sink, SinkError};
use crate::model::{Event, Snapshot, State, StorageVerdict};

/// `[sinks.webhook]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub enable: bool,
    /// `http://host:port/path` or `https://...`.
    pub url: String,
    /// Lowest new state posted (`OK` = every event).
    pub min_state: State,
    /// Attempts per event (at least 1), `retry_secs` apart, doubling.
    pub attempts: u32,
    pub retry_secs: f64,
    pub timeout_secs: f64,
    /// For https: PEM CA file; empty = the system bundle.
    pub ca_file: String,
    /// Extra header lines (`"Authorization: Bearer ..."`).
    pub headers: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enable: false,
            url: String::new(),
            min_state: State::Ok,
            attempts: 5,
            retry_secs: 1.0,
            timeout_secs: 10.0,
            ca_file: String::new(),
            headers: Vec::new(),
        }
    }
}

/// A parsed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{url}: not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: bad host"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(format!("{url}: bad host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{url}: bad port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        Ok(Url {
            https,
            host,
            port,
            path: path.to_string(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    event: &'a Event,
    overall: State,
    storage: &'a StorageVerdict,
    host: &'a str,
}

/// The webhook sink.
pub struct WebhookSink {
    tx: SyncSender<Vec<u8>>,
    min_state: State,
    host: String,
}

impl WebhookSink {
    /// The URL and TLS settings, or what is wrong with the configuration (the key and why);
    /// the configuration check runs this too, so `check-config` refuses what `run` would.
    #[allow(clippy::type_complexity)]
    pub fn check(
        config: &WebhookConfig,
    ) -> Result<(Url, Option<Arc<rustls::ClientConfig>>), (&'static str, String)> {
        let url = Url::parse(&config.url).map_err(|e| ("url", e))?;
        for h in &config.headers {
            if !h.contains(':') || h.contains(['\r', '\n']) {
                return Err(("headers", format!("headers: bad header {h:?}")));
            }
        }
        let tls = if url.https {
            Some(smtp::tls_client_config(&config.ca_file).map_err(|e| ("ca_file", e))?)
        } else {
            None
        };
        Ok((url, tls))
    }

    pub fn start(config: &WebhookConfig) -> Result<WebhookSink, SinkError> {
        let (url, tls) = WebhookSink::check(config).map_err(|(_, m)| config_error("webhook", m))?;
        let (tx, rx) = mpsc::sync_channel(1024);
        let worker = Worker {
            url,
            tls,
            attempts: config.attempts.clamp(1, 50),
            retry: Duration::from_secs_f64(config.retry_secs.clamp(0.0, 3600.0)),
            timeout: Duration::from_secs_f64(config.timeout_secs.clamp(0.5, 600.0)),
            headers: config.headers.clone(),
        };
        std::thread::Builder::new()
            .name("hwmon-webhook".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| SinkError::Io {
                sink: "webhook".into(),
                source,
            })?;
        Ok(WebhookSink {
            tx,
            min_state: config.min_state,
            host: smtp::hostname(),
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    fn event(&mut self, event: &Event, snapshot: &Snapshot) {
        let min = self.min_state.severity();
        let relevant = event.to.severity() >= min || event.from.severity() >= min;
        if !relevant {
            return;
        }
        let body = match serde_json::to_vec(&Payload {
            event,
            overall: snapshot.overall,
            storage: &snapshot.storage,
            host: &self.host,
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(event = "hwmon.webhook.encode", error = %e);
                return;
            }
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(body) {
            tracing::warn!(event = "hwmon.webhook.dropped", component = %event.component,
                "webhook queue full; event not posted");
        }
    }
}

struct Worker {
    url: Url,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    attempts: u32,
    retry: Duration,
    timeout: Duration,
    headers: Vec<String>,
}

#[derive(Debug)]
enum PostError {
    /// Worth retrying: network trouble, 5xx, 429.
    Transient(String),
    /// Not: other 4xx.
    Permanent(String),
}

impl Worker {
    fn run(self, rx: Receiver<Vec<u8>>) {
        while let Ok(body) = rx.recv() {
            let mut wait = self.retry;
            for attempt in 1..=self.attempts {
                match self.post(&body) {
                    Ok(status) => {
                        tracing::debug!(event = "hwmon.webhook.sent", status, attempt);
                        break;
                    }
                    Err(PostError::Permanent(e)) => {
                        tracing::warn!(event = "hwmon.webhook.rejected", error = %e,
                            "webhook refused the event; not retried");
                        break;
                    }
                    Err(PostError::Transient(e)) => {
                        tracing::warn!(event = "hwmon.webhook.error", attempt, error = %e,
                            "webhook delivery failed");
                        if attempt < self.attempts {
                            std::thread::sleep(wait);
                            wait = (wait * 2).min(Duration::from_secs(300));
                        }
                    }
                }
            }
        }
    }

    fn post(&self, body: &[u8]) -> Result<u16, PostError> {
        let tcp = smtp::connect_tcp(&self.url.authority(), self.timeout)
            .map_err(|e| PostError::Transient(format!("connect {}: {e}", self.url.authority())))?;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hwmond\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.url.path,
            if self.url.port == if self.url.https { 443 } else { 80 } {
                self.url.host.clone()
            } else {
                self.url.authority()
            },
            body.len()
        );
        for h in &self.headers {
            head.push_str(h.trim());
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let response = match &self.tls {
            Some(config) => {
                let mut s = smtp::tls_connect(tcp, config.clone(), &self.url.host)
                    .map_err(PostError::Transient)?;
                exchange(&mut s, head.as_bytes(), body)
            }
            None => {
                let mut s = tcp;
                exchange(&mut s, head.as_bytes(), body)
            }
        }
        .map_err(|e| PostError::Transient(e.to_string()))?;
        let status = parse_status(&response)
            .ok_or_else(|| PostError::Transient("malformed HTTP response".into()))?;
        match status {
            200..=299 => Ok(status),
            429 | 500..=599 => Err(PostError::Transient(format!("HTTP {status}"))),
            _ => Err(PostError::Permanent(format!("HTTP {status}"))),
        }
    }
}

fn exchange<S: Read + Write>(s: &mut S, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    // Only the status line matters; read a bounded prefix.
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// `HTTP/1.1 204 No Content` -> 204.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8080/hook?x=1").unwrap(),
            Url {
                https: false,
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/hook?x=1".into()
            }
        );
        let u = Url::parse("https://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.https), ("::1", 443, true));
        assert_eq!(u.authority(), "[::1]:443");
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://user@host/").is_err());
        assert!(Url::parse("http://h:notaport/").is_err());
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"garbage"), None);
    }

    /// Retries on 503, then succeeds; the body is the event JSON.
    #[test]
    fn retries_then_delivers() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in ["503 Busy", "200 OK"] {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                bodies.push(body);
                let mut w = s;
                write!(w, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
            bodies
        });
        let mut sink = WebhookSink::start(&WebhookConfig {
            enable: true,
            url: format!("http://{addr}/hook"),
            retry_secs: 0.05,
            ..WebhookConfig::default()
        })
        .unwrap();
        let event = Event {
            seq: 7,
            timestamp_ms: 1,
            component: "psu/PSU1".parse().unwrap(),
            from: State::Ok,
            to: State::Critical,
            name: "StateChanged".into(),
            reason: "failure detected".into(),
            readings: Vec::new(),
        };
        let snap = crate::model::Health::default().snapshot();
        sink.event(&event, &snap);
        let bodies = server.join().unwrap();
        assert_eq!(bodies.len(), 2);
        let v: serde_json::Value = serde_json::from_slice(&bodies[1]).unwrap();
        assert_eq!(v["event"]["component"], "psu/PSU1");
        assert_eq!(v["event"]["to"], "CRITICAL");
        assert_eq!(v["storage"]["safe"], true);
    }
}
