"""RFC 5321 4.5.3 limits: command line, data line, recipients, idle timeout."""

import time

import pytest

from harness import ALICE, BOB, REMOTE_SENDER, TEAM, RawSMTP, make_message, strip_trace

# The configured minimums are those of RFC 5321 4.5.3.1 (the config refuses lower values).
LIMITS = {"max_command_line": 512, "max_data_line": 1000, "max_recipients": 100,
          "timeout_command_secs": 2, "timeout_data_secs": 2, "max_errors": 5}
RCPT_ALIASES = [f"r{i}@example.test" for i in range(LIMITS["max_recipients"])]


@pytest.fixture(scope="module")
def limited(module_factory):
    srv = module_factory(smtp=LIMITS, start=False)
    # max_recipients distinct valid recipients, all delivering to alice.
    for a in RCPT_ALIASES:
        srv.cli("alias", "add", a, ALICE)
    srv.start()
    return srv


def test_command_line_too_long(limited):
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        r = c.cmd(b"NOOP " + b"a" * 2000)
        # RFC 5321 4.5.3.1.4 / 4.2.2: 500 line too long.
        assert r.code == 500, r
        # The remainder of the long line must not be interpreted as further commands.
        c.sock.settimeout(1)
        try:
            extra = c.sock.recv(4096)
        except (TimeoutError, OSError):
            extra = b""
        assert extra == b"" or not extra.startswith(b"250"), extra


def test_long_line_tail_not_executed(limited):
    """A long line whose tail after the limit looks like a command must not run that command."""
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        c.send(b"NOOP " + b"a" * 600 + b"RSET\r\n")
        r = c.reply()
        assert r.code == 500, r
        replies, _ = c.replies_until_closed(timeout=1)
        assert all(r.code != 250 for r in replies), replies


def test_command_line_at_limit_accepted(limited):
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        line = b"NOOP " + b"a" * (512 - 5 - 2)  # 512 octets including CRLF (RFC 5321 4.5.3.1.4)
        assert len(line) + 2 == 512
        assert c.cmd(line).code == 250


def test_data_line_too_long(limited):
    msg = make_message("long line", b"x" * 3000 + b"\r\nafter\r\n")
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        replies = [c.reply()] + c.replies_until_closed(timeout=0.7)[0]
        assert replies and 500 <= replies[0].code < 600, replies
        assert all(r.code != 250 for r in replies), replies
    assert limited.export(ALICE, restart=True) == []


def test_data_line_at_limit_accepted(limited):
    msg = make_message("line at limit", b"y" * 998 + b"\r\n")
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    stored = limited.export(BOB, restart=True)
    assert [strip_trace(m) for m in stored][-1] == msg


def test_too_many_recipients(limited):
    msg = make_message("max rcpts")
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        c.send("".join(f"RCPT TO:<{a}>\r\n" for a in RCPT_ALIASES).encode())
        codes = [c.reply().code for _ in RCPT_ALIASES]
        assert codes == [250] * len(RCPT_ALIASES)
        r = c.cmd(f"RCPT TO:<{BOB}>")
        # RFC 5321 4.5.3.1.10: 452 too many recipients.
        assert r.code == 452, r
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    got = limited.export_all(restart=True)
    # 100 aliases of alice: one copy for alice; bob was refused.
    assert sum(1 for m in got[ALICE] if strip_trace(m) == msg) == 1
    assert not any(strip_trace(m) == msg for m in got[BOB])


def test_idle_timeout(limited):
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        t0 = time.monotonic()
        replies, closed = c.replies_until_closed(timeout=15)
        elapsed = time.monotonic() - t0
        assert closed, f"connection still open after {elapsed:.1f}s"
        assert replies and replies[0].code == 421, replies


def test_idle_timeout_before_ehlo(limited):
    with RawSMTP(limited.ports.mx) as c:
        replies, closed = c.replies_until_closed(timeout=15)
        assert closed and replies and replies[0].code == 421, (replies, closed)


def test_data_timeout(limited):
    """A client that stops in the middle of DATA is dropped (RFC 5321 4.5.3.2.6), nothing stored."""
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(make_message("stalled", b"partial\r\n"))
        replies, closed = c.replies_until_closed(timeout=15)
        assert closed, replies
        assert all(r.code != 250 for r in replies), replies


def test_too_many_errors(limited):
    """After max_errors bad commands the server answers 421 and closes."""
    with RawSMTP(limited.ports.mx) as c:
        c.ehlo()
        codes = []
        closed = False
        for _ in range(LIMITS["max_errors"] + 3):
            try:
                r = c.cmd("BOGUS")
            except Exception:
                closed = True
                break
            codes.append(r.code)
            if r.code == 421:
                break
        assert 421 in codes, codes
        assert codes.index(421) <= LIMITS["max_errors"] + 1, codes
        if not closed:
            replies, closed = c.replies_until_closed(timeout=5)
            assert closed, replies


def test_too_many_commands(module_factory):
    """A session may send max_commands commands; the next one gets 421 and the connection
    closes (a bound on what one connection can cost, DESIGN 3.2). Mail accepted before the
    limit stays accepted."""
    limit = 20
    srv = module_factory(smtp={"max_commands": limit})
    msg = make_message("before the command limit")
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()                                       # 1
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354               # 4 (the DATA lines are not commands)
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
        for _ in range(limit - 4):
            assert c.cmd("NOOP").code == 250
        r = c.cmd("NOOP")
        assert r.code == 421, r
        assert c.closed_by_peer(), "connection still open after the command limit"
    assert "smtp.reject.too_many_commands" in srv.log()
    got = srv.export_all(restart=True)
    assert [strip_trace(m) for m in got[ALICE]] == [msg]
