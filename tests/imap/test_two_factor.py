"""Two-factor authentication and app passwords against the real posternd, with imaplib,
poplib and smtplib as the mail clients and the real `postern` CLI: `postern user 2fa enable`
prints an otpauth URI, a terminal QR code and recovery codes; the TOTP secret it prints gives
codes (computed here by an independent RFC 6238 implementation) that `postern user 2fa check`
accepts; after enrolment the main password is refused over IMAP, POP3 and SMTP AUTH, while
app passwords work, each for its own protocol only, and stop working once revoked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import imaplib
import poplib
import re
import smtplib
import struct
import time

from harness import ALICE, HOST, PASSWORDS, SOCK_TIMEOUT, client_tls_context


def imap_ok(server, password: str) -> bool:
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    try:
        m.login(ALICE, password)
        m.select("INBOX")
        m.logout()
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3_ok(server, password: str) -> bool:
    p = poplib.POP3_SSL(HOST, server.ports.pop3s, context=client_tls_context(),
                        timeout=SOCK_TIMEOUT)
    try:
        p.user(ALICE)
        try:
            p.pass_(password)
        except poplib.error_proto as e:
            assert b"[AUTH]" in e.args[0], e
            return False
        p.quit()
        return True
    finally:
        p.close()


def smtp_ok(server, password: str) -> bool:
    s = smtplib.SMTP_SSL(HOST, server.ports.submissions, context=client_tls_context(),
                         timeout=SOCK_TIMEOUT)
    try:
        s.ehlo("client.test")
        token = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
        code, text = s.docmd("AUTH", f"PLAIN {token}")
        assert code in (235, 535), (code, text)
        return code == 235
    finally:
        s.close()


def totp(secret_b32: str, at: float) -> str:
    """RFC 6238 with SHA-1, 30 s steps, 6 digits (RFC 4226 5.3 truncation)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    word = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{word % 1_000_000:06d}"


def test_after_enrolment_only_app_passwords_log_in_and_revoked_ones_stop(server):
    main = PASSWORDS[ALICE]
    assert imap_ok(server, main) and pop3_ok(server, main) and smtp_ok(server, main)

    out = server.cli("user", "2fa", "enable", ALICE).stdout.decode()
    uri = re.search(r"^otpauth://totp/\S+$", out, re.M)
    assert uri, out
    uri = uri.group(0)
    secret = re.search(r"^secret: ([A-Z2-7]+)$", out, re.M).group(1)
    assert f"secret={secret}&" in uri and "alice%40example.test" in uri, uri
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    # The QR code: rows of half-block characters.
    assert sum(1 for line in out.splitlines() if "█" in line or "▀" in line or "▄" in line) > 10
    recovery = re.findall(r"^  ([a-z2-7]{4}(?:-[a-z2-7]{4}){4})$", out, re.M)
    assert len(recovery) == 10 and len(set(recovery)) == 10, out
    # A second enrolment is refused (the secret in the user's app stays valid).
    again = server.cli("user", "2fa", "enable", ALICE, check=False)
    assert again.returncode != 0 and b"already has two-factor" in again.stderr

    # Codes from the printed secret verify; a wrong one and a reused recovery code do not.
    now = time.time()
    assert server.cli("user", "2fa", "check", ALICE, totp(secret, now)).stdout == b"ok\n"
    wrong = f"{(int(totp(secret, now)) + 1) % 1_000_000:06d}"
    assert server.cli("user", "2fa", "check", ALICE, wrong, check=False).returncode != 0
    server.cli("user", "2fa", "check", ALICE, recovery[0])
    assert server.cli("user", "2fa", "check", ALICE, recovery[0], check=False).returncode != 0

    # The main password no longer works for mail, on any protocol.
    assert not imap_ok(server, main)
    assert not pop3_ok(server, main)
    assert not smtp_ok(server, main)

    # App passwords: one per client and protocol, printed once on stdout.
    apps = {}
    for proto in ("imap", "pop3", "smtp"):
        p = server.cli("user", "app-password", "add", ALICE, "--name", f"laptop {proto}",
                       "--protocol", proto)
        apps[proto] = p.stdout.decode().strip()
        assert re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){4}", apps[proto]), apps[proto]
        assert b"shown only now" in p.stderr
    listed = server.cli("user", "app-password", "list", ALICE).stdout.decode()
    assert [l.split("\t")[:2] for l in listed.splitlines()] == \
        [["laptop imap", "imap"], ["laptop pop3", "pop3"], ["laptop smtp", "smtp"]], listed
    assert all(a not in listed for a in apps.values()), "list must not show the passwords"

    assert imap_ok(server, apps["imap"]) and imap_ok(server, apps["imap"])
    assert pop3_ok(server, apps["pop3"])
    assert smtp_ok(server, apps["smtp"])
    # Each is for its own protocol only.
    assert not imap_ok(server, apps["pop3"])
    assert not pop3_ok(server, apps["smtp"])
    assert not smtp_ok(server, apps["imap"])

    # Revoked: refused at once (the second IMAP login above was answered from the
    # verified-credential cache; a revocation must not be).
    server.cli("user", "app-password", "revoke", ALICE, "--name", "laptop imap")
    assert not imap_ok(server, apps["imap"])
    assert pop3_ok(server, apps["pop3"]), "revoking one leaves the others"
    server.cli("user", "app-password", "revoke", ALICE, "--name", "laptop smtp")
    assert not smtp_ok(server, apps["smtp"])
    gone = server.cli("user", "app-password", "revoke", ALICE, "--name", "laptop smtp",
                      check=False)
    assert gone.returncode != 0 and b"no app password named" in gone.stderr

    # 2FA off: the main password works for mail again.
    server.cli("user", "2fa", "disable", ALICE)
    assert imap_ok(server, main)
