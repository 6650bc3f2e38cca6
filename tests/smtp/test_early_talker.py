"""Early talkers (issue 13, DESIGN.md 6): an MX client that sends before the 220 greeting is
refused with 554 and disconnected (RFC 5321 3.1, 4.3.2; Postfix's postscreen "pregreet"
test), with an event; a client that waits is served, and submission greets at once."""

import socket

import pytest

from harness import HOST, RawSMTP, parse_metrics, wait_until

DELAY_MS = 3000


@pytest.fixture(scope="module")
def delayed(module_factory):
    return module_factory(smtp={"greeting_delay_ms": DELAY_MS})


def read_until_closed(sock, limit: float = 10.0) -> bytes:
    sock.settimeout(limit)
    out = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def test_talking_before_the_mx_greeting_is_refused(delayed):
    with socket.create_connection((HOST, delayed.ports.mx), timeout=10) as s:
        s.sendall(b"EHLO early.test\r\nMAIL FROM:<spam@remote.test>\r\n")
        received = read_until_closed(s)
    # No greeting, only the refusal, then the close.
    assert received.startswith(b"554 5.5.1 "), received
    assert b"220" not in received, received
    wait_until(lambda: "smtp.reject.early_talker" in delayed.log(), timeout=5,
               what="early talker event logged")
    counted = 'postern_smtp_messages_rejected_total{reason="early_talker"}'
    wait_until(lambda: parse_metrics(delayed.metrics()).get(counted, 0) >= 1, timeout=5,
               what="early talker counted")


def test_a_client_that_waits_for_the_mx_greeting_is_served(delayed):
    with RawSMTP(delayed.ports.mx) as c:
        assert c.banner.code == 220, c.banner
        c.ehlo()
        assert c.cmd("QUIT").code == 221


def test_submission_greets_at_once_and_tolerates_pipelined_ehlo(delayed):
    with socket.create_connection((HOST, delayed.ports.submission), timeout=10) as s:
        s.sendall(b"EHLO client.test\r\n")
        s.settimeout(DELAY_MS / 1000 / 2)
        # The greeting comes without the MX wait.
        first = s.recv(4096)
        assert first.startswith(b"220 "), first
        s.settimeout(10)
        rest = first
        while b"\r\n250 " not in rest:
            chunk = s.recv(4096)
            assert chunk, rest
            rest += chunk
