"""Plain MX delivery: the stored message is Return-Path + Received + the client's bytes unchanged."""

import smtplib
import subprocess

import pytest

from harness import (ALICE, BOB, HOST, HOSTNAME, REMOTE_SENDER, TEAM, RawSMTP, dot_stuff,
                     make_message, split_trace, strip_trace)


def smtp_client(port, **kw) -> smtplib.SMTP:
    return smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=15, **kw)


def test_smtplib_delivery_exact_bytes(backend_server):
    srv = backend_server
    body = (b"Plain ASCII body.\r\n"
            b".a line with a leading dot\r\n"
            b"..two leading dots\r\n"
            b".\r\n"
            b"  indented line  \r\n"
            b"\r\n"
            b"last line\r\n")
    msg = make_message("smtplib exact", body)
    with smtp_client(srv.ports.mx) as s:
        assert s.ehlo()[0] == 250
        refused = s.sendmail(REMOTE_SENDER, [ALICE], msg)
        assert refused == {}
    stored = srv.export(ALICE)
    assert len(stored) == 1
    rp, received, rest = split_trace(stored[0])
    assert rp == REMOTE_SENDER.encode()
    assert rest == msg
    assert HOSTNAME.encode() in received
    # RFC 5321 4.4: the time stamp line ends with "; date-time".
    assert b";" in received
    assert srv.export(BOB) == []


def test_banner_names_host(shared_server):
    with RawSMTP(shared_server.ports.mx) as c:
        assert c.banner.code == 220
        assert HOSTNAME in c.banner.text


def test_ehlo_extensions_mx(shared_server):
    with RawSMTP(shared_server.ports.mx) as c:
        kws = c.ehlo().lines
        names = {l[4:].split(b" ")[0].upper().decode() for l in kws[1:]}
        for ext in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                    "CHUNKING", "STARTTLS"):
            assert ext in names, f"{ext} not advertised: {names}"
        assert "AUTH" not in names


def test_8bit_and_utf8_bodies(backend_server):
    srv = backend_server
    m8 = make_message("8bit", "Grüße aus Köln – ½ € \r\nRaw latin1: ".encode() + bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
    mutf8 = ("From: Jörg <sender@remote.test>\r\n"
             "To: Алиса <alice@example.test>\r\n"
             "Subject: 日本語の件名 ✉\r\n"
             "Message-Id: <utf8-1@client.test>\r\n"
             "\r\n"
             "Ünïcödé body — 🙂\r\n").encode()
    with smtp_client(srv.ports.mx) as s:
        s.ehlo()
        assert s.has_extn("8bitmime") and s.has_extn("smtputf8")
        assert s.sendmail(REMOTE_SENDER, [ALICE], m8, mail_options=["BODY=8BITMIME"]) == {}
        assert s.sendmail(REMOTE_SENDER, [ALICE], mutf8, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    stored = srv.export(ALICE)
    assert [strip_trace(m) for m in stored] == [m8, mutf8]


def test_signed_message_untouched(server):
    """A DKIM-signed message with odd whitespace, long folded headers, tabs, trailing spaces and no
    final header normalisation must be stored byte for byte (signatures must keep verifying)."""
    msg = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=remote.test; s=sel;\r\n"
           b"\tt=1700000000; h=From:To:Subject:Date;\r\n"
           b"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
           b"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbXVzdCBzdGF5IGludGFjdA==\r\n"
           b"From:   Sender    <sender@remote.test>   \r\n"
           b"To:\talice@example.test\r\n"
           b"subject:Odd   Whitespace\t \r\n"
           b"X-Folded: first\r\n"
           b"   second\r\n"
           b"\t\tthird\r\n"
           b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
           b"\r\n"
           b"Body with trailing spaces   \r\n"
           b"\ttab-indented\r\n"
           b"\r\n"
           b"\r\n")
    with smtp_client(server.ports.mx) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], msg) == {}
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_raw_data_dot_unstuffing(server):
    """Byte-exact DATA over a raw socket, incl. a message that does not end in an empty line."""
    msg = make_message("raw", b"line\r\n.\r\n..\r\n...x\r\nend\r\n")
    with RawSMTP(server.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(msg) + b".\r\n")
        assert c.reply().code == 250
        assert c.cmd("QUIT").code == 221
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_null_sender(server):
    """Bounces use the null reverse-path; Return-Path must be <>."""
    msg = make_message("bounce")
    with RawSMTP(server.ports.mx) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    [stored] = server.export(BOB)
    rp, _, rest = split_trace(stored)
    assert rp == b""
    assert rest == msg


def test_helo_delivery(server):
    """Plain RFC 821 HELO clients still deliver."""
    msg = make_message("helo")
    with RawSMTP(server.ports.mx) as c:
        assert c.cmd("HELO client.test").code == 250
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_alias_expansion(backend_server):
    srv = backend_server
    msg = make_message("to the team")
    with smtp_client(srv.ports.mx) as s:
        assert s.sendmail(REMOTE_SENDER, [TEAM], msg) == {}
    got = srv.export_all()
    assert [strip_trace(m) for m in got[ALICE]] == [msg]
    assert [strip_trace(m) for m in got[BOB]] == [msg]


def test_multiple_recipients_and_messages_per_session(server):
    msgs = [make_message(f"m{i}", f"body {i}\r\n".encode()) for i in range(5)]
    with smtp_client(server.ports.mx) as s:
        for i, m in enumerate(msgs):
            rcpts = [ALICE, BOB] if i % 2 == 0 else [BOB]
            assert s.sendmail(REMOTE_SENDER, rcpts, m) == {}
        # RSET discards a half-built transaction; nothing of it may be stored.
        assert s.mail(REMOTE_SENDER)[0] == 250
        assert s.rcpt(ALICE)[0] == 250
        assert s.rset()[0] == 250
    got = server.export_all()
    assert [strip_trace(m) for m in got[ALICE]] == [msgs[0], msgs[2], msgs[4]]
    assert [strip_trace(m) for m in got[BOB]] == msgs


def test_alias_and_member_in_one_transaction(server):
    """RCPT alice and team: alice's mailbox gets one copy (duplicates suppressed), bob one."""
    msg = make_message("dup")
    with smtp_client(server.ports.mx) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE, TEAM], msg) == {}
    got = server.export_all()
    assert [strip_trace(m) for m in got[ALICE]] == [msg]
    assert [strip_trace(m) for m in got[BOB]] == [msg]


def test_swaks_delivery(server, tmp_path):
    body = "From: a@remote.test\r\nSubject: swaks caf\u00e9\r\nMessage-Id: <swaks-1@client.test>\r\n\r\nhello from swaks\r\n.leading dot\r\nend"
    f = tmp_path / "msg.eml"
    f.write_bytes(body.encode())
    p = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(server.ports.mx), "--helo", "client.test",
         "--from", REMOTE_SENDER, "--to", ALICE, "--data", f"@{f}", "--timeout", "15"],
        capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    [stored] = server.export(ALICE)
    # swaks sends the file followed by CRLF.CRLF; the message is the file plus its final CRLF.
    assert strip_trace(stored) == body.encode() + b"\r\n"


def test_received_with_protocol(make_server):
    """RFC 3848: Received says ESMTP for a plain EHLO session (and SMTP for HELO)."""
    srv = make_server()
    msg = make_message("with")
    with smtp_client(srv.ports.mx) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], msg) == {}
    [stored] = srv.export(ALICE)
    _, received, _ = split_trace(stored)
    assert b"with ESMTP" in received and b"ESMTPS" not in received, received
    # RFC 5321 4.4: FROM clause names the EHLO argument and the client's address literal.
    assert received.startswith(b"Received: from client.test ") and b"[127.0.0.1]" in received
