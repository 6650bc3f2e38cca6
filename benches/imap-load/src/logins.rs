//! `logins`: the login-heavy workload of a busy server whose clients reconnect (issue 13).
//! C clients, each in a loop: connect (TLS as `--tls` says, greeting, CAPABILITY), LOGIN,
//! SELECT the mailbox, FETCH the flags of its first `--fetch` messages, LOGOUT, close; for
//! `--duration` seconds after `--warmup` seconds that are not counted. A session counts when
//! it started after the warm-up and ended before the end, so the rate is whole sessions per
//! second. Per step it reports latency (command written to tagged reply; `connect` covers
//! TCP, TLS handshake, greeting and CAPABILITY; `session` the whole cycle).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::client::{quote, Client, Endpoint, Status, DEFAULT_BUFFER};
use crate::stats::{text_table, Stats};
use crate::Common;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients, each reconnecting for every session.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of the same workload before the measured phase, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Messages whose flags each session fetches (the mailbox must hold at least this many).
    #[arg(long, default_value_t = 10)]
    fetch: usize,
}

pub async fn run(args: Args) -> Result<bool> {
    let ep = Arc::new(args.common.endpoint().await?);
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = warm_end + Duration::from_secs_f64(args.duration.max(0.1));
    let args = Arc::new(args);
    let handles: Vec<_> = (0..args.clients)
        .map(|_| {
            let (args, ep) = (args.clone(), ep.clone());
            tokio::spawn(async move { client(&args, &ep, warm_end, end).await })
        })
        .collect();
    let mut all = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => all.merge(s),
            Err(e) => all.error("client", format!("task failed: {e}")),
        }
    }
    let mut report = all.report(end.saturating_duration_since(warm_end));
    report["mode"] = json!("logins");
    report["target"] = json!(args.common.target);
    report["clients"] = json!(args.clients);
    if args.common.json {
        println!("{report}");
    } else {
        print!("{}", text_table(&report));
    }
    Ok(all.total_errors() == 0 && all.ops.get("session").is_some_and(|s| s.ok > 0))
}

/// One client's loop. Steps of sessions that started in the warm-up or ended after the end
/// are dropped, so every counted step belongs to a counted session.
async fn client(args: &Args, ep: &Endpoint, warm_end: Instant, end: Instant) -> Stats {
    let mut stats = Stats::default();
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let mut steps = Stats::default();
        let ok = session(args, ep, &mut steps).await;
        let finished = Instant::now();
        if !ok {
            // A refused or broken connection must not turn into a busy loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if began < warm_end || finished > end {
            continue;
        }
        if ok {
            steps.ok("session", finished - began, 0, 0);
        }
        stats.merge(steps);
    }
    stats
}

/// One connect..LOGOUT cycle; false (with the error recorded) when a step failed.
async fn session(args: &Args, ep: &Endpoint, steps: &mut Stats) -> bool {
    let t = Instant::now();
    let mut c = match Client::connect(ep, None, DEFAULT_BUFFER).await {
        Ok(c) => c,
        Err(e) => {
            steps.error("connect", format!("{e:#}"));
            return false;
        }
    };
    steps.ok("connect", t.elapsed(), 0, 0);
    let common = &args.common;
    let commands: [(&'static str, String, usize); 4] = [
        (
            "login",
            format!("LOGIN {} {}", quote(&common.user), quote(&common.password)),
            0,
        ),
        ("select", format!("SELECT {}", quote(&common.mailbox)), 0),
        (
            "fetch",
            format!("FETCH 1:{} (UID FLAGS)", args.fetch.max(1)),
            args.fetch.max(1),
        ),
        ("logout", "LOGOUT".to_string(), 0),
    ];
    for (name, command, fetched) in commands {
        let t = Instant::now();
        match c.command(&command).await {
            Ok(r) if r.status == Status::Ok => {
                let items = r.fetch_count();
                if items < fetched {
                    steps.error(name, format!("{items} FETCH responses, {fetched} expected"));
                    return false;
                }
                steps.ok(name, t.elapsed(), r.len(), items);
            }
            Ok(r) => {
                steps.error(name, format!("{:?} {}", r.status, r.text));
                return false;
            }
            Err(e) => {
                steps.error(name, format!("{e:#}"));
                return false;
            }
        }
    }
    true
}
