//! The header fields SEARCH reads, cached per message ([`HeaderSummary`]): after the first
//! header search of a mailbox, SUBJECT/FROM/TO/CC/BCC/SENT* searches read no mail. Dovecot
//! keeps the same fields in its index cache; without them a SUBJECT search of a
//! 100,000-message mailbox reads and parses 100,000 messages every time.
//!
//! Entries are keyed by the delivery whose bytes they were read from (`MessageMeta::source`):
//! message bytes never change, so an entry is never stale, and a COPY shares its original's
//! entry. Memory is bounded by `[imap] search_cache_mb`; when full, the mailboxes searched
//! least recently are dropped whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use postern_imap::search::HeaderSummary;
use postern_store::MailboxId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Heap bytes an entry costs beyond its text: the map slot, the Arc and the summary.
const ENTRY_OVERHEAD: usize = 96;

pub struct HeaderCache {
    budget: usize,
    /// `postern_imap_search_cache_bytes` and `_fills`.
    bytes_gauge: Gauge,
    fills: Counter,
    inner: Mutex<Inner>,
    /// One lock per searched mailbox, held while filling its misses, so that concurrent
    /// first searches of a cold mailbox read it once, not once each.
    fill_locks: Mutex<HashMap<MailboxId, Arc<Mutex<()>>>>,
}

#[derive(Default)]
struct Inner {
    /// By the mailbox the bytes were delivered to, then by UID there.
    mailboxes: HashMap<MailboxId, Entries>,
    bytes: usize,
    clock: u64,
}

#[derive(Default)]
struct Entries {
    by_uid: HashMap<u32, Arc<HeaderSummary>>,
    bytes: usize,
    last_used: u64,
}

impl HeaderCache {
    pub fn new(budget_bytes: usize, bytes_gauge: Gauge, fills: Counter) -> HeaderCache {
        HeaderCache {
            budget: budget_bytes,
            bytes_gauge,
            fills,
            inner: Mutex::new(Inner::default()),
            fill_locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    fn inner(&self) -> Option<MutexGuard<'_, Inner>> {
        self.inner.lock().ok()
    }

    /// The cached summaries of `sources`, in order (None: not cached).
    pub fn lookup(&self, sources: &[(MailboxId, u32)]) -> Vec<Option<Arc<HeaderSummary>>> {
        let Some(mut inner) = self.inner() else {
            return vec![None; sources.len()];
        };
        inner.clock += 1;
        let now = inner.clock;
        let mut out = Vec::with_capacity(sources.len());
        let mut current: Option<MailboxId> = None;
        for &(mailbox, uid) in sources {
            let Some(entries) = inner.mailboxes.get_mut(&mailbox) else {
                out.push(None);
                continue;
            };
            if current != Some(mailbox) {
                entries.last_used = now;
                current = Some(mailbox);
            }
            out.push(entries.by_uid.get(&uid).cloned());
        }
        out
    }

    /// Adds summaries read by a search. Beyond the budget, the least recently searched
    /// other mailboxes are dropped; a mailbox larger than the whole budget is cached only
    /// in part.
    pub fn insert(&self, items: Vec<((MailboxId, u32), Arc<HeaderSummary>)>) {
        self.fills.inc_by(items.len() as u64);
        if !self.enabled() || items.is_empty() {
            return;
        }
        let Some(mut inner) = self.inner() else {
            return;
        };
        inner.clock += 1;
        let now = inner.clock;
        for ((mailbox, uid), summary) in items {
            let cost = summary.heap_size() + ENTRY_OVERHEAD;
            if inner.bytes + cost > self.budget && !inner.evict_one_except(mailbox) {
                // Only this mailbox is left and it fills the budget.
                break;
            }
            let entries = inner.mailboxes.entry(mailbox).or_default();
            entries.last_used = now;
            if entries.by_uid.insert(uid, summary).is_none() {
                entries.bytes += cost;
                inner.bytes += cost;
            }
        }
        self.bytes_gauge
            .set(i64::try_from(inner.bytes).unwrap_or(i64::MAX));
    }

    /// The fill lock of a searched mailbox.
    pub fn fill_lock(&self, mailbox: MailboxId) -> Arc<Mutex<()>> {
        match self.fill_locks.lock() {
            Ok(mut locks) => locks.entry(mailbox).or_default().clone(),
            Err(_) => Arc::new(Mutex::new(())),
        }
    }

    /// Bytes accounted to cached entries.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner().map(|i| i.bytes).unwrap_or(0)
    }
}

impl Inner {
    /// Drops the least recently used mailbox other than `keep`; false when there is none.
    fn evict_one_except(&mut self, keep: MailboxId) -> bool {
        let victim = self
            .mailboxes
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| *id);
        let Some(victim) = victim else {
            return false;
        };
        if let Some(e) = self.mailboxes.remove(&victim) {
            self.bytes -= e.bytes;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(budget: usize) -> HeaderCache {
        HeaderCache::new(budget, Gauge::default(), Counter::default())
    }

    fn summary(subject: &str) -> Arc<HeaderSummary> {
        Arc::new(HeaderSummary::new(
            format!("Subject: {subject}\r\n\r\nbody\r\n").as_bytes(),
        ))
    }

    #[test]
    fn lookup_finds_what_was_inserted() {
        let c = cache(1 << 20);
        let (a, b) = (MailboxId(1), MailboxId(2));
        c.insert(vec![((a, 1), summary("one")), ((b, 7), summary("seven"))]);
        let got = c.lookup(&[(a, 1), (a, 2), (b, 7), (b, 1)]);
        assert_eq!(got[0].as_deref(), Some(&*summary("one")));
        assert!(got[1].is_none());
        assert_eq!(got[2].as_deref(), Some(&*summary("seven")));
        assert!(got[3].is_none());
    }

    #[test]
    fn budget_drops_least_recently_searched_mailbox() {
        let one = summary("x").heap_size() + ENTRY_OVERHEAD;
        let c = cache(one * 4);
        let (a, b, d) = (MailboxId(1), MailboxId(2), MailboxId(3));
        c.insert(vec![((a, 1), summary("x")), ((a, 2), summary("x"))]);
        c.insert(vec![((b, 1), summary("x")), ((b, 2), summary("x"))]);
        // a is used again, so b is the oldest when d needs room.
        assert!(c.lookup(&[(a, 1)])[0].is_some());
        c.insert(vec![((d, 1), summary("x"))]);
        assert!(c.lookup(&[(b, 1)])[0].is_none(), "b evicted");
        assert!(c.lookup(&[(a, 2)])[0].is_some(), "a kept");
        assert!(c.lookup(&[(d, 1)])[0].is_some());
        assert!(c.bytes() <= one * 4);
        assert_eq!(c.bytes_gauge.get(), c.bytes() as i64);
        assert_eq!(c.fills.get(), 5);
    }

    #[test]
    fn one_mailbox_larger_than_the_budget_is_cached_in_part() {
        let one = summary("x").heap_size() + ENTRY_OVERHEAD;
        let c = cache(one * 3);
        let a = MailboxId(1);
        c.insert((1..=10).map(|u| ((a, u), summary("x"))).collect());
        let hits = c
            .lookup(&(1..=10).map(|u| (a, u)).collect::<Vec<_>>())
            .iter()
            .filter(|s| s.is_some())
            .count();
        assert_eq!(hits, 3);
        assert_eq!(c.bytes(), one * 3);
    }

    #[test]
    fn zero_budget_caches_nothing() {
        let c = cache(0);
        assert!(!c.enabled());
        c.insert(vec![((MailboxId(1), 1), summary("x"))]);
        assert!(c.lookup(&[(MailboxId(1), 1)])[0].is_none());
    }
}
