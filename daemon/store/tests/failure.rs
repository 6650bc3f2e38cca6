//! A commit that fails (here: the next segment cannot be created) fails every waiter in
//! the batch, acknowledges nothing, stops the shard, and does not block visibility of
//! later UIDs committed on other shards.

mod common;

use common::*;
use postern_store::{StoreError, StoreOptions};

#[test]
fn failed_commit_fails_the_batch_and_poisons_the_shard() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let mut o: StoreOptions = opts(dir.path(), backend);
        o.shards = 2;
        o.segment_bytes = 16 * 1024;
        let s = postern_store::Store::open(o.clone()).unwrap();
        let mb = s.ensure_mailbox("a@x.test", "INBOX", None).unwrap().id;
        // Fill shard 1's first segment most of the way.
        s.append_blocking(1, req(mb, &[b'a'; 9000])).unwrap();
        // A directory squatting on the next segment's name makes its creation fail.
        std::fs::create_dir(dir.path().join("shard-1/seg-00000001.log")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(s.append(1, req(mb, &[b'b'; 9000])))
            .unwrap_err();
        assert!(matches!(err, StoreError::CommitFailed(_)), "{err:?}");
        assert!(matches!(
            s.append_blocking(1, req(mb, b"c")),
            Err(StoreError::ShardPoisoned(1))
        ));
        // Shard 0 still works, and the failed UIDs do not hold back visibility.
        let ok = rt.block_on(s.append(0, req(mb, b"d"))).unwrap();
        assert_eq!(ok[0].uid, 4);
        let uids: Vec<u32> = s.messages(mb).iter().map(|m| m.uid).collect();
        assert_eq!(uids, vec![1, 4]);
        assert_eq!(s.find_mailbox("a@x.test", "INBOX").unwrap().uidnext, 5);
        drop(s);
        std::fs::remove_dir(dir.path().join("shard-1/seg-00000001.log")).unwrap();
        let s = postern_store::Store::open(o).unwrap();
        let got = contents(&s, mb);
        assert_eq!(got, vec![(1, vec![b'a'; 9000]), (4, b"d".to_vec())]);
        assert_eq!(s.append_blocking(1, req(mb, b"e")).unwrap()[0].uid, 5);
    }
}
