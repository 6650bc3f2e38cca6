//! Password checks for every service (SMTP AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and
//! AUTHENTICATE): one place that runs argon2 off the event loop, logs one event, counts
//! failures and slows down password guessing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_accounts::Accounts;
use prometheus_client::metrics::counter::Counter;

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

/// Checks `username`/`password` against the current accounts snapshot. Logs
/// `<service>.auth.succeeded` or `<service>.auth.failed`; a failure is counted and answered
/// only after [`FAILURE_DELAY`]. Callers flush pending output first if it must not wait.
pub async fn verify(shared: &Shared, attempt: Attempt<'_>, password: String) -> bool {
    let ok = check(shared.directory.snapshot(), attempt.username, password).await;
    let Attempt {
        service,
        peer,
        mechanism,
        username,
    } = attempt;
    if ok {
        tracing::info!(event = service.succeeded_event(), service = service.name(), peer = %peer, user = %username, mechanism);
    } else {
        service.failures(shared).inc();
        tracing::warn!(event = service.failed_event(), service = service.name(), peer = %peer, user = %username, mechanism);
        tokio::time::sleep(FAILURE_DELAY).await;
    }
    ok
}

/// The argon2id verification, off the event loop (it costs tens of milliseconds of CPU).
/// Unknown users cost the same as known ones (`Accounts::verify_password`).
async fn check(accounts: Arc<Accounts>, username: &str, password: String) -> bool {
    let user = username.to_string();
    tokio::task::spawn_blocking(move || accounts.verify_password(&user, &password))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_runs_the_account_verification() {
        let mut accounts = Accounts::default();
        accounts.add_domain("example.test").unwrap();
        accounts
            .add_user("alice@example.test", "correct horse")
            .unwrap();
        let accounts = Arc::new(accounts);
        assert!(
            check(
                accounts.clone(),
                "alice@example.test",
                "correct horse".into()
            )
            .await
        );
        assert!(
            check(
                accounts.clone(),
                "ALICE@example.test",
                "correct horse".into()
            )
            .await
        );
        assert!(!check(accounts.clone(), "alice@example.test", "wrong".into()).await);
        assert!(
            !check(
                accounts.clone(),
                "nobody@example.test",
                "correct horse".into()
            )
            .await
        );
        assert!(!check(accounts, "", String::new()).await);
    }

    #[test]
    fn event_names_carry_the_service() {
        for s in [Service::Smtp, Service::Pop3, Service::Imap] {
            assert_eq!(s.succeeded_event(), format!("{}.auth.succeeded", s.name()));
            assert_eq!(s.failed_event(), format!("{}.auth.failed", s.name()));
        }
    }
}
