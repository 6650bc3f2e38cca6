//! Per-IP and total connection limits, shared by every worker.
//!
//! Per-IP allowances are kept per listener class (DESIGN.md 6): one address that fills its
//! MX allowance (an attacker behind a shared NAT) still leaves its submission allowance to
//! the users behind the same address. SMTP has two classes, MX and submission (ports 587 and
//! 465), sharing one total; IMAP and POP3 have limits of their own.
//!
//! Beside the connections open now, [`RateLimits`] counts what clients do over time: the
//! messages of one MX client address, and the messages and recipients of one authenticated
//! account on submission (DESIGN.md 2: per-IP and per-sender rates; a stolen account that
//! sends spam is stopped within its hourly allowance).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

pub struct ConnectionLimits {
    max_total: usize,
    /// The per-IP allowance of each class.
    max_per_ip: Vec<usize>,
    /// Open connections in total, and by (class, address).
    open: Mutex<(usize, HashMap<SlotKey, usize>)>,
}

/// A listener class and a client address.
type SlotKey = (usize, IpAddr);

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyTotal,
    TooManyFromAddress,
}

/// Held for the life of a connection; releases its slot on drop.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    key: SlotKey,
}

impl ConnectionLimits {
    /// Limits with one class.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        ConnectionLimits::with_classes(max_total, vec![max_per_ip])
    }

    /// Limits with one per-IP allowance per class (indexes into `max_per_ip`) and one total.
    pub fn with_classes(max_total: usize, max_per_ip: Vec<usize>) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot of the first (or only) class.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.acquire_in(0, ip)
    }

    /// A slot of `class`, counted against that class's allowance for `ip` and the total.
    pub fn acquire_in(
        self: &Arc<Self>,
        class: usize,
        ip: IpAddr,
    ) -> Result<ConnectionSlot, Refusal> {
        let max_per_ip = self.max_per_ip.get(class).copied().unwrap_or(0);
        let mut open = self.open.lock().map_err(|_| Refusal::TooManyTotal)?;
        if open.0 >= self.max_total {
            return Err(Refusal::TooManyTotal);
        }
        let key = (class, ip);
        let per_ip = open.1.entry(key).or_insert(0);
        if *per_ip >= max_per_ip {
            if *per_ip == 0 {
                open.1.remove(&key);
            }
            return Err(Refusal::TooManyFromAddress);
        }
        *per_ip += 1;
        open.0 += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(count) = open.1.get_mut(&self.key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.1.remove(&self.key);
                }
            }
        }
    }
}

/// What one hourly allowance is counted per.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// Messages from one MX client (an IPv4 address or an IPv6 /64,
    /// `crate::login_guard::client_network`).
    MxMessages(IpNet),
    /// Messages submitted by one account (its canonical address).
    SubmittedMessages(String),
    /// Recipients of the messages one account submits.
    SubmittedRecipients(String),
}

/// The answer of [`RateLimits::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Allowed,
    /// Over the allowance. `first` is true for the first refusal since the key was last
    /// allowed: the start of an episode, which is logged (one line per episode, not per
    /// refusal, so a client cannot write to the log at line rate; DESIGN.md 6).
    Refused {
        first: bool,
    },
}

/// Keys remembered before buckets that have refilled are forgotten.
const MAX_RATE_KEYS: usize = 100_000;
const HOUR: Duration = Duration::from_secs(3600);

/// Hourly allowances as token buckets: a key may use its whole allowance at once, then
/// gets it back evenly over the hour (one unit every hour/allowance). Shared by every
/// worker; one short lock per MAIL or RCPT.
#[derive(Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<RateKey, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// The allowance it was last taken from (the configuration may change on reload).
    per_hour: f64,
    /// A refusal was already reported in this episode.
    reported: bool,
}

impl Bucket {
    /// Tokens at `now`, refilled at `per_hour` an hour up to `per_hour`.
    fn refilled(&self, per_hour: f64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_hour / HOUR.as_secs_f64()).min(per_hour)
    }
}

impl RateLimits {
    pub fn new() -> Arc<RateLimits> {
        Arc::new(RateLimits::default())
    }

    /// Takes `count` units of `key`'s allowance of `per_hour` (0 = no limit) at `now`.
    /// A refused take uses nothing.
    pub fn take(&self, key: RateKey, per_hour: u64, count: u64, now: Instant) -> RateVerdict {
        if per_hour == 0 {
            return RateVerdict::Allowed;
        }
        let per_hour = per_hour as f64;
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; limits are a defence, not a reason
            // to refuse all mail.
            return RateVerdict::Allowed;
        };
        if buckets.len() >= MAX_RATE_KEYS && !buckets.contains_key(&key) {
            // A full bucket holds no information: forget those.
            buckets.retain(|_, b| b.refilled(b.per_hour, now) < b.per_hour);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: per_hour,
            at: now,
            per_hour,
            reported: false,
        });
        bucket.tokens = bucket.refilled(per_hour, now);
        bucket.at = now;
        bucket.per_hour = per_hour;
        let count = count as f64;
        if bucket.tokens >= count {
            bucket.tokens -= count;
            bucket.reported = false;
            RateVerdict::Allowed
        } else {
            let first = !bucket.reported;
            bucket.reported = true;
            RateVerdict::Refused { first }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits_hold_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = limits.acquire(a).unwrap();
        let _s2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::TooManyFromAddress));
        let _s3 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refusal::TooManyTotal));
        drop(s1);
        assert!(limits.acquire(a).is_ok());
    }

    #[test]
    fn each_class_has_its_own_per_ip_allowance_and_one_total() {
        let limits = ConnectionLimits::with_classes(5, vec![2, 2]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _m1 = limits.acquire_in(0, a).unwrap();
        let _m2 = limits.acquire_in(0, a).unwrap();
        assert_eq!(
            limits.acquire_in(0, a).err(),
            Some(Refusal::TooManyFromAddress)
        );
        // The same address still has its allowance in the other class.
        let s1 = limits.acquire_in(1, a).unwrap();
        let _s2 = limits.acquire_in(1, a).unwrap();
        assert_eq!(
            limits.acquire_in(1, a).err(),
            Some(Refusal::TooManyFromAddress)
        );
        drop(s1);
        let _s3 = limits.acquire_in(1, a).unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let _b1 = limits.acquire_in(1, b).unwrap();
        // Five open: the shared total refuses every class.
        assert_eq!(limits.acquire_in(0, b).err(), Some(Refusal::TooManyTotal));
    }

    #[test]
    fn hourly_allowance_is_used_up_then_comes_back_evenly() {
        let rates = RateLimits::new();
        let t0 = Instant::now();
        let key = || RateKey::SubmittedMessages("alice@example.test".into());
        for _ in 0..3 {
            assert_eq!(rates.take(key(), 3, 1, t0), RateVerdict::Allowed);
        }
        assert_eq!(
            rates.take(key(), 3, 1, t0),
            RateVerdict::Refused { first: true }
        );
        // Later refusals of the same episode are not reported again.
        assert_eq!(
            rates.take(key(), 3, 1, t0 + Duration::from_secs(60)),
            RateVerdict::Refused { first: false }
        );
        // One unit comes back every 20 minutes (3 an hour).
        let t1 = t0 + Duration::from_secs(20 * 60 + 1);
        assert_eq!(rates.take(key(), 3, 1, t1), RateVerdict::Allowed);
        assert_eq!(
            rates.take(key(), 3, 1, t1),
            RateVerdict::Refused { first: true }
        );
        // Other keys and kinds of key have their own allowance.
        let other = RateKey::SubmittedRecipients("alice@example.test".into());
        assert_eq!(rates.take(other, 3, 3, t1), RateVerdict::Allowed);
        // Never more than the allowance, however long the pause.
        let t2 = t1 + Duration::from_secs(10 * 3600);
        assert_eq!(rates.take(key(), 3, 3, t2), RateVerdict::Allowed);
        assert_eq!(
            rates.take(key(), 3, 1, t2),
            RateVerdict::Refused { first: true }
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let rates = RateLimits::new();
        let net = crate::login_guard::client_network("2001:db8::1".parse().unwrap());
        for _ in 0..10_000 {
            assert_eq!(
                rates.take(RateKey::MxMessages(net), 0, 1, Instant::now()),
                RateVerdict::Allowed
            );
        }
    }

    #[test]
    fn refilled_buckets_are_forgotten_when_the_table_is_full() {
        let rates = RateLimits::new();
        let t0 = Instant::now();
        for i in 0..MAX_RATE_KEYS {
            rates.take(RateKey::SubmittedMessages(i.to_string()), 10, 1, t0);
        }
        // One limited key, still empty when the table is pruned.
        let hot = || RateKey::SubmittedMessages("hot".into());
        let later = t0 + HOUR;
        assert_eq!(rates.take(hot(), 1, 1, later), RateVerdict::Allowed);
        let len = rates.buckets.lock().unwrap().len();
        assert_eq!(len, 1, "refilled buckets pruned, the new one kept");
        assert_eq!(
            rates.take(hot(), 1, 1, later),
            RateVerdict::Refused { first: true }
        );
    }
}
