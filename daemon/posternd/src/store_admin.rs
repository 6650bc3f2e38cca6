//! `postern store stats|compact`: space use of the message store and compaction on request.
//! Through the admin socket when posternd runs (it holds the store), else on the store
//! directly (stats read-only; compact takes the store's lock, so the daemon cannot start
//! meanwhile).

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use postern_config::Config;
use postern_store::{CompactReport, ShardStats, Store};

/// Admin socket commands.
pub const STATS: &str = "store-stats";
pub const COMPACT: &str = "store-compact";

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn percent(part: u64, whole: u64) -> u64 {
    (part * 100).checked_div(whole).unwrap_or(0)
}

/// The stats table: one line per shard and a total.
pub fn format_stats(stats: &[ShardStats]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:>8}  {:>12}  {:>12}  {:>12}  {:>5}",
        "shard", "segments", "used", "live", "dead", "dead%"
    );
    let mut total = ShardStats::default();
    for s in stats {
        let _ = writeln!(
            out,
            "{:>5}  {:>8}  {:>12}  {:>12}  {:>12}  {:>4}%",
            s.shard,
            s.segments,
            mib(s.used_bytes),
            mib(s.live_bytes),
            mib(s.dead_bytes),
            percent(s.dead_bytes, s.used_bytes)
        );
        total.segments += s.segments;
        total.used_bytes += s.used_bytes;
        total.live_bytes += s.live_bytes;
        total.dead_bytes += s.dead_bytes;
    }
    let _ = write!(
        out,
        "{:>5}  {:>8}  {:>12}  {:>12}  {:>12}  {:>4}%",
        "all",
        total.segments,
        mib(total.used_bytes),
        mib(total.live_bytes),
        mib(total.dead_bytes),
        percent(total.dead_bytes, total.used_bytes)
    );
    out
}

pub fn format_compact(r: &CompactReport) -> String {
    format!(
        "compacted: {} segments rewritten, {} removed, {} given back, {} copied, {:.1} s",
        r.segments_rewritten,
        r.segments_removed,
        mib(r.bytes_reclaimed),
        mib(r.bytes_copied),
        r.elapsed.as_secs_f64()
    )
}

/// Runs an admin command against the daemon's store (blocking work off the runtime).
pub async fn serve(store: &Store, command: &str) -> String {
    let store = store.clone();
    let compact = command == COMPACT;
    let result = tokio::task::spawn_blocking(move || {
        if compact {
            store.compact().map(|r| format_compact(&r))
        } else {
            store.stats().map(|s| format_stats(&s))
        }
    })
    .await;
    match result {
        Ok(Ok(text)) => format!("{text}\n"),
        Ok(Err(e)) => format!("error {e}\n"),
        Err(e) => format!("error {e}\n"),
    }
}

/// `postern store stats` (compact = false) or `postern store compact`.
pub fn run(config: &Config, compact: bool) -> Result<()> {
    let command = if compact { COMPACT } else { STATS };
    // A compaction pass is throttled and may take minutes on a large store.
    let timeout = std::time::Duration::from_secs(if compact { 24 * 3600 } else { 60 });
    if let Some(reply) = crate::admin::request_text(&config.admin_socket_path(), command, timeout) {
        if let Some(e) = reply.strip_prefix("error ") {
            bail!("posternd: {}", e.trim());
        }
        println!("{}", reply.trim_end());
        return Ok(());
    }
    let mut options = crate::server::store_options(config, None);
    options.read_only = !compact;
    // The CLI runs one pass itself; no background passes.
    options.maintenance.compact_interval = None;
    let store = Store::open(options).context("opening the store")?;
    let text = if compact {
        format_compact(&store.compact()?)
    } else {
        format_stats(&store.stats()?)
    };
    store.shutdown();
    println!("{text}");
    Ok(())
}
