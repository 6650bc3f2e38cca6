"""STARTTLS on 25/587, implicit TLS on 465, TLS >= 1.2 only."""

import socket
import ssl
import subprocess
import threading

import pytest

from harness import (ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, RawSMTP, assert_modern_tls,
                     client_tls_context, ehlo_keywords, legacy_tls_context, make_message,
                     split_trace, strip_trace)
import re
import smtplib


def test_starttls_mx_smtplib(server):
    msg = make_message("starttls mx")
    with smtplib.SMTP(HOST, server.ports.mx, local_hostname="client.test", timeout=15) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_tls_context())
        assert code == 220
        assert_modern_tls(s.sock)
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
        assert not s.has_extn("auth"), "AUTH must never be offered on MX"
        assert s.sendmail(REMOTE_SENDER, [ALICE], msg) == {}
    [stored] = server.export(ALICE)
    _, received, rest = split_trace(stored)
    assert rest == msg
    # RFC 3848: ESMTPS marks a TLS session; the negotiated version and suite are recorded.
    assert b"ESMTPS" in received, received
    assert re.search(rb"\(version=TLSv1\.[23] cipher=TLS[0-9A-Z_]+\)", received), received


def test_starttls_submission_smtplib(server):
    msg = make_message("starttls 587", sender=ALICE)
    with smtplib.SMTP(HOST, server.ports.submission, local_hostname="client.test", timeout=15) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        s.starttls(context=client_tls_context())
        assert_modern_tls(s.sock)
        s.ehlo()
        s.login(ALICE, PASSWORDS[ALICE])
        assert s.sendmail(ALICE, [BOB], msg) == {}
    [stored] = server.export(BOB)
    rp, _, rest = split_trace(stored)
    assert rp == ALICE.encode()
    assert rest == msg


def test_implicit_tls_smtp_ssl(server):
    msg = make_message("implicit tls", sender=BOB)
    with smtplib.SMTP_SSL(HOST, server.ports.submissions, local_hostname="client.test",
                          timeout=15, context=client_tls_context()) as s:
        assert_modern_tls(s.sock)
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered on an implicit TLS port"
        assert s.has_extn("auth")
        s.login(BOB, PASSWORDS[BOB])
        assert s.sendmail(BOB, [ALICE], msg) == {}
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def swaks(*args, timeout=60):
    p = subprocess.run(["swaks", "--server", HOST, "--helo", "client.test", "--timeout", "15",
                        *args], capture_output=True, timeout=timeout)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    return p.returncode, out


def test_swaks_starttls_mx(server):
    rc, out = swaks("--port", str(server.ports.mx), "--tls", "--from", REMOTE_SENDER,
                    "--to", ALICE, "--header", "Subject: swaks tls")
    assert rc == 0, out
    assert "TLS started" in out, out
    assert "TLSv1.2" in out or "TLSv1.3" in out, out
    [stored] = server.export(ALICE)
    assert b"Subject: swaks tls" in strip_trace(stored)


def test_swaks_starttls_submission(server):
    rc, out = swaks("--port", str(server.ports.submission), "--tls", "--auth", "PLAIN",
                    "--auth-user", ALICE, "--auth-password", PASSWORDS[ALICE],
                    "--from", ALICE, "--to", BOB, "--header", "Subject: swaks 587")
    assert rc == 0, out
    [stored] = server.export(BOB)
    assert b"Subject: swaks 587" in strip_trace(stored)


def test_swaks_implicit_tls(server):
    rc, out = swaks("--port", str(server.ports.submissions), "--tlsc", "--auth", "LOGIN",
                    "--auth-user", BOB, "--auth-password", PASSWORDS[BOB],
                    "--from", BOB, "--to", ALICE, "--header", "Subject: swaks 465")
    assert rc == 0, out
    assert "TLSv1.2" in out or "TLSv1.3" in out, out
    [stored] = server.export(ALICE)
    assert b"Subject: swaks 465" in strip_trace(stored)


@pytest.fixture(scope="module")
def legacy_tls_works(tmp_path_factory):
    """Self-check: this client context really can negotiate TLS 1.1 with a peer that allows it,
    so a failure against posternd is posternd's refusal, not a client-side limit."""
    d = tmp_path_factory.mktemp("legacy")
    key, crt = d / "k.pem", d / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=legacy.test"],
                   check=True, capture_output=True, timeout=60)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.maximum_version = ssl.TLSVersion.TLSv1_1
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.load_cert_chain(crt, key)
    ls = socket.socket()
    ls.bind((HOST, 0))
    ls.listen()
    ls.settimeout(10)
    result = {}

    def serve():
        try:
            c, _ = ls.accept()
            with sctx.wrap_socket(c, server_side=True) as t:
                result["server"] = t.version()
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = repr(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(ls.getsockname(), timeout=10) as c:
            with legacy_tls_context().wrap_socket(c) as tc:
                v = tc.version()
    except ssl.SSLError as e:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.0/1.1 at all ({e}); refusal untestable")
    finally:
        t.join(10)
        ls.close()
    assert v in ("TLSv1", "TLSv1.1"), v
    return True


def legacy_handshake_refused(sock):
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        s = legacy_tls_context().wrap_socket(sock)
        # If a handshake "succeeded", report which version slipped through.
        raise AssertionError(f"legacy TLS handshake succeeded with {s.version()}")


def test_tls11_refused_implicit(shared_server, legacy_tls_works):
    with socket.create_connection((HOST, shared_server.ports.submissions), timeout=15) as sock:
        legacy_handshake_refused(sock)


@pytest.mark.parametrize("port_name", ["mx", "submission"])
def test_tls11_refused_starttls(shared_server, legacy_tls_works, port_name):
    c = RawSMTP(getattr(shared_server.ports, port_name))
    try:
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert r.code == 220, r
        legacy_handshake_refused(c.sock)
    finally:
        c.close()
    # The server survives and still serves modern clients.
    with RawSMTP(getattr(shared_server.ports, port_name)) as c2:
        c2.ehlo()
        c2.starttls()
        assert_modern_tls(c2.sock)
        assert c2.ehlo().code == 250


def test_tls12_and_tls13_both_work(shared_server):
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_tls_context(min_version=v, max_version=v)
        with socket.create_connection((HOST, shared_server.ports.submissions), timeout=15) as sock:
            with ctx.wrap_socket(sock) as t:
                assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                       ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v]
                f = t.makefile("rb")
                assert f.readline().startswith(b"220 ")


def test_server_chooses_aes128_gcm_even_when_the_client_prefers_aes256(shared_server):
    """The server's suite order wins (OpenSSL clients list AES-256 first); only AEAD suites
    with forward secrecy are ever chosen."""
    expected = {ssl.TLSVersion.TLSv1_3: "TLS_AES_128_GCM_SHA256",
                ssl.TLSVersion.TLSv1_2: "ECDHE-ECDSA-AES128-GCM-SHA256"}
    for version, suite in expected.items():
        ctx = client_tls_context(min_version=version, max_version=version)
        if version == ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
                            "ECDHE-ECDSA-AES128-GCM-SHA256")
        with socket.create_connection((HOST, shared_server.ports.submissions), timeout=15) as sock:
            with ctx.wrap_socket(sock) as t:
                offered = [c["name"] for c in ctx.get_ciphers()]
                assert offered.index(suite) > 0, offered  # the client prefers another suite
                assert t.cipher()[0] == suite, t.cipher()
        # A client that offers only AES-256 still gets it.
        ctx = client_tls_context(min_version=version, max_version=version)
        if version == ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
        else:
            # Python cannot restrict TLS 1.3 suites (no SSL_CTX_set_ciphersuites binding).
            continue
        with socket.create_connection((HOST, shared_server.ports.submissions), timeout=15) as sock:
            with ctx.wrap_socket(sock) as t:
                assert t.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384", t.cipher()


def test_tls13_only_switch(make_server):
    srv = make_server(tls_min_version="1.3")
    ctx12 = client_tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection((HOST, srv.ports.submissions), timeout=15) as sock:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx12.wrap_socket(sock)
    with socket.create_connection((HOST, srv.ports.submissions), timeout=15) as sock:
        with client_tls_context().wrap_socket(sock) as t:
            assert t.version() == "TLSv1.3"


def test_self_signed_certificate_generated(shared_server):
    tls = shared_server.tls_dir()
    assert tls.is_dir(), f"{tls} missing"
    assert any(tls.iterdir()), f"{tls} empty"
    with socket.create_connection((HOST, shared_server.ports.submissions), timeout=15) as sock:
        with client_tls_context().wrap_socket(sock) as t:
            der = t.getpeercert(binary_form=True)
            assert der, "no certificate presented"
    # The generated private key must not be readable by others (DESIGN 6).
    for f in tls.iterdir():
        if "key" in f.name.lower():
            assert f.stat().st_mode & 0o077 == 0, f"{f} mode {oct(f.stat().st_mode)}"


def test_starttls_rejects_pipelined_plaintext(shared_server):
    """Commands pipelined after STARTTLS in the clear must not be executed inside TLS
    (CVE-2011-0411 class): the server drops its buffer or refuses."""
    c = RawSMTP(shared_server.ports.mx)
    try:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        r = c.reply()
        if r.code != 220:
            assert 500 <= r.code < 600, r
            return
        assert c.buf == b"", f"server answered the injected command in clear: {c.buf!r}"
        try:
            c.sock = client_tls_context().wrap_socket(c.sock)
        except (ssl.SSLError, ConnectionResetError):
            return  # refusing the session is fine
        c.sock.settimeout(2)
        try:
            data = c.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            data = b""
        except (ssl.SSLError, ConnectionResetError):
            return
        assert not data.startswith(b"250"), f"injected RSET answered inside TLS: {data!r}"
    finally:
        c.close()
