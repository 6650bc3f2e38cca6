//! `postern mailbox import|export`: Maildir (Maildir++ folders) and mboxrd, streamed one
//! message at a time.
//!
//! The store has one writer (an flock on `store/LOCK`). When posternd runs, the CLI talks
//! to it over the admin socket ([`remote`]): the daemon appends each message with the
//! store's append contract (DESIGN.md 3.3) and acknowledges it only once durable. When
//! posternd is stopped the CLI opens the store itself ([`DirectSink`], [`DirectSource`]).
//!
//! Memory stays bounded: a reader yields one message at a time and at most
//! [`WINDOW_MESSAGES`] messages / [`WINDOW_BYTES`] bytes are in flight to the store (so that
//! group commit batches them), whatever the size of the input.
//!
//! Reruns: an import skips a message whose exact bytes are already in the target mailbox
//! as it was before the import started (SHA-256 of the stored bytes), so rerunning an
//! import (after an interruption, say) adds no duplicates. Identical messages inside one
//! input are all imported. Flags of skipped messages are not changed.

pub mod date;
pub mod maildir;
pub mod mbox;
pub mod remote;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use postern_config::Config;
use postern_store::{AppendRequest, AppendTarget, Appended, MailboxId, Store, StoreError};

/// Most messages queued to the store at once.
pub const WINDOW_MESSAGES: usize = 64;
/// Most message bytes queued to the store at once (one message may exceed it alone).
pub const WINDOW_BYTES: usize = 16 << 20;
/// Largest message accepted (the store's record limit).
pub const MAX_MESSAGE: usize = postern_store::MAX_BODY;

/// One message read from an import source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMessage {
    /// Target mailbox ("/" as hierarchy delimiter).
    pub mailbox: String,
    /// IMAP flags ("\\Seen") and keywords.
    pub flags: Vec<String>,
    /// Unix seconds.
    pub internal_date: i64,
    /// The message with CRLF line ends, as the store keeps it.
    pub body: Vec<u8>,
    /// Where it came from (`file:line` or a path), for errors.
    pub origin: String,
}

/// One message read from the store for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMessage {
    pub mailbox: String,
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub body: Vec<u8>,
}

/// Special-use attribute (RFC 6154) for the default mailboxes an import may create.
pub fn special_use_for(name: &str) -> Option<&'static str> {
    match name {
        "Sent" => Some("\\Sent"),
        "Drafts" => Some("\\Drafts"),
        "Junk" => Some("\\Junk"),
        "Trash" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

/// Whether `flags` holds `flag` (IMAP flags compare case-insensitively, RFC 9051 2.3.2).
pub fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// Adds `flag` unless present.
pub fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !has_flag(flags, flag) {
        flags.push(flag.to_string());
    }
}

/// LF line ends to CRLF; a CRLF stays as it is (the store keeps SMTP's CRLF form).
pub fn lf_to_crlf(input: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in input {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

/// Checks that a mailbox name is usable: UTF-8 by type, no empty hierarchy levels, no
/// control characters.
pub fn check_mailbox_name(name: &str) -> Result<()> {
    if name.is_empty() || name.split('/').any(str::is_empty) {
        bail!("invalid mailbox name {name:?} (empty hierarchy level)");
    }
    if name.chars().any(char::is_control) {
        bail!("invalid mailbox name {name:?} (control character)");
    }
    Ok(())
}

// ---- the store side (used by the CLI offline and by the daemon's admin socket) ----------

/// A pending durable append; resolves once the message is on stable storage.
pub type PendingAppend = Pin<Box<dyn Future<Output = Result<Vec<Appended>, StoreError>> + Send>>;

/// The result of starting one import.
pub enum Started {
    /// Queued to the store; await it for the durable outcome.
    Queued(PendingAppend),
    /// The target mailbox already had these exact bytes before the import.
    Duplicate,
}

struct Target {
    id: MailboxId,
    existing: HashSet<[u8; 32]>,
}

/// Appends imported messages to one account's mailboxes, in order.
pub struct Importer {
    store: Store,
    account: String,
    targets: HashMap<String, Target>,
    /// One shard per import: its commits are in order, so after a crash what is stored is a
    /// prefix of the input and a rerun restores the input order too.
    shard: usize,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Importer {
    pub fn new(store: Store, account: String) -> Importer {
        let shard = account.bytes().map(usize::from).sum::<usize>() % store.shard_count().max(1);
        Importer {
            store,
            account,
            targets: HashMap::new(),
            shard,
        }
    }

    /// Creates the mailbox if needed and remembers the hashes of what it already holds.
    /// Blocking (a durable catalogue record; reads of existing messages).
    fn target(&mut self, name: &str) -> Result<&Target> {
        if !self.targets.contains_key(name) {
            check_mailbox_name(name)?;
            let info = self
                .store
                .ensure_mailbox(&self.account, name, special_use_for(name))
                .with_context(|| format!("creating mailbox {name:?} of {}", self.account))?;
            let mut existing = HashSet::new();
            for meta in self.store.messages(info.id) {
                let body = self.store.read_message(&meta)?;
                existing.insert(sha256(&body));
            }
            self.targets.insert(
                name.to_string(),
                Target {
                    id: info.id,
                    existing,
                },
            );
        }
        self.targets
            .get(name)
            .ok_or_else(|| anyhow!("mailbox {name:?} vanished"))
    }

    /// Queues one message. Blocking the first time a mailbox is seen. The append is
    /// enqueued before this returns, so UIDs follow the order of calls.
    pub fn start(&mut self, message: ImportMessage) -> Result<Started> {
        if message.body.len() > MAX_MESSAGE {
            bail!("message of {} bytes is too large", message.body.len());
        }
        let shard = self.shard;
        let hash = sha256(&message.body);
        let (id, duplicate) = {
            let target = self.target(&message.mailbox)?;
            (target.id, target.existing.contains(&hash))
        };
        if duplicate {
            return Ok(Started::Duplicate);
        }
        let request = AppendRequest {
            body: message.body,
            internal_date: message.internal_date,
            targets: vec![AppendTarget {
                mailbox: id,
                flags: message.flags,
            }],
        };
        let store = self.store.clone();
        let mut pending: PendingAppend =
            Box::pin(async move { store.append(shard, request).await });
        // The store allocates the UID when the request is queued, which `append` does on its
        // first poll: poll once now so that UIDs follow the input order even with many
        // appends in flight. Polling again later with a real waker is how it is awaited.
        let mut cx = TaskContext::from_waker(Waker::noop());
        match pending.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Ok(Started::Queued(Box::pin(std::future::ready(result)))),
            Poll::Pending => Ok(Started::Queued(pending)),
        }
    }
}

/// The first UID of a durable append.
pub fn appended_uid(result: Result<Vec<Appended>, StoreError>) -> Result<u32> {
    let appended = result?;
    appended
        .first()
        .map(|a| a.uid)
        .ok_or_else(|| anyhow!("the store reported no UID"))
}

/// Every message of the account's mailboxes (`None`: all of them), one at a time, in
/// mailbox name order (INBOX first) then UID order.
pub fn export_plan(store: &Store, account: &str, mailbox: Option<&str>) -> Result<ExportPlan> {
    let mut boxes = store.mailboxes(account);
    boxes.sort_by(|a, b| {
        (a.name != "INBOX", a.name.as_str()).cmp(&(b.name != "INBOX", b.name.as_str()))
    });
    if let Some(name) = mailbox {
        boxes.retain(|b| b.name == name);
        if boxes.is_empty() {
            bail!("{account} has no mailbox {name:?}");
        }
    }
    let mut items = VecDeque::new();
    let mut bytes = 0u64;
    for info in boxes {
        let messages = store.messages(info.id);
        bytes += messages.iter().map(|m| m.size).sum::<u64>();
        items.push_back((info.name, messages));
    }
    Ok(ExportPlan {
        store: store.clone(),
        messages: items.iter().map(|(_, m)| m.len() as u64).sum(),
        bytes,
        mailboxes: items.iter().map(|(n, _)| n.clone()).collect(),
        items,
        position: 0,
    })
}

/// See [`export_plan`].
pub struct ExportPlan {
    store: Store,
    items: VecDeque<(String, Vec<postern_store::MessageMeta>)>,
    position: usize,
    pub mailboxes: Vec<String>,
    pub messages: u64,
    pub bytes: u64,
}

impl ExportPlan {
    /// The next message, read and checksum-verified from the store.
    pub fn next_message(&mut self) -> Option<Result<ExportMessage>> {
        loop {
            let (name, metas) = self.items.front()?;
            if let Some(meta) = metas.get(self.position) {
                self.position += 1;
                return Some(
                    self.store
                        .read_message(meta)
                        .map(|body| ExportMessage {
                            mailbox: name.clone(),
                            uid: meta.uid,
                            flags: meta.flags.clone(),
                            internal_date: meta.internal_date,
                            body,
                        })
                        .with_context(|| format!("reading {name} UID {}", meta.uid)),
                );
            }
            self.items.pop_front();
            self.position = 0;
        }
    }
}

// ---- the CLI side ------------------------------------------------------------------------

/// Where imported messages go.
pub trait Sink {
    /// Queues one message; errors of earlier messages may surface here.
    fn submit(&mut self, message: ImportMessage) -> Result<()>;
    /// Waits until everything queued is durable.
    fn finish(&mut self) -> Result<()>;
    fn summary(&self) -> &ImportSummary;
}

/// Counts of an import.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    pub imported: u64,
    pub duplicates: u64,
    pub bytes: u64,
    pub mailboxes: Vec<String>,
}

impl ImportSummary {
    fn note_mailbox(&mut self, name: &str) {
        if !self.mailboxes.iter().any(|m| m == name) {
            self.mailboxes.push(name.to_string());
        }
    }
}

/// Imports into the store opened by this process (posternd stopped).
pub struct DirectSink {
    importer: Importer,
    store: Store,
    runtime: tokio::runtime::Runtime,
    pending: VecDeque<(PendingAppend, String, usize)>,
    pending_bytes: usize,
    summary: ImportSummary,
}

impl DirectSink {
    pub fn open(config: &Config, account: &str) -> Result<DirectSink> {
        let options = crate::server::store_options(config, None);
        let store = Store::open(options).map_err(|e| match e {
            StoreError::Locked(_) => anyhow!(
                "the store is in use by another process and posternd's admin socket {} does not answer",
                config.admin_socket_path().display()
            ),
            e => anyhow!(e).context("opening the store"),
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .context("starting a runtime")?;
        Ok(DirectSink {
            importer: Importer::new(store.clone(), account.to_string()),
            store,
            runtime,
            pending: VecDeque::new(),
            pending_bytes: 0,
            summary: ImportSummary::default(),
        })
    }

    fn complete_one(&mut self) -> Result<()> {
        if let Some((pending, origin, size)) = self.pending.pop_front() {
            self.pending_bytes -= size;
            let result = self.runtime.block_on(pending);
            appended_uid(result).with_context(|| format!("{origin}: storing the message"))?;
            self.summary.imported += 1;
            self.summary.bytes += size as u64;
        }
        Ok(())
    }
}

impl Sink for DirectSink {
    fn submit(&mut self, message: ImportMessage) -> Result<()> {
        let origin = message.origin.clone();
        let size = message.body.len();
        self.summary.note_mailbox(&message.mailbox);
        match self
            .importer
            .start(message)
            .with_context(|| origin.clone())?
        {
            Started::Duplicate => self.summary.duplicates += 1,
            Started::Queued(pending) => {
                self.pending.push_back((pending, origin, size));
                self.pending_bytes += size;
            }
        }
        while self.pending.len() > WINDOW_MESSAGES
            || (self.pending_bytes > WINDOW_BYTES && self.pending.len() > 1)
        {
            self.complete_one()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.complete_one()?;
        }
        self.store.shutdown();
        Ok(())
    }

    fn summary(&self) -> &ImportSummary {
        &self.summary
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress(total_bytes: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(verb.to_string());
    bar
}

/// Human-readable byte count for summaries.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// What to import from / export to.
#[derive(Debug, Clone)]
pub enum Format {
    Maildir(PathBuf),
    Mbox(PathBuf),
}

/// The account key of a user address, checked against the accounts file.
fn account_of(config: &Config, user: &str) -> Result<String> {
    let account = postern_accounts::normalize_address(user)
        .map_err(|e| anyhow!("invalid user address {user:?}: {e}"))?;
    let accounts = postern_accounts::AccountStore::open(config.data_dir())
        .and_then(|s| s.load())
        .with_context(|| format!("loading accounts from {}", config.data_dir().display()))?;
    if accounts.user(&account).is_none() {
        bail!("no such user {account}");
    }
    Ok(account)
}

/// `postern mailbox import`.
pub fn import(config: &Config, user: &str, format: &Format, mailbox: Option<&str>) -> Result<()> {
    let account = account_of(config, user)?;
    if let Some(name) = mailbox {
        check_mailbox_name(name)?;
    }
    // Read the source's shape (folders, sizes) before touching the store, so an unusable
    // input fails before anything is written.
    let plan = match format {
        Format::Maildir(dir) => Source::Maildir(maildir::scan(dir, mailbox)?),
        Format::Mbox(path) => Source::Mbox(mbox::scan(path, mailbox)?),
    };
    let socket = config.admin_socket_path();
    let mut sink: Box<dyn Sink> = match remote::RemoteSink::connect(&socket, &account)? {
        Some(remote) => Box::new(remote),
        None => Box::new(DirectSink::open(config, &account)?),
    };
    let bar = progress(plan.bytes(), "import");
    let read = match &plan {
        Source::Maildir(scan) => maildir::import(scan, sink.as_mut(), &bar),
        Source::Mbox(scan) => mbox::import(scan, sink.as_mut(), &bar),
    };
    // Also after a read error: what was queued before it is waited for (and counted), so
    // the summary tells exactly what is stored.
    let finished = sink.finish();
    let result = read.and(finished);
    bar.finish_and_clear();
    let s = sink.summary().clone();
    let line = format!(
        "imported {} messages ({}) into {} mailbox(es) of {account} [{}]; {} duplicates skipped",
        s.imported,
        human_bytes(s.bytes),
        s.mailboxes.len(),
        s.mailboxes.join(", "),
        s.duplicates
    );
    match result {
        Ok(()) => {
            println!("{line}");
            Ok(())
        }
        Err(error) => {
            // What was acknowledged before the error is durable; say so.
            eprintln!("postern: before the error: {line}");
            Err(error)
        }
    }
}

enum Source {
    Maildir(maildir::Scan),
    Mbox(mbox::Scan),
}

impl Source {
    fn bytes(&self) -> u64 {
        match self {
            Source::Maildir(s) => s.bytes,
            Source::Mbox(s) => s.bytes,
        }
    }
}

/// Messages to export, from the store or the daemon.
pub trait ExportSource {
    fn next_message(&mut self) -> Option<Result<ExportMessage>>;
    fn totals(&self) -> (u64, u64);
    fn close(&mut self) {}
}

/// Reads the store opened read-only by this process (posternd stopped).
pub struct DirectSource {
    store: Store,
    plan: ExportPlan,
}

impl DirectSource {
    pub fn open(config: &Config, account: &str, mailbox: Option<&str>) -> Result<DirectSource> {
        let mut options = crate::server::store_options(config, None);
        options.read_only = true;
        let store = Store::open(options).context("opening the store read-only")?;
        let plan = export_plan(&store, account, mailbox)?;
        Ok(DirectSource { store, plan })
    }
}

impl ExportSource for DirectSource {
    fn next_message(&mut self) -> Option<Result<ExportMessage>> {
        self.plan.next_message()
    }
    fn totals(&self) -> (u64, u64) {
        (self.plan.messages, self.plan.bytes)
    }
    fn close(&mut self) {
        self.store.shutdown();
    }
}

/// `postern mailbox export`. `mailbox` None exports every mailbox (`--all`).
pub fn export(config: &Config, user: &str, format: &Format, mailbox: Option<&str>) -> Result<()> {
    let account = postern_accounts::normalize_address(user)
        .map_err(|e| anyhow!("invalid user address {user:?}: {e}"))?;
    let socket = config.admin_socket_path();
    let mut source: Box<dyn ExportSource> =
        match remote::RemoteSource::connect(&socket, &account, mailbox)? {
            Some(remote) => Box::new(remote),
            None => Box::new(DirectSource::open(config, &account, mailbox)?),
        };
    let (messages, bytes) = source.totals();
    let bar = progress(bytes, "export");
    let mut writer: Box<dyn ExportWriter> = match format {
        Format::Maildir(dir) => Box::new(maildir::Writer::new(dir, mailbox.is_none())?),
        Format::Mbox(path) => Box::new(mbox::Writer::new(path, mailbox.is_none())?),
    };
    let mut count = 0u64;
    let mut written = 0u64;
    let result = (|| -> Result<()> {
        while let Some(message) = source.next_message() {
            let message = message?;
            written += message.body.len() as u64;
            writer.write(&message)?;
            count += 1;
            bar.inc(message.body.len() as u64);
            bar.set_message(format!("{count}/{messages} messages"));
        }
        writer.finish()
    })();
    source.close();
    bar.finish_and_clear();
    result?;
    let target = match format {
        Format::Maildir(p) | Format::Mbox(p) => p.display().to_string(),
    };
    println!(
        "exported {count} messages ({}) to {target}",
        human_bytes(written)
    );
    Ok(())
}

/// Writes exported messages in one format.
pub trait ExportWriter {
    fn write(&mut self, message: &ExportMessage) -> Result<()>;
    /// Makes what was written durable.
    fn finish(&mut self) -> Result<()>;
}

/// Flushes every file of the filesystem holding `path` (one syncfs for a whole export).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let dir = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_normalisation() {
        let mut out = Vec::new();
        lf_to_crlf(b"a\nb\r\nc\n\nd", &mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n\r\nd");
    }

    #[test]
    fn mailbox_names() {
        assert!(check_mailbox_name("Lists/rust").is_ok());
        assert!(check_mailbox_name("Lists//rust").is_err());
        assert!(check_mailbox_name("").is_err());
        assert!(check_mailbox_name("a\u{7}").is_err());
    }

    fn store(dir: &Path) -> Store {
        let mut options = postern_store::StoreOptions::new(dir);
        options.backend = postern_store::BackendChoice::Portable;
        options.segment_bytes = 1 << 20;
        Store::open(options).unwrap()
    }

    fn message(mailbox: &str, body: &[u8]) -> ImportMessage {
        ImportMessage {
            mailbox: mailbox.into(),
            flags: vec!["\\Seen".into()],
            internal_date: 1_700_000_000,
            body: body.to_vec(),
            origin: "test".into(),
        }
    }

    #[test]
    fn importer_keeps_order_and_skips_existing() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut queued = Vec::new();
        {
            let mut importer = Importer::new(store(dir.path()), "a@x.test".into());
            for i in 0..50 {
                let body = format!("Subject: {i}\r\n\r\nbody\r\n");
                match importer
                    .start(message("Lists/rust", body.as_bytes()))
                    .unwrap()
                {
                    Started::Queued(p) => queued.push(p),
                    Started::Duplicate => panic!("duplicate"),
                }
            }
            let uids: Vec<u32> = queued
                .drain(..)
                .rev()
                .map(|p| appended_uid(rt.block_on(p)).unwrap())
                .collect();
            let expect: Vec<u32> = (1..=50).rev().collect();
            assert_eq!(uids, expect, "UIDs follow the order of start()");
        }
        // A second run (a new importer, as a rerun would have) skips every message.
        let s = store(dir.path());
        let mut importer = Importer::new(s.clone(), "a@x.test".into());
        for i in 0..50 {
            let body = format!("Subject: {i}\r\n\r\nbody\r\n");
            assert!(matches!(
                importer
                    .start(message("Lists/rust", body.as_bytes()))
                    .unwrap(),
                Started::Duplicate
            ));
        }
        let info = s.find_mailbox("a@x.test", "Lists/rust").unwrap();
        assert_eq!(info.exists, 50);
        let mut plan = export_plan(&s, "a@x.test", None).unwrap();
        assert_eq!(plan.messages, 50);
        let first = plan.next_message().unwrap().unwrap();
        assert_eq!(first.uid, 1);
        assert_eq!(first.body, b"Subject: 0\r\n\r\nbody\r\n");
        assert_eq!(first.flags, vec!["\\Seen".to_string()]);
        assert!(export_plan(&s, "a@x.test", Some("Nope")).is_err());
    }
}
