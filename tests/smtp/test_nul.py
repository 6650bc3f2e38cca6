"""NUL octets in message content (issue 13): RFC 5322 2.3 and 3.5 allow none anywhere in a
message, 8BITMIME included. DATA and BDAT content with one is refused with 554 5.6.0 at the
end of the data, nothing is stored, and the session goes on."""

from harness import ALICE, REMOTE_SENDER, RawSMTP, make_message, strip_trace


def test_nul_in_data_and_bdat_is_refused_and_nothing_stored(server):
    with_nul = make_message("nul", b"before\x00after\r\n")
    clean = make_message("clean")
    with RawSMTP(server.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}> BODY=8BITMIME").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(with_nul + b".\r\n")
        r = c.reply()
        assert r.code == 554 and r.enhanced == "5.6.0", r

        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        c.send(f"BDAT {len(with_nul)} LAST\r\n".encode() + with_nul)
        r = c.reply()
        assert r.code == 554 and r.enhanced == "5.6.0", r

        # The session is in sync and a clean message is stored.
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(clean + b".\r\n")
        assert c.reply().code == 250
    assert "smtp.reject.nul" in server.log()
    assert [strip_trace(m) for m in server.export(ALICE)] == [clean]
