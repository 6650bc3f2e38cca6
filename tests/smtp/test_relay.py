"""Never an open relay: MX accepts only local domains and existing local recipients."""

import pytest

from harness import ALICE, BOB, REMOTE_SENDER, RawSMTP, make_message


def mx_session(srv):
    c = RawSMTP(srv.ports.mx)
    c.ehlo()
    r = c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>")
    assert r.code == 250, r
    return c


@pytest.mark.parametrize("rcpt", ["victim@remote.test", "someone@gmail.com",
                                  "x@sub.example.test", "x@example.test.evil.test"])
def test_foreign_domain_refused(shared_server, rcpt):
    with mx_session(shared_server) as c:
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 550 and r.enhanced == "5.7.1", r


def test_unknown_local_user(shared_server):
    with mx_session(shared_server) as c:
        r = c.cmd("RCPT TO:<nobody@example.test>")
        assert r.code == 550 and r.enhanced == "5.1.1", r


@pytest.mark.parametrize("rcpt", [
    "<alice@example.test@evil.test>",
    '<"alice@example.test"@evil.test>',
    "<@example.test:victim@evil.test>",       # source route: RFC 5321 4.1.1.3 ignores it
    "<victim%evil.test@example.test>",        # percent hack
    "<victim!evil.test@example.test>",        # bang path
    "<victim@evil.test.>",
    "<alice@[127.0.0.1]>",                    # address literal of ourselves is not a local domain
    "victim@evil.test",                       # no angle brackets
])
def test_relay_tricks_refused(shared_server, rcpt):
    with mx_session(shared_server) as c:
        r = c.cmd(f"RCPT TO:{rcpt}")
        assert 500 <= r.code < 600, (rcpt, r)


def test_recipient_case_insensitive_domain(server):
    """Domains are case-insensitive (RFC 5321 2.4); the stored message is still unchanged."""
    msg = make_message("case")
    with mx_session(server) as c:
        assert c.cmd("RCPT TO:<alice@EXAMPLE.Test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    [stored] = server.export(ALICE)
    assert stored.endswith(msg)


def test_refused_recipient_does_not_block_others(server):
    msg = make_message("mixed rcpts")
    with mx_session(server) as c:
        assert c.cmd("RCPT TO:<victim@remote.test>").code == 550
        assert c.cmd("RCPT TO:<nobody@example.test>").code == 550
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    got = server.export_all()
    assert got[ALICE] == []
    assert len(got[BOB]) == 1 and got[BOB][0].endswith(msg)


def test_data_without_valid_recipient(shared_server):
    with mx_session(shared_server) as c:
        assert c.cmd("RCPT TO:<victim@remote.test>").code == 550
        r = c.cmd("DATA")
        # RFC 5321 3.3: no valid recipients -> 554 (or 503 bad sequence).
        assert r.code in (554, 503), r


def test_commands_out_of_sequence(shared_server):
    with RawSMTP(shared_server.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 503
        assert c.cmd("DATA").code == 503
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 503  # nested MAIL
        assert c.cmd("NOOP").code == 250
        assert c.cmd("FROBNICATE").code == 500
        assert c.cmd("QUIT").code == 221
