"""Mailbox commands: LIST (special-use, LIST-EXTENDED selection and RETURN options, LIST-STATUS),
LSUB, CREATE (with USE), DELETE, RENAME (children, INBOX), SUBSCRIBE/UNSUBSCRIBE persisted across
restart, STATUS, SELECT/EXAMINE, GETQUOTA/GETQUOTAROOT/SETQUOTA."""

from __future__ import annotations

import re

from harness import ALICE, BOB, make_message
from imapsupport import raw_session, smtp_deliver

LIST_RE = re.compile(rb'^\* LIST \(([^)]*)\) "/" "?([^"]*)"?(.*)$')


def listing(r) -> dict[str, tuple[set[str], bytes]]:
    out = {}
    for line in r.find(b"* LIST "):
        m = LIST_RE.match(line)
        assert m, line
        out[m.group(2).decode()] = (set(m.group(1).decode().split()), m.group(3))
    return out


def test_default_mailboxes_with_special_use(server):
    with raw_session(server) as c:
        got = listing(c.ok('LIST "" "*"'))
        assert set(got) == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}, got
        for name, attr in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Junk", "\\Junk"),
                           ("Trash", "\\Trash"), ("Archive", "\\Archive")]:
            assert attr in got[name][0], got[name]
        assert "\\HasNoChildren" in got["INBOX"][0]
        # RFC 6154 5.1: SPECIAL-USE selection lists only those.
        got = listing(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert set(got) == {"Sent", "Drafts", "Junk", "Trash", "Archive"}
        # Delimiter query.
        r = c.ok('LIST "" ""')
        assert r.find(b'* LIST (\\Noselect) "/" ""')
        # % does not cross the delimiter.
        c.ok("CREATE Work/Projects")
        got = listing(c.ok('LIST "" "%"'))
        assert "Work" in got and "Work/Projects" not in got
        assert "\\HasChildren" in got["Work"][0]
        got = listing(c.ok('LIST "Work/" "%"'))
        assert set(got) == {"Work/Projects"}


def test_create_with_use_delete_and_errors(server):
    with raw_session(server) as c:
        c.ok("CREATE Receipts (USE (\\Archive))")
        got = listing(c.ok('LIST "" "Receipts"'))
        assert "\\Archive" in got["Receipts"][0]
        r = c.cmd("CREATE Receipts")
        assert r.status == "NO" and b"ALREADYEXISTS" in r.tagged
        r = c.cmd("CREATE Bad (USE (\\Flagged))")
        assert r.status == "NO" and b"USEATTR" in r.tagged
        r = c.cmd("CREATE inbox")
        assert r.status == "NO"
        assert c.cmd("DELETE INBOX").status == "NO"
        r = c.cmd("DELETE Nope")
        assert r.status == "NO" and b"NONEXISTENT" in r.tagged
        c.ok("DELETE Receipts")
        assert not listing(c.ok('LIST "" "Receipts"'))
        # A deleted and recreated mailbox gets a new UIDVALIDITY (RFC 9051 2.3.1.1).
        c.ok("CREATE Again")
        v1 = c.ok("STATUS Again (UIDVALIDITY)").find(b"* STATUS")[0]
        c.ok("DELETE Again")
        c.ok("CREATE Again")
        v2 = c.ok("STATUS Again (UIDVALIDITY)").find(b"* STATUS")[0]
        assert v1 != v2


def test_delete_keeps_children_and_list_shows_the_level(server):
    """RFC 9051 6.3.4: DELETE must not remove inferior names. The level left behind is
    listed not selectable (RFC 9051 6.3.9), so a client walking the tree with "%" still
    reaches the children."""
    with raw_session(server) as c:
        c.ok("CREATE Projects/2024")
        c.ok("DELETE Projects")
        top = listing(c.ok('LIST "" "%"'))
        assert "\\Noselect" in top["Projects"][0] and "\\HasChildren" in top["Projects"][0]
        assert "Projects/2024" not in top
        assert "\\HasNoChildren" in listing(c.ok('LIST "" "Projects/%"'))["Projects/2024"][0]
        # LIST-EXTENDED names it \NonExistent (which implies \Noselect).
        ext = listing(c.ok('LIST () "" "%" RETURN (CHILDREN)'))
        assert "\\NonExistent" in ext["Projects"][0] and "\\HasChildren" in ext["Projects"][0]
        r = c.cmd("SELECT Projects")
        assert r.status == "NO" and b"NONEXISTENT" in r.tagged
        # Selection options never list it: it is neither subscribed nor special-use.
        assert "Projects" not in listing(c.ok('LIST (SPECIAL-USE) "" "*"'))
        c.ok("CREATE Projects")
        got = listing(c.ok('LIST "" "%"'))["Projects"][0]
        assert "\\Noselect" not in got and "\\HasChildren" in got
        c.ok("SELECT Projects")


def test_rename_moves_children_and_inbox_rename_moves_messages(server):
    smtp_deliver(server, ALICE, make_message("one"))
    smtp_deliver(server, ALICE, make_message("two"))
    with raw_session(server) as c:
        c.ok("CREATE A/B/C")
        c.ok("RENAME A Z")
        got = listing(c.ok('LIST "" "*"'))
        assert {"Z", "Z/B", "Z/B/C"} <= set(got) and "A" not in got and "A/B" not in got
        r = c.cmd("RENAME Z Sent")
        assert r.status == "NO" and b"ALREADYEXISTS" in r.tagged
        assert c.cmd("RENAME Missing X").status == "NO"
        # RFC 9051 6.3.5: INBOX's messages move, INBOX stays (empty).
        c.ok("RENAME INBOX Old-Inbox")
        st = c.ok("STATUS INBOX (MESSAGES)").find(b"* STATUS")[0]
        assert b"MESSAGES 0" in st
        st = c.ok('STATUS "Old-Inbox" (MESSAGES)').find(b"* STATUS")[0]
        assert b"MESSAGES 2" in st


def test_subscriptions_lsub_and_list_extended_survive_restart(server):
    with raw_session(server) as c:
        c.ok("CREATE Lists/rust")
        c.ok("SUBSCRIBE Lists/rust")
        c.ok("SUBSCRIBE INBOX")
        r = c.ok('LSUB "" "*"')
        names = {l.split(b'"/" ')[1].strip(b'"') for l in r.find(b"* LSUB")}
        assert names == {b"Lists/rust", b"INBOX"}
        assert c.cmd("SUBSCRIBE Nonexistent").status == "NO"
    server.stop()
    server.start()
    with raw_session(server) as c:
        got = listing(c.ok('LIST (SUBSCRIBED) "" "*"'))
        assert set(got) == {"Lists/rust", "INBOX"}
        assert all("\\Subscribed" in a for a, _ in got.values())
        # RECURSIVEMATCH: the unsubscribed parent shows with CHILDINFO.
        got = listing(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
        assert "Lists" in got and b"CHILDINFO" in got["Lists"][1], got
        # RETURN (SUBSCRIBED CHILDREN) on a plain listing.
        got = listing(c.ok('LIST "" "*" RETURN (SUBSCRIBED CHILDREN)'))
        assert "\\Subscribed" in got["INBOX"][0]
        assert "\\Subscribed" not in got["Sent"][0]
        assert "\\HasChildren" in got["Lists"][0]
        c.ok("UNSUBSCRIBE Lists/rust")
        assert set(listing(c.ok('LIST (SUBSCRIBED) "" "*"'))) == {"INBOX"}
        # A subscribed name whose mailbox is deleted is listed \NonExistent.
        c.ok("SUBSCRIBE Lists")
        c.ok("DELETE Lists")
        got = listing(c.ok('LIST (SUBSCRIBED) "" "*"'))
        assert "\\NonExistent" in got["Lists"][0]


def test_status_and_list_status(server):
    body = make_message("status")
    smtp_deliver(server, ALICE, body)
    smtp_deliver(server, ALICE)
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS (\\Seen \\Deleted)")
        c.ok("UNSELECT")
        r = c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)")
        st = r.find(b"* STATUS")[0].decode()
        vals = dict(re.findall(r"([A-Z]+) (\d+)", st.split("(", 1)[1]))
        assert vals["MESSAGES"] == "2" and vals["UIDNEXT"] == "3"
        assert vals["UNSEEN"] == "1" and vals["DELETED"] == "1"
        assert int(vals["SIZE"]) > 2 * len(body)
        assert int(vals["HIGHESTMODSEQ"]) > 1 and int(vals["UIDVALIDITY"]) > 0
        r = c.cmd("STATUS Nope (MESSAGES)")
        assert r.status == "NO"
        # RFC 5819: LIST-STATUS.
        r = c.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
        statuses = r.find(b"* STATUS")
        assert len(statuses) == 6
        assert any(b"INBOX" in s and b"MESSAGES 2" in s for s in statuses)


def test_select_examine_and_quota(server):
    smtp_deliver(server, ALICE)
    with raw_session(server) as c:
        r = c.ok("SELECT INBOX")
        assert b"[READ-WRITE]" in r.tagged
        assert r.find(b"* 1 EXISTS") and r.find(b"* OK [UIDVALIDITY ")
        assert r.find(b"* OK [UIDNEXT 2]") and r.find(b"* OK [HIGHESTMODSEQ ")
        assert r.find(b"* FLAGS (") and r.find(b"* OK [PERMANENTFLAGS (")
        assert r.find(b"* 1 RECENT")
        r = c.ok("EXAMINE INBOX")
        assert b"[READ-ONLY]" in r.tagged and r.find(b"* OK [CLOSED]")
        r = c.cmd("STORE 1 +FLAGS (\\Seen)")
        assert r.status == "NO"
        r = c.cmd("SELECT Nope")
        assert r.status == "NO" and b"NONEXISTENT" in r.tagged
        # The failed SELECT left no mailbox selected.
        assert c.cmd("FETCH 1 FLAGS").status == "BAD"
        r = c.ok("GETQUOTAROOT INBOX")
        assert r.find(b'* QUOTAROOT "INBOX" ""') or r.find(b'* QUOTAROOT INBOX ""'), r
        assert r.find(b'* QUOTA "" ')
        c.ok('GETQUOTA ""')
        r = c.cmd('SETQUOTA "" (STORAGE 10)')
        assert r.status == "NO"


def test_quota_limit_refuses_append(make_server):
    srv = make_server(start=False)
    with open(srv.cfg, "a") as f:
        f.write("\n[imap]\nquota_bytes = 4096\n")
    srv.start()
    with raw_session(srv) as c:
        r = c.ok("GETQUOTAROOT INBOX")
        assert any(b"STORAGE 0 4" in q for q in r.find(b"* QUOTA "))
        small = make_message("small")
        c.ok("APPEND INBOX {%d}" % len(small), [small])
        big = make_message("big", body=b"x" * 5000 + b"\r\n")
        r = c.cmd("APPEND INBOX {%d}" % len(big), [big])
        assert r.status == "NO" and b"OVERQUOTA" in r.tagged, r
    _ = BOB
