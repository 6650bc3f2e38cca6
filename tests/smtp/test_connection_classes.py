"""Per-IP connection allowances per listener class (issue 13, DESIGN.md 6): one address that
fills its MX allowance (an attacker behind a shared NAT) still reaches submission, IMAP and
POP3, and the submission listeners (587 and 465 together) have an allowance of their own."""

import sys
from pathlib import Path

import pytest

from harness import RawSMTP, wait_until

# The raw IMAP and POP3 clients of their own test folders.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "imap"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pop3"))
from imapsupport import RawIMAP  # noqa: E402
from pop3_helpers import RawPOP3  # noqa: E402

PER_CLASS = 3


@pytest.fixture
def classes(make_server):
    return make_server(smtp={"max_connections_per_ip": PER_CLASS,
                             "max_submission_connections_per_ip": PER_CLASS})


def refused(port: int, tls: bool = False) -> bool:
    c = RawSMTP(port, tls=tls)
    try:
        if c.banner.code == 421:
            assert c.banner.enhanced == "4.7.0", c.banner
            return True
        assert c.banner.code == 220, c.banner
        return False
    finally:
        c.close()


def test_a_full_mx_allowance_leaves_submission_imap_and_pop3_open(classes):
    ports = classes.ports
    mx = [RawSMTP(ports.mx) for _ in range(PER_CLASS)]
    try:
        assert all(c.banner.code == 220 for c in mx)
        # RFC 5321 3.1: 421 instead of the greeting once the address has its MX allowance.
        assert refused(ports.mx)
        with RawSMTP(ports.submission) as sub:
            assert sub.banner.code == 220, sub.banner
            assert sub.cmd("EHLO client.test").code == 250
        with RawSMTP(ports.submissions, tls=True) as subs:
            assert subs.banner.code == 220, subs.banner
        with RawIMAP(ports.imap) as imap:
            assert imap.greeting.startswith(b"* OK"), imap.greeting
        with RawPOP3(ports.pop3) as pop:
            assert pop.greeting.startswith(b"+OK"), pop.greeting

        # The submission allowance is its own, shared by 587 and 465, and fills the same way.
        submission = [RawSMTP(ports.submission), RawSMTP(ports.submission),
                      RawSMTP(ports.submissions, tls=True)]
        try:
            assert all(c.banner.code == 220 for c in submission)
            assert refused(ports.submission)
            assert refused(ports.mx)
        finally:
            for c in submission:
                c.close()
        # A closed MX connection frees its slot for the same address.
        mx.pop().close()
        wait_until(lambda: not refused(ports.mx), timeout=10, what="MX slot released")
    finally:
        for c in mx:
            c.close()
