//! Rough group-commit throughput: `cargo run --release -p postern-store --example
//! throughput -- DIR [portable|io_uring] [CONCURRENCY] [MESSAGES] [SIZE]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use postern_store::{AppendRequest, AppendTarget, BackendChoice, Store, StoreOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "store-bench".into());
    let backend = match args.get(2).map(String::as_str) {
        Some("portable") => BackendChoice::Portable,
        Some("io_uring") => BackendChoice::IoUring,
        _ => BackendChoice::Auto,
    };
    let conc: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let total: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let size: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let commits = Arc::new(AtomicU64::new(0));
    let c2 = commits.clone();
    let mut o = StoreOptions::new(&dir);
    o.backend = backend;
    o.on_commit = Some(Arc::new(move |_r: &postern_store::CommitReport| {
        c2.fetch_add(1, Ordering::Relaxed);
    }));
    let store = match Store::open(o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    let mb = match store.ensure_mailbox("bench@x.test", "INBOX", None) {
        Ok(m) => m.id,
        Err(e) => {
            eprintln!("ensure_mailbox failed: {e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    rt.block_on(async {
        let per = total / conc.max(1);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    let req = AppendRequest {
                        body: vec![b'x'; size],
                        internal_date: 0,
                        targets: vec![AppendTarget {
                            mailbox: mb,
                            flags: vec![],
                        }],
                    };
                    if let Err(e) = store.append(0, req).await {
                        eprintln!("append failed: {e}");
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = store.messages(mb).len();
    let c = commits.load(Ordering::Relaxed).max(1);
    println!(
        "{:?}: {n} messages of {size} B in {secs:.2}s = {:.0} msg/s, {c} commits, {:.1} msgs/commit",
        store.backend_kind(),
        n as f64 / secs,
        n as f64 / c as f64
    );
}
