//! The verified-credential cache (DESIGN.md section 6, in the spirit of Dovecot's
//! auth_cache): a login that argon2id has verified is remembered for a while, so that a
//! client reconnecting with the same password (IMAP clients open several connections and
//! reconnect often) costs a keyed hash instead of tens of milliseconds of CPU and 19 MiB.
//!
//! * Nothing reversible is kept: an entry is found by HMAC-SHA256, under a random key made
//!   when the process starts, of the account, the stored PHC string and the password. The
//!   key never leaves memory, so the digests cannot be tested offline against guesses.
//! * An entry answers only for the password hash it was verified against: a changed password
//!   (a new PHC string, with a fresh salt) or a removed account finds nothing, whatever is in
//!   the cache; and every accounts reload empties it, so that the memory is given back too.
//! * Only successes are stored. A wrong password always runs argon2 and keeps its delay.
//! * Bounded: at most `capacity` entries, the least recently used dropped first, each valid
//!   for `ttl` from its verification (a hit does not extend it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use postern_config::AuthConfig;
use rand::RngCore;

type Digest = [u8; 32];

pub struct CredentialCache {
    key: hmac::Key,
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Digest, Entry>,
    /// Use order: the smallest tick is the least recently used entry.
    by_use: BTreeMap<u64, Digest>,
    tick: u64,
}

struct Entry {
    expires: Instant,
    tick: u64,
}

impl Inner {
    fn remove(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.remove(digest) {
            self.by_use.remove(&entry.tick);
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

impl CredentialCache {
    /// A cache holding at most `capacity` verified logins for `ttl` each; either 0 disables
    /// it (every login runs argon2).
    pub fn new(ttl: Duration, capacity: usize) -> CredentialCache {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        CredentialCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            ttl,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn from_config(config: &AuthConfig) -> CredentialCache {
        CredentialCache::new(
            Duration::from_secs(config.credential_cache_ttl_secs),
            usize::try_from(config.credential_cache_entries).unwrap_or(usize::MAX),
        )
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    /// Each part is length-prefixed so that no two different triples hash alike.
    fn digest(&self, account: &str, password_hash: &str, password: &str) -> Digest {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [account, password_hash, password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `password` was verified for `account` (canonical address) while its stored
    /// hash was `password_hash`, less than the TTL ago.
    pub fn contains(&self, account: &str, password_hash: &str, password: &str) -> bool {
        self.contains_at(account, password_hash, password, Instant::now())
    }

    fn contains_at(
        &self,
        account: &str,
        password_hash: &str,
        password: &str,
        now: Instant,
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        let digest = self.digest(account, password_hash, password);
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let Some(expires) = inner.entries.get(&digest).map(|e| e.expires) else {
            return false;
        };
        if expires <= now {
            inner.remove(&digest);
            return false;
        }
        let tick = inner.next_tick();
        if let Some(entry) = inner.entries.get_mut(&digest) {
            let old = std::mem::replace(&mut entry.tick, tick);
            inner.by_use.remove(&old);
            inner.by_use.insert(tick, digest);
        }
        true
    }

    /// Records a login that argon2 has just verified. Call it only for a success.
    pub fn insert(&self, account: &str, password_hash: &str, password: &str) {
        self.insert_at(account, password_hash, password, Instant::now());
    }

    fn insert_at(&self, account: &str, password_hash: &str, password: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        let digest = self.digest(account, password_hash, password);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.remove(&digest);
        while inner.entries.len() >= self.capacity {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        let tick = inner.next_tick();
        inner.entries.insert(
            digest,
            Entry {
                expires: now + self.ttl,
                tick,
            },
        );
        inner.by_use.insert(tick, digest);
    }

    /// Forgets everything: the accounts were reloaded (a password changed, an account went).
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner::default();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@example.test";
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";

    #[test]
    fn a_verified_login_hits_and_nothing_else_does() {
        let cache = CredentialCache::new(Duration::from_secs(300), 10);
        assert!(!cache.contains(ALICE, HASH, "correct horse"));
        cache.insert(ALICE, HASH, "correct horse");
        assert!(cache.contains(ALICE, HASH, "correct horse"));
        // Another password, another account, another stored hash (a changed password).
        assert!(!cache.contains(ALICE, HASH, "correct horsf"));
        assert!(!cache.contains(ALICE, HASH, ""));
        assert!(!cache.contains("bob@example.test", HASH, "correct horse"));
        assert!(!cache.contains(ALICE, "$argon2id$v=19$other", "correct horse"));
        // Length prefixes: moving bytes between the parts is not the same entry.
        assert!(!cache.contains("alice@example.tes", HASH, "tcorrect horse"));
    }

    #[test]
    fn entries_expire_after_the_ttl_and_a_hit_does_not_extend_it() {
        let cache = CredentialCache::new(Duration::from_secs(300), 10);
        let t0 = Instant::now();
        cache.insert_at(ALICE, HASH, "correct horse", t0);
        assert!(cache.contains_at(ALICE, HASH, "correct horse", t0 + Duration::from_secs(299)));
        assert!(!cache.contains_at(ALICE, HASH, "correct horse", t0 + Duration::from_secs(300)));
        // The expired entry is gone, not merely skipped.
        assert_eq!(cache.len(), 0);
        assert!(!cache.contains_at(ALICE, HASH, "correct horse", t0));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound_and_drops_the_least_recently_used() {
        let cache = CredentialCache::new(Duration::from_secs(300), 3);
        for i in 0..3 {
            cache.insert(&format!("u{i}@example.test"), HASH, "password");
        }
        // u0 used again: u1 is now the least recently used.
        assert!(cache.contains("u0@example.test", HASH, "password"));
        cache.insert("u3@example.test", HASH, "password");
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains("u1@example.test", HASH, "password"));
        for u in ["u0", "u2", "u3"] {
            assert!(
                cache.contains(&format!("{u}@example.test"), HASH, "password"),
                "{u}"
            );
        }
        for i in 0..1000 {
            cache.insert(&format!("x{i}@example.test"), HASH, "password");
            assert!(cache.len() <= 3);
        }
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.by_use.len(), inner.entries.len());
    }

    #[test]
    fn inserting_the_same_login_twice_keeps_one_entry() {
        let cache = CredentialCache::new(Duration::from_secs(300), 3);
        cache.insert(ALICE, HASH, "correct horse");
        cache.insert(ALICE, HASH, "correct horse");
        assert_eq!(cache.len(), 1);
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.by_use.len(), 1);
    }

    #[test]
    fn clear_forgets_everything() {
        let cache = CredentialCache::new(Duration::from_secs(300), 10);
        cache.insert(ALICE, HASH, "correct horse");
        cache.clear();
        assert_eq!(cache.len(), 0);
        assert!(!cache.contains(ALICE, HASH, "correct horse"));
    }

    #[test]
    fn zero_ttl_or_zero_entries_disables_the_cache() {
        for cache in [
            CredentialCache::new(Duration::ZERO, 10),
            CredentialCache::new(Duration::from_secs(300), 0),
        ] {
            cache.insert(ALICE, HASH, "correct horse");
            assert!(!cache.contains(ALICE, HASH, "correct horse"));
            assert_eq!(cache.len(), 0);
        }
    }

    #[test]
    fn two_processes_hash_the_same_login_differently() {
        let a = CredentialCache::new(Duration::from_secs(300), 10);
        let b = CredentialCache::new(Duration::from_secs(300), 10);
        assert_ne!(
            a.digest(ALICE, HASH, "correct horse"),
            b.digest(ALICE, HASH, "correct horse")
        );
    }
}
