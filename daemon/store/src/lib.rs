//! Durable sharded mail store.
//!
//! Contract (DESIGN.md 3.3): an append returns Ok only after the message bytes and its
//! index entry (the same log record) are on stable storage — `fdatasync` completed. A
//! crash at any instant loses nothing acknowledged and duplicates nothing.
//!
//! Each shard is a plain OS thread owning an io_uring instance (or the portable
//! pwrite + fdatasync backend) and append-only, preallocated segment files under
//! `<root>/shard-<n>/seg-<NNNNNNNN>.log`. The thread group-commits: every queued request
//! (up to `max_batch`) is serialised into one buffer, written at the segment tail with an
//! fdatasync linked after the write, and only then applied to the in-memory index and
//! answered. At open the index is loaded from its checkpoint and the records written after
//! it are replayed (the whole log when there is no usable checkpoint); a background thread
//! writes checkpoints and compacts sealed segments (`maintenance`).

mod backend;
mod checkpoint;
mod error;
mod index;
mod maintenance;
mod pipeline;
mod record;
mod shard;
pub mod stripe;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::StoreError;
pub use index::Location;
pub use maintenance::{CompactReport, MaintenanceOptions, ShardStats};
pub use stripe::MdLayout;

use index::{Index, LogPosition};
use maintenance::Maintainer;
use shard::{Done, Job, Msg, Op, Reply};

/// Which write backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, else portable (with a warning).
    Auto,
    /// io_uring or fail to open.
    IoUring,
    /// pwrite + fdatasync.
    Portable,
}

/// The backend actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    IoUring,
    Portable,
}

/// Options for [`Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    pub root: PathBuf,
    pub shards: usize,
    pub backend: BackendChoice,
    /// Preallocated size of each segment (rounded up to the write alignment).
    pub segment_bytes: u64,
    /// Most requests in one group commit.
    pub max_batch: usize,
    /// Open without writing anything (offline export while the daemon is stopped).
    pub read_only: bool,
    /// Where sysfs is mounted; a test points it at a fixture tree.
    pub sysfs_root: PathBuf,
    /// Called by a shard thread after every successful commit.
    pub on_commit: Option<CommitHook>,
    /// Checkpoint and compaction tuning.
    pub maintenance: MaintenanceOptions,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("root", &self.root)
            .field("shards", &self.shards)
            .field("backend", &self.backend)
            .field("segment_bytes", &self.segment_bytes)
            .field("max_batch", &self.max_batch)
            .field("read_only", &self.read_only)
            .field("sysfs_root", &self.sysfs_root)
            .field("on_commit", &self.on_commit.is_some())
            .field("maintenance", &self.maintenance)
            .finish()
    }
}

impl StoreOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreOptions {
            root: root.into(),
            shards: 1,
            backend: BackendChoice::Auto,
            segment_bytes: 64 << 20,
            max_batch: 512,
            read_only: false,
            sysfs_root: PathBuf::from("/sys"),
            on_commit: None,
            maintenance: MaintenanceOptions::default(),
        }
    }
}

/// How the index was rebuilt at open ([`Store::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Loaded from the checkpoint (plus the log after it), not from the whole log.
    pub from_checkpoint: bool,
    /// Log records read and applied.
    pub records_replayed: usize,
    pub elapsed: Duration,
}

/// Callback run by a shard thread after each successful commit.
pub type CommitHook = Arc<dyn Fn(&CommitReport) + Send + Sync>;

/// One group commit, reported to `on_commit`.
#[derive(Debug, Clone)]
pub struct CommitReport {
    pub shard: usize,
    /// Requests (records, padding excluded) made durable by this commit.
    pub records: usize,
    /// Bytes written, padding included.
    pub bytes: u64,
    /// From the start of serialisation to fdatasync completion.
    pub latency: Duration,
    /// Written while the previous batch's fdatasync was still in flight (commit
    /// pipelining, io_uring backend).
    pub overlapped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: MailboxId,
    pub account: String,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    /// RFC 3501 2.3.1.1: the next UID; watermark-based, never ahead of a pending UID.
    pub uidnext: u32,
    /// RFC 7162 3.1.2.1.
    pub highest_modseq: u64,
    /// Visible, non-expunged messages.
    pub exists: u32,
}

/// Counts over a mailbox's visible messages ([`Store::summary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxSummary {
    pub messages: u64,
    /// Messages without `\Seen`.
    pub unseen: u64,
    /// Sequence number (1-based, UID order) of the first message without `\Seen`.
    pub first_unseen: Option<u32>,
    /// Messages with `\Deleted`.
    pub deleted: u64,
    /// Sum of message sizes.
    pub size: u64,
    /// Keywords (flags not starting with a backslash) in use, first spelling kept.
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// The message exactly as it will be stored and read back.
    pub body: Vec<u8>,
    /// Unix seconds (IMAP INTERNALDATE).
    pub internal_date: i64,
    /// Every mailbox that receives the message; all or none get it.
    pub targets: Vec<AppendTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendTarget {
    pub mailbox: MailboxId,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub modseq: u64,
}

/// How a STORE changes flags (RFC 9051 6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// FLAGS: replace.
    Replace,
    /// +FLAGS: add.
    Add,
    /// -FLAGS: remove.
    Remove,
}

/// A message's flags and MODSEQ after [`Store::update_flags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
}

/// Result of [`Store::update_flags`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsOutcome {
    /// Messages whose flags changed, with their new MODSEQ (durable).
    pub changed: Vec<FlagState>,
    /// Messages the operation left as they were (no new MODSEQ).
    pub unchanged: Vec<FlagState>,
    /// UNCHANGEDSINCE failed for these (RFC 7162 3.1.3: reported as `[MODIFIED ...]`).
    pub modified: Vec<u32>,
}

/// An account's storage use (RFC 9208 QUOTA, resource STORAGE counts these bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub modseq: u64,
    /// System flags ("\\Seen") and keywords.
    pub flags: Vec<String>,
    pub internal_date: i64,
    /// Body size in bytes (RFC822.SIZE).
    pub size: u64,
    /// Where the Message record holding the bytes lives.
    pub location: Location,
    /// The delivery (mailbox, uid) of that record the bytes were stored for: the message
    /// itself, or the original of a copy (copies reuse the original's bytes).
    pub source: (MailboxId, u32),
}

struct Inner {
    root: PathBuf,
    read_only: bool,
    backend_kind: BackendKind,
    alignment: u64,
    md: Option<MdLayout>,
    shards: usize,
    index: Arc<Mutex<Index>>,
    senders: RwLock<Vec<shard::Queue>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    create_lock: Mutex<()>,
    readers: maintenance::Readers,
    maint: Arc<Maintainer>,
    /// The maintenance thread and the channel that stops it.
    maint_thread: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    recovery: RecoveryReport,
    /// flock on `<root>/LOCK`, held for the store's life (released after the shard
    /// threads stop, since fields drop after `Drop::drop`).
    _lock: Option<File>,
}

impl Inner {
    fn shutdown(&self) {
        // Upkeep first: a compaction in progress gives up at its next chunk.
        self.maint
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let maint = self.maint_thread.lock().ok().and_then(|mut m| m.take());
        if let Some((stop, handle)) = maint {
            drop(stop);
            let _ = handle.join();
        }
        let mut were_writing = false;
        if let Ok(mut s) = self.senders.write() {
            for tx in s.iter() {
                let _ = tx.send(Msg::Shutdown);
            }
            were_writing = !s.is_empty();
            s.clear();
        }
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
        // A clean stop leaves a checkpoint of everything: the next start reads no log.
        if were_writing {
            if let Err(e) = self.maint.checkpoint() {
                tracing::error!(event = "store.checkpoint.failed", error = %e,
                    "checkpoint at shutdown failed; the next start replays the log");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The store. Cheap to clone; the last clone dropped stops the shard threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

const MAX_FLAG_LEN: usize = 1024;
const MAX_FLAGS: usize = 1024;
/// Largest body accepted in one record (1 GiB).
pub const MAX_BODY: usize = 1 << 30;
const MAX_TARGETS: usize = 100_000;

fn check_flags(flags: &[String]) -> Result<(), StoreError> {
    if flags.len() > MAX_FLAGS {
        return Err(StoreError::InvalidRequest("too many flags".into()));
    }
    if let Some(f) = flags
        .iter()
        .find(|f| f.is_empty() || f.len() > MAX_FLAG_LEN)
    {
        return Err(StoreError::InvalidRequest(format!("invalid flag {f:?}")));
    }
    Ok(())
}

/// One writer per store: an exclusive flock on `<root>/LOCK`. A read-only open takes a
/// shared lock if the file exists (so an offline export refuses to run beside the
/// daemon) and creates nothing.
fn lock_root(root: &std::path::Path, read_only: bool) -> Result<Option<File>, StoreError> {
    use std::os::unix::io::AsRawFd;
    let path = root.join("LOCK");
    let file = if read_only {
        match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?
    };
    let op = if read_only {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    };
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StoreError::Locked(root.to_path_buf()));
        }
        return Err(StoreError::io(&path, e));
    }
    Ok(Some(file))
}

fn lock_err<T>(_: T) -> StoreError {
    StoreError::CommitFailed("index lock poisoned".into())
}

fn done_appended(r: Result<Done, StoreError>) -> Result<Vec<Appended>, StoreError> {
    match r? {
        Done::Appended(v) => Ok(v),
        _ => Err(StoreError::CommitFailed("unexpected reply".into())),
    }
}

fn done_modseq(r: Result<Done, StoreError>) -> Result<u64, StoreError> {
    match r? {
        Done::Modseq(m) => Ok(m),
        _ => Err(StoreError::CommitFailed("unexpected reply".into())),
    }
}

/// Rebuilds the index: from the checkpoint and the log after it when the checkpoint fits the
/// log, else from the whole log. Returns the index and each present shard's scan.
fn recover(
    root: &std::path::Path,
    present: &[usize],
) -> Result<(Index, HashMap<usize, shard::ShardScan>, RecoveryReport), StoreError> {
    let started = std::time::Instant::now();
    if let Some(loaded) = checkpoint::load(root) {
        let mut recs = Vec::new();
        let mut scans = HashMap::new();
        let mut ends = loaded.index.segment_ends.clone();
        // Every shard the checkpoint covers must still be there.
        let mut fits = loaded.index.positions.keys().all(|s| present.contains(s));
        for &s in present {
            if !fits {
                break;
            }
            let from = loaded.index.positions.get(&s).copied();
            match shard::scan_shard(root, s, from, &mut recs, &mut ends)? {
                Some(scan) => {
                    scans.insert(s, scan);
                }
                None => fits = false,
            }
        }
        if fits {
            let checkpoint::Loaded {
                mut index,
                max_uid,
                max_modseq,
            } = loaded;
            index.segment_ends = ends;
            let tail_records = recs.len();
            shard::rebuild_index(&mut index, recs, max_uid, max_modseq);
            tracing::info!(
                event = "store.recovery.checkpoint",
                tail_records,
                ms = started.elapsed().as_millis() as u64,
                "index loaded from its checkpoint and the log after it"
            );
            let report = RecoveryReport {
                from_checkpoint: true,
                records_replayed: tail_records,
                elapsed: started.elapsed(),
            };
            return Ok((index, scans, report));
        }
        tracing::warn!(
            event = "store.checkpoint.mismatch",
            "index checkpoint does not match the log; replaying the whole log"
        );
    }
    let mut recs = Vec::new();
    let mut scans = HashMap::new();
    let mut ends = std::collections::BTreeMap::new();
    for &s in present {
        if let Some(scan) = shard::scan_shard(root, s, None, &mut recs, &mut ends)? {
            scans.insert(s, scan);
        }
    }
    let mut index = Index::new();
    index.segment_ends = ends;
    let records = recs.len();
    shard::rebuild_index(&mut index, recs, HashMap::new(), HashMap::new());
    tracing::info!(
        event = "store.recovery.full",
        records,
        ms = started.elapsed().as_millis() as u64,
        "index rebuilt from the whole log"
    );
    let report = RecoveryReport {
        from_checkpoint: false,
        records_replayed: records,
        elapsed: started.elapsed(),
    };
    Ok((index, scans, report))
}

impl Store {
    /// Opens (creating unless read-only) the store, recovers every shard and starts the
    /// shard threads.
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        if opts.shards == 0 {
            return Err(StoreError::InvalidOptions("shards must be >= 1".into()));
        }
        if opts.max_batch == 0 {
            return Err(StoreError::InvalidOptions("max_batch must be >= 1".into()));
        }
        if opts.segment_bytes < 4096 {
            return Err(StoreError::InvalidOptions(
                "segment_bytes must be >= 4096".into(),
            ));
        }
        let root = opts.root.clone();
        if !opts.read_only {
            std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        } else if !root.is_dir() {
            return Err(StoreError::io(
                &root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "store root not found"),
            ));
        }
        let lock = lock_root(&root, opts.read_only)?;
        let md = stripe::detect(&root, &opts.sysfs_root);
        let alignment = md
            .as_ref()
            .map(MdLayout::alignment)
            .unwrap_or(stripe::DEFAULT_ALIGNMENT);
        if let Some(l) = &md {
            tracing::info!(event = "store.md_layout", level = %l.level, chunk = l.chunk_bytes,
                data_disks = l.data_disks, alignment, "md RAID detected under the store");
        }
        // Segments are a whole number of alignment units so each starts stripe-aligned.
        let segment_bytes = opts.segment_bytes.div_ceil(alignment) * alignment;

        // Recovery: every shard directory present, even beyond the configured count.
        let present = shard::list_shards(&root)?;
        if !opts.read_only {
            maintenance::remove_leftovers(&root, &present);
        }
        let (mut index, scans, recovery) = recover(&root, &present)?;
        // Where each shard's log continues: the index holds everything before it.
        for s in present.iter().copied().chain(0..opts.shards) {
            let scan = scans.get(&s);
            let (segment, offset) = scan.and_then(|sc| sc.tail).unwrap_or((0, 0));
            let seq = scan.map(|sc| sc.next_seq).unwrap_or(0);
            index.positions.insert(
                s,
                LogPosition {
                    segment,
                    offset,
                    seq,
                },
            );
        }
        let index = Arc::new(Mutex::new(index));
        let gate = index::ApplyGate::default();

        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let backend_kind = match opts.backend {
            BackendChoice::Portable => BackendKind::Portable,
            BackendChoice::IoUring => {
                backend::probe_uring().map_err(StoreError::IoUringUnavailable)?;
                BackendKind::IoUring
            }
            BackendChoice::Auto => match backend::probe_uring() {
                Ok(()) => BackendKind::IoUring,
                Err(e) => {
                    tracing::warn!(event = "store.io_uring_unavailable", error = %e,
                        "io_uring refused; using the portable pwrite+fdatasync backend");
                    BackendKind::Portable
                }
            },
        };
        if !opts.read_only {
            let mut created_dir = false;
            for s in 0..opts.shards {
                let dir = shard::shard_dir(&root, s);
                if !dir.is_dir() {
                    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
                    created_dir = true;
                }
                let empty = shard::ShardScan {
                    tail: None,
                    garbage: None,
                    next_seq: 0,
                };
                let scan = scans.get(&s).unwrap_or(&empty);
                let w = shard::Writer::open(
                    &root,
                    s,
                    scan,
                    segment_bytes,
                    alignment,
                    backend_kind,
                    opts.max_batch,
                    index.clone(),
                    gate.clone(),
                    opts.on_commit.clone(),
                )?;
                let (tx, inbox) = shard::Queue::new().map_err(|e| StoreError::io(&dir, e))?;
                let (ready_tx, ready_rx) = mpsc::sync_channel(1);
                let t = std::thread::Builder::new()
                    .name(format!("store-shard-{s}"))
                    .spawn(move || w.run(inbox, ready_tx))
                    .map_err(|e| StoreError::io(&dir, e))?;
                let ready = ready_rx
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("shard thread exited")));
                if let Err(e) = ready {
                    // Stop the threads already started before reporting.
                    drop(tx);
                    for tx in senders.drain(..) {
                        drop::<shard::Queue>(tx);
                    }
                    let _ = t.join();
                    for t in threads.drain(..) {
                        let _ = JoinHandle::join(t);
                    }
                    return Err(match backend_kind {
                        BackendKind::IoUring => StoreError::IoUringUnavailable(e),
                        BackendKind::Portable => StoreError::io(&dir, e),
                    });
                }
                senders.push(tx);
                threads.push(t);
            }
            if created_dir {
                shard::fsync_dir(&root)?;
            }
        }
        let readers = Arc::new(Mutex::new(HashMap::new()));
        let maint = Arc::new(Maintainer::new(
            root.clone(),
            index.clone(),
            gate.clone(),
            readers.clone(),
            segment_bytes,
            opts.maintenance.clone(),
        ));
        let maint_thread = if opts.read_only {
            None
        } else {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let m = maint.clone();
            let handle = std::thread::Builder::new()
                .name("store-maintenance".into())
                .spawn(move || {
                    let mut last_compaction = std::time::Instant::now();
                    // Wakes every second; the sender dropping (shutdown) ends it.
                    while let Err(mpsc::RecvTimeoutError::Timeout) =
                        stop_rx.recv_timeout(Duration::from_secs(1))
                    {
                        m.tick(&mut last_compaction);
                    }
                })
                .map_err(|e| StoreError::io(&root, e))?;
            Some((stop_tx, handle))
        };
        Ok(Store {
            inner: Arc::new(Inner {
                root,
                read_only: opts.read_only,
                backend_kind,
                alignment,
                md,
                shards: opts.shards,
                index,
                senders: RwLock::new(senders),
                threads: Mutex::new(threads),
                create_lock: Mutex::new(()),
                readers,
                maint,
                maint_thread: Mutex::new(maint_thread),
                recovery,
                _lock: lock,
            }),
        })
    }

    /// How the index was rebuilt when this store was opened.
    pub fn recovery(&self) -> RecoveryReport {
        self.inner.recovery
    }

    /// Space use per shard: valid record bytes, the part still referenced by a mailbox,
    /// and the rest (what compaction can give back).
    pub fn stats(&self) -> Result<Vec<ShardStats>, StoreError> {
        self.inner.maint.stats()
    }

    /// Runs one compaction pass now, as the background thread does (blocking; waits for a
    /// background pass in progress): sealed segments at least `compact_dead_percent` dead
    /// are rewritten, throttled to `compact_bytes_per_sec`.
    pub fn compact(&self) -> Result<CompactReport, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.inner.maint.compact()
    }

    /// Writes an index checkpoint now (blocking).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.inner.maint.checkpoint()
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.inner.backend_kind
    }

    pub fn shard_count(&self) -> usize {
        self.inner.shards
    }

    /// Write alignment in bytes: the full stripe width on md RAID4/5/6, else 4096.
    pub fn stripe_alignment(&self) -> u64 {
        self.inner.alignment
    }

    /// The md layout found under the root, if any.
    pub fn md_layout(&self) -> Option<MdLayout> {
        self.inner.md.clone()
    }

    fn send(&self, shard: usize, job: Job) -> Result<(), StoreError> {
        if self.inner.read_only {
            job.fail(&self.inner.index, StoreError::ReadOnly);
            return Err(StoreError::ReadOnly);
        }
        let senders = self.inner.senders.read().map_err(lock_err)?;
        let Some(tx) = senders.get(shard % self.inner.shards.max(1)) else {
            drop(senders);
            job.fail(&self.inner.index, StoreError::Closed);
            return Err(StoreError::Closed);
        };
        if let Err(mpsc::SendError(Msg::Job(job))) = tx.send(Msg::Job(job)) {
            drop(senders);
            job.fail(&self.inner.index, StoreError::Closed);
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// Creates the mailbox if needed (durably, on shard 0) and returns it. Blocking.
    pub fn ensure_mailbox(
        &self,
        account: &str,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<MailboxInfo, StoreError> {
        if let Some(m) = self.find_mailbox(account, name) {
            return Ok(m);
        }
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        for s in [account, name].into_iter().chain(special_use) {
            if s.len() > u16::MAX as usize {
                return Err(StoreError::InvalidRequest("name too long".into()));
            }
        }
        let _guard = self.inner.create_lock.lock().map_err(lock_err)?;
        if let Some(m) = self.find_mailbox(account, name) {
            return Ok(m);
        }
        let (id, uidvalidity) = {
            let ix = self.inner.index.lock().map_err(lock_err)?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let now = u32::try_from(now).unwrap_or(u32::MAX);
            // RFC 3501 2.3.1.1: UIDVALIDITY from the clock, distinct per mailbox, so a
            // deleted and recreated mailbox never reuses a value.
            (
                ix.next_mailbox_id,
                now.max(ix.last_uidvalidity.saturating_add(1)),
            )
        };
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(
            0,
            Job {
                op: Op::Create {
                    id,
                    uidvalidity,
                    account: account.to_string(),
                    name: name.to_string(),
                    special_use: special_use.map(str::to_string),
                },
                reply: Reply::Sync(tx),
            },
        )?;
        rx.recv().map_err(|_| StoreError::Closed)??;
        self.find_mailbox(account, name)
            .ok_or(StoreError::UnknownMailbox(id))
    }

    pub fn find_mailbox(&self, account: &str, name: &str) -> Option<MailboxInfo> {
        self.inner.index.lock().ok()?.find(account, name)
    }

    pub fn mailbox(&self, id: MailboxId) -> Option<MailboxInfo> {
        self.inner.index.lock().ok()?.info(id.0)
    }

    /// The mailbox's cell, found under the index lock, which is released before the cell
    /// is locked (the lock order; see `index::MailboxCell`).
    fn cell(&self, mailbox: MailboxId) -> Result<index::MailboxCell, StoreError> {
        self.inner
            .index
            .lock()
            .map_err(lock_err)?
            .cell(mailbox.0)
            .ok_or(StoreError::UnknownMailbox(mailbox.0))
    }

    pub fn mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        self.inner
            .index
            .lock()
            .map(|ix| ix.mailboxes(account))
            .unwrap_or_default()
    }

    fn enqueue_append(
        &self,
        shard: usize,
        req: AppendRequest,
        reply: Reply,
    ) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        if req.targets.is_empty() {
            return Err(StoreError::InvalidRequest("no targets".into()));
        }
        // The record length field is 32 bits; keep well inside it.
        if req.body.len() > MAX_BODY || req.targets.len() > MAX_TARGETS {
            return Err(StoreError::InvalidRequest(
                "message or recipient list too large".into(),
            ));
        }
        for (i, t) in req.targets.iter().enumerate() {
            check_flags(&t.flags)?;
            if req.targets[..i].iter().any(|o| o.mailbox == t.mailbox) {
                return Err(StoreError::InvalidRequest(format!(
                    "mailbox {} targeted twice",
                    t.mailbox.0
                )));
            }
        }
        let cells = {
            let ix = self.inner.index.lock().map_err(lock_err)?;
            req.targets
                .iter()
                .map(|t| {
                    ix.cell(t.mailbox.0)
                        .ok_or(StoreError::UnknownMailbox(t.mailbox.0))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        // UIDs are allocated now, in enqueue order; visibility waits for commit. Each
        // mailbox's lock alone, without the index lock: a reader holding one recipient's
        // mailbox delays this delivery, not everyone's.
        let mut allocs = Vec::with_capacity(cells.len());
        for cell in &cells {
            match cell.alloc_delivery() {
                Some(a) => allocs.push(a),
                None => {
                    for (a, c) in allocs.into_iter().zip(&cells) {
                        c.fail_delivery(a);
                    }
                    return Err(StoreError::InvalidRequest("UID space exhausted".into()));
                }
            }
        }
        let deliveries = allocs
            .iter()
            .zip(req.targets)
            .map(|(a, t)| record::Delivery {
                mailbox: a.mailbox,
                uid: a.uid,
                modseq: a.modseq,
                flags: t.flags,
            })
            .collect();
        let job = Job {
            op: Op::Message {
                record: record::Record::Message {
                    internal_date: req.internal_date,
                    deliveries,
                    body: req.body,
                },
                allocs,
            },
            reply,
        };
        self.send(shard, job)
    }

    /// Appends one message to every target mailbox atomically. Ok means durable.
    pub async fn append(
        &self,
        shard: usize,
        req: AppendRequest,
    ) -> Result<Vec<Appended>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue_append(shard, req, Reply::Async(tx))?;
        done_appended(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Appends several messages, queued together so they share one group commit, and
    /// waits until every one is durable; results in request order (UIDs ascending per
    /// mailbox). IMAP MULTIAPPEND (RFC 3502). An error refusing one request at enqueue
    /// stops the rest from being queued; those queued before it still commit.
    pub async fn append_all(
        &self,
        shard: usize,
        reqs: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<Appended>, StoreError>> {
        let mut pending = Vec::with_capacity(reqs.len());
        for req in reqs {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match self.enqueue_append(shard, req, Reply::Async(tx)) {
                Ok(()) => pending.push(Ok(rx)),
                Err(e) => {
                    pending.push(Err(e));
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(rx) => rx
                    .await
                    .map_err(|_| StoreError::Closed)
                    .and_then(done_appended),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Blocking form of [`Store::append`]; safe to call from any thread.
    pub fn append_blocking(
        &self,
        shard: usize,
        req: AppendRequest,
    ) -> Result<Vec<Appended>, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.enqueue_append(shard, req, Reply::Sync(tx))?;
        done_appended(rx.recv().map_err(|_| StoreError::Closed)?)
    }

    /// Visible messages in UID order, expunged ones excluded.
    pub fn messages(&self, mailbox: MailboxId) -> Vec<MessageMeta> {
        self.inner
            .index
            .lock()
            .ok()
            .and_then(|ix| ix.cell(mailbox.0))
            .map(|c| c.lock().metas())
            .unwrap_or_default()
    }

    fn reader(&self, shard: usize, segment: u32) -> Result<Arc<File>, StoreError> {
        let mut r = self.inner.readers.lock().map_err(lock_err)?;
        if let Some(f) = r.get(&(shard, segment)) {
            return Ok(f.clone());
        }
        let path = shard::segment_path(&self.inner.root, shard, segment);
        let f = Arc::new(File::open(&path).map_err(|e| StoreError::io(&path, e))?);
        r.insert((shard, segment), f.clone());
        Ok(f)
    }

    /// Reads a message body, verifying the record checksum.
    pub fn read_message(&self, meta: &MessageMeta) -> Result<Vec<u8>, StoreError> {
        match self.read_at(meta.location, meta.source) {
            Ok(body) => Ok(body),
            Err(e) => {
                // The compactor may have moved the record since `meta` was taken: read it
                // again from where the index says it is now.
                let now = self
                    .messages_by_uid(meta.mailbox, &[meta.uid])
                    .pop()
                    .map(|m| m.location);
                match now {
                    Some(loc) if loc != meta.location => self.read_at(loc, meta.source),
                    _ => Err(e),
                }
            }
        }
    }

    /// Reads the body of delivery `source` from the Message record at `loc`.
    fn read_at(&self, loc: Location, source: (MailboxId, u32)) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            shard: loc.shard,
            segment: loc.segment,
            offset: loc.offset,
            reason: reason.to_string(),
        };
        let len = usize::try_from(loc.len).map_err(|_| corrupt("length"))?;
        let mut buf = vec![0u8; len];
        let f = self.reader(loc.shard, loc.segment)?;
        f.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            StoreError::io(
                shard::segment_path(&self.inner.root, loc.shard, loc.segment),
                e,
            )
        })?;
        let fr = record::frame(&buf).ok_or_else(|| corrupt("checksum mismatch"))?;
        if fr.kind != record::Kind::Message {
            return Err(corrupt("not a message record"));
        }
        let head = record::decode_message_head(fr.payload).ok_or_else(|| corrupt("undecodable"))?;
        if !head
            .deliveries
            .iter()
            .any(|d| d.mailbox == source.0 .0 && d.uid == source.1)
        {
            return Err(corrupt("record does not hold this message"));
        }
        Ok(fr.payload[head.body_offset..head.body_offset + head.body_len].to_vec())
    }

    // Flag changes and expunges of one mailbox go to one shard, so they commit in the
    // order they were issued.
    fn mailbox_shard(&self, mailbox: MailboxId) -> usize {
        mailbox.0 as usize % self.inner.shards.max(1)
    }

    /// Replaces the flags of a visible message; returns its new MODSEQ once durable.
    pub async fn set_flags(
        &self,
        mailbox: MailboxId,
        uid: u32,
        flags: Vec<String>,
    ) -> Result<u64, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        check_flags(&flags)?;
        let modseq = {
            // The mailbox's lock alone (see update_flags).
            let cell = self.cell(mailbox)?;
            let mut m = cell.lock();
            if m.visible_entry(uid).is_none() {
                return Err(StoreError::UnknownMessage {
                    mailbox: mailbox.0,
                    uid,
                });
            }
            m.alloc_modseq()
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(
            self.mailbox_shard(mailbox),
            Job {
                op: Op::Flags {
                    mailbox: mailbox.0,
                    uid,
                    modseq,
                    flags,
                },
                reply: Reply::Async(tx),
            },
        )?;
        done_modseq(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Logically deletes visible messages (a tombstone record); returns the MODSEQ.
    /// UIDs that are not visible are ignored; with none left, nothing is written and the
    /// current HIGHESTMODSEQ is returned.
    pub async fn expunge(&self, mailbox: MailboxId, uids: Vec<u32>) -> Result<u64, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        let (modseq, uids) = {
            // The mailbox's lock alone (see update_flags).
            let cell = self.cell(mailbox)?;
            let mut m = cell.lock();
            let mut uids: Vec<u32> = uids
                .into_iter()
                .filter(|&u| m.visible_entry(u).is_some())
                .collect();
            uids.sort_unstable();
            uids.dedup();
            if uids.is_empty() {
                return Ok(m.info().highest_modseq);
            }
            (m.alloc_modseq(), uids)
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(
            self.mailbox_shard(mailbox),
            Job {
                op: Op::Expunge {
                    mailbox: mailbox.0,
                    modseq,
                    uids,
                },
                reply: Reply::Async(tx),
            },
        )?;
        done_modseq(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Writes one catalogue record (shard 0) and waits until it is durable. Blocking; the
    /// caller holds `create_lock`.
    fn catalog_blocking(&self, record: record::Record) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(
            0,
            Job {
                op: Op::Catalog(record),
                reply: Reply::Sync(tx),
            },
        )?;
        rx.recv().map_err(|_| StoreError::Closed)??;
        Ok(())
    }

    /// Deletes a mailbox and every message in it (one durable record). Blocking. Watchers
    /// of the mailbox see their channel close.
    pub fn delete_mailbox(&self, id: MailboxId) -> Result<(), StoreError> {
        let _guard = self.inner.create_lock.lock().map_err(lock_err)?;
        if self.mailbox(id).is_none() {
            return Err(StoreError::UnknownMailbox(id.0));
        }
        self.catalog_blocking(record::Record::MailboxDelete { id: id.0 })
    }

    /// Renames a mailbox, keeping its UIDVALIDITY and messages. Blocking.
    pub fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> Result<MailboxInfo, StoreError> {
        if new_name.is_empty() || new_name.len() > u16::MAX as usize {
            return Err(StoreError::InvalidRequest("invalid mailbox name".into()));
        }
        let _guard = self.inner.create_lock.lock().map_err(lock_err)?;
        let info = self.mailbox(id).ok_or(StoreError::UnknownMailbox(id.0))?;
        if self.find_mailbox(&info.account, new_name).is_some() {
            return Err(StoreError::NameTaken(new_name.to_string()));
        }
        self.catalog_blocking(record::Record::MailboxRename {
            id: id.0,
            name: new_name.to_string(),
        })?;
        self.mailbox(id).ok_or(StoreError::UnknownMailbox(id.0))
    }

    /// Records a subscription change (RFC 9051 6.3.7/6.3.8). Blocking.
    pub fn set_subscription(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        if account.len() > u16::MAX as usize || name.len() > u16::MAX as usize {
            return Err(StoreError::InvalidRequest("name too long".into()));
        }
        let _guard = self.inner.create_lock.lock().map_err(lock_err)?;
        self.catalog_blocking(record::Record::Subscription {
            account: account.to_string(),
            name: name.to_string(),
            subscribed,
        })
    }

    /// Names the account subscribed to, sorted.
    pub fn subscriptions(&self, account: &str) -> Vec<String> {
        self.inner
            .index
            .lock()
            .map(|ix| ix.subscriptions(account))
            .unwrap_or_default()
    }

    /// The change feed of a mailbox: the receiver's value is HIGHESTMODSEQ and changes
    /// after every commit that adds, changes or expunges a message there (SMTP delivery
    /// included). `changed()` fails once the mailbox is deleted.
    pub fn watch(&self, mailbox: MailboxId) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.index.lock().ok()?.watch(mailbox.0)
    }

    /// Message count, unseen and deleted counts, first unseen and keywords in use, from one
    /// pass over the index (SELECT and STATUS on large mailboxes).
    pub fn summary(&self, mailbox: MailboxId) -> MailboxSummary {
        self.inner
            .index
            .lock()
            .ok()
            .and_then(|ix| ix.cell(mailbox.0))
            .map(|c| c.lock().summary())
            .unwrap_or_default()
    }

    /// HIGHESTMODSEQ and the visible UIDs as of that MODSEQ, ascending, read together. The
    /// vector is shared by every caller until a delivery or expunge changes the mailbox, so
    /// many sessions on one large mailbox hold one sequence map (None: no such mailbox).
    pub fn uid_snapshot(&self, mailbox: MailboxId) -> Option<(u64, Arc<Vec<u32>>)> {
        let cell = self.inner.index.lock().ok()?.cell(mailbox.0)?;
        let snapshot = cell.lock().uid_snapshot();
        Some(snapshot)
    }

    /// Visible messages whose MODSEQ is above `modseq` (new ones and flag changes, RFC 7162
    /// 3.1.4.1), in UID order.
    pub fn messages_changed_since(&self, mailbox: MailboxId, modseq: u64) -> Vec<MessageMeta> {
        self.inner
            .index
            .lock()
            .ok()
            .and_then(|ix| ix.cell(mailbox.0))
            .map(|c| c.lock().metas_changed_since(modseq))
            .unwrap_or_default()
    }

    /// The visible messages among `uids`, in that order; others are skipped.
    pub fn messages_by_uid(&self, mailbox: MailboxId, uids: &[u32]) -> Vec<MessageMeta> {
        self.inner
            .index
            .lock()
            .ok()
            .and_then(|ix| ix.cell(mailbox.0))
            .map(|c| c.lock().metas_by_uid(uids))
            .unwrap_or_default()
    }

    /// UIDs expunged with a MODSEQ greater than `modseq` (QRESYNC VANISHED,
    /// RFC 7162 3.2.5.2).
    pub fn vanished_since(&self, mailbox: MailboxId, modseq: u64) -> Vec<u32> {
        self.inner
            .index
            .lock()
            .ok()
            .and_then(|ix| ix.cell(mailbox.0))
            .map(|c| c.lock().vanished_since(modseq))
            .unwrap_or_default()
    }

    /// Bytes and messages stored for an account, over all its mailboxes.
    pub fn usage(&self, account: &str) -> Usage {
        let cells = self
            .inner
            .index
            .lock()
            .map(|ix| ix.cells_of(account))
            .unwrap_or_default();
        cells.iter().fold(Usage::default(), |u, c| {
            let (bytes, messages) = c.lock().usage();
            Usage {
                bytes: u.bytes + bytes,
                messages: u.messages + messages,
            }
        })
    }

    /// Changes the flags of many messages in one durable record (one commit), each changed
    /// message getting its own MODSEQ (RFC 7162 3.1.3). New flags are computed from the
    /// committed state under the index lock. With `unchanged_since`, messages whose MODSEQ
    /// is above it are left alone and listed in `modified`. UIDs that are not visible are
    /// ignored.
    pub async fn update_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsOutcome, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        check_flags(flags)?;
        let mut outcome = FlagsOutcome::default();
        let mut updates: Vec<record::FlagChange> = Vec::new();
        {
            // The mailbox's lock alone, held while the changes are computed and their
            // MODSEQs allocated: a STORE waiting for a SEARCH of the same mailbox must not
            // hold the index lock (and so every other mailbox's delivery) meanwhile.
            let cell = self.cell(mailbox)?;
            let mut m = cell.lock();
            let mut uids = uids.to_vec();
            uids.sort_unstable();
            uids.dedup();
            for uid in uids {
                let Some(e) = m.visible_entry(uid) else {
                    continue;
                };
                // Build on the newest change, committed or still in flight.
                let (cur_modseq, cur_flags) = match &e.pending {
                    Some((m, f)) if *m > e.modseq => (*m, f.clone()),
                    _ => (e.modseq, e.flags.clone()),
                };
                if unchanged_since.is_some_and(|us| cur_modseq > us) {
                    outcome.modified.push(uid);
                    continue;
                }
                let mut new: Vec<String> = match op {
                    FlagOp::Replace => Vec::new(),
                    FlagOp::Add | FlagOp::Remove => cur_flags.clone(),
                };
                for f in flags {
                    let has = new.iter().position(|x| x.eq_ignore_ascii_case(f));
                    match (op, has) {
                        (FlagOp::Replace | FlagOp::Add, None) => new.push(f.clone()),
                        (FlagOp::Remove, Some(i)) => {
                            new.remove(i);
                        }
                        _ => {}
                    }
                }
                if let Err(e) = check_flags(&new) {
                    // Release what this call allocated so HIGHESTMODSEQ does not stall.
                    for u in &updates {
                        m.fail_flags(u.uid, u.modseq);
                    }
                    return Err(e);
                }
                let same = new.len() == cur_flags.len()
                    && new
                        .iter()
                        .all(|f| cur_flags.iter().any(|x| x.eq_ignore_ascii_case(f)));
                if same && unchanged_since.is_none() {
                    outcome.unchanged.push(FlagState {
                        uid,
                        modseq: cur_modseq,
                        flags: cur_flags,
                    });
                    continue;
                }
                let modseq = m.alloc_modseq();
                if let Some(e) = m.visible_entry_mut(uid) {
                    e.pending = Some((modseq, new.clone()));
                }
                updates.push(record::FlagChange {
                    uid,
                    modseq,
                    flags: new,
                });
            }
        }
        if updates.is_empty() {
            return Ok(outcome);
        }
        outcome.changed = updates
            .iter()
            .map(|u| FlagState {
                uid: u.uid,
                modseq: u.modseq,
                flags: u.flags.clone(),
            })
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(
            self.mailbox_shard(mailbox),
            Job {
                op: Op::FlagsBatch {
                    mailbox: mailbox.0,
                    updates,
                },
                reply: Reply::Async(tx),
            },
        )?;
        done_modseq(rx.await.map_err(|_| StoreError::Closed)?)?;
        Ok(outcome)
    }

    /// Copies messages into another mailbox (IMAP COPY/MOVE) without writing their bytes
    /// again: one MessageRef record per message points at the stored original, with the
    /// source's flags and internal date. The records are queued together so they share a
    /// group commit. Returns (source uid, new uid) pairs in source order.
    pub async fn copy_messages(
        &self,
        shard: usize,
        source: &[MessageMeta],
        target: MailboxId,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        for meta in source {
            check_flags(&meta.flags)?;
        }
        // Under one lock: every source must still be stored (its current place: the
        // compactor may have moved it since `meta` was read), and is pinned until its copy
        // commits so that the compactor keeps it.
        let mut jobs: Vec<(u32, Job, tokio::sync::oneshot::Receiver<shard::JobResult>)> =
            Vec::with_capacity(source.len());
        {
            let mut ix = self.inner.index.lock().map_err(lock_err)?;
            if !ix.contains(target.0) {
                return Err(StoreError::UnknownMailbox(target.0));
            }
            let mut locs = Vec::with_capacity(source.len());
            for meta in source {
                let loc = match ix.entry_loc(meta.mailbox.0, meta.uid) {
                    Some(loc) => loc,
                    None => ix
                        .holder_location((meta.source.0 .0, meta.source.1))
                        .ok_or(StoreError::UnknownMessage {
                            mailbox: meta.mailbox.0,
                            uid: meta.uid,
                        })?,
                };
                locs.push(loc);
            }
            for (meta, loc) in source.iter().zip(locs) {
                let Some(alloc) = ix.alloc_delivery(target.0) else {
                    for (_, job, _) in jobs {
                        shard::release(&mut ix, &job.op);
                    }
                    return Err(StoreError::InvalidRequest("UID space exhausted".into()));
                };
                ix.pin(loc);
                let record = record::Record::MessageRef {
                    internal_date: meta.internal_date,
                    size: meta.size,
                    source: record::SourceRef::new(&loc, meta.source.0 .0, meta.source.1),
                    deliveries: vec![record::Delivery {
                        mailbox: alloc.mailbox,
                        uid: alloc.uid,
                        modseq: alloc.modseq,
                        flags: meta.flags.clone(),
                    }],
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let job = Job {
                    op: Op::Message {
                        record,
                        allocs: vec![alloc],
                    },
                    reply: Reply::Async(tx),
                };
                jobs.push((meta.uid, job, rx));
            }
        }
        let mut waits = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        for (uid, job, rx) in jobs.by_ref() {
            if let Err(e) = self.send(shard, job) {
                // `send` released the refused job; release the ones not sent.
                for (_, job, _) in jobs {
                    job.fail(&self.inner.index, StoreError::Closed);
                }
                return Err(e);
            }
            waits.push((uid, rx));
        }
        let mut out = Vec::with_capacity(waits.len());
        for (uid, rx) in waits {
            let appended = done_appended(rx.await.map_err(|_| StoreError::Closed)?)?;
            if let Some(a) = appended.first() {
                out.push((uid, a.uid));
            }
        }
        Ok(out)
    }

    /// Moves messages to another mailbox (IMAP MOVE, RFC 6851) in one durable record: the
    /// copies (reusing the stored bytes, as [`Store::copy_messages`]) and the expunge from
    /// `from` commit together, so a crash leaves each message in exactly one of the two
    /// mailboxes. Messages no longer visible in `from` are skipped. Returns (source uid,
    /// new uid) pairs in source order.
    pub async fn move_messages(
        &self,
        from: MailboxId,
        source: &[MessageMeta],
        target: MailboxId,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        for meta in source {
            check_flags(&meta.flags)?;
        }
        let (op, pairs) = {
            let mut ix = self.inner.index.lock().map_err(lock_err)?;
            if !ix.contains(target.0) {
                return Err(StoreError::UnknownMailbox(target.0));
            }
            if !ix.contains(from.0) {
                return Err(StoreError::UnknownMailbox(from.0));
            }
            let mut uids = Vec::new();
            let mut copies = Vec::new();
            let mut allocs = Vec::new();
            let mut pairs = Vec::new();
            for meta in source {
                if !ix.is_visible(from.0, meta.uid) || uids.contains(&meta.uid) {
                    continue;
                }
                let Some(alloc) = ix.alloc_delivery(target.0) else {
                    for a in allocs {
                        ix.fail_delivery(a);
                    }
                    return Err(StoreError::InvalidRequest("UID space exhausted".into()));
                };
                // Where the bytes are now (the compactor may have moved them since `meta`).
                let Some(loc) = ix.entry_loc(from.0, meta.uid) else {
                    continue;
                };
                copies.push(record::MovedCopy {
                    internal_date: meta.internal_date,
                    size: meta.size,
                    source: record::SourceRef::new(&loc, meta.source.0 .0, meta.source.1),
                    delivery: record::Delivery {
                        mailbox: alloc.mailbox,
                        uid: alloc.uid,
                        modseq: alloc.modseq,
                        flags: meta.flags.clone(),
                    },
                });
                uids.push(meta.uid);
                pairs.push((meta.uid, alloc.uid));
                allocs.push(alloc);
            }
            if uids.is_empty() {
                return Ok(Vec::new());
            }
            let Some(modseq) = ix.alloc_modseq(from.0) else {
                for a in allocs {
                    ix.fail_delivery(a);
                }
                return Err(StoreError::UnknownMailbox(from.0));
            };
            // Kept by the compactor until the move commits.
            for c in &copies {
                ix.pin(c.source.location());
            }
            let op = Op::Move {
                mailbox: from.0,
                modseq,
                uids,
                copies,
                allocs,
            };
            (op, pairs)
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The source mailbox's shard: the expunge stays in order with its flag changes.
        self.send(
            self.mailbox_shard(from),
            Job {
                op,
                reply: Reply::Async(tx),
            },
        )?;
        done_appended(rx.await.map_err(|_| StoreError::Closed)?)?;
        Ok(pairs)
    }

    /// Stops the shard threads after they finish queued work. Later writes fail with
    /// [`StoreError::Closed`]; reads keep working.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader holding one mailbox (a SEARCH copying a large mailbox's metadata holds its
    /// lock for that long) does not hold up delivery to another mailbox, even while a
    /// delivery to the mailbox being read waits for it (that one once waited holding the
    /// index lock, and so stalled everyone).
    #[test]
    fn reading_one_mailbox_does_not_stall_delivery_to_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = StoreOptions::new(dir.path());
        opts.backend = BackendChoice::Portable;
        opts.segment_bytes = 1 << 20;
        opts.sysfs_root = dir.path().join("no-sysfs");
        opts.shards = 2;
        let store = Store::open(opts).expect("open");
        let busy = store
            .ensure_mailbox("a@x.test", "INBOX", None)
            .expect("a")
            .id;
        let other = store
            .ensure_mailbox("b@x.test", "INBOX", None)
            .expect("b")
            .id;
        let req = |mailbox| AppendRequest {
            body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            internal_date: 1_700_000_000,
            targets: vec![AppendTarget {
                mailbox,
                flags: vec![],
            }],
        };
        let cell = store
            .inner
            .index
            .lock()
            .expect("index")
            .cell(busy.0)
            .expect("cell");
        let held = cell.lock();

        // A delivery to the mailbox being read waits for the reader...
        let s = store.clone();
        let (busy_tx, busy_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = busy_tx.send(s.append_blocking(0, req(busy)).map(|a| a[0].uid));
        });
        assert!(
            busy_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "delivery to the mailbox being read did not wait"
        );

        // So does a flag change (IMAP STORE) to it...
        let s = store.clone();
        let (store_tx, store_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let flags = ["\\Seen".to_string()];
            let _ =
                store_tx.send(rt.block_on(s.update_flags(busy, &[1], FlagOp::Add, &flags, None)));
        });
        assert!(
            store_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a flag change to the mailbox being read did not wait"
        );

        // ...and while they wait, deliveries to another mailbox, on the same shard and on
        // the other, go on.
        for (n, shard) in [0usize, 1, 0].into_iter().enumerate() {
            let s = store.clone();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(s.append_blocking(shard, req(other)).map(|a| a[0].uid));
            });
            let delivered = rx.recv_timeout(Duration::from_secs(10));
            let expected = n as u32 + 1;
            assert!(
                matches!(delivered, Ok(Ok(uid)) if uid == expected),
                "delivery to another mailbox (shard {shard}) waited for the reader: {delivered:?}"
            );
            assert_eq!(store.messages(other).len(), n + 1);
        }
        assert!(
            busy_rx.try_recv().is_err(),
            "the delivery to the mailbox being read finished while it was held"
        );
        drop(held);
        let delivered = busy_rx.recv_timeout(Duration::from_secs(10));
        assert!(matches!(delivered, Ok(Ok(1))), "{delivered:?}");
        assert_eq!(store.messages(busy).len(), 1);
        // The STORE ran after the delivery it waited behind, or found no message 1 yet.
        let stored = store_rx.recv_timeout(Duration::from_secs(10));
        assert!(matches!(stored, Ok(Ok(_))), "{stored:?}");
    }
}
