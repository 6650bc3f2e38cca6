//! Prometheus metrics, fed by the same events that are logged, and a small `/metrics`
//! endpoint (OpenMetrics 1.0 text format).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub connections: Family<Labels, Counter>,
    pub connections_active: Gauge,
    pub connections_refused: Family<Labels, Counter>,
    pub messages_accepted: Family<Labels, Counter>,
    pub messages_rejected: Family<Labels, Counter>,
    pub bytes_received: Counter,
    pub auth_failures: Counter,
    pub commit_batch_size: Histogram,
    pub commit_latency: Histogram,
    pub commit_bytes: Counter,
    pub pop3: crate::pop3::metrics::Pop3Metrics,
    pub health_gate: crate::health_gate::GateMetrics,
    /// The spam filter's verdicts, failures and training (`crate::filter`).
    pub filter: crate::filter::FilterMetrics,
    /// Connections to management listeners refused by `[admin] allowed_networks`.
    pub admin_refused: Counter,
    pub imap_connections: Family<Labels, Counter>,
    pub imap_connections_active: Gauge,
    pub imap_commands: Family<Labels, Counter>,
    pub imap_auth_failures: Counter,
    /// Bytes held by the IMAP header cache (`imap::HeaderCache`).
    pub imap_search_cache_bytes: Gauge,
    /// Messages read to fill the header cache (a cold mailbox's first header search).
    pub imap_search_cache_fills: Counter,
    /// Logins of any service answered by the verified-credential cache, without argon2.
    pub auth_cache_hits: Counter,
    /// Bans started by failed logins, by kind (address, account); `crate::login_guard`.
    pub auth_bans: Family<Labels, Counter>,
    /// Logins refused by a ban before their credentials were checked, by service.
    pub auth_blocked: Family<Labels, Counter>,
    /// MAIL and RCPT commands refused by a rate limit, by limit (the `[smtp]` key): the
    /// alert counter of `crate::connection_limits::RateLimits`.
    pub smtp_rate_limited: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let connections = Family::<Labels, Counter>::default();
        let connections_active = Gauge::default();
        let connections_refused = Family::<Labels, Counter>::default();
        let messages_accepted = Family::<Labels, Counter>::default();
        let messages_rejected = Family::<Labels, Counter>::default();
        let bytes_received = Counter::default();
        let auth_failures = Counter::default();
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let commit_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let commit_bytes = Counter::default();
        let pop3 = crate::pop3::metrics::Pop3Metrics::register(&mut registry);
        let health_gate = crate::health_gate::GateMetrics::register(&mut registry);
        let filter = crate::filter::FilterMetrics::register(&mut registry);
        let admin_refused = Counter::default();
        registry.register(
            "postern_admin_refused",
            "Connections to management listeners (metrics) refused by [admin] allowed_networks",
            admin_refused.clone(),
        );
        let imap_connections = Family::<Labels, Counter>::default();
        let imap_connections_active = Gauge::default();
        let imap_commands = Family::<Labels, Counter>::default();
        let imap_auth_failures = Counter::default();
        let imap_search_cache_bytes = Gauge::default();
        let imap_search_cache_fills = Counter::default();
        let auth_cache_hits = Counter::default();
        let auth_bans = Family::<Labels, Counter>::default();
        let auth_blocked = Family::<Labels, Counter>::default();
        let smtp_rate_limited = Family::<Labels, Counter>::default();
        registry.register(
            "postern_smtp_rate_limited",
            "SMTP MAIL and RCPT commands refused by a rate limit, by limit (the [smtp] key)",
            smtp_rate_limited.clone(),
        );
        registry.register(
            "postern_auth_bans",
            "Bans started by failed logins ([auth] ban_*), by kind (address, account)",
            auth_bans.clone(),
        );
        registry.register(
            "postern_auth_blocked",
            "Logins refused by a ban before their credentials were checked, by service",
            auth_blocked.clone(),
        );
        registry.register(
            "postern_auth_cache_hits",
            "Logins (SMTP, IMAP, POP3) answered by the verified-credential cache ([auth])",
            auth_cache_hits.clone(),
        );
        registry.register(
            "postern_imap_search_cache_bytes",
            "Bytes of header fields cached for IMAP SEARCH and SORT ([imap] search_cache_mb)",
            imap_search_cache_bytes.clone(),
        );
        registry.register(
            "postern_imap_search_cache_fills",
            "Messages IMAP SEARCH or SORT read for their header fields (not found in the cache)",
            imap_search_cache_fills.clone(),
        );
        registry.register(
            "postern_imap_connections",
            "IMAP connections accepted, by listener (imap, imaps) and outcome",
            imap_connections.clone(),
        );
        registry.register(
            "postern_imap_connections_active",
            "IMAP connections open now",
            imap_connections_active.clone(),
        );
        registry.register(
            "postern_imap_commands",
            "IMAP commands answered, by command and result (ok, no, bad)",
            imap_commands.clone(),
        );
        registry.register(
            "postern_imap_auth_failures",
            "Failed IMAP LOGIN/AUTHENTICATE attempts",
            imap_auth_failures.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "postern_smtp_connections",
            "SMTP connections accepted, by listener",
            connections.clone(),
        );
        registry.register(
            "postern_smtp_connections_active",
            "SMTP connections open now",
            connections_active.clone(),
        );
        registry.register(
            "postern_smtp_connections_refused",
            "SMTP connections refused before the greeting, by reason",
            connections_refused.clone(),
        );
        registry.register(
            "postern_smtp_messages_accepted",
            "Messages acknowledged with 250 after the durable commit, by listener",
            messages_accepted.clone(),
        );
        registry.register(
            "postern_smtp_messages_rejected",
            "Messages, recipients and commands refused, by reason",
            messages_rejected.clone(),
        );
        registry.register(
            "postern_smtp_received_bytes",
            "Message bytes accepted",
            bytes_received.clone(),
        );
        registry.register(
            "postern_smtp_auth_failures",
            "Failed SMTP AUTH attempts",
            auth_failures.clone(),
        );
        registry.register(
            "postern_store_commit_batch_size",
            "Records made durable by one group commit (one fdatasync)",
            commit_batch_size.clone(),
        );
        registry.register(
            "postern_store_commit_latency_seconds",
            "Time from a batch's submission to its fdatasync completing",
            commit_latency.clone(),
        );
        registry.register(
            "postern_store_commit_bytes",
            "Bytes written by group commits",
            commit_bytes.clone(),
        );
        Arc::new(Metrics {
            registry,
            connections,
            connections_active,
            connections_refused,
            messages_accepted,
            messages_rejected,
            bytes_received,
            auth_failures,
            commit_batch_size,
            commit_latency,
            commit_bytes,
            pop3,
            health_gate,
            filter,
            admin_refused,
            imap_connections,
            imap_connections_active,
            imap_commands,
            imap_auth_failures,
            imap_search_cache_bytes,
            imap_search_cache_fills,
            auth_cache_hits,
            auth_bans,
            auth_blocked,
            smtp_rate_limited,
        })
    }

    pub fn reject(&self, reason: &str) {
        self.messages_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn record_commit(&self, report: &postern_store::CommitReport) {
        self.commit_batch_size.observe(report.records as f64);
        self.commit_latency.observe(report.latency.as_secs_f64());
        self.commit_bytes.inc_by(report.bytes);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    access: Arc<crate::admin_access::AdminAccess>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    tracing::info!(event = "metrics.listening", bind = %listener.local_addr()?);
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(event = "metrics.accept_failed", %error);
                continue;
            }
        };
        // `[admin] allowed_networks`: closed before a byte is read or written.
        if !access.check("metrics", peer.ip()) {
            drop(stream);
            continue;
        }
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the request head (bounded: 8 KiB, 5 s); only the request line matters.
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read_head = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            };
            if !matches!(
                tokio::time::timeout(std::time::Duration::from_secs(5), read_head).await,
                Ok(Ok(()))
            ) {
                return;
            }
            let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
            let (status, content_type, body) =
                if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                    (
                        "200 OK",
                        // prometheus-client renders OpenMetrics text (with `# EOF`).
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.render(),
                    )
                } else {
                    ("404 Not Found", "text/plain", "not found\n".to_string())
                };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
