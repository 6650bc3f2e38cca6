//! One shard: its segment files, its recovery scan, and the thread that group-commits.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use crate::backend::Backend;
use crate::index::{
    Alloc, ApplyGate, CellChange, Index, Location, LogPosition, MailboxChange, MsgEntry,
};
use crate::record::{self, Delivery, FlagChange, Kind, MovedCopy, Record, HEADER_LEN};
use crate::{Appended, BackendKind, CommitHook, CommitReport, MailboxId, StoreError};

pub(crate) fn shard_dir(root: &Path, shard: usize) -> PathBuf {
    root.join(format!("shard-{shard}"))
}

pub(crate) fn segment_path(root: &Path, shard: usize, seg: u32) -> PathBuf {
    shard_dir(root, shard).join(format!("seg-{seg:08}.log"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(path, e)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Lists `seg-NNNNNNNN.log` numbers in a shard directory, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u32>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// Shard numbers present under the root (`shard-N` directories).
pub(crate) fn list_shards(root: &Path) -> Result<Vec<usize>, StoreError> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) => return Err(StoreError::io(root, e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err(root))?;
        if let Some(n) = ent
            .file_name()
            .to_str()
            .and_then(|s| s.strip_prefix("shard-"))
            .and_then(|s| s.parse::<usize>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// A record recovered from the log, to be applied to the index once every shard is read.
pub(crate) enum Recovered {
    /// A message: only its head is decoded at recovery; the body stays on disk at `loc`.
    Message {
        internal_date: i64,
        deliveries: Vec<Delivery>,
        size: u64,
        loc: Location,
        /// For a copy (MessageRef): the delivery whose bytes are at `loc`.
        source: Option<(u32, u32)>,
    },
    /// A mailbox creation, flag change or expunge, as logged.
    Change(Record),
}

/// Result of scanning one shard.
pub(crate) struct ShardScan {
    /// Last segment and the end of its last valid record: where appends continue.
    pub tail: Option<(u32, u64)>,
    /// Bytes after the last valid record of the last segment that are not zero (a torn
    /// or unacknowledged write) and must be cleared before appending there.
    pub garbage: Option<(u64, u64)>,
    pub next_seq: u64,
}

/// Scans the segments of a shard, validating each record; a segment ends at its first
/// invalid record (torn tail or zeroed preallocated space). With `from` (a checkpoint's
/// position) only what follows it is read; `Ok(None)` then says the log does not continue
/// there as the checkpoint claims, and the caller replays the whole log instead.
pub(crate) fn scan_shard(
    root: &Path,
    shard: usize,
    from: Option<LogPosition>,
    out: &mut Vec<Recovered>,
    ends: &mut BTreeMap<(usize, u32), u64>,
) -> Result<Option<ShardScan>, StoreError> {
    let dir = shard_dir(root, shard);
    let mut segs = list_segments(&dir)?;
    let mut next_seq = 0u64;
    let mut scan = ShardScan {
        tail: None,
        garbage: None,
        next_seq: 0,
    };
    if let Some(pos) = from {
        if !segs.contains(&pos.segment) {
            return Ok(None);
        }
        segs.retain(|&s| s >= pos.segment);
        next_seq = pos.seq;
    }
    for (i, &seg) in segs.iter().enumerate() {
        let path = segment_path(root, shard, seg);
        // Where reading starts: the checkpoint's offset in its own segment.
        let base = match from {
            Some(pos) if pos.segment == seg => pos.offset,
            _ => 0,
        };
        let mut data = Vec::new();
        let mut file = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if base > len {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(base))
            .and_then(|_| file.read_to_end(&mut data))
            .map_err(io_err(&path))?;
        if base > 0 {
            // The checkpoint's next record, if one was written since, has its sequence.
            if let Some(f) = record::frame(&data) {
                if f.seq != next_seq {
                    return Ok(None);
                }
            }
        }
        let mut off = 0usize;
        let mut first = true;
        while let Some(f) = record::frame(&data[off..]) {
            // Within a segment the sequence is contiguous; a jump means stale bytes from
            // an older, unacknowledged write, which must not resurface.
            if !first && f.seq != next_seq {
                break;
            }
            if first && f.seq < next_seq {
                break;
            }
            let loc = Location {
                shard,
                segment: seg,
                offset: base + off as u64,
                len: f.total_len as u64,
            };
            let rec = match f.kind {
                Kind::Padding => None,
                Kind::Message => match record::decode_message_head(f.payload) {
                    Some(h) => Some(Recovered::Message {
                        internal_date: h.internal_date,
                        deliveries: h.deliveries,
                        size: h.body_len as u64,
                        loc,
                        source: None,
                    }),
                    None => break,
                },
                Kind::MessageRef => match record::decode(Kind::MessageRef, f.payload) {
                    Some(Record::MessageRef {
                        internal_date,
                        size,
                        source,
                        deliveries,
                    }) => Some(Recovered::Message {
                        internal_date,
                        deliveries,
                        size,
                        loc: source.location(),
                        source: Some((source.mailbox, source.uid)),
                    }),
                    _ => break,
                },
                // The copies are deliveries like MessageRef's, the expunge an Expunge.
                Kind::Move => match record::decode(Kind::Move, f.payload) {
                    Some(Record::Move {
                        mailbox,
                        modseq,
                        uids,
                        copies,
                    }) => {
                        for c in copies {
                            out.push(Recovered::Message {
                                internal_date: c.internal_date,
                                deliveries: vec![c.delivery],
                                size: c.size,
                                loc: c.source.location(),
                                source: Some((c.source.mailbox, c.source.uid)),
                            });
                        }
                        Some(Recovered::Change(Record::Expunge {
                            mailbox,
                            modseq,
                            uids,
                        }))
                    }
                    _ => break,
                },
                kind => match record::decode(kind, f.payload) {
                    Some(
                        change @ (Record::MailboxCreate { .. }
                        | Record::FlagsUpdate { .. }
                        | Record::Expunge { .. }
                        | Record::MailboxDelete { .. }
                        | Record::MailboxRename { .. }
                        | Record::FlagsBatch { .. }
                        | Record::Subscription { .. }),
                    ) => Some(Recovered::Change(change)),
                    _ => break,
                },
            };
            out.extend(rec);
            next_seq = f.seq + 1;
            first = false;
            off += f.total_len;
        }
        if let Some((version, kind, seq)) = record::newer_format(&data[off..]) {
            if first || seq == next_seq {
                return Err(StoreError::NewerFormat {
                    shard,
                    segment: seg,
                    offset: base + off as u64,
                    version,
                    kind,
                });
            }
        }
        let end = base + off as u64;
        ends.insert((shard, seg), end);
        if i + 1 == segs.len() {
            scan.tail = Some((seg, end));
            if let Some(last) = data[off..].iter().rposition(|&b| b != 0) {
                tracing::warn!(
                    event = "store.recovery.torn_tail",
                    shard,
                    segment = seg,
                    offset = end,
                    bytes = last + 1,
                    "dropping invalid bytes after the last valid record"
                );
                scan.garbage = Some((end, base + (off + last + 1) as u64));
            }
        } else if off < data.len() && data[off..].iter().any(|&b| b != 0) {
            tracing::warn!(
                event = "store.recovery.invalid_record",
                shard,
                segment = seg,
                offset = end,
                "segment ends at an invalid record"
            );
        }
    }
    scan.next_seq = next_seq;
    Ok(Some(scan))
}

/// Applies recovered records to the index in an order that does not depend on how
/// records are spread over shards: mailboxes, messages, flag changes by MODSEQ, expunges.
/// `index` is empty or loaded from a checkpoint, with the UID and MODSEQ counters it
/// recorded in `max_uid` and `max_modseq`.
pub(crate) fn rebuild_index(
    index: &mut Index,
    mut recs: Vec<Recovered>,
    mut max_uid: HashMap<u32, u32>,
    mut max_modseq: HashMap<u32, u64>,
) {
    // Where each delivery's own record is. A copy names its original's record by place
    // and by (mailbox, uid); the place is stale once the compactor moved that record, so
    // the (mailbox, uid) decides.
    let mut holders: HashMap<(u32, u32), Location> = HashMap::new();
    for r in &recs {
        if let Recovered::Message {
            deliveries,
            loc,
            source: None,
            ..
        } = r
        {
            for d in deliveries {
                holders.insert((d.mailbox, d.uid), *loc);
            }
        }
    }
    let mut bump = |mb: u32, uid: Option<u32>, ms: u64| {
        if let Some(u) = uid {
            let e = max_uid.entry(mb).or_default();
            *e = (*e).max(u);
        }
        let e = max_modseq.entry(mb).or_default();
        *e = (*e).max(ms);
    };
    // The catalogue (creates, deletes, renames, subscriptions) is written on shard 0 only,
    // so its records are in log order here.
    for r in &recs {
        match r {
            Recovered::Change(Record::MailboxCreate {
                id,
                uidvalidity,
                account,
                name,
                special_use,
            }) => index.insert_mailbox(
                *id,
                *uidvalidity,
                account.clone(),
                name.clone(),
                special_use.clone(),
            ),
            Recovered::Change(Record::MailboxDelete { id }) => index.delete_mailbox(*id),
            Recovered::Change(Record::MailboxRename { id, name }) => {
                index.rename_mailbox(*id, name.clone())
            }
            Recovered::Change(Record::Subscription {
                account,
                name,
                subscribed,
            }) => index.set_subscription(account.clone(), name.clone(), *subscribed),
            _ => {}
        }
    }
    let mut flags = Vec::new();
    let mut expunges = Vec::new();
    for r in recs.drain(..) {
        match r {
            Recovered::Message {
                internal_date,
                deliveries,
                size,
                loc,
                source,
            } => {
                let loc = match source {
                    Some(src) => holders
                        .get(&src)
                        .copied()
                        .or_else(|| index.holder_location(src))
                        .unwrap_or(loc),
                    None => loc,
                };
                for d in deliveries {
                    bump(d.mailbox, Some(d.uid), d.modseq);
                    index.recover_message(
                        d.mailbox,
                        d.uid,
                        MsgEntry {
                            source,
                            modseq: d.modseq,
                            flags: d.flags,
                            pending: None,
                            internal_date,
                            size,
                            loc,
                        },
                    );
                }
            }
            Recovered::Change(Record::FlagsUpdate {
                mailbox,
                uid,
                modseq,
                flags: f,
            }) => {
                bump(mailbox, None, modseq);
                flags.push((mailbox, uid, modseq, f));
            }
            Recovered::Change(Record::FlagsBatch { mailbox, updates }) => {
                for u in updates {
                    bump(mailbox, None, u.modseq);
                    flags.push((mailbox, u.uid, u.modseq, u.flags));
                }
            }
            Recovered::Change(Record::Expunge {
                mailbox,
                modseq,
                uids,
            }) => {
                // The expunged messages' own records may be gone (compacted): their UIDs
                // still count, so none is handed out again.
                let top = uids.iter().max().copied();
                bump(mailbox, top, modseq);
                expunges.push((mailbox, modseq, uids));
            }
            // The catalogue was applied in the first pass; the scan keeps no other kind.
            Recovered::Change(
                Record::MailboxCreate { .. }
                | Record::MailboxDelete { .. }
                | Record::MailboxRename { .. }
                | Record::Subscription { .. }
                | Record::Message { .. }
                | Record::MessageRef { .. }
                | Record::Move { .. }
                | Record::Padding(_),
            ) => {}
        }
    }
    flags.sort_by_key(|f| f.2);
    for (mb, uid, ms, f) in flags {
        index.recover_flags(mb, uid, ms, f);
    }
    for (mb, ms, uids) in expunges {
        index.recover_expunge(mb, ms, &uids);
    }
    index.finish_recovery(&max_uid, &max_modseq);
}

/// Creates a segment: preallocated, then file and directory fsync so that the file
/// and its size survive a crash before the first data write.
fn create_segment(root: &Path, shard: usize, seg: u32, bytes: u64) -> Result<File, StoreError> {
    let path = segment_path(root, shard, seg);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let len = libc::off_t::try_from(bytes)
        .map_err(|_| StoreError::InvalidOptions("segment_bytes too large".into()))?;
    // SAFETY: plain syscall on an fd we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // Filesystems without fallocate still work, just without preallocation.
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            file.set_len(bytes).map_err(io_err(&path))?;
        } else {
            return Err(StoreError::io(&path, e));
        }
    }
    file.sync_all().map_err(io_err(&path))?;
    fsync_dir(&shard_dir(root, shard))?;
    Ok(file)
}

pub(crate) enum Op {
    Create {
        id: u32,
        uidvalidity: u32,
        account: String,
        name: String,
        special_use: Option<String>,
    },
    Message {
        record: Record,
        allocs: Vec<Alloc>,
    },
    Flags {
        mailbox: u32,
        uid: u32,
        modseq: u64,
        flags: Vec<String>,
    },
    Expunge {
        mailbox: u32,
        modseq: u64,
        uids: Vec<u32>,
    },
    FlagsBatch {
        mailbox: u32,
        updates: Vec<FlagChange>,
    },
    /// IMAP MOVE: one Record::Move; `allocs` are the copies' deliveries, in order.
    Move {
        mailbox: u32,
        modseq: u64,
        uids: Vec<u32>,
        copies: Vec<MovedCopy>,
        allocs: Vec<Alloc>,
    },
    /// Mailbox delete or rename, or a subscription change (shard 0 only).
    Catalog(Record),
}

pub(crate) enum Done {
    Created,
    Appended(Vec<Appended>),
    Modseq(u64),
}

pub(crate) type JobResult = Result<Done, StoreError>;

pub(crate) enum Reply {
    Async(tokio::sync::oneshot::Sender<JobResult>),
    Sync(mpsc::SyncSender<JobResult>),
}

impl Reply {
    fn send(self, r: JobResult) {
        // A waiter that went away (cancelled future) is not an error for the commit.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::Sync(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

pub(crate) struct Job {
    pub op: Op,
    pub reply: Reply,
}

impl Job {
    /// Releases the allocations of a job that will never commit.
    pub(crate) fn fail(self, index: &Mutex<Index>, err: StoreError) {
        if let Ok(mut ix) = index.lock() {
            release(&mut ix, &self.op);
        }
        self.reply.send(Err(err));
    }
}

/// The stored records a copy in `op` points at (pinned while it is queued).
pub(crate) fn copy_sources(op: &Op) -> Vec<Location> {
    match op {
        Op::Message {
            record: Record::MessageRef { source, .. },
            ..
        } => vec![source.location()],
        Op::Move { copies, .. } => copies.iter().map(|c| c.source.location()).collect(),
        _ => Vec::new(),
    }
}

/// Undoes what enqueueing `op` allocated and pinned (a job that will never commit).
pub(crate) fn release(ix: &mut Index, op: &Op) {
    for loc in copy_sources(op) {
        ix.unpin(&loc);
    }
    match op {
        Op::Create { .. } => {}
        Op::Message { allocs, .. } => {
            for a in allocs {
                ix.fail_delivery(*a);
            }
        }
        Op::Flags {
            mailbox, modseq, ..
        }
        | Op::Expunge {
            mailbox, modseq, ..
        } => ix.fail_modseq(*mailbox, *modseq),
        Op::FlagsBatch { mailbox, updates } => {
            for u in updates {
                ix.fail_flags(*mailbox, u.uid, u.modseq);
            }
        }
        Op::Move {
            mailbox,
            modseq,
            allocs,
            ..
        } => {
            for a in allocs {
                ix.fail_delivery(*a);
            }
            ix.fail_modseq(*mailbox, *modseq);
        }
        Op::Catalog(_) => {}
    }
}

pub(crate) enum Msg {
    Job(Job),
    Shutdown,
}

/// The way into a shard thread: its channel, plus a wake-up for a thread that waits on
/// io_uring completions (a batch in flight) while enough new work piles up to be worth a
/// batch of its own, written behind the one in fdatasync (commit pipelining).
pub(crate) struct Queue {
    tx: mpsc::Sender<Msg>,
    wake: Arc<Wake>,
}

/// The shard thread's end of a [`Queue`].
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Msg>,
    pub(crate) wake: Arc<Wake>,
}

impl Inbox {
    /// The next message, waiting for it; a closed queue reads as a shutdown.
    pub(crate) fn recv(&self) -> Msg {
        let msg = self.rx.recv().unwrap_or(Msg::Shutdown);
        if matches!(msg, Msg::Job(_)) {
            self.wake.received(1);
        }
        msg
    }

    /// The next message if one is queued; a closed queue reads as a shutdown.
    pub(crate) fn try_recv(&self) -> Option<Msg> {
        let msg = match self.rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Msg::Shutdown,
        };
        if matches!(msg, Msg::Job(_)) {
            self.wake.received(1);
        }
        Some(msg)
    }
}

/// Wakes a shard thread waiting on its ring through an eventfd that the ring reads. Senders
/// write it only when the thread asked (`armed`) and the queue has just reached
/// [`Wake::THRESHOLD`] jobs, so a light load costs no extra syscalls or wake-ups and
/// batches stay as large as plain group commit makes them.
pub(crate) struct Wake {
    pub(crate) fd: OwnedFd,
    /// Jobs sent and not yet received by the shard thread.
    queued: AtomicUsize,
    /// Set by the shard thread while it waits on the ring with a read of `fd` posted.
    armed: AtomicBool,
}

impl Wake {
    /// Jobs that make a batch worth writing while another batch's fdatasync is in flight.
    pub(crate) const THRESHOLD: usize = 8;

    /// Jobs received from the channel: no longer queued.
    pub(crate) fn received(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::SeqCst);
    }

    /// Before waiting on the ring: asks senders for a wake-up. False when enough work is
    /// queued already (the caller takes it instead of waiting).
    pub(crate) fn arm(&self, pending: usize) -> bool {
        self.armed.store(true, Ordering::SeqCst);
        if pending + self.queued.load(Ordering::SeqCst) >= Self::THRESHOLD {
            self.armed.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl Queue {
    pub(crate) fn new() -> std::io::Result<(Queue, Inbox)> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wake = Arc::new(Wake {
            // SAFETY: `fd` was just created and is owned by nothing else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            queued: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        Ok((
            Queue {
                tx,
                wake: wake.clone(),
            },
            Inbox { rx, wake },
        ))
    }

    pub(crate) fn send(&self, msg: Msg) -> Result<(), mpsc::SendError<Msg>> {
        let job = matches!(msg, Msg::Job(_));
        // Counted before it is sent, so that the shard thread's decrement on receipt can
        // never run first and wrap the counter.
        let queued = if job {
            self.wake.queued.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            // A shutdown request wakes the thread at once.
            Wake::THRESHOLD
        };
        if let Err(e) = self.tx.send(msg) {
            if job {
                self.wake.queued.fetch_sub(1, Ordering::SeqCst);
            }
            return Err(e);
        }
        if queued >= Wake::THRESHOLD && self.wake.armed.swap(false, Ordering::SeqCst) {
            signal_eventfd(&self.wake.fd);
        }
        Ok(())
    }
}

/// Adds one to an eventfd's counter. Cannot fail in a way that matters: the counter only
/// overflows after 2^64 - 1 unread wakes.
pub(crate) fn signal_eventfd(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live local buffer to a descriptor we own.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

pub(crate) struct Writer {
    pub root: PathBuf,
    pub shard: usize,
    pub seg: u32,
    pub file: File,
    pub tail: u64,
    pub seq: u64,
    pub segment_bytes: u64,
    pub align: u64,
    pub kind: BackendKind,
    pub max_batch: usize,
    pub index: Arc<Mutex<Index>>,
    pub gate: ApplyGate,
    pub on_commit: Option<CommitHook>,
    pub(crate) poisoned: bool,
    buf: Vec<u8>,
}

/// What [`Writer::place`] made of a set of jobs.
pub(crate) enum Placed {
    Batch(Batch),
    /// The batch needs a new segment, which may not be started now: the jobs and buffer back.
    Full(Vec<Job>, Vec<u8>),
}

/// A batch encoded at the tail of the log (padding included) and not yet durable.
pub(crate) struct Batch {
    pub(crate) jobs: Vec<Job>,
    /// (offset in `buf`, length) of each job's record.
    spans: Vec<(u64, u64)>,
    pub(crate) seg: u32,
    /// Where `buf` goes in segment `seg`.
    pub(crate) offset: u64,
    pub(crate) buf: Vec<u8>,
    /// The sequence number after the batch (padding included).
    end_seq: u64,
    started: Instant,
    /// Whether the batch was written while an earlier one's fdatasync was in flight.
    pub(crate) overlapped: bool,
}

impl Writer {
    /// Prepares appending to a shard after its scan: clears a torn tail (so stale bytes
    /// can never be read back as records) or creates the first segment.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        root: &Path,
        shard: usize,
        scan: &ShardScan,
        segment_bytes: u64,
        align: u64,
        kind: BackendKind,
        max_batch: usize,
        index: Arc<Mutex<Index>>,
        gate: ApplyGate,
        on_commit: Option<CommitHook>,
    ) -> Result<Writer, StoreError> {
        let (seg, file, tail) = match scan.tail {
            Some((seg, tail)) => {
                let path = segment_path(root, shard, seg);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                if let Some((from, to)) = scan.garbage {
                    // One-off at open, so the plain pwrite + fdatasync path does it.
                    let zeros = vec![0u8; (to - from) as usize];
                    Backend::Portable
                        .write_durable(&file, from, &zeros)
                        .map_err(io_err(&path))?;
                }
                (seg, file, tail)
            }
            None => (0, create_segment(root, shard, 0, segment_bytes)?, 0),
        };
        Ok(Writer {
            root: root.to_path_buf(),
            shard,
            seg,
            file,
            tail,
            seq: scan.next_seq,
            segment_bytes,
            align,
            kind,
            max_batch: max_batch.max(1),
            index,
            gate,
            on_commit,
            poisoned: false,
            buf: Vec::new(),
        })
    }

    /// The shard thread. Builds its backend first (an io_uring ring must be created on
    /// the thread that submits to it) and reports that on `ready`.
    pub(crate) fn run(self, inbox: Inbox, ready: mpsc::SyncSender<Result<(), std::io::Error>>) {
        match Backend::new(self.kind) {
            Ok(Backend::Uring(mut ring)) => {
                let _ = ready.send(Ok(()));
                self.serve_pipelined(&mut ring, inbox);
            }
            Ok(backend) => {
                let _ = ready.send(Ok(()));
                self.serve(backend, inbox);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    }

    /// One batch at a time: write, fdatasync, answer (the portable backend).
    fn serve(mut self, mut backend: Backend, inbox: Inbox) {
        let mut stop = false;
        while !stop {
            let mut jobs = Vec::new();
            match inbox.recv() {
                Msg::Job(j) => jobs.push(j),
                Msg::Shutdown => stop = true,
            }
            // Group commit: everything already queued joins this batch.
            stop |= self.gather(&inbox, &mut jobs);
            if jobs.is_empty() {
                continue;
            }
            self.commit(&mut backend, jobs);
        }
        // Finish work queued behind the shutdown request.
        loop {
            let mut jobs = Vec::new();
            self.gather(&inbox, &mut jobs);
            if jobs.is_empty() {
                break;
            }
            self.commit(&mut backend, jobs);
        }
    }

    /// Adds what is already queued to `jobs`, up to the batch limit, without waiting.
    /// Returns whether a shutdown request was among it.
    pub(crate) fn gather(&self, inbox: &Inbox, jobs: &mut Vec<Job>) -> bool {
        let mut stop = false;
        while jobs.len() < self.max_batch {
            match inbox.try_recv() {
                Some(Msg::Job(j)) => jobs.push(j),
                Some(Msg::Shutdown) => {
                    // A closed queue reads as a shutdown on every call: stop reading.
                    stop = true;
                    break;
                }
                None => break,
            }
        }
        stop
    }

    /// Writes `jobs` as one batch, makes it durable and answers every job.
    fn commit(&mut self, backend: &mut Backend, jobs: Vec<Job>) {
        if self.poisoned {
            let shard = self.shard;
            self.fail_all(jobs, || StoreError::ShardPoisoned(shard));
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let batch = match self.place(jobs, buf, true) {
            Ok(Placed::Batch(batch)) => batch,
            Ok(Placed::Full(jobs, _)) => {
                // Unreachable with may_roll = true; answered rather than lost.
                self.fail_all(jobs, || StoreError::CommitFailed("segment full".into()));
                return;
            }
            Err((jobs, e)) => {
                self.poison(jobs, &e);
                return;
            }
        };
        let path = segment_path(&self.root, self.shard, batch.seg);
        match backend.write_durable(&self.file, batch.offset, &batch.buf) {
            Ok(()) => {
                let buf = self.finish(batch);
                self.buf = buf;
            }
            Err(e) => {
                let e = StoreError::io(path, e);
                self.poison(batch.jobs, &e);
            }
        }
    }

    /// Whether a batch of `records_len` bytes needs a new segment first.
    pub(crate) fn needs_new_segment(&self, records_len: u64) -> bool {
        let worst = records_len + self.align + HEADER_LEN as u64;
        self.tail > 0 && self.tail + worst > self.segment_bytes
    }

    /// Encodes `jobs` into `buf` from the next sequence number. Returns each record's span
    /// and the next sequence number.
    pub(crate) fn encode(&self, jobs: &[Job], buf: &mut Vec<u8>) -> (Vec<(u64, u64)>, u64) {
        buf.clear();
        let mut seq = self.seq;
        let mut spans = Vec::with_capacity(jobs.len());
        for j in jobs {
            let start = buf.len();
            let n = encode_op(&j.op, seq, buf);
            seq += 1;
            spans.push((start as u64, n as u64));
        }
        (spans, seq)
    }

    /// Encodes `jobs` as one batch at the tail of the log (on a new segment when it does
    /// not fit in this one), padded so that the next batch starts on an alignment boundary,
    /// and moves the tail past it. The caller writes it and then calls [`Writer::finish`].
    /// Without `may_roll`, a batch that needs a new segment is handed back as
    /// [`Placed::Full`].
    pub(crate) fn place(
        &mut self,
        jobs: Vec<Job>,
        mut buf: Vec<u8>,
        may_roll: bool,
    ) -> Result<Placed, (Vec<Job>, StoreError)> {
        let started = Instant::now();
        let (spans, mut seq) = self.encode(&jobs, &mut buf);
        if self.needs_new_segment(buf.len() as u64) {
            if !may_roll {
                return Ok(Placed::Full(jobs, buf));
            }
            let next = self.seg + 1;
            match create_segment(&self.root, self.shard, next, self.segment_bytes) {
                Ok(file) => {
                    self.seg = next;
                    self.file = file;
                    self.tail = 0;
                }
                Err(e) => return Err((jobs, e)),
            }
        }
        // Pad the batch so the next one starts on an alignment boundary (a full md
        // stripe on parity RAID: no read-modify-write).
        let end = self.tail + buf.len() as u64;
        let mut gap = end.div_ceil(self.align) * self.align - end;
        if gap > 0 && gap < HEADER_LEN as u64 {
            gap += self.align;
        }
        if gap > 0 {
            Record::Padding((gap - HEADER_LEN as u64) as usize).encode(seq, &mut buf);
            seq += 1;
        }
        let batch = Batch {
            jobs,
            spans,
            seg: self.seg,
            offset: self.tail,
            buf,
            end_seq: seq,
            started,
            overlapped: false,
        };
        self.tail += batch.buf.len() as u64;
        self.seq = seq;
        Ok(Placed::Batch(batch))
    }

    /// The batch is durable: applies it to the index and answers its jobs. Returns its
    /// buffer for reuse.
    pub(crate) fn finish(&mut self, batch: Batch) -> Vec<u8> {
        let Batch {
            jobs,
            spans,
            seg,
            offset,
            buf,
            end_seq,
            started,
            overlapped,
        } = batch;
        let bytes = buf.len() as u64;
        let mut replies = Vec::with_capacity(jobs.len());
        let mut changes = Vec::with_capacity(jobs.len());
        let gate = self.gate.shared();
        {
            // The batch is durable: its waiters must hear so even when another thread
            // panicked holding the index lock. Dropping their replies would make clients
            // retry and store each message twice. Applying to a possibly half-updated index
            // is acceptable: the log, not the index, is the truth, and recovery rebuilds the
            // index from it at restart. The lock stays poisoned, so new requests are
            // refused at enqueue (lock_err) until then.
            let mut ix = self.index.lock().unwrap_or_else(|poisoned| {
                tracing::error!(
                    event = "store.index.poisoned",
                    shard = self.shard,
                    "index lock poisoned after a durable commit; answering its waiters"
                );
                poisoned.into_inner()
            });
            for (j, (start, len)) in jobs.into_iter().zip(spans) {
                let loc = Location {
                    shard: self.shard,
                    segment: seg,
                    offset: offset + start,
                    len,
                };
                let done = apply(&mut ix, j.op, loc, &mut changes);
                replies.push((j.reply, done));
            }
            // The index now holds this shard's log up to here (a checkpoint taken under
            // this lock covers exactly that).
            let end = offset + bytes;
            ix.positions.insert(
                self.shard,
                LogPosition {
                    segment: seg,
                    offset: end,
                    seq: end_seq,
                },
            );
            ix.segment_ends.insert((self.shard, seg), end);
            ix.bytes_since_checkpoint += bytes;
        }
        // Each mailbox under its own lock only (a reader of one mailbox holds up only the
        // changes to it), before the replies: a client told "stored" finds its message.
        for change in changes {
            change.apply();
        }
        drop(gate);
        let n = replies.len();
        for (reply, done) in replies {
            reply.send(Ok(done));
        }
        if let Some(cb) = &self.on_commit {
            cb(&CommitReport {
                shard: self.shard,
                records: n,
                bytes,
                latency: started.elapsed(),
                overlapped,
            });
        }
        buf
    }

    /// Answers jobs that will not be written, each with `error()`.
    pub(crate) fn fail_all(&self, jobs: Vec<Job>, error: impl Fn() -> StoreError) {
        for j in jobs {
            j.fail(&self.index, error());
        }
    }

    /// A write or fdatasync failed: after that the file state is unknown (the kernel may
    /// have dropped dirty pages), so nothing more is written to this shard.
    pub(crate) fn poison(&mut self, jobs: Vec<Job>, error: &StoreError) {
        tracing::error!(
            event = "store.commit.failed",
            shard = self.shard,
            error = %error,
            "commit failed; shard stops accepting writes"
        );
        self.poisoned = true;
        let msg = error.to_string();
        self.fail_all(jobs, || StoreError::CommitFailed(msg.clone()));
    }
}

/// Appends the log record of `op` to `buf`; returns its length.
fn encode_op(op: &Op, seq: u64, buf: &mut Vec<u8>) -> usize {
    match op {
        Op::Message { record, .. } => record.encode(seq, buf),
        Op::Create {
            id,
            uidvalidity,
            account,
            name,
            special_use,
        } => Record::MailboxCreate {
            id: *id,
            uidvalidity: *uidvalidity,
            account: account.clone(),
            name: name.clone(),
            special_use: special_use.clone(),
        }
        .encode(seq, buf),
        Op::Flags {
            mailbox,
            uid,
            modseq,
            flags,
        } => Record::FlagsUpdate {
            mailbox: *mailbox,
            uid: *uid,
            modseq: *modseq,
            flags: flags.clone(),
        }
        .encode(seq, buf),
        Op::Expunge {
            mailbox,
            modseq,
            uids,
        } => Record::Expunge {
            mailbox: *mailbox,
            modseq: *modseq,
            uids: uids.clone(),
        }
        .encode(seq, buf),
        Op::FlagsBatch { mailbox, updates } => Record::FlagsBatch {
            mailbox: *mailbox,
            updates: updates.clone(),
        }
        .encode(seq, buf),
        Op::Move {
            mailbox,
            modseq,
            uids,
            copies,
            ..
        } => Record::Move {
            mailbox: *mailbox,
            modseq: *modseq,
            uids: uids.clone(),
            copies: copies.clone(),
        }
        .encode(seq, buf),
        Op::Catalog(record) => record.encode(seq, buf),
    }
}

/// Applies `op` to the index-wide state (catalogue, subscriptions, pins) and adds what it
/// changes in mailboxes to `changes`, for the caller to apply after releasing the index lock.
fn apply(ix: &mut Index, op: Op, loc: Location, changes: &mut Vec<CellChange>) -> Done {
    for source in copy_sources(&op) {
        ix.unpin(&source);
    }
    match op {
        Op::Create {
            id,
            uidvalidity,
            account,
            name,
            special_use,
        } => {
            ix.insert_mailbox(id, uidvalidity, account, name, special_use);
            Done::Created
        }
        Op::Message { record, allocs } => {
            let (internal_date, deliveries, size, loc, source) = match record {
                Record::Message {
                    internal_date,
                    deliveries,
                    body,
                } => (internal_date, deliveries, body.len() as u64, loc, None),
                Record::MessageRef {
                    internal_date,
                    size,
                    source,
                    deliveries,
                } => (
                    internal_date,
                    deliveries,
                    size,
                    source.location(),
                    Some((source.mailbox, source.uid)),
                ),
                _ => (0, Vec::new(), 0, loc, None),
            };
            let mut out = Vec::with_capacity(allocs.len());
            for (a, d) in allocs.into_iter().zip(deliveries) {
                let entry = MsgEntry {
                    source,
                    modseq: a.modseq,
                    flags: d.flags,
                    pending: None,
                    internal_date,
                    size,
                    loc,
                };
                changes.extend(ix.cell_change(a.mailbox, MailboxChange::Deliver(a, entry)));
                out.push(Appended {
                    mailbox: MailboxId(a.mailbox),
                    uid: a.uid,
                    modseq: a.modseq,
                });
            }
            Done::Appended(out)
        }
        Op::Flags {
            mailbox,
            uid,
            modseq,
            flags,
        } => {
            changes.extend(ix.cell_change(mailbox, MailboxChange::Flags { uid, modseq, flags }));
            Done::Modseq(modseq)
        }
        Op::Expunge {
            mailbox,
            modseq,
            uids,
        } => {
            changes.extend(ix.cell_change(mailbox, MailboxChange::Expunge { modseq, uids }));
            Done::Modseq(modseq)
        }
        Op::FlagsBatch { mailbox, updates } => {
            let last = updates.last().map(|u| u.modseq).unwrap_or(0);
            for u in updates {
                changes.extend(ix.cell_change(
                    mailbox,
                    MailboxChange::Flags {
                        uid: u.uid,
                        modseq: u.modseq,
                        flags: u.flags,
                    },
                ));
            }
            Done::Modseq(last)
        }
        Op::Move {
            mailbox,
            modseq,
            uids,
            copies,
            allocs,
        } => {
            let mut out = Vec::with_capacity(allocs.len());
            for (a, c) in allocs.into_iter().zip(copies) {
                let entry = MsgEntry {
                    source: Some((c.source.mailbox, c.source.uid)),
                    modseq: a.modseq,
                    flags: c.delivery.flags,
                    pending: None,
                    internal_date: c.internal_date,
                    size: c.size,
                    loc: c.source.location(),
                };
                changes.extend(ix.cell_change(a.mailbox, MailboxChange::Deliver(a, entry)));
                out.push(Appended {
                    mailbox: MailboxId(a.mailbox),
                    uid: a.uid,
                    modseq: a.modseq,
                });
            }
            // After the copies: a reader may for a moment see the message in both
            // mailboxes, never in neither.
            changes.extend(ix.cell_change(mailbox, MailboxChange::Expunge { modseq, uids }));
            Done::Appended(out)
        }
        Op::Catalog(record) => {
            match record {
                Record::MailboxDelete { id } => ix.delete_mailbox(id),
                Record::MailboxRename { id, name } => ix.rename_mailbox(id, name),
                Record::Subscription {
                    account,
                    name,
                    subscribed,
                } => ix.set_subscription(account, name, subscribed),
                _ => {}
            }
            Done::Created
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ix: &Mutex<Index>, mailbox: u32, body: &[u8]) -> (Job, mpsc::Receiver<JobResult>) {
        let alloc = ix
            .lock()
            .expect("index lock, not yet poisoned")
            .alloc_delivery(mailbox)
            .expect("mailbox exists");
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Job {
            op: Op::Message {
                record: Record::Message {
                    internal_date: 1_700_000_000,
                    deliveries: vec![Delivery {
                        mailbox,
                        uid: alloc.uid,
                        modseq: alloc.modseq,
                        flags: vec![],
                    }],
                    body: body.to_vec(),
                },
                allocs: vec![alloc],
            },
            reply: Reply::Sync(tx),
        };
        (job, rx)
    }

    /// A thread that panicked while holding the index lock must not cost the waiters of a
    /// durable batch their answer: without one they retry and the message is stored twice.
    #[test]
    fn poisoned_index_lock_still_answers_a_durable_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // Store::open creates the shard directory before opening its writer.
        std::fs::create_dir_all(shard_dir(root, 0)).expect("shard dir");
        let index = Arc::new(Mutex::new(Index::new()));
        let scan = ShardScan {
            tail: None,
            garbage: None,
            next_seq: 0,
        };
        let mut w = Writer::open(
            root,
            0,
            &scan,
            64 * 1024,
            4096,
            BackendKind::Portable,
            64,
            index.clone(),
            ApplyGate::default(),
            None,
        )
        .expect("writer");
        let mut backend = Backend::Portable;

        let (tx, rx) = mpsc::sync_channel(1);
        w.commit(
            &mut backend,
            vec![Job {
                op: Op::Create {
                    id: 1,
                    uidvalidity: 7,
                    account: "a@x.test".into(),
                    name: "INBOX".into(),
                    special_use: None,
                },
                reply: Reply::Sync(tx),
            }],
        );
        assert!(matches!(rx.recv(), Ok(Ok(Done::Created))));

        // Queued (UIDs allocated) before the lock is poisoned, as a real batch would be.
        let bodies: [&[u8]; 3] = [b"one", b"two", b"three"];
        let (jobs, waiters): (Vec<_>, Vec<_>) =
            bodies.iter().map(|b| message(&index, 1, b)).unzip();

        let ix = index.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = ix.lock().expect("index lock");
            panic!("poisoning the index lock on purpose");
        })
        .join();
        assert!(panicked.is_err());
        assert!(index.is_poisoned());

        w.commit(&mut backend, jobs);
        for (i, rx) in waiters.into_iter().enumerate() {
            match rx.recv() {
                Ok(Ok(Done::Appended(a))) => {
                    assert_eq!(a.len(), 1);
                    assert_eq!(a[0].uid, i as u32 + 1, "uid of message {i}");
                }
                Ok(Ok(_)) => panic!("message {i}: wrong answer kind"),
                Ok(Err(e)) => panic!("message {i}: durable write answered {e}"),
                Err(_) => panic!("message {i}: reply dropped"),
            }
        }
        drop(w);

        // Restart: recovery rebuilds the index from the log; each message exactly once.
        let mut opts = crate::StoreOptions::new(root);
        opts.backend = crate::BackendChoice::Portable;
        opts.segment_bytes = 64 * 1024;
        opts.sysfs_root = root.join("no-sysfs");
        let store = crate::Store::open(opts).expect("reopen");
        let inbox = store.find_mailbox("a@x.test", "INBOX").expect("INBOX");
        let got: Vec<(u32, Vec<u8>)> = store
            .messages(inbox.id)
            .iter()
            .map(|m| (m.uid, store.read_message(m).expect("read")))
            .collect();
        let want: Vec<(u32, Vec<u8>)> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32 + 1, b.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(inbox.uidnext, 4);
    }
}
