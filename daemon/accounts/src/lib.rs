//! Domains, users and aliases, with argon2id password hashes, stored durably in
//! `<data_dir>/accounts.json`.
//!
//! * [`Accounts`] is the in-memory model: every operation validates its input and keeps the
//!   model consistent (users and aliases only in local domains, no alias shadowing a user,
//!   nothing deleted while something else still points at it).
//! * [`AccountStore`] is the file: read-modify-write under an exclusive `flock` on
//!   `<data_dir>/accounts.lock`, and atomic replacement (temp file, fsync, rename, fsync of the
//!   directory), so a crash leaves either the old or the new file, never a torn one. The file
//!   is mode 0600 since it holds password hashes (DESIGN.md section 6).
//!
//! Addresses are canonicalised to lowercase, local part included; see [`address`] for why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod address;
mod password;
pub mod policy;
mod store;
pub mod twofactor;

pub use address::{normalize_address, normalize_domain, SUBADDRESS_SEPARATOR};
pub use password::{hash_password, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
pub use policy::PasswordPolicy;
pub use store::{AccountStore, FileStamp, ACCOUNTS_FILE, LOCK_FILE};
pub use twofactor::{AppPassword, Enrolment, Protocol, TotpState};

use address::{split, strip_subaddress};

/// How deep alias-to-alias chains are followed; deeper chains are treated as undeliverable
/// beyond this point, which also bounds the work a crafted loop could cause.
pub const MAX_ALIAS_DEPTH: usize = 8;

/// The local part that exists in every local domain (RFC 5321 4.5.1).
pub const POSTMASTER: &str = "postmaster";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid accounts file: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: unsupported accounts file version {version}", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("invalid address {address:?}: {why}")]
    InvalidAddress { address: String, why: &'static str },
    #[error("invalid domain {domain:?}: {why}")]
    InvalidDomain { domain: String, why: &'static str },
    #[error("domain {0} already exists")]
    DomainExists(String),
    #[error("domain {0} is not a local domain")]
    UnknownDomain(String),
    #[error("domain {domain} is still used by {users} user(s) and {aliases} alias(es)")]
    DomainInUse {
        domain: String,
        users: usize,
        aliases: usize,
    },
    #[error("{0} already exists as a user")]
    UserExists(String),
    #[error("no such user: {0}")]
    UnknownUser(String),
    #[error("user {user} is still the target of alias(es): {}", aliases.join(", "))]
    UserInUse { user: String, aliases: Vec<String> },
    #[error("{0} already exists as an alias")]
    AliasExists(String),
    #[error("no such alias: {0}")]
    UnknownAlias(String),
    #[error("invalid alias target {target}: {why}")]
    InvalidTarget { target: String, why: &'static str },
    #[error("address {0} may not contain '+': it separates the subaddress tag")]
    SubaddressInName(String),
    #[error("password rejected: {0}")]
    WeakPassword(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("{0} already has two-factor authentication (disable it first to enrol again)")]
    TwoFactorEnabled(String),
    #[error("{0} has no two-factor authentication")]
    TwoFactorDisabled(String),
    #[error("{user} already has an app password named {name:?}")]
    AppPasswordExists { user: String, name: String },
    #[error("{user} has no app password named {name:?}")]
    UnknownAppPassword { user: String, name: String },
    #[error("invalid app password name {0:?}: 1 to 64 printable characters")]
    InvalidAppPasswordName(String),
}

/// One mailbox owner.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// PHC string, argon2id.
    pub password_hash: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// TOTP enrolment; while set, the main password does not work for SMTP, IMAP or POP3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_passwords: Vec<AppPassword>,
}

impl std::fmt::Debug for User {
    // Hashes and secrets stay out of logs and debug output (DESIGN.md section 6).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("password_hash", &"<redacted>")
            .field("created", &self.created)
            .field("totp", &self.totp.is_some())
            .field("app_passwords", &self.app_passwords.len())
            .finish()
    }
}

/// Domains, users and aliases. All keys are canonical (see [`normalize_address`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    domains: BTreeSet<String>,
    users: BTreeMap<String, User>,
    aliases: BTreeMap<String, Vec<String>>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Accounts {
    // ---- domains -------------------------------------------------------------------------

    pub fn add_domain(&mut self, d: &str) -> Result<(), AccountError> {
        let d = normalize_domain(d)?;
        if self.domains.contains(&d) {
            return Err(AccountError::DomainExists(d));
        }
        self.domains.insert(d);
        Ok(())
    }

    /// Removes a domain; refused while any user or alias (as address or target) is in it.
    pub fn del_domain(&mut self, d: &str) -> Result<(), AccountError> {
        let d = normalize_domain(d)?;
        if !self.domains.contains(&d) {
            return Err(AccountError::UnknownDomain(d));
        }
        let in_domain = |a: &String| split(a).1 == d;
        let users = self.users.keys().filter(|a| in_domain(a)).count();
        let aliases = self
            .aliases
            .iter()
            .filter(|(a, targets)| in_domain(a) || targets.iter().any(in_domain))
            .count();
        if users > 0 || aliases > 0 {
            return Err(AccountError::DomainInUse {
                domain: d,
                users,
                aliases,
            });
        }
        self.domains.remove(&d);
        Ok(())
    }

    /// Local domains, sorted.
    pub fn domains(&self) -> Vec<String> {
        self.domains.iter().cloned().collect()
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        normalize_domain(domain).is_ok_and(|d| self.domains.contains(&d))
    }

    // ---- users ---------------------------------------------------------------------------

    /// Checks that `address` can become a new user or alias: valid, in a local domain, no '+',
    /// not taken.
    fn new_name(&self, address: &str) -> Result<String, AccountError> {
        let a = normalize_address(address)?;
        let (local, domain) = split(&a);
        if !self.domains.contains(domain) {
            return Err(AccountError::UnknownDomain(domain.to_string()));
        }
        if local.contains(SUBADDRESS_SEPARATOR) {
            return Err(AccountError::SubaddressInName(a));
        }
        if self.users.contains_key(&a) {
            return Err(AccountError::UserExists(a));
        }
        if self.aliases.contains_key(&a) {
            return Err(AccountError::AliasExists(a));
        }
        Ok(a)
    }

    /// Adds a user; the domain must be local and the password pass the policy
    /// (at least [`MIN_PASSWORD_CHARS`] characters).
    pub fn add_user(&mut self, address: &str, password: &str) -> Result<(), AccountError> {
        let a = self.new_name(address)?;
        let password_hash = hash_password(password)?;
        self.users.insert(
            a,
            User {
                password_hash,
                created: now_unix(),
                totp: None,
                app_passwords: Vec::new(),
            },
        );
        Ok(())
    }

    /// Removes a user; refused while an alias still targets it.
    pub fn del_user(&mut self, address: &str) -> Result<(), AccountError> {
        let a = normalize_address(address)?;
        if !self.users.contains_key(&a) {
            return Err(AccountError::UnknownUser(a));
        }
        let aliases: Vec<String> = self
            .aliases
            .iter()
            .filter(|(_, targets)| targets.contains(&a))
            .map(|(alias, _)| alias.clone())
            .collect();
        if !aliases.is_empty() {
            return Err(AccountError::UserInUse { user: a, aliases });
        }
        self.users.remove(&a);
        Ok(())
    }

    pub fn set_password(&mut self, address: &str, password: &str) -> Result<(), AccountError> {
        let a = normalize_address(address)?;
        if !self.users.contains_key(&a) {
            return Err(AccountError::UnknownUser(a));
        }
        let hash = hash_password(password)?;
        if let Some(user) = self.users.get_mut(&a) {
            user.password_hash = hash;
        }
        Ok(())
    }

    /// User addresses, sorted.
    pub fn users(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn user(&self, address: &str) -> Option<&User> {
        self.users.get(&normalize_address(address).ok()?)
    }

    // ---- aliases -------------------------------------------------------------------------

    /// Adds an alias delivering to `targets`: local users or other aliases (subaddressed
    /// forms allowed). Forwarding to other domains is not supported, so every target must be in
    /// a local domain and deliverable now.
    pub fn add_alias(&mut self, alias: &str, targets: &[String]) -> Result<(), AccountError> {
        let a = self.new_name(alias)?;
        if targets.is_empty() {
            return Err(AccountError::InvalidTarget {
                target: String::new(),
                why: "an alias needs at least one target",
            });
        }
        let mut canonical: Vec<String> = Vec::with_capacity(targets.len());
        for t in targets {
            let t = normalize_address(t)?;
            if t == a {
                return Err(AccountError::InvalidTarget {
                    target: t,
                    why: "an alias cannot point at itself",
                });
            }
            if !self.domains.contains(split(&t).1) {
                return Err(AccountError::InvalidTarget {
                    target: t,
                    why: "not in a local domain (forwarding is not supported)",
                });
            }
            if self.resolve_recipient(&t).is_none() {
                return Err(AccountError::InvalidTarget {
                    target: t,
                    why: "no such user or alias",
                });
            }
            if !canonical.contains(&t) {
                canonical.push(t);
            }
        }
        self.aliases.insert(a, canonical);
        Ok(())
    }

    pub fn del_alias(&mut self, alias: &str) -> Result<(), AccountError> {
        let a = normalize_address(alias)?;
        match self.aliases.remove(&a) {
            Some(_) => Ok(()),
            None => Err(AccountError::UnknownAlias(a)),
        }
    }

    /// (alias, targets) pairs, sorted by alias.
    pub fn aliases(&self) -> Vec<(String, Vec<String>)> {
        self.aliases
            .iter()
            .map(|(a, t)| (a.clone(), t.clone()))
            .collect()
    }

    // ---- lookups -------------------------------------------------------------------------

    /// The local users that mail for `address` is delivered to: the user itself; an alias
    /// expanded recursively (at most [`MAX_ALIAS_DEPTH`] levels, loops cut, duplicates removed,
    /// in first-seen order); "name+tag@domain" as "name@domain" when no exact entry exists.
    /// `None` when the address is not deliverable locally.
    ///
    /// postmaster@ exists in every local domain (RFC 5321 4.5.1) without configuration: when
    /// no user or alias of that name exists, it goes to the domain's administrator (see
    /// [`Accounts::administrator`]). A user or alias named postmaster@domain takes over.
    pub fn resolve_recipient(&self, address: &str) -> Option<Vec<String>> {
        let a = normalize_address(address).ok()?;
        let (local, domain) = split(&a);
        if !self.domains.contains(domain) {
            return None;
        }
        let mut out = Vec::new();
        let mut visited = BTreeSet::new();
        self.expand(&a, 0, &mut visited, &mut out);
        if out.is_empty() && local == POSTMASTER {
            out.extend(self.administrator(domain));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Who receives postmaster@`domain` when no user or alias of that name exists: the
    /// domain's first user (the earliest created; the smallest address among equals), or
    /// when the domain has no users, the first user of all. None when there are no users.
    pub fn administrator(&self, domain: &str) -> Option<String> {
        let first = |in_domain: bool| {
            self.users
                .iter()
                .filter(|(a, _)| !in_domain || split(a).1 == domain)
                .min_by(|(a1, u1), (a2, u2)| u1.created.cmp(&u2.created).then(a1.cmp(a2)))
                .map(|(a, _)| a.clone())
        };
        first(true).or_else(|| first(false))
    }

    /// The domain of a recipient written without one ("<Postmaster>", RFC 5321 4.1.1.3):
    /// the local domain that `hostname` is or lies in (the longest such), else the first
    /// local domain.
    pub fn default_domain(&self, hostname: &str) -> Option<String> {
        let host = hostname.trim_end_matches('.').to_ascii_lowercase();
        self.domains
            .iter()
            .filter(|d| host == **d || host.ends_with(&format!(".{d}")))
            .max_by_key(|d| d.len())
            .or_else(|| self.domains.iter().next())
            .cloned()
    }

    fn expand(
        &self,
        address: &str,
        depth: usize,
        visited: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        // Exact entry first; then the address without its +tag (RFC 5233 style subaddress).
        let key = if self.users.contains_key(address) || self.aliases.contains_key(address) {
            address.to_string()
        } else {
            match strip_subaddress(address) {
                Some(base) => base,
                None => return,
            }
        };
        if !visited.insert(key.clone()) {
            return; // already expanded: a loop or a diamond
        }
        if self.users.contains_key(&key) {
            if !out.contains(&key) {
                out.push(key);
            }
        } else if let Some(targets) = self.aliases.get(&key) {
            if depth >= MAX_ALIAS_DEPTH {
                return;
            }
            for t in targets {
                self.expand(t, depth + 1, visited, out);
            }
        }
    }

    /// Checks a login. Unknown or invalid addresses still cost one argon2 verification, so
    /// the time taken does not reveal whether the account exists. The login name is the exact
    /// user address (no subaddress, no alias).
    pub fn verify_password(&self, address: &str, password: &str) -> bool {
        let user = normalize_address(address)
            .ok()
            .and_then(|a| self.users.get(&a));
        match user {
            Some(u) => password::verify(&u.password_hash, password),
            None => {
                password::verify_dummy(password);
                false
            }
        }
    }

    /// Checks a login to a mail protocol. An app password for `protocol` always works; the
    /// main password only while the account has no two-factor authentication. Unknown or
    /// invalid addresses, and refused main passwords of 2FA accounts, still cost one argon2
    /// verification, so the time taken reveals neither.
    pub fn verify_login(&self, address: &str, password: &str, protocol: Protocol) -> bool {
        let user = normalize_address(address)
            .ok()
            .and_then(|a| self.users.get(&a));
        let Some(u) = user else {
            password::verify_dummy(password);
            return false;
        };
        let offered = twofactor::digest(password);
        let app = u
            .app_passwords
            .iter()
            .filter(|a| a.protocol == protocol)
            .fold(false, |found, a| {
                twofactor::same_digest(&a.digest, &offered) | found
            });
        if app {
            return true;
        }
        if u.totp.is_some() {
            password::verify_dummy(password);
            return false;
        }
        password::verify(&u.password_hash, password)
    }

    /// What a verified login to `protocol` depends on: the stored hash, whether 2FA is on and
    /// the protocol's app passwords. The verified-credential cache binds its entries to it,
    /// so that a changed password, an enrolment or a revoked app password misses at once.
    /// The protocol's name is not part of it: a main password verified for IMAP is good for
    /// POP3 too (same binding while neither has app passwords), while an app password's
    /// entry is bound to its own protocol's list, which no other protocol's list equals.
    pub fn credential_binding(&self, address: &str, protocol: Protocol) -> Option<String> {
        let u = self.users.get(&normalize_address(address).ok()?)?;
        let apps: Vec<&str> = u
            .app_passwords
            .iter()
            .filter(|a| a.protocol == protocol)
            .map(|a| a.digest.as_str())
            .collect();
        Some(format!(
            "{}|2fa={}|{}",
            u.password_hash,
            u.totp.is_some(),
            apps.join(",")
        ))
    }

    fn user_mut(&mut self, address: &str) -> Result<(String, &mut User), AccountError> {
        let a = normalize_address(address)?;
        match self.users.get_mut(&a) {
            Some(user) => Ok((a, user)),
            None => Err(AccountError::UnknownUser(a)),
        }
    }

    /// Turns on TOTP for a user: a new secret and ten recovery codes, returned once (only
    /// their digests are kept).
    pub fn enable_2fa(&mut self, address: &str) -> Result<Enrolment, AccountError> {
        let (a, user) = self.user_mut(address)?;
        if user.totp.is_some() {
            return Err(AccountError::TwoFactorEnabled(a));
        }
        let secret = twofactor::new_secret();
        let recovery_codes: Vec<String> = (0..10).map(|_| twofactor::new_code()).collect();
        user.totp = Some(TotpState {
            secret: secret.clone(),
            enabled: now_unix(),
            recovery: recovery_codes
                .iter()
                .map(|c| twofactor::digest(c))
                .collect(),
        });
        Ok(Enrolment {
            secret,
            recovery_codes,
        })
    }

    /// Turns TOTP off: the main password works for mail again.
    pub fn disable_2fa(&mut self, address: &str) -> Result<(), AccountError> {
        let (a, user) = self.user_mut(address)?;
        if user.totp.take().is_none() {
            return Err(AccountError::TwoFactorDisabled(a));
        }
        Ok(())
    }

    /// Checks a second factor: a current TOTP code, or an unused recovery code (which this
    /// uses up). False for accounts without 2FA.
    pub fn check_second_factor(&mut self, address: &str, code: &str, unix: u64) -> bool {
        let Ok((_, user)) = self.user_mut(address) else {
            return false;
        };
        let Some(totp) = &mut user.totp else {
            return false;
        };
        if twofactor::verify_totp(&totp.secret, code, unix) {
            return true;
        }
        let offered = twofactor::digest(code);
        let before = totp.recovery.len();
        totp.recovery
            .retain(|d| !twofactor::same_digest(d, &offered));
        totp.recovery.len() < before
    }

    /// Creates an app password for one protocol; returns it (shown once, kept as a digest).
    pub fn add_app_password(
        &mut self,
        address: &str,
        name: &str,
        protocol: Protocol,
    ) -> Result<String, AccountError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AccountError::InvalidAppPasswordName(name.to_string()));
        }
        let (a, user) = self.user_mut(address)?;
        if user.app_passwords.iter().any(|p| p.name == name) {
            return Err(AccountError::AppPasswordExists {
                user: a,
                name: name.to_string(),
            });
        }
        let password = twofactor::new_code();
        user.app_passwords.push(AppPassword {
            name: name.to_string(),
            protocol,
            digest: twofactor::digest(&password),
            created: now_unix(),
        });
        Ok(password)
    }

    /// Revokes (deletes) an app password by name.
    pub fn revoke_app_password(&mut self, address: &str, name: &str) -> Result<(), AccountError> {
        let (a, user) = self.user_mut(address)?;
        let before = user.app_passwords.len();
        user.app_passwords.retain(|p| p.name != name);
        if user.app_passwords.len() == before {
            return Err(AccountError::UnknownAppPassword {
                user: a,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Whether `user` may use `address` as a sender: its own address, its "+tag" forms, or an
    /// alias whose recipients include `user`.
    pub fn owns_address(&self, user: &str, address: &str) -> bool {
        let Ok(user) = normalize_address(user) else {
            return false;
        };
        if !self.users.contains_key(&user) {
            return false;
        }
        self.resolve_recipient(address)
            .is_some_and(|users| users.contains(&user))
    }
}

#[cfg(test)]
mod tests;
