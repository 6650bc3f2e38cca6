//! Torn-tail and corruption recovery, both backends.

mod common;

use std::path::Path;

use common::*;
use postern_store::{BackendChoice, MailboxId, MessageMeta};

/// A store with three messages, each its own commit; returns the segment bytes, the
/// mailbox and the metadata of the three messages.
fn build(backend: BackendChoice) -> (Vec<u8>, MailboxId, Vec<MessageMeta>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), backend);
    let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
    for body in [&b"first message"[..], b"second message", b"third message"] {
        s.append_blocking(0, req(mb, body)).unwrap();
    }
    let metas = s.messages(mb);
    assert_eq!(metas.len(), 3);
    s.shutdown();
    let seg = std::fs::read(dir.path().join("shard-0/seg-00000000.log")).unwrap();
    (seg, mb, metas)
}

fn write_seg(root: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(root.join("shard-0")).unwrap();
    std::fs::write(root.join("shard-0/seg-00000000.log"), bytes).unwrap();
}

/// Reopens a damaged store, checks what survived, appends, reopens again and checks that
/// nothing is duplicated and the new message got the next UID.
fn check(backend: BackendChoice, seg: &[u8], mb: MailboxId, expected: &[(u32, &[u8])], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_seg(dir.path(), seg);
    let s = open(dir.path(), backend);
    let got = contents(&s, mb);
    let want: Vec<(u32, Vec<u8>)> = expected.iter().map(|(u, b)| (*u, b.to_vec())).collect();
    assert_eq!(got, want, "{what}: after recovery");
    let next = expected.len() as u32 + 1;
    let a = s.append_blocking(0, req(mb, b"after recovery")).unwrap();
    assert_eq!(a[0].uid, next, "{what}: next uid");
    drop(s);
    let s = open(dir.path(), backend);
    let mut want = want;
    want.push((next, b"after recovery".to_vec()));
    assert_eq!(contents(&s, mb), want, "{what}: after append + reopen");
    let info = s.find_mailbox("a@x.test", "INBOX").unwrap();
    assert_eq!((info.uidnext, info.exists), (next + 1, next));
}

const M1: &[u8] = b"first message";
const M2: &[u8] = b"second message";
const M3: &[u8] = b"third message";

#[test]
fn truncation_at_every_offset_of_the_last_record() {
    for backend in BACKENDS {
        let (seg, mb, metas) = build(backend);
        let last = metas[2].location;
        let (start, end) = (last.offset as usize, (last.offset + last.len) as usize);
        // Every byte of the last record, then a sample of its trailing padding record.
        let cuts = (start..end).chain([end, end + 1, end + 30, end + 500, start + 4095]);
        for cut in cuts {
            let torn = &seg[..cut];
            if cut < end {
                check(
                    backend,
                    torn,
                    mb,
                    &[(1, M1), (2, M2)],
                    &format!("cut {cut}"),
                );
            } else {
                check(
                    backend,
                    torn,
                    mb,
                    &[(1, M1), (2, M2), (3, M3)],
                    &format!("cut {cut}"),
                );
            }
            // Same tear inside preallocated (zeroed) space rather than a short file.
            if cut % 5 == 0 {
                let mut z = seg.clone();
                z[cut..].iter_mut().for_each(|b| *b = 0);
                let exp: &[(u32, &[u8])] = if cut < end {
                    &[(1, M1), (2, M2)]
                } else {
                    &[(1, M1), (2, M2), (3, M3)]
                };
                check(backend, &z, mb, exp, &format!("zeroed from {cut}"));
            }
        }
    }
}

#[test]
fn corrupted_byte_drops_the_record_and_what_follows() {
    for backend in BACKENDS {
        let (seg, mb, metas) = build(backend);
        let last = metas[2].location;
        for off in (last.offset..last.offset + last.len).step_by(3) {
            let mut bad = seg.clone();
            bad[off as usize] ^= 0x5A;
            check(
                backend,
                &bad,
                mb,
                &[(1, M1), (2, M2)],
                &format!("flip {off}"),
            );
        }
        // Damage in the middle record: the segment ends there. The intact third record
        // after it must not resurface later, even once new appends overwrite the damage
        // (it would duplicate the UID given to the next append).
        let mid = metas[1].location;
        let mut bad = seg.clone();
        bad[(mid.offset + mid.len / 2) as usize] ^= 1;
        check(backend, &bad, mb, &[(1, M1)], "flip in middle record");
    }
}

#[test]
fn read_message_detects_corruption_in_place() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), backend);
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        s.append_blocking(0, req(mb, b"precious bytes")).unwrap();
        let meta = s.messages(mb).remove(0);
        let path = dir.path().join("shard-0/seg-00000000.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(meta.location.offset + meta.location.len - 2) as usize] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            s.read_message(&meta),
            Err(postern_store::StoreError::Corrupt { .. })
        ));
    }
}
