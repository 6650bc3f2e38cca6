"""SMTP smuggling: non-CRLF end-of-data forms and bare CR/LF must be rejected, and nothing stored
(neither the outer message nor the smuggled one)."""

import pytest

from harness import ALICE, BOB, REMOTE_SENDER, RawSMTP, make_message

SMUGGLED = (f"MAIL FROM:<evil@remote.test>\r\n"
            f"RCPT TO:<{BOB}>\r\n"
            f"DATA\r\n"
            f"From: evil@remote.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n").encode()

# Fake end-of-data sequences (SEC Consult 2023 and follow-ups).
FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "bare-lf-before-dot": b"\r\n\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-dot-cr-lf-split": b"\r\n.\r\r\n",
}


def assert_nothing_stored(srv):
    got = srv.export_all()
    assert got == {ALICE: [], BOB: []}, {u: [m[:200] for m in v] for u, v in got.items()}


def open_data(port):
    c = RawSMTP(port)
    c.ehlo()
    assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
    assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
    assert c.cmd("DATA").code == 354
    return c


def check_rejected(c):
    """After the final CRLF.CRLF: the first reply must be 5xx, and no reply may be a success
    (a 250 would mean a message was accepted, a 354 that a smuggled DATA was honoured)."""
    first = c.reply()
    more, _closed = c.replies_until_closed(timeout=0.7)
    replies = [first] + more
    assert 500 <= replies[0].code < 600, replies
    assert not any(r.code in (250, 354) for r in replies), replies
    return replies


@pytest.mark.parametrize("name", list(FAKE_ENDS))
def test_smuggling_rejected(server, name):
    outer = make_message("outer", b"outer body")
    with open_data(server.ports.mx) as c:
        c.send(outer + FAKE_ENDS[name] + SMUGGLED + b"\r\n.\r\n")
        check_rejected(c)
    assert_nothing_stored(server)


@pytest.mark.parametrize("name", ["lf-dot-lf", "crlf-dot-lf", "bare-lf-before-dot"])
def test_smuggling_rejected_split_writes(server, name):
    """The same payload split over two writes with a pause (servers that decide per read)."""
    import time
    outer = make_message("outer", b"outer body")
    with open_data(server.ports.mx) as c:
        c.send(outer + FAKE_ENDS[name])
        time.sleep(0.3)
        c.send(SMUGGLED)
        time.sleep(0.3)
        c.send(b"\r\n.\r\n")
        check_rejected(c)
    assert_nothing_stored(server)


@pytest.mark.parametrize("body", [b"bare LF\nin the middle\r\n", b"bare CR\rin the middle\r\n",
                                  b"ends with bare LF\n", b"line\r\n\n"])
def test_bare_cr_lf_in_body_rejected(server, body):
    msg = make_message("bare", body)
    with open_data(server.ports.mx) as c:
        c.send(msg + (b"" if msg.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        check_rejected(c)
    assert_nothing_stored(server)


def test_session_usable_after_rejection(server):
    """After a rejected message the same session can deliver a clean one (state was reset)."""
    bad = make_message("bad", b"x\n.\ny\r\n")
    good = make_message("good")
    with open_data(server.ports.mx) as c:
        c.send(bad + b".\r\n")
        r = c.reply()
        assert 500 <= r.code < 600, r
        # Transaction is over: a new one must start with MAIL.
        r = c.cmd(f"RCPT TO:<{ALICE}>")
        assert r.code == 503, r
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(good + b".\r\n")
        assert c.reply().code == 250
    got = server.export_all()
    assert len(got[ALICE]) == 1 and got[ALICE][0].endswith(good)
    assert got[BOB] == []


@pytest.mark.parametrize("line", [b"MAIL FROM:<x@remote.test>\nRCPT TO:<alice@example.test>\r\n",
                                  b"RSET\rNOOP\r\n"])
def test_bare_lf_cr_in_command(shared_server, line):
    with RawSMTP(shared_server.ports.mx) as c:
        c.ehlo()
        c.send(line)
        first = c.reply()
        rest, closed = c.replies_until_closed(timeout=5)
        assert first.code == 521 and first.enhanced == "5.5.2", first
        assert rest == [] and closed, (rest, closed)


def test_bare_lf_terminated_command_alone(shared_server):
    """A command ended by a bare LF only gets a 5xx, not silence and not a 250."""
    with RawSMTP(shared_server.ports.mx) as c:
        c.ehlo()
        c.send(b"NOOP\n")
        replies, closed = c.replies_until_closed(timeout=1.5)
        if replies:
            assert 500 <= replies[0].code < 600, replies
        else:
            # Waiting for CRLF is allowed; once it arrives the whole line is refused.
            assert not closed
            c.send(b"\r\n")
            replies, _ = c.replies_until_closed(timeout=1.5)
            assert replies and 500 <= replies[0].code < 600, replies


def test_smuggling_on_submission(server):
    """The same defence on an authenticated submission session."""
    import base64
    from harness import PASSWORDS
    outer = make_message("outer", b"outer")
    with RawSMTP(server.ports.submissions, tls=True) as c:
        c.ehlo()
        tok = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        assert c.cmd(f"AUTH PLAIN {tok}").code == 235
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(outer + b"\n.\n" + SMUGGLED.replace(b"evil@remote.test", ALICE.encode()) + b"\r\n.\r\n")
        check_rejected(c)
    assert_nothing_stored(server)
