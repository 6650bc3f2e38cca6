"""AUTH PLAIN / LOGIN on submission (587 after STARTTLS, 465), sender ownership, no AUTH on MX."""

import base64
import smtplib
import subprocess

import pytest

from harness import (ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, TEAM, RawSMTP, client_tls_context,
                     ehlo_keywords, make_message, split_trace, strip_trace)


def b64(s: str | bytes) -> str:
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def open_587(srv) -> smtplib.SMTP:
    s = smtplib.SMTP(HOST, srv.ports.submission, local_hostname="client.test", timeout=15)
    s.ehlo()
    s.starttls(context=client_tls_context())
    s.ehlo()
    return s


def open_465(srv) -> smtplib.SMTP:
    s = smtplib.SMTP_SSL(HOST, srv.ports.submissions, local_hostname="client.test", timeout=15,
                         context=client_tls_context())
    s.ehlo()
    return s


OPENERS = {"587": open_587, "465": open_465}


def auth_with(s: smtplib.SMTP, mech: str, user: str, password: str, initial: bool = True):
    s.user, s.password = user, password
    obj = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
    return s.auth(mech, obj, initial_response_ok=initial)


@pytest.mark.parametrize("port", ["587", "465"])
def test_auth_mechanisms_advertised(shared_server, port):
    s = OPENERS[port](shared_server)
    try:
        assert s.has_extn("auth")
        mechs = s.esmtp_features["auth"].upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, mechs
    finally:
        s.close()


@pytest.mark.parametrize("port", ["587", "465"])
@pytest.mark.parametrize("mech,initial", [("PLAIN", True), ("PLAIN", False), ("LOGIN", True),
                                          ("LOGIN", False)])
def test_auth_success(shared_server, port, mech, initial):
    s = OPENERS[port](shared_server)
    try:
        code, resp = auth_with(s, mech, ALICE, PASSWORDS[ALICE], initial)
        assert code == 235, resp
        # A second AUTH in the same session is a bad sequence (RFC 4954 4).
        code2, _ = s.docmd("AUTH", "PLAIN " + b64(f"\0{ALICE}\0{PASSWORDS[ALICE]}"))
        assert code2 == 503
    finally:
        s.close()


@pytest.mark.parametrize("port", ["587", "465"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_wrong_password(shared_server, port, mech):
    s = OPENERS[port](shared_server)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            auth_with(s, mech, ALICE, "wrong-" + PASSWORDS[ALICE])
        assert e.value.smtp_code == 535
        # Unknown user answers exactly like a wrong password (no account enumeration).
        with pytest.raises(smtplib.SMTPAuthenticationError) as e2:
            auth_with(s, mech, "nobody@example.test", "whatever-password-1")
        assert e2.value.smtp_code == 535
        # Still unauthenticated: MAIL is refused.
        assert s.mail(ALICE)[0] == 530
    finally:
        s.close()


def test_auth_plain_authzid_other_user_refused(shared_server):
    """PLAIN with an authorization identity of another user must not log in as that user."""
    s = open_587(shared_server)
    try:
        code, _ = s.docmd("AUTH", "PLAIN " + b64(f"{BOB}\0{ALICE}\0{PASSWORDS[ALICE]}"))
        assert 500 <= code < 600
    finally:
        s.close()


def test_auth_malformed_base64(shared_server):
    s = open_587(shared_server)
    try:
        code, _ = s.docmd("AUTH", "PLAIN !!!notbase64!!!")
        assert code == 501
        code, _ = s.docmd("AUTH", "FOOBAR")
        assert code == 504
        # Cancelling an exchange with "*" (RFC 4954 4) gives 501.
        code, _ = s.docmd("AUTH", "LOGIN")
        assert code == 334
        code, _ = s.docmd("*")
        assert code == 501
    finally:
        s.close()


def test_auth_not_offered_before_starttls_on_587(shared_server):
    with RawSMTP(shared_server.ports.submission) as c:
        kws = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kws
        assert "AUTH" not in kws, kws
        r = c.cmd("AUTH PLAIN " + b64(f"\0{ALICE}\0{PASSWORDS[ALICE]}"))
        # RFC 3207 / 4954: encryption required first (530 5.7.0 or 538).
        assert r.code in (530, 538, 503), r
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 530, r


@pytest.mark.parametrize("tls", [False, True])
def test_auth_never_on_mx(shared_server, tls):
    with RawSMTP(shared_server.ports.mx) as c:
        c.ehlo()
        if tls:
            c.starttls()
        kws = ehlo_keywords(c.ehlo())
        assert "AUTH" not in kws
        r = c.cmd("AUTH PLAIN " + b64(f"\0{ALICE}\0{PASSWORDS[ALICE]}"))
        assert 500 <= r.code < 600, r


@pytest.mark.parametrize("port", ["587", "465"])
def test_mail_without_auth_refused(shared_server, port):
    s = OPENERS[port](shared_server)
    try:
        code, resp = s.mail(ALICE)
        assert code == 530, resp
        code, resp = s.rcpt(BOB)
        assert code == 503 or code == 530, resp
    finally:
        s.close()


@pytest.mark.parametrize("port", ["587", "465"])
def test_sender_not_owned_refused(shared_server, port):
    s = OPENERS[port](shared_server)
    try:
        assert auth_with(s, "PLAIN", ALICE, PASSWORDS[ALICE])[0] == 235
        for sender in (BOB, REMOTE_SENDER, "ALICE@example.test.evil.test", "alice@remote.test"):
            code, resp = s.mail(sender)
            assert code == 553 or (code == 550 and b"5.7.1" in resp), (sender, code, resp)
            s.rset()
    finally:
        s.close()


def test_sender_owned_variants_accepted(server):
    """Own address (any case of the domain), an alias that delivers to the user, and delivery
    through submission to a local user stores exactly what was sent."""
    msgs = []
    s = open_587(server)
    try:
        assert auth_with(s, "LOGIN", ALICE, PASSWORDS[ALICE])[0] == 235
        for i, sender in enumerate((ALICE, "alice@EXAMPLE.TEST", TEAM)):
            m = make_message(f"owned {i}", sender=sender)
            assert s.sendmail(sender, [BOB], m) == {}
            msgs.append((sender, m))
    finally:
        s.close()
    stored = server.export(BOB)
    assert len(stored) == len(msgs)
    for (sender, m), st in zip(msgs, stored):
        rp, received, rest = split_trace(st)
        assert rest == m
        assert rp.lower() == sender.lower().encode()


def test_received_marks_authenticated_submission(server):
    """RFC 3848: ESMTPSA on an authenticated TLS session; no password in the stored message."""
    s = open_465(server)
    m = make_message("esmtpsa", sender=ALICE)
    try:
        auth_with(s, "PLAIN", ALICE, PASSWORDS[ALICE])
        assert s.sendmail(ALICE, [BOB], m) == {}
    finally:
        s.close()
    [st] = server.export(BOB)
    _, received, rest = split_trace(st)
    assert b"ESMTPSA" in received, received
    assert PASSWORDS[ALICE].encode() not in st
    assert rest == m


def test_password_never_logged(server):
    s = open_587(server)
    try:
        auth_with(s, "PLAIN", ALICE, PASSWORDS[ALICE])
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s2 = open_587(server)
            try:
                auth_with(s2, "LOGIN", BOB, "Wrong-Password-Zq81")
            finally:
                s2.close()
    finally:
        s.close()
    server.stop()
    log = server.log()
    for secret in (PASSWORDS[ALICE], "Wrong-Password-Zq81", b64(f"\0{ALICE}\0{PASSWORDS[ALICE]}"),
                   b64(PASSWORDS[ALICE])):
        assert secret not in log, f"secret {secret!r} in log"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth(server, mech):
    for port, tlsflag in ((server.ports.submission, "--tls"), (server.ports.submissions, "--tlsc")):
        p = subprocess.run(
            ["swaks", "--server", HOST, "--port", str(port), tlsflag, "--helo", "client.test",
             "--timeout", "15", "--auth", mech, "--auth-user", ALICE,
             "--auth-password", PASSWORDS[ALICE], "--from", ALICE, "--to", BOB,
             "--header", f"Subject: swaks {mech} {port}"], capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        assert p.returncode == 0, out
        assert "235 " in out, out
    p = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(server.ports.submission), "--tls",
         "--helo", "client.test", "--timeout", "15", "--auth", mech, "--auth-user", ALICE,
         "--auth-password", "not-the-password-1", "--from", ALICE, "--to", BOB],
        capture_output=True, timeout=60)
    out = p.stdout.decode(errors="replace")
    assert p.returncode != 0 and "535" in out, out
    stored = server.export(BOB)
    subjects = sorted(l for m in stored for l in strip_trace(m).split(b"\r\n") if l.startswith(b"Subject:"))
    assert subjects == sorted([f"Subject: swaks {mech} {server.ports.submission}".encode(),
                               f"Subject: swaks {mech} {server.ports.submissions}".encode()])
