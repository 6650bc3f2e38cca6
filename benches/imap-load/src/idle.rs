//! `idle`: K connections, each logged in with the mailbox selected and in IDLE (RFC 2177).
//! Prints one line "ready K" (with failures, if any) on stdout once all are set up, then
//! holds them until SIGTERM or SIGINT and prints a JSON summary (how many were still open).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

use crate::client::{quote, Client, Endpoint};
use crate::Common;

/// Read buffer of an idle connection: it only ever sees short untagged lines.
const IDLE_BUFFER: usize = 4096;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections set up at the same time.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Spread connections over this many loopback source addresses 127.0.0.2.. (0: let the
    /// kernel choose; one address has about 28,000 ephemeral ports).
    #[arg(long, default_value_t = 0)]
    sources: u32,
}

#[derive(Default)]
struct Counters {
    ready: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub async fn run(args: Args) -> Result<bool> {
    let limit = raise_nofile(args.connections as u64 + 256);
    let ep = args.common.endpoint().await?;
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut setups = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let source = (args.sources > 0).then(|| {
            let n = 2 + (i as u32 % args.sources);
            IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n))
        });
        let (common, ep, counters, gate) = (
            args.common.clone(),
            ep.clone(),
            counters.clone(),
            gate.clone(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        setups.push(rx);
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let r = open(&common, &ep, source).await;
            drop(permit);
            match r {
                Ok(mut c) => {
                    counters.ready.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(());
                    // Hold: read whatever the server sends until it closes.
                    while let Ok(true) = c.next_unsolicited().await {}
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = counters.first_error.lock() {
                        f.get_or_insert_with(|| format!("{e:#}"));
                    }
                    let _ = tx.send(());
                }
            }
        });
    }
    for rx in setups {
        let _ = rx.await;
    }
    let setup_s = started.elapsed().as_secs_f64();
    let ready = counters.ready.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let first_error = counters
        .first_error
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_default();
    let mut out = tokio::io::stdout();
    let line = if failed == 0 {
        format!("ready {ready} in {setup_s:.1} s\n")
    } else {
        format!("ready {ready} failed {failed} in {setup_s:.1} s; first error: {first_error}\n")
    };
    out.write_all(line.as_bytes()).await.context("stdout")?;
    out.flush().await.context("stdout")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let summary = json!({
        "mode": "idle",
        "target": args.common.target,
        "connections": args.connections,
        "ready": ready,
        "failed": failed,
        "dropped_while_held": dropped,
        "held_at_end": ready.saturating_sub(dropped),
        "setup_s": setup_s,
        "nofile_limit": limit,
        "first_error": first_error,
    });
    out.write_all(format!("{summary}\n").as_bytes())
        .await
        .context("stdout")?;
    out.flush().await.context("stdout")?;
    Ok(failed == 0 && dropped == 0)
}

async fn open(common: &Common, ep: &Endpoint, source: Option<IpAddr>) -> Result<Client> {
    let mut c = Client::connect(ep, source, IDLE_BUFFER).await?;
    c.login(&common.user, &common.password).await?;
    c.command(&format!("SELECT {}", quote(&common.mailbox)))
        .await?
        .ok("SELECT")?;
    c.idle().await?;
    Ok(c)
}

/// Raises RLIMIT_NOFILE's soft limit to `want` (or the hard limit); returns the soft limit.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let mut new = lim;
            new.rlim_cur = want.min(lim.rlim_max);
            if want > lim.rlim_max {
                // Root may raise the hard limit too.
                let raised = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: want,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    return want;
                }
            }
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return new.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}
