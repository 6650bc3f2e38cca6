//! Contract tests, each run against both backends.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use postern_store::{
    AppendRequest, AppendTarget, BackendChoice, MailboxId, Store, StoreError, StoreOptions,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn mailboxes_messages_flags_expunges_survive_reopen() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let (inbox, sent, before) = {
            let s = open(dir.path(), backend);
            let inbox = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap();
            let sent = s
                .ensure_mailbox("a@x.test", "Sent", Some("\\Sent"))
                .unwrap();
            // Idempotent.
            assert_eq!(s.ensure_mailbox("a@x.test", "INBOX", None).unwrap(), inbox);
            assert_ne!(inbox.uidvalidity, sent.uidvalidity);
            assert_eq!((inbox.uidnext, inbox.exists), (1, 0));
            let mut uids = Vec::new();
            for i in 0..5u8 {
                let mut r = req(inbox.id, &[b'm', i]);
                r.targets[0].flags = vec!["$Label".into()];
                let a = rt.block_on(s.append(0, r)).unwrap();
                assert_eq!(a.len(), 1);
                uids.push(a[0].uid);
            }
            assert_eq!(uids, vec![1, 2, 3, 4, 5]);
            let ms = rt
                .block_on(s.set_flags(inbox.id, 2, vec!["\\Seen".into(), "\\Flagged".into()]))
                .unwrap();
            let ex = rt.block_on(s.expunge(inbox.id, vec![3, 4, 99])).unwrap();
            assert!(ex > ms);
            assert!(matches!(
                rt.block_on(s.set_flags(inbox.id, 3, vec![])),
                Err(StoreError::UnknownMessage { .. })
            ));
            let info = s.find_mailbox("a@x.test", "INBOX").unwrap();
            assert_eq!(info.highest_modseq, ex);
            assert_eq!((info.uidnext, info.exists), (6, 3));
            let msgs = s.messages(inbox.id);
            assert_eq!(
                msgs.iter().map(|m| m.uid).collect::<Vec<_>>(),
                vec![1, 2, 5]
            );
            assert_eq!(msgs[1].flags, vec!["\\Seen", "\\Flagged"]);
            assert_eq!(msgs[1].modseq, ms);
            assert_eq!(msgs[0].flags, vec!["$Label"]);
            assert_eq!(msgs[0].size, 2);
            let before = (s.mailboxes("a@x.test"), msgs, contents(&s, inbox.id));
            s.shutdown();
            (inbox, sent, before)
        };
        let s = open(dir.path(), backend);
        let after = (
            s.mailboxes("a@x.test"),
            s.messages(inbox.id),
            contents(&s, inbox.id),
        );
        assert_eq!(before, after);
        assert_eq!(after.0.len(), 2);
        assert_eq!(after.0[1].special_use.as_deref(), Some("\\Sent"));
        assert_eq!(s.find_mailbox("a@x.test", "Sent").unwrap(), sent);
        assert!(s.mailboxes("other@x.test").is_empty());
        // UIDs continue past expunged ones; MODSEQ continues upward.
        let a = s.append_blocking(0, req(inbox.id, b"next")).unwrap();
        assert_eq!(a[0].uid, 6);
        assert!(a[0].modseq > after.0[0].highest_modseq);
    }
}

#[test]
fn multi_recipient_delivery_is_one_record() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), backend);
        o.shards = 2;
        let s = Store::open(o.clone()).unwrap();
        let a = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        let b = s.ensure_mailbox("b@x.test", "INBOX", None).unwrap().id;
        s.append_blocking(1, req(b, b"first for b")).unwrap();
        let r = AppendRequest {
            body: b"to both".to_vec(),
            internal_date: 5,
            targets: vec![
                AppendTarget {
                    mailbox: a,
                    flags: vec![],
                },
                AppendTarget {
                    mailbox: b,
                    flags: vec!["\\Recent".into()],
                },
            ],
        };
        let got = s.append_blocking(3, r).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].mailbox, got[0].uid), (a, 1));
        assert_eq!((got[1].mailbox, got[1].uid), (b, 2));
        let ma = s.messages(a);
        let mb = s.messages(b);
        assert_eq!(ma[0].location, mb[1].location);
        assert_eq!(ma[0].location.shard, 1);
        assert_eq!(s.read_message(&mb[1]).unwrap(), b"to both");
        // Duplicate target and unknown mailbox are rejected before anything is written.
        let mut dup = req(a, b"x");
        dup.targets.push(dup.targets[0].clone());
        assert!(matches!(
            s.append_blocking(0, dup),
            Err(StoreError::InvalidRequest(_))
        ));
        assert!(matches!(
            s.append_blocking(0, req(MailboxId(77), b"x")),
            Err(StoreError::UnknownMailbox(77))
        ));
        drop(s);
        // Reopen with fewer shards: shard-1 is still read.
        o.shards = 1;
        let s = Store::open(o).unwrap();
        assert_eq!(contents(&s, a), vec![(1, b"to both".to_vec())]);
        assert_eq!(s.messages(b)[1].flags, vec!["\\Recent"]);
        assert_eq!(s.find_mailbox("b@x.test", "INBOX").unwrap().uidnext, 3);
    }
}

#[test]
fn concurrent_appends_group_commit_exactly_once() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let max_records = Arc::new(AtomicUsize::new(0));
        let commits = Arc::new(AtomicUsize::new(0));
        let misaligned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mis2 = misaligned.clone();
        let mut o = opts(dir.path(), backend);
        let (m2, c2) = (max_records.clone(), commits.clone());
        o.on_commit = Some(Arc::new(move |r: &postern_store::CommitReport| {
            m2.fetch_max(r.records, Ordering::SeqCst);
            c2.fetch_add(1, Ordering::SeqCst);
            if !r.bytes.is_multiple_of(4096) {
                mis2.store(true, Ordering::SeqCst);
            }
        }));
        let s = Store::open(o.clone()).unwrap();
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        let rt = rt();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..64 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..4 {
                        let body = format!("task {t} msg {i}").into_bytes();
                        let a = s.append(0, req(mb, &body)).await.unwrap();
                        out.push((a[0].uid, body));
                    }
                    out
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all.sort();
            let uids: HashSet<u32> = all.iter().map(|x| x.0).collect();
            assert_eq!(uids.len(), 256);
            assert_eq!(contents(&s, mb), all);
        });
        assert!(
            max_records.load(Ordering::SeqCst) > 1,
            "no batch grew beyond one record"
        );
        assert!(commits.load(Ordering::SeqCst) < 257);
        assert!(
            !misaligned.load(Ordering::SeqCst),
            "a batch was not padded to 4096"
        );
        let expected = contents(&s, mb);
        drop(s);
        o.on_commit = None;
        let s = Store::open(o).unwrap();
        assert_eq!(contents(&s, mb), expected);
        assert_eq!(s.find_mailbox("a@x.test", "INBOX").unwrap().exists, 256);
    }
}

/// io_uring: under concurrent load a batch is written while the previous one's fdatasync is
/// in flight (commit pipelining), across segment rollovers (256 KiB segments), and every
/// acknowledged message is there, byte for byte, in the store and after a reopen.
#[test]
fn pipelined_commits_overlap_and_lose_nothing_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let overlapped = Arc::new(AtomicUsize::new(0));
    let commits = Arc::new(AtomicUsize::new(0));
    let mut o = opts(dir.path(), BackendChoice::IoUring);
    o.segment_bytes = 256 * 1024;
    let (ov, c2) = (overlapped.clone(), commits.clone());
    o.on_commit = Some(Arc::new(move |r: &postern_store::CommitReport| {
        c2.fetch_add(1, Ordering::SeqCst);
        if r.overlapped {
            ov.fetch_add(1, Ordering::SeqCst);
        }
    }));
    let s = Store::open(o.clone()).unwrap();
    assert_eq!(s.backend_kind(), postern_store::BackendKind::IoUring);
    let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
    let rt = rt();
    let all = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..16 {
                    // 3-5 KiB: about sixty messages fill a segment.
                    let body = format!("task {t} msg {i} ")
                        .repeat(200 + (t * 16 + i) % 100)
                        .into_bytes();
                    let a = s.append(0, req(mb, &body)).await.unwrap();
                    out.push((a[0].uid, body));
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        all
    });
    assert_eq!(all.len(), 512);
    assert_eq!(contents(&s, mb), all);
    assert!(
        overlapped.load(Ordering::SeqCst) > 0,
        "no batch was written while another's fdatasync was in flight ({} commits)",
        commits.load(Ordering::SeqCst)
    );
    let segments = std::fs::read_dir(dir.path().join("shard-0"))
        .unwrap()
        .count();
    assert!(
        segments > 4,
        "only {segments} segments: no rollovers tested"
    );
    drop(s);
    o.on_commit = None;
    let s = Store::open(o).unwrap();
    assert_eq!(contents(&s, mb), all);
}

/// Blocks shard 0's thread inside on_commit after its second commit (the first is the
/// mailbox creation) until released.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool, usize)>, // (armed, blocked, shard-0 commits)
    cv: Condvar,
}

#[test]
fn visibility_waits_for_lower_uids() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        let mut o = opts(dir.path(), backend);
        o.shards = 2;
        let g = gate.clone();
        o.on_commit = Some(Arc::new(move |r: &postern_store::CommitReport| {
            if r.shard != 0 {
                return;
            }
            let mut st = g.state.lock().unwrap();
            st.2 += 1;
            if st.2 == 2 {
                st.0 = true;
                st.1 = true;
                g.cv.notify_all();
                while st.0 {
                    st = g.cv.wait(st).unwrap();
                }
                st.1 = false;
            }
        }));
        let s = Store::open(o).unwrap();
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        // X commits on shard 0, then shard 0 is held inside on_commit.
        assert_eq!(s.append_blocking(0, req(mb, b"x")).unwrap()[0].uid, 1);
        {
            let mut st = gate.state.lock().unwrap();
            while !st.1 {
                st = gate.cv.wait(st).unwrap();
            }
        }
        let rt = rt();
        rt.block_on(async {
            // A: UID 2 allocated now, queued behind the held shard 0.
            let mut a = Box::pin(s.append(0, req(mb, b"a")));
            tokio::select! {
                biased;
                _ = &mut a => panic!("A committed while shard 0 was held"),
                _ = std::future::ready(()) => {}
            }
            // B: UID 3 commits on shard 1 but must stay invisible until UID 2 resolves.
            let b = s.append(1, req(mb, b"b")).await.unwrap();
            assert_eq!(b[0].uid, 3);
            assert_eq!(
                s.messages(mb).iter().map(|m| m.uid).collect::<Vec<_>>(),
                vec![1]
            );
            let info = s.find_mailbox("a@x.test", "INBOX").unwrap();
            assert_eq!((info.uidnext, info.exists), (2, 1));
            {
                let mut st = gate.state.lock().unwrap();
                st.0 = false;
                gate.cv.notify_all();
            }
            assert_eq!(a.await.unwrap()[0].uid, 2);
        });
        let info = s.find_mailbox("a@x.test", "INBOX").unwrap();
        assert_eq!((info.uidnext, info.exists), (4, 3));
        assert_eq!(
            contents(&s, mb),
            vec![(1, b"x".to_vec()), (2, b"a".to_vec()), (3, b"b".to_vec())]
        );
    }
}

#[test]
fn segments_roll_over_and_reopen() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), backend);
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let body: Vec<u8> = (0..3000u32).map(|j| (i * 7 + j) as u8).collect();
            let a = s.append_blocking(0, req(mb, &body)).unwrap();
            expected.push((a[0].uid, body));
        }
        // One message larger than a whole segment.
        let big = vec![b'B'; 200 * 1024];
        let a = s.append_blocking(0, req(mb, &big)).unwrap();
        expected.push((a[0].uid, big));
        let after = s.append_blocking(0, req(mb, b"after big")).unwrap();
        expected.push((after[0].uid, b"after big".to_vec()));
        let segs = s
            .messages(mb)
            .iter()
            .map(|m| m.location.segment)
            .max()
            .unwrap();
        assert!(segs >= 3, "expected several segments, got {segs}");
        assert_eq!(contents(&s, mb), expected);
        drop(s);
        let s = open(dir.path(), backend);
        assert_eq!(contents(&s, mb), expected);
        let n = std::fs::read_dir(dir.path().join("shard-0"))
            .unwrap()
            .count();
        assert_eq!(n as u32, segs + 1);
    }
}

#[test]
fn read_only_open_writes_nothing() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let mb = {
            let s = open(dir.path(), backend);
            let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
            s.append_blocking(0, req(mb, b"hello")).unwrap();
            mb
        };
        let seg = dir.path().join("shard-0/seg-00000000.log");
        // A torn tail that a read-write open would clear.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[5000] = 0xAB;
        std::fs::write(&seg, &bytes).unwrap();
        let listing = |p: &std::path::Path| {
            let mut v: Vec<_> = walk(p);
            v.sort();
            v
        };
        let before = listing(dir.path());
        let mut o = opts(dir.path(), backend);
        o.read_only = true;
        o.shards = 4;
        let s = Store::open(o).unwrap();
        assert_eq!(contents(&s, mb), vec![(1, b"hello".to_vec())]);
        assert!(matches!(
            s.append_blocking(0, req(mb, b"x")),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            s.ensure_mailbox("a@x.test", "New", None),
            Err(StoreError::ReadOnly)
        ));
        drop(s);
        assert_eq!(listing(dir.path()), before);
        // Read-only open of a missing root is an error, and creates nothing.
        let mut o = opts(&dir.path().join("missing"), backend);
        o.read_only = true;
        assert!(Store::open(o).is_err());
        assert!(!dir.path().join("missing").exists());
    }
}

fn walk(p: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
            out.push((e.path(), Vec::new()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

#[test]
fn stripe_alignment_from_sysfs_fixture() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let sys = tempfile::tempdir().unwrap();
    let dev = std::fs::metadata(dir.path()).unwrap().dev();
    let md = sys.path().join(format!(
        "dev/block/{}:{}/md",
        libc::major(dev),
        libc::minor(dev)
    ));
    std::fs::create_dir_all(&md).unwrap();
    std::fs::write(md.join("level"), "raid5\n").unwrap();
    std::fs::write(md.join("chunk_size"), "524288\n").unwrap();
    std::fs::write(md.join("raid_disks"), "4\n").unwrap();
    for backend in BACKENDS {
        let root = dir.path().join(format!("{backend:?}"));
        let mut o = StoreOptions::new(&root);
        o.backend = backend;
        o.sysfs_root = sys.path().to_path_buf();
        o.segment_bytes = 4 << 20;
        let s = Store::open(o).unwrap();
        const STRIPE: u64 = 1536 * 1024;
        assert_eq!(s.stripe_alignment(), STRIPE);
        assert_eq!(s.md_layout().unwrap().data_disks, 3);
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        for i in 0..4u8 {
            s.append_blocking(0, req(mb, &[i; 100])).unwrap();
        }
        // Every batch starts on a stripe boundary; segments are whole stripes.
        for m in s.messages(mb) {
            assert_eq!(m.location.offset % STRIPE, 0, "{m:?}");
        }
        let seg0 = std::fs::metadata(root.join("shard-0/seg-00000000.log")).unwrap();
        assert_eq!(seg0.len() % STRIPE, 0);
        // A plain directory without a fixture keeps 4096.
        let s2 = Store::open(opts(
            &dir.path().join(format!("plain-{backend:?}")),
            backend,
        ))
        .unwrap();
        assert_eq!(s2.stripe_alignment(), 4096);
        assert!(s2.md_layout().is_none());
    }
}

#[test]
fn shutdown_finishes_queued_work_then_refuses() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), backend);
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        let rt = rt();
        let handles: Vec<_> = (0..16u8)
            .map(|i| {
                let s = s.clone();
                rt.spawn(async move { s.append(0, req(mb, &[i])).await })
            })
            .collect();
        let results: Vec<_> = rt.block_on(async {
            let mut v = Vec::new();
            for h in handles {
                v.push(h.await.unwrap());
            }
            v
        });
        s.shutdown();
        assert!(results.iter().all(|r| r.is_ok()));
        assert!(matches!(
            s.append_blocking(0, req(mb, b"late")),
            Err(StoreError::Closed)
        ));
        // Reads still work after shutdown.
        assert_eq!(s.messages(mb).len(), 16);
        let _ = BackendChoice::Auto;
    }
}

#[test]
fn auto_backend_opens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(StoreOptions::new(dir.path())).unwrap();
    let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
    assert_eq!(s.append_blocking(0, req(mb, b"x")).unwrap()[0].uid, 1);
}

#[test]
fn one_writer_per_root_and_no_export_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), BackendChoice::Portable);
    assert!(matches!(
        Store::open(opts(dir.path(), BackendChoice::Portable)),
        Err(StoreError::Locked(_))
    ));
    let mut ro = opts(dir.path(), BackendChoice::Portable);
    ro.read_only = true;
    assert!(matches!(
        Store::open(ro.clone()),
        Err(StoreError::Locked(_))
    ));
    drop(s);
    // Two read-only opens may coexist once the writer is gone.
    let a = Store::open(ro.clone()).unwrap();
    let b = Store::open(ro).unwrap();
    assert!(matches!(
        Store::open(opts(dir.path(), BackendChoice::Portable)),
        Err(StoreError::Locked(_))
    ));
    drop((a, b));
    open(dir.path(), BackendChoice::Portable);
}
