"""Concurrent sessions: EXISTS/EXPUNGE/FETCH for other sessions' changes at the right moments
(RFC 9051 7.5.1), IDLE woken by an SMTP delivery, and a Thunderbird-style CONDSTORE/QRESYNC
resynchronisation after reconnecting (VANISHED, RFC 7162 3.2.5)."""

from __future__ import annotations

import re

from harness import ALICE, make_message
from imapsupport import raw_session, smtp_deliver


def append(c, msg: bytes, mailbox: str = "INBOX") -> None:
    c.ok(f"APPEND {mailbox} {{{len(msg)}}}", [msg])


def test_two_sessions_see_each_others_changes(server):
    with raw_session(server) as a, raw_session(server) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        for i in range(3):
            append(a, make_message(f"m{i}"))
        # b learns of the new messages at its next command.
        r = b.ok("NOOP")
        assert r.find(b"* 3 EXISTS"), r
        # a flags message 2; b sees FETCH FLAGS.
        a.ok("STORE 2 +FLAGS (\\Flagged)")
        r = b.ok("NOOP")
        assert any(u.startswith(b"* 2 FETCH") and b"\\Flagged" in u for u in r.untagged), r
        # a expunges message 1; b must not get EXPUNGE during FETCH (RFC 9051 7.5.1)...
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        r = b.ok("FETCH 1:* (UID)")
        assert not r.find(b"* 1 EXPUNGE"), r
        assert not any(b"UID 1)" in u or b"UID 1 " in u for u in r.untagged), r
        # ...but gets it at NOOP, and sequence numbers shift.
        r = b.ok("NOOP")
        assert r.find(b"* 1 EXPUNGE"), r
        r = b.ok("FETCH 1 (UID)")
        assert b"UID 2" in r.untagged[0]
        # UID commands may carry EXPUNGE.
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        r = b.ok("UID FETCH 1:* (FLAGS)")
        assert r.find(b"* 1 EXPUNGE"), r


def test_idle_is_woken_by_smtp_delivery(server):
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        c.send(b"i IDLE\r\n")
        assert c.read_response().startswith(b"+")
        smtp_deliver(server, ALICE)
        got = c.read_until(lambda r: r.endswith(b"EXISTS"), 10)
        assert got and got[-1] == b"* 1 EXISTS", got
        # A flag change and an expunge by another session arrive during IDLE too.
        with raw_session(server) as other:
            other.ok("SELECT INBOX")
            other.ok("STORE 1 +FLAGS (\\Deleted)")
            got = c.read_until(lambda r: b"FETCH" in r, 10)
            assert got and b"\\Deleted" in got[-1], got
            other.ok("EXPUNGE")
            got = c.read_until(lambda r: r.endswith(b"EXPUNGE"), 10)
            assert got and got[-1] == b"* 1 EXPUNGE", got
        c.send(b"DONE\r\n")
        assert c.wait("i").status == "OK"
        # Anything but DONE is a BAD.
        c.send(b"j IDLE\r\n")
        assert c.read_response().startswith(b"+")
        c.send(b"NOTDONE\r\n")
        assert c.wait("j").status == "BAD"
        c.ok("NOOP")


def test_qresync_after_reconnect_reports_vanished_and_changed_flags(server):
    # First session: a Thunderbird-like client caches the state.
    with raw_session(server) as c:
        c.ok("ENABLE QRESYNC")
        r = c.ok("SELECT INBOX")
        for i in range(6):
            append(c, make_message(f"q{i}"))
        r = c.ok("STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)")
        st = r.untagged[-1].decode()
        validity = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))
        modseq = int(re.search(r"HIGHESTMODSEQ (\d+)", st).group(1))
    # Meanwhile another client changes things.
    with raw_session(server) as o:
        o.ok("SELECT INBOX")
        o.ok("UID STORE 2 +FLAGS (\\Seen)")
        o.ok("UID STORE 3,5 +FLAGS.SILENT (\\Deleted)")
        o.ok("EXPUNGE")
    with raw_session(server) as c:
        c.ok("ENABLE QRESYNC")
        r = c.ok(f"SELECT INBOX (QRESYNC ({validity} {modseq} 1:6))")
        vanished = r.find(b"* VANISHED (EARLIER)")
        assert vanished == [b"* VANISHED (EARLIER) 3,5"], r
        fetches = r.find(b"* ") and [u for u in r.untagged if b"FETCH" in u]
        assert len(fetches) == 1 and b"UID 2" in fetches[0] and b"\\Seen" in fetches[0], r
        assert b"MODSEQ" in fetches[0]
        # UID FETCH CHANGEDSINCE VANISHED gives the same answer.
        r = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
        assert r.find(b"* VANISHED (EARLIER) 3,5"), r
        # Expunges in this session are reported as VANISHED (RFC 7162 3.2.10).
        c.ok("UID STORE 6 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("EXPUNGE")
        assert r.find(b"* VANISHED 6"), r
        # A stale UIDVALIDITY gives no resync data.
        r = c.ok(f"SELECT INBOX (QRESYNC ({validity + 1} {modseq}))")
        assert not r.find(b"* VANISHED")


def test_condstore_select_and_changedsince(server):
    with raw_session(server) as c:
        r = c.ok("SELECT INBOX (CONDSTORE)")
        assert r.find(b"* OK [HIGHESTMODSEQ")
        for i in range(3):
            append(c, make_message(f"c{i}"))
        r = c.ok("FETCH 1:* (MODSEQ)")
        mods = [int(re.search(rb"MODSEQ \((\d+)\)", u).group(1)) for u in r.untagged]
        c.ok("STORE 3 +FLAGS (\\Answered)")
        r = c.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {max(mods)})")
        assert len(r.untagged) == 1 and r.untagged[0].startswith(b"* 3 FETCH"), r
        # Without QRESYNC, VANISHED is refused.
        assert c.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)").status == "BAD"


def test_idle_reports_a_mailbox_deleted_by_another_session(server):
    with raw_session(server) as c, raw_session(server) as o:
        o.ok("CREATE Temp")
        msg = make_message("temp")
        o.ok(f"APPEND Temp {{{len(msg)}}}", [msg])
        c.ok("SELECT Temp")
        c.send(b"i IDLE\r\n")
        assert c.read_response().startswith(b"+")
        o.ok("DELETE Temp")
        got = c.read_until(lambda r: r.endswith(b"EXPUNGE"), 10)
        assert got and got[-1] == b"* 1 EXPUNGE", got
        c.send(b"DONE\r\n")
        assert c.wait("i").status == "OK"
        # The view is empty now.
        r = c.cmd("FETCH 1:* FLAGS")
        assert r.status == "OK" and not r.untagged, r
