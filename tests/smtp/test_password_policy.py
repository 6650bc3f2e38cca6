"""The password policy ([auth] password_*) of `postern user add` and `postern user passwd`,
with the real CLI against a running posternd: short, common (the shipped list), guessable
(zxcvbn's estimate) and breached (a Have I Been Pwned style SHA-1 list) passwords are refused
with a message that names the rule, nothing is changed, and the account keeps logging in with
its old password over IMAP; a strong password is accepted and works."""

from __future__ import annotations

import hashlib
import imaplib

from harness import ALICE, HOST, PASSWORDS, SOCK_TIMEOUT, client_tls_context

CAROL = "carol@example.test"
BREACHED = "Tr0ub4dor&3-purple-ostrich"


def imap_ok(server, user: str, password: str) -> bool:
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    try:
        m.login(user, password)
        m.logout()
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def refused(server, *args: str, stdin: bytes | None = None) -> str:
    p = server.cli(*args, input=stdin, check=False)
    assert p.returncode != 0, f"{args} was accepted"
    return p.stderr.decode(errors="replace")


def users(server) -> list[str]:
    return server.cli("user", "list").stdout.decode().split()


def pwned_list(path, passwords: list[str]) -> None:
    """The Pwned Passwords download format: upper-case SHA-1, a count, CRLF, sorted."""
    lines = [f"{hashlib.sha1(p.encode()).hexdigest().upper()}:{1234 + i}"
             for i, p in enumerate(passwords)]
    lines += [f"{hashlib.sha1(f'other-{i}'.encode()).hexdigest().upper()}:{i + 1}"
              for i in range(2000)]
    path.write_text("\r\n".join(sorted(lines)) + "\r\n")


def test_weak_passwords_are_refused_with_the_rule_that_refused_them(make_server):
    srv = make_server(start=False)
    pwned = srv.root / "pwned-passwords-sha1-ordered-by-hash.txt"
    pwned_list(pwned, [BREACHED, "hunter2-but-longer"])
    # The breached password is strong by every other rule: without the list it is accepted.
    srv.cli("user", "add", CAROL, "--password", BREACHED)
    srv.cli("user", "del", CAROL)
    with open(srv.cfg, "a") as f:
        f.write(f'\n[auth]\npassword_breached_sha1 = "{pwned}"\n')
    srv.start()

    cases = [
        ("Xk9#mQ2v", "too short: 8 characters, at least 12 are required"),
        ("LeaveMeAlone", "it is one of the 10000 most common passwords"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess (strength"),
        (BREACHED, f"it appears in the breached-password list {pwned} (1234 times)"),
    ]
    for password, why in cases:
        for args, stdin in (
            (("user", "add", CAROL, "--password", password), None),
            (("user", "add", CAROL), password.encode() + b"\n"),
        ):
            err = refused(srv, *args, stdin=stdin)
            assert f"password rejected: {why}" in err, err
            assert password not in err, "the refusal must not echo the password"
        assert CAROL not in users(srv)
        # A change of password obeys the same policy and changes nothing when refused.
        err = refused(srv, "user", "passwd", ALICE, "--password", password)
        assert f"password rejected: {why}" in err, err
    assert imap_ok(srv, ALICE, PASSWORDS[ALICE])

    # A strong password is accepted, and logs in.
    strong = "Carol-Quartz-Harbor-58"
    srv.cli("user", "add", CAROL, "--password", strong)
    assert CAROL in users(srv)
    assert imap_ok(srv, CAROL, strong)
