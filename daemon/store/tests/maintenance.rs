//! Checkpoint (bounded start) and compaction (space given back), step by step. The kill -9
//! side of both is tests/compaction_crash.rs.

mod common;

use std::path::Path;
use std::time::Duration;

use postern_store::{
    AppendRequest, AppendTarget, BackendChoice, FlagOp, MailboxId, MaintenanceOptions, Store,
    StoreOptions,
};

/// Small segments, no background passes: the test decides when to compact.
fn opts(root: &Path) -> StoreOptions {
    let mut o = common::opts(root, BackendChoice::Auto);
    o.shards = 2;
    o.maintenance = MaintenanceOptions {
        compact_interval: None,
        compact_bytes_per_sec: 0,
        ..MaintenanceOptions::default()
    };
    o
}

fn open(root: &Path) -> Store {
    Store::open(opts(root)).expect("open")
}

fn body(n: u32) -> Vec<u8> {
    let mut b = format!("Subject: {n}\r\n\r\n").into_bytes();
    b.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, 3000));
    b
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Everything a client can see of a mailbox, bodies included.
#[derive(Debug, PartialEq)]
struct Seen {
    uidnext: u32,
    highest_modseq: u64,
    messages: Vec<(u32, u64, Vec<String>, Vec<u8>)>,
    vanished: Vec<u32>,
}

fn seen(store: &Store, mb: MailboxId) -> Seen {
    let info = store.mailbox(mb).expect("mailbox");
    Seen {
        uidnext: info.uidnext,
        highest_modseq: info.highest_modseq,
        messages: store
            .messages(mb)
            .iter()
            .map(|m| {
                let b = store.read_message(m).expect("read");
                (m.uid, m.modseq, m.flags.clone(), b)
            })
            .collect(),
        vanished: store.vanished_since(mb, 0),
    }
}

fn append(store: &Store, rt: &tokio::runtime::Runtime, mb: MailboxId, n: u32) -> u32 {
    let req = AppendRequest {
        body: body(n),
        internal_date: 1_700_000_000 + i64::from(n),
        targets: vec![AppendTarget {
            mailbox: mb,
            flags: vec![],
        }],
    };
    rt.block_on(store.append(n as usize, req)).expect("append")[0].uid
}

fn segment_files(root: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for s in std::fs::read_dir(root).expect("root").flatten() {
        if !s.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(s.path()).expect("shard").flatten() {
            if f.file_name().to_string_lossy().ends_with(".log") {
                n += 1;
                bytes += f.metadata().expect("metadata").len();
            }
        }
    }
    (n, bytes)
}

#[test]
fn clean_stop_leaves_a_checkpoint_and_the_next_start_reads_no_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let store = open(dir.path());
    assert!(!store.recovery().from_checkpoint, "a new store has none");
    let mb = store
        .ensure_mailbox("a@x.test", "INBOX", None)
        .expect("mb")
        .id;
    for n in 0..60 {
        append(&store, &rt, mb, n);
    }
    rt.block_on(store.update_flags(mb, &[3, 4], FlagOp::Add, &["\\Seen".into()], None))
        .expect("flags");
    rt.block_on(store.expunge(mb, vec![5, 60]))
        .expect("expunge");
    let before = seen(&store, mb);
    drop(store);

    let store = open(dir.path());
    let r = store.recovery();
    assert!(r.from_checkpoint, "{r:?}");
    assert_eq!(r.records_replayed, 0, "a clean stop covers the whole log");
    assert_eq!(seen(&store, mb), before);
    // UID 60 was the highest and is expunged: it is never handed out again.
    assert_eq!(append(&store, &rt, mb, 61), 61);
    drop(store);
}

#[test]
fn the_log_after_the_checkpoint_is_replayed_on_top_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let store = open(dir.path());
    let mb = store
        .ensure_mailbox("a@x.test", "INBOX", None)
        .expect("mb")
        .id;
    let other = store
        .ensure_mailbox("a@x.test", "Other", None)
        .expect("mb")
        .id;
    for n in 0..30 {
        append(&store, &rt, mb, n);
    }
    store.checkpoint().expect("checkpoint");
    // After the checkpoint: deliveries, a copy, a move, flags, expunges, a new mailbox.
    for n in 30..45 {
        append(&store, &rt, mb, n);
    }
    let metas = store.messages_by_uid(mb, &[1, 2]);
    rt.block_on(store.copy_messages(0, &metas, other))
        .expect("copy");
    let metas = store.messages_by_uid(mb, &[7]);
    rt.block_on(store.move_messages(mb, &metas, other))
        .expect("move");
    rt.block_on(store.update_flags(mb, &[10], FlagOp::Add, &["$Junk".into()], None))
        .expect("flags");
    rt.block_on(store.expunge(mb, vec![1, 11]))
        .expect("expunge");
    let third = store
        .ensure_mailbox("a@x.test", "Third", None)
        .expect("mb")
        .id;
    append(&store, &rt, third, 99);
    let want = [seen(&store, mb), seen(&store, other), seen(&store, third)];
    // A kill: nothing more is written at stop (no clean-stop checkpoint).
    let root = dir.path().to_path_buf();
    std::mem::forget(store);

    // The process "restarts": the flock dies with the open file description, so reopen
    // from a child process is not needed; a copy of the directory stands for the disk.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_tree(&root, copy.path());
    let store = open(copy.path());
    let r = store.recovery();
    assert!(r.from_checkpoint, "{r:?}");
    assert!(r.records_replayed > 0);
    assert_eq!(
        [seen(&store, mb), seen(&store, other), seen(&store, third)],
        want
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_tree(&e.path(), &dest);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

#[test]
fn a_damaged_checkpoint_is_ignored_and_the_log_rebuilds_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let store = open(dir.path());
    let mb = store
        .ensure_mailbox("a@x.test", "INBOX", None)
        .expect("mb")
        .id;
    for n in 0..20 {
        append(&store, &rt, mb, n);
    }
    let want = seen(&store, mb);
    drop(store);
    let ckpt = dir.path().join("index.ckpt");
    let mut bytes = std::fs::read(&ckpt).expect("checkpoint written at stop");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&ckpt, &bytes).expect("write");

    let store = open(dir.path());
    assert!(!store.recovery().from_checkpoint);
    assert_eq!(seen(&store, mb), want);
    drop(store);
    // Truncated: the same.
    let bytes = std::fs::read(&ckpt).expect("rewritten at stop");
    std::fs::write(&ckpt, &bytes[..bytes.len() - 10]).expect("write");
    let store = open(dir.path());
    assert!(!store.recovery().from_checkpoint);
    assert_eq!(seen(&store, mb), want);
}

#[test]
fn compaction_gives_back_expunged_mail_and_changes_nothing_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let store = open(dir.path());
    let inbox = store
        .ensure_mailbox("a@x.test", "INBOX", None)
        .expect("mb")
        .id;
    let archive = store
        .ensure_mailbox("a@x.test", "Archive", None)
        .expect("mb")
        .id;
    let doomed = store
        .ensure_mailbox("a@x.test", "Doomed", None)
        .expect("mb")
        .id;
    for n in 0..400 {
        append(&store, &rt, inbox, n);
    }
    for n in 0..50 {
        append(&store, &rt, doomed, 1000 + n);
    }
    // Copies of messages whose originals are then expunged: the copies keep them.
    let metas = store.messages_by_uid(inbox, &[2, 3, 350]);
    rt.block_on(store.copy_messages(1, &metas, archive))
        .expect("copy");
    let metas = store.messages_by_uid(inbox, &[4]);
    rt.block_on(store.move_messages(inbox, &metas, archive))
        .expect("move");
    // Flags changed twice: only the newest change is needed.
    for f in ["$A", "$B"] {
        rt.block_on(store.update_flags(inbox, &[9, 399], FlagOp::Add, &[f.into()], None))
            .expect("flags");
    }
    // Most of INBOX, the highest UID included, goes.
    let gone: Vec<u32> = (1..=400).filter(|u| u % 10 != 9).collect();
    rt.block_on(store.expunge(inbox, gone)).expect("expunge");
    store.delete_mailbox(doomed).expect("delete");
    // The active segments are never compacted: fill past them.
    for n in 2000..2010 {
        append(&store, &rt, archive, n);
    }

    let want = [seen(&store, inbox), seen(&store, archive)];
    let stats_before: u64 = store
        .stats()
        .expect("stats")
        .iter()
        .map(|s| s.dead_bytes)
        .sum();
    let (files_before, bytes_before) = segment_files(dir.path());
    // A reader holding metadata from before the compaction still reads the message.
    let stale = store.messages_by_uid(inbox, &[9]).pop().expect("uid 9");

    let report = store.compact().expect("compact");
    assert!(
        report.segments_rewritten + report.segments_removed > 0,
        "{report:?}"
    );
    assert!(report.bytes_reclaimed > 0);
    let stats_after: u64 = store
        .stats()
        .expect("stats")
        .iter()
        .map(|s| s.dead_bytes)
        .sum();
    let (files_after, bytes_after) = segment_files(dir.path());
    assert!(
        bytes_after * 3 < bytes_before,
        "segments {bytes_before} -> {bytes_after} bytes ({files_before} -> {files_after} files)"
    );
    assert!(
        stats_after * 3 < stats_before,
        "dead {stats_before} -> {stats_after}"
    );
    assert_eq!([seen(&store, inbox), seen(&store, archive)], want);
    assert_eq!(store.read_message(&stale).expect("stale meta"), body(8));
    // A second pass has nothing worth doing.
    assert_eq!(
        store.compact().expect("compact").bytes_reclaimed,
        0,
        "nothing left to reclaim"
    );
    // New mail lands after it; UIDs continue.
    let uid = append(&store, &rt, inbox, 5000);
    assert_eq!(uid, 401);
    let want = [seen(&store, inbox), seen(&store, archive)];
    drop(store);

    // From the checkpoint written after the pass, and from the log alone.
    let store = open(dir.path());
    assert!(store.recovery().from_checkpoint);
    assert_eq!([seen(&store, inbox), seen(&store, archive)], want);
    assert!(store.find_mailbox("a@x.test", "Doomed").is_none());
    drop(store);
    std::fs::remove_file(dir.path().join("index.ckpt")).expect("checkpoint");
    let store = open(dir.path());
    assert!(!store.recovery().from_checkpoint);
    assert_eq!([seen(&store, inbox), seen(&store, archive)], want);
    assert!(store.find_mailbox("a@x.test", "Doomed").is_none());
}

#[test]
fn the_background_thread_checkpoints_after_enough_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let mut o = opts(dir.path());
    o.maintenance.checkpoint_bytes = 64 * 1024;
    let store = Store::open(o).expect("open");
    let mb = store
        .ensure_mailbox("a@x.test", "INBOX", None)
        .expect("mb")
        .id;
    let ckpt = dir.path().join("index.ckpt");
    assert!(!ckpt.exists());
    for n in 0..40 {
        append(&store, &rt, mb, n);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ckpt.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 120 KB of log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
