//! Authentication-Results fields in received mail are hostile input (RFC 8601 5): reading the
//! authserv-id (CFWS, nested comments, quoted strings) and removing our own fields must never
//! panic, never grow the message, and leave nothing of ours behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_dns::authres::{authserv_id, strip_own_results};

fuzz_target!(|data: &[u8]| {
    let _ = authserv_id(data);
    let (out, removed) = strip_own_results(data, "mx.example.org");
    assert!(out.len() <= data.len());
    assert_eq!(removed == 0, out.len() == data.len());
    let (again, removed_again) = strip_own_results(&out, "mx.example.org");
    assert_eq!(removed_again, 0);
    assert_eq!(again, out);
});
