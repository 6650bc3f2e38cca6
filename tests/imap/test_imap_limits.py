"""Hostile and malformed input: BAD/NO with clear text, line and literal limits, too many errors,
per-IP connection limit, login timeout; COMPRESS=DEFLATE (RFC 4978)."""

from __future__ import annotations

import socket
import zlib

from harness import HOST, make_message
from imapsupport import RawIMAP, raw_session


def limited_server(make_server, **imap):
    srv = make_server(start=False)
    with open(srv.cfg, "a") as f:
        f.write("\n[imap]\n" + "".join(f"{k} = {v}\n" for k, v in imap.items()))
    srv.start()
    return srv


def test_malformed_commands_get_bad_and_the_session_survives(server):
    with raw_session(server) as c:
        for line in [b"FOO", b"a", b"a FETCH", b"a SELECT", b"a UID NOOP", b"a STORE 1 FLAGS",
                     b"a LOGIN x y z", b'a LIST "" "*" RETURN (BOGUS)', b"a SEARCH (((",
                     b"a FETCH 1 BODY[HEADER.FIELDS ()]", b"\x00\xff garbage"]:
            c.send(line + b"\r\n")
            r = c.read_response()
            assert b" BAD " in r, (line, r)
        assert c.cmd("FETCH 1 FLAGS").status == "BAD"  # no mailbox selected
        c.ok("SELECT INBOX")
        # An empty mailbox: 1:* names nothing, which is fine.
        assert not c.ok("FETCH 1:* FLAGS").untagged
        msg = make_message("one")
        c.ok("APPEND INBOX {%d}" % len(msg), [msg])
        r = c.cmd("FETCH 2 FLAGS")
        assert r.status == "BAD" and b"sequence" in r.tagged.lower(), r
        c.ok("NOOP")


def test_line_and_literal_limits(make_server):
    srv = limited_server(make_server, max_command_line=8192, max_literal_size=10000,
                         max_errors=50)
    with raw_session(srv) as c:
        caps = c.ok("CAPABILITY").untagged[0]
        assert b"APPENDLIMIT=10000" in caps
        r = c.cmd("NOOP " + "x" * 20000)
        assert r.status == "BAD" and b"TOOBIG" in r.tagged, r
        c.ok("NOOP")
        # A synchronising literal over the limit is refused before the data is sent.
        c.send(b"a APPEND INBOX {20000}\r\n")
        r = c.read_response()
        assert r.startswith(b"a NO [TOOBIG]"), r
        c.ok("NOOP")
        # A non-synchronising one is read and discarded.
        c.send(b"b APPEND INBOX {20000+}\r\n" + b"y" * 20000 + b"\r\n")
        assert c.wait("b").status == "NO"
        c.ok("NOOP")
        msg = make_message("fits")
        c.ok("APPEND INBOX {%d}" % len(msg), [msg])


def test_too_many_errors_end_the_session(make_server):
    srv = limited_server(make_server, max_errors=3)
    with raw_session(srv) as c:
        for _ in range(3):
            c.send(b"x BOGUS\r\n")
        got = c.read_until(lambda r: r.startswith(b"* BYE"), 10)
        assert got and got[-1].startswith(b"* BYE"), got
        c.sock.settimeout(5)
        try:
            assert c.sock.recv(100) == b""
        except (ConnectionResetError, socket.timeout):
            pass


def test_per_ip_connection_limit(make_server):
    srv = limited_server(make_server, max_connections_per_ip=2)
    a = RawIMAP(srv.ports.imap)
    b = RawIMAP(srv.ports.imap)
    try:
        with socket.create_connection((HOST, srv.ports.imap), timeout=10) as s:
            data = s.recv(200)
            assert data.startswith(b"* BYE"), data
    finally:
        a.close()
        b.close()


def test_login_timeout(make_server):
    srv = limited_server(make_server, timeout_login_secs=1)
    with RawIMAP(srv.ports.imap) as c:
        got = c.read_until(lambda r: r.startswith(b"* BYE"), 10)
        assert got and b"Autologout" in got[-1], got


def test_compress_deflate(server):
    with raw_session(server) as c:
        c.compress()
        r = c.ok("SELECT INBOX")
        assert r.find(b"* 0 EXISTS")
        msg = make_message("compressed", body=b"z" * 50000 + b"\r\n")
        c.ok("APPEND INBOX {%d}" % len(msg), [msg])
        r = c.ok("FETCH 1 BODY.PEEK[]")
        assert msg in r.untagged[0]
        r = c.cmd("COMPRESS DEFLATE")
        assert r.status == "NO" and b"COMPRESSIONACTIVE" in r.tagged
        caps = c.ok("CAPABILITY").untagged[0]
        assert b"COMPRESS=DEFLATE" not in caps
    _ = zlib


def test_random_garbage_never_crashes_the_server(make_server):
    import random

    srv = limited_server(make_server, max_errors=1000)
    rng = random.Random(1234)
    words = [b"FETCH", b"UID", b"STORE", b"SEARCH", b"APPEND", b"LIST", b"(", b")", b"[", b"]",
             b"{5}", b"{3+}", b"~{2}", b"*", b"1:*", b"$", b'"', b"\\Seen", b"BODY[", b"<0.1>",
             b"INBOX", b"\x00", b"\xff", b"%", b"RETURN", b"(MODSEQ 1)", b"NIL", b"-1",
             b"4294967296", b"CHANGEDSINCE", b"OR", b"NOT"]
    with raw_session(srv) as c:
        c.ok("SELECT INBOX")
        for i in range(300):
            line = b" ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
            c.send(f"g{i} ".encode() + line + b"\r\n")
        # Literals announced above may swallow following lines; end them all.
        c.send(b"\r\n" * 20 + b"zz NOOP\r\n")
        got = c.read_until(lambda r: r.startswith(b"zz "), 30)
        assert got and got[-1].startswith(b"zz "), got[-5:]
    with raw_session(srv) as c:
        c.ok("NOOP")
    assert srv.running


def test_hostile_list_patterns_and_multibyte_names(server):
    with raw_session(server) as c:
        c.ok("ENABLE UTF8=ACCEPT")
        c.ok('CREATE "INBOé/x"'.encode())
        c.ok('CREATE "abcdé"'.encode())
        r = c.ok('LIST "" "abcdé*"'.encode())
        assert len(r.untagged) == 1, r
        c.ok('LIST "" "INBé*"'.encode())
        # Exponential backtracking would take ages; dynamic programming answers at once.
        pattern = "*a" * 200 + "b"
        c.ok('CREATE "%s"' % ("a" * 300))
        r = c.ok('LIST "" "%s"' % pattern)
        assert not r.untagged


def test_login_deadline_is_total_not_per_read(make_server):
    import time

    srv = limited_server(make_server, timeout_login_secs=2)
    with RawIMAP(srv.ports.imap) as c:
        # A NOOP every half second keeps reading alive, but not past the login deadline.
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                c.send(b"n NOOP\r\n")
                r = c.read_response()
                while not r.startswith(b"n ") and not r.startswith(b"* BYE"):
                    r = c.read_response()
                closed = r.startswith(b"* BYE")
            except Exception:
                closed = True
            time.sleep(0.5)
        assert closed, "session stayed unauthenticated past the login deadline"


def _peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_fetch_of_many_large_messages_streams_with_bounded_memory(server):
    """FETCH 1:* BODY[] of 100 MB of mail is rendered off the worker and sent in chunks as
    it is made: the daemon's peak memory grows by a few chunks and a message or two, not by
    the whole answer. The bytes still arrive whole and in order."""
    body = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n") * 34_000  # ~2.5 MB
    count = 40
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        for i in range(count):
            msg = make_message(f"big {i}", body=body)
            c.ok(f"APPEND INBOX {{{len(msg)}}}", [msg])
        pid = server.proc.pid
        # Reset the peak-RSS mark (Linux: clear_refs 5) so it measures the FETCH alone.
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        before = _peak_rss_kib(pid)
        r = c.ok("FETCH 1:* (UID BODY.PEEK[])")
        peak = _peak_rss_kib(pid)
        bodies = [l for l in r.untagged if l.startswith(b"* ")]
        assert len(bodies) == count
        for i, line in enumerate(bodies):
            assert line.startswith(b"* %d FETCH (UID " % (i + 1)), line[:40]
            assert line.endswith(body + b")"), i
    total_mib = count * len(body) // (1 << 20)
    grew_mib = (peak - before) // 1024
    assert grew_mib < total_mib // 2, f"peak RSS grew {grew_mib} MiB for a {total_mib} MiB FETCH"
