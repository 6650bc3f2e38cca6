//! On-disk record format.
//!
//! Every record is a fixed 24-byte header followed by its payload:
//!
//! | offset | size | field                                             |
//! |--------|------|---------------------------------------------------|
//! | 0      | 4    | magic `PSTN`                                      |
//! | 4      | 1    | format version (1)                                |
//! | 5      | 1    | kind                                              |
//! | 6      | 2    | reserved, zero                                    |
//! | 8      | 4    | payload length (LE)                               |
//! | 12     | 4    | crc32c over header (crc field zeroed) + payload   |
//! | 16     | 8    | per-shard sequence number (LE), +1 per record     |
//!
//! Integers are little endian; strings are u16 length + UTF-8 bytes. Records are
//! self-describing so that a future compactor can copy live records to a new segment
//! without consulting the index.

pub(crate) const MAGIC: [u8; 4] = *b"PSTN";
pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 24;
/// Upper bound on one payload; guards recovery against absurd lengths in garbage.
pub(crate) const MAX_PAYLOAD: usize = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    MailboxCreate = 1,
    Message = 2,
    FlagsUpdate = 3,
    Expunge = 4,
    Padding = 5,
    MailboxDelete = 6,
    MailboxRename = 7,
    FlagsBatch = 8,
    Subscription = 9,
    MessageRef = 10,
    Move = 11,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::MailboxCreate,
            2 => Kind::Message,
            3 => Kind::FlagsUpdate,
            4 => Kind::Expunge,
            5 => Kind::Padding,
            6 => Kind::MailboxDelete,
            7 => Kind::MailboxRename,
            8 => Kind::FlagsBatch,
            9 => Kind::Subscription,
            10 => Kind::MessageRef,
            11 => Kind::Move,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub mailbox: u32,
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    MailboxCreate {
        id: u32,
        uidvalidity: u32,
        account: String,
        name: String,
        special_use: Option<String>,
    },
    Message {
        internal_date: i64,
        deliveries: Vec<Delivery>,
        body: Vec<u8>,
    },
    FlagsUpdate {
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
    Padding(usize),
    /// The mailbox and its messages are gone (IMAP DELETE, RFC 9051 6.3.4).
    MailboxDelete {
        id: u32,
    },
    /// The mailbox keeps its id, UIDVALIDITY and messages under a new name (RFC 9051 6.3.5).
    MailboxRename {
        id: u32,
        name: String,
    },
    /// One STORE over many messages: one record, one commit, a MODSEQ per message
    /// (RFC 7162 3.1.3).
    FlagsBatch {
        mailbox: u32,
        updates: Vec<FlagChange>,
    },
    /// A copy (IMAP COPY/MOVE) of a message already stored: new deliveries that reuse the
    /// bytes of an existing Message record instead of writing them again. Compaction must
    /// keep the source record while references to it live.
    MessageRef {
        internal_date: i64,
        size: u64,
        source: SourceRef,
        deliveries: Vec<Delivery>,
    },
    /// IMAP SUBSCRIBE / UNSUBSCRIBE (RFC 9051 6.3.7, 6.3.8); names need not exist.
    Subscription {
        account: String,
        name: String,
        subscribed: bool,
    },
    /// IMAP MOVE (RFC 6851) as one record: the copies (each like a MessageRef with one
    /// delivery) and the expunge of `uids` from `mailbox` at `modseq`, so that a crash
    /// leaves every message in the source or in the target, never in both.
    Move {
        mailbox: u32,
        modseq: u64,
        uids: Vec<u32>,
        copies: Vec<MovedCopy>,
    },
}

/// One message of a [`Record::Move`]: its new delivery, reusing the bytes of `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MovedCopy {
    pub internal_date: i64,
    pub size: u64,
    pub source: SourceRef,
    pub delivery: Delivery,
}

/// The Message record (and the delivery in it) whose bytes a [`Record::MessageRef`] reuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceRef {
    pub shard: u32,
    pub segment: u32,
    pub offset: u64,
    pub len: u64,
    pub mailbox: u32,
    pub uid: u32,
}

impl SourceRef {
    /// The stored bytes at `loc`, delivered originally as `uid` in `mailbox`.
    pub(crate) fn new(loc: &crate::index::Location, mailbox: u32, uid: u32) -> SourceRef {
        SourceRef {
            shard: u32::try_from(loc.shard).unwrap_or(u32::MAX),
            segment: loc.segment,
            offset: loc.offset,
            len: loc.len,
            mailbox,
            uid,
        }
    }

    pub(crate) fn location(&self) -> crate::index::Location {
        crate::index::Location {
            shard: self.shard as usize,
            segment: self.segment,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// One message's new flags inside a [`Record::FlagsBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagChange {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
}

/// Metadata of a Message record decoded without copying the body (recovery path).
#[derive(Debug)]
pub(crate) struct MessageHead {
    pub internal_date: i64,
    pub deliveries: Vec<Delivery>,
    pub body_offset: usize,
    pub body_len: usize,
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than u16 are rejected by callers before encoding.
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn put_source_ref(out: &mut Vec<u8>, source: &SourceRef) {
    out.extend_from_slice(&source.shard.to_le_bytes());
    out.extend_from_slice(&source.segment.to_le_bytes());
    out.extend_from_slice(&source.offset.to_le_bytes());
    out.extend_from_slice(&source.len.to_le_bytes());
    out.extend_from_slice(&source.mailbox.to_le_bytes());
    out.extend_from_slice(&source.uid.to_le_bytes());
}

fn put_delivery(out: &mut Vec<u8>, d: &Delivery) {
    out.extend_from_slice(&d.mailbox.to_le_bytes());
    out.extend_from_slice(&d.uid.to_le_bytes());
    out.extend_from_slice(&d.modseq.to_le_bytes());
    put_flags(out, &d.flags);
}

pub(crate) fn put_flags(out: &mut Vec<u8>, flags: &[String]) {
    out.extend_from_slice(&(flags.len() as u16).to_le_bytes());
    for f in flags {
        put_str(out, f);
    }
}

impl Record {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Record::MailboxCreate { .. } => Kind::MailboxCreate,
            Record::Message { .. } => Kind::Message,
            Record::FlagsUpdate { .. } => Kind::FlagsUpdate,
            Record::Expunge { .. } => Kind::Expunge,
            Record::Padding(_) => Kind::Padding,
            Record::MailboxDelete { .. } => Kind::MailboxDelete,
            Record::MailboxRename { .. } => Kind::MailboxRename,
            Record::FlagsBatch { .. } => Kind::FlagsBatch,
            Record::Subscription { .. } => Kind::Subscription,
            Record::MessageRef { .. } => Kind::MessageRef,
            Record::Move { .. } => Kind::Move,
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::MailboxCreate {
                id,
                uidvalidity,
                account,
                name,
                special_use,
            } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&uidvalidity.to_le_bytes());
                put_str(out, account);
                put_str(out, name);
                match special_use {
                    Some(s) => {
                        out.push(1);
                        put_str(out, s);
                    }
                    None => out.push(0),
                }
            }
            Record::Message {
                internal_date,
                deliveries,
                body,
            } => {
                out.extend_from_slice(&internal_date.to_le_bytes());
                out.extend_from_slice(&(deliveries.len() as u32).to_le_bytes());
                for d in deliveries {
                    out.extend_from_slice(&d.mailbox.to_le_bytes());
                    out.extend_from_slice(&d.uid.to_le_bytes());
                    out.extend_from_slice(&d.modseq.to_le_bytes());
                    put_flags(out, &d.flags);
                }
                out.extend_from_slice(&(body.len() as u64).to_le_bytes());
                out.extend_from_slice(body);
            }
            Record::FlagsUpdate {
                mailbox,
                uid,
                modseq,
                flags,
            } => {
                out.extend_from_slice(&mailbox.to_le_bytes());
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
                put_flags(out, flags);
            }
            Record::Expunge {
                mailbox,
                modseq,
                uids,
            } => {
                out.extend_from_slice(&mailbox.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
                out.extend_from_slice(&(uids.len() as u32).to_le_bytes());
                for u in uids {
                    out.extend_from_slice(&u.to_le_bytes());
                }
            }
            Record::Padding(n) => out.resize(out.len() + n, 0),
            Record::MailboxDelete { id } => out.extend_from_slice(&id.to_le_bytes()),
            Record::MailboxRename { id, name } => {
                out.extend_from_slice(&id.to_le_bytes());
                put_str(out, name);
            }
            Record::FlagsBatch { mailbox, updates } => {
                out.extend_from_slice(&mailbox.to_le_bytes());
                out.extend_from_slice(&(updates.len() as u32).to_le_bytes());
                for u in updates {
                    out.extend_from_slice(&u.uid.to_le_bytes());
                    out.extend_from_slice(&u.modseq.to_le_bytes());
                    put_flags(out, &u.flags);
                }
            }
            Record::Subscription {
                account,
                name,
                subscribed,
            } => {
                put_str(out, account);
                put_str(out, name);
                out.push(u8::from(*subscribed));
            }
            Record::MessageRef {
                internal_date,
                size,
                source,
                deliveries,
            } => {
                out.extend_from_slice(&internal_date.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                put_source_ref(out, source);
                out.extend_from_slice(&(deliveries.len() as u32).to_le_bytes());
                for d in deliveries {
                    put_delivery(out, d);
                }
            }
            Record::Move {
                mailbox,
                modseq,
                uids,
                copies,
            } => {
                out.extend_from_slice(&mailbox.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
                out.extend_from_slice(&(uids.len() as u32).to_le_bytes());
                for u in uids {
                    out.extend_from_slice(&u.to_le_bytes());
                }
                out.extend_from_slice(&(copies.len() as u32).to_le_bytes());
                for c in copies {
                    out.extend_from_slice(&c.internal_date.to_le_bytes());
                    out.extend_from_slice(&c.size.to_le_bytes());
                    put_source_ref(out, &c.source);
                    put_delivery(out, &c.delivery);
                }
            }
        }
    }

    /// Appends header + payload to `out`; returns the encoded length.
    pub(crate) fn encode(&self, seq: u64, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        self.encode_payload(out);
        seal_header(out, start, self.kind(), seq)
    }
}

/// Appends a record of `kind` with an already encoded payload under a new sequence number
/// (the compactor copies live records this way); returns the encoded length.
pub(crate) fn encode_framed(kind: Kind, payload: &[u8], seq: u64, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_header(out, start, kind, seq)
}

/// Fills in the header of the record whose payload follows `out[start..start+HEADER_LEN]`.
fn seal_header(out: &mut [u8], start: usize, kind: Kind, seq: u64) -> usize {
    let payload_len = out.len() - start - HEADER_LEN;
    let h = &mut out[start..start + HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = kind as u8;
    h[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// A record found valid in a buffer.
pub(crate) struct Framed<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub payload: &'a [u8],
    pub total_len: usize,
}

/// Validates the record starting at `buf[0]`: magic, version, kind, length and crc.
/// Returns None for anything invalid (torn tail, zeroed preallocated space, garbage).
pub(crate) fn frame(buf: &[u8]) -> Option<Framed<'_>> {
    if buf.len() < HEADER_LEN || buf[0..4] != MAGIC || buf[4] != VERSION {
        return None;
    }
    let kind = Kind::from_u8(buf[5])?;
    let len = u32::from_le_bytes(buf[8..12].try_into().ok()?) as usize;
    if len > MAX_PAYLOAD || buf.len() < HEADER_LEN + len {
        return None;
    }
    if !crc_matches(buf, len) {
        return None;
    }
    let seq = u64::from_le_bytes(buf[16..24].try_into().ok()?);
    Some(Framed {
        kind,
        seq,
        payload: &buf[HEADER_LEN..HEADER_LEN + len],
        total_len: HEADER_LEN + len,
    })
}

/// Whether the crc field of the record at `buf[0]` (payload `len` bytes, all present) matches
/// its header and payload.
fn crc_matches(buf: &[u8], len: usize) -> bool {
    let Some(stored) = buf.get(12..16).and_then(|b| b.try_into().ok()) else {
        return false;
    };
    let mut crc = crc32c::crc32c(&buf[0..12]);
    crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc = crc32c::crc32c_append(crc, &buf[16..HEADER_LEN + len]);
    crc == u32::from_le_bytes(stored)
}

/// A whole, checksummed record that this build cannot read: a format version above
/// [`VERSION`] or a kind it does not know, i.e. written by a newer posternd. Returns
/// (version, kind, seq). Recovery must refuse such a store rather than treat the record as a
/// torn tail and clear it (after an A/B rollback to an older slot that would drop every
/// record from there on).
pub(crate) fn newer_format(buf: &[u8]) -> Option<(u8, u8, u64)> {
    if buf.len() < HEADER_LEN || buf[0..4] != MAGIC {
        return None;
    }
    let (version, kind) = (buf[4], buf[5]);
    if version < VERSION || (version == VERSION && Kind::from_u8(kind).is_some()) {
        return None;
    }
    let len = u32::from_le_bytes(buf[8..12].try_into().ok()?) as usize;
    if len > MAX_PAYLOAD || buf.len() < HEADER_LEN + len {
        return None;
    }
    if !crc_matches(buf, len) {
        return None;
    }
    Some((
        version,
        kind,
        u64::from_le_bytes(buf[16..24].try_into().ok()?),
    ))
}

/// Little-endian cursor over a payload (records and the index checkpoint).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Whether every byte was consumed.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn source_ref(&mut self) -> Option<SourceRef> {
        Some(SourceRef {
            shard: self.u32()?,
            segment: self.u32()?,
            offset: self.u64()?,
            len: self.u64()?,
            mailbox: self.u32()?,
            uid: self.u32()?,
        })
    }

    fn delivery(&mut self) -> Option<Delivery> {
        Some(Delivery {
            mailbox: self.u32()?,
            uid: self.u32()?,
            modseq: self.u64()?,
            flags: self.flags()?,
        })
    }

    pub(crate) fn flags(&mut self) -> Option<Vec<String>> {
        let n = self.u16()? as usize;
        (0..n).map(|_| self.str()).collect()
    }
}

pub(crate) fn decode_message_head(payload: &[u8]) -> Option<MessageHead> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let internal_date = r.u64()? as i64;
    let n = r.u32()? as usize;
    if n > payload.len() {
        return None;
    }
    let mut deliveries = Vec::with_capacity(n);
    for _ in 0..n {
        deliveries.push(r.delivery()?);
    }
    let body_len = usize::try_from(r.u64()?).ok()?;
    let body_offset = r.pos;
    r.take(body_len)?;
    Some(MessageHead {
        internal_date,
        deliveries,
        body_offset,
        body_len,
    })
}

/// Decodes a validated payload. None means the payload does not parse (treated as corrupt).
pub(crate) fn decode(kind: Kind, payload: &[u8]) -> Option<Record> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    Some(match kind {
        Kind::MailboxCreate => Record::MailboxCreate {
            id: r.u32()?,
            uidvalidity: r.u32()?,
            account: r.str()?,
            name: r.str()?,
            special_use: match r.u8()? {
                0 => None,
                _ => Some(r.str()?),
            },
        },
        Kind::Message => {
            let head = decode_message_head(payload)?;
            Record::Message {
                internal_date: head.internal_date,
                deliveries: head.deliveries,
                body: payload[head.body_offset..head.body_offset + head.body_len].to_vec(),
            }
        }
        Kind::FlagsUpdate => Record::FlagsUpdate {
            mailbox: r.u32()?,
            uid: r.u32()?,
            modseq: r.u64()?,
            flags: r.flags()?,
        },
        Kind::Expunge => {
            let mailbox = r.u32()?;
            let modseq = r.u64()?;
            let n = r.u32()? as usize;
            if n > payload.len() {
                return None;
            }
            let uids = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
            Record::Expunge {
                mailbox,
                modseq,
                uids,
            }
        }
        Kind::Padding => Record::Padding(payload.len()),
        Kind::MailboxDelete => Record::MailboxDelete { id: r.u32()? },
        Kind::MailboxRename => Record::MailboxRename {
            id: r.u32()?,
            name: r.str()?,
        },
        Kind::FlagsBatch => {
            let mailbox = r.u32()?;
            let n = r.u32()? as usize;
            if n > payload.len() {
                return None;
            }
            let updates = (0..n)
                .map(|_| {
                    Some(FlagChange {
                        uid: r.u32()?,
                        modseq: r.u64()?,
                        flags: r.flags()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Record::FlagsBatch { mailbox, updates }
        }
        Kind::MessageRef => {
            let internal_date = r.u64()? as i64;
            let size = r.u64()?;
            let source = r.source_ref()?;
            let n = r.u32()? as usize;
            if n > payload.len() {
                return None;
            }
            let deliveries = (0..n).map(|_| r.delivery()).collect::<Option<Vec<_>>>()?;
            Record::MessageRef {
                internal_date,
                size,
                source,
                deliveries,
            }
        }
        Kind::Subscription => Record::Subscription {
            account: r.str()?,
            name: r.str()?,
            subscribed: r.u8()? != 0,
        },
        Kind::Move => {
            let mailbox = r.u32()?;
            let modseq = r.u64()?;
            let n = r.u32()? as usize;
            if n > payload.len() {
                return None;
            }
            let uids = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
            let n = r.u32()? as usize;
            if n > payload.len() {
                return None;
            }
            let copies = (0..n)
                .map(|_| {
                    Some(MovedCopy {
                        internal_date: r.u64()? as i64,
                        size: r.u64()?,
                        source: r.source_ref()?,
                        delivery: r.delivery()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Record::Move {
                mailbox,
                modseq,
                uids,
                copies,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(r: Record) {
        let mut buf = Vec::new();
        let n = r.encode(42, &mut buf);
        assert_eq!(n, buf.len());
        let f = frame(&buf).unwrap();
        assert_eq!(f.seq, 42);
        assert_eq!(f.total_len, n);
        assert_eq!(decode(f.kind, f.payload).unwrap(), r);
        // Any single flipped bit anywhere invalidates the record.
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x10;
            assert!(frame(&b).is_none(), "flip at {i} not detected");
        }
        // Any truncation invalidates it.
        for i in 0..buf.len() {
            assert!(frame(&buf[..i]).is_none());
        }
    }

    #[test]
    fn records_roundtrip_and_detect_corruption() {
        roundtrip(Record::MailboxCreate {
            id: 7,
            uidvalidity: 1_700_000_000,
            account: "a@example.test".into(),
            name: "INBOX".into(),
            special_use: Some("\\Sent".into()),
        });
        roundtrip(Record::Message {
            internal_date: -5,
            deliveries: vec![
                Delivery {
                    mailbox: 1,
                    uid: 9,
                    modseq: 10,
                    flags: vec!["\\Seen".into(), "$Junk".into()],
                },
                Delivery {
                    mailbox: 2,
                    uid: 1,
                    modseq: 2,
                    flags: vec![],
                },
            ],
            body: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        });
        roundtrip(Record::FlagsUpdate {
            mailbox: 3,
            uid: 4,
            modseq: 5,
            flags: vec!["\\Deleted".into()],
        });
        roundtrip(Record::Expunge {
            mailbox: 3,
            modseq: 6,
            uids: vec![1, 2, 3],
        });
        roundtrip(Record::Padding(100));
        roundtrip(Record::MailboxDelete { id: 9 });
        roundtrip(Record::MailboxRename {
            id: 9,
            name: "Archive/2024".into(),
        });
        roundtrip(Record::FlagsBatch {
            mailbox: 2,
            updates: vec![
                FlagChange {
                    uid: 1,
                    modseq: 7,
                    flags: vec!["\\Seen".into()],
                },
                FlagChange {
                    uid: 5,
                    modseq: 8,
                    flags: vec![],
                },
            ],
        });
        roundtrip(Record::MessageRef {
            internal_date: 1_700_000_000,
            size: 1234,
            source: SourceRef {
                shard: 1,
                segment: 2,
                offset: 8192,
                len: 1300,
                mailbox: 3,
                uid: 4,
            },
            deliveries: vec![Delivery {
                mailbox: 5,
                uid: 6,
                modseq: 7,
                flags: vec!["\\Seen".into()],
            }],
        });
        roundtrip(Record::Subscription {
            account: "a@x.test".into(),
            name: "Lists/rust".into(),
            subscribed: true,
        });
        roundtrip(Record::Move {
            mailbox: 3,
            modseq: 12,
            uids: vec![4, 9],
            copies: vec![
                MovedCopy {
                    internal_date: 1_700_000_000,
                    size: 1234,
                    source: SourceRef {
                        shard: 1,
                        segment: 2,
                        offset: 8192,
                        len: 1300,
                        mailbox: 3,
                        uid: 4,
                    },
                    delivery: Delivery {
                        mailbox: 5,
                        uid: 6,
                        modseq: 7,
                        flags: vec!["\\Seen".into()],
                    },
                },
                MovedCopy {
                    internal_date: -1,
                    size: 10,
                    source: SourceRef {
                        shard: 0,
                        segment: 0,
                        offset: 0,
                        len: 60,
                        mailbox: 1,
                        uid: 2,
                    },
                    delivery: Delivery {
                        mailbox: 5,
                        uid: 7,
                        modseq: 8,
                        flags: vec![],
                    },
                },
            ],
        });
    }

    #[test]
    fn zeroes_are_not_a_record() {
        assert!(frame(&[0u8; 4096]).is_none());
    }
}
