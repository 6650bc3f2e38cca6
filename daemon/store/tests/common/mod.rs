#![allow(dead_code)]

use std::path::Path;

use postern_store::{
    AppendRequest, AppendTarget, BackendChoice, BackendKind, MailboxId, Store, StoreOptions,
};

pub const BACKENDS: [BackendChoice; 2] = [BackendChoice::IoUring, BackendChoice::Portable];

pub fn opts(root: &Path, backend: BackendChoice) -> StoreOptions {
    let mut o = StoreOptions::new(root);
    o.backend = backend;
    o.segment_bytes = 64 * 1024;
    o
}

pub fn open(root: &Path, backend: BackendChoice) -> Store {
    let s = Store::open(opts(root, backend)).unwrap();
    let want = match backend {
        BackendChoice::Portable => BackendKind::Portable,
        _ => BackendKind::IoUring,
    };
    assert_eq!(s.backend_kind(), want);
    s
}

pub fn req(mailbox: MailboxId, body: &[u8]) -> AppendRequest {
    AppendRequest {
        body: body.to_vec(),
        internal_date: 1_700_000_000,
        targets: vec![AppendTarget {
            mailbox,
            flags: vec![],
        }],
    }
}

/// (uid, body) of every visible message.
pub fn contents(store: &Store, mb: MailboxId) -> Vec<(u32, Vec<u8>)> {
    store
        .messages(mb)
        .iter()
        .map(|m| (m.uid, store.read_message(m).unwrap()))
        .collect()
}

/// Deterministic pseudo-random stream (splitmix64), for the kill -9 tests.
pub fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The parent side of a `harness = false` test binary holding one test: answers
/// `--list`, honours a `cargo test NAME` filter (options such as --nocapture are not
/// filters), and runs `test` with libtest's report lines.
pub fn run_single_test(name: &str, test: fn()) {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: test");
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        println!("running 0 tests");
        return;
    }
    println!("running 1 test");
    test();
    println!("test {name} ... ok");
}
