"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH PLAIN (RFC 5034) against
the real posternd, with Python's poplib and a byte-exact raw client."""

import poplib

import pytest

from harness import ALICE, BOB, PASSWORDS, make_message, trickle
from pop3_helpers import (RawPOP3, deliver, login, open_ssl, open_stls, plain, retr_bytes)


def capa_keys(p: poplib.POP3) -> set[str]:
    return set(p.capa())


def test_greeting_and_capa_before_tls(shared_server):
    p = poplib.POP3("127.0.0.1", shared_server.ports.pop3, timeout=15)
    try:
        assert p.getwelcome().startswith(b"+OK")
        # No APOP timestamp: APOP is not offered.
        assert b"<" not in p.getwelcome()
        caps = capa_keys(p)
        assert {"STLS", "TOP", "UIDL", "RESP-CODES", "PIPELINING"} <= caps, caps
        # RFC 2595 2.1: no plaintext login mechanisms advertised before TLS.
        assert "USER" not in caps and "SASL" not in caps, caps
    finally:
        p.quit()


@pytest.mark.parametrize("opener", [open_stls, open_ssl], ids=["stls", "pop3s"])
def test_capa_under_tls(shared_server, opener):
    p = opener(shared_server)
    try:
        caps = p.capa()
        assert "USER" in caps and caps.get("SASL") == ["PLAIN"], caps
        assert "STLS" not in caps
        assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        p.quit()


def test_login_refused_before_stls(shared_server):
    with RawPOP3(shared_server.ports.pop3) as c:
        for line in (f"USER {ALICE}", f"PASS {PASSWORDS[ALICE]}", "AUTH",
                     f"AUTH PLAIN {plain()}"):
            r = c.cmd(line)
            assert r.startswith(b"-ERR"), (line, r)
        # Still in AUTHORIZATION: nothing was authenticated.
        assert c.cmd("STAT").startswith(b"-ERR")
        # The session goes on: STLS, then the same login works.
        c.stls()
        assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
        assert c.cmd(f"PASS {PASSWORDS[ALICE]}").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    log = shared_server.log()
    assert PASSWORDS[ALICE] not in log
    assert "pop3.reject.tls_required" in log


def test_stls_discards_pipelined_plaintext(shared_server):
    with RawPOP3(shared_server.ports.pop3) as c:
        # USER pipelined behind STLS must not be taken after the handshake (CVE-2011-0411).
        c.send(f"STLS\r\nUSER {ALICE}\r\n".encode())
        assert c.line().startswith(b"+OK")
        from harness import client_tls_context
        c.sock = client_tls_context().wrap_socket(c.sock)
        assert c.cmd(f"PASS {PASSWORDS[ALICE]}").startswith(b"-ERR")


@pytest.mark.parametrize("opener", [open_stls, open_ssl], ids=["stls", "pop3s"])
def test_user_pass_and_wrong_password(shared_server, opener):
    p = opener(shared_server)
    try:
        p.user(ALICE)
        with pytest.raises(poplib.error_proto) as e:
            p.pass_("wrong-" + PASSWORDS[ALICE])
        # RFC 2449 8.1.2 / RFC 3206: [AUTH] marks a credentials problem.
        assert e.value.args[0].startswith(b"-ERR [AUTH]"), e.value
        p.user("nobody@example.test")
        with pytest.raises(poplib.error_proto) as e2:
            p.pass_("whatever-password-1")
        assert e2.value.args[0] == e.value.args[0], "unknown user must look like a bad password"
        assert login(p).startswith(b"+OK")
    finally:
        p.quit()
    assert "wrong-" + PASSWORDS[ALICE] not in shared_server.log()


def test_auth_plain_initial_response_and_continuation(shared_server):
    with RawPOP3(shared_server.ports.pop3s, tls=True) as c:
        assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK"), "initial response"
        assert c.cmd("QUIT").startswith(b"+OK")
    with RawPOP3(shared_server.ports.pop3s, tls=True) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd(plain(BOB)).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    with RawPOP3(shared_server.ports.pop3s, tls=True) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("*").startswith(b"-ERR")
        assert c.cmd(f"AUTH PLAIN {plain(ALICE, 'bad-password-x')}").startswith(b"-ERR [AUTH]")
        assert c.cmd("AUTH CRAM-MD5").startswith(b"-ERR")
        # The informal listing form.
        assert c.cmd("AUTH") == b"+OK Methods supported"
        assert c.multiline() == [b"PLAIN"]
        assert c.cmd("APOP alice 0123456789abcdef0123456789abcdef").startswith(b"-ERR")


def test_transaction_commands(server):
    msgs = [deliver(server, subject=f"m{i}",
                    msg=make_message(f"m{i}", b"line one\r\n.dotted\r\n..two dots\r\nlast\r\n"))
            for i in range(3)]
    p = open_ssl(server)
    try:
        assert login(p).startswith(b"+OK Maildrop has 3 messages")
        count, total = p.stat()
        assert count == 3
        resp, listing, _ = p.list()
        sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
        assert sorted(sizes) == [1, 2, 3] and sum(sizes.values()) == total
        assert p.list(2) == b"+OK 2 %d" % sizes[2]
        _, uidls, _ = p.uidl()
        uids = dict(l.split() for l in uidls)
        assert len(set(uids.values())) == 3
        for n in (1, 2, 3):
            got = retr_bytes(p, n)
            assert len(got) == sizes[n]
            assert got.endswith(msgs[n - 1]), "RETR must end with the client's bytes"
        # TOP: header, blank line, first N body lines (un-stuffed by poplib).
        _, top, _ = p.top(1, 2)
        blank = top.index(b"")
        assert top[blank + 1:] == [b"line one", b".dotted"]
        _, top0, _ = p.top(1, 0)
        assert top0[-1] == b"" and top0 == top[:blank + 1]
        assert p.noop().startswith(b"+OK")
        assert p.dele(2).startswith(b"+OK")
        with pytest.raises(poplib.error_proto):
            p.dele(2)
        with pytest.raises(poplib.error_proto):
            p.retr(2)
        with pytest.raises(poplib.error_proto):
            p.list(4)
        assert p.stat() == (2, total - sizes[2])
        assert p.rset().startswith(b"+OK")
        assert p.stat() == (3, total)
        assert p.dele(3).startswith(b"+OK")
        assert p.quit().startswith(b"+OK")
    except BaseException:
        p.close()
        raise
    # The UPDATE state removed message 3 only; numbering restarts densely.
    p = open_ssl(server)
    try:
        login(p)
        assert p.stat()[0] == 2
        _, uidls2, _ = p.uidl()
        assert [l.split()[1] for l in uidls2] == [uids[b"1"], uids[b"2"]]
    finally:
        p.quit()


def test_raw_byte_stuffing(server):
    body = b".\r\n.x\r\nend\r\n"
    deliver(server, msg=make_message("stuff", body))
    with RawPOP3(server.ports.pop3s, tls=True) as c:
        assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK")
        assert c.cmd("RETR 1").startswith(b"+OK")
        lines = c.multiline()
        # RFC 1939 3: lines starting with "." get an extra "." on the wire.
        assert lines[-3:] == [b"..", b"..x", b"end"], lines
        assert c.cmd("QUIT").startswith(b"+OK")


def test_bad_commands_and_overlong_lines_keep_the_session(shared_server):
    with RawPOP3(shared_server.ports.pop3s, tls=True) as c:
        assert c.cmd("BOGUS").startswith(b"-ERR")
        assert c.cmd("RETR 1").startswith(b"-ERR")  # not authenticated yet
        assert c.cmd(b"NOOP " + b"x" * 5000).startswith(b"-ERR")
        assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK")
        assert c.cmd("RETR x").startswith(b"-ERR")
        assert c.cmd("TOP 1").startswith(b"-ERR")
        assert c.cmd("LIST 999999999999999999999").startswith(b"-ERR")
        assert c.cmd("USER again").startswith(b"-ERR")
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.cmd("NOOP").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")


def test_second_session_gets_in_use(shared_server):
    first = open_ssl(shared_server)
    try:
        login(first, BOB)
        second = open_stls(shared_server)
        try:
            second.user(BOB)
            with pytest.raises(poplib.error_proto) as e:
                second.pass_(PASSWORDS[BOB])
            # RFC 2449 8.1.1.
            assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value
        finally:
            second.quit()
        assert first.noop().startswith(b"+OK")
    finally:
        first.quit()
    # Released at QUIT: a new session gets the maildrop.
    third = open_ssl(shared_server)
    try:
        assert login(third, BOB).startswith(b"+OK")
    finally:
        third.quit()


def test_lock_released_when_connection_drops(shared_server):
    with RawPOP3(shared_server.ports.pop3s, tls=True) as c:
        assert c.cmd(f"AUTH PLAIN {plain(BOB)}").startswith(b"+OK")
    # The server notices the EOF and drops the lock; retry briefly while it does.
    from harness import wait_until

    def can_login():
        with RawPOP3(shared_server.ports.pop3s, tls=True) as c2:
            ok = c2.cmd(f"AUTH PLAIN {plain(BOB)}").startswith(b"+OK")
            c2.cmd("QUIT")
            return ok
    wait_until(can_login, 10, what="maildrop lock released")


def test_pipelined_commands(server):
    deliver(server)
    with RawPOP3(server.ports.pop3s, tls=True) as c:
        c.send(f"AUTH PLAIN {plain()}\r\nSTAT\r\nLIST\r\nUIDL 1\r\nNOOP\r\nQUIT\r\n".encode())
        assert c.line().startswith(b"+OK Maildrop has 1 messages")
        assert c.line().startswith(b"+OK 1 ")
        assert c.line().startswith(b"+OK")
        assert len(c.multiline()) == 1
        assert c.line().startswith(b"+OK 1 ")
        assert c.line() == b"+OK"
        assert c.line().startswith(b"+OK")
        assert c.closed_by_peer()


def test_metrics(server):
    deliver(server)
    p = open_ssl(server)
    login(p)
    p.retr(1)
    p.dele(1)
    p.quit()
    from harness import parse_metrics, metric_sum
    m = parse_metrics(server.metrics())
    assert metric_sum(m, "postern_pop3_connections_total") >= 1
    assert metric_sum(m, "postern_pop3_logins_total") == 1
    assert metric_sum(m, "postern_pop3_messages_retrieved_total") == 1
    assert metric_sum(m, "postern_pop3_messages_deleted_total") == 1


# -- limits ---------------------------------------------------------------------------------

def test_line_limit_is_the_configured_one(pop3_limited):
    with RawPOP3(pop3_limited.ports.pop3s, tls=True) as c:
        # 255 octets with CRLF: accepted (RFC 2449 4); 256: refused, session continues.
        fits = "USER " + "a" * (255 - 5 - 2)
        assert c.cmd(fits).startswith(b"+OK")
        assert c.cmd(fits + "a").startswith(b"-ERR")
        assert c.cmd("CAPA").startswith(b"+OK")
        c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")


def test_too_many_errors_close_the_session(pop3_limited):
    with RawPOP3(pop3_limited.ports.pop3s, tls=True) as c:
        for _ in range(4):
            assert c.cmd("BOGUS").startswith(b"-ERR")
        assert c.cmd("BOGUS").startswith(b"-ERR")
        assert c.line().startswith(b"-ERR")
        assert c.closed_by_peer()


def test_login_timeout_closes_silently(pop3_limited):
    with RawPOP3(pop3_limited.ports.pop3) as c:
        # RFC 1939 3: on timeout the server closes without a response (and no UPDATE).
        assert c.closed_by_peer(timeout=15)
    assert "pop3.timeout" in pop3_limited.log()


@pytest.mark.parametrize("trickled,interval", [(b"USER " + b"a" * 100, 0.5), (b"CAPA\r\n", 0.2)],
                         ids=["one-line", "whole-commands"])
def test_login_phase_is_a_deadline_not_an_idle_timer(pop3_limited, trickled, interval):
    """Slowloris (DESIGN.md 6): a client trickling one byte every half second, whether it
    never ends a line or completes a command now and then, is closed once the AUTHORIZATION
    state has lasted timeout_login_secs (2 s here); an idle timer restarted by each byte
    would keep it for ever."""
    with RawPOP3(pop3_limited.ports.pop3) as c:
        elapsed, received, closed = trickle(c.sock, trickled, interval, limit=10)
        assert closed, f"still open after {elapsed:.1f}s; received {received!r}"
        # RFC 1939 3: closed without a response to the unfinished command.
        assert b"+OK" not in received.split(b"\r\n")[-1], received


def test_connections_per_ip(pop3_limited):
    a = RawPOP3(pop3_limited.ports.pop3)
    b = RawPOP3(pop3_limited.ports.pop3s, tls=True)
    try:
        with RawPOP3(pop3_limited.ports.pop3) as c:
            assert c.greeting.startswith(b"-ERR [SYS/TEMP]"), c.greeting
    finally:
        a.close()
        b.close()
    # Slots are released on close.
    from harness import wait_until

    def greeted():
        with RawPOP3(pop3_limited.ports.pop3) as c:
            return c.greeting.startswith(b"+OK")
    wait_until(greeted, 10, what="connection slots released")
