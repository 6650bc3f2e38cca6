//! The URL host extractor of the URI block lists (and the tokenizer's `url:` tokens) on
//! arbitrary messages and text: no panic, every bound holds, and every host it gives is one
//! a DNS question can be built from (RFC 1035 2.3.4) or an address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::urls::{message_hosts, registered_domain, scan, Limits, UrlHost, UrlHosts};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        max_text_bytes: 16 * 1024,
        max_hosts: 20,
    };
    let mut all = message_hosts(data, &limits);
    scan(&String::from_utf8_lossy(data), limits.max_hosts, &mut all);
    let mut text = UrlHosts::default();
    scan(&String::from_utf8_lossy(data), 5, &mut text);
    assert!(text.hosts.len() <= 5);
    for host in all.hosts.iter().chain(&text.hosts) {
        if let UrlHost::Domain(domain) = host {
            assert!(domain.len() <= 253 && domain.contains('.'), "{domain:?}");
            assert!(
                domain.split('.').all(|l| !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_')),
                "{domain:?}"
            );
            if let Some(registered) = registered_domain(domain) {
                assert!(domain.ends_with(registered), "{domain:?} {registered:?}");
            }
        }
    }
});
