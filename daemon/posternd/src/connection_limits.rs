//! Per-IP and total connection limits, shared by every worker.
//!
//! Per-IP allowances are kept per listener class (DESIGN.md 6): one address that fills its
//! MX allowance (an attacker behind a shared NAT) still leaves its submission allowance to
//! the users behind the same address. SMTP has two classes, MX and submission (ports 587 and
//! 465), sharing one total; IMAP and POP3 have limits of their own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
}
