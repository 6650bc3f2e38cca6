"""Inbound sender authentication (issue 11, DESIGN.md 2): SPF, DKIM, DMARC, ARC and iprev on MX
mail, with real components: a DNSSEC-signed zone served by unbound (dnstest.py) that posternd
validates, and messages DKIM-signed by dkimpy with RSA and Ed25519 keys. The delivered message
is read back over IMAP: it carries one Authentication-Results field (RFC 8601) with
authserv-id = server.hostname. DMARC policy: reject -> 550 5.7.1 at the end of DATA,
quarantine -> the recipient's Junk mailbox, none -> INBOX. A DNS failure (here a bogus DNSSEC
answer) -> 451 4.4.3."""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import subprocess
from pathlib import Path

import dkim
import pytest

from dnstest import SignedDns
from harness import ALICE, BOB, HOST, HOSTNAME, PASSWORDS, Server, client_tls_context

LOOPBACK = "127.0.0.1"


def rsa_key(workdir: Path) -> tuple[bytes, str]:
    """An RSA-2048 key (PKCS#1 PEM for dkimpy) and its DKIM public key (RFC 6376 3.6.1 p=)."""
    key = workdir / "rsa.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True,
                   capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    return key.read_bytes(), base64.b64encode(der).decode()


def ed25519_key(workdir: Path) -> tuple[bytes, str]:
    """An Ed25519 key (RFC 8463): dkimpy takes the base64 seed; p= is the raw public key."""
    key = workdir / "ed25519.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True,
                   capture_output=True, timeout=60)
    private = subprocess.run(["openssl", "pkey", "-in", str(key), "-outform", "DER"], check=True,
                             capture_output=True, timeout=60).stdout
    public = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True, timeout=60).stdout
    return base64.b64encode(private[-32:]), base64.b64encode(public[-32:]).decode()


def txt(text: str) -> str:
    """A TXT rdata in zone-file syntax, split in 255-byte character-strings."""
    parts = [text[i:i + 200] for i in range(0, len(text), 200)]
    return " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("dns")
    rsa_private, rsa_public = rsa_key(work)
    ed_private, ed_public = ed25519_key(work)
    records = [
        # A signer whose SPF never matches: DMARC can pass through aligned DKIM only.
        ("signer", "TXT", txt("v=spf1 -all")),
        ("_dmarc.signer", "TXT", txt("v=DMARC1; p=reject")),
        ("rsa._domainkey.signer", "TXT", txt(f"v=DKIM1; k=rsa; p={rsa_public}")),
        ("ed._domainkey.signer", "TXT", txt(f"v=DKIM1; k=ed25519; p={ed_public}")),
        ("spfpass", "TXT", txt(f"v=spf1 ip4:{LOOPBACK} -all")),
        ("spffail", "TXT", txt("v=spf1 -all")),
        ("spfsoft", "TXT", txt("v=spf1 ~all")),
        ("spfperm", "TXT", txt("v=spf1 include:nospf.test -all")),
        ("reject", "TXT", txt("v=spf1 -all")),
        ("_dmarc.reject", "TXT", txt("v=DMARC1; p=reject")),
        ("quarantine", "TXT", txt("v=spf1 -all")),
        ("_dmarc.quarantine", "TXT", txt("v=DMARC1; p=quarantine")),
        ("none", "TXT", txt("v=spf1 -all")),
        ("_dmarc.none", "TXT", txt("v=DMARC1; p=none")),
        # Our own domain publishes a strict policy: an outside host claiming it is refused.
        ("example", "TXT", txt("v=spf1 ip4:192.0.2.1 -all")),
        ("_dmarc.example", "TXT", txt("v=DMARC1; p=reject")),
        ("mail.example", "A", "192.0.2.1"),
        ("client", "A", LOOPBACK),
        ("client", "TXT", txt(f"v=spf1 ip4:{LOOPBACK} -all")),
    ]
    # A DMARC record whose signature no longer matches: DNSSEC says bogus.
    tampered = [("_dmarc.broken", "TXT", txt("v=DMARC1; p=none"))]
    records.append(("broken", "TXT", txt("v=spf1 -all")))
    dns = SignedDns(work, records, tampered).start()
    srv = Server(tmp_path_factory.mktemp("srv"), backend="auto",
                 sender_auth={"verify": True}, dns=dns.dns_config())
    try:
        srv.start()
        yield {"srv": srv, "dns": dns, "rsa": rsa_private, "ed": ed_private}
    finally:
        srv.stop()
        dns.stop()


def message(sender: str, subject: str, extra: bytes = b"") -> bytes:
    return (f"From: Sender <{sender}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@t>\r\n").encode() \
        + extra + b"\r\nHello Alice.\r\n"


def send(srv, mail_from: str, msg: bytes, rcpt: str = ALICE, helo: str = "client.test"):
    """Sends over MX; returns (code, text) of the reply to the end of DATA."""
    with smtplib.SMTP(HOST, srv.ports.mx, local_hostname=helo, timeout=60) as s:
        s.ehlo()
        code, text = s.mail(mail_from)
        assert code == 250, text
        code, text = s.rcpt(rcpt)
        assert code == 250, text
        code, text = s.data(msg)
        return code, text.decode(errors="replace")


def fetch(srv, user: str, mailbox: str = "INBOX") -> list[bytes]:
    imap = imaplib.IMAP4_SSL(HOST, srv.ports.imaps, ssl_context=client_tls_context(), timeout=30)
    try:
        imap.login(user, PASSWORDS[user])
        typ, _ = imap.select(mailbox, readonly=True)
        assert typ == "OK", mailbox
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        if typ != "OK" or data == [None]:
            return []
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        imap.logout()


def delivered(srv, subject: str, user: str = ALICE, mailbox: str = "INBOX") -> bytes:
    found = [m for m in fetch(srv, user, mailbox) if f"Subject: {subject}\r\n".encode() in m]
    assert len(found) == 1, f"{subject}: {len(found)} messages in {user}'s {mailbox}"
    return found[0]


def results(stored: bytes) -> list[str]:
    """The Authentication-Results fields of a stored message, unfolded."""
    header = stored.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    fields = re.findall(r"(?im)^authentication-results:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", header)
    return [re.sub(r"\r\n[ \t]+", " ", f) for f in fields]


def ours(stored: bytes) -> str:
    mine = [f for f in results(stored)
            if re.match(rf"(?i)authentication-results:\s*{re.escape(HOSTNAME)}\s*;", f)]
    assert len(mine) == 1, results(stored)
    return mine[0]


@pytest.mark.parametrize("algorithm, key, selector", [
    (b"rsa-sha256", "rsa", b"rsa"),
    (b"ed25519-sha256", "ed", b"ed"),
])
def test_dkim_signed_by_dkimpy_passes_and_aligns_dmarc(world, algorithm, key, selector):
    srv = world["srv"]
    subject = f"dkim-{key}"
    msg = message("news@signer.test", subject)
    signature = dkim.sign(msg, selector, b"signer.test", world[key],
                          include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"],
                          signature_algorithm=algorithm)
    code, text = send(srv, "bounce@signer.test", signature + msg)
    assert code == 250, text
    stored = delivered(srv, subject)
    ar = ours(stored)
    assert "dkim=pass header.i=@signer.test" in ar, ar
    assert f"header.s={selector.decode()}" in ar, ar
    # SPF of signer.test fails (-all) but DKIM aligns: DMARC passes, p=reject is not applied.
    assert "spf=fail" in ar and "dmarc=pass" in ar, ar
    # The stored message is the signed message, unchanged below our trace fields.
    assert stored.endswith(signature + msg)


def test_a_modified_signed_message_fails_dkim_and_dmarc_reject_refuses_it(world):
    srv = world["srv"]
    msg = message("news@signer.test", "dkim-tampered")
    signature = dkim.sign(msg, b"ed", b"signer.test", world["ed"],
                          include_headers=[b"From", b"Subject"],
                          signature_algorithm=b"ed25519-sha256")
    code, text = send(srv, "bounce@signer.test", signature + msg.replace(b"Hello", b"Hullo"))
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    assert "signer.test" in text


@pytest.mark.parametrize("domain, expected", [
    ("spfpass", "pass"), ("spffail", "fail"), ("spfsoft", "softfail"), ("spfperm", "permerror"),
])
def test_spf_results(world, domain, expected):
    srv = world["srv"]
    subject = f"spf-{domain}"
    code, text = send(srv, f"someone@{domain}.test", message(f"someone@{domain}.test", subject))
    # No DMARC record for these domains: delivered whatever SPF says, the result recorded.
    assert code == 250, text
    ar = ours(delivered(srv, subject))
    assert f"spf={expected} " in ar and f"smtp.mailfrom=someone@{domain}.test" in ar, ar
    # RFC 7208 2.3: the HELO identity is checked too (client.test allows 127.0.0.1).
    assert "spf=pass" in ar and "smtp.helo=client.test" in ar, ar


def test_dmarc_reject_is_refused_at_the_end_of_data(world):
    code, text = send(world["srv"], "a@reject.test", message("a@reject.test", "dmarc-reject"))
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    assert "reject.test" in text


def test_dmarc_quarantine_lands_in_junk(world):
    srv = world["srv"]
    code, text = send(srv, "a@quarantine.test", message("a@quarantine.test", "dmarc-quarantine"))
    assert code == 250, text
    stored = delivered(srv, "dmarc-quarantine", mailbox="Junk")
    assert "dmarc=fail" in ours(stored) and "policy.dmarc=quarantine" in ours(stored)
    assert not [m for m in fetch(srv, ALICE) if b"Subject: dmarc-quarantine\r\n" in m]


def test_dmarc_none_is_delivered_with_the_failure_recorded(world):
    srv = world["srv"]
    code, text = send(srv, "a@none.test", message("a@none.test", "dmarc-none"))
    assert code == 250, text
    ar = ours(delivered(srv, "dmarc-none"))
    assert "dmarc=fail" in ar and "policy.dmarc=none" in ar, ar


def test_an_outside_host_claiming_our_local_domain_is_refused(world):
    # example.test is local to posternd; its zone says only 192.0.2.1 sends its mail and
    # publishes p=reject. The same rules judge it as any other domain.
    code, text = send(world["srv"], "alice@example.test",
                      message("alice@example.test", "local-spoof"), rcpt=BOB)
    assert code == 550 and text.startswith("5.7.1"), (code, text)


def test_forged_results_claiming_our_authserv_id_are_removed(world):
    srv = world["srv"]
    forged = (f"Authentication-Results: {HOSTNAME};\r\n\tdkim=pass header.d=bank.test;"
              f" dmarc=pass header.from=bank.test\r\n"
              f"Authentication-Results: (sneaky) {HOSTNAME.upper()}; spf=pass\r\n"
              "Authentication-Results: relay.elsewhere.test; spf=pass\r\n").encode()
    code, text = send(srv, "someone@spfpass.test",
                      message("someone@spfpass.test", "forged-ar", extra=forged))
    assert code == 250, text
    stored = delivered(srv, "forged-ar")
    ar = ours(stored)
    assert "bank.test" not in ar and "spf=pass" in ar, ar
    # The field of another authserv-id stays (RFC 8601 5 removes only ours).
    assert any("relay.elsewhere.test" in f for f in results(stored)), results(stored)
    assert b"bank.test" not in stored


def test_a_bogus_dnssec_answer_is_a_temporary_refusal(world):
    # The DMARC record of broken.test was changed after signing: posternd's validating
    # resolver refuses the answer (RFC 4035 5.5), so DMARC cannot be evaluated. Never a
    # silent pass: 451 4.4.3, the client retries.
    code, text = send(world["srv"], "a@broken.test", message("a@broken.test", "dns-bogus"))
    assert code == 451 and text.startswith("4.4.3"), (code, text)


def test_a_domain_without_records_is_delivered(world):
    # elsewhere.org does not exist in the (signed) DNS: SPF none, DMARC none, delivered.
    srv = world["srv"]
    code, text = send(srv, "a@elsewhere.org", message("a@elsewhere.org", "no-records"))
    assert code == 250, text
    ar = ours(delivered(srv, "no-records"))
    assert "spf=none" in ar and "dmarc=none" in ar, ar


def test_submission_is_not_verified(world):
    srv = world["srv"]
    with smtplib.SMTP(HOST, srv.ports.submission, local_hostname="client.test", timeout=30) as s:
        s.starttls(context=client_tls_context())
        s.login(ALICE, PASSWORDS[ALICE])
        s.sendmail(ALICE, [BOB], message(ALICE, "submitted"))
    stored = delivered(srv, "submitted", user=BOB)
    assert results(stored) == [], results(stored)


def test_posternd_runs_without_a_usable_resolver_and_defers_verified_mail(tmp_path):
    # The appliance image once shipped without CA roots: hickory's TLS client could not be
    # built, posternd exited at start and was restarted in a loop. Now it starts, says why
    # (dns.unavailable), and MX mail that needs DNS gets 451: the sender retries, nothing
    # is accepted unverified. SSL_CERT_FILE naming an empty file is a machine without roots.
    empty = tmp_path / "no-roots.pem"
    empty.write_text("")
    srv = Server(tmp_path / "srv", backend="auto", sender_auth={"verify": True},
                 dns={"nameservers": ["127.0.0.1:9"]})
    srv.env = {"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": str(tmp_path)}
    try:
        srv.start()
        assert 'event="dns.unavailable"' in srv.log(), srv.log_tail()
        code, text = send(srv, "a@elsewhere.org", message("a@elsewhere.org", "no-resolver"))
        assert code == 451, (code, text)
        assert "no DNS resolver" not in text  # the reason stays in the log, not on the wire
    finally:
        srv.stop()
