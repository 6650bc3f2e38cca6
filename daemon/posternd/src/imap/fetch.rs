//! FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED/MODSEQ) and
//! STORE (RFC 9051 6.4.6, RFC 7162 3.1.3 UNCHANGEDSINCE).

use std::collections::HashMap;

use postern_imap::command::{FetchAttr, Flag, Section, SectionText, StoreKind};
use postern_imap::sequence::SequenceSet;
use postern_store::{FlagOp, MessageMeta};

use super::encode;
use super::session::{Next, Session};

/// The `<origin.count>` part of a section (RFC 9051 6.4.5).
fn partial(data: &[u8], p: Option<(u32, u32)>) -> &[u8] {
    match p {
        None => data,
        Some((origin, count)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(count as usize).min(data.len());
            &data[start..end]
        }
    }
}

fn literal(out: &mut Vec<u8>, data: &[u8]) {
    postern_imap::response::literal(out, data);
}

enum Rendered {
    Ok,
    /// RFC 3516 4.3: a content transfer encoding the server cannot decode.
    UnknownCte,
}

/// Appends one message's FETCH data items.
#[allow(clippy::too_many_arguments)]
fn render(
    out: &mut Vec<u8>,
    seq: u32,
    meta: &MessageMeta,
    attrs: &[FetchAttr],
    raw: Option<&[u8]>,
    recent: bool,
    condstore_modseq: bool,
) -> Rendered {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let raw = raw.unwrap_or(&[]);
    // Parsed once for every item that needs the MIME structure.
    let msg = postern_imap::message::Message::parse(raw);
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let mut has_modseq = false;
    for a in attrs {
        sep(out);
        match a {
            FetchAttr::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
            FetchAttr::Flags => {
                out.extend_from_slice(b"FLAGS ");
                encode::flag_list(out, &meta.flags, recent);
            }
            FetchAttr::InternalDate => {
                // internal_date() renders the quoted date-time (RFC 9051 9).
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(
                    postern_imap::datetime::internal_date(meta.internal_date).as_bytes(),
                );
            }
            FetchAttr::Rfc822Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
            }
            FetchAttr::ModSeq => {
                has_modseq = true;
                out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
            }
            FetchAttr::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                out.extend_from_slice(&msg.envelope());
            }
            FetchAttr::Body => {
                out.extend_from_slice(b"BODY ");
                out.extend_from_slice(&msg.body_structure(false));
            }
            FetchAttr::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                out.extend_from_slice(&msg.body_structure(true));
            }
            FetchAttr::Rfc822 => {
                out.extend_from_slice(b"RFC822 ");
                literal(out, raw);
            }
            FetchAttr::Rfc822Header => {
                out.extend_from_slice(b"RFC822.HEADER ");
                let s = Section {
                    part: Vec::new(),
                    text: Some(SectionText::Header),
                };
                literal(out, &msg.section(&s));
            }
            FetchAttr::Rfc822Text => {
                out.extend_from_slice(b"RFC822.TEXT ");
                let s = Section {
                    part: Vec::new(),
                    text: Some(SectionText::Text),
                };
                literal(out, &msg.section(&s));
            }
            FetchAttr::BodySection {
                section,
                partial: p,
                ..
            } => {
                out.extend_from_slice(a.response_name().as_bytes());
                out.push(b' ');
                let data = msg.section(section);
                literal(out, partial(&data, *p));
            }
            FetchAttr::Binary {
                part, partial: p, ..
            } => match msg.binary(part) {
                Ok(data) => {
                    out.extend_from_slice(a.response_name().as_bytes());
                    out.push(b' ');
                    let d = partial(&data, *p);
                    if d.contains(&0) {
                        postern_imap::response::literal8(out, d);
                    } else {
                        literal(out, d);
                    }
                }
                Err(_) => return Rendered::UnknownCte,
            },
            FetchAttr::BinarySize { part } => match msg.binary(part) {
                Ok(data) => {
                    out.extend_from_slice(
                        format!("{} {}", a.response_name(), data.len()).as_bytes(),
                    );
                }
                Err(_) => return Rendered::UnknownCte,
            },
        }
    }
    // RFC 7162 3.1.4.1: with CONDSTORE enabled, FLAGS changes carry MODSEQ.
    if condstore_modseq && !has_modseq {
        out.extend_from_slice(format!(" MODSEQ ({})", meta.modseq).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
    Rendered::Ok
}

pub async fn fetch(
    s: &mut Session,
    tag: &str,
    uid: bool,
    set: &SequenceSet,
    attributes: &[FetchAttr],
    changed_since: Option<u64>,
    vanished: bool,
) -> (&'static str, Next) {
    if s.seq_out_of_range(set, uid) {
        return s.bad(tag, "Invalid message sequence number");
    }
    // RFC 7162 3.2.6: VANISHED only in UID FETCH with CHANGEDSINCE, QRESYNC enabled.
    if vanished && (!uid || changed_since.is_none() || !s.enabled.qresync) {
        return s.bad(tag, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC");
    }
    let mut attrs: Vec<FetchAttr> = Vec::with_capacity(attributes.len() + 2);
    // RFC 9051 6.4.9: UID FETCH always returns UID.
    if uid && !attributes.contains(&FetchAttr::Uid) {
        attrs.push(FetchAttr::Uid);
    }
    attrs.extend_from_slice(attributes);
    let wants_modseq = changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq);
    if wants_modseq {
        // RFC 7162 3.1: CHANGEDSINCE and MODSEQ enable CONDSTORE.
        s.enabled.condstore = true;
        if let Some(v) = s.selected.as_mut() {
            v.condstore = true;
        }
        if !attrs.contains(&FetchAttr::ModSeq) {
            attrs.push(FetchAttr::ModSeq);
        }
    }
    let Some(v) = s.selected.as_ref() else {
        return s.bad(tag, "No mailbox selected");
    };
    let id = v.id;
    let read_only = v.read_only;
    let rev1 = !s.enabled.rev2;
    let targets = s.resolve(set, uid);
    let store = s.shared.store.clone();
    if vanished {
        let max = v.max_uid;
        let set = s.resolve_saved(set, true);
        let gone: Vec<u32> = store
            .vanished_since(id, changed_since.unwrap_or(0))
            .into_iter()
            .filter(|&u| set.contains(u, max.max(u)))
            .collect();
        if !gone.is_empty() {
            s.out.extend_from_slice(
                format!("* VANISHED (EARLIER) {}\r\n", encode::sequence_set(&gone)).as_bytes(),
            );
        }
    }
    // Only the messages asked for are copied out of the index.
    let wanted: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
    let mut metas: HashMap<u32, MessageMeta> = store
        .messages_by_uid(id, &wanted)
        .into_iter()
        .map(|m| (m.uid, m))
        .collect();
    // RFC 9051 6.4.5: BODY[...] without PEEK sets \Seen.
    if !read_only && attrs.iter().any(FetchAttr::sets_seen) {
        let unseen: Vec<u32> = targets
            .iter()
            .filter_map(|(_, u)| metas.get(u))
            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
            .map(|m| m.uid)
            .collect();
        if !unseen.is_empty() {
            match store
                .update_flags(id, &unseen, FlagOp::Add, &["\\Seen".to_string()], None)
                .await
            {
                Ok(outcome) => {
                    for c in outcome.changed {
                        if let Some(m) = metas.get_mut(&c.uid) {
                            m.flags = c.flags;
                            m.modseq = c.modseq;
                        }
                    }
                    if !attrs.contains(&FetchAttr::Flags) {
                        attrs.push(FetchAttr::Flags);
                    }
                }
                Err(e) => {
                    tracing::error!(event = "imap.store_failed", error = %e);
                }
            }
        }
    }
    let needs_body = attrs.iter().any(FetchAttr::needs_body);
    let mut jobs = Vec::with_capacity(targets.len());
    for (seq, u) in targets {
        let Some(meta) = metas.remove(&u) else {
            // Expunged by another session, not yet reported: nothing to send.
            continue;
        };
        if changed_since.is_some_and(|c| meta.modseq <= c) {
            continue;
        }
        let recent = rev1 && s.selected.as_ref().is_some_and(|v| v.recent.contains(&u));
        jobs.push(FetchJob { seq, meta, recent });
    }
    let uid_done = if uid {
        "UID FETCH completed"
    } else {
        "FETCH completed"
    };
    if needs_body {
        // Reading and rendering bodies is disk and CPU work of any size: it runs on the
        // blocking pool, not the worker, and goes to the client in chunks as it is made,
        // so FETCH 1:* BODY[] of a large mailbox holds a few chunks, not the mailbox.
        let (tx, chunks) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
        let done = tokio::task::spawn_blocking(move || render_all(&store, &jobs, &attrs, &tx));
        let stream = FetchStream {
            chunks,
            done,
            tag: tag.to_string(),
            ok_text: uid_done,
            uid,
        };
        return ("OK", Next::Stream(Box::new(stream)));
    }
    // Flags, dates, sizes, MODSEQ: from the index, rendered here.
    let mut outcome = FetchOutcome {
        tag: tag.to_string(),
        ok_text: uid_done,
        uid,
        ..FetchOutcome::default()
    };
    for job in &jobs {
        let mark = s.out.len();
        render_one(&mut s.out, job, &attrs, None, &mut outcome, mark);
    }
    (finish(s, outcome).0, Next::Continue)
}

/// Bytes of rendered FETCH responses per chunk sent to the connection.
const STREAM_CHUNK: usize = 256 * 1024;
/// Chunks rendered ahead of the connection.
const STREAM_CHUNKS_IN_FLIGHT: usize = 2;

/// One message of a FETCH.
struct FetchJob {
    seq: u32,
    meta: MessageMeta,
    recent: bool,
}

/// A FETCH whose responses are being rendered off the worker ([`Next::Stream`]).
pub struct FetchStream {
    /// Rendered responses, in order; closed when the reader is done.
    pub chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// The reader's outcome.
    pub done: tokio::task::JoinHandle<FetchOutcome>,
    pub tag: String,
    ok_text: &'static str,
    uid: bool,
}

impl FetchStream {
    /// The outcome once the chunks are sent; a reader that died counts as failed.
    pub async fn outcome(self) -> FetchOutcome {
        let (tag, ok_text, uid) = (self.tag, self.ok_text, self.uid);
        let mut outcome = self.done.await.unwrap_or_else(|_| FetchOutcome {
            failed: true,
            ..FetchOutcome::default()
        });
        outcome.tag = tag;
        outcome.ok_text = ok_text;
        outcome.uid = uid;
        outcome
    }
}

/// What a FETCH found, for its tagged reply.
#[derive(Default)]
pub struct FetchOutcome {
    /// (UID, MODSEQ) reported, so a later sync does not report them again.
    known: Vec<(u32, u64)>,
    /// RFC 3516 4.3: a content transfer encoding the server cannot decode.
    unknown_cte: bool,
    /// A message could not be read.
    failed: bool,
    tag: String,
    ok_text: &'static str,
    uid: bool,
}

/// Renders one message's response into `out` (raw: its bytes, when needed).
fn render_one(
    out: &mut Vec<u8>,
    job: &FetchJob,
    attrs: &[FetchAttr],
    raw: Option<&[u8]>,
    outcome: &mut FetchOutcome,
    mark: usize,
) {
    if let Rendered::UnknownCte = render(out, job.seq, &job.meta, attrs, raw, job.recent, false) {
        out.truncate(mark);
        outcome.unknown_cte = true;
    }
    outcome.known.push((job.meta.uid, job.meta.modseq));
}

/// The blocking half of a streamed FETCH: reads and renders every message, sending
/// chunks of at least [`STREAM_CHUNK`] bytes. Stops early when the connection is gone.
fn render_all(
    store: &postern_store::Store,
    jobs: &[FetchJob],
    attrs: &[FetchAttr],
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> FetchOutcome {
    let mut outcome = FetchOutcome::default();
    let mut buf = Vec::new();
    for job in jobs {
        let raw = match store.read_message(&job.meta) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(event = "imap.read_failed", uid = job.meta.uid, error = %e);
                outcome.failed = true;
                continue;
            }
        };
        let mark = buf.len();
        render_one(&mut buf, job, attrs, Some(&raw), &mut outcome, mark);
        if buf.len() >= STREAM_CHUNK && tx.blocking_send(std::mem::take(&mut buf)).is_err() {
            return outcome;
        }
    }
    if !buf.is_empty() {
        let _ = tx.blocking_send(buf);
    }
    outcome
}

/// Records what a FETCH reported and writes its tagged reply; returns the status and
/// whether EXPUNGE may follow (UID FETCH only, RFC 9051 7.5.1).
pub fn finish(s: &mut Session, outcome: FetchOutcome) -> (&'static str, bool) {
    if let Some(v) = s.selected.as_mut() {
        v.known.extend(outcome.known);
    }
    let tag = outcome.tag;
    let status = if outcome.unknown_cte {
        s.no(
            &tag,
            "[UNKNOWN-CTE] Cannot decode a part's transfer encoding",
        )
    } else if outcome.failed {
        s.no(&tag, "[SERVERBUG] Some messages could not be read")
    } else {
        s.ok(&tag, outcome.ok_text)
    };
    (status.0, outcome.uid)
}

#[allow(clippy::too_many_arguments)]
pub async fn store(
    s: &mut Session,
    tag: &str,
    uid: bool,
    set: &SequenceSet,
    kind: StoreKind,
    silent: bool,
    flags: &[Flag],
    unchanged_since: Option<u64>,
) -> (&'static str, Next) {
    if s.seq_out_of_range(set, uid) {
        return s.bad(tag, "Invalid message sequence number");
    }
    let Some(v) = s.selected.as_ref() else {
        return s.bad(tag, "No mailbox selected");
    };
    if v.read_only {
        return s.no(tag, "[READ-ONLY] Mailbox is read-only");
    }
    if unchanged_since.is_some() {
        s.enabled.condstore = true;
        if let Some(v) = s.selected.as_mut() {
            v.condstore = true;
        }
    }
    let Some(v) = s.selected.as_ref() else {
        return s.bad(tag, "No mailbox selected");
    };
    let id = v.id;
    let condstore = v.condstore;
    let targets = s.resolve(set, uid);
    let seq_of: HashMap<u32, u32> = targets.iter().map(|&(q, u)| (u, q)).collect();
    let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
    let op = match kind {
        StoreKind::Replace => FlagOp::Replace,
        StoreKind::Add => FlagOp::Add,
        StoreKind::Remove => FlagOp::Remove,
    };
    let flags: Vec<String> = flags
        .iter()
        .map(Flag::as_str)
        .filter(|f| *f != "\\Recent")
        .map(str::to_string)
        .collect();
    let outcome = match s
        .shared
        .store
        .update_flags(id, &uids, op, &flags, unchanged_since)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(event = "imap.store_failed", error = %e);
            return s.no(tag, "[SERVERBUG] Storage error, try again later");
        }
    };
    let rev1 = !s.enabled.rev2;
    let mut states: Vec<_> = outcome
        .changed
        .iter()
        .chain(outcome.unchanged.iter())
        .collect();
    states.sort_by_key(|st| st.uid);
    for st in states {
        let Some(&seq) = seq_of.get(&st.uid) else {
            continue;
        };
        let recent = rev1
            && s.selected
                .as_ref()
                .is_some_and(|v| v.recent.contains(&st.uid));
        if let Some(v) = s.selected.as_mut() {
            v.known.insert(st.uid, st.modseq);
        }
        // RFC 7162 3.1.3: with UNCHANGEDSINCE, changed messages are reported even when
        // .SILENT (with their new MODSEQ).
        if silent && unchanged_since.is_none() {
            continue;
        }
        let o = &mut s.out;
        o.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        if uid {
            o.extend_from_slice(format!("UID {} ", st.uid).as_bytes());
        }
        if silent {
            o.extend_from_slice(format!("MODSEQ ({}))\r\n", st.modseq).as_bytes());
            continue;
        }
        o.extend_from_slice(b"FLAGS ");
        encode::flag_list(o, &st.flags, recent);
        if condstore {
            o.extend_from_slice(format!(" MODSEQ ({})", st.modseq).as_bytes());
        }
        o.extend_from_slice(b")\r\n");
    }
    if !outcome.modified.is_empty() {
        let mut nums: Vec<u32> = if uid {
            outcome.modified.clone()
        } else {
            outcome
                .modified
                .iter()
                .filter_map(|u| seq_of.get(u).copied())
                .collect()
        };
        nums.sort_unstable();
        return s.ok(
            tag,
            &format!(
                "[MODIFIED {}] Conditional STORE failed for some messages",
                encode::sequence_set(&nums)
            ),
        );
    }
    s.ok(
        tag,
        if uid {
            "UID STORE completed"
        } else {
            "STORE completed"
        },
    )
}
