"""Oversized messages (issue 13): DATA and BDAT answer 552 5.3.4 as soon as the content
passes the size limit, or a declared BDAT chunk would (RFC 1870 6.1, RFC 3030 2,
RFC 5321 4.5.3.1.7), instead of reading everything the client sends; the session then
closes (the end of the data cannot be found without reading it). Nothing is stored."""

import threading

import pytest

from harness import ALICE, REMOTE_SENDER, RawSMTP, make_message

LIMIT = 1024 * 1024
# What the client tries to send: far more than the limit, socket buffers included.
FLOOD = 256 * 1024 * 1024
CHUNK = (b"x" * 998 + b"\r\n") * 64


@pytest.fixture(scope="module")
def sized(module_factory):
    return module_factory(smtp={"max_message_size": LIMIT})


class Flood:
    """Sends up to FLOOD octets of message lines on another thread until the server closes."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = 0
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while self.sent < FLOOD:
                self.sock.sendall(CHUNK)
                self.sent += len(CHUNK)
        except OSError as e:
            self.error = e

    def stopped(self, timeout: float = 60) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def assert_refused_early(c: RawSMTP, flood: Flood):
    r = c.reply()
    assert r.code == 552 and r.enhanced == "5.3.4", r
    # The server closes: the flood fails long before it is all sent.
    assert flood.stopped(), "the client could send for 60 s after the 552"
    assert flood.error is not None, f"all {flood.sent} octets were accepted"
    assert flood.sent < FLOOD // 4, f"{flood.sent} octets accepted before the close"


def test_data_over_the_limit_is_refused_while_the_client_still_sends(sized):
    with RawSMTP(sized.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        flood = Flood(c.sock)
        assert_refused_early(c, flood)


def test_bdat_declaring_100_gb_is_refused_before_its_content(sized):
    with RawSMTP(sized.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        c.send(b"BDAT 100000000000 LAST\r\n")
        flood = Flood(c.sock)
        assert_refused_early(c, flood)


def test_bdat_chunk_that_would_pass_the_limit_is_refused_when_declared(sized):
    with RawSMTP(sized.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        first = LIMIT - 10
        c.send(f"BDAT {first}\r\n".encode() + b"y" * first)
        assert c.reply().code == 250
        r = c.cmd("BDAT 11 LAST")
        assert r.code == 552 and r.enhanced == "5.3.4", r
        assert c.closed_by_peer(timeout=10)


def test_nothing_stored_and_a_message_within_the_limit_still_goes_through(sized):
    msg = make_message("fits")
    with RawSMTP(sized.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    # Only the message that fits is in the mailbox (the tests above ran on this server).
    assert len(sized.export(ALICE, restart=True)) == 1
