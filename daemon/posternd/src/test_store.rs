//! A portable-backend store in a temporary directory for unit tests, with an INBOX.

use postern_store::{AppendRequest, AppendTarget, BackendChoice, MailboxId, Store, StoreOptions};

/// The store lives as long as the directory.
pub struct TestStore {
    pub store: Store,
    pub inbox: MailboxId,
    _dir: tempfile::TempDir,
}

pub fn open() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = StoreOptions::new(dir.path());
    options.backend = BackendChoice::Portable;
    let store = Store::open(options).expect("store");
    let inbox = store
        .ensure_mailbox("a@example.test", "INBOX", None)
        .expect("INBOX")
        .id;
    TestStore {
        store,
        inbox,
        _dir: dir,
    }
}

/// A request to deliver `body` to `mailbox`, no flags.
pub fn request(mailbox: MailboxId, body: &[u8]) -> AppendRequest {
    AppendRequest {
        internal_date: 0,
        body: body.to_vec(),
        targets: vec![AppendTarget {
            mailbox,
            flags: Vec::new(),
        }],
    }
}
