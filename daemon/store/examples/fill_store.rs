//! Fills a store with many messages quickly (big group commits), for the start-time and
//! compaction benchmarks (benches/start-time.sh, benches/compaction.sh).
//!
//! ```sh
//! cargo run --release -p postern-store --example fill_store -- \
//!     ROOT MESSAGES SIZE [SHARDS] [EXPUNGE_PERCENT] [SEGMENT_BYTES]
//! ```
//! Messages go to INBOX of bench@bench.test; with EXPUNGE_PERCENT that share of them is
//! expunged afterwards (dead space for the compactor). The store is stopped cleanly at the
//! end, so it leaves a checkpoint, unless FILL_EXIT_WITHOUT_STOP=1 (exits as a crash would,
//! every message durable: the checkpoint stays behind the log). Prints one line: messages,
//! bytes, seconds.

use std::time::Instant;

use postern_store::{AppendRequest, AppendTarget, Store, StoreOptions};

fn arg(n: usize) -> Option<u64> {
    std::env::args().nth(n).and_then(|a| a.parse().ok())
}

fn main() {
    let Some(root) = std::env::args().nth(1) else {
        eprintln!(
            "usage: fill_store ROOT MESSAGES SIZE [SHARDS] [EXPUNGE_PERCENT] [SEGMENT_BYTES]"
        );
        std::process::exit(2);
    };
    let messages = arg(2).unwrap_or(10_000);
    let size = arg(3).unwrap_or(10_240) as usize;
    let shards = arg(4).unwrap_or(2) as usize;
    let expunge_percent = arg(5).unwrap_or(0);
    let mut opts = StoreOptions::new(&root);
    opts.shards = shards;
    if let Some(seg) = arg(6) {
        opts.segment_bytes = seg;
    }
    // Filling is one long write: checkpoint at the end only.
    opts.maintenance.checkpoint_bytes = u64::MAX;
    opts.maintenance.compact_interval = None;
    let store = Store::open(opts).expect("open store");
    let inbox = store
        .ensure_mailbox("bench@bench.test", "INBOX", None)
        .expect("mailbox")
        .id;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shards.max(2))
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut line = Vec::with_capacity(78);
    let mut template = Vec::with_capacity(size);
    template.extend_from_slice(b"From: <load@client.test>\r\nTo: <bench@bench.test>\r\n\r\n");
    while template.len() < size {
        line.clear();
        line.extend((0..76).map(|i| b'a' + ((template.len() + i) % 26) as u8));
        line.extend_from_slice(b"\r\n");
        template.extend_from_slice(&line);
    }
    template.truncate(size);
    const BATCH: u64 = 256;
    rt.block_on(async {
        let mut next = 0u64;
        while next < messages {
            let mut tasks = Vec::new();
            for shard in 0..shards {
                let n = BATCH.min(messages.saturating_sub(next));
                if n == 0 {
                    break;
                }
                let reqs: Vec<AppendRequest> = (next..next + n)
                    .map(|i| {
                        // Distinct bytes per message, headers left intact.
                        let mut body = template.clone();
                        let tag = format!("{i:016}");
                        let at = body.len() - 18;
                        body[at..at + 16].copy_from_slice(tag.as_bytes());
                        AppendRequest {
                            body,
                            internal_date: 1_700_000_000 + i as i64,
                            targets: vec![AppendTarget {
                                mailbox: inbox,
                                flags: vec![],
                            }],
                        }
                    })
                    .collect();
                next += n;
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for r in store.append_all(shard, reqs).await {
                        r.expect("append");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
        if expunge_percent > 0 {
            let uids: Vec<u32> = store
                .messages(inbox)
                .iter()
                .map(|m| m.uid)
                .filter(|u| u64::from(*u) % 100 < expunge_percent)
                .collect();
            for chunk in uids.chunks(10_000) {
                store.expunge(inbox, chunk.to_vec()).await.expect("expunge");
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "filled {messages} messages of {size} bytes ({:.2} GB) in {secs:.1} s",
        (messages as f64 * size as f64) / 1e9
    );
    if std::env::var("FILL_EXIT_WITHOUT_STOP").is_ok_and(|v| v == "1") {
        std::process::exit(0);
    }
    store.shutdown();
}
