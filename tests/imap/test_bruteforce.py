"""Brute-force defence ([auth] ban_*) against the real posternd, with Python's imaplib,
poplib and smtplib as the clients. Each client connects from its own loopback address
(127.0.0.2 is the attacker, 127.0.0.3 a bystander, 127.0.0.5 allow-listed), so that one
daemon sees several clients.

Failed IMAP logins from one address ban it on IMAP, POP3 and SMTP AUTH alike; the right
password is refused during the ban; another address is not affected; an allow-listed
address is never banned; the ban is listed by `postern ban list`, survives a restart (with
and without the daemon running the CLI sees it), is lifted by `postern ban remove`, and ends
by itself after ban_duration_secs; the account's login history shows every attempt."""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import smtplib
import socket
import time

from harness import (ALICE, BOB, HOST, PASSWORDS, SOCK_TIMEOUT, client_tls_context,
                     metric_sum, parse_metrics)

ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
TRUSTED = "127.0.0.5"
FAILURES = 3


class SourcedIMAP(imaplib.IMAP4_SSL):
    """IMAPS from a chosen local address."""

    def __init__(self, source: str, port: int):
        self.source = source
        super().__init__(HOST, port, ssl_context=client_tls_context(), timeout=SOCK_TIMEOUT)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class SourcedPOP3(poplib.POP3_SSL):
    """POP3S from a chosen local address."""

    def __init__(self, source: str, port: int):
        self.source = source
        super().__init__(HOST, port, context=client_tls_context(), timeout=SOCK_TIMEOUT)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def imap_login(server, source: str, password: str, user: str = ALICE) -> str:
    """'OK', or the text of the refusal."""
    m = SourcedIMAP(source, server.ports.imaps)
    try:
        try:
            m.login(user, password)
        except imaplib.IMAP4.error as e:
            return str(e)
        m.logout()
        return "OK"
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3_login(server, source: str, password: str, user: str = ALICE) -> str:
    p = SourcedPOP3(source, server.ports.pop3s)
    try:
        p.user(user)
        try:
            p.pass_(password)
        except poplib.error_proto as e:
            return e.args[0].decode(errors="replace")
        p.quit()
        return "OK"
    finally:
        p.close()


def smtp_auth(server, source: str, password: str, user: str = ALICE) -> tuple[int, str]:
    """AUTH PLAIN on submissions (465): the reply code and text."""
    s = smtplib.SMTP_SSL(HOST, server.ports.submissions, source_address=(source, 0),
                         context=client_tls_context(), timeout=SOCK_TIMEOUT)
    try:
        s.ehlo("client.test")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, text = s.docmd("AUTH", f"PLAIN {token}")
        return code, text.decode(errors="replace")
    finally:
        s.close()


def bans(server) -> list[dict]:
    return json.loads(server.cli("ban", "list", "--json").stdout)


def make(make_server, duration: int):
    srv = make_server(start=False)
    with open(srv.cfg, "a") as f:
        f.write(
            "\n[auth]\n"
            f"ban_address_failures = {FAILURES}\n"
            # Account bans off: this test is about address bans (unit tests cover both).
            "ban_account_failures = 0\n"
            "ban_window_secs = 600\n"
            f"ban_duration_secs = {duration}\n"
            f'ban_allow = ["{TRUSTED}/32"]\n'
        )
    srv.start()
    return srv


def ban_the_attacker(srv) -> None:
    for i in range(FAILURES):
        reply = imap_login(srv, ATTACKER, f"guess-{i}")
        assert "AUTHENTICATIONFAILED" in reply, reply


def test_failed_imap_logins_ban_the_address_on_every_service_across_a_restart(make_server):
    srv = make(make_server, duration=3600)
    right = PASSWORDS[ALICE]
    # The allow-listed address fails more often than the threshold and is never banned.
    for i in range(FAILURES + 2):
        assert "AUTHENTICATIONFAILED" in imap_login(srv, TRUSTED, f"typo-{i}")
    assert imap_login(srv, TRUSTED, right) == "OK"
    assert bans(srv) == []

    assert imap_login(srv, ATTACKER, right) == "OK", "not banned before its failures"
    ban_the_attacker(srv)

    # Banned on every service, the right password included, with each protocol's
    # temporary refusal (not a verdict on the credentials).
    reply = imap_login(srv, ATTACKER, right)
    assert "[UNAVAILABLE]" in reply and "AUTHENTICATIONFAILED" not in reply, reply
    assert "[UNAVAILABLE]" in imap_login(srv, ATTACKER, right, user=BOB)
    reply = pop3_login(srv, ATTACKER, right)
    assert reply.startswith("-ERR [SYS/TEMP]"), reply
    code, text = smtp_auth(srv, ATTACKER, right)
    assert (code, text[:5]) == (421, "4.7.0"), (code, text)

    # Other addresses, and the allow-listed one, log in as before.
    assert imap_login(srv, BYSTANDER, right) == "OK"
    assert pop3_login(srv, BYSTANDER, right) == "OK"
    assert smtp_auth(srv, BYSTANDER, right)[0] == 235
    assert imap_login(srv, TRUSTED, right) == "OK"

    listed = bans(srv)
    assert [(b["kind"], b["target"], b["failures"]) for b in listed] == \
        [("address", ATTACKER, FAILURES)], listed
    assert listed[0]["until"] - listed[0]["since"] == 3600
    text = srv.cli("ban", "list").stdout.decode()
    assert ATTACKER in text and "address" in text, text
    metrics = parse_metrics(srv.metrics())
    assert metric_sum(metrics, "postern_auth_bans_total") == 1
    assert metric_sum(metrics, "postern_auth_blocked_total") == 4

    # The history shows the attacker's attempts in order, with the services they used.
    history = json.loads(srv.cli("user", "history", ALICE, "--json").stdout)
    mine = [(h["service"], h["result"]) for h in history if h["address"] == ATTACKER]
    assert mine == [("imap", "accepted")] + [("imap", "failed")] * FAILURES + \
        [("imap", "blocked"), ("pop3", "blocked"), ("smtp", "blocked")], history

    # A restart lifts nothing: the stopped daemon's file lists it, the new daemon enforces it.
    srv.stop()
    assert [b["target"] for b in bans(srv)] == [ATTACKER]
    srv.start()
    assert "[UNAVAILABLE]" in imap_login(srv, ATTACKER, right)
    assert pop3_login(srv, ATTACKER, right).startswith("-ERR [SYS/TEMP]")

    # The admin lifts it.
    srv.cli("ban", "remove", ATTACKER)
    assert bans(srv) == []
    assert imap_login(srv, ATTACKER, right) == "OK"
    assert smtp_auth(srv, ATTACKER, right)[0] == 235
    removed = srv.cli("ban", "remove", ATTACKER, check=False)
    assert removed.returncode != 0 and b"not banned" in removed.stderr, removed


def test_a_ban_ends_by_itself_after_its_duration(make_server):
    duration = 4
    srv = make(make_server, duration=duration)
    right = PASSWORDS[ALICE]
    ban_the_attacker(srv)
    [ban] = bans(srv)
    assert "[UNAVAILABLE]" in imap_login(srv, ATTACKER, right)
    # Wait past the end the daemon reported (whole seconds), then the address is free again.
    while time.time() < ban["until"] + 1:
        time.sleep(0.2)
    assert imap_login(srv, ATTACKER, right) == "OK"
    assert pop3_login(srv, ATTACKER, right) == "OK"
    assert smtp_auth(srv, ATTACKER, right)[0] == 235
    assert bans(srv) == []
