//! `load`: APPEND generated messages. One client keeps the order of messages (message i gets
//! UID i+1 in an empty mailbox on any server); with LITERAL+ (RFC 7888) the APPENDs of a client
//! are pipelined, and the server answers them in order (RFC 9051 5.5), so the order holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::client::{quote, Client, Endpoint, Status};
use crate::stats::{text_table, Stats};
use crate::{message, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Messages to append.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Number of the first message (messages are numbered; the same number and seed give the
    /// same bytes).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Concurrent connections. 1 keeps UID order equal to message order.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// APPENDs in flight per connection (needs LITERAL+; otherwise 1).
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// Seed of the generated messages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The To: address of the messages (default: --user).
    #[arg(long)]
    to: Option<String>,
    /// CREATE the mailbox first (an existing one is fine).
    #[arg(long)]
    create: bool,
}

pub async fn run(args: Args) -> Result<bool> {
    let ep = args.common.endpoint().await?;
    if args.create {
        let mut c = args.common.session(&ep).await?;
        // NO [ALREADYEXISTS] (RFC 5530) is expected on a second run.
        let _ = c
            .command(&format!("CREATE {}", quote(&args.common.mailbox)))
            .await?;
        c.logout().await;
    }
    let next = Arc::new(AtomicU64::new(args.start));
    let end = args.start + args.count;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.clients.max(1) {
        let (args, ep, next, done) = (args.clone(), ep.clone(), next.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            client(&args, &ep, &next, end, &done).await
        }));
    }
    let progress = {
        let done = done.clone();
        let count = args.count;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed);
                let s = started.elapsed().as_secs_f64();
                eprintln!("imap-load: appended {d}/{count} ({:.0}/s)", d as f64 / s);
            }
        })
    };
    let mut all = Stats::default();
    let mut failure = None;
    for h in handles {
        match h.await.context("a client task panicked")? {
            Ok(s) => all.merge(s),
            Err(e) => failure = Some(e),
        }
    }
    progress.abort();
    let wall = started.elapsed();
    let mut report = all.report(wall);
    report["mode"] = json!("load");
    report["target"] = json!(args.common.target);
    report["mailbox"] = json!(args.common.mailbox);
    report["count"] = json!(args.count);
    report["clients"] = json!(args.clients);
    if args.common.json {
        println!("{report}");
    } else {
        print!("{}", text_table(&report));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(all.total_errors() == 0 && all.total_ok() == args.count)
}

async fn client(
    args: &Args,
    ep: &Endpoint,
    next: &AtomicU64,
    end: u64,
    done: &AtomicU64,
) -> Result<Stats> {
    let mut c: Client = args.common.session(ep).await?;
    let to = args.to.clone().unwrap_or_else(|| args.common.user.clone());
    let window = if c.has_cap("LITERAL+") {
        args.pipeline.max(1)
    } else {
        1
    };
    let mut stats = Stats::default();
    let mut inflight: VecDeque<(String, Instant)> = VecDeque::new();
    let take = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        (i < end).then_some(i)
    };
    if window == 1 {
        while let Some(i) = take() {
            let m = message::generate(args.seed, i, &to);
            let t = Instant::now();
            let r = c
                .append(&args.common.mailbox, "", Some(&m.internal_date), &m.bytes)
                .await?;
            record(&mut stats, r.status, &r.text, t, m.bytes.len());
            done.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        let mut exhausted = false;
        loop {
            while !exhausted && inflight.len() < window {
                match take() {
                    Some(i) => {
                        let m = message::generate(args.seed, i, &to);
                        let t = Instant::now();
                        let tag = c
                            .send_append_nonsync(
                                &args.common.mailbox,
                                "",
                                Some(&m.internal_date),
                                &m.bytes,
                            )
                            .await?;
                        inflight.push_back((tag, t));
                    }
                    None => exhausted = true,
                }
            }
            let Some((tag, t)) = inflight.pop_front() else {
                break;
            };
            let (got, r) = c.read_tagged().await?;
            if got != tag {
                bail!("APPEND completions out of order: {got} before {tag}");
            }
            record(&mut stats, r.status, &r.text, t, 0);
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    c.logout().await;
    Ok(stats)
}

fn record(stats: &mut Stats, status: Status, text: &str, t: Instant, bytes: usize) {
    if status == Status::Ok {
        stats.ok("append", t.elapsed(), bytes, 1);
    } else {
        stats.error("append", format!("{status:?} {text}"));
    }
}
