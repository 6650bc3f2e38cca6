//! Brute-force defence for every login service (SMTP AUTH, IMAP, POP3; DESIGN.md section 2,
//! "Accounts and login security"), in the manner of fail2ban but inside the daemon, where
//! the outcome of each check is known without parsing logs:
//!
//! * Failed logins are counted per client address (an IPv6 client's whole /64, which any
//!   host gets for free) and per account, over a window that starts at the first failure.
//!   At the threshold the address or the account is banned for a fixed time.
//! * A banned address cannot log in to any service, even with the right password; the check
//!   happens before the password is looked at (the verified-credential cache included), so a
//!   ban cannot be probed for right guesses.
//! * A banned account (a spray from many addresses) is still open to the last addresses it
//!   logged in from, so an attacker cannot lock its owner out.
//! * Allow-listed networks are never counted or banned.
//! * Bans are kept in `<data_dir>/bans.json`, replaced atomically whenever one is added or
//!   removed, and loaded at start: a restart lifts none. Expired bans are dropped on load and
//!   left out of every write.
//! * Each account keeps a bounded history of its logins, in memory.
//!
//! All times are Unix seconds, taken by the caller, so the rules are tested without clocks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use ipnet::IpNet;
use postern_config::AuthConfig;
use serde::{Deserialize, Serialize};

/// The bans file in the data directory.
pub const BANS_FILE: &str = "bans.json";
const FORMAT_VERSION: u32 = 1;
/// Failure counters kept per kind (addresses, accounts). A flood from more sources than this
/// evicts the oldest counters first, so memory stays bounded (about 100 bytes each).
const MAX_COUNTERS: usize = 100_000;
/// Bans kept at once; beyond this, new bans are refused (and logged) rather than letting a
/// botnet grow the bans file without bound.
const MAX_BANS: usize = 100_000;
/// Addresses remembered per account as ones it logged in from (a user's phone, laptop, home
/// and office), which an account ban does not refuse.
const KNOWN_ADDRESSES: usize = 16;
/// The prefix that identifies one IPv6 client: a /64 is what a single subscriber gets.
const IPV6_CLIENT_PREFIX: u8 = 64;

/// Seconds since the Unix epoch (the clock bans are written in, so they survive a restart).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a ban or a failure counter applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A client: an IPv4 address (/32) or an IPv6 /64.
    Address(IpNet),
    /// An account, by its canonical address.
    Account(String),
}

impl Target {
    /// The client an address belongs to: itself for IPv4, its /64 for IPv6.
    pub fn of_address(ip: IpAddr) -> Target {
        Target::Address(client_network(ip))
    }

    /// Parses what an admin types: an account (contains `@`), an address, or a network.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if text.contains('@') {
            return postern_accounts::normalize_address(text)
                .map(Target::Account)
                .map_err(|e| format!("{text:?}: {e}"));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Target::of_address(ip));
        }
        text.parse::<IpNet>()
            .map(|net| Target::Address(net.trunc()))
            .map_err(|_| format!("{text:?} is neither an account, an IP address nor a network"))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Address(_) => "address",
            Target::Account(_) => "account",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An IPv4 client is shown as the plain address an admin would look up.
            Target::Address(IpNet::V4(net)) if net.prefix_len() == 32 => {
                write!(f, "{}", net.addr())
            }
            Target::Address(net) => write!(f, "{net}"),
            Target::Account(account) => f.write_str(account),
        }
    }
}

/// The client an address belongs to: itself for IPv4, its /64 for IPv6 (also the key of
/// the per-client message rate, `crate::connection_limits::RateLimits`).
pub fn client_network(ip: IpAddr) -> IpNet {
    // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), IPV6_CLIENT_PREFIX)
            .map_or_else(|_| IpNet::from(IpAddr::V6(v6)), |net| net.trunc()),
    }
}

/// One ban: when it started, when it ends, and the failures that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub since: u64,
    pub until: u64,
    pub failures: u64,
}

/// The thresholds, from `[auth]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// 0 = no address bans.
    pub address_failures: u64,
    /// 0 = no account bans.
    pub account_failures: u64,
    pub window_secs: u64,
    pub duration_secs: u64,
    pub allow: Vec<IpNet>,
    pub history_entries: usize,
}

impl Settings {
    pub fn from_config(config: &AuthConfig) -> Settings {
        Settings {
            address_failures: config.ban_address_failures,
            account_failures: config.ban_account_failures,
            window_secs: config.ban_window_secs,
            duration_secs: config.ban_duration_secs,
            allow: config.ban_allow_networks(),
            history_entries: usize::try_from(config.login_history_entries).unwrap_or(usize::MAX),
        }
    }
}

/// How a login attempt ended, for the history and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginResult {
    /// The credentials were right.
    Accepted,
    /// The credentials were wrong (counted).
    Failed,
    /// Refused by a ban before the credentials were looked at (not counted).
    Blocked,
}

/// One entry of an account's login history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginRecord {
    pub time: u64,
    pub address: IpAddr,
    pub service: &'static str,
    pub mechanism: String,
    pub result: LoginResult,
}

/// Failures counted since `start`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    count: u64,
}

#[derive(Default)]
struct State {
    address_failures: HashMap<IpNet, Window>,
    account_failures: HashMap<String, Window>,
    bans: BTreeMap<Target, Ban>,
    history: HashMap<String, VecDeque<LoginRecord>>,
    /// Per account, the addresses it last logged in from, newest last: kept apart from the
    /// history so that a spray of failures cannot push them out.
    known: HashMap<String, VecDeque<IpAddr>>,
    /// The bans changed since the file was last written.
    dirty: bool,
    /// A writer is running ([`LoginGuard::claim_writer`]).
    writing: bool,
}

pub struct LoginGuard {
    settings: Settings,
    file: Option<BanFile>,
    state: Mutex<State>,
}

impl LoginGuard {
    /// A guard without a bans file (tests, and tools that only read).
    pub fn in_memory(settings: Settings) -> LoginGuard {
        LoginGuard {
            settings,
            file: None,
            state: Mutex::new(State::default()),
        }
    }

    /// The daemon's guard: bans still in force in `<data_dir>/bans.json` are loaded. An
    /// unreadable file is an error, so that a start never silently lifts bans.
    pub fn open(settings: Settings, data_dir: &Path, now: u64) -> Result<LoginGuard> {
        let file = BanFile::new(data_dir);
        let bans = file.load(now)?;
        Ok(LoginGuard {
            settings,
            file: Some(file),
            state: Mutex::new(State {
                bans,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are still consistent enough
        // to use: each update is a few field writes.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.settings.allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether a login from `ip` to `account` (canonical, when it names an existing account)
    /// may be checked at all. `Err` names the ban in force.
    pub fn admit(&self, ip: IpAddr, account: Option<&str>, now: u64) -> Result<(), (Target, Ban)> {
        if self.allowed(ip) {
            return Ok(());
        }
        let mut state = self.lock();
        let address = Target::of_address(ip);
        if let Some(ban) = active(&mut state.bans, &address, now) {
            return Err((address, ban));
        }
        if let Some(account) = account {
            let target = Target::Account(account.to_string());
            if let Some(ban) = active(&mut state.bans, &target, now) {
                let known = state
                    .known
                    .get(account)
                    .is_some_and(|k| k.contains(&ip.to_canonical()));
                if !known {
                    return Err((target, ban));
                }
            }
        }
        Ok(())
    }

    /// Records the outcome of a login attempt: in the account's history (when `account`
    /// names an existing account) and, for a failure, in the counters. Returns the bans this
    /// failure started.
    pub fn record(
        &self,
        ip: IpAddr,
        account: Option<&str>,
        service: &'static str,
        mechanism: &str,
        result: LoginResult,
        now: u64,
    ) -> Vec<(Target, Ban)> {
        let mut state = self.lock();
        if let (Some(account), true) = (account, self.settings.history_entries > 0) {
            let history = state.history.entry(account.to_string()).or_default();
            if history.len() >= self.settings.history_entries {
                history.pop_front();
            }
            history.push_back(LoginRecord {
                time: now,
                address: ip,
                service,
                mechanism: mechanism.to_string(),
                result,
            });
        }
        if let (Some(account), LoginResult::Accepted) = (account, result) {
            let known = state.known.entry(account.to_string()).or_default();
            let ip = ip.to_canonical();
            known.retain(|a| *a != ip);
            if known.len() >= KNOWN_ADDRESSES {
                known.pop_front();
            }
            known.push_back(ip);
        }
        if result != LoginResult::Failed || self.allowed(ip) {
            return Vec::new();
        }
        let mut banned = Vec::new();
        let s = &self.settings;
        let address = client_network(ip);
        if count(
            &mut state.address_failures,
            address,
            s,
            s.address_failures,
            now,
        ) {
            banned.push((Target::Address(address), s.address_failures));
        }
        if let Some(account) = account {
            let key = account.to_string();
            if count(&mut state.account_failures, key, s, s.account_failures, now) {
                banned.push((Target::Account(account.to_string()), s.account_failures));
            }
        }
        let mut added = Vec::new();
        for (target, failures) in banned {
            if state.bans.len() >= MAX_BANS {
                state.bans.retain(|_, ban| ban.until > now);
                if state.bans.len() >= MAX_BANS {
                    tracing::error!(event = "auth.ban.refused", target = %target, reason = "too many bans");
                    continue;
                }
            }
            let ban = Ban {
                since: now,
                until: now.saturating_add(s.duration_secs),
                failures,
            };
            state.bans.insert(target.clone(), ban);
            state.dirty = true;
            added.push((target, ban));
        }
        added
    }

    /// The bans in force, ordered by target.
    pub fn bans(&self, now: u64) -> Vec<(Target, Ban)> {
        let state = self.lock();
        state
            .bans
            .iter()
            .filter(|(_, ban)| ban.until > now)
            .map(|(t, b)| (t.clone(), *b))
            .collect()
    }

    /// Lifts a ban and forgets the failures counted against its target, so that the next
    /// failure does not ban again at once. False when no ban was in force.
    pub fn remove(&self, target: &Target, now: u64) -> bool {
        let mut state = self.lock();
        match target {
            Target::Address(net) => {
                state.address_failures.remove(net);
            }
            Target::Account(account) => {
                state.account_failures.remove(account);
            }
        }
        let removed = state.bans.remove(target);
        if removed.is_some() {
            state.dirty = true;
        }
        removed.is_some_and(|ban| ban.until > now)
    }

    /// The account's login history, oldest first.
    pub fn history(&self, account: &str) -> Vec<LoginRecord> {
        let state = self.lock();
        state
            .history
            .get(account)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// True when the caller should run [`LoginGuard::write_pending`] (off the event loop):
    /// the bans changed and no writer runs yet. At most one writer runs at a time; bans added
    /// while it writes are picked up by its next round.
    pub fn claim_writer(&self) -> bool {
        let mut state = self.lock();
        if state.dirty && !state.writing && self.file.is_some() {
            state.writing = true;
            true
        } else {
            false
        }
    }

    /// Writes the bans file until it holds every change (blocking I/O). Each round writes the
    /// bans in force at that moment, so the last round always holds the newest state.
    pub fn write_pending(&self, now: u64) {
        let Some(file) = &self.file else {
            return;
        };
        loop {
            let snapshot = {
                let mut state = self.lock();
                if !state.dirty {
                    state.writing = false;
                    return;
                }
                state.dirty = false;
                state.bans.clone()
            };
            if let Err(error) = file.save(&snapshot, now) {
                // Kept dirty: the next change (or the shutdown flush) tries again.
                tracing::error!(event = "auth.bans_write_failed", path = %file.path.display(), error = %format!("{error:#}"));
                let mut state = self.lock();
                state.dirty = true;
                state.writing = false;
                return;
            }
        }
    }

    /// At shutdown: whatever is not yet written is written now.
    pub fn flush(&self, now: u64) {
        {
            let mut state = self.lock();
            if !state.dirty {
                return;
            }
            state.writing = true;
        }
        self.write_pending(now);
    }
}

/// Starts a writer on the blocking pool (the fsyncs stay off the event loop) when the bans
/// changed and no writer runs.
pub fn persist(guard: &std::sync::Arc<LoginGuard>) {
    if guard.claim_writer() {
        let guard = guard.clone();
        tokio::task::spawn_blocking(move || guard.write_pending(unix_now()));
    }
}

/// Bans as the admin socket and `postern ban list --json` show them: a JSON array of
/// `{"kind","target","since","until","failures"}`.
pub fn bans_json(bans: &[(Target, Ban)]) -> String {
    let records: Vec<BanRecord> = bans.iter().map(|(t, b)| BanRecord::new(t, b)).collect();
    serde_json::to_string(&records).unwrap_or_else(|_| "[]".to_string())
}

/// The ban on `target` if it is still in force; an expired one is dropped.
fn active(bans: &mut BTreeMap<Target, Ban>, target: &Target, now: u64) -> Option<Ban> {
    let ban = *bans.get(target)?;
    if ban.until > now {
        Some(ban)
    } else {
        bans.remove(target);
        None
    }
}

/// Counts one failure of `key`; true when it reaches `threshold` (the counter then starts
/// over). A window older than the configured one (or from a clock set back) starts anew.
fn count<K: std::hash::Hash + Eq + Clone>(
    counters: &mut HashMap<K, Window>,
    key: K,
    settings: &Settings,
    threshold: u64,
    now: u64,
) -> bool {
    if threshold == 0 {
        return false;
    }
    let expired = |w: &Window| now < w.start || now - w.start >= settings.window_secs;
    if !counters.contains_key(&key) && counters.len() >= MAX_COUNTERS {
        counters.retain(|_, w| !expired(w));
        if counters.len() >= MAX_COUNTERS {
            if let Some(oldest) = counters
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| k.clone())
            {
                counters.remove(&oldest);
            }
        }
    }
    let window = counters.entry(key.clone()).or_insert(Window {
        start: now,
        count: 0,
    });
    if expired(window) {
        *window = Window {
            start: now,
            count: 0,
        };
    }
    window.count += 1;
    if window.count >= threshold {
        counters.remove(&key);
        return true;
    }
    false
}

/// `<data_dir>/bans.json`: `{"version":1,"bans":[{"kind":"address","target":"192.0.2.7",
/// "since":...,"until":...,"failures":10}]}`. The CLI reads and edits it directly when no
/// daemon runs.
pub struct BanFile {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    bans: Vec<BanRecord>,
}

/// One ban as written in the file and shown by the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanRecord {
    pub kind: String,
    pub target: String,
    pub since: u64,
    pub until: u64,
    pub failures: u64,
}

impl BanRecord {
    fn new(target: &Target, ban: &Ban) -> BanRecord {
        BanRecord {
            kind: target.kind().to_string(),
            target: target.to_string(),
            since: ban.since,
            until: ban.until,
            failures: ban.failures,
        }
    }
}

impl BanFile {
    pub fn new(data_dir: &Path) -> BanFile {
        BanFile {
            path: data_dir.join(BANS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bans in force at `now`; none when the file does not exist.
    pub fn load(&self, now: u64) -> Result<BTreeMap<Target, Ban>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let file: FileFormat = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a bans file", self.path.display()))?;
        if file.version != FORMAT_VERSION {
            anyhow::bail!(
                "{}: format version {} is not supported (this build reads {FORMAT_VERSION})",
                self.path.display(),
                file.version
            );
        }
        let mut bans = BTreeMap::new();
        for record in file.bans {
            let target = match record.kind.as_str() {
                "address" | "account" => Target::parse(&record.target),
                other => Err(format!("unknown kind {other:?}")),
            }
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
            if target.kind() != record.kind {
                anyhow::bail!(
                    "{}: {} is not an {}",
                    self.path.display(),
                    record.target,
                    record.kind
                );
            }
            if record.until > now {
                let ban = Ban {
                    since: record.since,
                    until: record.until,
                    failures: record.failures,
                };
                bans.insert(target, ban);
            }
        }
        Ok(bans)
    }

    /// Replaces the file with the bans in force at `now` (atomically, durably).
    pub fn save(&self, bans: &BTreeMap<Target, Ban>, now: u64) -> Result<()> {
        let file = FileFormat {
            version: FORMAT_VERSION,
            bans: bans
                .iter()
                .filter(|(_, ban)| ban.until > now)
                .map(|(target, ban)| BanRecord::new(target, ban))
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file)?;
        json.push(b'\n');
        crate::files::replace_file_atomically(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;
    const ALICE: &str = "alice@example.test";

    fn settings() -> Settings {
        Settings {
            address_failures: 3,
            account_failures: 5,
            window_secs: 60,
            duration_secs: 100,
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            history_entries: 4,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn fail(guard: &LoginGuard, from: &str, account: Option<&str>, now: u64) -> usize {
        guard
            .record(ip(from), account, "imap", "LOGIN", LoginResult::Failed, now)
            .len()
    }

    #[test]
    fn an_address_is_banned_at_the_threshold_on_every_account_until_the_ban_ends() {
        let guard = LoginGuard::in_memory(settings());
        let attacker = "203.0.113.7";
        assert_eq!(fail(&guard, attacker, Some(ALICE), T0), 0);
        assert_eq!(fail(&guard, attacker, None, T0 + 1), 0);
        assert!(guard.admit(ip(attacker), Some(ALICE), T0 + 1).is_ok());
        let added = guard.record(
            ip(attacker),
            None,
            "pop3",
            "USER",
            LoginResult::Failed,
            T0 + 2,
        );
        let address = Target::of_address(ip(attacker));
        assert_eq!(
            added,
            vec![(
                address.clone(),
                Ban {
                    since: T0 + 2,
                    until: T0 + 102,
                    failures: 3
                }
            )]
        );
        // Any account, any service: the address is refused before its password is looked at.
        for account in [Some(ALICE), Some("bob@example.test"), None] {
            let refused = guard.admit(ip(attacker), account, T0 + 3).unwrap_err();
            assert_eq!(refused.0, address);
        }
        // Another address is not affected.
        assert!(guard.admit(ip("203.0.113.8"), Some(ALICE), T0 + 3).is_ok());
        assert_eq!(guard.bans(T0 + 101).len(), 1);
        // The ban ends at `until`, and is then gone.
        assert!(guard.admit(ip(attacker), Some(ALICE), T0 + 101).is_err());
        assert!(guard.admit(ip(attacker), Some(ALICE), T0 + 102).is_ok());
        assert!(guard.bans(T0 + 102).is_empty());
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let guard = LoginGuard::in_memory(settings());
        let a = "203.0.113.7";
        assert_eq!(fail(&guard, a, None, T0), 0);
        assert_eq!(fail(&guard, a, None, T0 + 59), 0);
        // The window (60 s from the first failure) has passed: this is failure 1 of a new one.
        assert_eq!(fail(&guard, a, None, T0 + 60), 0);
        assert_eq!(fail(&guard, a, None, T0 + 61), 0);
        assert!(guard.admit(ip(a), None, T0 + 61).is_ok());
        assert_eq!(fail(&guard, a, None, T0 + 62), 1);
        // A clock set back also starts anew instead of counting forever.
        let b = "203.0.113.9";
        assert_eq!(fail(&guard, b, None, T0), 0);
        assert_eq!(fail(&guard, b, None, T0 - 500), 0);
        assert_eq!(fail(&guard, b, None, T0 - 499), 0);
        assert_eq!(fail(&guard, b, None, T0 - 498), 1);
    }

    #[test]
    fn successes_and_blocked_attempts_are_not_counted() {
        let guard = LoginGuard::in_memory(settings());
        let a = ip("203.0.113.7");
        for result in [LoginResult::Accepted, LoginResult::Blocked] {
            for _ in 0..10 {
                assert!(guard
                    .record(a, Some(ALICE), "smtp", "PLAIN", result, T0)
                    .is_empty());
            }
        }
        assert!(guard.bans(T0).is_empty());
        // A success does not reset the count either: interleaving a known password with
        // guesses must not keep an address under the threshold.
        assert_eq!(fail(&guard, "203.0.113.7", Some(ALICE), T0), 0);
        assert_eq!(fail(&guard, "203.0.113.7", Some(ALICE), T0), 0);
        guard.record(a, Some(ALICE), "smtp", "PLAIN", LoginResult::Accepted, T0);
        assert_eq!(fail(&guard, "203.0.113.7", Some(ALICE), T0), 1);
    }

    #[test]
    fn an_allow_listed_address_is_never_counted_or_banned() {
        let guard = LoginGuard::in_memory(settings());
        for i in 0..50 {
            assert_eq!(fail(&guard, "192.0.2.44", Some(ALICE), T0 + i), 0);
        }
        assert!(guard.admit(ip("192.0.2.44"), Some(ALICE), T0 + 50).is_ok());
        assert!(guard.bans(T0 + 50).is_empty());
        // Even when the account it names is banned by failures from elsewhere.
        for i in 0..5 {
            fail(&guard, &format!("198.51.100.{i}"), Some(ALICE), T0);
        }
        assert!(guard.admit(ip("198.51.100.99"), Some(ALICE), T0).is_err());
        assert!(guard.admit(ip("192.0.2.44"), Some(ALICE), T0).is_ok());
    }

    #[test]
    fn an_account_sprayed_from_many_addresses_is_banned_except_from_where_it_logged_in() {
        let guard = LoginGuard::in_memory(settings());
        let home = ip("198.51.100.200");
        guard.record(
            home,
            Some(ALICE),
            "imap",
            "LOGIN",
            LoginResult::Accepted,
            T0,
        );
        let mut added = Vec::new();
        for i in 0..5 {
            added.extend(guard.record(
                ip(&format!("198.51.100.{i}")),
                Some(ALICE),
                "imap",
                "LOGIN",
                LoginResult::Failed,
                T0 + 1,
            ));
        }
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].0, Target::Account(ALICE.into()));
        // A new address is refused, the owner's known one is not; other accounts are open.
        assert_eq!(
            guard
                .admit(ip("198.51.100.77"), Some(ALICE), T0 + 2)
                .unwrap_err()
                .0,
            Target::Account(ALICE.into())
        );
        assert!(guard.admit(home, Some(ALICE), T0 + 2).is_ok());
        assert!(guard
            .admit(ip("198.51.100.77"), Some("bob@example.test"), T0 + 2)
            .is_ok());
        // A known address that only failed before is not a known one.
        guard.record(
            ip("198.51.100.1"),
            Some(ALICE),
            "imap",
            "LOGIN",
            LoginResult::Blocked,
            T0 + 2,
        );
        assert!(guard
            .admit(ip("198.51.100.1"), Some(ALICE), T0 + 2)
            .is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_and_banned_by_their_slash_64() {
        let guard = LoginGuard::in_memory(settings());
        fail(&guard, "2001:db8:1:2::1", None, T0);
        fail(&guard, "2001:db8:1:2:ffff::9", None, T0);
        assert_eq!(fail(&guard, "2001:db8:1:2:abcd::1", None, T0), 1);
        let refused = guard.admit(ip("2001:db8:1:2::77"), None, T0).unwrap_err();
        assert_eq!(refused.0.to_string(), "2001:db8:1:2::/64");
        assert!(guard.admit(ip("2001:db8:1:3::1"), None, T0).is_ok());
        // An IPv4 client seen through a dual-stack socket is the IPv4 client.
        fail(&guard, "::ffff:203.0.113.5", None, T0);
        fail(&guard, "203.0.113.5", None, T0);
        assert_eq!(fail(&guard, "::ffff:203.0.113.5", None, T0), 1);
        assert!(guard.admit(ip("203.0.113.5"), None, T0).is_err());
    }

    #[test]
    fn zero_thresholds_turn_bans_off() {
        let mut s = settings();
        s.address_failures = 0;
        s.account_failures = 0;
        let guard = LoginGuard::in_memory(s);
        for i in 0..100 {
            assert_eq!(fail(&guard, "203.0.113.7", Some(ALICE), T0 + i), 0);
        }
        assert!(guard
            .admit(ip("203.0.113.7"), Some(ALICE), T0 + 100)
            .is_ok());
    }

    #[test]
    fn removing_a_ban_lifts_it_and_forgets_its_count() {
        let guard = LoginGuard::in_memory(settings());
        for _ in 0..3 {
            fail(&guard, "203.0.113.7", None, T0);
        }
        let target = Target::parse("203.0.113.7").unwrap();
        assert!(guard.remove(&target, T0));
        assert!(!guard.remove(&target, T0));
        assert!(guard.admit(ip("203.0.113.7"), None, T0).is_ok());
        // Two more failures are not enough: the count started over.
        assert_eq!(fail(&guard, "203.0.113.7", None, T0), 0);
        assert_eq!(fail(&guard, "203.0.113.7", None, T0), 0);
    }

    #[test]
    fn the_history_is_bounded_and_kept_only_for_accounts() {
        let guard = LoginGuard::in_memory(settings());
        for i in 0..6 {
            guard.record(
                ip("198.51.100.1"),
                Some(ALICE),
                "pop3",
                "USER",
                LoginResult::Failed,
                T0 + i,
            );
        }
        guard.record(
            ip("198.51.100.1"),
            None,
            "pop3",
            "USER",
            LoginResult::Failed,
            T0,
        );
        let history = guard.history(ALICE);
        assert_eq!(history.len(), 4);
        assert_eq!(
            history.iter().map(|r| r.time).collect::<Vec<_>>(),
            [T0 + 2, T0 + 3, T0 + 4, T0 + 5]
        );
        assert!(guard.history("nobody@example.test").is_empty());
    }

    #[test]
    fn counters_stay_bounded_under_a_flood_of_sources() {
        let mut s = settings();
        s.address_failures = 1000;
        let guard = LoginGuard::in_memory(s);
        for i in 0..(MAX_COUNTERS as u32 + 10) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            guard.record(
                IpAddr::V4(a),
                None,
                "imap",
                "LOGIN",
                LoginResult::Failed,
                T0,
            );
        }
        assert!(guard.lock().address_failures.len() <= MAX_COUNTERS);
    }

    #[test]
    fn bans_survive_a_restart_through_the_file_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let guard = LoginGuard::open(settings(), dir.path(), T0).unwrap();
        for _ in 0..3 {
            fail(&guard, "203.0.113.7", Some(ALICE), T0);
        }
        for i in 0..5 {
            fail(&guard, &format!("198.51.100.{i}"), Some(ALICE), T0 + 50);
        }
        assert!(guard.claim_writer());
        // One writer at a time.
        assert!(!guard.claim_writer());
        guard.write_pending(T0 + 50);
        assert!(!guard.claim_writer(), "written: nothing left to write");

        let reopened = LoginGuard::open(settings(), dir.path(), T0 + 60).unwrap();
        let bans = reopened.bans(T0 + 60);
        assert_eq!(
            bans.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>(),
            ["203.0.113.7", ALICE]
        );
        assert!(reopened.admit(ip("203.0.113.7"), None, T0 + 60).is_err());
        // The address ban (T0 .. T0+100) has ended by T0+120; the account's has not.
        let later = LoginGuard::open(settings(), dir.path(), T0 + 120).unwrap();
        assert_eq!(later.bans(T0 + 120).len(), 1);
        // A removal is written too.
        assert!(later.remove(&Target::Account(ALICE.into()), T0 + 120));
        later.flush(T0 + 120);
        let text = std::fs::read_to_string(dir.path().join(BANS_FILE)).unwrap();
        assert!(!text.contains(ALICE), "{text}");
        assert!(BanFile::new(dir.path()).load(T0).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_bans_file_refuses_the_start_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BANS_FILE), b"{\"version\":1,\"bans\":[").unwrap();
        let error = LoginGuard::open(settings(), dir.path(), T0)
            .err()
            .expect("refused");
        assert!(format!("{error:#}").contains(BANS_FILE), "{error:#}");
    }

    #[test]
    fn targets_parse_and_print_as_an_admin_writes_them() {
        for (text, shown) in [
            ("203.0.113.7", "203.0.113.7"),
            ("Alice@Example.TEST", ALICE),
            ("2001:db8::5", "2001:db8::/64"),
            ("2001:db8::/64", "2001:db8::/64"),
            ("198.51.100.0/24", "198.51.100.0/24"),
        ] {
            assert_eq!(Target::parse(text).unwrap().to_string(), shown, "{text}");
        }
        assert!(Target::parse("not a thing").is_err());
    }
}
