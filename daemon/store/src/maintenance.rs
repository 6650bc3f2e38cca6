//! Background upkeep of a store that runs for years (DESIGN.md 3.3): the index checkpoint
//! (bounded start) and compaction (space of expunged and deleted mail given back).
//!
//! Compaction rewrites sealed segments (never one being appended to) in which at least
//! `compact_dead_percent` of the segment is dead. A pass:
//! 1. under the index lock, one look at the index gives the candidates and the message
//!    records each still needs: those some mailbox entry or queued copy refers to (a COPY
//!    keeps its original alive);
//! 2. for each candidate, without the lock: it reads the segment, judges the other records
//!    (a lookup each under the lock: the newest flag change of each live message, expunges
//!    and moves of mailboxes that still exist, which keep QRESYNC's VANISHED and the UID
//!    counters, and the whole mailbox catalogue), writes the needed ones renumbered in order
//!    to `seg-N.log.tmp` and fdatasyncs it, all throttled;
//! 3. it removes the index checkpoint (the checkpoint names places in the old segments);
//! 4. under the index lock it renames each new segment over its old one (or deletes the old
//!    one when nothing was kept; a segment a queued copy points into waits for the next
//!    pass), fsyncs the directories and moves the index entries to their new places;
//! 5. it writes a new checkpoint.
//!
//! A kill at any point leaves either segment whole, and recovery from the log alone gives
//! the same mailboxes: the log replay does not depend on record order, and a copy finds its
//! original by (mailbox, uid), not by the place it recorded.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::index::{ApplyGate, Index};
use crate::record::{self, Kind, Record};
use crate::shard::{fsync_dir, segment_path, shard_dir};
use crate::StoreError;

/// Space use of one shard ([`crate::Store::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: usize,
    pub segments: usize,
    /// Bytes of valid records in the shard's segments.
    pub used_bytes: u64,
    /// Bytes of message records still referenced by a mailbox.
    pub live_bytes: u64,
    /// `used_bytes - live_bytes`: expunged and deleted mail, padding, superseded flag
    /// changes, and the small metadata records (expunges, the mailbox catalogue) that
    /// compaction keeps.
    pub dead_bytes: u64,
}

/// What one compaction pass did ([`crate::Store::compact`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub segments_rewritten: usize,
    pub segments_removed: usize,
    /// Segment bytes before minus after.
    pub bytes_reclaimed: u64,
    pub bytes_copied: u64,
    pub elapsed: Duration,
}

/// Tuning of the background upkeep (part of [`crate::StoreOptions`]).
#[derive(Debug, Clone)]
pub struct MaintenanceOptions {
    /// Write a checkpoint after this many log bytes since the last one.
    pub checkpoint_bytes: u64,
    /// ... or after this long, when anything was written.
    pub checkpoint_interval: Duration,
    /// How often the background compactor looks for work; None: only when asked.
    pub compact_interval: Option<Duration>,
    /// A sealed segment is rewritten when at least this share of it is dead (percent of
    /// the segment size).
    pub compact_dead_percent: u8,
    /// Copy rate limit of compaction, bytes per second (0: unlimited), so that ingest and
    /// IMAP keep their latency while it runs.
    pub compact_bytes_per_sec: u64,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            checkpoint_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(600),
            compact_interval: Some(Duration::from_secs(300)),
            compact_dead_percent: 50,
            compact_bytes_per_sec: 32 << 20,
        }
    }
}

/// Open segment files for reads, by (shard, segment); the compactor drops the entry of a
/// segment it replaced.
pub(crate) type Readers = Arc<Mutex<HashMap<(usize, u32), Arc<File>>>>;

/// The state upkeep shares with the store (not the shard threads: a maintenance thread
/// holding this does not keep the store open).
pub(crate) struct Maintainer {
    pub root: PathBuf,
    pub index: Arc<Mutex<Index>>,
    /// Held exclusively for a checkpoint's snapshot and a compaction's relocation.
    pub gate: ApplyGate,
    pub readers: Readers,
    pub segment_bytes: u64,
    pub opts: MaintenanceOptions,
    /// One checkpoint or compaction at a time.
    busy: Mutex<MaintState>,
    /// Set at shutdown: a running compaction gives up at its next chunk.
    pub stopping: AtomicBool,
}

#[derive(Default)]
struct MaintState {
    last_checkpoint: Option<Instant>,
    /// Live message bytes of a segment when it was last compacted (or found not worth
    /// it): it is looked at again only once more of it died.
    examined: HashMap<(usize, u32), u64>,
}

fn lock_err<T>(_: T) -> StoreError {
    StoreError::CommitFailed("index lock poisoned".into())
}

/// One record of a segment being compacted, as read.
struct Found {
    offset: u64,
    len: usize,
    kind: Kind,
}

impl Maintainer {
    pub(crate) fn new(
        root: PathBuf,
        index: Arc<Mutex<Index>>,
        gate: ApplyGate,
        readers: Readers,
        segment_bytes: u64,
        opts: MaintenanceOptions,
    ) -> Self {
        Maintainer {
            root,
            index,
            gate,
            readers,
            segment_bytes,
            opts,
            busy: Mutex::new(MaintState::default()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Writes a checkpoint of the index now.
    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        let mut state = self.busy.lock().map_err(lock_err)?;
        self.checkpoint_locked(&mut state)
    }

    fn checkpoint_locked(&self, state: &mut MaintState) -> Result<(), StoreError> {
        let started = Instant::now();
        let (image, covered) = {
            // No batch half-applied: the positions recorded agree with the mailboxes.
            let _gate = self.gate.exclusive();
            let mut ix = self.index.lock().map_err(lock_err)?;
            let image = checkpoint::encode(&ix);
            (image, std::mem::take(&mut ix.bytes_since_checkpoint))
        };
        let encoded = started.elapsed();
        if let Err(e) = checkpoint::write(&self.root, &image) {
            if let Ok(mut ix) = self.index.lock() {
                ix.bytes_since_checkpoint += covered;
            }
            return Err(e);
        }
        state.last_checkpoint = Some(Instant::now());
        tracing::info!(
            event = "store.checkpoint.written",
            bytes = image.len(),
            log_bytes_covered = covered,
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "index checkpoint written"
        );
        Ok(())
    }

    /// The background thread's periodic step: a checkpoint when enough was written, a
    /// compaction pass when one is due.
    pub(crate) fn tick(&self, last_compaction: &mut Instant) {
        let Ok(mut state) = self.busy.lock() else {
            return;
        };
        let since = self
            .index
            .lock()
            .map(|ix| ix.bytes_since_checkpoint)
            .unwrap_or(0);
        let age_due = state
            .last_checkpoint
            .is_none_or(|t| t.elapsed() >= self.opts.checkpoint_interval);
        if since >= self.opts.checkpoint_bytes || (since > 0 && age_due) {
            if let Err(e) = self.checkpoint_locked(&mut state) {
                tracing::error!(event = "store.checkpoint.failed", error = %e,
                    "index checkpoint failed; the next start replays more of the log");
            }
        }
        if let Some(every) = self.opts.compact_interval {
            if last_compaction.elapsed() >= every {
                *last_compaction = Instant::now();
                if let Err(e) = self.compact_locked(&mut state) {
                    tracing::error!(event = "store.compaction.failed", error = %e,
                        "compaction pass failed; the store is unchanged where it stopped");
                }
            }
        }
    }

    /// Space use per shard.
    pub(crate) fn stats(&self) -> Result<Vec<ShardStats>, StoreError> {
        let ix = self.index.lock().map_err(lock_err)?;
        let live = ix.live_records();
        let mut out: BTreeMap<usize, ShardStats> = BTreeMap::new();
        for (&(shard, seg), &used) in &ix.segment_ends {
            let s = out.entry(shard).or_insert_with(|| ShardStats {
                shard,
                ..Default::default()
            });
            s.segments += 1;
            s.used_bytes += used;
            s.live_bytes += live.get(&(shard, seg)).map_or(0, |r| r.values().sum());
        }
        Ok(out
            .into_values()
            .map(|mut s| {
                s.dead_bytes = s.used_bytes.saturating_sub(s.live_bytes);
                s
            })
            .collect())
    }

    /// One compaction pass now, as the background thread runs them.
    pub(crate) fn compact(&self) -> Result<CompactReport, StoreError> {
        let mut state = self.busy.lock().map_err(lock_err)?;
        self.compact_locked(&mut state)
    }

    /// A pass: which segments to rewrite and what each still needs come from one look at
    /// the index; each is then rewritten to its temporary file without the index lock; all
    /// are switched at the end under one lock hold, with one pass moving the entries. The
    /// index lock is thus held for two passes over the index per compaction pass, not per
    /// segment (delivery and IMAP wait on it).
    fn compact_locked(&self, state: &mut MaintState) -> Result<CompactReport, StoreError> {
        let started = Instant::now();
        let mut report = CompactReport::default();
        let (candidates, mut live) = self.candidates(state)?;
        let mut throttle = Throttle::new(self.opts.compact_bytes_per_sec);
        let mut prepared = Vec::new();
        for (shard, seg, live_bytes) in candidates {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            let needed_here = live.remove(&(shard, seg)).unwrap_or_default();
            match self.rewrite(shard, seg, &needed_here, &mut throttle) {
                Ok(Some(p)) => prepared.push(p),
                // Not worth it: looked at again only once more of it died.
                Ok(None) => {}
                Err(e) => {
                    discard(&prepared);
                    // Shutdown stops a pass at its next chunk: nothing was switched.
                    if self.stopping.load(Ordering::Relaxed) {
                        report.elapsed = started.elapsed();
                        return Ok(report);
                    }
                    return Err(e);
                }
            }
            state.examined.insert((shard, seg), live_bytes);
        }
        if prepared.is_empty() || self.stopping.load(Ordering::Relaxed) {
            discard(&prepared);
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        // The checkpoint names places in the segments about to change: gone first, so that
        // a crash from here on replays the log.
        if let Err(e) = checkpoint::remove(&self.root) {
            discard(&prepared);
            return Err(e);
        }
        {
            // The liveness re-check and the relocation see and change whole batches only.
            let _gate = self.gate.exclusive();
            let mut ix = self.index.lock().map_err(lock_err)?;
            let mut moved = HashMap::new();
            let mut dirs = Vec::new();
            for p in prepared {
                // A copy queued against this segment would commit the old place.
                if ix.has_pins_in(p.shard, p.seg) {
                    let _ = std::fs::remove_file(&p.tmp);
                    state.examined.remove(&(p.shard, p.seg));
                    tracing::info!(
                        event = "store.compaction.deferred",
                        shard = p.shard,
                        segment = p.seg,
                        "a copy refers to this segment; compacting it later"
                    );
                    continue;
                }
                let path = segment_path(&self.root, p.shard, p.seg);
                if p.after > 0 {
                    std::fs::rename(&p.tmp, &path).map_err(|e| StoreError::io(&path, e))?;
                    ix.segment_ends.insert((p.shard, p.seg), p.after);
                    report.segments_rewritten += 1;
                } else {
                    std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                    ix.segment_ends.remove(&(p.shard, p.seg));
                    report.segments_removed += 1;
                }
                if let Ok(mut readers) = self.readers.lock() {
                    readers.remove(&(p.shard, p.seg));
                }
                report.bytes_reclaimed += p.before.saturating_sub(p.after);
                report.bytes_copied += p.after;
                if !dirs.contains(&p.shard) {
                    dirs.push(p.shard);
                }
                tracing::info!(
                    event = "store.compaction.segment",
                    shard = p.shard,
                    segment = p.seg,
                    before = p.before,
                    after = p.after,
                    "segment compacted"
                );
                moved.insert((p.shard, p.seg), p.moved);
            }
            for shard in dirs {
                fsync_dir(&shard_dir(&self.root, shard))?;
            }
            ix.relocate(&moved);
        }
        self.checkpoint_locked(state)?;
        report.elapsed = started.elapsed();
        tracing::info!(
            event = "store.compaction.done",
            rewritten = report.segments_rewritten,
            removed = report.segments_removed,
            reclaimed = report.bytes_reclaimed,
            copied = report.bytes_copied,
            ms = report.elapsed.as_millis() as u64,
            "compaction pass finished"
        );
        Ok(report)
    }

    /// Sealed segments worth rewriting, most dead first, with their live message bytes;
    /// and the message records every segment still needs.
    #[allow(clippy::type_complexity)]
    fn candidates(
        &self,
        state: &MaintState,
    ) -> Result<
        (
            Vec<(usize, u32, u64)>,
            HashMap<(usize, u32), HashMap<u64, u64>>,
        ),
        StoreError,
    > {
        let ix = self.index.lock().map_err(lock_err)?;
        let live = ix.live_records();
        let threshold = self.segment_bytes * u64::from(self.opts.compact_dead_percent) / 100;
        let mut v: Vec<(u64, usize, u32, u64)> = Vec::new();
        for (&(shard, seg), &used) in &ix.segment_ends {
            // The segment appended to is never touched.
            let active = ix.positions.get(&shard).map(|p| p.segment);
            if active.is_none_or(|a| seg >= a) {
                continue;
            }
            let live_bytes = live.get(&(shard, seg)).map_or(0, |r| r.values().sum());
            let dead = used.saturating_sub(live_bytes);
            if state.examined.get(&(shard, seg)) == Some(&live_bytes) {
                continue;
            }
            if dead > 0 && dead >= threshold {
                v.push((dead, shard, seg, live_bytes));
            }
        }
        drop(ix);
        v.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        Ok((v.into_iter().map(|(_, s, g, l)| (s, g, l)).collect(), live))
    }

    /// Writes the records of one segment that are still needed to its temporary file;
    /// None when that would give back less than a tenth of it.
    fn rewrite(
        &self,
        shard: usize,
        seg: u32,
        live: &HashMap<u64, u64>,
        throttle: &mut Throttle,
    ) -> Result<Option<Prepared>, StoreError> {
        let path = segment_path(&self.root, shard, seg);
        let data = read_throttled(&path, throttle, &self.stopping)?;
        // The records as recovery sees them: up to the first invalid one.
        let mut found = Vec::new();
        let mut off = 0usize;
        let mut first_seq = None;
        while let Some(f) = record::frame(&data[off..]) {
            first_seq.get_or_insert(f.seq);
            found.push(Found {
                offset: off as u64,
                len: f.total_len,
                kind: f.kind,
            });
            off += f.total_len;
        }
        let before = off as u64;
        let Some(first_seq) = first_seq else {
            return Ok(None);
        };
        // Flag changes, expunges and copies are judged against the index as it is now (a
        // lookup each, under the lock); message records against `live`, which can only
        // have shrunk since it was taken (a copy needs a live source, and pins it).
        let keep: Vec<bool> = {
            let ix = self.index.lock().map_err(lock_err)?;
            found
                .iter()
                .map(|f| {
                    let start = f.offset as usize;
                    let payload = &data[start + record::HEADER_LEN..start + f.len];
                    needed(&ix, f, payload, live)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(before as usize);
        let mut moved: HashMap<u64, (u64, u64)> = HashMap::new();
        let kept = found.iter().zip(&keep).filter(|(_, k)| **k);
        for (seq, (f, _)) in (first_seq..).zip(kept) {
            let start = f.offset as usize;
            let payload = &data[start + record::HEADER_LEN..start + f.len];
            let new_offset = out.len() as u64;
            let n = record::encode_framed(f.kind, payload, seq, &mut out);
            if f.kind == Kind::Message {
                moved.insert(f.offset, (new_offset, n as u64));
            }
        }
        let after = out.len() as u64;
        if after * 10 > before * 9 && after > 0 {
            return Ok(None);
        }
        let tmp = shard_dir(&self.root, shard).join(format!("seg-{seg:08}.log.tmp"));
        if after > 0 {
            write_throttled(&tmp, &out, throttle, &self.stopping)?;
        }
        Ok(Some(Prepared {
            shard,
            seg,
            tmp,
            before,
            after,
            moved,
        }))
    }
}

/// A rewritten segment waiting to be switched in.
struct Prepared {
    shard: usize,
    seg: u32,
    tmp: PathBuf,
    before: u64,
    after: u64,
    /// Message records: old offset to new offset and length.
    moved: HashMap<u64, (u64, u64)>,
}

fn discard(prepared: &[Prepared]) {
    for p in prepared {
        let _ = std::fs::remove_file(&p.tmp);
    }
}

/// Keeps compaction I/O (reads and writes together) at a rate, so that delivery and IMAP
/// keep their latency while it runs.
struct Throttle {
    bytes_per_sec: u64,
    started: Instant,
    spent: u64,
}

impl Throttle {
    fn new(bytes_per_sec: u64) -> Self {
        Throttle {
            bytes_per_sec,
            started: Instant::now(),
            spent: 0,
        }
    }

    fn spend(&mut self, bytes: usize) {
        self.spent += bytes as u64;
        if self.bytes_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.spent as f64 / self.bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

const CHUNK: usize = 1 << 20;

fn read_throttled(
    path: &std::path::Path,
    throttle: &mut Throttle,
    stopping: &AtomicBool,
) -> Result<Vec<u8>, StoreError> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut data = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        if stopping.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let n = f.read(&mut chunk).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&chunk[..n]);
        throttle.spend(n);
    }
}

/// Writes `data` to a new file at the throttle's rate, then fdatasyncs it.
fn write_throttled(
    path: &std::path::Path,
    data: &[u8],
    throttle: &mut Throttle,
    stopping: &AtomicBool,
) -> Result<(), StoreError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    for chunk in data.chunks(CHUNK) {
        if stopping.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        f.write_all(chunk).map_err(|e| StoreError::io(path, e))?;
        throttle.spend(chunk.len());
    }
    f.sync_data().map_err(|e| StoreError::io(path, e))
}

/// Whether a record of a segment being compacted is still needed (see the module comment).
fn needed(ix: &Index, f: &Found, payload: &[u8], live: &HashMap<u64, u64>) -> bool {
    match f.kind {
        Kind::Padding => false,
        Kind::Message => live.contains_key(&f.offset),
        // The catalogue is small and its order matters: kept whole.
        Kind::MailboxCreate | Kind::MailboxDelete | Kind::MailboxRename | Kind::Subscription => {
            true
        }
        kind => match record::decode(kind, payload) {
            Some(Record::FlagsUpdate {
                mailbox,
                uid,
                modseq,
                ..
            }) => ix.committed_modseq(mailbox, uid) == Some(modseq),
            Some(Record::FlagsBatch { mailbox, updates }) => updates
                .iter()
                .any(|u| ix.committed_modseq(mailbox, u.uid) == Some(u.modseq)),
            Some(Record::Expunge { mailbox, .. }) => ix.contains(mailbox),
            Some(Record::MessageRef { deliveries, .. }) => deliveries
                .iter()
                .any(|d| ix.committed_modseq(d.mailbox, d.uid).is_some()),
            Some(Record::Move {
                mailbox, copies, ..
            }) => {
                ix.contains(mailbox)
                    || copies.iter().any(|c| {
                        ix.committed_modseq(c.delivery.mailbox, c.delivery.uid)
                            .is_some()
                    })
            }
            // Undecodable here means it was not read at recovery either; keeping it changes
            // nothing.
            _ => true,
        },
    }
}

/// Removes compaction and checkpoint leftovers of a killed run (never read: their names do
/// not match a segment's).
pub(crate) fn remove_leftovers(root: &std::path::Path, shards: &[usize]) {
    let _ = std::fs::remove_file(root.join("index.ckpt.tmp"));
    for &s in shards {
        let dir = shard_dir(root, s);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for ent in rd.flatten() {
            if ent
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".log.tmp"))
            {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
}
