//! The selected mailbox as one session sees it: sequence numbers mapped to UIDs, the flags
//! and MODSEQ last reported, and the untagged updates that bring the client up to date with
//! other sessions' changes (RFC 9051 7.5.1, RFC 7162 3.2.10).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

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
    pub uids: Vec<u32>,
    /// Messages expunged by others and not yet reported to this client.
    pub gone: HashSet<u32>,
    /// MODSEQ of each message as last reported (or as of SELECT).
    pub known: HashMap<u32, u64>,
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
        let metas = store.messages(id);
        let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
        let recent = claim_recent(id, &uids, !read_only).into_iter().collect();
        Some(View {
            id,
            name: info.name,
            read_only,
            max_uid: uids.last().copied().unwrap_or(0),
            known: metas.iter().map(|m| (m.uid, m.modseq)).collect(),
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
        if store.mailbox(self.id).is_none() {
            // Deleted by another session: every message is gone.
            self.deleted = true;
        }
        let metas: Vec<MessageMeta> = if self.deleted {
            Vec::new()
        } else {
            store.messages(self.id)
        };
        let current: HashMap<u32, &MessageMeta> = metas.iter().map(|m| (m.uid, m)).collect();
        for &uid in &self.uids {
            if !current.contains_key(&uid) {
                self.gone.insert(uid);
            }
        }
        if how.allow_expunge && !self.gone.is_empty() {
            self.report_expunged(how.qresync, out);
        }
        // New messages: UIDs only grow (RFC 9051 2.3.1.1).
        let new: Vec<u32> = metas
            .iter()
            .map(|m| m.uid)
            .filter(|&u| u > self.max_uid)
            .collect();
        if !new.is_empty() {
            for m in metas.iter().filter(|m| m.uid > self.max_uid) {
                self.known.insert(m.uid, m.modseq);
            }
            self.max_uid = *new.last().unwrap_or(&self.max_uid);
            let claimed = claim_recent(self.id, &new, !self.read_only);
            self.uids.extend_from_slice(&new);
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
            if how.rev1 {
                self.recent.extend(claimed);
                out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
            }
        }
        // Flag changes by others (RFC 9051 7.5.2 FETCH, with MODSEQ under CONDSTORE).
        for (i, &uid) in self.uids.iter().enumerate() {
            let Some(m) = current.get(&uid) else { continue };
            let known = self.known.get(&uid).copied().unwrap_or(0);
            if m.modseq > known {
                self.known.insert(uid, m.modseq);
                out.extend_from_slice(format!("* {} FETCH (UID {uid} FLAGS ", i + 1).as_bytes());
                encode::flag_list(out, &m.flags, how.rev1 && self.recent.contains(&uid));
                if self.condstore {
                    out.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
        }
    }

    /// Reports and forgets the messages in `gone` (EXPUNGE in descending sequence order, so
    /// each number is right as sent, or one VANISHED).
    pub fn report_expunged(&mut self, qresync: bool, out: &mut Vec<u8>) {
        if self.gone.is_empty() {
            return;
        }
        if qresync {
            let mut v: Vec<u32> = self.gone.iter().copied().collect();
            v.sort_unstable();
            out.extend_from_slice(
                format!("* VANISHED {}\r\n", encode::sequence_set(&v)).as_bytes(),
            );
            self.uids.retain(|u| !self.gone.contains(u));
        } else {
            for i in (0..self.uids.len()).rev() {
                if self.gone.contains(&self.uids[i]) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    self.uids.remove(i);
                }
            }
        }
        for u in self.gone.drain() {
            self.known.remove(&u);
            self.recent.remove(&u);
        }
    }
}
