//! `mix`: C clients, each logged in with the large mailbox selected, run a weighted mix of
//! operations for D seconds after a warm-up. Every operation checks its answer: a FETCH of a
//! range must return one FETCH response per message, so a server cannot look fast by
//! answering less.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::sync::Barrier;

use crate::client::{quote, Client, Endpoint, Status};
use crate::message::{self, Rng, SUBJECT_WORDS};
use crate::stats::{text_table, Stats};
use crate::{parse_weights, Common};

/// Operation names, in the order of `Op`.
const NAMES: [&str; 9] = [
    "select",
    "fetch_headers",
    "fetch_flags",
    "fetch_body",
    "search_subject",
    "search_text",
    "store",
    "append",
    "noop",
];

const DEFAULT_WEIGHTS: &str = "select=2,fetch_headers=25,fetch_flags=10,fetch_body=20,\
search_subject=3,search_text=5,store=15,append=10,noop=10";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients (one connection each).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds of the same mix before the measured phase, not counted.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Relative weights, "op=w,..." of select, fetch_headers, fetch_flags, fetch_body,
    /// search_subject, search_text, store, append, noop.
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    weights: String,
    /// Messages per header FETCH (UID range).
    #[arg(long, default_value_t = 50)]
    header_range: usize,
    /// Messages per FLAGS FETCH (sequence range).
    #[arg(long, default_value_t = 500)]
    flags_range: usize,
    /// Messages per body TEXT search (UID range).
    #[arg(long, default_value_t = 500)]
    text_range: usize,
    /// Mailbox the APPENDs go to (created if missing).
    #[arg(long, default_value = "Bench-append")]
    append_mailbox: String,
    /// Seed of the operation sequence and of appended messages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy)]
enum Op {
    Select,
    FetchHeaders,
    FetchFlags,
    FetchBody,
    SearchSubject,
    SearchText,
    Store,
    Append,
    Noop,
}

const OPS: [Op; 9] = [
    Op::Select,
    Op::FetchHeaders,
    Op::FetchFlags,
    Op::FetchBody,
    Op::SearchSubject,
    Op::SearchText,
    Op::Store,
    Op::Append,
    Op::Noop,
];

struct Shared {
    args: Args,
    ep: Endpoint,
    /// UIDs of the mailbox at the start, ascending.
    uids: Vec<u32>,
    cumulative: Vec<u32>,
    warm_end: std::sync::OnceLock<Instant>,
}

pub async fn run(args: Args) -> Result<bool> {
    let weights = parse_weights(&args.weights, &NAMES)?;
    let cumulative: Vec<u32> = weights
        .iter()
        .scan(0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect();
    let ep = args.common.endpoint().await?;
    // Setup, not measured: the append mailbox and the UID list.
    let mut c = args.common.session(&ep).await?;
    let _ = c
        .command(&format!("CREATE {}", quote(&args.append_mailbox)))
        .await?;
    c.command(&format!("SELECT {}", quote(&args.common.mailbox)))
        .await?
        .ok("SELECT")?;
    let mut uids = c
        .command("UID SEARCH ALL")
        .await?
        .ok("UID SEARCH ALL")?
        .search_hits();
    uids.sort_unstable();
    c.logout().await;
    let need = args.header_range.max(args.flags_range).max(args.text_range);
    if uids.len() < need {
        bail!(
            "the mailbox has {} messages; the ranges need at least {need}",
            uids.len()
        );
    }
    let shared = Arc::new(Shared {
        args: args.clone(),
        ep,
        uids,
        cumulative,
        warm_end: std::sync::OnceLock::new(),
    });
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let mut handles = Vec::new();
    for id in 0..args.clients {
        let (shared, barrier) = (shared.clone(), barrier.clone());
        handles.push(tokio::spawn(
            async move { worker(id, shared, barrier).await },
        ));
    }
    barrier.wait().await;
    let warm_end = Instant::now() + Duration::from_secs_f64(args.warmup.max(0.0));
    let _ = shared.warm_end.set(warm_end);
    let mut all = Stats::default();
    let mut failures = Vec::new();
    for h in handles {
        match h.await.context("a client task panicked")? {
            Ok(s) => all.merge(s),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let wall = warm_end.elapsed();
    let mut report = all.report(wall);
    report["mode"] = json!("mix");
    report["target"] = json!(args.common.target);
    report["clients"] = json!(args.clients);
    report["messages"] = json!(shared.uids.len());
    report["weights"] = json!(args.weights);
    report["client_failures"] = json!(failures);
    if args.common.json {
        println!("{report}");
    } else {
        print!("{}", text_table(&report));
        for f in &failures {
            println!("client failed: {f}");
        }
    }
    Ok(failures.is_empty() && all.total_ok() > 0)
}

async fn worker(id: usize, shared: Arc<Shared>, barrier: Arc<Barrier>) -> Result<Stats> {
    let args = &shared.args;
    let connected = connect(&shared).await;
    barrier.wait().await;
    let mut c = connected?;
    let warm_end = loop {
        if let Some(t) = shared.warm_end.get() {
            break *t;
        }
        tokio::task::yield_now().await;
    };
    let end = warm_end + Duration::from_secs_f64(args.duration.max(0.1));
    let mut rng = Rng::new(args.seed.wrapping_mul(1_000_003) ^ id as u64);
    let mut warm = Stats::default();
    let mut stats = Stats::default();
    let mut appended = 0u64;
    let mut broken = false;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if broken {
            c = connect(&shared).await?;
            broken = false;
        }
        let total = *shared.cumulative.last().unwrap_or(&1);
        let pick = rng.below(u64::from(total)) as u32;
        let idx = shared
            .cumulative
            .iter()
            .position(|&c| pick < c)
            .unwrap_or(0);
        let op = OPS[idx];
        let name = NAMES[idx];
        let target = if now < warm_end {
            &mut warm
        } else {
            &mut stats
        };
        let t = Instant::now();
        match one(&shared, &mut c, op, &mut rng, id, &mut appended).await {
            Ok(Ok((bytes, items))) => target.ok(name, t.elapsed(), bytes, items),
            Ok(Err(text)) => target.error(name, text),
            Err(e) => {
                target.error(name, format!("{e:#}"));
                broken = true;
            }
        }
    }
    c.logout().await;
    Ok(stats)
}

async fn connect(shared: &Shared) -> Result<Client> {
    let mut c = shared.args.common.session(&shared.ep).await?;
    c.command(&format!("SELECT {}", quote(&shared.args.common.mailbox)))
        .await?
        .ok("SELECT")?;
    Ok(c)
}

/// One operation. Outer error: the connection is unusable. Inner error: a wrong answer.
async fn one(
    shared: &Shared,
    c: &mut Client,
    op: Op,
    rng: &mut Rng,
    id: usize,
    appended: &mut u64,
) -> Result<std::result::Result<(usize, usize), String>> {
    let args = &shared.args;
    let uids = &shared.uids;
    let n = uids.len();
    let range = |rng: &mut Rng, len: usize| {
        let first = rng.below((n - len + 1) as u64) as usize;
        (first, first + len - 1)
    };
    let (r, expect) = match op {
        Op::Select => {
            let r = c
                .command(&format!("SELECT {}", quote(&args.common.mailbox)))
                .await?;
            let exists = r.exists().unwrap_or(0) as usize;
            if r.status == Status::Ok && exists < n {
                return Ok(Err(format!(
                    "SELECT reported {exists} messages, expected {n}"
                )));
            }
            let len = r.len();
            return Ok(check(r.status, &r.text).map(|_| (len, exists)));
        }
        Op::FetchHeaders => {
            let (a, b) = range(rng, args.header_range);
            let r = c
                .command(&format!(
                    "UID FETCH {}:{} (UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])",
                    uids[a], uids[b]
                ))
                .await?;
            (r, Some(b - a + 1))
        }
        Op::FetchFlags => {
            let (a, b) = range(rng, args.flags_range);
            let r = c
                .command(&format!("FETCH {}:{} (UID FLAGS)", a + 1, b + 1))
                .await?;
            (r, Some(b - a + 1))
        }
        Op::FetchBody => {
            let u = uids[rng.below(n as u64) as usize];
            let r = c.command(&format!("UID FETCH {u} (BODY.PEEK[])")).await?;
            (r, Some(1))
        }
        Op::SearchSubject => {
            let word = rng.pick(SUBJECT_WORDS);
            let r = c
                .command(&format!("UID SEARCH SUBJECT {}", quote(word)))
                .await?;
            let hits = r.search_hits().len();
            let len = r.len();
            return Ok(check(r.status, &r.text).map(|_| (len, hits)));
        }
        Op::SearchText => {
            let (a, b) = range(rng, args.text_range);
            let word = message::rare_word(rng);
            let r = c
                .command(&format!(
                    "UID SEARCH UID {}:{} TEXT {}",
                    uids[a],
                    uids[b],
                    quote(&word)
                ))
                .await?;
            let hits = r.search_hits().len();
            let len = r.len();
            return Ok(check(r.status, &r.text).map(|_| (len, hits)));
        }
        Op::Store => {
            let u = uids[rng.below(n as u64) as usize];
            let sign = if rng.below(2) == 0 { '+' } else { '-' };
            let r = c
                .command(&format!("UID STORE {u} {sign}FLAGS (\\Seen)"))
                .await?;
            // The server answers with the new flags (RFC 9051 6.4.6) unless it had nothing to
            // change; both are right, so the count is not checked.
            (r, None)
        }
        Op::Append => {
            // Message numbers far beyond any loaded mailbox, distinct per client.
            let index = 1_000_000_000 + (id as u64) * 10_000_000 + *appended;
            *appended += 1;
            let m = message::generate(args.seed, index, &args.common.user);
            let r = c
                .append(
                    &args.append_mailbox,
                    "\\Seen",
                    Some(&m.internal_date),
                    &m.bytes,
                )
                .await?;
            if r.status != Status::Ok {
                // A server that rejects an APPEND with a non-synchronising literal may read
                // the literal as commands (Dovecot does): start over on a new connection.
                bail!("APPEND: {:?} {}", r.status, r.text);
            }
            return Ok(Ok((r.len() + m.bytes.len(), 1)));
        }
        Op::Noop => {
            let r = c.command("NOOP").await?;
            (r, None)
        }
    };
    check(r.status, &r.text)
        .and_then(|_| {
            let got = r.fetch_count();
            match expect {
                Some(e) if got < e => Err(format!("{got} FETCH responses, expected {e}")),
                _ => Ok((r.len(), got)),
            }
        })
        .map(Ok)
        .or_else(|e| Ok(Err(e)))
}

fn check(status: Status, text: &str) -> std::result::Result<(), String> {
    if status == Status::Ok {
        Ok(())
    } else {
        Err(format!(
            "{status:?} {}",
            text.chars().take(120).collect::<String>()
        ))
    }
}
