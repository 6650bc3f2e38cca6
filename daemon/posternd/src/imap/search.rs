//! SEARCH (RFC 9051 6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and MODSEQ
//! (RFC 7162 3.1.5), and SORT (RFC 5256). Matching and sort keys come from postern-imap.

use std::sync::Arc;

use postern_imap::command::{SearchKey, SearchReturn, SortCriterion};
use postern_imap::search::HeaderSummary;

use super::encode;
use super::session::{Next, Session};

/// A message that matched a search, with what SORT needs of it.
struct Match {
    seq: u32,
    meta: postern_store::MessageMeta,
    /// Its header summary, when the search read it.
    summary: Option<Arc<HeaderSummary>>,
}

impl Match {
    /// (sequence number, UID, MODSEQ), as the responses report it.
    fn numbers(&self) -> (u32, u32, u64) {
        (self.seq, self.meta.uid, self.meta.modseq)
    }
}

/// Every message matching `criteria`, in sequence order.
///
/// Runs on the blocking pool: a body search, or the first header search of a mailbox,
/// reads every message, and the worker's other sessions must not wait for it. Header keys
/// are answered from the shared [`HeaderCache`](super::HeaderCache) once it holds the
/// mailbox.
async fn matching(s: &Session, criteria: &SearchKey) -> Result<Vec<Match>, String> {
    let Some(v) = s.selected.as_ref() else {
        return Err("No mailbox selected".into());
    };
    let store = s.shared.store.clone();
    let cache = s.shared.header_cache.clone();
    let mailbox = v.id;
    let saved_seqs: Vec<u32> = s.saved.iter().filter_map(|&u| v.seq_of(u)).collect();
    let saved_uids = s.saved.clone();
    let exists = v.exists();
    let max_uid = v.max_uid;
    let view_uids = v.uids.clone();
    let recent = v.recent.clone();
    let criteria = criteria.clone();
    let evaluate = move || {
        let metas = store.messages(mailbox);
        let mut summaries = if cache.enabled() && postern_imap::search::uses_summary(&criteria) {
            summaries_of(&store, &cache, mailbox, &metas.iter().collect::<Vec<_>>())
        } else {
            vec![None; metas.len()]
        };
        // Matches take their metadata out of this copy instead of cloning it.
        let mut metas: Vec<Option<postern_store::MessageMeta>> =
            metas.into_iter().map(Some).collect();
        let mut out = Vec::new();
        // The view's UIDs and the store's messages both ascend: walk them together.
        let mut next = 0;
        for (i, &uid) in view_uids.iter().enumerate() {
            while metas
                .get(next)
                .and_then(Option::as_ref)
                .is_some_and(|m| m.uid < uid)
            {
                next += 1;
            }
            let Some(meta) = metas
                .get(next)
                .and_then(Option::as_ref)
                .filter(|m| m.uid == uid)
            else {
                // Expunged by another session, not yet reported to this one.
                continue;
            };
            let seq = i as u32 + 1;
            let ctx = postern_imap::search::MessageContext {
                seq,
                uid,
                flags: &meta.flags,
                recent: recent.contains(&uid),
                modseq: meta.modseq,
                internal_date: meta.internal_date,
                size: meta.size,
                max_seq: exists,
                max_uid,
                saved_seqs: &saved_seqs,
                saved_uids: &saved_uids,
            };
            let summary = summaries.get(next).and_then(|s| s.as_deref());
            let raw = || store.read_message(meta).ok();
            if postern_imap::search::matches(&criteria, &ctx, summary, raw) {
                if let Some(meta) = metas[next].take() {
                    out.push(Match {
                        seq,
                        meta,
                        summary: summaries.get_mut(next).and_then(Option::take),
                    });
                }
            }
            // View UIDs ascend strictly: the next one is past this message.
            next += 1;
        }
        out
    };
    tokio::task::spawn_blocking(evaluate)
        .await
        .map_err(|_| "[SERVERBUG] Search failed".to_string())
}

/// At most this many threads read a cold mailbox's headers.
const FILL_THREADS: usize = 8;
/// Messages per reading thread at least: a small fill is not worth a thread.
const FILL_CHUNK: usize = 2048;

/// The header summary of each of `metas` (None where the message cannot be read), from
/// the cache, reading and caching the ones it lacks. Filling holds the mailbox's fill
/// lock, so concurrent first searches read a cold mailbox once.
fn summaries_of(
    store: &postern_store::Store,
    cache: &super::HeaderCache,
    mailbox: postern_store::MailboxId,
    metas: &[&postern_store::MessageMeta],
) -> Vec<Option<Arc<HeaderSummary>>> {
    let sources: Vec<_> = metas.iter().map(|m| m.source).collect();
    let mut summaries = cache.lookup(&sources);
    if summaries.iter().all(Option::is_some) {
        return summaries;
    }
    let fill = cache.fill_lock(mailbox);
    let _filling = fill.lock();
    // Whoever held the lock before may have read them meanwhile.
    let missing: Vec<usize> = (0..metas.len())
        .filter(|&i| summaries[i].is_none())
        .collect();
    let again = cache.lookup(&missing.iter().map(|&i| sources[i]).collect::<Vec<_>>());
    let mut to_read = Vec::new();
    for (&i, cached) in missing.iter().zip(again) {
        match cached {
            Some(s) => summaries[i] = Some(s),
            None => to_read.push(i),
        }
    }
    // A cold mailbox is read on several threads: on a many-core appliance the first
    // header search of a 100,000-message mailbox takes a fraction of a single-core pass.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(FILL_THREADS)
        .min(to_read.len().div_ceil(FILL_CHUNK))
        .max(1);
    let read_some = |chunk: &[usize]| -> Vec<(usize, Arc<HeaderSummary>)> {
        chunk
            .iter()
            .filter_map(|&i| {
                let raw = store.read_message(metas[i]).ok()?;
                Some((i, Arc::new(HeaderSummary::new(&raw))))
            })
            .collect()
    };
    let done: Vec<(usize, Arc<HeaderSummary>)> = if threads == 1 {
        read_some(&to_read)
    } else {
        let per = to_read.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = to_read
                .chunks(per)
                .map(|chunk| scope.spawn(move || read_some(chunk)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut read = Vec::with_capacity(done.len());
    for (i, s) in done {
        read.push((sources[i], s.clone()));
        summaries[i] = Some(s);
    }
    cache.insert(read);
    summaries
}

fn has_modseq_key(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq { .. } => true,
        SearchKey::And(v) => v.iter().any(has_modseq_key),
        SearchKey::Not(k) => has_modseq_key(k),
        SearchKey::Or(a, b) => has_modseq_key(a) || has_modseq_key(b),
        _ => false,
    }
}

/// Writes the result as `* SEARCH` (or `* SORT`), or as ESEARCH when RETURN was given or
/// the client enabled IMAP4rev2 (RFC 9051 7.3.4).
#[allow(clippy::too_many_arguments)]
fn report(
    s: &mut Session,
    tag: &str,
    uid: bool,
    hits: &[(u32, u32, u64)],
    returns: Option<Vec<SearchReturn>>,
    with_modseq: bool,
    keyword: &str,
    sorted: bool,
) {
    let nums: Vec<u32> = hits.iter().map(|h| if uid { h.1 } else { h.0 }).collect();
    let max_modseq = hits.iter().map(|h| h.2).max();
    let returns = match returns {
        Some(r) if r.is_empty() => Some(vec![SearchReturn::All]),
        Some(r) => Some(r),
        None if s.enabled.rev2 && keyword == "SEARCH" => Some(vec![SearchReturn::All]),
        None => None,
    };
    let Some(returns) = returns else {
        s.out.extend_from_slice(format!("* {keyword}").as_bytes());
        for n in &nums {
            s.out.extend_from_slice(format!(" {n}").as_bytes());
        }
        if with_modseq && !nums.is_empty() {
            if let Some(m) = max_modseq {
                // RFC 7162 3.1.5.
                s.out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
            }
        }
        s.out.extend_from_slice(b"\r\n");
        return;
    };
    if returns.contains(&SearchReturn::Save) {
        // RFC 5182 2.1: the saved result is kept as UIDs, so it survives expunges.
        s.saved = hits.iter().map(|h| h.1).collect();
        s.saved.sort_unstable();
        if returns.len() == 1 {
            return;
        }
    }
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    for r in &returns {
        match r {
            SearchReturn::Min => {
                if let Some(m) = nums.iter().min() {
                    line.push_str(&format!(" MIN {m}"));
                }
            }
            SearchReturn::Max => {
                if let Some(m) = nums.iter().max() {
                    line.push_str(&format!(" MAX {m}"));
                }
            }
            SearchReturn::Count => line.push_str(&format!(" COUNT {}", nums.len())),
            SearchReturn::All => {
                if !nums.is_empty() {
                    if sorted {
                        let list: Vec<String> = nums.iter().map(u32::to_string).collect();
                        line.push_str(&format!(" ALL {}", list.join(",")));
                    } else {
                        let mut sorted_nums = nums.clone();
                        sorted_nums.sort_unstable();
                        line.push_str(&format!(" ALL {}", encode::sequence_set(&sorted_nums)));
                    }
                }
            }
            SearchReturn::Save => {}
        }
    }
    if with_modseq && !nums.is_empty() {
        if let Some(m) = max_modseq {
            line.push_str(&format!(" MODSEQ {m}"));
        }
    }
    line.push_str("\r\n");
    s.out.extend_from_slice(line.as_bytes());
}

pub async fn search(
    s: &mut Session,
    tag: &str,
    uid: bool,
    charset: Option<&str>,
    criteria: &SearchKey,
    returns: Option<Vec<SearchReturn>>,
) -> (&'static str, Next) {
    if let Err(e) = postern_imap::search::check_charset(charset) {
        return s.no(tag, &format!("[{}] {e}", e.code()));
    }
    let with_modseq = has_modseq_key(criteria);
    if with_modseq {
        // RFC 7162 3.1.5: a MODSEQ search key enables CONDSTORE.
        s.enabled.condstore = true;
    }
    let hits: Vec<(u32, u32, u64)> = match matching(s, criteria).await {
        Ok(h) => h.iter().map(Match::numbers).collect(),
        Err(e) => return s.no(tag, &e),
    };
    let nums: Vec<u32> = hits.iter().map(|h| if uid { h.1 } else { h.0 }).collect();
    let modseq = if with_modseq {
        hits.iter().map(|h| h.2).max()
    } else {
        None
    };
    // RFC 9051 7.3.4: IMAP4rev2 clients get ESEARCH.
    let returns = match returns {
        None if s.enabled.rev2 => Some(Vec::new()),
        r => r,
    };
    match returns {
        None => s
            .out
            .extend_from_slice(&postern_imap::search::search_response(&nums, modseq)),
        Some(r) => {
            if r.contains(&SearchReturn::Save) {
                // RFC 5182 2.1: kept as UIDs so that it survives expunges.
                s.saved = hits.iter().map(|h| h.1).collect();
                s.saved.sort_unstable();
            }
            s.out
                .extend_from_slice(&postern_imap::search::esearch_response(
                    tag, uid, &r, &nums, modseq,
                ));
        }
    }
    s.ok(
        tag,
        if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        },
    )
}

pub async fn sort(
    s: &mut Session,
    tag: &str,
    uid: bool,
    criteria: &[SortCriterion],
    search: &SearchKey,
    returns: Option<Vec<SearchReturn>>,
) -> (&'static str, Next) {
    let hits = match matching(s, search).await {
        Ok(h) => h,
        Err(e) => return s.no(tag, &e),
    };
    let Some(v) = s.selected.as_ref() else {
        return s.bad(tag, "No mailbox selected");
    };
    let store = s.shared.store.clone();
    let cache = s.shared.header_cache.clone();
    let mailbox = v.id;
    let criteria = criteria.to_vec();
    // Off the worker, like SEARCH: sort keys come from the header cache, and a cold
    // mailbox is read once.
    let sorted = tokio::task::spawn_blocking(move || {
        // The search read the summaries when its keys needed them; otherwise they come
        // from the cache now, the hits only.
        let summaries: Vec<Option<Arc<HeaderSummary>>> = if hits.iter().all(|h| h.summary.is_some())
        {
            hits.iter().map(|h| h.summary.clone()).collect()
        } else {
            let metas: Vec<_> = hits.iter().map(|h| &h.meta).collect();
            summaries_of(&store, &cache, mailbox, &metas)
        };
        let empty = HeaderSummary::new(b"");
        let mut keyed: Vec<_> = hits
            .iter()
            .zip(&summaries)
            .map(|(h, summary)| {
                let key = postern_imap::search::sort_key(
                    &criteria,
                    summary.as_deref().unwrap_or(&empty),
                    h.meta.internal_date,
                    h.meta.size,
                    h.seq,
                );
                (key, h.numbers())
            })
            .collect();
        keyed.sort_by(|a, b| postern_imap::search::compare(&criteria, &a.0, &b.0));
        keyed.into_iter().map(|(_, h)| h).collect::<Vec<_>>()
    })
    .await;
    let Ok(hits) = sorted else {
        return s.no(tag, "[SERVERBUG] Sort failed");
    };
    report(s, tag, uid, &hits, returns, false, "SORT", true);
    s.ok(
        tag,
        if uid {
            "UID SORT completed"
        } else {
            "SORT completed"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

    /// A cold fill large enough for several reading threads gives every message its own
    /// summary, in order, and caches them all.
    #[test]
    fn cold_fill_on_several_threads_keeps_order() {
        let t = test_store::open();
        let (store, mailbox) = (&t.store, t.inbox);
        let count = FILL_CHUNK * 3 + 5;
        let requests = (0..count)
            .map(|i| {
                let body = format!("Subject: message {i}\r\n\r\nbody\r\n");
                test_store::request(mailbox, body.as_bytes())
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for r in rt.block_on(store.append_all(0, requests)) {
            r.expect("append");
        }
        let metas = store.messages(mailbox);
        assert_eq!(metas.len(), count);
        let fills = Counter::default();
        let cache = super::super::HeaderCache::new(1 << 30, Gauge::default(), fills.clone());
        let refs: Vec<_> = metas.iter().collect();
        let got = summaries_of(store, &cache, mailbox, &refs);
        for (i, s) in got.iter().enumerate() {
            let want = HeaderSummary::new(format!("Subject: message {i}\r\n\r\n").as_bytes());
            assert_eq!(s.as_deref(), Some(&want), "message {i}");
        }
        assert_eq!(fills.get(), count as u64);
        // Cached: a second call reads nothing.
        let again = summaries_of(store, &cache, mailbox, &refs);
        assert_eq!(fills.get(), count as u64);
        assert!(again.iter().zip(&got).all(|(a, b)| a == b));
        store.shutdown();
    }
}
