//! The selected mailbox as one session sees it: sequence numbers mapped to UIDs, the flags
//! and MODSEQ last reported, and the untagged updates that bring the client up to date with
//! other sessions' changes (RFC 9051 7.5.1, RFC 7162 3.2.10).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use postern_store::{MailboxId, MessageMeta, Store};

use super::encode;

/// Per mailbox, the lowest UID not yet "recent" to any session (RFC 3501 2.3.2: \Recent
/// means this session is the first to see the message). Process-wide, not persisted.
fn recent_marks() -> &'static Mutex<HashMap<MailboxId, u32>> {
    static MARKS: OnceLock<Mutex<HashMap<MailboxId, u32>>> = OnceLock::new();
    MARKS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The UIDs at or above the mark: recent for the caller. With `claim` the mark moves past
/// them (SELECT); EXAMINE only looks (RFC 3501 6.3.2: \Recent is not cleared).
fn claim_recent(mailbox: MailboxId, uids: &[u32], claim: bool) -> Vec<u32> {
    let Ok(mut marks) = recent_marks().lock() else {
        return Vec::new();
    };
    let mark = marks.entry(mailbox).or_insert(1);
    let claimed: Vec<u32> = uids.iter().copied().filter(|&u| u >= *mark).collect();
    if claim {
        if let Some(&max) = uids.iter().max() {
            *mark = (*mark).max(max.saturating_add(1));
        }
    }
    claimed
}

pub struct View {
    pub id: MailboxId,
    pub name: String,
    pub read_only: bool,
    /// UID of every sequence number (index + 1), expunged-but-not-yet-reported included.
    /// Shared with the store's snapshot (and so with every other session in step with the
    /// mailbox) until this view must differ; changed copy-on-write. On a 100,000-message
    /// mailbox this is 400 KB, once, not once per session.
    pub uids: Arc<Vec<u32>>,
    /// Messages expunged by others and not yet reported to this client.
    pub gone: HashSet<u32>,
    /// MODSEQ of messages this session itself reported since the last sync (its own FETCH
    /// and STORE responses), so a sync does not report them again.
    pub known: HashMap<u32, u64>,
    /// The mailbox's HIGHESTMODSEQ as of the last sync: every change at or below it has
    /// been reported. Syncing asks the store only for what is newer, so a command on an
    /// unchanged large mailbox costs nothing.
    pub synced_modseq: u64,
    /// The highest UID this view includes.
    pub max_uid: u32,
    pub recent: HashSet<u32>,
    pub feed: Option<tokio::sync::watch::Receiver<u64>>,
    /// MODSEQ reported in FETCH responses (CONDSTORE enabled, RFC 7162 3.1.2.2 / 3.1.4).
    pub condstore: bool,
    /// The mailbox was deleted under the session.
    pub deleted: bool,
}

/// Options that shape untagged updates.
#[derive(Clone, Copy)]
pub struct Reporting {
    /// EXPUNGE (or VANISHED) may be sent now (RFC 9051 7.5.1: not during FETCH, STORE,
    /// SEARCH).
    pub allow_expunge: bool,
    /// VANISHED instead of EXPUNGE (QRESYNC enabled, RFC 7162 3.2.10).
    pub qresync: bool,
    /// IMAP4rev1 client: RECENT counts and \Recent flags.
    pub rev1: bool,
}

impl View {
    pub fn open(store: &Store, id: MailboxId, read_only: bool, condstore: bool) -> Option<View> {
        let info = store.mailbox(id)?;
        let feed = store.watch(id);
        // The UIDs and the MODSEQ they are current at, read together: a change committed
        // between two separate reads would never be reported.
        let (synced_modseq, uids) = store.uid_snapshot(id)?;
        let recent = claim_recent(id, &uids, !read_only).into_iter().collect();
        Some(View {
            id,
            name: info.name,
            read_only,
            max_uid: uids.last().copied().unwrap_or(0),
            known: HashMap::new(),
            synced_modseq,
            uids,
            gone: HashSet::new(),
            recent,
            feed,
            condstore,
            deleted: false,
        })
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Brings the view up to date with the store and writes the untagged responses.
    pub fn sync(&mut self, store: &Store, how: Reporting, out: &mut Vec<u8>) {
        let Some(info) = store.mailbox(self.id) else {
            // Deleted by another session: every message is gone.
            self.deleted = true;
            self.gone.extend(self.uids.iter().copied());
            if how.allow_expunge {
                self.report_expunged(None, how.qresync, out);
            }
            return;
        };
        if info.highest_modseq > self.synced_modseq {
            let since = self.synced_modseq;
            // Expunges and changes both carry a MODSEQ above `since` (RFC 7162 3.1.2.1).
            for uid in store.vanished_since(self.id, since) {
                if self.seq_of(uid).is_some() {
                    self.gone.insert(uid);
                }
            }
            let changed = store.messages_changed_since(self.id, since);
            self.synced_modseq = info.highest_modseq;
            self.report_new(store, &changed, how, out);
            self.report_flag_changes(&changed, how, out);
            self.known.retain(|_, &mut m| m > info.highest_modseq);
        }
        if how.allow_expunge && !self.gone.is_empty() {
            self.report_expunged(Some(store), how.qresync, out);
        }
        self.share_uids(store);
    }

    /// The store's shared UID list if it is exactly what this view's list becomes: taken
    /// at the MODSEQ the view is synced to, nothing left pending, the expected length.
    /// Adopting it instead of changing a shared list in place saves every session on a
    /// large mailbox a copy of it per delivery or expunge.
    fn current_snapshot(&self, store: &Store, len: usize) -> Option<Arc<Vec<u32>>> {
        let (modseq, snapshot) = store.uid_snapshot(self.id)?;
        (modseq == self.synced_modseq && snapshot.len() == len).then_some(snapshot)
    }

    /// Swaps a private sequence map for the store's shared one once they agree: with
    /// every change up to the snapshot's MODSEQ reported, nothing pending, the views are
    /// the same list. Idle sessions woken by a delivery so end up sharing one copy again.
    fn share_uids(&mut self, store: &Store) {
        if Arc::strong_count(&self.uids) > 1 || !self.gone.is_empty() {
            return;
        }
        if let Some(snapshot) = self.current_snapshot(store, self.uids.len()) {
            if snapshot.last() == self.uids.last() {
                self.uids = snapshot;
            }
        }
    }

    /// New messages: UIDs only grow (RFC 9051 2.3.1.1), so they are the changes above
    /// `max_uid`.
    fn report_new(
        &mut self,
        store: &Store,
        changed: &[MessageMeta],
        how: Reporting,
        out: &mut Vec<u8>,
    ) {
        let new: Vec<u32> = changed
            .iter()
            .map(|m| m.uid)
            .filter(|&u| u > self.max_uid)
            .collect();
        let Some(&last) = new.last() else {
            return;
        };
        for m in changed.iter().filter(|m| m.uid > self.max_uid) {
            self.known.insert(m.uid, m.modseq);
        }
        self.max_uid = last;
        let claimed = claim_recent(self.id, &new, !self.read_only);
        let shared = self
            .gone
            .is_empty()
            .then(|| self.current_snapshot(store, self.uids.len() + new.len()))
            .flatten()
            .filter(|s| s.last() == Some(&last));
        match shared {
            Some(snapshot) => self.uids = snapshot,
            None => Arc::make_mut(&mut self.uids).extend_from_slice(&new),
        }
        out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
        if how.rev1 {
            self.recent.extend(claimed);
            out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
        }
    }

    /// Flag changes by others (RFC 9051 7.5.2 FETCH, with MODSEQ under CONDSTORE).
    fn report_flag_changes(&mut self, changed: &[MessageMeta], how: Reporting, out: &mut Vec<u8>) {
        for m in changed {
            let Some(seq) = self.seq_of(m.uid) else {
                continue;
            };
            if self.gone.contains(&m.uid) {
                continue;
            }
            let known = self.known.get(&m.uid).copied().unwrap_or(0);
            if m.modseq <= known {
                continue;
            }
            self.known.insert(m.uid, m.modseq);
            let uid = m.uid;
            out.extend_from_slice(format!("* {seq} FETCH (UID {uid} FLAGS ").as_bytes());
            encode::flag_list(out, &m.flags, how.rev1 && self.recent.contains(&uid));
            if self.condstore {
                out.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
            }
            out.extend_from_slice(b")\r\n");
        }
    }

    /// Reports and forgets the messages in `gone` (EXPUNGE in descending sequence order, so
    /// each number is right as sent, or one VANISHED). With the store at hand, the view
    /// takes its shared list when that is the result.
    pub fn report_expunged(&mut self, store: Option<&Store>, qresync: bool, out: &mut Vec<u8>) {
        if self.gone.is_empty() {
            return;
        }
        if qresync {
            let mut v: Vec<u32> = self.gone.iter().copied().collect();
            v.sort_unstable();
            out.extend_from_slice(
                format!("* VANISHED {}\r\n", encode::sequence_set(&v)).as_bytes(),
            );
        } else {
            // Descending, so each number is right as sent.
            for (i, u) in self.uids.iter().enumerate().rev() {
                if self.gone.contains(u) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
            }
        }
        // Every entry of `gone` is in the list (it is only filled from it).
        let remaining = self.uids.len().saturating_sub(self.gone.len());
        match store.and_then(|st| self.current_snapshot(st, remaining)) {
            Some(snapshot) => self.uids = snapshot,
            None => {
                let gone = &self.gone;
                Arc::make_mut(&mut self.uids).retain(|u| !gone.contains(u));
            }
        }
        for u in self.gone.drain() {
            self.known.remove(&u);
            self.recent.remove(&u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;

    fn append(store: &Store, mailbox: MailboxId) {
        let req = test_store::request(mailbox, b"Subject: x\r\n\r\nbody\r\n");
        store.append_blocking(0, req).expect("append");
    }

    const HOW: Reporting = Reporting {
        allow_expunge: true,
        qresync: false,
        rev1: false,
    };

    /// Views in step share the store's UID list through a delivery and an expunge (no
    /// copy per session), and still report exactly what changed.
    #[test]
    fn views_in_step_share_one_list_through_changes() {
        let t = test_store::open();
        let (store, mb) = (&t.store, t.inbox);
        for _ in 0..3 {
            append(store, mb);
        }
        let mut a = View::open(store, mb, false, false).expect("view");
        let mut b = View::open(store, mb, false, false).expect("view");
        assert!(Arc::ptr_eq(&a.uids, &b.uids));

        append(store, mb);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.sync(store, HOW, &mut out_a);
        b.sync(store, HOW, &mut out_b);
        assert_eq!(out_a, b"* 4 EXISTS\r\n");
        assert_eq!(out_a, out_b);
        assert_eq!(*a.uids, vec![1, 2, 3, 4]);
        assert!(Arc::ptr_eq(&a.uids, &b.uids), "shared after a delivery");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(store.expunge(mb, vec![2])).expect("expunge");
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.sync(store, HOW, &mut out_a);
        b.sync(store, HOW, &mut out_b);
        assert_eq!(out_a, b"* 2 EXPUNGE\r\n");
        assert_eq!(out_a, out_b);
        assert_eq!(*a.uids, vec![1, 3, 4]);
        assert!(Arc::ptr_eq(&a.uids, &b.uids), "shared after an expunge");

        // A view that may not hear of the expunge yet (during FETCH) keeps its own list,
        // then rejoins once it reports it.
        rt.block_on(store.expunge(mb, vec![3])).expect("expunge");
        append(store, mb);
        let mut out = Vec::new();
        a.sync(
            store,
            Reporting {
                allow_expunge: false,
                ..HOW
            },
            &mut out,
        );
        assert_eq!(out, b"* 4 EXISTS\r\n");
        assert_eq!(*a.uids, vec![1, 3, 4, 5]);
        let mut out = Vec::new();
        a.sync(store, HOW, &mut out);
        assert_eq!(out, b"* 2 EXPUNGE\r\n");
        b.sync(store, HOW, &mut Vec::new());
        assert_eq!(*a.uids, vec![1, 4, 5]);
        assert!(Arc::ptr_eq(&a.uids, &b.uids), "rejoined");
        store.shutdown();
    }
}
