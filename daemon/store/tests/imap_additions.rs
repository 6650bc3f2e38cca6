//! Store additions for IMAP: mailbox delete/rename, batch flag changes, subscriptions,
//! expunged-UID history (QRESYNC), quota usage, copies and the change feed, with recovery
//! of every new record (clean reopen and a torn tail at every step).

mod common;

use std::path::Path;

use common::*;
use postern_store::{BackendChoice, FlagOp, MailboxId, Store, StoreError};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const ACCOUNT: &str = "a@x.test";

type MailboxRow = (u32, String, Option<String>, u32, u32, u64, u32);
type MessageRow = (u32, u64, Vec<String>, u64);

/// Everything the IMAP server reads from the store, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
struct State {
    mailboxes: Vec<MailboxRow>,
    messages: Vec<(u32, Vec<MessageRow>)>,
    vanished: Vec<(u32, Vec<u32>)>,
    subscriptions: Vec<String>,
    usage: (u64, u64),
}

fn state(s: &Store) -> State {
    let mbs = s.mailboxes(ACCOUNT);
    State {
        mailboxes: mbs
            .iter()
            .map(|m| {
                (
                    m.id.0,
                    m.name.clone(),
                    m.special_use.clone(),
                    m.uidvalidity,
                    m.uidnext,
                    m.highest_modseq,
                    m.exists,
                )
            })
            .collect(),
        messages: mbs
            .iter()
            .map(|m| {
                (
                    m.id.0,
                    s.messages(m.id)
                        .into_iter()
                        .map(|x| (x.uid, x.modseq, x.flags, x.size))
                        .collect(),
                )
            })
            .collect(),
        vanished: mbs
            .iter()
            .map(|m| (m.id.0, s.vanished_since(m.id, 0)))
            .collect(),
        subscriptions: s.subscriptions(ACCOUNT),
        usage: {
            let u = s.usage(ACCOUNT);
            (u.bytes, u.messages)
        },
    }
}

/// End of the last commit in a segment image: commits are padded to 4096 bytes.
fn commit_end(seg: &[u8]) -> usize {
    let last = seg
        .iter()
        .rposition(|&b| b != 0)
        .map(|i| i + 1)
        .unwrap_or(0);
    last.div_ceil(4096) * 4096
}

fn seg_bytes(root: &Path) -> Vec<u8> {
    std::fs::read(root.join("shard-0/seg-00000000.log")).unwrap()
}

/// Runs a scripted sequence of IMAP-style changes, one commit each, recording the state
/// and the segment image after every step.
fn script(root: &Path, backend: BackendChoice) -> Vec<(State, Vec<u8>)> {
    let rt = rt();
    let s = Store::open({
        let mut o = opts(root, backend);
        o.segment_bytes = 1 << 20;
        o
    })
    .unwrap();
    let mut steps = Vec::new();
    let mut snap = |s: &Store| steps.push((state(s), seg_bytes(root)));
    let inbox = s.ensure_mailbox(ACCOUNT, "INBOX", None).unwrap().id;
    let work = s.ensure_mailbox(ACCOUNT, "Work", None).unwrap().id;
    let junk = s
        .ensure_mailbox(ACCOUNT, "Junk", Some("\\Junk"))
        .unwrap()
        .id;
    snap(&s);
    for i in 0..4u8 {
        s.append_blocking(0, req(inbox, &[b'x'; 10][..=i as usize]))
            .unwrap();
    }
    s.append_blocking(0, req(work, b"work message")).unwrap();
    snap(&s);
    let out = rt
        .block_on(s.update_flags(
            inbox,
            &[1, 2, 3, 99],
            FlagOp::Add,
            &["\\Seen".into(), "$Label".into()],
            None,
        ))
        .unwrap();
    assert_eq!(out.changed.len(), 3);
    let modseqs: Vec<u64> = out.changed.iter().map(|c| c.modseq).collect();
    assert!(modseqs.windows(2).all(|w| w[0] < w[1]), "one MODSEQ each");
    snap(&s);
    rt.block_on(s.expunge(inbox, vec![2, 4])).unwrap();
    snap(&s);
    s.set_subscription(ACCOUNT, "Work", true).unwrap();
    snap(&s);
    s.set_subscription(ACCOUNT, "Nonexistent", true).unwrap();
    snap(&s);
    s.rename_mailbox(work, "Projects/Work").unwrap();
    snap(&s);
    s.delete_mailbox(junk).unwrap();
    snap(&s);
    s.set_subscription(ACCOUNT, "Nonexistent", false).unwrap();
    snap(&s);
    let copied = rt
        .block_on(s.copy_messages(0, &s.messages(inbox), work))
        .unwrap();
    assert_eq!(copied, vec![(1, 2), (3, 3)]);
    snap(&s);
    s.shutdown();
    steps
}

#[test]
fn new_records_survive_reopen() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let steps = script(dir.path(), backend);
        let last = &steps.last().unwrap().0;
        let s = open(dir.path(), backend);
        assert_eq!(&state(&s), last, "{backend:?}");
        let names: Vec<String> = s.mailboxes(ACCOUNT).into_iter().map(|m| m.name).collect();
        assert_eq!(names, vec!["INBOX", "Projects/Work"]);
        assert!(s.find_mailbox(ACCOUNT, "Work").is_none());
        assert!(s.find_mailbox(ACCOUNT, "Junk").is_none());
        assert_eq!(s.subscriptions(ACCOUNT), vec!["Work".to_string()]);
        let inbox = s.find_mailbox(ACCOUNT, "INBOX").unwrap();
        assert_eq!(s.vanished_since(inbox.id, 0), vec![2, 4]);
        let flags = s.messages(inbox.id)[0].flags.clone();
        assert_eq!(flags, vec!["\\Seen".to_string(), "$Label".to_string()]);
        // Copies read back the original bytes (no second copy was written), also after
        // the source is expunged, and a copy of a copy too.
        let work = s.find_mailbox(ACCOUNT, "Projects/Work").unwrap();
        let got = contents(&s, work.id);
        assert_eq!(got[1], (2, b"x".to_vec()));
        assert_eq!(got[2], (3, b"xxx".to_vec()));
        let rt = rt();
        rt.block_on(s.expunge(inbox.id, vec![1, 3])).unwrap();
        let again = s.ensure_mailbox(ACCOUNT, "Copies", None).unwrap();
        let pairs = rt
            .block_on(s.copy_messages(0, &s.messages(work.id), again.id))
            .unwrap();
        assert_eq!(pairs.len(), 3);
        drop(s);
        let s = open(dir.path(), backend);
        let copies = contents(&s, again.id);
        assert_eq!(
            copies.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
            vec![b"work message".to_vec(), b"x".to_vec(), b"xxx".to_vec()]
        );
        // A new mailbox never reuses the deleted one's id or UIDVALIDITY.
        let again = s.ensure_mailbox(ACCOUNT, "Junk", None).unwrap();
        assert!(last
            .mailboxes
            .iter()
            .all(|m| m.0 != again.id.0 && m.3 != again.uidvalidity));
        assert!(again.id.0 > 3);
    }
}

#[test]
fn torn_tail_at_every_step_recovers_the_previous_state() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let steps = script(dir.path(), backend);
        let full = seg_bytes(dir.path());
        for k in 0..steps.len() - 1 {
            let end_k = commit_end(&steps[k].1);
            let end_next = commit_end(&steps[k + 1].1);
            assert!(end_next > end_k);
            // Keep step k and a torn start of the next step's first record (in its header,
            // at its payload's first byte), zero the rest.
            for cut in [end_k + 1, end_k + 12, end_k + 24] {
                let mut image = full.clone();
                image[cut..].iter_mut().for_each(|b| *b = 0);
                let d = tempfile::tempdir().unwrap();
                std::fs::create_dir_all(d.path().join("shard-0")).unwrap();
                std::fs::write(d.path().join("shard-0/seg-00000000.log"), &image).unwrap();
                let s = open(d.path(), backend);
                let got = state(&s);
                let prev = &steps[k].0;
                // The first and last steps are several appends (several commits): a torn
                // tail keeps a prefix of them. Every other step is one record, one commit:
                // torn, it is simply absent.
                if k == 0 || k + 2 == steps.len() {
                    assert_eq!(got.mailboxes.len(), prev.mailboxes.len());
                    assert_eq!(got.subscriptions, prev.subscriptions);
                } else {
                    assert_eq!(&got, prev, "{backend:?} step {k} cut {cut}");
                }
            }
        }
    }
}

/// A portable store with an INBOX of `n` one-byte messages (UIDs 1..=n).
fn inbox_with(dir: &Path, n: usize) -> (Store, MailboxId) {
    let s = open(dir, BackendChoice::Portable);
    let mb = s.ensure_mailbox(ACCOUNT, "INBOX", None).unwrap().id;
    for _ in 0..n {
        s.append_blocking(0, req(mb, b"m")).unwrap();
    }
    (s, mb)
}

#[test]
fn update_flags_unchanged_since_and_noop() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (s, mb) = inbox_with(dir.path(), 3);
    let seen = vec!["\\Seen".to_string()];
    let first = rt
        .block_on(s.update_flags(mb, &[1], FlagOp::Add, &seen, None))
        .unwrap();
    let m1 = first.changed[0].modseq;
    // Adding a flag already there changes nothing and allocates no MODSEQ.
    let again = rt
        .block_on(s.update_flags(mb, &[1], FlagOp::Add, &seen, None))
        .unwrap();
    assert!(again.changed.is_empty());
    assert_eq!(again.unchanged[0].modseq, m1);
    // UNCHANGEDSINCE below message 1's MODSEQ: 1 is MODIFIED, 2 and 3 change.
    let cond = rt
        .block_on(s.update_flags(mb, &[1, 2, 3], FlagOp::Replace, &[], Some(m1 - 1)))
        .unwrap();
    assert_eq!(cond.modified, vec![1]);
    assert_eq!(
        cond.changed.iter().map(|c| c.uid).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let rm = rt
        .block_on(s.update_flags(mb, &[1], FlagOp::Remove, &["\\SEEN".into()], None))
        .unwrap();
    assert!(rm.changed[0].flags.is_empty());
    assert!(matches!(
        rt.block_on(s.update_flags(MailboxId(999), &[1], FlagOp::Add, &seen, None)),
        Err(StoreError::UnknownMailbox(999))
    ));
}

#[test]
fn rename_refuses_a_taken_name_and_delete_closes_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = open(dir.path(), BackendChoice::Portable);
    let a = s.ensure_mailbox(ACCOUNT, "A", None).unwrap().id;
    s.ensure_mailbox(ACCOUNT, "B", None).unwrap();
    assert!(matches!(
        s.rename_mailbox(a, "B"),
        Err(StoreError::NameTaken(_))
    ));
    let mut feed = s.watch(a).unwrap();
    let before = *feed.borrow_and_update();
    s.append_blocking(0, req(a, b"hello")).unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), feed.changed())
            .await
            .unwrap()
            .unwrap()
    });
    assert!(*feed.borrow() > before);
    s.delete_mailbox(a).unwrap();
    let closed = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), feed.changed()).await
    });
    assert!(
        closed.unwrap().is_err(),
        "feed ends when the mailbox is deleted"
    );
    assert!(matches!(
        s.delete_mailbox(a),
        Err(StoreError::UnknownMailbox(_))
    ));
    assert!(s.watch(a).is_none());
}

#[test]
fn concurrent_flag_changes_build_on_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = open(dir.path(), BackendChoice::Portable);
    let mb = s.ensure_mailbox(ACCOUNT, "INBOX", None).unwrap().id;
    s.append_blocking(0, req(mb, b"m")).unwrap();
    // Both changes are computed before either commits: the second must include the first.
    let seen = vec!["\\Seen".to_string()];
    let flagged = vec!["\\Flagged".to_string()];
    let (a, b) = rt.block_on(async {
        tokio::join!(
            s.update_flags(mb, &[1], FlagOp::Add, &seen, None),
            s.update_flags(mb, &[1], FlagOp::Add, &flagged, None)
        )
    });
    assert_eq!(a.unwrap().changed.len(), 1);
    assert_eq!(b.unwrap().changed.len(), 1);
    let flags = s.messages(mb)[0].flags.clone();
    assert_eq!(flags, vec!["\\Seen".to_string(), "\\Flagged".to_string()]);
    drop(s);
    let s = open(dir.path(), BackendChoice::Portable);
    assert_eq!(s.messages(mb)[0].flags.len(), 2);
    // A refused change (invalid flag) leaves HIGHESTMODSEQ able to move on.
    let before = s.mailbox(mb).unwrap().highest_modseq;
    let bad = rt.block_on(s.update_flags(mb, &[1], FlagOp::Add, &["".into()], None));
    assert!(bad.is_err());
    rt.block_on(s.update_flags(mb, &[1], FlagOp::Add, &["$Ok".into()], None))
        .unwrap();
    assert!(s.mailbox(mb).unwrap().highest_modseq > before);
}

/// The UID snapshot and the SELECT summary are cached: they must follow every change
/// (delivery, flag change, expunge) and be shared, not copied, while nothing changes.
#[test]
fn cached_snapshot_and_summary_follow_changes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (s, mb) = inbox_with(dir.path(), 3);
    let (m0, a) = s.uid_snapshot(mb).unwrap();
    let (_, b) = s.uid_snapshot(mb).unwrap();
    assert_eq!(*a, vec![1, 2, 3]);
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "unchanged mailbox: one shared vector"
    );
    assert_eq!(m0, s.mailbox(mb).unwrap().highest_modseq);
    assert_eq!(s.summary(mb).unseen, 3);
    assert_eq!(s.summary(mb).first_unseen, Some(1));

    // A flag change keeps the UID snapshot but moves the MODSEQ and the summary.
    let seen = vec!["\\Seen".to_string(), "$Work".to_string()];
    rt.block_on(s.update_flags(mb, &[1], FlagOp::Add, &seen, None))
        .unwrap();
    let (m1, c) = s.uid_snapshot(mb).unwrap();
    assert!(m1 > m0);
    assert!(std::sync::Arc::ptr_eq(&a, &c));
    let sum = s.summary(mb);
    assert_eq!((sum.unseen, sum.first_unseen), (2, Some(2)));
    assert_eq!(sum.keywords, vec!["$Work".to_string()]);

    // A delivery and an expunge change the visible set.
    s.append_blocking(0, req(mb, b"m")).unwrap();
    rt.block_on(s.expunge(mb, vec![2])).unwrap();
    let (m2, d) = s.uid_snapshot(mb).unwrap();
    assert!(m2 > m1);
    assert_eq!(*d, vec![1, 3, 4]);
    assert_eq!(*a, vec![1, 2, 3], "holders of the old snapshot keep theirs");
    let sum = s.summary(mb);
    assert_eq!(
        (sum.messages, sum.unseen, sum.first_unseen),
        (3, 2, Some(2))
    );
    assert_eq!(s.mailbox(mb).unwrap().exists, 3);

    // The same after recovery.
    drop(s);
    let s = open(dir.path(), BackendChoice::Portable);
    assert_eq!(*s.uid_snapshot(mb).unwrap().1, vec![1, 3, 4]);
    assert_eq!(s.summary(mb).unseen, 2);
}

/// `messages_changed_since` answers from a MODSEQ index: after every kind of change, and
/// after recovery, it must equal the filter over all messages it replaces.
#[test]
fn changed_since_index_equals_a_full_scan() {
    fn check(s: &Store, mb: MailboxId) {
        let all = s.messages(mb);
        let top = s.mailbox(mb).unwrap().highest_modseq;
        for since in 0..=top + 1 {
            let want: Vec<(u32, u64)> = all
                .iter()
                .filter(|m| m.modseq > since)
                .map(|m| (m.uid, m.modseq))
                .collect();
            let got: Vec<(u32, u64)> = s
                .messages_changed_since(mb, since)
                .iter()
                .map(|m| (m.uid, m.modseq))
                .collect();
            assert_eq!(got, want, "since {since}");
        }
        assert!(s.messages_changed_since(mb, u64::MAX).is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = open(dir.path(), BackendChoice::Portable);
    let mb = s.ensure_mailbox(ACCOUNT, "INBOX", None).unwrap().id;
    let other = s.ensure_mailbox(ACCOUNT, "Other", None).unwrap().id;
    for _ in 0..6 {
        s.append_blocking(0, req(mb, b"m")).unwrap();
    }
    check(&s, mb);
    let seen = vec!["\\Seen".to_string()];
    rt.block_on(s.update_flags(mb, &[2, 4], FlagOp::Add, &seen, None))
        .unwrap();
    rt.block_on(s.update_flags(mb, &[2], FlagOp::Add, &["$A".into()], None))
        .unwrap();
    check(&s, mb);
    rt.block_on(s.expunge(mb, vec![3, 4])).unwrap();
    s.append_blocking(0, req(mb, b"m")).unwrap();
    check(&s, mb);
    let metas = s.messages(mb);
    rt.block_on(s.copy_messages(0, &metas[..2], other)).unwrap();
    check(&s, other);
    drop(s);
    let s = open(dir.path(), BackendChoice::Portable);
    check(&s, mb);
    check(&s, other);
}

/// IMAP MOVE is one record: after a reopen the messages are in the target only (flags
/// kept), and a torn tail anywhere inside the Move record leaves every message in the
/// source, never in both mailboxes (a kill between a copy and a separate expunge did).
#[test]
fn move_is_one_record_never_in_both_after_a_crash() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let s = Store::open({
            let mut o = opts(dir.path(), backend);
            o.segment_bytes = 1 << 20;
            o
        })
        .unwrap();
        let inbox = s.ensure_mailbox(ACCOUNT, "INBOX", None).unwrap().id;
        let archive = s.ensure_mailbox(ACCOUNT, "Archive", None).unwrap().id;
        for body in [&b"one"[..], b"two", b"three"] {
            s.append_blocking(0, req(inbox, body)).unwrap();
        }
        rt.block_on(s.update_flags(inbox, &[3], FlagOp::Add, &["\\Seen".into()], None))
            .unwrap();
        let before = state(&s);
        let before_seg = seg_bytes(dir.path());
        let metas = s.messages_by_uid(inbox, &[1, 3]);
        let pairs = rt
            .block_on(s.move_messages(inbox, &metas, archive))
            .unwrap();
        assert_eq!(pairs, vec![(1, 1), (3, 2)]);
        assert_eq!(contents(&s, inbox), vec![(2, b"two".to_vec())]);
        assert_eq!(
            contents(&s, archive),
            vec![(1, b"one".to_vec()), (2, b"three".to_vec())]
        );
        assert_eq!(s.messages(archive)[1].flags, vec!["\\Seen".to_string()]);
        assert_eq!(s.vanished_since(inbox, 0), vec![1, 3]);
        // Nothing visible is left to move: no record, no pairs.
        let again = rt
            .block_on(s.move_messages(inbox, &metas, archive))
            .unwrap();
        assert!(again.is_empty());
        let after = state(&s);
        s.shutdown();
        drop(s);
        let full = seg_bytes(dir.path());
        let s = open(dir.path(), backend);
        assert_eq!(state(&s), after, "{backend:?}: reopened after the move");
        drop(s);
        let start = commit_end(&before_seg);
        // The commit is the Move record (kind 11) and then padding.
        assert_eq!(full[start + 5], 11, "a Move record at {start}");
        let payload = u32::from_le_bytes(full[start + 8..start + 12].try_into().unwrap());
        let record_end = start + 24 + payload as usize;
        for cut in (start + 1..record_end).step_by(3) {
            let mut image = full.clone();
            image[cut..].iter_mut().for_each(|b| *b = 0);
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(d.path().join("shard-0")).unwrap();
            std::fs::write(d.path().join("shard-0/seg-00000000.log"), &image).unwrap();
            let s = open(d.path(), backend);
            assert_eq!(state(&s), before, "{backend:?}: Move record cut at {cut}");
        }
    }
}
