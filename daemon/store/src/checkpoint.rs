//! Index checkpoint (DESIGN.md 3.3, bounded start): the whole in-memory index together with
//! the log position of every shard it covers. Opening loads it and replays only the records
//! written after those positions, so start-up time follows the size of the index and of the
//! recent log, not of the store.
//!
//! The log stays the truth: a missing, torn or mismatched checkpoint is ignored (with an
//! event) and the index is rebuilt from every segment, which is always possible because the
//! compactor removes the checkpoint before it changes a segment.
//!
//! File `<root>/index.ckpt`, written to a temporary name, fdatasync'ed, renamed and the
//! directory fsync'ed:
//!
//! | size | field                                 |
//! |------|---------------------------------------|
//! | 8    | magic `PSTNCKPT`                      |
//! | 4    | format version (1)                    |
//! | 8    | payload length                        |
//! | 4    | crc32c of the payload                 |
//! | n    | payload (little endian, see `encode`) |

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::index::{Index, Location, LogPosition, MsgEntry};
use crate::record::{put_flags, put_str, Reader};
use crate::StoreError;

const MAGIC: [u8; 8] = *b"PSTNCKPT";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const FILE_NAME: &str = "index.ckpt";
const TMP_NAME: &str = "index.ckpt.tmp";

pub(crate) fn path(root: &Path) -> PathBuf {
    root.join(FILE_NAME)
}

/// An index read from a checkpoint, with the highest UID and MODSEQ each mailbox had handed
/// out (recovery continues past them).
pub(crate) struct Loaded {
    pub index: Index,
    pub max_uid: HashMap<u32, u32>,
    pub max_modseq: HashMap<u32, u64>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_location(out: &mut Vec<u8>, loc: &Location) {
    put_u32(out, u32::try_from(loc.shard).unwrap_or(u32::MAX));
    put_u32(out, loc.segment);
    put_u64(out, loc.offset);
    put_u64(out, loc.len);
}

/// Serialises the index (committed state only: in-flight allocations and flag changes are
/// not durable and are left out) into a complete checkpoint file image.
pub(crate) fn encode(ix: &Index) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 << 16);
    put_len(&mut p, ix.positions.len());
    for (&shard, pos) in &ix.positions {
        put_u32(&mut p, u32::try_from(shard).unwrap_or(u32::MAX));
        put_u32(&mut p, pos.segment);
        put_u64(&mut p, pos.offset);
        put_u64(&mut p, pos.seq);
    }
    put_len(&mut p, ix.segment_ends.len());
    for (&(shard, seg), &end) in &ix.segment_ends {
        put_u32(&mut p, u32::try_from(shard).unwrap_or(u32::MAX));
        put_u32(&mut p, seg);
        put_u64(&mut p, end);
    }
    put_u32(&mut p, ix.next_mailbox_id);
    put_u32(&mut p, ix.last_uidvalidity);
    put_len(&mut p, ix.subscriptions.len());
    for (account, name) in &ix.subscriptions {
        put_str(&mut p, account);
        put_str(&mut p, name);
    }
    let mailboxes = ix.mailbox_cells();
    put_len(&mut p, mailboxes.len());
    for c in mailboxes {
        let m = c.lock();
        put_u32(&mut p, m.id);
        put_u32(&mut p, m.uidvalidity);
        put_str(&mut p, &m.account);
        put_str(&mut p, &m.name);
        match &m.special_use {
            Some(s) => {
                p.push(1);
                put_str(&mut p, s);
            }
            None => p.push(0),
        }
        put_u32(&mut p, m.max_uid());
        put_u64(&mut p, m.max_modseq());
        put_len(&mut p, m.vanished.len());
        for (&uid, &modseq) in &m.vanished {
            put_u32(&mut p, uid);
            put_u64(&mut p, modseq);
        }
        put_len(&mut p, m.messages.len());
        for (&uid, e) in &m.messages {
            put_u32(&mut p, uid);
            match e.source {
                Some((mb, u)) => {
                    p.push(1);
                    put_u32(&mut p, mb);
                    put_u32(&mut p, u);
                }
                None => p.push(0),
            }
            put_u64(&mut p, e.modseq);
            put_flags(&mut p, &e.flags);
            put_u64(&mut p, e.internal_date as u64);
            put_u64(&mut p, e.size);
            put_location(&mut p, &e.loc);
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + p.len());
    out.extend_from_slice(&MAGIC);
    put_u32(&mut out, VERSION);
    put_u64(&mut out, p.len() as u64);
    put_u32(&mut out, crc32c::crc32c(&p));
    out.extend_from_slice(&p);
    out
}

fn location(r: &mut Reader<'_>) -> Option<Location> {
    Some(Location {
        shard: r.u32()? as usize,
        segment: r.u32()?,
        offset: r.u64()?,
        len: r.u64()?,
    })
}

/// Parses a checkpoint file image; None when anything is wrong with it.
pub(crate) fn decode(buf: &[u8]) -> Option<Loaded> {
    if buf.len() < HEADER_LEN || buf[0..8] != MAGIC {
        return None;
    }
    let mut h = Reader::new(&buf[8..HEADER_LEN]);
    if h.u32()? != VERSION {
        return None;
    }
    let len = usize::try_from(h.u64()?).ok()?;
    let crc = h.u32()?;
    let payload = buf.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
    if buf.len() != HEADER_LEN + len || crc32c::crc32c(payload) != crc {
        return None;
    }
    let mut r = Reader::new(payload);
    let mut index = Index::new();
    for _ in 0..r.u32()? {
        let shard = r.u32()? as usize;
        let pos = LogPosition {
            segment: r.u32()?,
            offset: r.u64()?,
            seq: r.u64()?,
        };
        index.positions.insert(shard, pos);
    }
    for _ in 0..r.u32()? {
        let key = (r.u32()? as usize, r.u32()?);
        index.segment_ends.insert(key, r.u64()?);
    }
    let next_mailbox_id = r.u32()?;
    let last_uidvalidity = r.u32()?;
    for _ in 0..r.u32()? {
        let account = r.str()?;
        let name = r.str()?;
        index.set_subscription(account, name, true);
    }
    let mut max_uid = HashMap::new();
    let mut max_modseq = HashMap::new();
    for _ in 0..r.u32()? {
        let id = r.u32()?;
        let uidvalidity = r.u32()?;
        let account = r.str()?;
        let name = r.str()?;
        let special_use = match r.u8()? {
            0 => None,
            _ => Some(r.str()?),
        };
        index.insert_mailbox(id, uidvalidity, account, name, special_use);
        max_uid.insert(id, r.u32()?);
        max_modseq.insert(id, r.u64()?);
        for _ in 0..r.u32()? {
            let uid = r.u32()?;
            index.recover_vanished(id, uid, r.u64()?);
        }
        for _ in 0..r.u32()? {
            let uid = r.u32()?;
            let source = match r.u8()? {
                0 => None,
                _ => Some((r.u32()?, r.u32()?)),
            };
            let entry = MsgEntry {
                source,
                modseq: r.u64()?,
                flags: r.flags()?,
                pending: None,
                internal_date: r.u64()? as i64,
                size: r.u64()?,
                loc: location(&mut r)?,
            };
            index.recover_message(id, uid, entry);
        }
    }
    if !r.at_end() {
        return None;
    }
    // After the mailboxes: insert_mailbox raises these from each mailbox it sees.
    index.next_mailbox_id = index.next_mailbox_id.max(next_mailbox_id);
    index.last_uidvalidity = index.last_uidvalidity.max(last_uidvalidity);
    Some(Loaded {
        index,
        max_uid,
        max_modseq,
    })
}

/// Reads the checkpoint; None when there is none or it cannot be used (reported).
pub(crate) fn load(root: &Path) -> Option<Loaded> {
    let path = path(root);
    let mut buf = Vec::new();
    match File::open(&path).and_then(|mut f| f.read_to_end(&mut buf)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(event = "store.checkpoint.unreadable", path = %path.display(),
                error = %e, "index checkpoint unreadable; replaying the whole log");
            return None;
        }
    }
    let loaded = decode(&buf);
    if loaded.is_none() {
        tracing::warn!(event = "store.checkpoint.invalid", path = %path.display(),
            bytes = buf.len(), "index checkpoint invalid; replaying the whole log");
    }
    loaded
}

/// Replaces the checkpoint with `image` atomically and durably.
pub(crate) fn write(root: &Path, image: &[u8]) -> Result<(), StoreError> {
    let tmp = root.join(TMP_NAME);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, e))?;
    f.write_all(image)
        .and_then(|()| f.sync_data())
        .map_err(|e| StoreError::io(&tmp, e))?;
    drop(f);
    let dest = path(root);
    std::fs::rename(&tmp, &dest).map_err(|e| StoreError::io(&dest, e))?;
    crate::shard::fsync_dir(root)
}

/// Removes the checkpoint durably (before the compactor changes a segment it describes).
pub(crate) fn remove(root: &Path) -> Result<(), StoreError> {
    let path = path(root);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::shard::fsync_dir(root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}
