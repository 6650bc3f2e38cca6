"""PIPELINING (RFC 2920), CHUNKING/BDAT (RFC 3030), SIZE (RFC 1870)."""

import smtplib

import pytest

from harness import (ALICE, BOB, HOST, REMOTE_SENDER, TEAM, RawSMTP, dot_stuff, ehlo_keywords,
                     make_message, strip_trace)

SIZE_LIMIT = 65536  # the RFC 5321 4.5.3.1.7 minimum


def test_pipelining(server):
    msg = make_message("pipelined", b"one\r\n.two\r\n")
    with RawSMTP(server.ports.mx) as c:
        assert "PIPELINING" in ehlo_keywords(c.ehlo())
        c.send((f"MAIL FROM:<{REMOTE_SENDER}>\r\n"
                f"RCPT TO:<{ALICE}>\r\n"
                f"RCPT TO:<{BOB}>\r\n"
                "DATA\r\n").encode())
        codes = [c.reply().code for _ in range(4)]
        assert codes == [250, 250, 250, 354]
        # Body, end of data, a whole second transaction and QUIT in one write.
        c.send(dot_stuff(msg) + b".\r\n"
               + f"MAIL FROM:<{REMOTE_SENDER}>\r\nRCPT TO:<nobody@example.test>\r\n"
                 f"RCPT TO:<{TEAM}>\r\nDATA\r\n".encode())
        codes = [c.reply().code for _ in range(5)]
        assert codes == [250, 250, 550, 250, 354]
        c.send(dot_stuff(msg) + b".\r\nQUIT\r\n")
        assert [c.reply().code for _ in range(2)] == [250, 221]
    got = server.export_all()
    assert [strip_trace(m) for m in got[ALICE]] == [msg, msg]
    assert [strip_trace(m) for m in got[BOB]] == [msg, msg]


def test_pipelining_whole_group_with_ehlo(shared_server):
    """RSET, EHLO-less groups: replies come back in order, one per command."""
    with RawSMTP(shared_server.ports.mx) as c:
        c.send(b"EHLO a.test\r\nNOOP\r\nRSET\r\nMAIL FROM:<x@remote.test>\r\nRSET\r\nNOOP\r\n")
        codes = [c.reply().code for _ in range(6)]
        assert codes == [250] * 6


def bdat_session(port):
    c = RawSMTP(port)
    assert "CHUNKING" in ehlo_keywords(c.ehlo())
    return c


def test_bdat(server):
    msg = make_message("bdat", b"".join(b"line %d with some text\r\n" % i for i in range(300))
                       + b".\r\n..not stuffed\r\n")
    # Split points inside a line and between CR and LF.
    cr = msg.index(b"\r\n", 500) + 1
    chunks = [msg[:100], msg[100:cr], msg[cr:4000], msg[4000:]]
    assert b"".join(chunks) == msg
    with bdat_session(server.ports.mx) as c:
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        for i, ch in enumerate(chunks):
            last = " LAST" if i == len(chunks) - 1 else ""
            c.send(f"BDAT {len(ch)}{last}\r\n".encode() + ch)
            r = c.reply()
            assert r.code == 250, (i, r)
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_bdat_pipelined_and_empty_last(server):
    msg = make_message("bdat pipelined", b"x" * 50 + b"\r\n")
    half = len(msg) // 2
    with bdat_session(server.ports.mx) as c:
        c.send(f"MAIL FROM:<{REMOTE_SENDER}>\r\nRCPT TO:<{BOB}>\r\n".encode()
               + f"BDAT {half}\r\n".encode() + msg[:half]
               + f"BDAT {len(msg) - half}\r\n".encode() + msg[half:]
               + b"BDAT 0 LAST\r\n")
        codes = [c.reply().code for _ in range(5)]
        assert codes == [250] * 5
    [stored] = server.export(BOB)
    assert strip_trace(stored) == msg


def test_bdat_single_chunk_8bit(server):
    msg = make_message("bdat 8bit", "Grüße — binary-ish 8bit content\r\n".encode())
    with bdat_session(server.ports.mx) as c:
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}> BODY=8BITMIME").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert c.reply().code == 250
    [stored] = server.export(ALICE)
    assert strip_trace(stored) == msg


def test_data_after_bdat_refused(shared_server):
    with bdat_session(shared_server.ports.mx) as c:
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        c.send(b"BDAT 5\r\nHello")
        assert c.reply().code == 250
        # RFC 3030 2: DATA after BDAT in the same transaction is a 503.
        assert c.cmd("DATA").code == 503


def test_bdat_without_transaction_refused(shared_server):
    with bdat_session(shared_server.ports.mx) as c:
        c.send(b"BDAT 5 LAST\r\nHello")
        r = c.reply()
        assert r.code == 503, r
        # The 5 octets were consumed as data, not commands: the session is in sync.
        assert c.cmd("NOOP").code == 250


@pytest.fixture(scope="module")
def size_server(module_factory):
    return module_factory(smtp={"max_message_size": SIZE_LIMIT})


def test_size_advertised(size_server):
    with RawSMTP(size_server.ports.mx) as c:
        assert ehlo_keywords(c.ehlo()).get("SIZE") == str(SIZE_LIMIT)


def test_mail_size_param_over_limit(size_server):
    with RawSMTP(size_server.ports.mx) as c:
        c.ehlo()
        r = c.cmd(f"MAIL FROM:<{REMOTE_SENDER}> SIZE={SIZE_LIMIT + 1}")
        assert r.code == 552, r
        r = c.cmd(f"MAIL FROM:<{REMOTE_SENDER}> SIZE={SIZE_LIMIT}")
        assert r.code == 250, r


def test_size_limits_body(size_server):
    ok = make_message("fits", b"a" * 70 + b"\r\n")
    big = make_message("too big", (b"b" * 998 + b"\r\n") * (SIZE_LIMIT // 1000 + 2))
    assert len(big) > SIZE_LIMIT
    with RawSMTP(size_server.ports.mx) as c:
        c.ehlo()
        # DATA without a SIZE declaration: the server counts and refuses once the content
        # passes the limit, then closes (tests/smtp/test_oversize.py).
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(big + b".\r\n")
        r = c.reply()
        assert r.code == 552, r
    with RawSMTP(size_server.ports.mx) as c:
        c.ehlo()
        # BDAT over the limit: refused when declared.
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        r = c.cmd(f"BDAT {len(big)} LAST")
        assert r.code == 552, r
    with RawSMTP(size_server.ports.mx) as c:
        # A small message goes through.
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(ok + b".\r\n")
        assert c.reply().code == 250
    # smtplib declares SIZE=; a message over the limit fails at MAIL.
    with smtplib.SMTP(HOST, size_server.ports.mx, timeout=15) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail(REMOTE_SENDER, [ALICE], big)
        assert e.value.smtp_code == 552
    got = size_server.export_all(restart=True)
    assert [strip_trace(m) for m in got[ALICE]] == [ok]
    assert got[BOB] == []
