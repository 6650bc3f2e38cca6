//! The accounts directory as the daemon sees it: an immutable snapshot, swapped when
//! `accounts.json` changes (the admin CLI writes it under a lock and then asks for a reload
//! over the admin socket; a poll catches edits made while the socket was unreachable).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use postern_accounts::{AccountStore, Accounts};
use postern_store::{MailboxId, Store};

use crate::credential_cache::CredentialCache;

pub struct Directory {
    accounts_file: AccountStore,
    current: ArcSwap<Accounts>,
    loaded_stamp: Mutex<Option<(SystemTime, u64)>>,
    /// Logins verified against `current`; emptied whenever it is replaced.
    credentials: CredentialCache,
}

impl Directory {
    pub fn open(data_dir: &Path, credentials: CredentialCache) -> Result<Arc<Directory>> {
        let accounts_file = AccountStore::open(data_dir)
            .with_context(|| format!("opening accounts in {}", data_dir.display()))?;
        let stamp = accounts_file.file_stamp();
        let accounts = accounts_file.load().context("loading accounts")?;
        Ok(Arc::new(Directory {
            accounts_file,
            current: ArcSwap::from_pointee(accounts),
            loaded_stamp: Mutex::new(stamp),
            credentials,
        }))
    }

    pub fn snapshot(&self) -> Arc<Accounts> {
        self.current.load_full()
    }

    pub fn credentials(&self) -> &CredentialCache {
        &self.credentials
    }

    /// Reloads when forced or when the file changed; a file that fails to load keeps the
    /// previous snapshot (and is logged) so a bad edit never locks every user out.
    /// Returns whether a new snapshot was installed.
    pub fn reload(&self, force: bool) -> bool {
        let stamp = self.accounts_file.file_stamp();
        let Ok(mut loaded) = self.loaded_stamp.lock() else {
            return false;
        };
        if !force && *loaded == stamp {
            return false;
        }
        match self.accounts_file.load() {
            Ok(accounts) => {
                self.current.store(Arc::new(accounts));
                // A password changed or an account went away: no login verified before may
                // be answered from memory. (Entries are also bound to the stored hash they
                // were verified against, so one added by a check still running on the old
                // snapshot can never match the new one.)
                self.credentials.clear();
                *loaded = stamp;
                tracing::info!(event = "accounts.reloaded");
                true
            }
            Err(error) => {
                tracing::error!(event = "accounts.reload_failed", error = %error);
                false
            }
        }
    }
}

/// Mailboxes every new user gets beside INBOX, with their special-use attribute
/// (RFC 6154 2).
pub const DEFAULT_MAILBOXES: [(&str, &str); 5] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
];

/// Maps a user to its INBOX in the store, creating the mailbox on first delivery.
pub struct Inboxes {
    store: Store,
    known: Mutex<HashMap<String, MailboxId>>,
}

impl Inboxes {
    pub fn new(store: Store) -> Inboxes {
        Inboxes {
            store,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Every user has an INBOX (RFC 9051 5.1) and the special-use mailboxes (RFC 6154 2)
    /// from the moment the daemon knows the user, not only after a first delivery.
    /// Blocking: run it off the event loops.
    pub fn provision(&self, users: &[String]) {
        for user in users {
            if let Err(error) = self.ensure_inbox(user) {
                tracing::error!(event = "store.mailbox_failed", user = %user, error = %format!("{error:#}"));
            }
        }
    }

    /// Creates the INBOX and, for an account that has nothing else yet, the special-use
    /// mailboxes. A user who deletes some of them does not get them back; one left with an
    /// INBOX alone (a new account, or one interrupted by a crash while being set up) does.
    fn create_user_mailboxes(store: &Store, user: &str) -> Result<MailboxId> {
        let inbox = store
            .ensure_mailbox(user, "INBOX", None)
            .with_context(|| format!("creating INBOX of {user}"))?;
        if store.mailboxes(user).len() == 1 {
            for (name, special_use) in DEFAULT_MAILBOXES {
                if let Err(error) = store.ensure_mailbox(user, name, Some(special_use)) {
                    tracing::error!(event = "store.mailbox_failed", user = %user, mailbox = name, error = %error);
                }
            }
        }
        Ok(inbox.id)
    }

    pub async fn inbox(&self, user: &str) -> Result<MailboxId> {
        if let Some(id) = self.cached(user) {
            return Ok(id);
        }
        let store = self.store.clone();
        let owner = user.to_string();
        // Creation is rare and synchronous (one durable catalogue record): keep it off the
        // worker's event loop.
        let id = tokio::task::spawn_blocking(move || Self::create_user_mailboxes(&store, &owner))
            .await
            .context("mailbox creation task")??;
        self.remember(user, id);
        Ok(id)
    }

    /// The user's Junk mailbox, where DMARC p=quarantine mail goes (RFC 7489 6.3): the
    /// mailbox with the \\Junk special use (RFC 6154 2), whatever the user named it; if the
    /// user has none, a mailbox "Junk" with \\Junk is created.
    pub async fn junk(&self, user: &str) -> Result<MailboxId> {
        self.inbox(user).await?;
        let store = self.store.clone();
        let owner = user.to_string();
        tokio::task::spawn_blocking(move || -> Result<MailboxId> {
            if let Some(junk) = store
                .mailboxes(&owner)
                .into_iter()
                .find(|m| m.special_use.as_deref() == Some("\\Junk"))
            {
                return Ok(junk.id);
            }
            Ok(store
                .ensure_mailbox(&owner, "Junk", Some("\\Junk"))
                .with_context(|| format!("creating Junk of {owner}"))?
                .id)
        })
        .await
        .context("mailbox creation task")?
    }

    fn cached(&self, user: &str) -> Option<MailboxId> {
        self.known.lock().ok().and_then(|k| k.get(user).copied())
    }

    fn remember(&self, user: &str, id: MailboxId) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(user.to_string(), id);
        }
    }

    fn ensure_inbox(&self, user: &str) -> Result<MailboxId> {
        if let Some(id) = self.cached(user) {
            return Ok(id);
        }
        let id = Self::create_user_mailboxes(&self.store, user)?;
        self.remember(user, id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_reload_empties_the_credential_cache_and_a_failed_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Directory::open(
            dir.path(),
            CredentialCache::new(Duration::from_secs(300), 10),
        )
        .unwrap();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        directory
            .credentials()
            .insert("alice@example.test", hash, "correct horse");
        // Unchanged file, not forced: nothing reloaded, the entry stays.
        assert!(!directory.reload(false));
        assert!(directory
            .credentials()
            .contains("alice@example.test", hash, "correct horse"));
        // A file that does not load keeps the old snapshot, and so its cache.
        std::fs::write(dir.path().join(postern_accounts::ACCOUNTS_FILE), b"{").unwrap();
        assert!(!directory.reload(true));
        assert_eq!(directory.credentials().len(), 1);
        // The CLI's reload after a password change or a removal: everything is forgotten.
        std::fs::remove_file(dir.path().join(postern_accounts::ACCOUNTS_FILE)).unwrap();
        assert!(directory.reload(true));
        assert!(directory.credentials().is_empty());
    }
}
