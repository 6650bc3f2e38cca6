"""Slowloris (issue 13, DESIGN.md 6): every SMTP timeout is a deadline for the whole command
line or DATA block (RFC 5321 4.5.3.2), not an idle timer that each byte restarts. A client
trickling one byte every half second is closed with 421 4.4.2 once its command or data block
is overdue; a slow client that finishes each unit within its deadline is served."""

import time

import pytest

from harness import ALICE, REMOTE_SENDER, RawSMTP, make_message, strip_trace, trickle

DEADLINE = 3
LIMITS = {"timeout_command_secs": DEADLINE, "timeout_data_secs": DEADLINE}
# Far beyond the deadline: an idle timer restarted by each byte never closes within it.
TRICKLE_FOR = 5 * DEADLINE


@pytest.fixture(scope="module")
def deadlines(module_factory):
    return module_factory(smtp=LIMITS)


def assert_timed_out(received: bytes, closed: bool, elapsed: float):
    assert closed, f"still open after {elapsed:.1f}s of trickling; received {received!r}"
    lines = received.split(b"\r\n")
    # RFC 5321 4.5.3.2 / RFC 3463 X.4.2: 421 4.4.2 before closing.
    assert any(l.startswith(b"421 4.4.2") for l in lines), received


def test_command_line_trickled_byte_by_byte_is_closed_at_its_deadline(deadlines):
    with RawSMTP(deadlines.ports.mx) as c:
        elapsed, received, closed = trickle(c.sock, b"EHLO " + b"x" * 100, limit=TRICKLE_FOR)
        assert_timed_out(received, closed, elapsed)


def test_complete_commands_do_not_extend_a_trickled_one(deadlines):
    """The deadline of the command in progress holds after earlier commands completed."""
    with RawSMTP(deadlines.ports.mx) as c:
        c.ehlo()
        assert c.cmd("NOOP").code == 250
        elapsed, received, closed = trickle(c.sock, b"NOOP " + b"y" * 100, limit=TRICKLE_FOR)
        assert_timed_out(received, closed, elapsed)


def test_data_block_trickled_byte_by_byte_is_closed_at_its_deadline(deadlines):
    with RawSMTP(deadlines.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        elapsed, received, closed = trickle(c.sock, b"Subject: slow\r\n\r\n" + b"z" * 100,
                                            limit=TRICKLE_FOR)
        assert_timed_out(received, closed, elapsed)


def test_bdat_chunk_trickled_byte_by_byte_is_closed_at_its_deadline(deadlines):
    with RawSMTP(deadlines.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        c.send(b"BDAT 1000 LAST\r\n")
        elapsed, received, closed = trickle(c.sock, b"w" * 1000, limit=TRICKLE_FOR)
        assert_timed_out(received, closed, elapsed)


def test_slow_client_within_each_deadline_is_served(make_server):
    """Each unit finishes within its deadline, the session lasts several deadlines: every
    command is answered and the message is stored."""
    srv = make_server(smtp=LIMITS)
    msg = make_message("slow but steady")
    with RawSMTP(srv.ports.mx) as c:
        commands = [b"EHLO slow.test", f"MAIL FROM:<{REMOTE_SENDER}>".encode(),
                    f"RCPT TO:<{ALICE}>".encode()]
        for line in commands:
            # Half the deadline between commands, and each command sent in pieces within it.
            time.sleep(DEADLINE / 2)
            for piece in (line[:4], line[4:] + b"\r\n"):
                c.send(piece)
                time.sleep(0.3)
            assert c.reply().code == 250
        time.sleep(DEADLINE / 2)
        assert c.cmd("DATA").code == 354
        for i in range(0, len(msg), len(msg) // 3 + 1):
            c.send(msg[i:i + len(msg) // 3 + 1])
            time.sleep(0.3)
        c.send(b".\r\n")
        assert c.reply().code == 250
        time.sleep(DEADLINE / 2)
        assert c.cmd("QUIT").code == 221
    stored = srv.export(ALICE)
    assert [strip_trace(m) for m in stored] == [msg]
