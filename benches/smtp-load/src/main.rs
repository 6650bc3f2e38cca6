//! smtp-load: an SMTP load generator for benchmarking Postern against Postfix and smtp-sink.
//!
//! N concurrent clients send M messages in total, each of exactly S bytes (a plain RFC 5322
//! message), optionally after STARTTLS, reusing connections or opening one per message. The
//! latency of one message runs from writing MAIL to reading the final reply after the dot.
//!
//! Certificates are never verified: the tool talks to loopback servers with self-signed
//! certificates. Signatures in the handshake are still checked, so the TLS work is the real one.

mod message;
mod session;
mod stats;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::session::{Session, TxError};
use crate::stats::{Report, WorkerStats};

/// After this many connection failures in a row a client stops: the target is refusing it.
const MAX_CONSECUTIVE_CONNECT_FAILURES: u32 = 5;
/// After this many failed transactions in a row a client stops: the target rejects everything.
const MAX_CONSECUTIVE_REJECTIONS: u32 = 100;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "smtp-load",
    about = "SMTP load generator: N concurrent clients send M messages of S bytes"
)]
struct Args {
    /// Server to load, HOST:PORT.
    #[arg(long)]
    target: String,
    /// Concurrent clients (each one connection at a time).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Messages to send in total over all clients (measured phase).
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Size of each message in bytes (headers + body, without the final dot line).
    #[arg(long, default_value_t = 10240)]
    size: usize,
    /// Issue STARTTLS after EHLO on every connection, then EHLO again.
    #[arg(long)]
    starttls: bool,
    /// Keep each client's connection for many transactions (the default).
    #[arg(long, overrides_with = "no_reuse")]
    reuse: bool,
    /// Open a new connection for every message (QUIT after each).
    #[arg(long, overrides_with = "reuse")]
    no_reuse: bool,
    /// Envelope sender.
    #[arg(long, default_value = "load@client.test")]
    from: String,
    /// Envelope recipient.
    #[arg(long, default_value = "rcpt@bench.test")]
    to: String,
    /// Name sent in EHLO.
    #[arg(long, default_value = "client.test")]
    helo: String,
    /// Messages sent before the measured phase and not counted.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Stop issuing new messages after this many seconds of the measured phase, even if
    /// fewer than --messages were sent (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Seconds to wait for any one reply or connection before counting an error.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Tokio worker threads (0 = one per CPU core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Leave Nagle's algorithm on for client sockets (by default TCP_NODELAY is set). With
    /// Nagle on, the EHLO after a resumed TLS handshake waits for the server's delayed ACK of
    /// our Finished (40 ms per connection), a client artefact that would be charged to the server.
    #[arg(long)]
    nagle: bool,
    /// Leave the kernel's delayed ACKs on (by default TCP_QUICKACK is re-armed before every
    /// read, so that a server with Nagle on, such as Postfix, is not stalled for 40 ms by this
    /// client's ACK timer after it sends a TLS session ticket).
    #[arg(long)]
    no_quickack: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What every client shares.
struct Ctx {
    addr: SocketAddr,
    server_name: rustls::pki_types::ServerName<'static>,
    tls: Option<tokio_rustls::TlsConnector>,
    reuse: bool,
    nodelay: bool,
    quickack: bool,
    from: String,
    to: String,
    helo: String,
    template: Vec<u8>,
    id_offset: usize,
    timeout: Duration,
    warmup_left: AtomicU64,
    measured_next: AtomicU64,
    messages: u64,
    deadline: std::sync::OnceLock<Option<Instant>>,
    duration: Option<Duration>,
    id_counter: AtomicU64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smtp-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let rt = builder.build().context("starting the tokio runtime")?;
    let report = rt.block_on(load(args.clone()))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.ok == 0 {
        eprintln!(
            "smtp-load: the target accepted no message ({} errors){}",
            report.errors,
            report
                .first_error()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn load(args: Args) -> Result<Report> {
    let addr = tokio::net::lookup_host(&args.target)
        .await
        .with_context(|| format!("resolving {}", args.target))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.target))?;
    let host = args
        .target
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or("localhost");
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .or_else(|_| rustls::pki_types::ServerName::try_from("localhost".to_string()))
        .context("building the TLS server name")?;
    let tls = if args.starttls {
        Some(tls::connector()?)
    } else {
        None
    };
    let (template, id_offset) = message::build(args.size, &args.from, &args.to)?;
    let reuse = !args.no_reuse;
    let ctx = Arc::new(Ctx {
        addr,
        server_name,
        tls,
        reuse,
        nodelay: !args.nagle,
        quickack: !args.no_quickack,
        from: args.from.clone(),
        to: args.to.clone(),
        helo: args.helo.clone(),
        template,
        id_offset,
        timeout: Duration::from_secs(args.timeout.max(1)),
        warmup_left: AtomicU64::new(args.warmup),
        measured_next: AtomicU64::new(0),
        messages: args.messages,
        deadline: std::sync::OnceLock::new(),
        duration: (args.duration > 0.0).then(|| Duration::from_secs_f64(args.duration)),
        id_counter: AtomicU64::new(0),
    });

    // Every client finishes its share of the warm-up, then all start the measured phase
    // together, so the wall clock covers only measured work.
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let mut handles = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let ctx = ctx.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(worker(ctx, barrier)));
    }
    barrier.wait().await;
    let start = Instant::now();
    let _ = ctx.deadline.set(ctx.duration.map(|d| start + d));
    let mut all = WorkerStats::default();
    for h in handles {
        let s = h.await.context("a client task panicked")?;
        all.merge(s);
    }
    let wall = start.elapsed();
    Ok(Report::new(
        &args.target,
        args.clients,
        args.size,
        args.starttls,
        reuse,
        wall,
        all,
    ))
}

/// One client: a connection at a time, transactions until the shared message budget is spent.
async fn worker(ctx: Arc<Ctx>, barrier: Arc<Barrier>) -> WorkerStats {
    let mut client = Client {
        ctx: ctx.clone(),
        session: None,
        msg: ctx.template.clone(),
        failures_in_row: 0,
        gave_up: false,
    };
    let mut warm = WorkerStats::default();
    while !client.gave_up && take(&ctx.warmup_left) {
        client.one_message(&mut warm).await;
    }
    if !ctx.reuse {
        client.quit().await;
    }
    barrier.wait().await;
    // The deadline is set right after the barrier opens; wait for it to be visible.
    let deadline = loop {
        if let Some(d) = ctx.deadline.get() {
            break *d;
        }
        tokio::task::yield_now().await;
    };
    let mut stats = WorkerStats::default();
    if client.gave_up {
        // Warm-up already showed the target refuses this client; let the measured phase
        // record it instead of silently reporting nothing.
        client.gave_up = false;
        client.failures_in_row = 0;
    }
    loop {
        if client.gave_up || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if ctx.measured_next.fetch_add(1, Ordering::Relaxed) >= ctx.messages {
            break;
        }
        client.one_message(&mut stats).await;
    }
    client.quit().await;
    stats
}

/// Takes one unit from a shared countdown; false once it is empty.
fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

struct Client {
    ctx: Arc<Ctx>,
    session: Option<Session>,
    msg: Vec<u8>,
    failures_in_row: u32,
    gave_up: bool,
}

impl Client {
    async fn one_message(&mut self, stats: &mut WorkerStats) {
        let ctx = self.ctx.clone();
        if self.session.is_none() {
            match Self::connect(&ctx).await {
                Ok(s) => {
                    self.session = Some(s);
                    stats.connections += 1;
                }
                Err(e) => {
                    stats.error(format!("connect: {e:#}"));
                    self.failures_in_row += 1;
                    if self.failures_in_row >= MAX_CONSECUTIVE_CONNECT_FAILURES {
                        self.gave_up = true;
                    }
                    return;
                }
            }
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let id = ctx.id_counter.fetch_add(1, Ordering::Relaxed);
        message::set_id(&mut self.msg, ctx.id_offset, id);
        let started = Instant::now();
        match session.transaction(&ctx.from, &ctx.to, &self.msg).await {
            Ok(()) => {
                stats.ok(started.elapsed(), ctx.template.len());
                self.failures_in_row = 0;
                if !ctx.reuse {
                    self.quit().await;
                }
            }
            Err(TxError::Reply { stage, text }) => {
                stats.error(format!("{stage}: {text}"));
                self.failures_in_row += 1;
                // RFC 5321 4.1.1.5: RSET aborts the transaction and keeps the session.
                let keep = ctx.reuse && !text.starts_with("421") && session.rset().await.is_ok();
                if !keep {
                    self.quit().await;
                }
                if self.failures_in_row >= MAX_CONSECUTIVE_REJECTIONS {
                    self.gave_up = true;
                }
            }
            Err(TxError::Io(e)) => {
                stats.error(format!("connection: {e:#}"));
                self.failures_in_row += 1;
                self.session = None;
                if self.failures_in_row >= MAX_CONSECUTIVE_REJECTIONS {
                    self.gave_up = true;
                }
            }
        }
    }

    async fn connect(ctx: &Ctx) -> Result<Session> {
        let tcp = tokio::time::timeout(ctx.timeout, TcpStream::connect(ctx.addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connecting to {}", ctx.addr))?;
        if ctx.nodelay {
            tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        }
        Session::open(
            tcp,
            &ctx.helo,
            ctx.tls.as_ref().map(|c| (c, ctx.server_name.clone())),
            ctx.timeout,
            ctx.quickack,
        )
        .await
    }

    async fn quit(&mut self) {
        if let Some(s) = self.session.take() {
            s.quit().await;
        }
    }
}

/// Error texts with their counts, most frequent first.
pub fn sorted_errors(map: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}
