//! Password checks for every service (SMTP AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and
//! AUTHENTICATE): one place that runs argon2 off the event loop, logs one event, counts
//! failures, bans brute-force clients (`crate::login_guard`) and slows down password
//! guessing.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use postern_accounts::{normalize_address, Accounts, Protocol};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use crate::credential_cache::CredentialCache;
use crate::login_guard::{Ban, LoginGuard, LoginResult, Target};
use crate::server::Shared;

/// A failed check is answered after this delay, the same for every service, to slow
/// password guessing. The sessions answer one connection's commands in order, so a
/// guesser gets at most one try per delay per connection (and the per-address connection
/// limits bound the connections).
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The service a credential check is for: names its events and its failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Pop3,
    Imap,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Pop3 => "pop3",
            Service::Imap => "imap",
        }
    }

    /// The protocol app passwords are issued for.
    pub fn protocol(self) -> Protocol {
        match self {
            Service::Smtp => Protocol::Smtp,
            Service::Pop3 => Protocol::Pop3,
            Service::Imap => Protocol::Imap,
        }
    }

    /// The stable event name of a successful check (`<service>.auth.succeeded`).
    pub fn succeeded_event(self) -> &'static str {
        match self {
            Service::Smtp => "smtp.auth.succeeded",
            Service::Pop3 => "pop3.auth.succeeded",
            Service::Imap => "imap.auth.succeeded",
        }
    }

    /// The stable event name of a refused check (`<service>.auth.failed`).
    pub fn failed_event(self) -> &'static str {
        match self {
            Service::Smtp => "smtp.auth.failed",
            Service::Pop3 => "pop3.auth.failed",
            Service::Imap => "imap.auth.failed",
        }
    }

    /// The service's failure counter (`postern_<service>_auth_failures_total`).
    fn failures(self, shared: &Shared) -> &Counter {
        let metrics = &shared.metrics;
        match self {
            Service::Smtp => &metrics.auth_failures,
            Service::Pop3 => &metrics.pop3.auth_failures,
            Service::Imap => &metrics.imap_auth_failures,
        }
    }
}

/// One login attempt, as the session saw it. The password is passed separately and never
/// logged.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub service: Service,
    pub peer: SocketAddr,
    /// "PLAIN", "LOGIN", "USER" (POP3 USER/PASS) or "LOGIN" (IMAP LOGIN command).
    pub mechanism: &'a str,
    pub username: &'a str,
}

/// What the session answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Wrong credentials.
    Refused,
    /// Not checked: the client address or the account is banned (a temporary refusal).
    Blocked,
}

/// Checks `username`/`password` against the current accounts snapshot, from the
/// verified-credential cache when it holds the pair, unless a ban refuses the attempt first
/// (the right password included). Logs `<service>.auth.succeeded` (with `cached`),
/// `<service>.auth.failed` or `auth.blocked`, and `auth.ban.added` for a ban a failure starts.
/// A failure or a blocked attempt is answered only after [`FAILURE_DELAY`]. Callers flush
/// pending output first if it must not wait.
pub async fn verify(shared: &Shared, attempt: Attempt<'_>, password: String) -> Verdict {
    let (outcome, bans) = decide(
        &shared.login_guard,
        shared.directory.snapshot(),
        shared.directory.credentials(),
        &attempt,
        password,
        crate::login_guard::unix_now(),
    )
    .await;
    let Attempt {
        service,
        peer,
        mechanism,
        username,
    } = attempt;
    for (target, ban) in &bans {
        shared
            .metrics
            .auth_bans
            .get_or_create(&vec![("kind", target.kind().to_string())])
            .inc();
        tracing::warn!(event = "auth.ban.added", service = service.name(), peer = %peer, target = %target, kind = target.kind(), failures = ban.failures, until = ban.until);
    }
    if !bans.is_empty() {
        crate::login_guard::persist(&shared.login_guard);
    }
    match outcome {
        Outcome::Verified | Outcome::Cached => {
            let cached = outcome == Outcome::Cached;
            if cached {
                shared.metrics.auth_cache_hits.inc();
            }
            tracing::info!(event = service.succeeded_event(), service = service.name(), peer = %peer, user = %username, mechanism, cached);
            Verdict::Accepted
        }
        Outcome::Refused => {
            service.failures(shared).inc();
            tracing::warn!(event = service.failed_event(), service = service.name(), peer = %peer, user = %username, mechanism);
            tokio::time::sleep(FAILURE_DELAY).await;
            Verdict::Refused
        }
        Outcome::Blocked(target, ban) => {
            shared
                .metrics
                .auth_blocked
                .get_or_create(&vec![("service", service.name().to_string())])
                .inc();
            tracing::info!(event = "auth.blocked", service = service.name(), peer = %peer, user = %username, mechanism, target = %target, until = ban.until);
            // The same delay as a failure: a banned client that reconnects in a loop gets
            // no faster answers than one that guesses.
            tokio::time::sleep(FAILURE_DELAY).await;
            Verdict::Blocked
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// argon2 verified the password.
    Verified,
    /// The cache held the pair, verified earlier against the same stored hash.
    Cached,
    Refused,
    /// A ban refused the attempt before the password was looked at.
    Blocked(Target, Ban),
}

impl Outcome {
    fn ok(&self) -> bool {
        matches!(self, Outcome::Verified | Outcome::Cached)
    }
}

/// The ban check, then the password check, then the attempt recorded in the guard (history
/// and failure counts). Returns the outcome and the bans this attempt started.
async fn decide(
    guard: &LoginGuard,
    accounts: Arc<Accounts>,
    cache: &CredentialCache,
    attempt: &Attempt<'_>,
    password: String,
    now: u64,
) -> (Outcome, Vec<(Target, Ban)>) {
    let ip = attempt.peer.ip();
    let service = attempt.service.name();
    // Only existing accounts get a history and an account counter: names that are no
    // account would let a guesser fill memory.
    let account = normalize_address(attempt.username)
        .ok()
        .filter(|a| accounts.user(a).is_some());
    let account = account.as_deref();
    if let Err((target, ban)) = guard.admit(ip, account, now) {
        guard.record(
            ip,
            account,
            service,
            attempt.mechanism,
            LoginResult::Blocked,
            now,
        );
        return (Outcome::Blocked(target, ban), Vec::new());
    }
    let outcome = check(
        accounts,
        cache,
        attempt.service.protocol(),
        attempt.username,
        password,
    )
    .await;
    let result = if outcome.ok() {
        LoginResult::Accepted
    } else {
        LoginResult::Failed
    };
    let bans = guard.record(ip, account, service, attempt.mechanism, result, now);
    (outcome, bans)
}

/// The cache first (a keyed hash, microseconds, on the event loop); otherwise the argon2id
/// verification (an app password of the protocol, or the main password of an account
/// without 2FA), off the event loop (it costs tens of milliseconds of CPU and ~19 MiB), at
/// most one per CPU at a time ([`VERIFICATIONS`]): a login flood queues here instead of
/// taking every core and the memory. Unknown users cost the same as known ones
/// (`Accounts::verify_login`). Only a verified success enters the cache, bound to the
/// stored hash it was checked against.
async fn check(
    accounts: Arc<Accounts>,
    cache: &CredentialCache,
    protocol: Protocol,
    username: &str,
    password: String,
) -> Outcome {
    // The cache is keyed by the canonical address, as the accounts are; a name that is not
    // a user's has no stored hash and always takes the full (equal-cost) verification.
    let stored = normalize_address(username).ok().and_then(|account| {
        let binding = accounts.credential_binding(&account, protocol)?;
        Some((account, binding))
    });
    if let Some((account, hash)) = &stored {
        if cache.contains(account, hash, &password) {
            return Outcome::Cached;
        }
    }
    let user = username.to_string();
    let verified = VERIFICATIONS
        .run(move || {
            let ok = accounts.verify_login(&user, &password, protocol);
            (ok, password)
        })
        .await;
    match (verified, stored) {
        (Some((true, password)), Some((account, hash))) => {
            cache.insert(&account, &hash, &password);
            Outcome::Verified
        }
        (Some((true, _)), None) => Outcome::Verified,
        _ => Outcome::Refused,
    }
}

/// The bound on concurrent password verifications of the whole daemon: one per CPU
/// (`std::thread::available_parallelism`), shared by every service.
static VERIFICATIONS: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(verification_limit()));

fn verification_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs blocking work on tokio's blocking pool, at most `limit` at a time; callers beyond
/// that wait in FIFO order (tokio `Semaphore` is fair).
struct Limiter {
    permits: Arc<Semaphore>,
}

impl Limiter {
    fn new(limit: usize) -> Limiter {
        Limiter {
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    /// Waits for a slot, then runs `work` on the blocking pool. The slot is held by the
    /// blocking task itself, so it is released only when `work` returns, even if the caller
    /// stops waiting (a connection that closes mid-check). None if `work` panicked.
    async fn run<T, F>(&self, work: F) -> Option<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accounts with alice@example.test, password "correct horse".
    fn alice() -> Arc<Accounts> {
        let mut accounts = Accounts::default();
        accounts.add_domain("example.test").unwrap();
        accounts
            .add_user("alice@example.test", "correct horse")
            .unwrap();
        Arc::new(accounts)
    }

    fn cache() -> CredentialCache {
        CredentialCache::new(Duration::from_secs(300), 100)
    }

    #[tokio::test]
    async fn check_runs_the_account_verification() {
        let accounts = alice();
        // No cache: every answer comes from argon2.
        let off = CredentialCache::new(Duration::ZERO, 0);
        let ok = |u: &'static str, p: &'static str| {
            let (accounts, off) = (accounts.clone(), &off);
            async move { check(accounts, off, Protocol::Imap, u, p.into()).await }
        };
        assert_eq!(
            ok("alice@example.test", "correct horse").await,
            Outcome::Verified
        );
        assert_eq!(
            ok("ALICE@example.test", "correct horse").await,
            Outcome::Verified
        );
        assert_eq!(ok("alice@example.test", "wrong").await, Outcome::Refused);
        assert_eq!(
            ok("nobody@example.test", "correct horse").await,
            Outcome::Refused
        );
        assert_eq!(ok("", "").await, Outcome::Refused);
    }

    #[tokio::test]
    async fn a_verified_login_is_answered_from_the_cache_next_time() {
        let (accounts, cache) = (alice(), cache());
        let login = |u: &'static str, p: &'static str| {
            check(accounts.clone(), &cache, Protocol::Imap, u, p.into())
        };
        assert_eq!(
            login("alice@example.test", "correct horse").await,
            Outcome::Verified
        );
        assert_eq!(
            login("alice@example.test", "correct horse").await,
            Outcome::Cached
        );
        // The canonical address is the key: another spelling of the same account hits.
        assert_eq!(
            login("Alice@Example.TEST", "correct horse").await,
            Outcome::Cached
        );
        // A wrong password is never a hit, however often the right one was used.
        assert_eq!(
            login("alice@example.test", "correct horsE").await,
            Outcome::Refused
        );
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_login_is_never_cached() {
        let (accounts, cache) = (alice(), cache());
        for _ in 0..2 {
            assert_eq!(
                check(
                    accounts.clone(),
                    &cache,
                    Protocol::Imap,
                    "alice@example.test",
                    "wrong one".into()
                )
                .await,
                Outcome::Refused
            );
            assert_eq!(
                check(
                    accounts.clone(),
                    &cache,
                    Protocol::Imap,
                    "nobody@example.test",
                    "wrong one".into()
                )
                .await,
                Outcome::Refused
            );
        }
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_changed_password_misses_even_before_the_cache_is_cleared() {
        let cache = cache();
        let before = alice();
        assert_eq!(
            check(
                before.clone(),
                &cache,
                Protocol::Imap,
                "alice@example.test",
                "correct horse".into()
            )
            .await,
            Outcome::Verified
        );
        // The reload has installed the new accounts but not yet cleared the cache (or a check
        // on the old snapshot inserted after the clear): the old password still fails.
        let mut changed = (*before).clone();
        changed
            .set_password("alice@example.test", "battery staple")
            .unwrap();
        let changed = Arc::new(changed);
        assert_eq!(
            check(
                changed.clone(),
                &cache,
                Protocol::Imap,
                "alice@example.test",
                "correct horse".into()
            )
            .await,
            Outcome::Refused
        );
        assert_eq!(
            check(
                changed.clone(),
                &cache,
                Protocol::Imap,
                "alice@example.test",
                "battery staple".into()
            )
            .await,
            Outcome::Verified
        );
        // A removed account: the entry made before is useless.
        let mut removed = (*changed).clone();
        removed.del_user("alice@example.test").unwrap();
        assert_eq!(
            check(
                Arc::new(removed),
                &cache,
                Protocol::Imap,
                "alice@example.test",
                "battery staple".into()
            )
            .await,
            Outcome::Refused
        );
    }

    #[tokio::test]
    async fn app_passwords_are_cached_per_protocol_and_a_revocation_misses_at_once() {
        let cache = cache();
        let mut enrolled = (*alice()).clone();
        let imap = enrolled
            .add_app_password("alice@example.test", "laptop", Protocol::Imap)
            .unwrap();
        enrolled.enable_2fa("alice@example.test").unwrap();
        let enrolled = Arc::new(enrolled);
        let login = |accounts: &Arc<Accounts>, protocol, password: &str| {
            check(
                accounts.clone(),
                &cache,
                protocol,
                "alice@example.test",
                password.to_string(),
            )
        };
        assert_eq!(
            login(&enrolled, Protocol::Imap, &imap).await,
            Outcome::Verified
        );
        assert_eq!(
            login(&enrolled, Protocol::Imap, &imap).await,
            Outcome::Cached
        );
        // The IMAP entry is no key to another protocol, and the main password is off.
        assert_eq!(
            login(&enrolled, Protocol::Pop3, &imap).await,
            Outcome::Refused
        );
        assert_eq!(
            login(&enrolled, Protocol::Imap, "correct horse").await,
            Outcome::Refused
        );
        // Revoked in a new snapshot the cache has not been cleared for yet: refused.
        let mut revoked = (*enrolled).clone();
        revoked
            .revoke_app_password("alice@example.test", "laptop")
            .unwrap();
        assert_eq!(
            login(&Arc::new(revoked), Protocol::Imap, &imap).await,
            Outcome::Refused
        );
    }

    /// Counts the verifications running at once and the most seen.
    #[derive(Default)]
    struct Gauge {
        now: std::sync::atomic::AtomicUsize,
        max: std::sync::atomic::AtomicUsize,
    }

    impl Gauge {
        fn enter(&self) {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(now, SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn max(&self) -> usize {
            self.max.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limiter_bounds_concurrent_work_and_queues_the_rest() {
        const LIMIT: usize = 3;
        let limiter = Arc::new(Limiter::new(LIMIT));
        let gauge = Arc::new(Gauge::default());
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (limiter, gauge) = (limiter.clone(), gauge.clone());
                tokio::spawn(async move {
                    limiter
                        .run(move || {
                            gauge.enter();
                            // Long enough that the LIMIT running ones overlap.
                            std::thread::sleep(Duration::from_millis(100));
                            gauge.leave();
                            i
                        })
                        .await
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap().expect("every caller gets its answer"));
        }
        assert_eq!(done, (0..12).collect::<Vec<_>>());
        // The blocking pool would run all 12 at once; the limiter lets exactly LIMIT run.
        assert_eq!(gauge.max(), LIMIT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gives_up_keeps_its_slot_until_the_work_ends() {
        let limiter = Arc::new(Limiter::new(1));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter
                    .run(move || {
                        let _ = started_tx.send(());
                        released.recv().unwrap();
                    })
                    .await
            })
        };
        started.await.unwrap();
        // The connection closes: its future is dropped, the verification still runs.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let second = limiter.run(|| ());
        tokio::pin!(second);
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut second).await;
        assert!(
            waited.is_err(),
            "the slot must stay taken while the work runs"
        );
        release.send(()).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), second).await,
            Ok(Some(()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_share_one_bound_of_one_per_cpu() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(verification_limit(), cpus);
        let accounts = alice();
        // Hold every slot: a password check must wait for one.
        let held = VERIFICATIONS
            .permits
            .clone()
            .acquire_many_owned(u32::try_from(cpus).unwrap())
            .await
            .unwrap();
        let cache = cache();
        let pending = check(
            accounts,
            &cache,
            Protocol::Imap,
            "alice@example.test",
            "correct horse".into(),
        );
        tokio::pin!(pending);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut pending)
                .await
                .is_err(),
            "the check ran without a slot"
        );
        drop(held);
        assert_eq!(pending.await, Outcome::Verified);
    }

    fn guard() -> LoginGuard {
        LoginGuard::in_memory(crate::login_guard::Settings {
            address_failures: 3,
            account_failures: 0,
            window_secs: 600,
            duration_secs: 60,
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            history_entries: 10,
        })
    }

    fn attempt(from: &str, username: &'static str) -> Attempt<'static> {
        Attempt {
            service: Service::Imap,
            peer: SocketAddr::new(from.parse().unwrap(), 40000),
            mechanism: "LOGIN",
            username,
        }
    }

    #[tokio::test]
    async fn a_ban_refuses_the_right_password_even_from_the_cache_and_ends_on_time() {
        const T0: u64 = 1_800_000_000;
        let (accounts, cache, guard) = (alice(), cache(), guard());
        let attacker = attempt("203.0.113.7", "alice@example.test");
        let run = |password: &'static str, now: u64| {
            decide(
                &guard,
                accounts.clone(),
                &cache,
                &attacker,
                password.into(),
                now,
            )
        };
        // Verified once: the cache now holds the right password.
        assert_eq!(run("correct horse", T0).await.0, Outcome::Verified);
        assert_eq!(run("wrong 1", T0).await.1, vec![]);
        assert_eq!(run("wrong 2", T0).await.1, vec![]);
        let (outcome, bans) = run("wrong 3", T0).await;
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(bans.len(), 1);
        let (outcome, bans) = run("correct horse", T0 + 1).await;
        assert!(matches!(outcome, Outcome::Blocked(..)), "{outcome:?}");
        assert!(bans.is_empty());
        // Blocked attempts are not failures and are not cached.
        assert_eq!(cache.len(), 1);
        assert_eq!(run("correct horse", T0 + 60).await.0, Outcome::Cached);
        let history: Vec<LoginResult> = guard
            .history("alice@example.test")
            .iter()
            .map(|r| r.result)
            .collect();
        use LoginResult::*;
        assert_eq!(
            history,
            [Accepted, Failed, Failed, Failed, Blocked, Accepted]
        );
    }

    #[tokio::test]
    async fn an_allow_listed_address_keeps_logging_in_after_any_number_of_failures() {
        let (accounts, cache, guard) = (alice(), cache(), guard());
        let office = attempt("192.0.2.10", "alice@example.test");
        let off = CredentialCache::new(Duration::ZERO, 0);
        for _ in 0..5 {
            let (outcome, bans) =
                decide(&guard, accounts.clone(), &off, &office, "wrong".into(), 1).await;
            assert_eq!((outcome, bans.len()), (Outcome::Refused, 0));
        }
        let (outcome, _) =
            decide(&guard, accounts, &cache, &office, "correct horse".into(), 2).await;
        assert_eq!(outcome, Outcome::Verified);
    }

    #[test]
    fn event_names_carry_the_service() {
        for s in [Service::Smtp, Service::Pop3, Service::Imap] {
            assert_eq!(s.succeeded_event(), format!("{}.auth.succeeded", s.name()));
            assert_eq!(s.failed_event(), format!("{}.auth.failed", s.name()));
        }
    }
}
