"""POP3 over the durable store: byte-exact retrieval of delivered mail, the UPDATE state
(RFC 1939 6) and its durability, \\Seen on RETR, and consistency with IMAP."""

import poplib
import re

import pytest

from harness import ALICE, BOB, make_message, split_trace
from pop3_helpers import (RawPOP3, deliver, export_with_flags, imap_login, login,
                          open_ssl, open_stls, plain, retr_bytes)


def test_delivered_mail_reads_back_byte_for_byte(server):
    bodies = [
        b"plain text\r\n",
        b".starts with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n",
        "Gr\u00fc\u00dfe, 8-bit \u00e9t\u00e9\r\n".encode() + b"x" * 900 + b"\r\n",
        b"no trailing blank\r\nlast line\r\n",
    ]
    sent = [deliver(server, msg=make_message(f"b{i}", b)) for i, b in enumerate(bodies)]
    p = open_stls(server)
    try:
        login(p)
        got = [retr_bytes(p, n) for n in range(1, len(sent) + 1)]
        p.quit()
    except BaseException:
        p.close()
        raise
    stored = [b for _, _, b in export_with_flags(server)]
    assert got == stored, "RETR must return the stored message exactly"
    for g, s in zip(got, sent):
        # The stored message is Return-Path + Received + the client's bytes.
        rp, received, client = split_trace(g)
        assert rp == b"sender@remote.test"
        assert client == s


def test_uidl_is_uidvalidity_dot_uid_and_stable(server):
    for i in range(3):
        deliver(server, subject=f"u{i}")
    p = open_ssl(server)
    login(p)
    _, first, _ = p.uidl()
    p.quit()
    ids = [l.split()[1].decode() for l in first]
    assert all(re.fullmatch(r"\d+\.\d+", i) for i in ids), ids
    assert len({i.split(".")[0] for i in ids}) == 1, "one UIDVALIDITY"
    uids = [int(i.split(".")[1]) for i in ids]
    exported = export_with_flags(server)  # restarts the daemon
    assert uids == [u for u, _, _ in exported]
    # The same ids after a restart.
    p = open_ssl(server)
    login(p)
    _, again, _ = p.uidl()
    p.quit()
    assert [l.split()[1].decode() for l in again] == ids


def test_update_removes_durably(server):
    for i in range(4):
        deliver(server, subject=f"d{i}")
    before = export_with_flags(server)
    assert len(before) == 4 and all("S" not in f for _, f, _ in before)
    p = open_ssl(server)
    try:
        login(p)
        p.retr(1)
        p.top(2, 0)
        p.dele(3)
        p.dele(4)
        # A delivery during the session is not in its snapshot (RFC 1939 5: numbers fixed).
        deliver(server, subject="late")
        assert p.stat()[0] == 2
        with pytest.raises(poplib.error_proto):
            p.list(4)
        with pytest.raises(poplib.error_proto):
            p.list(5)
        assert p.quit().startswith(b"+OK")
    except BaseException:
        p.close()
        raise
    after = export_with_flags(server, restart=False)
    uids = [u for u, _, _ in before]
    assert [u for u, _, _ in after] == [uids[0], uids[1], max(uids) + 1]
    # Survives a restart.
    server.start()
    p = open_ssl(server)
    try:
        login(p)
        assert p.stat()[0] == 3
        assert p.retr(3)[1][-1] == b"Hello."
    finally:
        p.quit()


def test_retr_marks_seen_top_does_not(server):
    for i in range(3):
        deliver(server, subject=f"s{i}")
    p = open_stls(server)
    login(p)
    p.retr(1)
    p.top(2, 5)
    p.retr(3)
    p.retr(3)
    p.quit()
    flags = [f for _, f, _ in export_with_flags(server, restart=False)]
    # RETR sets \Seen in the store (Maildir info letter S), so IMAP shows it read; TOP
    # does not (module documentation of posternd's pop3).
    assert ["S" in f for f in flags] == [True, False, True], flags


def test_dropped_connection_deletes_nothing(server):
    for i in range(2):
        deliver(server, subject=f"k{i}")
    with RawPOP3(server.ports.pop3s, tls=True) as c:
        assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK")
        assert c.cmd("DELE 1").startswith(b"+OK")
        assert c.cmd("DELE 2").startswith(b"+OK")
        # The connection ends without QUIT (RFC 1939 6: no UPDATE).
    # A later session sees both, and RSET-free QUIT after DELE does remove.
    from harness import wait_until

    def both_there():
        p = open_ssl(server)
        try:
            login(p)
            return p.stat()[0]
        except poplib.error_proto:
            return None  # still locked by the dropped session
        finally:
            p.quit()
    assert wait_until(lambda: both_there() == 2, 10, what="two messages after drop")
    assert len(export_with_flags(server)) == 2


def test_quit_in_authorization_and_rset_delete_nothing(server):
    deliver(server)
    p = open_ssl(server)
    login(p)
    p.dele(1)
    p.rset()
    assert p.quit().startswith(b"+OK")
    assert len(export_with_flags(server)) == 1


def test_users_see_only_their_own_maildrop(server):
    deliver(server, rcpt=ALICE, subject="for alice")
    deliver(server, rcpt=BOB, subject="for bob")
    deliver(server, rcpt=BOB, subject="for bob 2")
    p = open_ssl(server)
    login(p, BOB)
    assert p.stat()[0] == 2
    assert any(b"Subject: for bob" in l for l in p.top(1, 0)[1])
    p.quit()


# -- consistency with IMAP (needs the IMAP server of issue 3) ----------------------------------

def test_seen_and_expunge_visible_over_imap(server):
    for i in range(3):
        deliver(server, subject=f"i{i}")
    p = open_ssl(server)
    login(p)
    p.retr(2)
    p.dele(3)
    p.quit()
    m = imap_login(server)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK" and int(data[0]) == 2
        typ, data = m.fetch("1:*", "(FLAGS)")
        flags = [d.decode() if isinstance(d, bytes) else d[0].decode() for d in data]
        assert "\\Seen" not in flags[0] and "\\Seen" in flags[1], flags
    finally:
        m.logout()


def test_messages_expunged_by_imap_meanwhile(server):
    for i in range(3):
        deliver(server, subject=f"x{i}")
    p = open_ssl(server)
    try:
        login(p)
        assert p.stat()[0] == 3
        m = imap_login(server)
        try:
            m.select("INBOX")
            m.store("1", "+FLAGS", "(\\Deleted)")
            m.expunge()
        finally:
            m.logout()
        # The snapshot keeps its numbering; reading or deleting the vanished message is
        # handled without breaking the session.
        r = p._shortcmd("LIST 1")
        assert r.startswith(b"+OK")
        try:
            p.retr(1)
        except poplib.error_proto as e:
            assert e.args[0].startswith(b"-ERR")
        assert p.dele(1).startswith(b"+OK")
        assert p.dele(2).startswith(b"+OK")
        assert p.quit().startswith(b"+OK")
    except BaseException:
        p.close()
        raise
    left = export_with_flags(server, restart=False)
    assert len(left) == 1 and b"Subject: x2" in left[0][2]


def test_update_is_durable_before_ok(server):
    """The +OK to QUIT is sent only after the expunge is on stable storage: a SIGKILL right
    after it loses nothing. A SIGKILL before QUIT removes nothing (RFC 1939 6)."""
    for i in range(4):
        deliver(server, subject=f"k{i}")
    before = [u for u, _, _ in export_with_flags(server)]
    # Killed in TRANSACTION after DELE: nothing removed.
    c = RawPOP3(server.ports.pop3s, tls=True)
    assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK")
    assert c.cmd("DELE 1").startswith(b"+OK")
    server.kill()
    c.close()
    assert [u for u, _, _ in export_with_flags(server)] == before
    server.start()
    # QUIT answered, then killed at once: the deletions are there after recovery.
    with RawPOP3(server.ports.pop3s, tls=True) as c:
        assert c.cmd(f"AUTH PLAIN {plain()}").startswith(b"+OK")
        assert c.cmd("DELE 2").startswith(b"+OK")
        assert c.cmd("DELE 4").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
        server.kill()
    assert [u for u, _, _ in export_with_flags(server, restart=False)] == [before[0], before[2]]
