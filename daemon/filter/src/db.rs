//! A token database: per-token spam and ham counts, message totals, and the digests of the
//! messages learned (so that a message trained twice counts once, and one moved out of Junk
//! is unlearned as spam before it is learned as ham, as SpamAssassin's `bayes_seen` does).
//!
//! On disk, two files per database in one directory:
//! - `<name>.snap`: the whole database, checksummed (CRC-32C), replaced atomically (written
//!   to a temporary file, fsynced, renamed, directory fsynced); it names a generation.
//! - `<name>.<generation>.journal`: training records appended since that snapshot, each
//!   framed with its length and CRC-32C and made durable with `fdatasync` before the
//!   training counts. A record torn by a crash (`kill -9`, power loss) fails its checksum and
//!   is cut off at the next open; everything before it stays.
//!
//! When the journal passes [`Settings::max_journal_bytes`] the database is compacted: pruned
//! to [`Settings::max_tokens`] (the least recently seen tokens go first, then the rarest), a
//! snapshot of the next generation written, a new journal begun and the old one removed. A
//! crash anywhere in that sequence leaves either the old snapshot with its journal or the
//! new snapshot (whose generation ignores the old journal): never a record counted twice.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tokenize::Tokens;

const SNAP_MAGIC: &[u8; 8] = b"PFSNAP01";
const JOURNAL_MAGIC: &[u8; 8] = b"PFJRNL01";
/// A record longer than this is corrupt (a message has at most a few thousand tokens).
const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    fn code(self) -> u8 {
        match self {
            Class::Spam => 1,
            Class::Ham => 2,
        }
    }

    fn from_code(code: u8) -> Option<Class> {
        match code {
            1 => Some(Class::Spam),
            2 => Some(Class::Ham),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Bounds of one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Tokens kept after a compaction (SpamAssassin's `bayes_expiry_max_db_size`).
    pub max_tokens: usize,
    /// Journal bytes that trigger a compaction.
    pub max_journal_bytes: u64,
    /// Message digests remembered (the newest).
    pub max_seen: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_tokens: 150_000,
            max_journal_bytes: 4 << 20,
            max_seen: 20_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
    /// Day (days since the Unix epoch) the token was last learned.
    pub day: u32,
}

/// What [`TokenDb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A message not learned before.
    New,
    /// Learned before as the other class: unlearned from it, learned as this one.
    Relearned,
    /// Already learned as this class: nothing changed.
    AlreadyKnown,
}

/// What [`TokenDb::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Journal records replayed.
    pub replayed: usize,
    /// Bytes of a torn or corrupt journal tail cut off.
    pub truncated_bytes: u64,
    /// The snapshot failed its checksum and was moved aside (`<name>.snap.corrupt`).
    pub snapshot_corrupt: bool,
}

/// One training record (the journal's unit).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    class: Class,
    /// The class the message was learned as before (unlearned first).
    previous: Option<Class>,
    day: u32,
    digest: u64,
    hashes: Vec<u64>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(18 + self.hashes.len() * 8);
        p.push(self.class.code());
        p.push(self.previous.map(Class::code).unwrap_or(0));
        p.extend_from_slice(&self.day.to_le_bytes());
        p.extend_from_slice(&self.digest.to_le_bytes());
        p.extend_from_slice(&(self.hashes.len() as u32).to_le_bytes());
        for h in &self.hashes {
            p.extend_from_slice(&h.to_le_bytes());
        }
        let mut framed = Vec::with_capacity(8 + p.len());
        framed.extend_from_slice(&(p.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        framed.extend_from_slice(&p);
        framed
    }

    fn decode(p: &[u8]) -> Option<Record> {
        let mut r = Reader(p);
        let class = Class::from_code(r.u8()?)?;
        let previous = match r.u8()? {
            0 => None,
            c => Some(Class::from_code(c)?),
        };
        let day = r.u32()?;
        let digest = r.u64()?;
        let n = r.u32()? as usize;
        if n > MAX_RECORD / 8 {
            return None;
        }
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            hashes.push(r.u64()?);
        }
        r.0.is_empty().then_some(Record {
            class,
            previous,
            day,
            digest,
            hashes,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

/// The stable 64-bit key of a token: the first 8 bytes of its SHA-256 (SpamAssassin keeps
/// 40 bits of SHA-1). The database never holds token text.
pub fn token_hash(token: &str) -> u64 {
    let d = Sha256::digest(token.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// The digest that identifies a learned message: its bytes after the trace header fields
/// this server adds on delivery would differ per copy, so the whole stored message is used
/// (a copy of a stored message has the same bytes).
pub fn message_digest(raw: &[u8]) -> u64 {
    let d = Sha256::digest(raw);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// A token database, in memory, with its files when it has them.
#[derive(Debug)]
pub struct TokenDb {
    files: Option<Files>,
    settings: Settings,
    generation: u64,
    pub nspam: u32,
    pub nham: u32,
    tokens: HashMap<u64, Counts>,
    seen: HashMap<u64, Class>,
    seen_order: VecDeque<u64>,
}

#[derive(Debug)]
struct Files {
    dir: PathBuf,
    name: String,
    journal: File,
    journal_bytes: u64,
}

impl TokenDb {
    /// An empty database that lives only in memory (tests, the corpus evaluation).
    pub fn in_memory(settings: Settings) -> TokenDb {
        TokenDb {
            files: None,
            settings,
            generation: 0,
            nspam: 0,
            nham: 0,
            tokens: HashMap::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Opens (or creates) the database `name` in `dir`, recovering from a torn journal tail
    /// or a corrupt snapshot. Blocking.
    pub fn open(
        dir: &Path,
        name: &str,
        settings: Settings,
    ) -> Result<(TokenDb, OpenReport), DbError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut db = TokenDb::in_memory(settings);
        let mut report = OpenReport::default();
        let snap = dir.join(format!("{name}.snap"));
        match std::fs::read(&snap) {
            Ok(bytes) => {
                if !db.load_snapshot(&bytes) {
                    report.snapshot_corrupt = true;
                    db = TokenDb::in_memory(settings);
                    let aside = dir.join(format!("{name}.snap.corrupt"));
                    std::fs::rename(&snap, &aside).map_err(io(&snap))?;
                    // The journal of the lost snapshot's generation still holds the newest
                    // training: it is replayed below onto the empty database.
                    db.generation = latest_journal_generation(dir, name).unwrap_or(0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&snap)(e)),
        }
        let path = journal_path(dir, name, db.generation);
        let (journal, journal_bytes) = db.replay_journal(&path, &mut report)?;
        // Journals of other generations: leftovers of an interrupted compaction.
        remove_other_journals(dir, name, db.generation);
        db.files = Some(Files {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            journal,
            journal_bytes,
        });
        if report.snapshot_corrupt {
            db.compact()?;
        }
        Ok((db, report))
    }

    fn load_snapshot(&mut self, bytes: &[u8]) -> bool {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return false;
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return false;
        }
        let mut r = Reader(body);
        let parsed = (|| {
            if &r.take::<8>()? != SNAP_MAGIC {
                return None;
            }
            let generation = r.u64()?;
            let nspam = r.u32()?;
            let nham = r.u32()?;
            let ntokens = r.u32()? as usize;
            let nseen = r.u32()? as usize;
            let mut tokens = HashMap::with_capacity(ntokens.min(1 << 22));
            for _ in 0..ntokens {
                let h = r.u64()?;
                let c = Counts {
                    spam: r.u32()?,
                    ham: r.u32()?,
                    day: r.u32()?,
                };
                tokens.insert(h, c);
            }
            let mut seen = Vec::with_capacity(nseen.min(1 << 20));
            for _ in 0..nseen {
                let d = r.u64()?;
                seen.push((d, Class::from_code(r.u8()?)?));
            }
            r.0.is_empty()
                .then_some((generation, nspam, nham, tokens, seen))
        })();
        let Some((generation, nspam, nham, tokens, seen)) = parsed else {
            return false;
        };
        self.generation = generation;
        self.nspam = nspam;
        self.nham = nham;
        self.tokens = tokens;
        for (d, c) in seen {
            self.remember(d, c);
        }
        true
    }

    fn replay_journal(
        &mut self,
        path: &Path,
        report: &mut OpenReport,
    ) -> Result<(File, u64), DbError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let mut good = 0usize;
        if bytes.len() >= 16
            && &bytes[..8] == JOURNAL_MAGIC
            && bytes[8..16] == self.generation.to_le_bytes()
        {
            good = 16;
            while let Some((record, len)) = next_record(&bytes[good..]) {
                self.apply(&record);
                report.replayed += 1;
                good += len;
            }
        }
        if good < 16 {
            // New, or a header torn by a crash: start the journal over.
            file.set_len(0).map_err(io(path))?;
            let mut header = JOURNAL_MAGIC.to_vec();
            header.extend_from_slice(&self.generation.to_le_bytes());
            file.write_all(&header).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
            report.truncated_bytes = bytes.len() as u64;
            return Ok((file, 16));
        }
        if good < bytes.len() {
            report.truncated_bytes = (bytes.len() - good) as u64;
            file.set_len(good as u64).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
        }
        Ok((file, good as u64))
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Distinct tokens held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Spam and ham counts of a token.
    pub fn counts(&self, token: &str) -> Counts {
        self.tokens
            .get(&token_hash(token))
            .copied()
            .unwrap_or_default()
    }

    /// The class a message (by [`message_digest`]) was learned as, if remembered.
    pub fn learned_as(&self, digest: u64) -> Option<Class> {
        self.seen.get(&digest).copied()
    }

    /// Learns a message's tokens as `class`: durable (journal record fsynced) before the
    /// counts change. Blocking when the database has files.
    pub fn learn(
        &mut self,
        digest: u64,
        tokens: &Tokens,
        class: Class,
        day: u32,
    ) -> Result<Learned, DbError> {
        let previous = self.seen.get(&digest).copied();
        if previous == Some(class) {
            return Ok(Learned::AlreadyKnown);
        }
        let record = Record {
            class,
            previous,
            day,
            digest,
            hashes: tokens.tokens.iter().map(|t| token_hash(t)).collect(),
        };
        if let Some(files) = &mut self.files {
            let framed = record.encode();
            let path = journal_path(&files.dir, &files.name, self.generation);
            files.journal.write_all(&framed).map_err(io(&path))?;
            files.journal.sync_data().map_err(io(&path))?;
            files.journal_bytes += framed.len() as u64;
        }
        self.apply(&record);
        let over = self
            .files
            .as_ref()
            .is_some_and(|f| f.journal_bytes > self.settings.max_journal_bytes);
        if over {
            self.compact()?;
        } else if self.files.is_none()
            && self.tokens.len() > self.settings.max_tokens.saturating_mul(2)
        {
            self.prune();
        }
        Ok(if previous.is_some() {
            Learned::Relearned
        } else {
            Learned::New
        })
    }

    fn apply(&mut self, r: &Record) {
        if let Some(previous) = r.previous {
            match previous {
                Class::Spam => self.nspam = self.nspam.saturating_sub(1),
                Class::Ham => self.nham = self.nham.saturating_sub(1),
            }
            for h in &r.hashes {
                if let Some(c) = self.tokens.get_mut(h) {
                    match previous {
                        Class::Spam => c.spam = c.spam.saturating_sub(1),
                        Class::Ham => c.ham = c.ham.saturating_sub(1),
                    }
                }
            }
        }
        match r.class {
            Class::Spam => self.nspam = self.nspam.saturating_add(1),
            Class::Ham => self.nham = self.nham.saturating_add(1),
        }
        for h in &r.hashes {
            let c = self.tokens.entry(*h).or_default();
            match r.class {
                Class::Spam => c.spam = c.spam.saturating_add(1),
                Class::Ham => c.ham = c.ham.saturating_add(1),
            }
            c.day = c.day.max(r.day);
        }
        if r.previous.is_some() {
            for h in &r.hashes {
                if self
                    .tokens
                    .get(h)
                    .is_some_and(|c| c.spam == 0 && c.ham == 0)
                {
                    self.tokens.remove(h);
                }
            }
        }
        self.remember(r.digest, r.class);
    }

    fn remember(&mut self, digest: u64, class: Class) {
        if self.seen.insert(digest, class).is_none() {
            self.seen_order.push_back(digest);
        }
        while self.seen_order.len() > self.settings.max_seen {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Drops tokens down to 90% of [`Settings::max_tokens`]: the least recently learned
    /// first, then the rarest.
    fn prune(&mut self) {
        if self.tokens.len() <= self.settings.max_tokens {
            return;
        }
        let keep = self.settings.max_tokens / 10 * 9;
        let mut all: Vec<(u64, Counts)> = self.tokens.drain().collect();
        all.sort_by_key(|(h, c)| {
            (
                std::cmp::Reverse(c.day),
                std::cmp::Reverse(u64::from(c.spam) + u64::from(c.ham)),
                *h,
            )
        });
        all.truncate(keep);
        self.tokens = all.into_iter().collect();
    }

    /// Prunes and writes a snapshot of the next generation, then starts its journal.
    pub fn compact(&mut self) -> Result<(), DbError> {
        self.prune();
        let Some(files) = &self.files else {
            return Ok(());
        };
        let (dir, name) = (files.dir.clone(), files.name.clone());
        let next = self.generation + 1;
        let mut out = Vec::with_capacity(32 + self.tokens.len() * 20 + self.seen.len() * 9);
        out.extend_from_slice(SNAP_MAGIC);
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&self.nspam.to_le_bytes());
        out.extend_from_slice(&self.nham.to_le_bytes());
        out.extend_from_slice(&(self.tokens.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.seen_order.len() as u32).to_le_bytes());
        let mut sorted: Vec<_> = self.tokens.iter().collect();
        sorted.sort_by_key(|(h, _)| **h);
        for (h, c) in sorted {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&c.spam.to_le_bytes());
            out.extend_from_slice(&c.ham.to_le_bytes());
            out.extend_from_slice(&c.day.to_le_bytes());
        }
        for d in &self.seen_order {
            out.extend_from_slice(&d.to_le_bytes());
            out.push(self.seen.get(d).copied().unwrap_or(Class::Ham).code());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let snap = dir.join(format!("{name}.snap"));
        let tmp = dir.join(format!("{name}.snap.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&out).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &snap).map_err(io(&snap))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        self.generation = next;
        let path = journal_path(&dir, &name, next);
        // Nothing of this generation may be replayed onto the new snapshot.
        let _ = std::fs::remove_file(&path);
        let mut report = OpenReport::default();
        let mut fresh = TokenDb::in_memory(self.settings);
        fresh.generation = next;
        let (journal, journal_bytes) = fresh.replay_journal(&path, &mut report)?;
        remove_other_journals(&dir, &name, next);
        self.files = Some(Files {
            dir,
            name,
            journal,
            journal_bytes,
        });
        Ok(())
    }
}

fn journal_path(dir: &Path, name: &str, generation: u64) -> PathBuf {
    dir.join(format!("{name}.{generation}.journal"))
}

/// The next whole record at the start of `bytes` and its framed length.
fn next_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let mut r = Reader(bytes);
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    if len > MAX_RECORD || r.0.len() < len {
        return None;
    }
    let payload = &r.0[..len];
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((Record::decode(payload)?, 8 + len))
}

fn journals(dir: &Path, name: &str) -> Vec<(u64, PathBuf)> {
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let generation = file
                .strip_prefix(&prefix)?
                .strip_suffix(".journal")?
                .parse()
                .ok()?;
            Some((generation, e.path()))
        })
        .collect()
}

fn latest_journal_generation(dir: &Path, name: &str) -> Option<u64> {
    journals(dir, name).into_iter().map(|(g, _)| g).max()
}

fn remove_other_journals(dir: &Path, name: &str, keep: u64) {
    for (generation, path) in journals(dir, name) {
        if generation != keep {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(words: &[&str]) -> Tokens {
        Tokens {
            tokens: words.iter().map(|w| w.to_string()).collect(),
            truncated: false,
        }
    }

    #[test]
    fn learning_is_durable_and_relearning_moves_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut db, _) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        assert_eq!(
            db.learn(1, &toks(&["cash", "prize"]), Class::Spam, 10)
                .unwrap(),
            Learned::New
        );
        assert_eq!(
            db.learn(1, &toks(&["cash", "prize"]), Class::Spam, 10)
                .unwrap(),
            Learned::AlreadyKnown
        );
        assert_eq!(
            db.learn(2, &toks(&["meeting", "cash"]), Class::Ham, 10)
                .unwrap(),
            Learned::New
        );
        drop(db);
        let (mut db, report) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        assert_eq!(report.replayed, 2);
        assert_eq!((db.nspam, db.nham), (1, 1));
        assert_eq!(
            db.counts("cash"),
            Counts {
                spam: 1,
                ham: 1,
                day: 10
            }
        );
        // Moved out of Junk: unlearned as spam, learned as ham.
        assert_eq!(
            db.learn(1, &toks(&["cash", "prize"]), Class::Ham, 11)
                .unwrap(),
            Learned::Relearned
        );
        assert_eq!((db.nspam, db.nham), (0, 2));
        assert_eq!(db.counts("cash").spam, 0);
        assert_eq!(db.counts("cash").ham, 2);
    }

    #[test]
    fn a_torn_journal_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut db, _) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        db.learn(1, &toks(&["a1", "b1"]), Class::Spam, 1).unwrap();
        db.learn(2, &toks(&["c1"]), Class::Ham, 1).unwrap();
        drop(db);
        let journal = journal_path(dir.path(), "u", 0);
        let full = std::fs::read(&journal).unwrap();
        // A crash in the middle of the second record's write.
        std::fs::write(&journal, &full[..full.len() - 5]).unwrap();
        let (db, report) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        assert_eq!(report.replayed, 1);
        assert!(report.truncated_bytes > 0);
        assert_eq!((db.nspam, db.nham), (1, 0));
        drop(db);
        // Garbage after good records (a torn, reordered write) is cut too.
        let mut bytes = std::fs::read(&journal).unwrap();
        bytes.extend_from_slice(&[0xff; 40]);
        std::fs::write(&journal, &bytes).unwrap();
        let (mut db, report) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        assert_eq!(report.replayed, 1);
        assert_eq!(report.truncated_bytes, 40);
        // And the journal goes on after the cut.
        db.learn(3, &toks(&["d1"]), Class::Ham, 2).unwrap();
        drop(db);
        let (db, report) = TokenDb::open(dir.path(), "u", Settings::default()).unwrap();
        assert_eq!(report.replayed, 2);
        assert_eq!((db.nspam, db.nham), (1, 1));
    }

    #[test]
    fn compaction_snapshots_prunes_and_survives_a_corrupt_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            max_tokens: 100,
            max_journal_bytes: 2000,
            max_seen: 1000,
        };
        let (mut db, _) = TokenDb::open(dir.path(), "u", settings).unwrap();
        for i in 0..60u32 {
            let words: Vec<String> = (0..5).map(|j| format!("w{i}-{j}")).collect();
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            db.learn(
                u64::from(i),
                &toks(&refs),
                if i % 2 == 0 { Class::Spam } else { Class::Ham },
                i,
            )
            .unwrap();
            assert!(db.len() <= 100 + 5 * 60, "bounded");
        }
        assert!(dir.path().join("u.snap").exists());
        let generation = db.generation;
        assert!(generation > 0);
        let (nspam, nham, len) = (db.nspam, db.nham, db.len());
        assert!(len <= 300);
        // The newest tokens survive pruning.
        assert_eq!(db.counts("w59-0").ham, 1);
        drop(db);
        let (db, report) = TokenDb::open(dir.path(), "u", settings).unwrap();
        assert!(!report.snapshot_corrupt);
        assert_eq!((db.nspam, db.nham, db.len()), (nspam, nham, len));
        assert_eq!(journals(dir.path(), "u").len(), 1, "old journals removed");
        drop(db);
        // A flipped bit in the snapshot: moved aside, the journal of its generation kept.
        let snap = dir.path().join("u.snap");
        let mut bytes = std::fs::read(&snap).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&snap, &bytes).unwrap();
        let (mut db, report) = TokenDb::open(dir.path(), "u", settings).unwrap();
        assert!(report.snapshot_corrupt);
        assert!(dir.path().join("u.snap.corrupt").exists());
        db.learn(999, &toks(&["fresh"]), Class::Spam, 100).unwrap();
        drop(db);
        let (db, report) = TokenDb::open(dir.path(), "u", settings).unwrap();
        assert!(!report.snapshot_corrupt);
        assert_eq!(db.counts("fresh").spam, 1);
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            class: Class::Ham,
            previous: Some(Class::Spam),
            day: 7,
            digest: 42,
            hashes: vec![1, 2, 3],
        };
        let framed = r.encode();
        let (back, len) = next_record(&framed).unwrap();
        assert_eq!((back, len), (r, framed.len()));
        assert!(next_record(&framed[..framed.len() - 1]).is_none());
    }
}
