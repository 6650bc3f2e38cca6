//! SIGKILL at random moments while a child process appends (the test binary re-executes
//! itself as the child). Every acknowledged append must be present exactly once after
//! reopening, with its exact bytes; the same store is killed ten times per backend, so
//! recovery is also exercised on top of earlier recoveries.
//!
//! A `harness = false` test (daemon/store/Cargo.toml): `main` is the parent, or the child
//! when the environment names the store to append to. No test passes by doing nothing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_store::{AppendRequest, AppendTarget, BackendChoice, Store, StoreOptions};

const ENV_DIR: &str = "POSTERN_STORE_CRASH_DIR";
const ENV_BACKEND: &str = "POSTERN_STORE_CRASH_BACKEND";
const ENV_SEED: &str = "POSTERN_STORE_CRASH_SEED";

fn backend_from(s: &str) -> BackendChoice {
    match s {
        "portable" => BackendChoice::Portable,
        _ => BackendChoice::IoUring,
    }
}

fn store_opts(dir: &str, backend: BackendChoice) -> StoreOptions {
    let mut o = StoreOptions::new(dir);
    o.backend = backend;
    o.shards = 2;
    // Small segments: the kill also lands around segment creation.
    o.segment_bytes = 64 * 1024;
    o
}

const TEST_NAME: &str = "sigkill_loses_nothing_acknowledged";

fn main() {
    if let (Ok(dir), Ok(backend), Ok(seed)) = (
        std::env::var(ENV_DIR),
        std::env::var(ENV_BACKEND),
        std::env::var(ENV_SEED),
    ) {
        return crash_child(&dir, &backend, &seed);
    }
    common::run_single_test(TEST_NAME, sigkill_loses_nothing_acknowledged);
}

/// Child mode: append forever from several tasks, printing each acknowledgement.
fn crash_child(dir: &str, backend: &str, seed: &str) {
    let seed: u64 = seed.parse().unwrap();
    let store = Store::open(store_opts(dir, backend_from(backend))).unwrap();
    let mb = store
        .ensure_mailbox("crash@x.test", "INBOX", None)
        .unwrap()
        .id;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut next = common::rng(seed * 1000 + t);
                for n in 0u64.. {
                    let size = (next() % 6000) as usize;
                    let tag = format!("seed={seed} task={t} n={n};");
                    let mut body = tag.clone().into_bytes();
                    body.extend((0..size).map(|i| b"abcdefghij"[(i + n as usize) % 10]));
                    let crc = crc32c::crc32c(&body);
                    let req = AppendRequest {
                        body,
                        internal_date: n as i64,
                        targets: vec![AppendTarget {
                            mailbox: mb,
                            flags: vec![],
                        }],
                    };
                    let a = store.append((t % 2) as usize, req).await.unwrap();
                    let line = format!("ACK {} {crc} {tag}\n", a[0].uid);
                    std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
                    if n % 5 == 4 {
                        let ms = store
                            .set_flags(mb, a[0].uid, vec!["\\Seen".into()])
                            .await
                            .unwrap();
                        let line = format!("FLAG {} {ms}\n", a[0].uid);
                        std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn sigkill_loses_nothing_acknowledged() {
    let exe = std::env::current_exe().unwrap();
    for backend in ["io_uring", "portable"] {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().to_str().unwrap().to_string();
        // uid -> (crc, tag) of everything ever acknowledged, across all generations.
        let mut acked: HashMap<u32, (u32, String)> = HashMap::new();
        let mut flagged: HashMap<u32, u64> = HashMap::new();
        for seed in 0..10u64 {
            let mut child = Command::new(&exe)
                .env(ENV_DIR, &dir_s)
                .env(ENV_BACKEND, backend)
                .env(ENV_SEED, seed.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            // Wait for the first acknowledgement, then kill at a seed-chosen moment.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut lines = Vec::new();
            loop {
                let l = rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("child made no progress");
                let is_ack = l.starts_with("ACK ");
                lines.push(l);
                if is_ack {
                    break;
                }
                assert!(Instant::now() < deadline);
            }
            let delay = common::rng(seed + 77)() % 120;
            std::thread::sleep(Duration::from_millis(delay));
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap();
            lines.extend(rx.try_iter());
            let mut new_acks = 0;
            for l in &lines {
                let parts: Vec<&str> = l.splitn(4, ' ').collect();
                match parts.as_slice() {
                    ["ACK", uid, crc, tag] => {
                        let uid: u32 = uid.parse().unwrap();
                        let prev = acked.insert(uid, (crc.parse().unwrap(), tag.to_string()));
                        assert!(prev.is_none(), "uid {uid} acknowledged twice");
                        new_acks += 1;
                    }
                    ["FLAG", uid, ms] => {
                        flagged.insert(uid.parse().unwrap(), ms.parse().unwrap());
                    }
                    _ => {}
                }
            }
            assert!(new_acks > 0);

            // Reopen and check every acknowledged message, exactly once, exact bytes.
            let store = Store::open(store_opts(&dir_s, backend_from(backend))).unwrap();
            let mb = store.find_mailbox("crash@x.test", "INBOX").unwrap();
            let metas = store.messages(mb.id);
            let mut by_tag: HashMap<String, u32> = HashMap::new();
            let mut by_uid = HashMap::new();
            for m in &metas {
                let body = store.read_message(m).unwrap();
                let end = body.iter().position(|&b| b == b';').unwrap() + 1;
                let tag = String::from_utf8(body[..end].to_vec()).unwrap();
                assert!(
                    by_tag.insert(tag.clone(), m.uid).is_none(),
                    "{backend} seed {seed}: body {tag} stored twice"
                );
                by_uid.insert(m.uid, (crc32c::crc32c(&body), tag, m));
            }
            for (uid, (crc, tag)) in &acked {
                let (got_crc, got_tag, meta) = by_uid
                    .get(uid)
                    .unwrap_or_else(|| panic!("{backend} seed {seed}: acked uid {uid} lost"));
                assert_eq!((got_crc, got_tag), (crc, tag), "uid {uid}");
                if let Some(ms) = flagged.get(uid) {
                    assert_eq!(meta.flags, vec!["\\Seen"], "uid {uid} flags");
                    assert!(meta.modseq >= *ms);
                }
            }
            // Unacknowledged-but-committed messages may appear; they then count as
            // stored and must keep their UID in later generations.
            for (uid, (crc, tag, _)) in &by_uid {
                acked.entry(*uid).or_insert((*crc, tag.clone()));
            }
            eprintln!(
                "{backend} seed {seed}: killed after {delay} ms, {new_acks} new acks, {} stored",
                metas.len()
            );
            assert!(mb.uidnext as usize > metas.len());
            assert_eq!(mb.exists as usize, metas.len());
        }
    }
}
