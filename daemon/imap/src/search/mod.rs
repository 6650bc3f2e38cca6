//! SEARCH evaluation (RFC 9051 6.4.4, RFC 3501 6.4.4 for RECENT/NEW/OLD, RFC 7162 3.1.5
//! MODSEQ, RFC 5032 OLDER/YOUNGER, RFC 5182 "$"), result encoding (`* SEARCH`, RFC 4731
//! ESEARCH) and SORT keys (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO).
//!
//! String keys match case-insensitively as substrings of the decoded text: header values with
//! RFC 2047 words decoded, bodies with their Content-Transfer-Encoding and charset removed
//! (mail-parser does both). The message bytes are loaded only when a key needs them.

mod sort;

pub use sort::{base_subject, compare, sort_key, SortValue, SortValues};

use std::cell::OnceCell;

use crate::command::{SearchKey, SearchReturn};
use crate::datetime::Date;
use crate::message::header_fields;
use crate::sequence::SequenceSet;

/// CHARSET other than UTF-8 / US-ASCII: answer `NO [BADCHARSET (UTF-8 US-ASCII)]`
/// (RFC 9051 6.4.4, 7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported charset {0}")]
pub struct BadCharset(pub String);

impl BadCharset {
    /// The response code text, `BADCHARSET (UTF-8 US-ASCII)`.
    pub fn code(&self) -> &'static str {
        "BADCHARSET (UTF-8 US-ASCII)"
    }
}

/// Accepts no CHARSET, UTF-8 and US-ASCII (RFC 9051 6.4.4: UTF-8 is required; US-ASCII is
/// its subset).
pub fn check_charset(charset: Option<&str>) -> Result<(), BadCharset> {
    match charset {
        None => Ok(()),
        Some(c) if c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("US-ASCII") => Ok(()),
        Some(c) => Err(BadCharset(c.to_string())),
    }
}

/// What the server knows about one message without reading it.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: &'a [String],
    /// \Recent (IMAP4rev1 sessions only).
    pub recent: bool,
    pub modseq: u64,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// The largest sequence number (EXISTS): "*" in sequence sets.
    pub max_seq: u32,
    /// The largest UID in the mailbox: "*" in UID sets.
    pub max_uid: u32,
    /// The saved result of SEARCH RETURN (SAVE) as sequence numbers and as UIDs (RFC 5182).
    pub saved_seqs: &'a [u32],
    pub saved_uids: &'a [u32],
}

/// Decoded text of a message, made on first use: the header when the message is loaded,
/// the body only when a BODY or TEXT key needs it.
struct Content {
    raw: Vec<u8>,
    /// (lower-cased field name, lower-cased decoded value).
    headers: Vec<(String, String)>,
    /// All header fields decoded and lower-cased, for TEXT.
    header_text: String,
    /// The Date: field's calendar date in its own zone (SENT* keys).
    sent: Option<Date>,
    /// (text of the text parts, header fields of encapsulated messages), lower-cased.
    body: OnceCell<(String, String)>,
}

/// RFC 2047 decoding and unfolding of one header value.
pub(crate) fn decode_header_value(value: &[u8]) -> String {
    let mut v = value.to_vec();
    v.extend_from_slice(b"\r\n");
    match mail_parser::parsers::MessageStream::new(&v).parse_unstructured() {
        mail_parser::HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

impl Content {
    fn new(raw: Vec<u8>) -> Content {
        let split = header_end(&raw);
        let mut headers = Vec::new();
        let mut header_text = String::new();
        for f in header_fields(&raw[..split]) {
            let name = String::from_utf8_lossy(f.name).to_ascii_lowercase();
            let value = decode_header_value(f.value).to_lowercase();
            header_text.push_str(&name);
            header_text.push_str(": ");
            header_text.push_str(&value);
            header_text.push('\n');
            headers.push((name, value));
        }
        let sent = sent_date_of(&raw);
        Content {
            raw,
            headers,
            header_text,
            sent,
            body: OnceCell::new(),
        }
    }

    fn body(&self) -> &(String, String) {
        self.body.get_or_init(|| {
            let (body, nested) = crate::message::Message::parse(&self.raw).search_text();
            (body.to_lowercase(), nested.to_lowercase())
        })
    }

    fn header_contains(&self, name: &str, needle: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .any(|(n, v)| *n == name && v.contains(needle))
    }
}

/// The header fields SEARCH keys name most (SUBJECT, FROM, TO, CC, BCC and the SENT* keys'
/// Date:), decoded and lower-cased as [`Content`] decodes them, and the SORT keys of
/// RFC 5256 / RFC 5957: small enough to keep for every message of a large mailbox. A server
/// caches one per message so that header searches and SORT read no message bytes (Dovecot
/// keeps the same fields in its index cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSummary {
    /// The search fields' values in [`SUMMARY_FIELDS`] order, one after another (several
    /// fields of one name joined by NUL, which no search string holds: it has no NUL, or
    /// the message is read instead), then the [`SortField`]s.
    text: Box<str>,
    /// Where each value ends in `text`.
    ends: [u32; SUMMARY_FIELDS.len() + SORT_FIELDS],
    /// Bit i: the message has field i at all (an empty search string matches any message
    /// that has the field, RFC 9051 6.4.4).
    present: u8,
    /// The Date: field's calendar date in its own zone (SENT* keys).
    sent: Option<Date>,
    /// The Date: field in UTC seconds (SORT DATE); None when missing or unparsable.
    sent_time: Option<i64>,
}

/// The header fields a [`HeaderSummary`] holds for SEARCH, lower-case.
pub const SUMMARY_FIELDS: [&str; 5] = ["subject", "from", "to", "cc", "bcc"];

/// The SORT values a [`HeaderSummary`] holds, each already lower-cased.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SortField {
    /// RFC 5256 2.1 base subject.
    BaseSubject,
    /// RFC 5256 3: addr-mailbox of the first address.
    FromMailbox,
    ToMailbox,
    CcMailbox,
    /// RFC 5957 3: display name, or addr-spec, of the first address.
    DisplayFrom,
    DisplayTo,
}

const SORT_FIELDS: usize = 6;

impl HeaderSummary {
    /// Reads the fields from a message (the header is enough).
    pub fn new(raw: &[u8]) -> HeaderSummary {
        let split = header_end(raw);
        let fields = header_fields(&raw[..split]);
        let mut values: [String; SUMMARY_FIELDS.len()] = Default::default();
        let mut present = 0u8;
        for f in &fields {
            let Some(i) = SUMMARY_FIELDS
                .iter()
                .position(|n| f.name.eq_ignore_ascii_case(n.as_bytes()))
            else {
                continue;
            };
            if present & (1 << i) != 0 {
                values[i].push('\0');
            }
            present |= 1 << i;
            values[i].push_str(&decode_header_value(f.value).to_lowercase());
        }
        let sort_values = sort::sort_fields(&fields);
        let mut text =
            String::with_capacity(values.iter().chain(&sort_values).map(String::len).sum());
        let mut ends = [0u32; SUMMARY_FIELDS.len() + SORT_FIELDS];
        for (i, v) in values.iter().chain(&sort_values).enumerate() {
            text.push_str(v);
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        let date = crate::message::parse_mime_headers(raw).and_then(|m| m.date().cloned());
        HeaderSummary {
            text: text.into_boxed_str(),
            ends,
            present,
            sent: date
                .as_ref()
                .and_then(|d| Date::new(d.year, d.month, d.day)),
            sent_time: date.map(|d| d.to_timestamp()),
        }
    }

    /// Value `i` of `text`.
    fn value(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }

    /// Whether a field `name` of the message contains `needle` (lower-case); None when the
    /// summary cannot tell (a field it does not hold, or a needle with NUL).
    fn field_contains(&self, name: &str, needle: &str) -> Option<bool> {
        let i = SUMMARY_FIELDS
            .iter()
            .position(|n| name.eq_ignore_ascii_case(n))?;
        if needle.contains('\0') {
            return None;
        }
        if self.present & (1 << i) == 0 {
            return Some(false);
        }
        Some(self.value(i).contains(needle))
    }

    pub(crate) fn sort_field(&self, f: SortField) -> &str {
        self.value(SUMMARY_FIELDS.len() + f as usize)
    }

    pub(crate) fn sent_time(&self) -> Option<i64> {
        self.sent_time
    }

    /// Heap bytes held, for a cache's memory bound.
    pub fn heap_size(&self) -> usize {
        self.text.len()
    }
}

/// The Date: field's calendar date in its own zone (SENT* keys).
fn sent_date_of(raw: &[u8]) -> Option<Date> {
    crate::message::parse_mime_headers(raw)
        .and_then(|m| m.date().and_then(|d| Date::new(d.year, d.month, d.day)))
}

fn header_end(raw: &[u8]) -> usize {
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(raw, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => raw.len(),
    }
}

struct Eval<'a, F: FnOnce() -> Option<Vec<u8>>> {
    ctx: &'a MessageContext<'a>,
    summary: Option<&'a HeaderSummary>,
    loader: Option<F>,
    content: OnceCell<Option<Content>>,
    now: i64,
}

impl<F: FnOnce() -> Option<Vec<u8>>> Eval<'_, F> {
    fn content(&mut self) -> Option<&Content> {
        if self.content.get().is_none() {
            let c = self.loader.take().and_then(|f| f()).map(Content::new);
            let _ = self.content.set(c);
        }
        self.content.get().and_then(|c| c.as_ref())
    }

    fn has_flag(&self, f: &str) -> bool {
        self.ctx.flags.iter().any(|x| x.eq_ignore_ascii_case(f))
    }

    fn internal_date(&self) -> Date {
        Date::from_unix(self.ctx.internal_date, 0)
    }

    fn sent_date(&mut self) -> Date {
        // RFC 9051 6.4.4: the Date: header, disregarding time and timezone. Without a usable
        // Date: the message counts as sent on 1-Jan-1970, as in Dovecot (SORT, RFC 5256 3,
        // uses the internal date instead).
        let epoch = Date::from_unix(0, 0);
        if let Some(s) = self.summary {
            return s.sent.unwrap_or(epoch);
        }
        self.content().and_then(|c| c.sent).unwrap_or(epoch)
    }

    fn text_key(&mut self, header: Option<&str>, needle: &str, body: bool) -> bool {
        let needle = needle.to_lowercase();
        if let (Some(h), Some(s)) = (header, self.summary) {
            if let Some(found) = s.field_contains(h, &needle) {
                return found;
            }
        }
        let Some(c) = self.content() else {
            return false;
        };
        match header {
            Some(h) => c.header_contains(h, &needle),
            None if body => c.body().0.contains(&needle),
            // TEXT: header and body (RFC 9051 6.4.4).
            None => {
                c.header_text.contains(&needle)
                    || c.body().1.contains(&needle)
                    || c.body().0.contains(&needle)
            }
        }
    }

    fn eval(&mut self, key: &SearchKey, depth: usize) -> bool {
        use SearchKey as K;
        // The parser bounds nesting; this guards programs built in code.
        if depth > 256 {
            return false;
        }
        let ctx = self.ctx;
        match key {
            K::And(keys) => keys.iter().all(|k| self.eval(k, depth + 1)),
            K::All => true,
            K::Answered => self.has_flag("\\Answered"),
            K::Deleted => self.has_flag("\\Deleted"),
            K::Draft => self.has_flag("\\Draft"),
            K::Flagged => self.has_flag("\\Flagged"),
            K::Seen => self.has_flag("\\Seen"),
            K::Unanswered => !self.has_flag("\\Answered"),
            K::Undeleted => !self.has_flag("\\Deleted"),
            K::Undraft => !self.has_flag("\\Draft"),
            K::Unflagged => !self.has_flag("\\Flagged"),
            K::Unseen => !self.has_flag("\\Seen"),
            K::Keyword(k) => self.has_flag(k),
            K::Unkeyword(k) => !self.has_flag(k),
            K::Recent => ctx.recent,
            K::New => ctx.recent && !self.has_flag("\\Seen"),
            K::Old => !ctx.recent,
            K::Larger(n) => ctx.size > *n,
            K::Smaller(n) => ctx.size < *n,
            K::Before(d) => self.internal_date() < *d,
            K::On(d) => self.internal_date() == *d,
            K::Since(d) => self.internal_date() >= *d,
            K::SentBefore(d) => self.sent_date() < *d,
            K::SentOn(d) => self.sent_date() == *d,
            K::SentSince(d) => self.sent_date() >= *d,
            K::Older(secs) => ctx.internal_date <= self.now - i64::from(*secs),
            K::Younger(secs) => ctx.internal_date > self.now - i64::from(*secs),
            K::Bcc(s) => self.text_key(Some("bcc"), s, false),
            K::Cc(s) => self.text_key(Some("cc"), s, false),
            K::From(s) => self.text_key(Some("from"), s, false),
            K::To(s) => self.text_key(Some("to"), s, false),
            K::Subject(s) => self.text_key(Some("subject"), s, false),
            K::Header(name, s) => self.text_key(Some(name), s, false),
            K::Body(s) => self.text_key(None, s, true),
            K::Text(s) => self.text_key(None, s, false),
            K::Not(k) => !self.eval(k, depth + 1),
            K::Or(a, b) => self.eval(a, depth + 1) || self.eval(b, depth + 1),
            K::Uid(set) => match set {
                SequenceSet::Saved => ctx.saved_uids.contains(&ctx.uid),
                s => s.contains(ctx.uid, ctx.max_uid),
            },
            K::SequenceSet(set) => match set {
                SequenceSet::Saved => ctx.saved_seqs.contains(&ctx.seq),
                s => s.contains(ctx.seq, ctx.max_seq),
            },
            // RFC 7162 3.1.5: mod-sequence equal to or greater than the value.
            K::ModSeq { modseq, .. } => ctx.modseq >= *modseq,
        }
    }
}

/// Whether a program reads header fields a [`HeaderSummary`] holds: a server with summaries
/// cached passes one to [`matches`] and the message is not read for them.
pub fn uses_summary(key: &SearchKey) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.iter().any(uses_summary),
        K::Not(k) => uses_summary(k),
        K::Or(a, b) => uses_summary(a) || uses_summary(b),
        K::Bcc(_) | K::Cc(_) | K::From(_) | K::To(_) | K::Subject(_) => true,
        K::SentBefore(_) | K::SentOn(_) | K::SentSince(_) => true,
        K::Header(name, _) => SUMMARY_FIELDS.iter().any(|n| name.eq_ignore_ascii_case(n)),
        _ => false,
    }
}

/// Whether the message matches `key`. `summary`, when given, answers the keys on the fields
/// it holds; `raw` loads the message bytes for the others: it runs at most once, and only
/// if a key needs the header or body.
pub fn matches(
    key: &SearchKey,
    ctx: &MessageContext<'_>,
    summary: Option<&HeaderSummary>,
    raw: impl FnOnce() -> Option<Vec<u8>>,
) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut e = Eval {
        ctx,
        summary,
        loader: Some(raw),
        content: OnceCell::new(),
        now,
    };
    e.eval(key, 0)
}

/// `* SEARCH n n n [(MODSEQ m)]\r\n` (RFC 9051 7.3.4 for IMAP4rev1 clients, RFC 7162 3.1.5).
/// MODSEQ is left out when nothing matched.
pub fn search_response(results: &[u32], modseq: Option<u64>) -> Vec<u8> {
    let mut out = b"* SEARCH".to_vec();
    for n in results {
        out.push(b' ');
        out.extend_from_slice(n.to_string().as_bytes());
    }
    if let (Some(m), false) = (modseq, results.is_empty()) {
        out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [ALL set] [COUNT n] [MODSEQ m]\r\n`
/// (RFC 4731 3.1, RFC 9051 7.3.4). `results` ascending. An empty `returns` means ALL; MIN,
/// MAX and ALL are left out when nothing matched; SAVE alone gives no response (RFC 5182
/// 2.4: the result is empty).
pub fn esearch_response(
    tag: &str,
    uid: bool,
    returns: &[SearchReturn],
    results: &[u32],
    modseq: Option<u64>,
) -> Vec<u8> {
    let only_save = !returns.is_empty() && returns.iter().all(|r| *r == SearchReturn::Save);
    if only_save {
        return Vec::new();
    }
    let want = |r: SearchReturn| returns.is_empty() || returns.contains(&r);
    let mut out = b"* ESEARCH (TAG ".to_vec();
    crate::response::quoted_or_literal(&mut out, tag.as_bytes());
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    if !results.is_empty() {
        if want(SearchReturn::Min) && !returns.is_empty() {
            if let Some(m) = results.iter().min() {
                out.extend_from_slice(format!(" MIN {m}").as_bytes());
            }
        }
        if want(SearchReturn::Max) && !returns.is_empty() {
            if let Some(m) = results.iter().max() {
                out.extend_from_slice(format!(" MAX {m}").as_bytes());
            }
        }
        if want(SearchReturn::All) {
            out.extend_from_slice(b" ALL ");
            out.extend_from_slice(crate::sequence::compact(results).as_bytes());
        }
    }
    if want(SearchReturn::Count) && !returns.is_empty() {
        out.extend_from_slice(format!(" COUNT {}", results.len()).as_bytes());
    }
    if let (Some(m), false) = (modseq, results.is_empty()) {
        out.extend_from_slice(format!(" MODSEQ {m}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests;
