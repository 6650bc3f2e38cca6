"""Admin CLI round trips (domain, user, alias) and live changes seen by the running daemon."""

import base64
import signal
import smtplib

import pytest

from harness import (ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, TEAM, RawSMTP, client_tls_context,
                     make_message, strip_trace, wait_until)

LIVE_TIMEOUT = 10.0


def out(p) -> str:
    return p.stdout.decode(errors="replace")


def listed(srv, what) -> list[str]:
    return out(srv.cli(what, "list")).split()


def test_domain_round_trip(make_server):
    srv = make_server(start=False)
    assert "example.test" in listed(srv, "domain")
    srv.cli("domain", "add", "other.test")
    assert {"example.test", "other.test"} <= set(listed(srv, "domain"))
    # Adding it twice is an error.
    assert srv.cli("domain", "add", "other.test", check=False).returncode != 0
    srv.cli("domain", "del", "other.test")
    assert "other.test" not in listed(srv, "domain")
    assert srv.cli("domain", "del", "other.test", check=False).returncode != 0
    # A user in a domain that does not exist is refused.
    assert srv.cli("user", "add", "x@nowhere.test", "--password", "Pw-123456789-abc",
                   check=False).returncode != 0


def test_user_round_trip(make_server):
    srv = make_server(start=False)
    users = listed(srv, "user")
    assert ALICE in users and BOB in users
    srv.cli("user", "add", "carol@example.test", "--password", "Carol-Pw-51xQz8")
    assert "carol@example.test" in listed(srv, "user")
    assert srv.cli("user", "add", "carol@example.test", "--password", "Carol-Pw-51xQz8",
                   check=False).returncode != 0
    srv.cli("user", "passwd", "carol@example.test", "--password", "Carol-New-93mKw2")
    srv.cli("user", "del", "carol@example.test")
    assert "carol@example.test" not in listed(srv, "user")
    assert srv.cli("user", "del", "carol@example.test", check=False).returncode != 0
    # The hashes on disk are argon2id, never the password.
    for f in srv.data_dir.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            data = f.read_bytes()
            assert PASSWORDS[ALICE].encode() not in data, f"plaintext password in {f}"


def test_alias_round_trip(make_server):
    srv = make_server(start=False)
    text = out(srv.cli("alias", "list"))
    assert TEAM in text and ALICE in text and BOB in text
    srv.cli("alias", "add", "sales@example.test", BOB)
    assert "sales@example.test" in out(srv.cli("alias", "list"))
    srv.cli("alias", "del", "sales@example.test")
    assert "sales@example.test" not in out(srv.cli("alias", "list"))
    assert srv.cli("alias", "del", "sales@example.test", check=False).returncode != 0


def rcpt_code(srv, rcpt) -> int:
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        return c.cmd(f"RCPT TO:<{rcpt}>").code


def login_code(srv, user, pw) -> int:
    with smtplib.SMTP_SSL(HOST, srv.ports.submissions, timeout=15,
                          context=client_tls_context()) as s:
        s.ehlo()
        tok = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
        return s.docmd("AUTH", "PLAIN " + tok)[0]


def test_live_user_changes(server):
    carol = "carol@example.test"
    assert rcpt_code(server, carol) == 550
    server.cli("user", "add", carol, "--password", "Carol-Pw-51xQz8")
    wait_until(lambda: rcpt_code(server, carol) == 250, LIVE_TIMEOUT, 0.3, "new user visible")
    wait_until(lambda: login_code(server, carol, "Carol-Pw-51xQz8") == 235, LIVE_TIMEOUT, 0.3,
               "new user can log in")
    server.cli("user", "passwd", carol, "--password", "Carol-New-93mKw2")
    wait_until(lambda: login_code(server, carol, "Carol-New-93mKw2") == 235, LIVE_TIMEOUT, 0.3,
               "new password works")
    assert login_code(server, carol, "Carol-Pw-51xQz8") == 535
    # Deliver to carol, then remove her: she is unknown from then on.
    with smtplib.SMTP(HOST, server.ports.mx, timeout=15) as s:
        assert s.sendmail(REMOTE_SENDER, [carol], make_message("for carol")) == {}
    server.cli("user", "del", carol)
    wait_until(lambda: rcpt_code(server, carol) == 550, LIVE_TIMEOUT, 0.3, "deleted user gone")
    assert login_code(server, carol, "Carol-New-93mKw2") == 535


def test_live_domain_and_alias(server):
    assert rcpt_code(server, "x@live.test") == 550
    server.cli("domain", "add", "live.test")
    server.cli("alias", "add", "x@live.test", ALICE)
    wait_until(lambda: rcpt_code(server, "x@live.test") == 250, LIVE_TIMEOUT, 0.3, "live alias")
    msg = make_message("via live alias")
    with smtplib.SMTP(HOST, server.ports.mx, timeout=15) as s:
        assert s.sendmail(REMOTE_SENDER, ["x@live.test"], msg) == {}
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_user_add_password_from_stdin(server):
    dave = "dave@example.test"
    server.cli("user", "add", dave, input=b"Dave-Stdin-Pw-7s2K\n")
    wait_until(lambda: login_code(server, dave, "Dave-Stdin-Pw-7s2K") == 235, LIVE_TIMEOUT, 0.3,
               "stdin password works")


def test_sigterm_clean_exit(server):
    """SIGTERM shuts down cleanly (exit 0) in bounded time, and the data dir opens again."""
    with smtplib.SMTP(HOST, server.ports.mx, timeout=15) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], make_message("before stop")) == {}
    rc = server.stop()
    assert rc == 0, f"posternd exit status {rc} on SIGTERM"
    server.start()
    server.stop()
    assert len(server.export(ALICE)) == 1


def test_export_empty_inbox(make_server, tmp_path):
    """Every user has an INBOX (RFC 9051 5.1): exporting it before any mail arrived gives an
    empty Maildir, not an error."""
    srv = make_server()
    srv.stop()
    out = tmp_path / "empty"
    p = srv.cli("mailbox", "export", "--user", BOB, "--maildir", str(out), check=False)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert (out / "cur").is_dir() and list((out / "cur").iterdir()) == []
    # An unknown user is an error.
    p = srv.cli("mailbox", "export", "--user", "nobody@example.test", "--maildir",
                str(tmp_path / "x"), check=False)
    assert p.returncode != 0
