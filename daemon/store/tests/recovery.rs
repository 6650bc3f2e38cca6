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

/// A whole, checksummed record of a kind this build does not know (written by a newer
/// posternd, e.g. before an A/B rollback to an older slot): the store refuses to open and
/// leaves the bytes alone, instead of clearing them as a torn tail.
#[test]
fn record_from_a_newer_format_is_refused_not_cleared() {
    for backend in BACKENDS {
        let (seg, _mb, metas) = build(backend);
        let end = (metas[2].location.offset + metas[2].location.len) as usize;
        let at = metas[2].location.offset as usize;
        let last_seq = u64::from_le_bytes(seg[at + 16..at + 24].try_into().unwrap());
        for (version, kind) in [(1u8, 200u8), (2, 2)] {
            let payload = b"from the future";
            let mut rec = Vec::new();
            rec.extend_from_slice(b"PSTN");
            rec.extend_from_slice(&[version, kind, 0, 0]);
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&[0; 4]);
            rec.extend_from_slice(&(last_seq + 1).to_le_bytes());
            rec.extend_from_slice(payload);
            let mut crc = crc32c::crc32c(&rec[0..12]);
            crc = crc32c::crc32c_append(crc, &[0u8; 4]);
            crc = crc32c::crc32c_append(crc, &rec[16..]);
            rec[12..16].copy_from_slice(&crc.to_le_bytes());
            let mut bytes = seg[..end].to_vec();
            bytes.extend_from_slice(&rec);

            let dir = tempfile::tempdir().unwrap();
            write_seg(dir.path(), &bytes);
            let error = match postern_store::Store::open(opts(dir.path(), backend)) {
                Ok(_) => panic!("opened a store holding a version {version} kind {kind} record"),
                Err(error) => error,
            };
            assert!(
                matches!(error, postern_store::StoreError::NewerFormat { version: v, kind: k, .. } if v == version && k == kind),
                "{error}"
            );
            assert!(error.to_string().contains("newer posternd"), "{error}");
            let after = std::fs::read(dir.path().join("shard-0/seg-00000000.log")).unwrap();
            assert_eq!(&after[..bytes.len()], &bytes[..], "the record was touched");

            // Garbage that merely looks like a record (bad checksum) is still a torn tail.
            let mut torn = bytes.clone();
            let last = torn.len() - 1;
            torn[last] ^= 0xff;
            check(
                backend,
                &torn,
                metas[0].mailbox,
                &[(1, M1), (2, M2), (3, M3)],
                "bad crc",
            );
        }
    }
}
