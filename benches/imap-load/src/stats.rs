//! Latency and counters per operation, merged over clients.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

/// Distinct error texts kept; the rest are only counted.
const MAX_ERROR_KINDS: usize = 50;

#[derive(Default, Clone)]
pub struct OpStats {
    pub ok: u64,
    pub errors: u64,
    /// Latency of each successful operation in microseconds.
    pub latencies_us: Vec<u64>,
    /// Bytes received in the responses.
    pub bytes: u64,
    /// Items returned (FETCH responses, SEARCH hits), to compare servers' answers.
    pub items: u64,
}

#[derive(Default)]
pub struct Stats {
    pub ops: BTreeMap<&'static str, OpStats>,
    pub error_texts: HashMap<String, u64>,
}

impl Stats {
    pub fn ok(&mut self, op: &'static str, latency: Duration, bytes: usize, items: usize) {
        let s = self.ops.entry(op).or_default();
        s.ok += 1;
        s.bytes += bytes as u64;
        s.items += items as u64;
        s.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, op: &'static str, text: String) {
        self.ops.entry(op).or_default().errors += 1;
        let text = format!("{op}: {text}");
        if self.error_texts.len() < MAX_ERROR_KINDS || self.error_texts.contains_key(&text) {
            *self.error_texts.entry(text).or_insert(0) += 1;
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (k, v) in other.ops {
            let s = self.ops.entry(k).or_default();
            s.ok += v.ok;
            s.errors += v.errors;
            s.bytes += v.bytes;
            s.items += v.items;
            s.latencies_us.extend(v.latencies_us);
        }
        for (k, v) in other.error_texts {
            if self.error_texts.len() < MAX_ERROR_KINDS || self.error_texts.contains_key(&k) {
                *self.error_texts.entry(k).or_insert(0) += v;
            }
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.ops.values().map(|s| s.errors).sum()
    }

    pub fn total_ok(&self) -> u64 {
        self.ops.values().map(|s| s.ok).sum()
    }

    /// JSON: per operation and "total" (all operations together), rates over `wall`.
    pub fn report(&mut self, wall: Duration) -> Value {
        let secs = wall.as_secs_f64().max(1e-9);
        let mut ops = serde_json::Map::new();
        let mut all = Vec::new();
        for (name, s) in self.ops.iter_mut() {
            s.latencies_us.sort_unstable();
            all.extend_from_slice(&s.latencies_us);
            ops.insert(
                name.to_string(),
                summary(s.ok, s.errors, &s.latencies_us, secs, s.bytes, s.items),
            );
        }
        all.sort_unstable();
        let bytes = self.ops.values().map(|s| s.bytes).sum();
        let items = self.ops.values().map(|s| s.items).sum();
        let total = summary(
            self.total_ok(),
            self.total_errors(),
            &all,
            secs,
            bytes,
            items,
        );
        let mut errors: Vec<(&String, &u64)> = self.error_texts.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        json!({
            "wall_s": secs,
            "total": total,
            "ops": ops,
            "error_texts": errors.iter().map(|(t, c)| json!({"text": t, "count": c})).collect::<Vec<_>>(),
        })
    }
}

fn summary(ok: u64, errors: u64, sorted_us: &[u64], secs: f64, bytes: u64, items: u64) -> Value {
    let ms = |p: f64| percentile(sorted_us, p).map(|us| us as f64 / 1000.0);
    let mean = if sorted_us.is_empty() {
        None
    } else {
        Some(sorted_us.iter().map(|&v| v as f64).sum::<f64>() / sorted_us.len() as f64 / 1000.0)
    };
    json!({
        "ok": ok,
        "errors": errors,
        "ops_per_s": ok as f64 / secs,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
        "mean_ms": mean,
        "bytes_per_op": if ok > 0 { bytes as f64 / ok as f64 } else { 0.0 },
        "items_per_op": if ok > 0 { items as f64 / ok as f64 } else { 0.0 },
    })
}

/// Nearest-rank percentile of sorted values (p in 0..=1).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A human-readable table of a JSON report made by `to_json`.
pub fn text_table(v: &Value) -> String {
    let mut s = String::new();
    let f = |x: &Value| x.as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
    s.push_str(&format!(
        "{:<16} {:>9} {:>7} {:>10} {:>9} {:>9} {:>10}\n",
        "operation", "ok", "errors", "ops/s", "p50 ms", "p99 ms", "items/op"
    ));
    let mut row = |name: &str, o: &Value| {
        s.push_str(&format!(
            "{:<16} {:>9} {:>7} {:>10} {:>9} {:>9} {:>10}\n",
            name,
            o["ok"].to_string(),
            o["errors"].to_string(),
            f(&o["ops_per_s"]),
            f(&o["p50_ms"]),
            f(&o["p99_ms"]),
            f(&o["items_per_op"]),
        ));
    };
    if let Some(ops) = v["ops"].as_object() {
        for (name, o) in ops {
            row(name, o);
        }
    }
    row("total", &v["total"]);
    if let Some(errs) = v["error_texts"].as_array() {
        for e in errs {
            s.push_str(&format!(
                "error x{}: {}\n",
                e["count"],
                e["text"].as_str().unwrap_or("")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&[], 0.5), None);
        let mut a = Stats::default();
        a.ok("noop", Duration::from_millis(1), 10, 0);
        a.ok("noop", Duration::from_millis(3), 10, 0);
        let mut b = Stats::default();
        b.ok("fetch", Duration::from_millis(2), 100, 50);
        b.error("fetch", "NO x".into());
        a.merge(b);
        let j = a.report(Duration::from_secs(2));
        assert_eq!(j["total"]["ok"], 3);
        assert_eq!(j["total"]["errors"], 1);
        assert_eq!(j["total"]["ops_per_s"], 1.5);
        assert_eq!(j["ops"]["noop"]["p99_ms"], 3.0);
        assert_eq!(j["ops"]["fetch"]["items_per_op"], 50.0);
        assert_eq!(j["error_texts"][0]["text"], "fetch: NO x");
        assert!(text_table(&j).contains("total"));
    }
}
