//! Format versioning: a store written by format version 1 (record header byte 4 = 1)
//! is kept, byte for byte, under `tests/fixtures/golden-v1/`, and every later build must
//! open it and read back exactly what was written then.
//!
//! Round-trip tests alone pass when encode and decode change together; this one does not,
//! because its expectations are literals written below, not values computed by today's
//! encoder. A format change that breaks old stores fails here; a deliberate new format
//! adds a `golden-v<N>` beside this one and keeps this test.
//!
//! The fixture was made by the ignored test `generate_golden_v1` below:
//!
//! ```text
//! cargo test -p postern-store --test golden -- --ignored generate_golden_v1
//! ```
//!
//! It refuses to overwrite an existing fixture; regenerate only by deleting the directory
//! on purpose (and then the literals below must be rewritten by hand from its output).

use std::path::{Path, PathBuf};

use postern_store::{
    AppendRequest, AppendTarget, BackendChoice, FlagOp, MailboxId, Store, StoreOptions,
};

const ACCOUNT: &str = "alice@golden.test";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1")
}

/// The options the fixture was written with. The portable backend writes the same bytes
/// as io_uring and works where io_uring is refused; `sysfs_root` points nowhere so no md
/// RAID is detected and the alignment is the plain 4096.
fn options(root: &Path) -> StoreOptions {
    let mut o = StoreOptions::new(root);
    o.backend = BackendChoice::Portable;
    o.shards = 2;
    // Small segments: the fixture stays small and spans several segments.
    o.segment_bytes = 16 * 1024;
    o.sysfs_root = root.join("no-sysfs");
    o
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn copy_tree(from: &Path, to: &Path, skip_lock: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for ent in std::fs::read_dir(from)? {
        let ent = ent?;
        let name = ent.file_name();
        // LOCK is the running store's flock file, not part of the format.
        if skip_lock && name == "LOCK" {
            continue;
        }
        let ty = ent.file_type()?;
        if ty.is_dir() {
            copy_tree(&ent.path(), &to.join(&name), skip_lock)?;
        } else if ty.is_file() {
            std::fs::copy(ent.path(), to.join(&name))?;
        }
    }
    Ok(())
}

fn append(
    store: &Store,
    rt: &tokio::runtime::Runtime,
    shard: usize,
    body: &[u8],
    date: i64,
    targets: &[(MailboxId, &[&str])],
) {
    let req = AppendRequest {
        body: body.to_vec(),
        internal_date: date,
        targets: targets
            .iter()
            .map(|(m, f)| AppendTarget {
                mailbox: *m,
                flags: f.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    };
    rt.block_on(store.append(shard, req)).expect("append");
}

/// Writes the fixture with today's code: every record kind the log has (MailboxCreate,
/// Message, FlagsUpdate, Expunge, Padding, MailboxDelete, MailboxRename, FlagsBatch,
/// Subscription, MessageRef), on two shards, over several segments.
#[test]
#[ignore = "writes tests/fixtures/golden-v1; run by hand only to create a new fixture"]
fn generate_golden_v1() {
    let dest = fixture_dir();
    assert!(
        !dest.exists(),
        "{} exists: a committed fixture is never overwritten",
        dest.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    {
        let s = Store::open(options(tmp.path())).expect("open");
        let inbox = s.ensure_mailbox(ACCOUNT, "INBOX", None).expect("INBOX").id;
        let archive = s
            .ensure_mailbox(ACCOUNT, "Archive", Some("\\Archive"))
            .expect("Archive")
            .id;
        let drafts = s
            .ensure_mailbox(ACCOUNT, "Drafts", None)
            .expect("Drafts")
            .id;
        let old = s.ensure_mailbox(ACCOUNT, "Old", None).expect("Old").id;
        append(
            &s,
            &rt,
            0,
            b"Subject: one\r\n\r\nfirst\r\n",
            1_700_000_001,
            &[(inbox, &["\\Seen"])],
        );
        // One Message record delivered to two mailboxes with different flags.
        append(
            &s,
            &rt,
            1,
            b"Subject: two\r\n\r\nsecond, to two mailboxes\r\n",
            1_700_000_002,
            &[(inbox, &[]), (archive, &["$Label1"])],
        );
        append(
            &s,
            &rt,
            1,
            b"Subject: three\r\n\r\nthird, expunged\r\n",
            1_700_000_003,
            &[(inbox, &["\\Deleted"])],
        );
        append(
            &s,
            &rt,
            0,
            b"Subject: draft\r\n\r\nunfinished\r\n",
            1_700_000_004,
            &[(drafts, &["\\Draft"])],
        );
        append(
            &s,
            &rt,
            0,
            b"Subject: old\r\n\r\ngoes with its mailbox\r\n",
            1_700_000_005,
            &[(old, &[])],
        );
        // FlagsUpdate.
        rt.block_on(s.set_flags(inbox, 1, vec!["\\Seen".into(), "\\Answered".into()]))
            .expect("set_flags");
        // FlagsBatch.
        rt.block_on(s.update_flags(inbox, &[2, 3], FlagOp::Add, &["\\Flagged".into()], None))
            .expect("update_flags");
        // Expunge.
        rt.block_on(s.expunge(inbox, vec![3])).expect("expunge");
        // MessageRef: a copy of INBOX uid 1 into Archive, bytes not written again.
        let src: Vec<_> = s
            .messages(inbox)
            .into_iter()
            .filter(|m| m.uid == 1)
            .collect();
        rt.block_on(s.copy_messages(1, &src, archive))
            .expect("copy");
        s.rename_mailbox(drafts, "Drafts/2026").expect("rename");
        s.delete_mailbox(old).expect("delete");
        s.set_subscription(ACCOUNT, "INBOX", true).expect("sub");
        s.set_subscription(ACCOUNT, "Archive", true).expect("sub");
        s.set_subscription(ACCOUNT, "Old", true).expect("sub");
        s.set_subscription(ACCOUNT, "Old", false).expect("unsub");
        // Print what the test below must expect, to be written out there by hand.
        for m in s.mailboxes(ACCOUNT) {
            println!("{m:?}");
            for meta in s.messages(m.id) {
                println!("  {meta:?}");
            }
        }
        println!("subscriptions {:?}", s.subscriptions(ACCOUNT));
        s.shutdown();
    }
    copy_tree(tmp.path(), &dest, true).expect("copy fixture");
}

/// (uid, modseq, flags, internal date, body) of one expected message.
type Expected = (u32, u64, &'static [&'static str], i64, &'static [u8]);

#[allow(clippy::too_many_arguments)]
fn check_mailbox(
    store: &Store,
    name: &str,
    id: u32,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    special_use: Option<&str>,
    want: &[Expected],
) {
    let info = store
        .find_mailbox(ACCOUNT, name)
        .unwrap_or_else(|| panic!("mailbox {name} missing"));
    assert_eq!(info.id, MailboxId(id), "{name}: id");
    assert_eq!(info.uidvalidity, uidvalidity, "{name}: UIDVALIDITY");
    assert_eq!(info.uidnext, uidnext, "{name}: UIDNEXT");
    assert_eq!(info.highest_modseq, highest_modseq, "{name}: HIGHESTMODSEQ");
    assert_eq!(
        info.special_use.as_deref(),
        special_use,
        "{name}: special use"
    );
    assert_eq!(info.exists as usize, want.len(), "{name}: EXISTS");
    let metas = store.messages(info.id);
    assert_eq!(metas.len(), want.len(), "{name}: message count");
    for (meta, (uid, modseq, flags, date, body)) in metas.iter().zip(want) {
        assert_eq!(meta.uid, *uid, "{name}: uid");
        assert_eq!(meta.modseq, *modseq, "{name} uid {uid}: MODSEQ");
        let mut got = meta.flags.clone();
        got.sort();
        let mut exp: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        exp.sort();
        assert_eq!(got, exp, "{name} uid {uid}: flags");
        assert_eq!(meta.internal_date, *date, "{name} uid {uid}: INTERNALDATE");
        assert_eq!(meta.size, body.len() as u64, "{name} uid {uid}: size");
        let bytes = store.read_message(meta).expect("read_message");
        assert_eq!(bytes, *body, "{name} uid {uid}: bytes");
    }
}

const ONE: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const TWO: &[u8] = b"Subject: two\r\n\r\nsecond, to two mailboxes\r\n";
const DRAFT: &[u8] = b"Subject: draft\r\n\r\nunfinished\r\n";

/// Everything the v1 fixture holds, as literals (see the module comment for why).
fn check_v1_contents(s: &Store) {
    check_mailbox(
        s,
        "INBOX",
        1,
        1_796_626_796,
        4,
        8,
        None,
        &[
            (1, 5, &["\\Seen", "\\Answered"], 1_700_000_001, ONE),
            (2, 6, &["\\Flagged"], 1_700_000_002, TWO),
        ],
    );
    check_mailbox(
        s,
        "Archive",
        2,
        1_796_626_797,
        3,
        3,
        Some("\\Archive"),
        &[
            (1, 2, &["$Label1"], 1_700_000_002, TWO),
            // The MessageRef copy of INBOX uid 1: its bytes come from INBOX's record.
            (2, 3, &["\\Seen", "\\Answered"], 1_700_000_001, ONE),
        ],
    );
    check_mailbox(
        s,
        "Drafts/2026",
        3,
        1_796_626_798,
        2,
        2,
        None,
        &[(1, 2, &["\\Draft"], 1_700_000_004, DRAFT)],
    );
    let copy = &s.messages(MailboxId(2))[1];
    assert_eq!(copy.source, (MailboxId(1), 1), "copy's source delivery");
    // Renamed and deleted mailboxes are gone under their old names; ids are not reused.
    assert!(s.find_mailbox(ACCOUNT, "Drafts").is_none(), "renamed away");
    assert!(s.find_mailbox(ACCOUNT, "Old").is_none(), "deleted");
    assert!(s.mailbox(MailboxId(4)).is_none(), "deleted by id");
    let mut names: Vec<String> = s.mailboxes(ACCOUNT).into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["Archive", "Drafts/2026", "INBOX"]);
    assert_eq!(s.subscriptions(ACCOUNT), ["Archive", "INBOX"]);
}

#[test]
fn golden_v1_fixture_has_the_v1_header() {
    // Independent of the record decoder: the first record of shard 0 is a MailboxCreate
    // with magic "PSTN", format version 1, kind 1, reserved zero, sequence 0.
    let seg = std::fs::read(fixture_dir().join("shard-0/seg-00000000.log")).expect("fixture");
    assert_eq!(&seg[0..4], b"PSTN");
    assert_eq!(seg[4], 1, "format version");
    assert_eq!(seg[5], 1, "kind MailboxCreate");
    assert_eq!(&seg[6..8], &[0, 0]);
    assert_eq!(&seg[16..24], &0u64.to_le_bytes());
    // Payload: mailbox id 1 and the UIDVALIDITY the test below expects.
    assert_eq!(&seg[24..28], &1u32.to_le_bytes());
    assert_eq!(&seg[28..32], &1_796_626_796u32.to_le_bytes());
}

#[test]
fn golden_v1_opens_with_every_message_intact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A copy: opening takes a LOCK file and appends, and the fixture must stay as made.
    copy_tree(&fixture_dir(), tmp.path(), true).expect("copy fixture");
    let rt = rt();
    {
        let s = Store::open(options(tmp.path())).expect("open golden-v1");
        check_v1_contents(&s);
        // The old store keeps working: the next UID and MODSEQ follow the old ones.
        let a = rt
            .block_on(s.append(
                1,
                AppendRequest {
                    body: b"after upgrade".to_vec(),
                    internal_date: 1_800_000_000,
                    targets: vec![AppendTarget {
                        mailbox: MailboxId(1),
                        flags: vec![],
                    }],
                },
            ))
            .expect("append to the old store");
        assert_eq!((a[0].uid, a[0].modseq), (4, 9));
        s.shutdown();
    }
    let s = Store::open(options(tmp.path())).expect("reopen");
    let inbox = s.messages(MailboxId(1));
    assert_eq!(inbox.len(), 3);
    assert_eq!(
        s.read_message(&inbox[2]).expect("read"),
        b"after upgrade".to_vec()
    );
    s.shutdown();
    drop(s);
    // Read-only open (offline export) of the untouched fixture sees the same store.
    let ro = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture_dir(), ro.path(), true).expect("copy fixture");
    let mut o = options(ro.path());
    o.read_only = true;
    let s = Store::open(o).expect("read-only open");
    check_v1_contents(&s);
}
