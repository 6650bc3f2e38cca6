"""Connection, TLS and authentication: STARTTLS with LOGINDISABLED on the plain port, implicit TLS
on IMAPS, LOGIN, AUTHENTICATE PLAIN (SASL-IR and continuation), failures, CAPABILITY, ID,
NAMESPACE, ENABLE, NOOP, LOGOUT, metrics."""

from __future__ import annotations

import base64
import imaplib
import ssl

from harness import ALICE, HOST, PASSWORDS, client_tls_context, metric_sum, parse_metrics
from imapsupport import RawIMAP, imaplib_session, raw_session


def caps_of(line: bytes) -> set[str]:
    text = line.decode()
    if "[CAPABILITY " in text:
        text = text.split("[CAPABILITY ", 1)[1].split("]", 1)[0]
    else:
        text = text.split("CAPABILITY ", 1)[1]
    return set(text.split())


def test_plain_port_offers_starttls_and_refuses_login_before_tls(server):
    with RawIMAP(server.ports.imap) as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY ")
        caps = caps_of(c.greeting)
        assert {"STARTTLS", "LOGINDISABLED", "IMAP4rev2", "IMAP4rev1"} <= caps
        assert not any(x.startswith("AUTH=") for x in caps), caps
        r = c.cmd(f'LOGIN "{ALICE}" "{PASSWORDS[ALICE]}"')
        assert r.status == "NO" and b"PRIVACYREQUIRED" in r.tagged, r
        r = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(
            f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode())
        assert r.status == "NO", r
        # Commands of the authenticated state are refused.
        assert c.cmd("SELECT INBOX").status == "BAD"
        c.starttls()
        r = c.ok("CAPABILITY")
        caps = caps_of(r.find(b"* CAPABILITY")[0])
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
        assert {"AUTH=PLAIN", "SASL-IR"} <= caps
        r = c.login()
        assert b"[CAPABILITY" in r.tagged
        assert c.cmd("STARTTLS").status == "BAD"


def test_starttls_discards_pipelined_plaintext(server):
    with RawIMAP(server.ports.imap) as c:
        # A command injected after STARTTLS in the same packet must not run after TLS.
        c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        r = c.wait("a")
        assert r.status == "OK"
        c.buf = b""
        c.sock = client_tls_context().wrap_socket(c.sock)
        r = c.ok("NOOP")
        assert not any(u.startswith(b"b ") for u in r.untagged)


def test_imaps_with_imaplib_login_and_capabilities(server):
    m = imaplib_session(server)
    try:
        typ, data = m.capability()
        caps = set(data[0].decode().split())
        for c in ["IMAP4rev2", "IMAP4rev1", "ENABLE", "IDLE", "UIDPLUS", "MOVE", "CONDSTORE",
                  "QRESYNC", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LITERAL+", "NAMESPACE", "ID",
                  "UNSELECT", "QUOTA", "QUOTA=RES-STORAGE", "LIST-EXTENDED", "LIST-STATUS",
                  "ESEARCH", "SEARCHRES", "SORT", "COMPRESS=DEFLATE"]:
            assert c in caps, c
        assert any(c.startswith("APPENDLIMIT=") for c in caps)
        assert m.noop()[0] == "OK"
        typ, data = m.namespace()
        assert typ == "OK" and data[0] == b'(("" "/")) NIL NIL'
    finally:
        m.logout()


def test_authenticate_plain_sasl_ir_and_continuation(server):
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
    with RawIMAP(server.ports.imaps, tls=True) as c:
        c.ok(f"AUTHENTICATE PLAIN {token}")
        c.ok("SELECT INBOX")
    with RawIMAP(server.ports.imaps, tls=True) as c:
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        assert c.read_response().startswith(b"+")
        c.send(token.encode() + b"\r\n")
        assert c.wait("a").status == "OK"
    with RawIMAP(server.ports.imaps, tls=True) as c:
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        assert c.read_response().startswith(b"+")
        c.send(b"*\r\n")
        assert c.wait("a").status == "BAD"
        # Unknown mechanism.
        assert c.cmd("AUTHENTICATE CRAM-MD5").status == "NO"


def test_failed_logins_are_counted_and_end_the_connection(server):
    with RawIMAP(server.ports.imaps, tls=True) as c:
        for i in range(3):
            r = c.cmd(f'LOGIN "{ALICE}" "wrong-{i}"')
            assert r.status == "NO" and b"AUTHENTICATIONFAILED" in r.tagged, r
        # The third failure ends the session with BYE.
        assert any(u.startswith(b"* BYE") for u in r.untagged) or c.read_until(
            lambda x: x.startswith(b"* BYE"), 5)
    m = parse_metrics(server.metrics())
    assert metric_sum(m, "postern_imap_auth_failures_total") >= 3
    assert "wrong-0" not in server.log(), "a password reached the log"
    assert PASSWORDS[ALICE] not in server.log()


def test_imaplib_refuses_wrong_password(server):
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(), timeout=15)
    try:
        try:
            m.login(ALICE, "not-the-password")
            raise AssertionError("login succeeded")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e)
    finally:
        m.shutdown()


def test_id_enable_noop_logout_and_metrics(server):
    with raw_session(server) as c:
        r = c.ok('ID ("name" "pytest")')
        assert r.find(b'* ID ("name" "Postern"')
        r = c.ok("ENABLE CONDSTORE UTF8=ACCEPT IMAP4rev2")
        assert r.find(b"* ENABLED")[0].split()[2:] == [b"CONDSTORE", b"UTF8=ACCEPT", b"IMAP4rev2"]
        # Enabling again reports nothing new (RFC 5161 3.2).
        assert c.ok("ENABLE CONDSTORE").find(b"* ENABLED")[0] == b"* ENABLED "
        c.ok("NOOP")
        r = c.cmd("LOGOUT")
        assert r.status == "OK" and r.find(b"* BYE")
    m = parse_metrics(server.metrics())
    assert metric_sum(m, "postern_imap_connections_total") >= 1
    assert m.get('postern_imap_commands_total{command="LOGOUT",result="ok"}', 0) >= 1
    assert "postern_imap_connections_active" in server.metrics()


def test_tls_versions_on_imaps(server):
    ctx = client_tls_context()
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=ctx, timeout=15)
    try:
        assert m.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        m.shutdown()
    old = client_tls_context(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=old, timeout=15)
        raise AssertionError("TLS 1.1 accepted")
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass
