//! Sender authentication against an in-memory zone (no network): mail-auth's questions go
//! through the bridge to a [`MemoryResolver`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

use super::*;
use crate::{bridge, MemoryResolver, Rdata};

const HOST: &str = "mx.postern.test";

struct Fixture {
    zone: Arc<MemoryResolver>,
    verifier: Verifier,
}

async fn fixture(policy: LocalPolicy) -> Fixture {
    let zone = Arc::new(MemoryResolver::new());
    let addrs = bridge::spawn(zone.clone()).await.unwrap();
    let verifier = Verifier::new(addrs, Duration::from_secs(5), HOST, policy);
    Fixture { zone, verifier }
}

fn enforcing() -> LocalPolicy {
    LocalPolicy {
        enforce: true,
        ..LocalPolicy::default()
    }
}

const CLIENT: &str = "192.0.2.10";

fn message(from: &str) -> Vec<u8> {
    format!(
        "From: Alice <{from}>\r\nTo: bob@postern.test\r\nSubject: hello\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nHello Bob.\r\n"
    )
    .into_bytes()
}

/// An Ed25519 key (RFC 8463) published at `selector._domainkey.domain`; the message signed.
fn sign_ed25519(zone: &MemoryResolver, domain: &str, selector: &str, message: &[u8]) -> Vec<u8> {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    zone.txt(
        &format!("{selector}._domainkey.{domain}"),
        &format!("v=DKIM1; k=ed25519; p={public}"),
    );
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message)
        .unwrap();
    let mut signed = signature.to_header().into_bytes();
    signed.extend_from_slice(message);
    signed
}

async fn verify(f: &Fixture, ip: &str, helo: &str, mail_from: &str, message: &[u8]) -> Outcome {
    let ip: IpAddr = ip.parse().unwrap();
    f.verifier
        .verify(&Request {
            ip,
            helo,
            mail_from,
            message,
        })
        .await
}

#[tokio::test]
async fn spf_pass_fail_softfail_and_permerror() {
    let f = fixture(enforcing()).await;
    f.zone
        .txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("fail.test", "v=spf1 ip4:198.51.100.1 -all")
        .txt("soft.test", "v=spf1 ~all")
        .txt("perm.test", "v=spf1 include:nospf.test -all")
        .txt("helo.test", "v=spf1 a -all")
        .add("helo.test", Rdata::A(CLIENT.parse().unwrap()));
    for (domain, expected) in [
        ("pass.test", SpfResult::Pass),
        ("fail.test", SpfResult::Fail),
        ("soft.test", SpfResult::SoftFail),
        ("perm.test", SpfResult::PermError),
        ("nothing.test", SpfResult::None),
    ] {
        let outcome = verify(
            &f,
            CLIENT,
            "helo.test",
            &format!("a@{domain}"),
            &message(&format!("a@{domain}")),
        )
        .await;
        assert_eq!(outcome.spf_mail_from, expected, "{domain}");
        assert_eq!(outcome.spf_helo, SpfResult::Pass);
        assert!(
            outcome
                .header
                .starts_with("Authentication-Results: mx.postern.test;"),
            "{}",
            outcome.header
        );
        // No DMARC record anywhere: nothing is enforced.
        assert_eq!(outcome.disposition, Disposition::Deliver, "{domain}");
    }
}

#[tokio::test]
async fn ed25519_dkim_passes_and_aligns_dmarc() {
    let f = fixture(enforcing()).await;
    f.zone
        .txt("_dmarc.sender.test", "v=DMARC1; p=reject")
        .txt("sender.test", "v=spf1 -all");
    let signed = sign_ed25519(&f.zone, "sender.test", "ed", &message("alice@sender.test"));
    let outcome = verify(&f, CLIENT, "client.test", "alice@sender.test", &signed).await;
    assert_eq!(outcome.dkim, vec!["pass"]);
    assert_eq!(outcome.spf_mail_from, SpfResult::Fail);
    assert_eq!(outcome.dmarc, "pass", "{}", outcome.header);
    assert_eq!(outcome.disposition, Disposition::Deliver);
    assert!(outcome.header.contains("dkim=pass"), "{}", outcome.header);
    assert!(outcome.header.contains("dmarc=pass"), "{}", outcome.header);

    // The body changed after signing: DKIM fails, so does DMARC, and p=reject applies.
    let mut tampered = signed.clone();
    let end = tampered.len() - 2;
    tampered[end - 1] = b'!';
    let outcome = verify(&f, CLIENT, "client.test", "alice@sender.test", &tampered).await;
    // mail-auth reports a body hash mismatch as neutral (RFC 6376 6.1.3: the signature does
    // not verify either way, so it counts for nothing).
    assert!(
        matches!(outcome.dkim.as_slice(), ["neutral" | "fail"]),
        "{:?}",
        outcome.dkim
    );
    assert_eq!(outcome.dmarc, "fail");
    assert_eq!(
        outcome.disposition,
        Disposition::Reject {
            domain: "sender.test".into()
        }
    );
}

#[tokio::test]
async fn dmarc_policies_reject_quarantine_none_and_local_exemptions() {
    let f = fixture(LocalPolicy {
        enforce: true,
        exempt_domains: vec!["lists.test".into()],
        exempt_networks: vec!["203.0.113.0/24".parse().unwrap()],
    })
    .await;
    f.zone
        .txt("reject.test", "v=spf1 -all")
        .txt("_dmarc.reject.test", "v=DMARC1; p=reject")
        .txt("quarantine.test", "v=spf1 -all")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("none.test", "v=spf1 -all")
        .txt("_dmarc.none.test", "v=DMARC1; p=none")
        .txt("lists.test", "v=spf1 -all")
        .txt("_dmarc.lists.test", "v=DMARC1; p=reject")
        .txt("aligned.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("_dmarc.aligned.test", "v=DMARC1; p=reject");
    let cases = [
        (
            "reject.test",
            CLIENT,
            Disposition::Reject {
                domain: "reject.test".into(),
            },
        ),
        ("quarantine.test", CLIENT, Disposition::Quarantine),
        ("none.test", CLIENT, Disposition::Deliver),
        ("lists.test", CLIENT, Disposition::Deliver),
        ("reject.test", "203.0.113.9", Disposition::Deliver),
        ("aligned.test", CLIENT, Disposition::Deliver),
    ];
    for (domain, ip, expected) in cases {
        let from = format!("a@{domain}");
        let outcome = verify(&f, ip, "client.test", &from, &message(&from)).await;
        assert_eq!(
            outcome.disposition, expected,
            "{domain} from {ip}: {}",
            outcome.header
        );
        if domain != "aligned.test" {
            assert_eq!(outcome.dmarc, "fail", "{domain}");
        }
    }
}

#[tokio::test]
async fn a_dns_failure_is_a_temporary_failure_never_a_pass() {
    let f = fixture(enforcing()).await;
    f.zone
        .txt("slow.test", "v=spf1 -all")
        .fail("_dmarc.slow.test");
    let outcome = verify(
        &f,
        CLIENT,
        "client.test",
        "a@slow.test",
        &message("a@slow.test"),
    )
    .await;
    assert!(
        matches!(outcome.disposition, Disposition::TempFail { .. }),
        "{outcome:?}"
    );
    f.zone.fail("down.test");
    let outcome = verify(
        &f,
        CLIENT,
        "client.test",
        "a@down.test",
        &message("a@other.test"),
    )
    .await;
    assert_eq!(outcome.spf_mail_from, SpfResult::TempError);
    assert!(
        matches!(outcome.disposition, Disposition::TempFail { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn iprev_checks_the_forward_confirmed_name() {
    let f = fixture(enforcing()).await;
    f.zone
        .add(
            &crate::reverse_name(CLIENT.parse().unwrap()),
            Rdata::Ptr("mail.sender.test".into()),
        )
        .add("mail.sender.test", Rdata::A(CLIENT.parse().unwrap()));
    let outcome = verify(
        &f,
        CLIENT,
        "mail.sender.test",
        "",
        &message("a@sender.test"),
    )
    .await;
    assert_eq!(outcome.iprev, "pass", "{}", outcome.header);
    let outcome = verify(&f, "192.0.2.99", "x.test", "", &message("a@sender.test")).await;
    assert_ne!(outcome.iprev, "pass");
}

#[tokio::test]
async fn an_arc_sealed_message_verifies_and_a_broken_seal_does_not() {
    use mail_auth::arc::ArcSealer;
    use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};

    let f = fixture(enforcing()).await;
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    f.zone.txt(
        "arc._domainkey.forwarder.test",
        &format!("v=DKIM1; k=ed25519; p={public}"),
    );
    // RFC 8617 5.1: the forwarder records what it saw in ARC-Authentication-Results and
    // seals the message (instance 1, cv=none).
    let original = message("a@list.test");
    let parsed = AuthenticatedMessage::parse(&original).unwrap();
    let seen = AuthenticationResults::new("forwarder.test");
    let set = ArcSealer::from_key(key)
        .domain("forwarder.test")
        .selector("arc")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .seal(&parsed, &seen, &ArcOutput::default())
        .unwrap();
    let mut sealed = set.to_header().into_bytes();
    sealed.extend_from_slice(&original);
    let outcome = verify(&f, CLIENT, "forwarder.test", "a@list.test", &sealed).await;
    assert_eq!(outcome.arc, "pass", "{}", outcome.header);
    assert!(outcome.header.contains("arc=pass"), "{}", outcome.header);

    let tampered: Vec<u8> = String::from_utf8(sealed)
        .unwrap()
        .replace("Subject: hello", "Subject: hullo")
        .into_bytes();
    let outcome = verify(&f, CLIENT, "forwarder.test", "a@list.test", &tampered).await;
    assert_ne!(outcome.arc, "pass", "{}", outcome.header);
}

/// SPF checked when MAIL FROM arrived (the SMTP session starts it then, RFC 7208 2.4) is what
/// DMARC uses at the end of DATA, and only for the transaction it was made for: checks made
/// for another MAIL FROM are made again, never applied to the wrong sender.
#[tokio::test]
async fn envelope_checks_made_at_mail_from_feed_dmarc_for_their_own_sender_only() {
    let f = fixture(enforcing()).await;
    f.zone
        .txt("aligned.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("_dmarc.aligned.test", "v=DMARC1; p=reject")
        .txt("reject.test", "v=spf1 -all")
        .txt("_dmarc.reject.test", "v=DMARC1; p=reject");
    let ip: IpAddr = CLIENT.parse().unwrap();
    let early = f
        .verifier
        .check_envelope(ip, "client.test", "a@aligned.test")
        .await;
    assert_eq!(early.spf_mail_from(), SpfResult::Pass);
    let verify_with = |mail_from: &'static str, early: Envelope| {
        let body = message(mail_from);
        let verifier = &f.verifier;
        async move {
            let request = Request {
                ip,
                helo: "client.test",
                mail_from,
                message: &body,
            };
            verifier.verify_with(&request, Some(early)).await
        }
    };
    let outcome = verify_with("a@aligned.test", early.clone()).await;
    assert_eq!(
        outcome.disposition,
        Disposition::Deliver,
        "{}",
        outcome.header
    );
    assert_eq!(
        (outcome.spf_mail_from, outcome.dmarc),
        (SpfResult::Pass, "pass")
    );
    // The same early checks offered for another sender (a second transaction): made again.
    let outcome = verify_with("a@reject.test", early).await;
    assert_eq!(outcome.spf_mail_from, SpfResult::Fail, "{}", outcome.header);
    assert_eq!(
        outcome.disposition,
        Disposition::Reject {
            domain: "reject.test".into()
        }
    );
}
