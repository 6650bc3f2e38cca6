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
