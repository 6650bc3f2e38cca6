//! An in-memory zone for unit tests: no network, answers at once.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::{normalize, Answer, BoxFuture, DnsError, Dnssec, Rdata, RecordType, Resolver};

/// Names with their records. A name holding no record of any type answers NXDOMAIN; one
/// holding others answers NODATA (an empty [`Answer`]). Names added with
/// [`MemoryResolver::fail`] answer [`DnsError::Temporary`].
#[derive(Default)]
pub struct MemoryResolver {
    zone: RwLock<HashMap<String, Vec<Rdata>>>,
    failing: RwLock<HashSet<String>>,
    secure: RwLock<HashSet<String>>,
}

fn record_type(data: &Rdata) -> RecordType {
    match data {
        Rdata::A(_) => RecordType::A,
        Rdata::Aaaa(_) => RecordType::Aaaa,
        Rdata::Mx { .. } => RecordType::Mx,
        Rdata::Txt(_) => RecordType::Txt,
        Rdata::Ptr(_) => RecordType::Ptr,
        Rdata::Tlsa { .. } => RecordType::Tlsa,
    }
}

impl MemoryResolver {
    pub fn new() -> MemoryResolver {
        MemoryResolver::default()
    }

    pub fn add(&self, name: &str, data: Rdata) -> &Self {
        if let Ok(mut zone) = self.zone.write() {
            zone.entry(normalize(name)).or_default().push(data);
        }
        self
    }

    /// A TXT record of one string (split in 255-byte character-strings as a zone file would).
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let parts = text.as_bytes().chunks(255).map(<[u8]>::to_vec).collect();
        self.add(name, Rdata::Txt(parts))
    }

    /// A name that exists with no records (NODATA for every type).
    pub fn exists(&self, name: &str) -> &Self {
        if let Ok(mut zone) = self.zone.write() {
            zone.entry(normalize(name)).or_default();
        }
        self
    }

    /// Questions about `name` fail temporarily (a timeout, SERVFAIL), except those about
    /// record types it holds.
    pub fn fail(&self, name: &str) -> &Self {
        if let Ok(mut failing) = self.failing.write() {
            failing.insert(normalize(name));
        }
        self
    }

    /// Answers about `name` are DNSSEC-secure.
    pub fn secure(&self, name: &str) -> &Self {
        if let Ok(mut secure) = self.secure.write() {
            secure.insert(normalize(name));
        }
        self
    }

    fn answer(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        let key = normalize(name);
        // A failing name still answers the types it has records of (the RFC 7208 test
        // suite's TIMEOUT: only questions without data time out).
        let has_type = self
            .zone
            .read()
            .map(|z| {
                z.get(&key)
                    .is_some_and(|r| r.iter().any(|d| record_type(d) == rtype))
            })
            .unwrap_or(false);
        if !has_type
            && self
                .failing
                .read()
                .map(|f| f.contains(&key))
                .unwrap_or(true)
        {
            return Err(DnsError::Temporary {
                name: key,
                reason: "SERVFAIL (test zone)".into(),
            });
        }
        let dnssec = if self
            .secure
            .read()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
        {
            Dnssec::Secure
        } else {
            Dnssec::Insecure
        };
        let zone = self.zone.read().map_err(|_| DnsError::Temporary {
            name: key.clone(),
            reason: "test zone poisoned".into(),
        })?;
        match zone.get(&key) {
            None => Err(DnsError::NxDomain { name: key, dnssec }),
            Some(records) => Ok(Answer {
                records: records
                    .iter()
                    .filter(|r| record_type(r) == rtype)
                    .cloned()
                    .collect(),
                dnssec,
                ttl: 300,
            }),
        }
    }
}

impl Resolver for MemoryResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> BoxFuture<'a, Result<Answer, DnsError>> {
        let answer = self.answer(name, rtype);
        Box::pin(async move { answer })
    }
}
