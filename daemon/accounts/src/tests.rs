use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::*;

const PW: &str = "correct horse battery";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// example.test with users alice and bob.
fn sample() -> Accounts {
    let mut a = Accounts::default();
    a.add_domain("Example.TEST").unwrap();
    a.add_user("alice@example.test", PW).unwrap();
    a.add_user("Bob@Example.Test", PW).unwrap();
    a
}

#[test]
fn domains_add_list_delete() {
    let mut a = Accounts::default();
    a.add_domain("B.example").unwrap();
    a.add_domain("a.example").unwrap();
    assert_eq!(a.domains(), s(&["a.example", "b.example"]));
    assert!(a.is_local_domain("A.EXAMPLE"));
    assert!(!a.is_local_domain("c.example"));
    assert!(matches!(
        a.add_domain("a.EXAMPLE"),
        Err(AccountError::DomainExists(_))
    ));
    a.del_domain("b.example").unwrap();
    assert_eq!(a.domains(), s(&["a.example"]));
    assert!(matches!(
        a.del_domain("b.example"),
        Err(AccountError::UnknownDomain(_))
    ));
}

#[test]
fn invalid_domains_are_rejected() {
    let mut a = Accounts::default();
    for bad in [
        "",
        "localhost",
        "a..b",
        "-a.example",
        "a-.example",
        "a_b.example",
        "1.2.3.4",
        "exa mple.com",
        "bücher.example",
        &format!("{}.example", "a".repeat(64)),
    ] {
        assert!(
            matches!(a.add_domain(bad), Err(AccountError::InvalidDomain { .. })),
            "{bad:?} accepted"
        );
    }
    a.add_domain("xn--bcher-kva.example").unwrap();
}

#[test]
fn del_domain_refuses_while_in_use() {
    let mut a = sample();
    a.add_alias("team@example.test", &s(&["alice@example.test"]))
        .unwrap();
    match a.del_domain("example.test") {
        Err(AccountError::DomainInUse {
            users: 2,
            aliases: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    a.del_alias("team@example.test").unwrap();
    a.del_user("alice@example.test").unwrap();
    a.del_user("bob@example.test").unwrap();
    a.del_domain("example.test").unwrap();
    assert!(a.domains().is_empty());
}

#[test]
fn users_add_list_delete_and_canonical_case() {
    let mut a = sample();
    assert_eq!(a.users(), s(&["alice@example.test", "bob@example.test"]));
    assert!(matches!(
        a.add_user("ALICE@example.test", PW),
        Err(AccountError::UserExists(_))
    ));
    assert!(matches!(
        a.add_user("carol@other.test", PW),
        Err(AccountError::UnknownDomain(_))
    ));
    assert!(matches!(
        a.add_user("carol+x@example.test", PW),
        Err(AccountError::SubaddressInName(_))
    ));
    for bad in [
        "carol",
        "@example.test",
        "ca rol@example.test",
        ".carol@example.test",
        "ca..rol@example.test",
        "carol.@example.test",
        "\"c\"@example.test",
    ] {
        assert!(
            matches!(
                a.add_user(bad, PW),
                Err(AccountError::InvalidAddress { .. })
            ),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        a.add_user(&format!("{}@example.test", "c".repeat(65)), PW),
        Err(AccountError::InvalidAddress { .. })
    ));
    // SMTPUTF8 local parts are fine and lowercased (RFC 6531).
    a.add_user("Ünïcode@example.test", PW).unwrap();
    assert!(a.users().contains(&"ünïcode@example.test".to_string()));
    let user = a.user("BOB@example.test").unwrap();
    assert!(user
        .password_hash
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(user.created > 1_600_000_000);
    assert!(
        !format!("{user:?}").contains("argon2"),
        "hash leaked into Debug"
    );
    a.del_user("Bob@EXAMPLE.test").unwrap();
    assert!(matches!(
        a.del_user("bob@example.test"),
        Err(AccountError::UnknownUser(_))
    ));
    assert_eq!(
        a.users(),
        s(&["alice@example.test", "ünïcode@example.test"])
    );
}

#[test]
fn password_policy() {
    let mut a = sample();
    assert!(matches!(
        a.add_user("c@example.test", "short"),
        Err(AccountError::WeakPassword(_))
    ));
    assert!(matches!(
        a.add_user("c@example.test", "1234567"),
        Err(AccountError::WeakPassword(_))
    ));
    assert!(matches!(
        a.add_user("c@example.test", &"x".repeat(MAX_PASSWORD_BYTES + 1)),
        Err(AccountError::WeakPassword(_))
    ));
    assert!(matches!(
        a.add_user("c@example.test", "abc\u{0}defgh"),
        Err(AccountError::WeakPassword(_))
    ));
    assert!(a.user("c@example.test").is_none());
    // Eight characters, counted as characters not bytes.
    a.add_user("c@example.test", "ééééé123").unwrap();
    assert!(hash_password("short").is_err());
}

#[test]
fn verify_password_cases() {
    let mut a = sample();
    assert!(a.verify_password("alice@example.test", PW));
    assert!(a.verify_password("ALICE@Example.Test", PW));
    assert!(!a.verify_password("alice@example.test", "wrong password"));
    assert!(!a.verify_password("alice@example.test", ""));
    assert!(!a.verify_password("nobody@example.test", PW));
    assert!(!a.verify_password("not an address", PW));
    // Login names are exact user addresses: no subaddress, no alias.
    a.add_alias("team@example.test", &s(&["alice@example.test"]))
        .unwrap();
    assert!(!a.verify_password("team@example.test", PW));
    assert!(!a.verify_password("alice+x@example.test", PW));

    a.set_password("alice@example.test", "a new passphrase")
        .unwrap();
    assert!(!a.verify_password("alice@example.test", PW));
    assert!(a.verify_password("alice@example.test", "a new passphrase"));
    assert!(matches!(
        a.set_password("nobody@example.test", PW),
        Err(AccountError::UnknownUser(_))
    ));
    assert!(matches!(
        a.set_password("alice@example.test", "x"),
        Err(AccountError::WeakPassword(_))
    ));
}

#[test]
fn unknown_user_costs_a_verification() {
    let a = sample();
    // Warm the dummy hash, then compare: an unknown user must not answer instantly.
    let _ = a.verify_password("nobody@example.test", PW);
    let t = std::time::Instant::now();
    assert!(!a.verify_password("nobody@example.test", PW));
    let unknown = t.elapsed();
    let t = std::time::Instant::now();
    assert!(!a.verify_password("alice@example.test", "wrong password"));
    let known = t.elapsed();
    assert!(
        unknown * 4 > known,
        "unknown {unknown:?} vs known {known:?}"
    );
}

#[test]
fn hashes_verify_with_their_own_parameters_and_salts_differ() {
    let h1 = hash_password(PW).unwrap();
    let h2 = hash_password(PW).unwrap();
    assert_ne!(h1, h2);
    assert!(password::verify(&h1, PW));
    assert!(!password::verify("not a phc string", PW));
}

#[test]
fn aliases_add_list_delete() {
    let mut a = sample();
    a.add_alias(
        "Team@example.test",
        &s(&[
            "alice@example.test",
            "BOB@example.test",
            "alice@example.test",
        ]),
    )
    .unwrap();
    assert_eq!(
        a.aliases(),
        vec![(
            "team@example.test".to_string(),
            s(&["alice@example.test", "bob@example.test"])
        )]
    );
    assert!(matches!(
        a.add_alias("team@example.test", &s(&["bob@example.test"])),
        Err(AccountError::AliasExists(_))
    ));
    assert!(matches!(
        a.add_alias("alice@example.test", &s(&["bob@example.test"])),
        Err(AccountError::UserExists(_))
    ));
    assert!(matches!(
        a.add_user("team@example.test", PW),
        Err(AccountError::AliasExists(_))
    ));
    assert!(matches!(
        a.add_alias("x@example.test", &[]),
        Err(AccountError::InvalidTarget { .. })
    ));
    assert!(matches!(
        a.add_alias("x@example.test", &s(&["x@example.test"])),
        Err(AccountError::InvalidTarget { .. })
    ));
    assert!(matches!(
        a.add_alias("x@example.test", &s(&["nobody@example.test"])),
        Err(AccountError::InvalidTarget { .. })
    ));
    assert!(matches!(
        a.add_alias("x@example.test", &s(&["someone@remote.test"])),
        Err(AccountError::InvalidTarget { .. })
    ));
    assert!(matches!(
        a.add_alias("x@remote.test", &s(&["alice@example.test"])),
        Err(AccountError::UnknownDomain(_))
    ));
    assert!(matches!(
        a.add_alias("x@example.test", &s(&["bad address"])),
        Err(AccountError::InvalidAddress { .. })
    ));
    // A user targeted by an alias cannot be deleted until the alias is.
    match a.del_user("bob@example.test") {
        Err(AccountError::UserInUse { aliases, .. }) => {
            assert_eq!(aliases, s(&["team@example.test"]))
        }
        other => panic!("{other:?}"),
    }
    a.del_alias("TEAM@example.test").unwrap();
    assert!(matches!(
        a.del_alias("team@example.test"),
        Err(AccountError::UnknownAlias(_))
    ));
    a.del_user("bob@example.test").unwrap();
}

#[test]
fn resolve_recipient_cases() {
    let mut a = sample();
    a.add_alias("postmaster@example.test", &s(&["alice@example.test"]))
        .unwrap();
    a.add_alias(
        "team@example.test",
        &s(&[
            "postmaster@example.test",
            "bob+team@example.test",
            "alice@example.test",
        ]),
    )
    .unwrap();
    a.add_alias(
        "all@example.test",
        &s(&["team@example.test", "bob@example.test"]),
    )
    .unwrap();
    assert_eq!(
        a.resolve_recipient("alice@example.test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("ALICE@EXAMPLE.TEST"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("alice+news@example.test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("alice+@example.test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("postmaster@example.test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("team@example.test"),
        Some(s(&["alice@example.test", "bob@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("team+x@example.test"),
        Some(s(&["alice@example.test", "bob@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("all@example.test"),
        Some(s(&["alice@example.test", "bob@example.test"]))
    );
    assert_eq!(a.resolve_recipient("nobody@example.test"), None);
    assert_eq!(a.resolve_recipient("+tag@example.test"), None);
    assert_eq!(a.resolve_recipient("alice@remote.test"), None);
    assert_eq!(a.resolve_recipient("garbage"), None);
}

#[test]
fn alias_loops_terminate() {
    let mut a = sample();
    a.add_alias("a@example.test", &s(&["alice@example.test"]))
        .unwrap();
    a.add_alias(
        "b@example.test",
        &s(&["a@example.test", "bob@example.test"]),
    )
    .unwrap();
    // Re-point a at b: a -> b -> a is now a loop, with bob reachable through it.
    a.del_alias("a@example.test").unwrap();
    a.add_alias("a@example.test", &s(&["b@example.test"]))
        .unwrap();
    assert_eq!(
        a.resolve_recipient("a@example.test"),
        Some(s(&["bob@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("b@example.test"),
        Some(s(&["bob@example.test"]))
    );

    // The API refuses targets that deliver nowhere, so a user-less loop cannot be made with
    // it; a file edited by hand can still hold one, and resolving it must end, with None.
    let l: Accounts = serde_json::from_str(
        r#"{"domains": ["loop.test"], "users": {},
            "aliases": {"x@loop.test": ["y@loop.test"], "y@loop.test": ["x@loop.test", "x+t@loop.test"]}}"#,
    )
    .unwrap();
    assert_eq!(l.resolve_recipient("x@loop.test"), None);
    assert_eq!(l.resolve_recipient("y+t@loop.test"), None);
    let mut l = l;
    assert!(matches!(
        l.add_alias("z@loop.test", &s(&["x@loop.test"])),
        Err(AccountError::InvalidTarget { .. })
    ));
}

#[test]
fn alias_depth_is_bounded() {
    let mut a = sample();
    let mut prev = "alice@example.test".to_string();
    for i in 0..=MAX_ALIAS_DEPTH {
        let name = format!("hop{i}@example.test");
        a.add_alias(&name, &[prev.clone()]).unwrap();
        prev = name;
    }
    // hopN is N+1 aliases deep.
    let hop = |n: usize| format!("hop{n}@example.test");
    assert_eq!(
        a.resolve_recipient(&hop(MAX_ALIAS_DEPTH - 1)),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(a.resolve_recipient(&hop(MAX_ALIAS_DEPTH)), None);
    assert!(matches!(
        a.add_alias(&hop(MAX_ALIAS_DEPTH + 1), &[hop(MAX_ALIAS_DEPTH)]),
        Err(AccountError::InvalidTarget { .. })
    ));
}

#[test]
fn owns_address_cases() {
    let mut a = sample();
    a.add_alias("postmaster@example.test", &s(&["alice@example.test"]))
        .unwrap();
    a.add_alias(
        "team@example.test",
        &s(&["alice@example.test", "bob@example.test"]),
    )
    .unwrap();
    assert!(a.owns_address("alice@example.test", "alice@example.test"));
    assert!(a.owns_address("alice@example.test", "Alice@Example.Test"));
    assert!(a.owns_address("ALICE@example.test", "alice+shop@example.test"));
    assert!(a.owns_address("alice@example.test", "postmaster@example.test"));
    assert!(a.owns_address("alice@example.test", "team@example.test"));
    assert!(a.owns_address("bob@example.test", "team@example.test"));
    assert!(!a.owns_address("bob@example.test", "postmaster@example.test"));
    assert!(!a.owns_address("bob@example.test", "alice@example.test"));
    assert!(!a.owns_address("bob@example.test", "alice+x@example.test"));
    assert!(!a.owns_address("alice@example.test", "alice@other.test"));
    assert!(!a.owns_address("alice@example.test", "nobody@example.test"));
    // Not a user (an alias or nothing) owns nothing.
    assert!(!a.owns_address("team@example.test", "team@example.test"));
    assert!(!a.owns_address("nobody@example.test", "nobody@example.test"));
    assert!(!a.owns_address("garbage", "alice@example.test"));
}

// ---- store ------------------------------------------------------------------------------

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn store_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data"); // created by open
    let store = AccountStore::open(&data).unwrap();
    assert_eq!(store.load().unwrap(), Accounts::default());
    assert_eq!(store.file_stamp(), None);
    store
        .modify(|a| {
            a.add_domain("example.test")?;
            a.add_user("alice@example.test", PW)?;
            a.add_alias("team@example.test", &s(&["alice@example.test"]))
        })
        .unwrap();
    drop(store);

    let store = AccountStore::open(&data).unwrap();
    let a = store.load().unwrap();
    assert_eq!(a.domains(), s(&["example.test"]));
    assert_eq!(a.users(), s(&["alice@example.test"]));
    assert!(a.verify_password("alice@example.test", PW));
    assert_eq!(
        a.resolve_recipient("team@example.test"),
        Some(s(&["alice@example.test"]))
    );

    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(data.join(LOCK_FILE))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Atomic write: only the file and the lock remain, no temp file.
    assert_eq!(dir_entries(&data), s(&[ACCOUNTS_FILE, LOCK_FILE]));
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"version\": 1"), "{text}");
}

#[test]
fn failed_modify_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = AccountStore::open(dir.path()).unwrap();
    store.modify(|a| a.add_domain("example.test")).unwrap();
    let stamp = store.stamp().unwrap();
    let err = store
        .modify(|a| {
            a.add_domain("other.test")?;
            a.add_user("x@example.test", "short")
        })
        .unwrap_err();
    assert!(matches!(err, AccountError::WeakPassword(_)));
    assert_eq!(store.load().unwrap().domains(), s(&["example.test"]));
    assert_eq!(store.stamp(), Some(stamp));
    // A no-op modify does not rewrite either.
    let n = store.modify(|a| Ok(a.domains().len())).unwrap();
    assert_eq!(n, 1);
    assert_eq!(store.stamp(), Some(stamp));
    store.modify(|a| a.add_domain("other.test")).unwrap();
    assert_ne!(store.stamp(), Some(stamp));
    assert!(store.file_stamp().is_some());
    assert_eq!(dir_entries(dir.path()), s(&[ACCOUNTS_FILE, LOCK_FILE]));
}

#[test]
fn concurrent_modify_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(AccountStore::open(dir.path()).unwrap());
    store.modify(|a| a.add_domain("base.test")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..10 {
                    store
                        .modify(|a| a.add_domain(&format!("d{t}-{i}.test")))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = store.load().unwrap();
    assert_eq!(a.domains().len(), 81);
    assert_eq!(dir_entries(dir.path()), s(&[ACCOUNTS_FILE, LOCK_FILE]));
}

#[test]
fn corrupt_and_future_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = AccountStore::open(dir.path()).unwrap();
    std::fs::write(store.path(), b"{ not json").unwrap();
    assert!(matches!(store.load(), Err(AccountError::Corrupt { .. })));
    assert!(store.modify(|a| a.add_domain("x.test")).is_err());
    std::fs::write(store.path(), br#"{"version": 2, "accounts": {}}"#).unwrap();
    assert!(matches!(
        store.load(),
        Err(AccountError::UnsupportedVersion { version: 2, .. })
    ));
    std::fs::write(
        store.path(),
        br#"{"version": 1, "accounts": {"domains": [], "users": {}, "aliases": {}, "extra": 1}}"#,
    )
    .unwrap();
    assert!(matches!(store.load(), Err(AccountError::Corrupt { .. })));
}

#[test]
fn postmaster_exists_in_every_local_domain() {
    // RFC 5321 4.5.1: postmaster@domain without configuration goes to the administrator.
    let mut a = sample();
    a.add_domain("other.test").unwrap();
    a.add_domain("empty.test").unwrap();
    a.add_user("carol@other.test", PW).unwrap();
    assert_eq!(
        a.resolve_recipient("Postmaster@Example.Test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(
        a.resolve_recipient("postmaster@other.test"),
        Some(s(&["carol@other.test"]))
    );
    // A domain without users: the first user of all (same second: the smallest address).
    assert_eq!(
        a.resolve_recipient("postmaster@empty.test"),
        Some(s(&["alice@example.test"]))
    );
    assert_eq!(a.resolve_recipient("postmaster@remote.test"), None);
    // An alias of that name takes over.
    a.add_alias("postmaster@example.test", &s(&["bob@example.test"]))
        .unwrap();
    assert_eq!(
        a.resolve_recipient("postmaster@example.test"),
        Some(s(&["bob@example.test"]))
    );
    assert_eq!(
        a.administrator("example.test").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(Accounts::default().administrator("example.test"), None);
    // The domain of a bare "<Postmaster>": the one the host name lies in, else the first.
    assert_eq!(
        a.default_domain("mail.other.test").as_deref(),
        Some("other.test")
    );
    assert_eq!(
        a.default_domain("other.test.").as_deref(),
        Some("other.test")
    );
    assert_eq!(
        a.default_domain("mx.elsewhere.test").as_deref(),
        Some("empty.test")
    );
}

#[test]
fn two_factor_accounts_log_in_to_mail_with_app_passwords_only() {
    use crate::Protocol::{Imap, Pop3, Smtp};
    let mut a = Accounts::default();
    a.add_domain("example.test").unwrap();
    a.add_user("alice@example.test", "correct horse").unwrap();
    // Before enrolment: the main password works everywhere, and so does an app password,
    // for its own protocol only.
    let imap = a
        .add_app_password("alice@example.test", "laptop imap", Imap)
        .unwrap();
    for p in [Smtp, Imap, Pop3] {
        assert!(a.verify_login("alice@example.test", "correct horse", p));
    }
    assert!(a.verify_login("alice@example.test", &imap, Imap));
    assert!(!a.verify_login("alice@example.test", &imap, Pop3));
    let before = a.credential_binding("alice@example.test", Imap).unwrap();

    let enrolment = a.enable_2fa("Alice@example.test").unwrap();
    assert_eq!(enrolment.recovery_codes.len(), 10);
    assert!(matches!(
        a.enable_2fa("alice@example.test"),
        Err(AccountError::TwoFactorEnabled(_))
    ));
    // After: the main password is refused on every mail protocol; the app password works.
    for p in [Smtp, Imap, Pop3] {
        assert!(!a.verify_login("alice@example.test", "correct horse", p));
    }
    assert!(a.verify_login("alice@example.test", &imap, Imap));
    // Typed without dashes, upper case: the same password.
    assert!(a.verify_login(
        "alice@example.test",
        &imap.replace('-', "").to_uppercase(),
        Imap
    ));
    assert_ne!(
        a.credential_binding("alice@example.test", Imap).unwrap(),
        before
    );
    let smtp = a
        .add_app_password("alice@example.test", "phone smtp", Smtp)
        .unwrap();
    assert!(a.verify_login("alice@example.test", &smtp, Smtp));
    assert!(matches!(
        a.add_app_password("alice@example.test", "phone smtp", Pop3),
        Err(AccountError::AppPasswordExists { .. })
    ));

    // Revoked: refused, and the binding changed.
    let bound = a.credential_binding("alice@example.test", Imap).unwrap();
    a.revoke_app_password("alice@example.test", "laptop imap")
        .unwrap();
    assert!(!a.verify_login("alice@example.test", &imap, Imap));
    assert_ne!(
        a.credential_binding("alice@example.test", Imap).unwrap(),
        bound
    );
    assert!(a.verify_login("alice@example.test", &smtp, Smtp));
    assert!(matches!(
        a.revoke_app_password("alice@example.test", "laptop imap"),
        Err(AccountError::UnknownAppPassword { .. })
    ));

    // A recovery code works once; the TOTP code works while current.
    let code = enrolment.recovery_codes[3].clone();
    assert!(a.check_second_factor("alice@example.test", &code, 0));
    assert!(!a.check_second_factor("alice@example.test", &code, 0));
    let key = data_encoding::BASE32_NOPAD
        .decode(enrolment.secret.as_bytes())
        .unwrap();
    let now = 1_800_000_000;
    let totp = crate::twofactor::totp(&key, now, crate::twofactor::Algorithm::Sha1, 6);
    assert!(a.check_second_factor("alice@example.test", &format!("{totp:06}"), now));
    assert!(!a.check_second_factor("alice@example.test", &format!("{totp:06}"), now + 600));

    // Off again: the main password is back. The file round-trips every field.
    a.disable_2fa("alice@example.test").unwrap();
    assert!(a.verify_login("alice@example.test", "correct horse", Imap));
    let json = serde_json::to_string(&a).unwrap();
    let back: Accounts = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    // Unknown users are refused (at full cost).
    assert!(!a.verify_login("nobody@example.test", &smtp, Smtp));
}
