//! Counters per client, merged into one report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

/// Distinct error texts kept per report; the rest are only counted.
const MAX_ERROR_KINDS: usize = 50;

#[derive(Default)]
pub struct WorkerStats {
    pub ok: u64,
    pub bytes: u64,
    pub errors: u64,
    pub connections: u64,
    /// Latency of each accepted message, in microseconds.
    pub latencies_us: Vec<u64>,
    pub error_texts: HashMap<String, u64>,
}

impl WorkerStats {
    pub fn ok(&mut self, latency: Duration, bytes: usize) {
        self.ok += 1;
        self.bytes += bytes as u64;
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, text: String) {
        self.errors += 1;
        if self.error_texts.len() < MAX_ERROR_KINDS || self.error_texts.contains_key(&text) {
            *self.error_texts.entry(text).or_insert(0) += 1;
        }
    }

    pub fn merge(&mut self, other: WorkerStats) {
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.connections += other.connections;
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.error_texts {
            if self.error_texts.len() < MAX_ERROR_KINDS || self.error_texts.contains_key(&k) {
                *self.error_texts.entry(k).or_insert(0) += v;
            }
        }
    }
}

/// Nearest-rank percentile of sorted values (p in 0..=1).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub struct Report {
    target: String,
    clients: usize,
    size: usize,
    starttls: bool,
    reuse: bool,
    wall: Duration,
    pub ok: u64,
    pub errors: u64,
    bytes: u64,
    connections: u64,
    latencies_us: Vec<u64>,
    error_texts: Vec<(String, u64)>,
}

impl Report {
    pub fn new(
        target: &str,
        clients: usize,
        size: usize,
        starttls: bool,
        reuse: bool,
        wall: Duration,
        mut stats: WorkerStats,
    ) -> Report {
        stats.latencies_us.sort_unstable();
        Report {
            target: target.to_string(),
            clients,
            size,
            starttls,
            reuse,
            wall,
            ok: stats.ok,
            errors: stats.errors,
            bytes: stats.bytes,
            connections: stats.connections,
            latencies_us: stats.latencies_us,
            error_texts: crate::sorted_errors(&stats.error_texts),
        }
    }

    pub fn first_error(&self) -> Option<&str> {
        self.error_texts.first().map(|(t, _)| t.as_str())
    }

    fn secs(&self) -> f64 {
        self.wall.as_secs_f64().max(1e-9)
    }

    fn msg_per_s(&self) -> f64 {
        self.ok as f64 / self.secs()
    }

    /// Megabytes (10^6 bytes) of accepted message content per second.
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs()
    }

    fn ms(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies_us, p).map(|us| us as f64 / 1000.0)
    }

    fn mean_ms(&self) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let sum: u128 = self.latencies_us.iter().map(|&v| u128::from(v)).sum();
        Some(sum as f64 / self.latencies_us.len() as f64 / 1000.0)
    }

    pub fn to_json(&self) -> String {
        let errors: Vec<_> = self
            .error_texts
            .iter()
            .map(|(t, c)| json!({"text": t, "count": c}))
            .collect();
        json!({
            "target": self.target,
            "clients": self.clients,
            "size": self.size,
            "starttls": self.starttls,
            "reuse": self.reuse,
            "messages_ok": self.ok,
            "errors": self.errors,
            "connections": self.connections,
            "wall_s": self.wall.as_secs_f64(),
            "msg_per_s": self.msg_per_s(),
            "mb_per_s": self.mb_per_s(),
            "latency_ms": {
                "p50": self.ms(0.50),
                "p99": self.ms(0.99),
                "p999": self.ms(0.999),
                "max": self.ms(1.0),
                "mean": self.mean_ms(),
            },
            "error_texts": errors,
        })
        .to_string()
    }

    pub fn to_text(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "target {}  clients {}  size {} B  starttls {}  {}",
            self.target,
            self.clients,
            self.size,
            if self.starttls { "yes" } else { "no" },
            if self.reuse {
                "connections reused"
            } else {
                "one connection per message"
            }
        );
        let _ = writeln!(
            s,
            "accepted {}  errors {}  connections {}  wall {:.3} s",
            self.ok,
            self.errors,
            self.connections,
            self.wall.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "throughput {:.1} msg/s  {:.2} MB/s",
            self.msg_per_s(),
            self.mb_per_s()
        );
        let _ = writeln!(
            s,
            "latency p50 {}  p99 {}  p999 {}  max {}",
            f(self.ms(0.5)),
            f(self.ms(0.99)),
            f(self.ms(0.999)),
            f(self.ms(1.0))
        );
        for (t, c) in &self.error_texts {
            let _ = writeln!(s, "error x{c}: {t}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&v, 1.0), Some(1000));
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn report_json_has_rates_and_errors() {
        let mut a = WorkerStats::default();
        a.ok(Duration::from_millis(2), 1000);
        a.ok(Duration::from_millis(4), 1000);
        let mut b = WorkerStats::default();
        b.error("RCPT: 550 no".into());
        b.error("RCPT: 550 no".into());
        a.merge(b);
        let r = Report::new("x:25", 2, 1000, false, true, Duration::from_secs(2), a);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["messages_ok"], 2);
        assert_eq!(v["errors"], 2);
        assert_eq!(v["msg_per_s"], 1.0);
        assert_eq!(v["mb_per_s"], 0.001);
        assert_eq!(v["latency_ms"]["p50"], 2.0);
        assert_eq!(v["latency_ms"]["max"], 4.0);
        assert_eq!(v["error_texts"][0]["text"], "RCPT: 550 no");
        assert_eq!(v["error_texts"][0]["count"], 2);
    }
}
