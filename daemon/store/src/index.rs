//! In-memory mailbox index, rebuilt from the log at open and updated by the shard
//! threads after each commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{MailboxId, MailboxInfo, MessageMeta};

/// Where a record lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub shard: usize,
    pub segment: u32,
    /// Offset of the record header within the segment file.
    pub offset: u64,
    /// Header + payload length.
    pub len: u64,
}

/// Allocation counter with a visibility boundary: every value below `boundary()` is
/// resolved (committed or failed). IMAP clients must never see UID n+1 before UID n
/// (RFC 3501 2.3.1.1: UIDs strictly ascend), so only values under the boundary show.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    next: u64,
    pending: BTreeSet<u64>,
}

impl Watermark {
    fn new(next: u64) -> Self {
        Watermark {
            next,
            pending: BTreeSet::new(),
        }
    }
    fn alloc(&mut self) -> u64 {
        let v = self.next;
        self.next += 1;
        self.pending.insert(v);
        v
    }
    fn resolve(&mut self, v: u64) {
        self.pending.remove(&v);
    }
    pub(crate) fn boundary(&self) -> u64 {
        self.pending.first().copied().unwrap_or(self.next)
    }
}

/// MODSEQ allocation; HIGHESTMODSEQ reported is the highest committed value below the
/// boundary, so a CONDSTORE client never skips a change that commits late
/// (RFC 7162 3.1.2.1).
#[derive(Debug)]
pub(crate) struct ModseqTracker {
    wm: Watermark,
    committed_above: BTreeSet<u64>,
    visible_max: u64,
}

impl ModseqTracker {
    fn new(highest: u64) -> Self {
        ModseqTracker {
            wm: Watermark::new(highest + 1),
            committed_above: BTreeSet::new(),
            visible_max: highest,
        }
    }
    fn alloc(&mut self) -> u64 {
        self.wm.alloc()
    }
    fn settle(&mut self, v: u64, committed: bool) {
        self.wm.resolve(v);
        if committed {
            self.committed_above.insert(v);
        }
        let b = self.wm.boundary();
        while let Some(&first) = self.committed_above.first() {
            if first >= b {
                break;
            }
            self.committed_above.remove(&first);
            self.visible_max = self.visible_max.max(first);
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MsgEntry {
    /// The delivery (mailbox, uid) inside the record at `loc` whose bytes this is; None
    /// for the message's own delivery (copies reuse another message's record).
    pub source: Option<(u32, u32)>,
    pub modseq: u64,
    pub flags: Vec<String>,
    /// The newest flag change allocated and not yet committed (MODSEQ, flags): the next
    /// change builds on it, so concurrent STOREs never lose each other's flags. Readers
    /// still see only `flags`.
    pub pending: Option<(u64, Vec<String>)>,
    pub internal_date: i64,
    pub size: u64,
    pub loc: Location,
}

#[derive(Debug)]
pub(crate) struct MailboxState {
    pub id: u32,
    pub account: String,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    uids: Watermark,
    modseq: ModseqTracker,
    /// Committed, not expunged; may hold entries above the uid boundary (not yet visible).
    /// Changed only through `insert_entry`, `remove_entry` and `apply_flags`, which keep
    /// `by_modseq` in step.
    pub messages: BTreeMap<u32, MsgEntry>,
    /// (MODSEQ, UID) of every entry of `messages`: what changed since a MODSEQ is a range
    /// here, not a pass over a large mailbox (every session's sync after a change,
    /// CONDSTORE/QRESYNC SELECT).
    by_modseq: BTreeSet<(u64, u32)>,
    /// Expunged UIDs and the MODSEQ of their expunge, for QRESYNC VANISHED
    /// (RFC 7162 3.2.5.2). Kept for the mailbox's life.
    pub vanished: BTreeMap<u32, u64>,
    /// The visible UIDs, ascending, built on first use and dropped whenever the visible set
    /// changes (delivery, expunge, a moved UID boundary). Flag changes keep it, so every
    /// IMAP session on an unchanged mailbox shares one copy of its sequence map.
    uid_snapshot: Option<Arc<Vec<u32>>>,
    /// The SELECT/STATUS summary, built on first use and dropped on any change (flags
    /// included): SELECT of an unchanged large mailbox is not a pass over it.
    summary: Option<crate::MailboxSummary>,
    /// Fired with HIGHESTMODSEQ after every commit that changes it (the change feed).
    /// Dropped with the mailbox, which ends every receiver's `changed()` with an error.
    notify: tokio::sync::watch::Sender<u64>,
}

impl MailboxState {
    /// Highest UID handed out (committed or in flight): a checkpoint keeps it so that no
    /// UID is reused after a restart.
    pub(crate) fn max_uid(&self) -> u32 {
        u32::try_from(self.uids.next.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Highest MODSEQ handed out (committed or in flight).
    pub(crate) fn max_modseq(&self) -> u64 {
        self.modseq
            .wm
            .next
            .saturating_sub(1)
            .max(self.modseq.visible_max)
    }

    /// Drops what is derived from the visible messages (after any change to them).
    fn forget_derived(&mut self) {
        self.uid_snapshot = None;
        self.summary = None;
    }

    /// Sets a message's flags if the change is newer than its MODSEQ (commit and
    /// recovery alike); the entry, when the message exists.
    fn apply_flags(&mut self, uid: u32, modseq: u64, flags: Vec<String>) -> Option<&mut MsgEntry> {
        let e = self.messages.get_mut(&uid)?;
        if modseq > e.modseq {
            self.by_modseq.remove(&(e.modseq, uid));
            self.by_modseq.insert((modseq, uid));
            e.modseq = modseq;
            e.flags = flags;
            self.summary = None;
        }
        Some(e)
    }

    fn insert_entry(&mut self, uid: u32, entry: MsgEntry) {
        self.by_modseq.insert((entry.modseq, uid));
        if let Some(old) = self.messages.insert(uid, entry) {
            self.by_modseq.remove(&(old.modseq, uid));
        }
        self.forget_derived();
    }

    fn remove_entry(&mut self, uid: u32) {
        if let Some(old) = self.messages.remove(&uid) {
            self.by_modseq.remove(&(old.modseq, uid));
        }
        self.forget_derived();
    }

    /// Visible messages: those below the UID boundary (entries above it wait for lower
    /// UIDs to commit, usually none).
    fn visible_count(&self) -> usize {
        let b = self.uid_boundary();
        self.messages.len() - self.messages.range(b..).count()
    }

    fn uid_boundary(&self) -> u32 {
        u32::try_from(self.uids.boundary()).unwrap_or(u32::MAX)
    }

    pub(crate) fn info(&self) -> MailboxInfo {
        let b = self.uid_boundary();
        MailboxInfo {
            id: MailboxId(self.id),
            account: self.account.clone(),
            name: self.name.clone(),
            special_use: self.special_use.clone(),
            uidvalidity: self.uidvalidity,
            uidnext: b,
            highest_modseq: self.modseq.visible_max,
            exists: self.visible_count() as u32,
        }
    }

    /// The committed entry of a visible message.
    pub(crate) fn visible_entry(&self, uid: u32) -> Option<&MsgEntry> {
        if uid >= self.uid_boundary() {
            return None;
        }
        self.messages.get(&uid)
    }

    /// The entry of a visible message, for a flag change: only `pending` may be set
    /// through it (MODSEQ and flags change in `apply_flags`, which keeps the MODSEQ index).
    pub(crate) fn visible_entry_mut(&mut self, uid: u32) -> Option<&mut MsgEntry> {
        if uid >= self.uid_boundary() {
            return None;
        }
        self.messages.get_mut(&uid)
    }

    /// Allocates a MODSEQ for a flag change or expunge.
    pub(crate) fn alloc_modseq(&mut self) -> u64 {
        self.modseq.alloc()
    }

    pub(crate) fn fail_modseq(&mut self, modseq: u64) {
        self.modseq.settle(modseq, false);
        self.notify();
    }

    /// A failed flag change: forget it as the base of later changes.
    pub(crate) fn fail_flags(&mut self, uid: u32, modseq: u64) {
        if let Some(e) = self.messages.get_mut(&uid) {
            if e.pending.as_ref().is_some_and(|p| p.0 == modseq) {
                e.pending = None;
            }
        }
        self.fail_modseq(modseq);
    }

    /// Visible messages, in UID order.
    pub(crate) fn metas(&self) -> Vec<MessageMeta> {
        self.messages
            .range(..self.uid_boundary())
            .map(|(&uid, e)| meta_of(self.id, uid, e))
            .collect()
    }

    /// Visible messages whose MODSEQ is above `modseq`, in UID order, from the MODSEQ
    /// index: the cost is the number of changes, not the mailbox size.
    pub(crate) fn metas_changed_since(&self, modseq: u64) -> Vec<MessageMeta> {
        let Some(from) = modseq.checked_add(1) else {
            return Vec::new();
        };
        let b = self.uid_boundary();
        let mut uids: Vec<u32> = self
            .by_modseq
            .range((from, 0)..)
            .map(|&(_, u)| u)
            .filter(|&u| u < b)
            .collect();
        uids.sort_unstable();
        uids.iter()
            .filter_map(|&u| self.messages.get(&u).map(|e| meta_of(self.id, u, e)))
            .collect()
    }

    /// The given visible messages (absent and invisible UIDs skipped), in the given order.
    pub(crate) fn metas_by_uid(&self, uids: &[u32]) -> Vec<MessageMeta> {
        let boundary = self.uid_boundary();
        uids.iter()
            .filter(|&&uid| uid < boundary)
            .filter_map(|&uid| self.messages.get(&uid).map(|e| meta_of(self.id, uid, e)))
            .collect()
    }

    /// Counts over the visible messages, kept until the mailbox next changes.
    pub(crate) fn summary(&mut self) -> crate::MailboxSummary {
        if let Some(s) = &self.summary {
            return s.clone();
        }
        let s = self.count();
        self.summary = Some(s.clone());
        s
    }

    /// One pass over the visible messages, copying nothing per message.
    fn count(&self) -> crate::MailboxSummary {
        let mut out = crate::MailboxSummary::default();
        for (_, e) in self.messages.range(..self.uid_boundary()) {
            out.messages += 1;
            out.size += e.size;
            let mut seen = false;
            for f in &e.flags {
                if f.eq_ignore_ascii_case("\\Seen") {
                    seen = true;
                } else if f.eq_ignore_ascii_case("\\Deleted") {
                    out.deleted += 1;
                } else if !f.starts_with('\\')
                    && !out.keywords.iter().any(|k| k.eq_ignore_ascii_case(f))
                {
                    out.keywords.push(f.clone());
                }
            }
            if !seen {
                out.unseen += 1;
                if out.first_unseen.is_none() {
                    out.first_unseen = u32::try_from(out.messages).ok();
                }
            }
        }
        out
    }

    /// HIGHESTMODSEQ and the visible UIDs as of it, shared: the snapshot is built once per
    /// change of the visible set, not per caller.
    pub(crate) fn uid_snapshot(&mut self) -> (u64, Arc<Vec<u32>>) {
        let b = self.uid_boundary();
        let messages = &self.messages;
        let uids = self
            .uid_snapshot
            .get_or_insert_with(|| Arc::new(messages.range(..b).map(|(&u, _)| u).collect()))
            .clone();
        (self.modseq.visible_max, uids)
    }

    /// UIDs expunged with a MODSEQ above `modseq`, ascending.
    pub(crate) fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        self.vanished
            .iter()
            .filter(|(_, &ms)| ms > modseq)
            .map(|(&u, _)| u)
            .collect()
    }

    /// Sum of the visible messages' sizes, and their count.
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.messages
            .range(..self.uid_boundary())
            .fold((0, 0), |(bytes, n), (_, e)| (bytes + e.size, n + 1))
    }

    /// Wakes the change feed's receivers when HIGHESTMODSEQ moved.
    /// The UID and MODSEQ of a new delivery; visible once committed (UIDs are allocated in
    /// enqueue order, RFC 9051 2.3.1.1: strictly ascending).
    fn alloc_delivery(&mut self) -> Option<Alloc> {
        if self.uids.next > u64::from(u32::MAX) {
            return None;
        }
        let uid = self.uids.alloc() as u32;
        let modseq = self.modseq.alloc();
        Some(Alloc {
            mailbox: self.id,
            uid,
            modseq,
        })
    }

    fn fail_delivery(&mut self, a: Alloc) {
        self.uids.resolve(u64::from(a.uid));
        self.forget_derived();
        self.modseq.settle(a.modseq, false);
        self.notify();
    }

    fn notify(&self) {
        let v = self.modseq.visible_max;
        self.notify.send_if_modified(|cur| {
            if *cur != v {
                *cur = v;
                true
            } else {
                false
            }
        });
    }
}

/// Where compaction moved message records: by (shard, segment), old offset to new offset
/// and length.
pub(crate) type Relocations = HashMap<(usize, u32), HashMap<u64, (u64, u64)>>;

/// A point in one shard's log: the record at `offset` of `segment` has sequence `seq`
/// (or nothing is there yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPosition {
    pub segment: u32,
    pub offset: u64,
    pub seq: u64,
}

/// A mailbox's state behind its own lock. Readers of one mailbox (a SEARCH or FETCH copying
/// a large mailbox's metadata) take the index lock only to find the mailbox and then hold
/// this alone; committed changes are applied holding only this lock too ([`CellChange`]),
/// so deliveries and changes to every other mailbox go on. Lock order: the
/// [`ApplyGate`], the index lock, then one mailbox's; never a mailbox's and then the index
/// lock, and never two mailboxes at once.
#[derive(Debug, Clone)]
pub(crate) struct MailboxCell(Arc<Mutex<MailboxState>>);

impl MailboxCell {
    fn new(state: MailboxState) -> Self {
        MailboxCell(Arc::new(Mutex::new(state)))
    }

    /// Allocates the UID and MODSEQ of a delivery (see [`Index::alloc_delivery`]) holding
    /// only this mailbox's lock: a delivery to a mailbox that a reader holds waits here
    /// without the index lock, so deliveries to other mailboxes go on.
    pub(crate) fn alloc_delivery(&self) -> Option<Alloc> {
        self.lock().alloc_delivery()
    }

    /// Undoes [`MailboxCell::alloc_delivery`] (the delivery will not be written).
    pub(crate) fn fail_delivery(&self, a: Alloc) {
        self.lock().fail_delivery(a);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, MailboxState> {
        // A panic while it was held leaves at worst an index entry out of date; the log is
        // the truth and the next start rebuilds from it. Refusing every later read of the
        // mailbox would be worse.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A committed change to one mailbox's state.
pub(crate) enum MailboxChange {
    Deliver(Alloc, MsgEntry),
    Flags {
        uid: u32,
        modseq: u64,
        flags: Vec<String>,
    },
    Expunge {
        modseq: u64,
        uids: Vec<u32>,
    },
}

/// A committed change and the mailbox it goes to. The shard thread finds the cells under
/// the index lock, releases it, and then applies each change holding only that mailbox's
/// lock (and the [`ApplyGate`] shared): a reader copying a large mailbox delays the changes
/// to that mailbox alone, never the index lock, so other mailboxes' deliveries and every
/// other shard go on.
pub(crate) struct CellChange {
    cell: MailboxCell,
    change: MailboxChange,
}

impl CellChange {
    pub(crate) fn apply(self) {
        let mut m = self.cell.lock();
        match self.change {
            MailboxChange::Deliver(a, entry) => {
                m.insert_entry(a.uid, entry);
                m.uids.resolve(u64::from(a.uid));
                m.forget_derived();
                m.modseq.settle(a.modseq, true);
            }
            MailboxChange::Flags { uid, modseq, flags } => {
                if let Some(e) = m.apply_flags(uid, modseq, flags) {
                    if e.pending.as_ref().is_some_and(|p| p.0 <= modseq) {
                        e.pending = None;
                    }
                }
                m.modseq.settle(modseq, true);
            }
            MailboxChange::Expunge { modseq, uids } => {
                for u in &uids {
                    m.remove_entry(*u);
                    m.vanished.insert(*u, modseq);
                }
                m.modseq.settle(modseq, true);
            }
        }
        m.notify();
    }
}

/// Shared by the shard threads while they apply committed batches to mailboxes outside the
/// index lock; exclusive for a checkpoint and for a compaction's relocation, which must see
/// (and change) the index as of whole batches: log positions that agree with the mailboxes'
/// contents. Lock order: the gate, then the index lock, then one mailbox's.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyGate(Arc<RwLock<()>>);

impl ApplyGate {
    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, ()> {
        // The gate guards no data: a panic while it was held leaves nothing half-done.
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    mailboxes: HashMap<u32, MailboxCell>,
    by_name: HashMap<(String, String), u32>,
    pub next_mailbox_id: u32,
    pub last_uidvalidity: u32,
    /// (account, mailbox name) pairs the user subscribed to.
    pub subscriptions: BTreeSet<(String, String)>,
    /// Per shard, the end of the last batch applied to this index: the index holds exactly
    /// the log up to these positions (what a checkpoint records).
    pub positions: BTreeMap<usize, LogPosition>,
    /// End of the valid records of every segment, by (shard, segment).
    pub segment_ends: BTreeMap<(usize, u32), u64>,
    /// Records an enqueued COPY or MOVE will point at once it commits: live for the
    /// compactor although no entry refers to them yet.
    pins: HashMap<Location, u32>,
    /// Log bytes committed since the last checkpoint.
    pub bytes_since_checkpoint: u64,
}

/// The metadata of one entry, as the store hands it out.
fn meta_of(mailbox: u32, uid: u32, e: &MsgEntry) -> MessageMeta {
    MessageMeta {
        mailbox: MailboxId(mailbox),
        uid,
        modseq: e.modseq,
        flags: e.flags.clone(),
        internal_date: e.internal_date,
        size: e.size,
        location: e.loc,
        source: e
            .source
            .map(|(m, u)| (MailboxId(m), u))
            .unwrap_or((MailboxId(mailbox), uid)),
    }
}

/// One delivery allocated at enqueue time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Alloc {
    pub mailbox: u32,
    pub uid: u32,
    pub modseq: u64,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            next_mailbox_id: 1,
            ..Default::default()
        }
    }

    /// Runs `f` on a mailbox under its lock.
    fn with<R>(&self, id: u32, f: impl FnOnce(&mut MailboxState) -> R) -> Option<R> {
        self.mailboxes.get(&id).map(|c| f(&mut c.lock()))
    }

    /// The mailbox's cell, for reading it after the index lock is released.
    pub(crate) fn cell(&self, id: u32) -> Option<MailboxCell> {
        self.mailboxes.get(&id).cloned()
    }

    /// The cells of an account's mailboxes.
    pub(crate) fn cells_of(&self, account: &str) -> Vec<MailboxCell> {
        self.mailboxes
            .values()
            .filter(|c| c.lock().account == account)
            .cloned()
            .collect()
    }

    pub(crate) fn find(&self, account: &str, name: &str) -> Option<MailboxInfo> {
        let id = self.by_name.get(&(account.to_string(), name.to_string()))?;
        self.with(*id, |m| m.info())
    }

    pub(crate) fn info(&self, id: u32) -> Option<MailboxInfo> {
        self.with(id, |m| m.info())
    }

    pub(crate) fn mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        let mut v: Vec<MailboxInfo> = self
            .mailboxes
            .values()
            .filter_map(|c| {
                let m = c.lock();
                (m.account == account).then(|| m.info())
            })
            .collect();
        v.sort_by_key(|m| m.id.0);
        v
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.mailboxes.contains_key(&id)
    }

    /// Inserts a committed (or recovered) mailbox.
    pub(crate) fn insert_mailbox(
        &mut self,
        id: u32,
        uidvalidity: u32,
        account: String,
        name: String,
        special_use: Option<String>,
    ) {
        self.by_name.insert((account.clone(), name.clone()), id);
        self.next_mailbox_id = self.next_mailbox_id.max(id.saturating_add(1));
        self.last_uidvalidity = self.last_uidvalidity.max(uidvalidity);
        self.mailboxes.insert(
            id,
            MailboxCell::new(MailboxState {
                id,
                account,
                name,
                special_use,
                uidvalidity,
                uids: Watermark::new(1),
                // Creation is modseq 1 (RFC 7162 mod-sequences are non-zero).
                modseq: ModseqTracker::new(1),
                messages: BTreeMap::new(),
                by_modseq: BTreeSet::new(),
                vanished: BTreeMap::new(),
                uid_snapshot: None,
                summary: None,
                notify: tokio::sync::watch::Sender::new(1),
            }),
        );
    }

    /// Removes a mailbox (committed or recovered delete).
    pub(crate) fn delete_mailbox(&mut self, id: u32) {
        if let Some(c) = self.mailboxes.remove(&id) {
            let key = {
                let m = c.lock();
                (m.account.clone(), m.name.clone())
            };
            if self.by_name.get(&key) == Some(&id) {
                self.by_name.remove(&key);
            }
        }
    }

    /// Gives a mailbox a new name (committed or recovered rename).
    pub(crate) fn rename_mailbox(&mut self, id: u32, name: String) {
        let Some((account, old)) = self.with(id, |m| {
            (
                m.account.clone(),
                std::mem::replace(&mut m.name, name.clone()),
            )
        }) else {
            return;
        };
        let old = (account.clone(), old);
        if self.by_name.get(&old) == Some(&id) {
            self.by_name.remove(&old);
        }
        self.by_name.insert((account, name), id);
    }

    pub(crate) fn set_subscription(&mut self, account: String, name: String, on: bool) {
        if on {
            self.subscriptions.insert((account, name));
        } else {
            self.subscriptions.remove(&(account, name));
        }
    }

    pub(crate) fn subscriptions(&self, account: &str) -> Vec<String> {
        self.subscriptions
            .iter()
            .filter(|(a, _)| a == account)
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub(crate) fn watch(&self, id: u32) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.with(id, |m| m.notify.subscribe())
    }

    /// A failed flag change: forget it as the base of later changes.
    pub(crate) fn fail_flags(&mut self, mailbox: u32, uid: u32, modseq: u64) {
        self.with(mailbox, |m| m.fail_flags(uid, modseq));
    }

    /// Where the visible message's bytes are stored.
    pub(crate) fn entry_loc(&self, mailbox: u32, uid: u32) -> Option<Location> {
        self.with(mailbox, |m| m.visible_entry(uid).map(|e| e.loc))
            .flatten()
    }

    /// Allocates a UID and MODSEQ for a new message in `mailbox`.
    pub(crate) fn alloc_delivery(&mut self, mailbox: u32) -> Option<Alloc> {
        self.with(mailbox, |m| m.alloc_delivery()).flatten()
    }

    /// Allocates a MODSEQ for a flag change or expunge.
    pub(crate) fn alloc_modseq(&mut self, mailbox: u32) -> Option<u64> {
        self.with(mailbox, |m| m.modseq.alloc())
    }

    /// True when `uid` is a visible, non-expunged message.
    pub(crate) fn is_visible(&self, mailbox: u32, uid: u32) -> bool {
        self.with(mailbox, |m| m.visible_entry(uid).is_some())
            .unwrap_or(false)
    }

    pub(crate) fn fail_delivery(&mut self, a: Alloc) {
        self.with(a.mailbox, |m| m.fail_delivery(a));
    }

    /// What a committed change does to one mailbox, to apply with only the mailbox's lock
    /// held (see [`CellChange`]).
    pub(crate) fn cell_change(&self, mailbox: u32, change: MailboxChange) -> Option<CellChange> {
        Some(CellChange {
            cell: self.cell(mailbox)?,
            change,
        })
    }

    pub(crate) fn fail_modseq(&mut self, mailbox: u32, modseq: u64) {
        self.with(mailbox, |m| m.fail_modseq(modseq));
    }

    /// After recovery: counters continue past everything the log holds (including
    /// expunged messages, so a UID is never reused within one UIDVALIDITY).
    pub(crate) fn finish_recovery(
        &mut self,
        max_uid: &HashMap<u32, u32>,
        max_modseq: &HashMap<u32, u64>,
    ) {
        for (id, c) in self.mailboxes.iter() {
            let mut m = c.lock();
            let uid = max_uid.get(id).copied().unwrap_or(0);
            m.uids = Watermark::new(u64::from(uid) + 1);
            m.forget_derived();
            let ms = max_modseq.get(id).copied().unwrap_or(1).max(1);
            m.modseq = ModseqTracker::new(ms);
            m.notify.send_replace(ms);
        }
    }

    /// Every mailbox, in id order (checkpoint writing locks each in turn).
    pub(crate) fn mailbox_cells(&self) -> Vec<MailboxCell> {
        let mut v: Vec<(u32, MailboxCell)> = self
            .mailboxes
            .iter()
            .map(|(&id, c)| (id, c.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// Recovery: an expunge known only by its effect (from a checkpoint).
    pub(crate) fn recover_vanished(&mut self, mailbox: u32, uid: u32, modseq: u64) {
        self.with(mailbox, |m| m.vanished.insert(uid, modseq));
    }

    /// Marks the record at `loc` as about to be referenced by a committing copy.
    pub(crate) fn pin(&mut self, loc: Location) {
        *self.pins.entry(loc).or_default() += 1;
    }

    /// Whether a queued copy refers to a record of this segment.
    pub(crate) fn has_pins_in(&self, shard: usize, segment: u32) -> bool {
        self.pins
            .keys()
            .any(|l| l.shard == shard && l.segment == segment)
    }

    /// MODSEQ of a committed message (visible or not yet), None when there is none.
    pub(crate) fn committed_modseq(&self, mailbox: u32, uid: u32) -> Option<u64> {
        self.with(mailbox, |m| m.messages.get(&uid).map(|e| e.modseq))
            .flatten()
    }

    /// Undoes one [`Index::pin`] (the copy committed or failed).
    pub(crate) fn unpin(&mut self, loc: &Location) {
        if let Some(n) = self.pins.get_mut(loc) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(loc);
            }
        }
    }

    /// The message records still needed, by (shard, segment): offset to record length. A
    /// record is needed while an entry (any mailbox, copies included) or an enqueued copy
    /// refers to it. One pass over the index (compaction and `stats` use it once per pass).
    pub(crate) fn live_records(&self) -> HashMap<(usize, u32), HashMap<u64, u64>> {
        let mut out: HashMap<(usize, u32), HashMap<u64, u64>> = HashMap::new();
        let mut add = |loc: &Location| {
            out.entry((loc.shard, loc.segment))
                .or_default()
                .insert(loc.offset, loc.len);
        };
        for c in self.mailboxes.values() {
            for e in c.lock().messages.values() {
                add(&e.loc);
            }
        }
        for loc in self.pins.keys() {
            add(loc);
        }
        out
    }

    /// Points every entry whose bytes moved in a compacted segment at the new place
    /// (`moved`: by (shard, segment), old offset to new offset and length). One pass.
    pub(crate) fn relocate(&mut self, moved: &Relocations) {
        for c in self.mailboxes.values() {
            let mut m = c.lock();
            for e in m.messages.values_mut() {
                if let Some(&(offset, len)) = moved
                    .get(&(e.loc.shard, e.loc.segment))
                    .and_then(|seg| seg.get(&e.loc.offset))
                {
                    e.loc.offset = offset;
                    e.loc.len = len;
                }
            }
        }
    }

    /// Where the bytes first delivered as `source` (mailbox, uid) are stored now, from any
    /// entry that uses them (a copy's own record may name an older place: compaction moves
    /// records).
    pub(crate) fn holder_location(&self, source: (u32, u32)) -> Option<Location> {
        let own = self.with(source.0, |m| {
            m.messages
                .get(&source.1)
                .filter(|e| e.source.is_none())
                .map(|e| e.loc)
        });
        if let Some(Some(loc)) = own {
            return Some(loc);
        }
        self.mailboxes.values().find_map(|c| {
            c.lock()
                .messages
                .values()
                .find(|e| e.source == Some(source))
                .map(|e| e.loc)
        })
    }

    /// Recovery: message entry at a known uid (no allocation bookkeeping).
    pub(crate) fn recover_message(&mut self, mailbox: u32, uid: u32, entry: MsgEntry) -> bool {
        self.with(mailbox, |m| m.insert_entry(uid, entry)).is_some()
    }

    pub(crate) fn recover_flags(
        &mut self,
        mailbox: u32,
        uid: u32,
        modseq: u64,
        flags: Vec<String>,
    ) {
        self.with(mailbox, |m| {
            m.apply_flags(uid, modseq, flags);
        });
    }

    pub(crate) fn recover_expunge(&mut self, mailbox: u32, modseq: u64, uids: &[u32]) {
        self.with(mailbox, |m| {
            for u in uids {
                m.remove_entry(*u);
                m.vanished.insert(*u, modseq);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_hides_values_above_a_pending_one() {
        let mut w = Watermark::new(1);
        let a = w.alloc();
        let b = w.alloc();
        let c = w.alloc();
        assert_eq!((a, b, c), (1, 2, 3));
        w.resolve(b);
        assert_eq!(w.boundary(), 1);
        w.resolve(a);
        assert_eq!(w.boundary(), 3);
        w.resolve(c);
        assert_eq!(w.boundary(), 4);
    }

    #[test]
    fn highest_modseq_waits_for_earlier_changes() {
        let mut t = ModseqTracker::new(1);
        let a = t.alloc();
        let b = t.alloc();
        t.settle(b, true);
        assert_eq!(t.visible_max, 1);
        t.settle(a, false);
        assert_eq!(t.visible_max, b);
    }
}
