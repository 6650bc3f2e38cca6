//! Source-network restriction of the management listeners that are on the network
//! (DESIGN.md 2 and 6: "restrict admin ports to trusted IPs"): `[admin] allowed_networks`.
//! Today that is the metrics endpoint; the admin socket is a Unix socket (mode 0600).
//!
//! A refused connection is closed at once. Refusals are peer-caused, so they are logged at
//! most once a minute (`admin.access.refused`, with the count since the last line, DESIGN.md
//! 6) and each is counted in `postern_admin_refused_total`.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// Shortest time between two `admin.access.refused` lines.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub struct AdminAccess {
    allowed: Vec<ipnet::IpNet>,
    refused: Counter,
    /// When the last line was logged, and refusals not logged since.
    log: Mutex<(Option<Instant>, u64)>,
}

impl AdminAccess {
    pub fn new(allowed: Vec<ipnet::IpNet>, refused: Counter) -> AdminAccess {
        AdminAccess {
            allowed,
            refused,
            log: Mutex::new((None, 0)),
        }
    }

    /// Whether `peer` may use `listener`; a refusal is counted and (rate-limited) logged.
    pub fn check(&self, listener: &'static str, peer: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d (RFC 4291 2.5.5.2).
        let peer = peer.to_canonical();
        if self.allowed.iter().any(|net| net.contains(&peer)) {
            return true;
        }
        self.refused.inc();
        let now = Instant::now();
        if let Ok(mut log) = self.log.lock() {
            let (last, suppressed) = &mut *log;
            if last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
                tracing::warn!(event = "admin.access.refused", listener, %peer, suppressed_since_last = *suppressed);
                *last = Some(now);
                *suppressed = 0;
            } else {
                *suppressed += 1;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_networks_pass() {
        let nets = vec![
            "127.0.0.1/32".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let counter = Counter::default();
        let access = AdminAccess::new(nets, counter.clone());
        assert!(access.check("metrics", "127.0.0.1".parse().unwrap()));
        assert!(access.check("metrics", "::ffff:127.0.0.1".parse().unwrap()));
        assert!(access.check("metrics", "2001:db8::5".parse().unwrap()));
        assert!(!access.check("metrics", "127.0.0.2".parse().unwrap()));
        assert!(!access.check("metrics", "192.0.2.1".parse().unwrap()));
        assert_eq!(counter.get(), 2);
        // The second refusal within a minute is not logged, only counted.
        assert_eq!(access.log.lock().unwrap().1, 1);
    }
}
