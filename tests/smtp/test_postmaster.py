"""postmaster@ exists for every local domain without configuration (RFC 5321 4.5.1; issue 13):
mail to postmaster@domain, and to <Postmaster> without a domain (RFC 5321 4.1.1.3), lands in
the administrator's INBOX: the domain's first user (alice, provisioned first). A user or
alias named postmaster@domain takes over."""

from harness import ALICE, BOB, REMOTE_SENDER, RawSMTP, make_message, strip_trace


def send(srv, rcpt: str, msg: bytes) -> None:
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 250, (rcpt, r)
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert c.reply().code == 250


def test_postmaster_reaches_the_administrator_without_configuration(server):
    sent = []
    for rcpt in ("postmaster@example.test", "PostMaster@Example.TEST", "postmaster", "Postmaster"):
        msg = make_message(f"to {rcpt}")
        send(server, rcpt, msg)
        sent.append(msg)
    # Not a wildcard: other unknown names are still refused, and remote postmasters too.
    with RawSMTP(server.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd("RCPT TO:<webmaster@example.test>").code == 550
        assert c.cmd("RCPT TO:<postmaster@remote.test>").code == 550
    got = server.export_all(restart=True)
    assert [strip_trace(m) for m in got[ALICE]] == sent
    assert got[BOB] == []


def test_an_alias_named_postmaster_takes_over(make_server):
    srv = make_server(start=False)
    srv.cli("alias", "add", "postmaster@example.test", BOB)
    srv.start()
    msg = make_message("to the alias")
    send(srv, "postmaster@example.test", msg)
    got = srv.export_all(restart=True)
    assert [strip_trace(m) for m in got[BOB]] == [msg]
    assert got[ALICE] == []
