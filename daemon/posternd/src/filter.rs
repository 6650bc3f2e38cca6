//! The spam filter in the daemon (`[filter]`): judges MX mail at the end of DATA (one call
//! from the SMTP driver's `deliver`), routes it to the INBOX or Junk or refuses it, and
//! trains the token databases when users move mail into or out of Junk over IMAP.
//!
//! The filtering itself (tokenizer, classifier, databases, lists, combiner) is the
//! `postern-filter` crate; this module owns its state in the daemon:
//! - `<data_dir>/filter/global.*`: the global base, trained by every user's moves;
//! - `<data_dir>/filter/u-<hash>.*`: one database per user (the hash of the address keeps
//!   odd characters out of file names);
//! - `<data_dir>/filter/lists.json`: the per-user allow and block lists.
//!
//! Fail-safe (DESIGN.md 2): a failure of the filter (a database that cannot be read, a task
//! that panicked) delivers to the INBOX, logs the error-level `filter.failed` event and
//! counts `postern_filter_failures_total`; mail is never dropped because of it. Training
//! runs on its own thread behind a bounded queue, so an IMAP MOVE is answered as soon as
//! the store has committed it; a full queue skips the training (`filter.train_skipped`),
//! never the move.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, Context, Result};
use postern_config::{BlockAction, Config};
use postern_filter::db::{message_digest, Class, Settings as DbSettings, TokenDb};
use postern_filter::dnsbl::{Kind, Listed};
use postern_filter::lists::{self, ListFile, SenderLists};
use postern_filter::verdict::{combine, Decision, DnsWeights, SenderAuth, VerdictInput};
use postern_filter::{classify, tokenize, ClassifierSettings, TokenizerLimits};
use postern_smtp::Reply;
use postern_store::{AppendTarget, MailboxId, MailboxInfo, MessageMeta, Store};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::server::Shared;

type Labels = Vec<(&'static str, String)>;

/// Training jobs waiting for the trainer thread; more are skipped (and counted).
const TRAIN_QUEUE: usize = 256;
/// User databases held open at once; past it, the idle ones are closed.
const MAX_OPEN_DBS: usize = 64;
/// The file of per-user lists in `<data_dir>/filter`.
pub const LISTS_FILE: &str = "lists.json";
/// The special-use attribute of Junk (RFC 6154 2).
const JUNK: &str = "\\Junk";

#[derive(Clone, Default)]
pub struct FilterMetrics {
    /// Verdicts per recipient, by verdict (deliver, junk, reject) and reason.
    pub verdicts: Family<Labels, Counter>,
    /// Filter failures (the message went to the INBOX unfiltered): the alert counter.
    pub failures: Counter,
    /// Messages learned, by class (spam, ham).
    pub trained: Family<Labels, Counter>,
    /// Training jobs skipped because the queue was full or the trainer failed.
    pub train_skipped: Counter,
    /// DNS block list answers that count, by kind (dnsbl, uribl), list and result (listed;
    /// failed: timeout or DNS failure, counted as not listing).
    pub dnsbl_results: Family<Labels, Counter>,
}

impl FilterMetrics {
    pub fn register(registry: &mut Registry) -> FilterMetrics {
        let m = FilterMetrics::default();
        registry.register(
            "postern_filter_verdicts",
            "Spam filter verdicts per recipient of MX mail, by verdict and reason",
            m.verdicts.clone(),
        );
        registry.register(
            "postern_filter_failures",
            "Spam filter failures; the message was delivered to the INBOX unfiltered",
            m.failures.clone(),
        );
        registry.register(
            "postern_filter_trained",
            "Messages the spam filter learned from IMAP moves, by class",
            m.trained.clone(),
        );
        registry.register(
            "postern_filter_train_skipped",
            "Training jobs skipped (queue full or failed); the moves themselves succeeded",
            m.train_skipped.clone(),
        );
        registry.register(
            "postern_dnsbl_results",
            "DNS block list results by kind (dnsbl: client address, uribl: URL domains), list (zone) and result (listed, failed: timeout or DNS failure, counted as not listing)",
            m.dnsbl_results.clone(),
        );
        m
    }
}

/// Where one copy of a delivered message goes: the header to put on it and its mailboxes.
pub struct Routed {
    /// `X-Postern-Spam: ...\r\n`, or empty (filter off or failed).
    pub header: String,
    pub targets: Vec<AppendTarget>,
}

struct UserLists {
    file: ListFile,
    compiled: HashMap<String, Arc<SenderLists>>,
}

impl UserLists {
    fn new(file: ListFile) -> UserLists {
        let compiled = file
            .users
            .keys()
            .map(|user| (user.clone(), Arc::new(file.lists_of(user))))
            .collect();
        UserLists { file, compiled }
    }
}

struct TrainJob {
    user: String,
    class: Class,
    messages: Vec<MessageMeta>,
}

pub struct SpamFilter {
    enabled: bool,
    junk_threshold: f64,
    reject_threshold: f64,
    block_action: Decision,
    classifier: ClassifierSettings,
    db_settings: DbSettings,
    dir: PathBuf,
    global_lists: SenderLists,
    /// The per-user lists as on disk, and compiled (regexes built once, not per message).
    user_lists: RwLock<UserLists>,
    /// Open databases by key ("global" or the user's file stem).
    dbs: Mutex<HashMap<String, Arc<Mutex<TokenDb>>>>,
    trainer: Mutex<Option<SyncSender<TrainJob>>>,
    /// When `filter.train_skipped` was last logged.
    skip_logged: Mutex<Option<std::time::Instant>>,
    metrics: FilterMetrics,
}

impl SpamFilter {
    /// Reads the per-user lists (a damaged file stops the start, with its path) and
    /// prepares `<data_dir>/filter`. Databases open on first use.
    pub fn open(config: &Config, metrics: FilterMetrics) -> Result<Arc<SpamFilter>> {
        let f = &config.filter;
        let dir = filter_dir(config.data_dir());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let user_lists = ListFile::load(&dir.join(LISTS_FILE)).map_err(|e| anyhow!(e))?;
        let global_lists = SenderLists::parse(&f.allow, &f.block).map_err(|(i, allow, why)| {
            anyhow!(
                "[filter] {}[{i}]: {why}",
                if allow { "allow" } else { "block" }
            )
        })?;
        Ok(Arc::new(SpamFilter {
            enabled: f.enabled,
            junk_threshold: f.junk_threshold,
            reject_threshold: f.reject_threshold,
            block_action: match f.block_action {
                BlockAction::Reject => Decision::Reject,
                BlockAction::Junk => Decision::Junk,
            },
            classifier: ClassifierSettings {
                min_messages: u32::try_from(f.min_training).unwrap_or(u32::MAX),
                ..ClassifierSettings::default()
            },
            db_settings: DbSettings {
                max_tokens: usize::try_from(f.max_tokens).unwrap_or(usize::MAX),
                ..DbSettings::default()
            },
            dir,
            global_lists,
            user_lists: RwLock::new(UserLists::new(user_lists)),
            dbs: Mutex::new(HashMap::new()),
            trainer: Mutex::new(None),
            skip_logged: Mutex::new(None),
            metrics,
        }))
    }

    /// Starts the trainer thread (reads moved messages from the store and learns them).
    pub fn start_trainer(self: &Arc<Self>, store: Store) -> Result<()> {
        let (tx, rx) = sync_channel(TRAIN_QUEUE);
        let filter = self.clone();
        std::thread::Builder::new()
            .name("filter-trainer".into())
            .spawn(move || filter.train_loop(rx, store))
            .context("starting the filter trainer thread")?;
        if let Ok(mut t) = self.trainer.lock() {
            *t = Some(tx);
        }
        Ok(())
    }

    /// The database `key` if it is open already (never touches the disk).
    fn open_db(&self, key: &str) -> Option<SharedDb> {
        self.dbs.lock().ok()?.get(key).cloned()
    }

    /// The open database `key`, opened (and recovered) from disk on first use. Blocking.
    fn db(&self, key: &str) -> Result<Arc<Mutex<TokenDb>>> {
        let mut dbs = self
            .dbs
            .lock()
            .map_err(|_| anyhow!("filter database table poisoned"))?;
        if let Some(db) = dbs.get(key) {
            return Ok(db.clone());
        }
        if dbs.len() >= MAX_OPEN_DBS {
            // Bounded memory: the databases nobody is using are closed (everything they
            // learned is on disk) and reopen on their next use.
            dbs.retain(|k, db| k == "global" || Arc::strong_count(db) > 1);
        }
        let (db, report) = TokenDb::open(&self.dir, key, self.db_settings)
            .with_context(|| format!("opening filter database {key}"))?;
        if report.snapshot_corrupt || report.truncated_bytes > 0 {
            tracing::warn!(
                event = "filter.db_recovered",
                database = key,
                snapshot_corrupt = report.snapshot_corrupt,
                truncated_bytes = report.truncated_bytes,
                replayed = report.replayed
            );
        }
        let db = Arc::new(Mutex::new(db));
        dbs.insert(key.to_string(), db.clone());
        Ok(db)
    }

    /// One verdict per user for a message. Blocking: databases may open from disk.
    fn judge(
        &self,
        raw: &[u8],
        mail_from: &str,
        users: &[String],
        auth: Option<&SenderAuth>,
        dns: (&Listed, DnsWeights),
    ) -> Result<Vec<postern_filter::Verdict>> {
        self.judge_with(raw, mail_from, users, auth, dns, &|key| {
            self.db(key).map(Some)
        })?
        .ok_or_else(|| anyhow!("a filter database did not open"))
    }

    /// [`SpamFilter::judge`] when every database it needs is open already: CPU work only,
    /// which the SMTP worker does itself rather than hand to a blocking thread. `None` when
    /// a database would have to be read from disk first.
    fn judge_if_open(
        &self,
        raw: &[u8],
        mail_from: &str,
        users: &[String],
        auth: Option<&SenderAuth>,
        dns: (&Listed, DnsWeights),
    ) -> Result<Option<Vec<postern_filter::Verdict>>> {
        self.judge_with(raw, mail_from, users, auth, dns, &|key| {
            Ok(self.open_db(key))
        })
    }

    /// The verdict for one user at RCPT, before the message exists: the combiner with what
    /// is known then (the envelope sender against the allow and block lists, the client
    /// lists' weights) and no score. Used to refuse a client the DNS lists reject at RCPT
    /// as Postfix's reject_rbl_client does, without a second rule: the same combiner
    /// decides again at the end of DATA with everything.
    pub fn rcpt_verdict(
        &self,
        user: &str,
        mail_from: &str,
        dns: &Listed,
        weights: DnsWeights,
    ) -> Result<postern_filter::Verdict> {
        let user_lists = self
            .user_lists
            .read()
            .map_err(|_| anyhow!("filter lists poisoned"))?
            .compiled
            .get(user)
            .cloned()
            .unwrap_or_default();
        let list = lists::check(&user_lists, &self.global_lists, &[mail_from]);
        Ok(combine(&VerdictInput {
            score: &postern_filter::Score::untrained(),
            list: &list,
            auth: None,
            junk_threshold: self.junk_threshold,
            reject_threshold: self.reject_threshold,
            block_action: self.block_action,
            dns,
            dns_weights: weights,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Judges with the databases `db` gives; `None` as soon as it gives none.
    fn judge_with(
        &self,
        raw: &[u8],
        mail_from: &str,
        users: &[String],
        auth: Option<&SenderAuth>,
        (dns, dns_weights): (&Listed, DnsWeights),
        db: &dyn Fn(&str) -> Result<Option<SharedDb>>,
    ) -> Result<Option<Vec<postern_filter::Verdict>>> {
        let Some(global) = db("global")? else {
            return Ok(None);
        };
        let mut own_dbs = Vec::with_capacity(users.len());
        for user in users {
            let Some(own) = db(&user_key(user))? else {
                return Ok(None);
            };
            own_dbs.push(own);
        }
        let tokens = tokenize(raw, &TokenizerLimits::default());
        let mut senders = vec![mail_from.to_string()];
        senders.extend(from_addresses(raw));
        let senders: Vec<&str> = senders.iter().map(String::as_str).collect();
        let lists: Vec<Arc<SenderLists>> = {
            let all = self
                .user_lists
                .read()
                .map_err(|_| anyhow!("filter lists poisoned"))?;
            users
                .iter()
                .map(|u| all.compiled.get(u).cloned().unwrap_or_default())
                .collect()
        };
        let mut out = Vec::with_capacity(users.len());
        for (own, user_lists) in own_dbs.iter().zip(&lists) {
            let score = {
                let g = global
                    .lock()
                    .map_err(|_| anyhow!("filter database poisoned"))?;
                let u = own
                    .lock()
                    .map_err(|_| anyhow!("filter database poisoned"))?;
                classify(&tokens, &[&*u, &*g], &self.classifier)
            };
            let list = lists::check(user_lists, &self.global_lists, &senders);
            out.push(combine(&VerdictInput {
                score: &score,
                list: &list,
                auth,
                junk_threshold: self.junk_threshold,
                reject_threshold: self.reject_threshold,
                block_action: self.block_action,
                dns,
                dns_weights,
            }));
        }
        Ok(Some(out))
    }

    fn train_loop(&self, rx: Receiver<TrainJob>, store: Store) {
        while let Ok(job) = rx.recv() {
            if let Err(error) = self.train(&store, &job) {
                tracing::error!(event = "filter.failed", stage = "training", user = %job.user, error = %format!("{error:#}"));
                self.metrics.failures.inc();
                self.metrics.train_skipped.inc();
            }
        }
    }

    fn train(&self, store: &Store, job: &TrainJob) -> Result<()> {
        let own = self.db(&user_key(&job.user))?;
        let global = self.db("global")?;
        let day = u32::try_from(crate::login_guard::unix_now() / 86_400).unwrap_or(0);
        let mut learned = 0usize;
        for meta in &job.messages {
            let raw = match store.read_message(meta) {
                Ok(raw) => raw,
                // Expunged meanwhile: nothing to learn.
                Err(_) => continue,
            };
            let tokens = tokenize(&raw, &TokenizerLimits::default());
            let digest = message_digest(&raw);
            own.lock()
                .map_err(|_| anyhow!("filter database poisoned"))?
                .learn(digest, &tokens, job.class, day)?;
            global
                .lock()
                .map_err(|_| anyhow!("filter database poisoned"))?
                .learn(digest, &tokens, job.class, day)?;
            learned += 1;
            self.metrics
                .trained
                .get_or_create(&vec![("class", job.class.name().to_string())])
                .inc();
        }
        tracing::info!(event = "filter.trained", user = %job.user, class = job.class.name(), messages = learned);
        Ok(())
    }

    /// Queues training without waiting; a full queue skips it (the move stands).
    fn enqueue(&self, job: TrainJob) {
        let Ok(trainer) = self.trainer.lock() else {
            return;
        };
        let Some(tx) = trainer.as_ref() else { return };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.metrics.train_skipped.inc();
                // A user moving mail in a loop cannot write a line per move (DESIGN.md 6):
                // at most one a minute, with the count.
                let now = std::time::Instant::now();
                let Ok(mut last) = self.skip_logged.lock() else {
                    return;
                };
                if last.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(60))
                {
                    *last = Some(now);
                    tracing::warn!(event = "filter.train_skipped", user = %job.user, messages = job.messages.len(), skipped_total = self.metrics.train_skipped.get());
                }
            }
        }
    }

    // -- per-user lists, for the admin socket --------------------------------------------

    /// `filter-list USER`: the user's lists as JSON.
    pub fn lists_json(&self, user: &str) -> String {
        let lists = self
            .user_lists
            .read()
            .map(|l| l.file.users.get(user).cloned().unwrap_or_default());
        match lists.map(|l| serde_json::to_string(&l)) {
            Ok(Ok(json)) => format!("{json}\n"),
            _ => "error filter lists unavailable\n".to_string(),
        }
    }

    /// Adds or removes an entry and saves the file (atomically) before answering.
    pub fn edit_list(&self, user: &str, allow: bool, add: bool, entry: &str) -> String {
        let Ok(mut lists) = self.user_lists.write() else {
            return "error filter lists unavailable\n".to_string();
        };
        let mut edited = lists.file.clone();
        let changed = if add {
            edited.add(user, allow, entry)
        } else {
            edited.remove(user, allow, entry)
        };
        match changed {
            Err(why) => format!("error {why}\n"),
            Ok(false) if add => "ok already listed\n".to_string(),
            Ok(false) => format!("error {entry} is not listed\n"),
            Ok(true) => match edited.save(&self.dir.join(LISTS_FILE)) {
                Ok(()) => {
                    let compiled = Arc::new(edited.lists_of(user));
                    lists.file = edited;
                    lists.compiled.insert(user.to_string(), compiled);
                    let list = if allow { "allow" } else { "block" };
                    let action = if add { "added" } else { "removed" };
                    tracing::info!(event = "filter.list_changed", user, list, action, entry);
                    "ok\n".to_string()
                }
                Err(why) => format!("error {why}\n"),
            },
        }
    }
}

/// An open token database, shared by the SMTP workers and the trainer.
type SharedDb = Arc<Mutex<TokenDb>>;

pub fn filter_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("filter")
}

/// The database file stem of a user: `u-` and 32 hex digits of the address's SHA-256.
fn user_key(user: &str) -> String {
    let digest = message_digest(user.to_ascii_lowercase().as_bytes());
    let second = message_digest(format!("{user}\0").to_ascii_lowercase().as_bytes());
    format!("u-{digest:016x}{second:016x}")
}

/// The addresses of the From field (RFC 5322 3.6.2), lowercased.
fn from_addresses(raw: &[u8]) -> Vec<String> {
    postern_smtp::authors(raw)
        .map(|authors| {
            authors
                .into_iter()
                .filter(|a| a.field.name() == "From")
                .map(|a| a.address.to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

fn is_junk(info: &MailboxInfo) -> bool {
    info.special_use.as_deref() == Some(JUNK)
}

/// The user's Junk mailbox: the one with `\Junk`, else the one named Junk, else a new one
/// named Junk with `\Junk` (RFC 6154 2). Blocking.
fn junk_mailbox(store: &Store, user: &str) -> Result<MailboxId> {
    let all = store.mailboxes(user);
    if let Some(m) = all.iter().find(|m| is_junk(m)) {
        return Ok(m.id);
    }
    if let Some(m) = all.iter().find(|m| m.name.eq_ignore_ascii_case("Junk")) {
        return Ok(m.id);
    }
    Ok(store
        .ensure_mailbox(user, "Junk", Some(JUNK))
        .with_context(|| format!("creating Junk of {user}"))?
        .id)
}

/// The one call from the SMTP driver: where the message goes for each user, with the
/// header each copy carries, or the refusal. MX mail only (`filtered` false: submission,
/// everything to the INBOX without a header). `auth` is the sender-authentication result
/// when that check exists; `dns` what the DNS block lists said about the client and the
/// message's URLs.
pub async fn route(
    shared: &Shared,
    body: &[u8],
    mail_from: &str,
    users: &BTreeSet<String>,
    filtered: bool,
    auth: Option<SenderAuth>,
    dns: Listed,
) -> Result<Vec<Routed>, Reply> {
    let temporary_failure = || {
        Reply::new(
            451,
            Some((4, 3, 0)),
            "Local storage error, try again later".to_string(),
        )
    };
    let mut inboxes = BTreeMap::new();
    for user in users {
        match shared.inboxes.inbox(user).await {
            Ok(id) => {
                inboxes.insert(user.clone(), id);
            }
            Err(error) => {
                tracing::error!(event = "store.mailbox_failed", user = %user, error = %format!("{error:#}"));
                return Err(temporary_failure());
            }
        }
    }
    let unfiltered = |inboxes: BTreeMap<String, MailboxId>| {
        vec![Routed {
            header: String::new(),
            targets: inboxes
                .into_values()
                .map(|mailbox| AppendTarget {
                    mailbox,
                    flags: Vec::new(),
                })
                .collect(),
        }]
    };
    let filter = shared.filter.clone();
    if !filtered || !filter.enabled {
        return Ok(unfiltered(inboxes));
    }
    let list: Vec<String> = users.iter().cloned().collect();
    let weights = shared.dnsbl.as_ref().map(|d| d.weights).unwrap_or_default();
    // The common case: every database open and every recipient's mail for its INBOX. The
    // worker judges it itself; a handoff to a blocking thread and back costs more than that.
    let judged = match filter.judge_if_open(body, mail_from, &list, auth.as_ref(), (&dns, weights))
    {
        Ok(Some(verdicts)) if verdicts.iter().all(|v| v.decision == Decision::Deliver) => Ok(list
            .iter()
            .cloned()
            .zip(verdicts)
            .map(|(user, verdict)| (user, verdict, None))
            .collect()),
        Err(error) => Err(error),
        Ok(judged_here) => {
            // A database to read from disk, or a Junk mailbox to find or create: blocking.
            let (raw, from) = (body.to_vec(), mail_from.to_string());
            let store = shared.store.clone();
            let dns = dns.clone();
            tokio::task::spawn_blocking(
                move || -> Result<Vec<(String, postern_filter::Verdict, Option<MailboxId>)>> {
                    let verdicts = match judged_here {
                        Some(verdicts) => verdicts,
                        None => filter.judge(&raw, &from, &list, auth.as_ref(), (&dns, weights))?,
                    };
                    let mut out = Vec::with_capacity(verdicts.len());
                    for (user, verdict) in list.into_iter().zip(verdicts) {
                        let junk = match verdict.decision {
                            Decision::Deliver => None,
                            Decision::Junk | Decision::Reject => Some(junk_mailbox(&store, &user)?),
                        };
                        out.push((user, verdict, junk));
                    }
                    Ok(out)
                },
            )
            .await
            .map_err(|e| anyhow!("filter task: {e}"))
            .and_then(|r| r)
        }
    };
    let judged = match judged {
        Ok(judged) => judged,
        Err(error) => {
            // Fail-safe: never lose mail to a filter problem; the alert is the error event.
            tracing::error!(event = "filter.failed", stage = "verdict", error = %format!("{error:#}"));
            shared.filter.metrics.failures.inc();
            return Ok(unfiltered(inboxes));
        }
    };
    for (_, verdict, _) in &judged {
        shared
            .filter
            .metrics
            .verdicts
            .get_or_create(&vec![
                ("verdict", verdict.decision.name().to_string()),
                ("reason", verdict.reason.to_string()),
            ])
            .inc();
    }
    if judged
        .iter()
        .all(|(_, v, _)| v.decision == Decision::Reject)
    {
        let why = judged.first().map(|(_, v, _)| v.reason).unwrap_or("policy");
        tracing::info!(
            event = "filter.rejected",
            reason = why,
            recipients = judged.len()
        );
        let text = match why {
            "block" => {
                "Message refused: the sender is blocked by the recipient's policy".to_string()
            }
            "auth" => "Message refused: sender authentication failed under the sender's policy"
                .to_string(),
            "dnsbl" => format!("Message refused: {}", listed_by(&dns)),
            _ => "Message refused as spam".to_string(),
        };
        // RFC 5321 4.2.5 (a 5yz reply to the end of data) and RFC 3463 X.7.1 (delivery not
        // authorized, message refused).
        return Err(Reply::new(550, Some((5, 7, 1)), text));
    }
    // One stored copy per distinct header; a user refusing while others accept gets Junk.
    let mut by_header: BTreeMap<String, Vec<AppendTarget>> = BTreeMap::new();
    for (user, verdict, junk) in judged {
        let mailbox = match (verdict.decision, junk) {
            (Decision::Deliver, _) | (_, None) => inboxes.get(&user).copied(),
            (_, Some(junk)) => Some(junk),
        };
        if let Some(mailbox) = mailbox {
            tracing::debug!(event = "filter.verdict", user = %user, verdict = verdict.decision.name(), reason = verdict.reason);
            by_header
                .entry(verdict.header)
                .or_default()
                .push(AppendTarget {
                    mailbox,
                    flags: Vec::new(),
                });
        }
    }
    Ok(by_header
        .into_iter()
        .map(|(header, targets)| Routed { header, targets })
        .collect())
}

/// "client [192.0.2.1] blocked using zen.example; URL domains blocked using uribl.example":
/// the lists named, as Postfix names them in its reject_rbl_client replies.
pub fn listed_by(dns: &Listed) -> String {
    let mut parts = Vec::new();
    if let Some(hit) = dns.hits.iter().find(|h| h.kind == Kind::Client) {
        parts.push(format!(
            "client [{}] blocked using {}",
            hit.listed,
            dns.zones(Kind::Client).join(", ")
        ));
    }
    let uri = dns.zones(Kind::Uri);
    if !uri.is_empty() {
        parts.push(format!("URL domains blocked using {}", uri.join(", ")));
    }
    parts.join("; ")
}

/// Called by IMAP COPY/MOVE (and their UID forms) after the store committed them: moving
/// or copying into Junk from elsewhere learns spam; out of Junk into anything but Trash
/// learns ham (RFC 6154 2: `\Junk`, `\Trash`). Only queues the work.
pub fn on_copy(
    shared: &Shared,
    user: &str,
    source: MailboxId,
    dest: &MailboxInfo,
    dest_uids: &[u32],
) {
    let filter = &shared.filter;
    if !filter.enabled || dest_uids.is_empty() {
        return;
    }
    let Some(src) = shared.store.mailbox(source) else {
        return;
    };
    let class = match (is_junk(&src), is_junk(dest)) {
        (false, true) => Class::Spam,
        (true, false) if dest.special_use.as_deref() != Some("\\Trash") => Class::Ham,
        _ => return,
    };
    let messages = shared.store.messages_by_uid(dest.id, dest_uids);
    filter.enqueue(TrainJob {
        user: user.to_string(),
        class,
        messages,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_are_file_safe_and_distinct() {
        let a = user_key("alice@example.test");
        assert_eq!(a, user_key("Alice@Example.TEST"));
        assert_ne!(a, user_key("bob@example.test"));
        assert!(a.len() == 34 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(user_key("../x"), "global");
    }
}
