//! SIGKILL at random moments while a child process delivers, copies, moves, expunges, flags,
//! compacts and checkpoints (the test binary re-executes itself as the child). After every
//! kill the store is reopened and must hold every acknowledged message exactly once with its
//! exact bytes, must not show any message whose expunge was acknowledged, must never hand
//! out a UID again, and must give the same answer with and without its checkpoint. The same
//! store goes through all rounds, so compactions run on top of earlier compactions and
//! recoveries.
//!
//! A `harness = false` test (daemon/store/Cargo.toml), like tests/crash.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_store::{
    AppendRequest, AppendTarget, BackendChoice, FlagOp, MaintenanceOptions, Store, StoreOptions,
};

const ENV_DIR: &str = "POSTERN_COMPACTION_CRASH_DIR";
const ENV_SEED: &str = "POSTERN_COMPACTION_CRASH_SEED";
const TEST_NAME: &str = "sigkill_during_compaction_loses_and_resurrects_nothing";
const ACCOUNT: &str = "crash@x.test";
const MAILBOXES: [&str; 2] = ["INBOX", "Archive"];
const ROUNDS: u64 = 16;

fn store_opts(dir: &str) -> StoreOptions {
    let mut o = StoreOptions::new(dir);
    o.backend = BackendChoice::Auto;
    o.shards = 2;
    // Small segments: many sealed ones to compact, and kills land around their rewrite.
    o.segment_bytes = 64 * 1024;
    o.maintenance = MaintenanceOptions {
        checkpoint_bytes: 128 * 1024,
        checkpoint_interval: Duration::from_secs(1),
        compact_interval: None,
        compact_dead_percent: 10,
        // Slow enough that a kill often lands inside a segment rewrite.
        compact_bytes_per_sec: 2 << 20,
    };
    o
}

/// The bytes of message `token`: recomputable by the parent from the token alone.
fn body(token: u64) -> Vec<u8> {
    let mut b = format!("X-Token: {token}\r\n\r\n").into_bytes();
    let len = 200 + (token.wrapping_mul(7919) % 5000) as usize;
    b.extend((0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i + token as usize) % 26]));
    b
}

fn token_of(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body.get(..40.min(body.len()))?).ok()?;
    s.strip_prefix("X-Token: ")?
        .split("\r\n")
        .next()?
        .parse()
        .ok()
}

fn main() {
    if let (Ok(dir), Ok(seed)) = (std::env::var(ENV_DIR), std::env::var(ENV_SEED)) {
        return child(&dir, seed.parse().expect("seed"));
    }
    common::run_single_test(TEST_NAME, parent);
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.write_all(b"\n").expect("stdout");
    out.flush().expect("stdout");
}

/// Child: an endless mix of mail operations and compaction passes; prints each
/// acknowledgement (after the store said Ok) as one line.
fn child(dir: &str, seed: u64) {
    let store = Store::open(store_opts(dir)).expect("open");
    let ids: Vec<_> = MAILBOXES
        .iter()
        .map(|m| store.ensure_mailbox(ACCOUNT, m, None).expect("mailbox").id)
        .collect();
    let (inbox, archive) = (ids[0], ids[1]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut next = common::rng(seed);
    let mut token = seed * 1_000_000;
    say("READY".into());
    rt.block_on(async {
        loop {
            // Deliveries, some to both mailboxes in one record.
            for _ in 0..12 {
                token += 1;
                let both = next().is_multiple_of(6);
                let mut targets = vec![AppendTarget {
                    mailbox: inbox,
                    flags: vec![],
                }];
                if both {
                    targets.push(AppendTarget {
                        mailbox: archive,
                        flags: vec![],
                    });
                }
                let req = AppendRequest {
                    body: body(token),
                    internal_date: token as i64,
                    targets,
                };
                let shard = (next() % 2) as usize;
                for a in store.append(shard, req).await.expect("append") {
                    let name = if a.mailbox == inbox { 0 } else { 1 };
                    say(format!("A {name} {} {token}", a.uid));
                }
            }
            let live = store.messages(inbox);
            // COPY a few to Archive (their originals may be expunged next: the copies keep
            // the records alive).
            let picks: Vec<_> = live
                .iter()
                .filter(|_| next().is_multiple_of(8))
                .cloned()
                .collect();
            if !picks.is_empty() {
                let pairs = store.copy_messages(1, &picks, archive).await.expect("copy");
                for (src, new) in pairs {
                    say(format!("C 0 {src} 1 {new}"));
                }
            }
            // MOVE a few.
            let live = store.messages(inbox);
            let picks: Vec<_> = live
                .iter()
                .filter(|_| next().is_multiple_of(10))
                .cloned()
                .collect();
            if !picks.is_empty() {
                // Announced first: killed before its acknowledgement, the move may or may
                // not have happened.
                for m in &picks {
                    say(format!("x 0 {}", m.uid));
                }
                let pairs = store
                    .move_messages(inbox, &picks, archive)
                    .await
                    .expect("move");
                for (src, new) in pairs {
                    say(format!("M 0 {src} 1 {new}"));
                }
            }
            // Flags on some.
            let live = store.messages(inbox);
            let uids: Vec<u32> = live
                .iter()
                .filter(|_| next().is_multiple_of(4))
                .map(|m| m.uid)
                .collect();
            if !uids.is_empty() {
                store
                    .update_flags(inbox, &uids, FlagOp::Add, &["\\Seen".to_string()], None)
                    .await
                    .expect("flags");
            }
            // Expunge most of INBOX and some of Archive.
            for (name, mb, keep_one_in) in [(0, inbox, 5), (1, archive, 3)] {
                let uids: Vec<u32> = store
                    .messages(mb)
                    .iter()
                    .filter(|_| !next().is_multiple_of(keep_one_in))
                    .map(|m| m.uid)
                    .collect();
                if !uids.is_empty() {
                    for u in &uids {
                        say(format!("x {name} {u}"));
                    }
                    store.expunge(mb, uids.clone()).await.expect("expunge");
                    for u in uids {
                        say(format!("X {name} {u}"));
                    }
                }
            }
            say("c".into());
            let report = store.compact().expect("compact");
            say(format!(
                "P {} {}",
                report.segments_rewritten + report.segments_removed,
                report.bytes_reclaimed
            ));
        }
    });
}

/// What the parent knows must be true of the store.
#[derive(Default)]
struct Model {
    /// (mailbox index, uid) -> token: present, acknowledged (or seen after a restart).
    present: BTreeMap<(usize, u32), u64>,
    /// Acknowledged expunges (including the source side of a MOVE).
    gone: BTreeSet<(usize, u32)>,
    /// Expunges and moves asked for and not (yet) acknowledged: either outcome is right.
    in_flight: BTreeSet<(usize, u32)>,
    /// Highest UID ever acknowledged per mailbox.
    max_uid: [u32; 2],
}

impl Model {
    fn apply(&mut self, line: &str) {
        let p: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> u64 { p[i].parse().expect("number") };
        match p[0] {
            "A" => {
                let key = (num(1) as usize, num(2) as u32);
                self.max_uid[key.0] = self.max_uid[key.0].max(key.1);
                assert!(
                    self.present.insert(key, num(3)).is_none(),
                    "{key:?} acknowledged twice"
                );
            }
            "C" | "M" => {
                let from = (num(1) as usize, num(2) as u32);
                let to = (num(3) as usize, num(4) as u32);
                let token = *self
                    .present
                    .get(&from)
                    .unwrap_or_else(|| panic!("{line}: source {from:?} unknown"));
                self.max_uid[to.0] = self.max_uid[to.0].max(to.1);
                self.present.insert(to, token);
                if p[0] == "M" {
                    self.in_flight.remove(&from);
                    self.present.remove(&from);
                    self.gone.insert(from);
                }
            }
            "x" => {
                self.in_flight.insert((num(1) as usize, num(2) as u32));
            }
            "X" => {
                let key = (num(1) as usize, num(2) as u32);
                self.in_flight.remove(&key);
                self.present.remove(&key);
                self.gone.insert(key);
            }
            _ => {}
        }
    }
}

/// Everything IMAP shows of the mailboxes: per message (uid, MODSEQ, flags), and UIDNEXT,
/// HIGHESTMODSEQ and the expunged UIDs (QRESYNC VANISHED) per mailbox.
type Shown = Vec<(u32, u64, Vec<(u32, u64, Vec<String>)>, Vec<u32>)>;

fn shown(store: &Store) -> Shown {
    MAILBOXES
        .iter()
        .filter_map(|name| store.find_mailbox(ACCOUNT, name))
        .map(|mb| {
            let msgs = store
                .messages(mb.id)
                .into_iter()
                .map(|m| (m.uid, m.modseq, m.flags))
                .collect();
            (
                mb.uidnext,
                mb.highest_modseq,
                msgs,
                store.vanished_since(mb.id, 0),
            )
        })
        .collect()
}

/// (mailbox index, uid) -> token of every message in the store, each body checked.
fn snapshot(store: &Store) -> BTreeMap<(usize, u32), u64> {
    let mut out = BTreeMap::new();
    for (i, name) in MAILBOXES.iter().enumerate() {
        let Some(mb) = store.find_mailbox(ACCOUNT, name) else {
            continue;
        };
        for m in store.messages(mb.id) {
            let b = store
                .read_message(&m)
                .unwrap_or_else(|e| panic!("{name} uid {}: {e}", m.uid));
            let token = token_of(&b).unwrap_or_else(|| panic!("{name} uid {}: no token", m.uid));
            assert_eq!(b, body(token), "{name} uid {}: bytes differ", m.uid);
            out.insert((i, m.uid), token);
        }
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).expect("store dir").flatten() {
        if shard.path().is_dir() {
            for f in std::fs::read_dir(shard.path())
                .expect("shard dir")
                .flatten()
            {
                n += f.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    n
}

fn parent() {
    let exe = std::env::current_exe().expect("exe");
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().to_str().expect("utf-8 path").to_string();
    let mut model = Model::default();
    let mut passes_seen = 0usize;
    let mut reclaimed = 0u64;
    let mut killed_compacting = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(ENV_DIR, &dir_s)
            .env(ENV_SEED, (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut lines = Vec::new();
        // Run until the first compaction pass, then a little more: the kill lands at a
        // round-chosen moment of the next cycle (delivery, expunge or compaction).
        loop {
            let l = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child made no progress");
            let pass = l.starts_with("P ");
            lines.push(l);
            if pass {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120));
        }
        let delay = common::rng(round + 99)() % 400;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill");
        child.wait().expect("wait");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        for l in &lines {
            model.apply(l);
            if let Some(rest) = l.strip_prefix("P ") {
                passes_seen += 1;
                reclaimed += rest
                    .split(' ')
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }

        // Reopen: with the checkpoint as left by the kill...
        let store = Store::open(store_opts(&dir_s)).expect("reopen");
        let with_checkpoint = snapshot(&store);
        let shown_with_checkpoint = shown(&store);
        let uidnext: Vec<u32> = MAILBOXES
            .iter()
            .map(|m| {
                store
                    .find_mailbox(ACCOUNT, m)
                    .map(|i| i.uidnext)
                    .unwrap_or(1)
            })
            .collect();
        drop(store);
        if let Ok(log) = std::env::var("POSTERN_COMPACTION_CRASH_LOG") {
            let _ = std::fs::write(format!("{log}.{round}"), lines.join("\n"));
        }
        for (key, token) in &model.present {
            if model.in_flight.contains(key) && !with_checkpoint.contains_key(key) {
                continue;
            }
            assert_eq!(
                with_checkpoint.get(key),
                Some(token),
                "round {round}: acknowledged {key:?} (token {token}) lost"
            );
        }
        for key in &model.gone {
            assert!(
                !with_checkpoint.contains_key(key),
                "round {round}: expunged {key:?} is back"
            );
        }
        for (i, &next) in uidnext.iter().enumerate() {
            assert!(
                next > model.max_uid[i],
                "round {round}: {} UIDNEXT {next} would reuse UID {}",
                MAILBOXES[i],
                model.max_uid[i]
            );
        }
        // ... and from the log alone: the same mailboxes.
        let _ = std::fs::remove_file(dir.path().join("index.ckpt"));
        let store = Store::open(store_opts(&dir_s)).expect("reopen without checkpoint");
        let from_log = snapshot(&store);
        let shown_from_log = shown(&store);
        drop(store);
        assert_eq!(
            from_log, with_checkpoint,
            "round {round}: log replay differs"
        );
        assert_eq!(
            shown_from_log, shown_with_checkpoint,
            "round {round}: flags, MODSEQs, UIDNEXT or VANISHED differ without the checkpoint"
        );
        if lines.last().is_some_and(|l| l == "c") {
            killed_compacting += 1;
        }
        // What committed without its acknowledgement is part of the store from now on.
        model.present = with_checkpoint;
        model.in_flight.clear();
    }
    assert!(
        passes_seen >= ROUNDS as usize,
        "compaction passes ran: {passes_seen}"
    );
    assert!(reclaimed > 0, "compaction reclaimed nothing");
    // The kill is meant to land inside compaction passes (most rounds do).
    assert!(
        killed_compacting >= 2,
        "only {killed_compacting} kills landed in a compaction pass"
    );
    println!(
        "{ROUNDS} rounds ({killed_compacting} killed inside a compaction pass), {passes_seen} compaction passes, {reclaimed} bytes reclaimed, {} messages, store {} bytes",
        model.present.len(),
        dir_bytes(dir.path())
    );
}
