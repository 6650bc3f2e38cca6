"""IMAP4rev2 vs IMAP4rev1 behaviour (ESEARCH, \\Recent), UTF8=ACCEPT mailbox names, MULTIAPPEND,
CHECK, and a Thunderbird-like start-up sequence over the STARTTLS port."""

from __future__ import annotations

import re

from harness import ALICE, make_message
from imapsupport import RawIMAP, raw_session, smtp_deliver


def test_rev2_gets_esearch_and_no_recent_rev1_gets_recent_once(server):
    smtp_deliver(server, ALICE)
    with raw_session(server) as first, raw_session(server) as second:
        # IMAP4rev1 client: the first session to see a message gets it as \Recent.
        r = first.ok("SELECT INBOX")
        assert r.find(b"* 1 RECENT")
        assert b"\\Recent" in first.ok("FETCH 1 FLAGS").untagged[0]
        r = second.ok("EXAMINE INBOX")
        assert r.find(b"* 0 RECENT")
        assert first.ok("SEARCH RECENT").untagged[0] == b"* SEARCH 1"
    with raw_session(server) as c:
        c.ok("ENABLE IMAP4rev2")
        r = c.ok("SELECT INBOX")
        assert not r.find(b"* 0 RECENT") and not r.find(b"* 1 RECENT")
        assert r.find(b'* LIST () "/" "INBOX"')
        r = c.ok("SEARCH ALL")
        assert r.untagged[0].startswith(b"* ESEARCH (TAG ") and b"ALL 1" in r.untagged[0]
        assert b"\\Recent" not in c.ok("FETCH 1 FLAGS").untagged[0]


def test_utf8_accept_and_modified_utf7_names(server):
    with raw_session(server) as c:
        c.ok("CREATE Entw&APw-rfe")
        r = c.ok('LIST "" "Entw*"')
        assert r.untagged == [b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"'], r
        # Raw 8-bit names are refused without UTF8=ACCEPT.
        assert c.cmd('CREATE "Caf\xc3\xa9"'.encode("latin-1")).status == "BAD"
    with raw_session(server) as c:
        c.ok("ENABLE UTF8=ACCEPT")
        r = c.ok('LIST "" "Entw*"')
        assert r.untagged == ['* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode()], r
        c.ok('CREATE "Café"'.encode())
    with raw_session(server) as c:
        r = c.ok('LIST "" "Caf*"')
        assert r.untagged == [b'* LIST (\\HasNoChildren) "/" "Caf&AOk-"'], r


def test_multiappend_and_check(server):
    a, b = make_message("one"), make_message("two")
    with raw_session(server) as c:
        r = c.ok("APPEND INBOX (\\Seen) {%d} (\\Flagged) {%d}" % (len(a), len(b)), [a, b])
        m = re.search(rb"\[APPENDUID \d+ 1:2\]", r.tagged)
        assert m, r
        c.ok("SELECT INBOX")
        c.ok("CHECK")
        flags = c.ok("FETCH 1:2 FLAGS").untagged
        assert b"\\Seen" in flags[0] and b"\\Flagged" in flags[1]


def test_multiappend_is_advertised_and_all_or_nothing(server):
    """RFC 3502 3: if any message of a MULTIAPPEND cannot be appended, none is. The second
    message's keyword passes the parser but the store refuses it (longer than 1024 octets):
    the first, already committed, must be gone again."""
    a, b = make_message("kept?"), make_message("refused")
    with raw_session(server) as c:
        assert b"MULTIAPPEND" in c.ok("CAPABILITY").untagged[0]
        c.ok("CREATE Multi")
        r = c.cmd("APPEND Multi () {%d} ($%s) {%d}" % (len(a), "k" * 2000, len(b)), [a, b])
        assert r.status == "NO", r
        status = c.ok("STATUS Multi (MESSAGES UIDNEXT)").untagged[0]
        assert b"MESSAGES 0" in status, status
        # A later MULTIAPPEND gets fresh UIDs, in message order, in one response.
        r = c.ok("APPEND Multi {%d} {%d} {%d}" % (len(a), len(b), len(a)), [a, b, a])
        m = re.search(rb"\[APPENDUID \d+ (\d+):(\d+)\]", r.tagged)
        assert m and int(m.group(2)) - int(m.group(1)) == 2, r
        c.ok("SELECT Multi")
        uids = c.ok("UID SEARCH ALL").untagged[0].split()[2:]
        assert [int(u) for u in uids] == list(range(int(m.group(1)), int(m.group(2)) + 1))


def test_thunderbird_like_startup_over_starttls(server):
    smtp_deliver(server, ALICE, make_message("hello thunderbird"))
    with RawIMAP(server.ports.imap) as c:
        c.ok("CAPABILITY")
        c.starttls()
        c.login()
        c.ok('ID ("name" "Thunderbird" "version" "128.0")')
        c.ok("ENABLE CONDSTORE")
        r = c.ok('LIST (SPECIAL-USE) "" "*"')
        uses = {l.split(b"(")[1].split(b")")[0] for l in r.untagged}
        assert any(b"\\Sent" in u for u in uses) and any(b"\\Trash" in u for u in uses)
        c.ok('LIST "" "*" RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)')
        c.ok("NAMESPACE")
        r = c.ok("SELECT INBOX (CONDSTORE)")
        assert r.find(b"* 1 EXISTS")
        r = c.ok("UID FETCH 1:* (FLAGS MODSEQ)")
        assert b"MODSEQ" in r.untagged[0]
        r = c.ok("UID FETCH 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Subject "
                 "Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
                 "Content-Type Reply-To)])")
        assert b"Subject: hello thunderbird" in r.untagged[0]
        r = c.ok("UID STORE 1 +FLAGS (\\Seen)")
        assert b"MODSEQ" in r.untagged[0]
        c.ok("GETQUOTAROOT INBOX")
        assert c.cmd("LOGOUT").status == "OK"
