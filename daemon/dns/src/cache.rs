//! A bounded cache in front of any [`Resolver`]: answers and NXDOMAIN are kept for their
//! TTL (capped), temporary failures never.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{normalize, Answer, BoxFuture, DnsError, RecordType, Resolver};

type Entry = (Instant, Result<Answer, DnsError>);

pub struct Cached<R> {
    inner: R,
    capacity: usize,
    max_ttl: Duration,
    entries: Mutex<HashMap<(String, RecordType), Entry>>,
}

impl<R: Resolver> Cached<R> {
    /// At most `capacity` answers (0 = no cache), each kept at most `max_ttl`.
    pub fn new(inner: R, capacity: usize, max_ttl: Duration) -> Cached<R> {
        Cached {
            inner,
            capacity,
            max_ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &(String, RecordType), now: Instant) -> Option<Result<Answer, DnsError>> {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((expires, value)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: (String, RecordType), value: &Result<Answer, DnsError>, now: Instant) {
        let ttl = match value {
            Ok(answer) => Duration::from_secs(u64::from(answer.ttl)),
            // RFC 2308 5: negative answers are cached too; without the SOA minimum here, a
            // minute.
            Err(DnsError::NxDomain { .. }) => Duration::from_secs(60),
            Err(_) => return,
        }
        .min(self.max_ttl);
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Full: drop what has expired, and if that frees nothing, the entries closest to
            // expiry (a quarter of the cache) so that a flood of names cannot grow it.
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                let mut by_expiry: Vec<Instant> = entries.values().map(|(e, _)| *e).collect();
                by_expiry.sort_unstable();
                let cut = by_expiry[(self.capacity / 4).min(by_expiry.len() - 1)];
                entries.retain(|_, (expires, _)| *expires > cut);
            }
        }
        entries.insert(key, (now + ttl, value.clone()));
    }
}

impl<R: Resolver> Resolver for Cached<R> {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>> {
        Box::pin(async move {
            let key = (normalize(name), rtype);
            if let Some(hit) = self.get(&key, Instant::now()) {
                return hit;
            }
            let value = self.inner.lookup(name, rtype).await;
            self.put(key, &value, Instant::now());
            value
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryResolver, Rdata};

    #[tokio::test]
    async fn the_cache_is_bounded_and_keeps_no_temporary_failure() {
        let zone = MemoryResolver::new();
        for i in 0..100 {
            zone.txt(&format!("n{i}.example"), "v=spf1 -all");
        }
        zone.fail("down.example");
        let cached = Cached::new(zone, 10, Duration::from_secs(3600));
        for i in 0..100 {
            let answer = cached
                .lookup(&format!("n{i}.example."), RecordType::Txt)
                .await
                .unwrap();
            assert_eq!(answer.records.len(), 1);
            assert!(cached.len() <= 10);
        }
        assert!(cached
            .lookup("down.example", RecordType::Txt)
            .await
            .unwrap_err()
            .is_temporary());
        assert!(cached.lookup("nx.example", RecordType::A).await.is_err());
        // A later change of the zone is seen only after the TTL: the cached answer stays.
        cached
            .inner()
            .add("n99.example", Rdata::Txt(vec![b"second".to_vec()]));
        let again = cached.lookup("N99.example", RecordType::Txt).await.unwrap();
        assert_eq!(again.records.len(), 1);
    }
}
