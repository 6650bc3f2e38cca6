"""The verified-credential cache ([auth], DESIGN.md section 6) against the real posternd: a
second login with the same password is answered from the cache, by IMAP, POP3 and SMTP AUTH
alike; a password changed or an account removed with the `postern` CLI refuses the old
credentials at once, although the cache (TTL 300 s) would still have held them; failed
logins keep their delay and never enter the cache."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time

from harness import (ALICE, HOST, PASSWORDS, SOCK_TIMEOUT, client_tls_context, metric_sum,
                     parse_metrics)

CAROL = "carol@example.test"
CAROL_PASSWORD = "Carol-Secret-7hQw20LmXe"
NEW_PASSWORD = "Alice-New-Secret-5sPn93Rt"


def succeeded(server, service: str, user: str) -> list[str]:
    """The `cached` field of each `<service>.auth.succeeded` of `user`, in order."""
    out = []
    for line in server.log().splitlines():
        if f"{service}.auth.succeeded" in line and user in line:
            m = re.search(r"cached=(true|false)", line)
            assert m, line
            out.append(m.group(1))
    return out


def imap_login(server, user: str, password: str) -> tuple[bool, float]:
    """Logs in over IMAPS; (accepted, seconds the LOGIN took)."""
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    try:
        start = time.monotonic()
        try:
            m.login(user, password)
            ok = True
        except imaplib.IMAP4.error:
            ok = False
        took = time.monotonic() - start
        if ok:
            m.select("INBOX")
            m.logout()
        return ok, took
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def test_a_repeated_login_is_answered_from_the_cache_by_every_protocol(server):
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    assert succeeded(server, "imap", ALICE) == ["false", "true"]

    p = poplib.POP3_SSL(HOST, server.ports.pop3s, context=client_tls_context(),
                        timeout=SOCK_TIMEOUT)
    p.user(ALICE)
    assert p.pass_(PASSWORDS[ALICE]).startswith(b"+OK")
    p.quit()
    assert succeeded(server, "pop3", ALICE) == ["true"]

    with smtplib.SMTP_SSL(HOST, server.ports.submissions, context=client_tls_context(),
                          timeout=SOCK_TIMEOUT) as s:
        s.login(ALICE, PASSWORDS[ALICE])
    assert succeeded(server, "smtp", ALICE) == ["true"]
    assert metric_sum(parse_metrics(server.metrics()), "postern_auth_cache_hits_total") == 3


def test_a_changed_password_is_refused_at_once_though_the_cache_held_it(server):
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    assert succeeded(server, "imap", ALICE) == ["false", "true"], "the cache holds alice"

    server.cli("user", "passwd", ALICE, "--password", NEW_PASSWORD)
    ok, took = imap_login(server, ALICE, PASSWORDS[ALICE])
    assert not ok, "the old password still logged in after the change"
    assert took >= 0.9, f"a refused login is answered after the failure delay, not {took:.2f} s"
    assert imap_login(server, ALICE, NEW_PASSWORD)[0]
    assert imap_login(server, ALICE, NEW_PASSWORD)[0]
    assert succeeded(server, "imap", ALICE) == ["false", "true", "false", "true"]
    # And by the other protocols too.
    p = poplib.POP3_SSL(HOST, server.ports.pop3s, context=client_tls_context(),
                        timeout=SOCK_TIMEOUT)
    p.user(ALICE)
    try:
        p.pass_(PASSWORDS[ALICE])
        raise AssertionError("POP3 accepted the old password")
    except poplib.error_proto:
        pass
    p.quit()


def test_a_removed_account_is_refused_at_once(server):
    server.cli("user", "add", CAROL, "--password", CAROL_PASSWORD)
    assert imap_login(server, CAROL, CAROL_PASSWORD)[0]
    assert imap_login(server, CAROL, CAROL_PASSWORD)[0]
    assert succeeded(server, "imap", CAROL) == ["false", "true"]
    server.cli("user", "del", CAROL)
    assert not imap_login(server, CAROL, CAROL_PASSWORD)[0]


def test_failed_logins_keep_their_delay_and_are_never_cached(server):
    for _ in range(3):
        ok, took = imap_login(server, ALICE, "Not-Alices-Password-1")
        assert not ok
        assert took >= 0.9, f"refused after {took:.2f} s"
    # A wrong password right after a cached right one is still refused.
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    assert imap_login(server, ALICE, PASSWORDS[ALICE])[0]
    ok, took = imap_login(server, ALICE, PASSWORDS[ALICE] + "x")
    assert not ok and took >= 0.9
    assert succeeded(server, "imap", ALICE) == ["false", "true"]
    assert server.log().count("imap.auth.failed") == 4
