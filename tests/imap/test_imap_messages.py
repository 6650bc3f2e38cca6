"""Message commands: APPEND (flags, date, APPENDUID, durable across restart), FETCH (items,
BODY.PEEK, sections, partial, BINARY, \\Seen side effect), STORE (+/-FLAGS, .SILENT,
UNCHANGEDSINCE), COPY/MOVE with COPYUID, EXPUNGE, UID EXPUNGE, CLOSE vs UNSELECT, SEARCH with
ESEARCH and SEARCHRES, SORT; SMTP delivery read back byte for byte."""

from __future__ import annotations

import re

from harness import ALICE, BOB, make_message, metric_sum, parse_metrics, split_trace
from imapsupport import fetch_literal, imaplib_session, raw_session, smtp_deliver

MIME = (
    b"From: Ann <ann@remote.test>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: parts\r\n"
    b"Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n"
    b"Message-Id: <parts@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"first part\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgc=\r\n"
    b"--XX--\r\n"
)


def append(c, msg: bytes, mailbox: str = "INBOX", extra: str = "") -> int:
    r = c.ok(f"APPEND {mailbox} {extra}{{{len(msg)}}}".replace("  ", " "), [msg])
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", r.tagged)
    assert m, r
    return int(m.group(2))


def test_smtp_delivery_reads_back_byte_for_byte(server):
    sent = smtp_deliver(server, ALICE, make_message("bytes", body=b"line\r\n.dot\r\n" * 50))
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        r = c.ok("FETCH 1 (RFC822.SIZE BODY.PEEK[])")
        resp = r.find(b"* 1 FETCH")[0]
        body = fetch_literal(resp)
        _, _, client_bytes = split_trace(body)
        assert client_bytes == sent
        size = int(re.search(rb"RFC822.SIZE (\d+)", resp).group(1))
        assert size == len(body)
        # PEEK did not set \Seen.
        assert b"\\Seen" not in c.ok("FETCH 1 FLAGS").find(b"* 1 FETCH")[0]
    # The export tool sees the same bytes.
    assert server.export(ALICE, restart=False) == [body]


def test_append_flags_date_appenduid_and_durability(server):
    msg = make_message("appended")
    with raw_session(server) as c:
        r = c.ok("SELECT INBOX")
        validity = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(r.untagged)).group(1))
        r = c.ok('APPEND INBOX (\\Seen $Work) "05-Mar-2024 12:34:56 +0100" {%d}' % len(msg), [msg])
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", r.tagged)
        assert m and int(m.group(1)) == validity and m.group(2) == b"1"
        # The selected session learns of it.
        assert r.find(b"* 1 EXISTS")
        resp = c.ok("FETCH 1 (FLAGS INTERNALDATE)").find(b"* 1 FETCH")[0]
        assert b"\\Seen" in resp and b"$Work" in resp
        assert b'INTERNALDATE "05-Mar-2024 11:34:56 +0000"' in resp or \
            b'INTERNALDATE "05-Mar-2024 12:34:56 +0100"' in resp, resp
        # LITERAL+ (non-synchronising).
        r = c.ok("APPEND Drafts {%d+}" % len(msg), [msg])
        assert b"APPENDUID" in r.tagged
        r = c.cmd("APPEND Nowhere {%d}" % len(msg), [msg])
        assert r.status == "NO" and b"TRYCREATE" in r.tagged
    # kill -9 right after the OK: the message must be there after restart.
    server.kill()
    server.start()
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        body = fetch_literal(c.ok("FETCH 1 BODY.PEEK[]").find(b"* 1 FETCH")[0])
        assert body == msg


def test_fetch_items_sections_and_binary(server):
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        uid = append(c, MIME)
        r = c.ok(f"UID FETCH {uid} (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
        resp = r.find(b"* 1 FETCH")[0]
        assert f"UID {uid}".encode() in resp
        assert b'ENVELOPE ("Tue, 02 Jan 2024 10:00:00 +0000" "parts"' in resp, resp
        assert b"BODYSTRUCTURE ((" in resp and b'"mixed"' in resp.lower()
        assert f"RFC822.SIZE {len(MIME)}".encode() in resp
        r = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")
        assert fetch_literal(r.untagged[0]) == b"Subject: parts\r\n\r\n"
        r = c.ok("FETCH 1 (BODY.PEEK[1])")
        assert fetch_literal(r.untagged[0]) == b"first part"
        r = c.ok("FETCH 1 (BODY.PEEK[]<0.4>)")
        assert b"BODY[]<0> {4}\r\nFrom" in r.untagged[0]
        r = c.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
        resp = r.untagged[0]
        assert b"BINARY.SIZE[2] 8" in resp
        assert b"\x00\x01\x02\x03\x04\x05\x06\x07" in resp
        r = c.ok("FETCH 1 (BODY.PEEK[TEXT])")
        assert fetch_literal(r.untagged[0]).startswith(b"--XX\r\n")
        # BODY[] without PEEK sets \Seen and reports FLAGS.
        r = c.ok("FETCH 1 BODY[1]")
        assert b"\\Seen" in r.untagged[0]
        r = c.cmd("FETCH 5 FLAGS")
        assert r.status == "BAD"
        # Nothing for an empty UID range.
        assert not c.ok("UID FETCH 1000:2000 FLAGS").untagged


def test_store_flags_silent_and_unchangedsince(server):
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        for i in range(3):
            append(c, make_message(f"s{i}"))
        r = c.ok("STORE 1:3 +FLAGS (\\Flagged $Todo)")
        assert len(r.find(b"* ")) >= 3
        assert all(b"\\Flagged" in u for u in r.find(b"* 1 FETCH") + r.find(b"* 3 FETCH"))
        r = c.ok("STORE 2 -FLAGS.SILENT (\\Flagged)")
        assert not r.find(b"* 2 FETCH")
        r = c.ok("FETCH 2 (FLAGS MODSEQ)")
        resp = r.untagged[0]
        assert b"\\Flagged" not in resp and b"$Todo" in resp
        modseq = int(re.search(rb"MODSEQ \((\d+)\)", resp).group(1))
        # UNCHANGEDSINCE below message 2's MODSEQ: 2 is MODIFIED, 1 and 3 change.
        r = c.ok(f"STORE 1:3 (UNCHANGEDSINCE {modseq - 1}) FLAGS (\\Answered)")
        assert b"[MODIFIED 2]" in r.tagged, r
        flags = c.ok("FETCH 1:3 FLAGS").untagged
        assert b"\\Answered" in flags[0] and b"\\Answered" not in flags[1]
        r = c.ok(f"UID STORE 2 (UNCHANGEDSINCE {modseq + 100}) +FLAGS (\\Seen)")
        assert b"UID 2" in r.untagged[0] and b"MODSEQ" in r.untagged[0]
        # One MODSEQ per message, all above the earlier ones.
        r = c.ok("FETCH 1:3 (MODSEQ)")
        seqs = [int(re.search(rb"MODSEQ \((\d+)\)", u).group(1)) for u in r.untagged]
        assert len(set(seqs)) == 3


def test_copy_move_expunge_close_unselect(server):
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        msgs = [make_message(f"m{i}") for i in range(5)]
        for m in msgs:
            append(c, m)
        r = c.ok("COPY 1:2 Archive")
        m = re.search(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", r.tagged)
        assert m and m.group(2) == b"1:2" and m.group(3) == b"1:2", r
        r = c.ok("UID MOVE 3 Trash")
        assert any(b"[COPYUID" in u for u in r.untagged)
        assert r.find(b"* 3 EXPUNGE")
        r = c.cmd("COPY 1 Missing")
        assert r.status == "NO" and b"TRYCREATE" in r.tagged
        # INBOX now holds 1, 2, 4, 5 (seq 1..4). Mark 1 and 3 deleted; UID EXPUNGE only 1.
        c.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("UID EXPUNGE 1")
        assert r.find(b"* 1 EXPUNGE") and len(r.find(b"* ")) == 1
        r = c.ok("EXPUNGE")
        assert r.find(b"* 2 EXPUNGE")
        r = c.ok("UID SEARCH ALL")
        assert r.untagged[0].split()[2:] == [b"2", b"5"]
        # UNSELECT does not expunge; CLOSE does, silently.
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("UNSELECT")
        c.ok("SELECT INBOX")
        r = c.ok("CLOSE")
        assert not r.find(b"* 1 EXPUNGE")
        assert b"MESSAGES 1" in c.ok("STATUS INBOX (MESSAGES)").untagged[0]
        # Copied bodies are identical.
        c.ok("SELECT Archive")
        assert fetch_literal(c.ok("FETCH 1 BODY.PEEK[]").untagged[0]) == msgs[0]
        c.ok("SELECT Trash")
        assert fetch_literal(c.ok("FETCH 1 BODY.PEEK[]").untagged[0]) == msgs[2]


def _mail(frm: str, subject: str, date: str) -> bytes:
    return (f"From: {frm}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n\r\nbody\r\n").encode()


def test_header_search_and_sort_same_answers_cold_cached_and_after_changes(server):
    """Header keys and SORT are answered from posternd's header cache after the first
    search: every answer must equal the first (cold) one, and follow new, copied and
    expunged messages."""
    msgs = [
        _mail("Zed <zed@z.test>", "Re: Budget", "Tue, 02 Jan 2024 10:00:00 +0000"),
        _mail("amy@a.test", "=?UTF-8?Q?R=C3=A9sum=C3=A9?= budget", "Mon, 01 Jan 2024 10:00:00 +0000"),
        _mail("Bob <bob@b.test>", "lunch", "Wed, 03 Jan 2024 09:00:00 +0100"),
    ]
    with raw_session(server) as c:
        c.ok("CREATE Other")
        c.ok("SELECT INBOX")
        for m in msgs:
            append(c, m)
        queries = {
            "SEARCH SUBJECT budget": b"* SEARCH 1 2",
            "SEARCH FROM bob": b"* SEARCH 3",
            "SEARCH OR FROM zed SENTBEFORE 2-Jan-2024": b"* SEARCH 1 2",
            "SEARCH NOT TO alice": b"* SEARCH",
            "SORT (DATE) UTF-8 ALL": b"* SORT 2 1 3",
            "SORT (FROM) UTF-8 ALL": b"* SORT 2 3 1",
            "SORT (SUBJECT) UTF-8 ALL": b"* SORT 1 3 2",
            "SORT (REVERSE DISPLAYFROM) UTF-8 SUBJECT budget": b"* SORT 1 2",
        }
        first = {q: c.ok(q).untagged[0] for q in queries}
        for q, want in queries.items():
            assert first[q] == want, (q, first[q])
        fills = metric_sum(parse_metrics(server.metrics()), "postern_imap_search_cache_fills_total")
        assert fills == 3, fills
        assert metric_sum(parse_metrics(server.metrics()), "postern_imap_search_cache_bytes") > 0
        # Cached now: the same answers, and no message read again. RFC 2047-encoded
        # subjects are matched decoded.
        for q in queries:
            assert c.ok(q).untagged[0] == first[q], q
        assert metric_sum(parse_metrics(server.metrics()), "postern_imap_search_cache_fills_total") == 3
        resume = "résumé".encode()
        r = c.ok("SEARCH CHARSET UTF-8 SUBJECT {%d}" % len(resume), [resume])
        assert r.untagged[0] == b"* SEARCH 2", r
        # A new message is read into the cache by the next search.
        append(c, _mail("Ann <ann@a.test>", "budget 2025", "Sun, 31 Dec 2023 23:00:00 +0000"))
        c.ok("NOOP")
        assert c.ok("SEARCH SUBJECT budget").untagged[0] == b"* SEARCH 1 2 4"
        assert c.ok("SORT (DATE) UTF-8 ALL").untagged[0] == b"* SORT 4 2 1 3"
        assert metric_sum(parse_metrics(server.metrics()), "postern_imap_search_cache_fills_total") == 4
        # Copies share their original's cached fields.
        c.ok("COPY 1:4 Other")
        c.ok("STORE 2 +FLAGS (\\Deleted)")
        c.ok("EXPUNGE")
        assert c.ok("SEARCH SUBJECT budget").untagged[0] == b"* SEARCH 1 3"
        assert c.ok("SORT (FROM) UTF-8 ALL").untagged[0] == b"* SORT 3 2 1"
        c.ok("SELECT Other")
        assert c.ok("SEARCH SUBJECT budget").untagged[0] == b"* SEARCH 1 2 4"
        assert c.ok("SORT (FROM) UTF-8 ALL").untagged[0] == b"* SORT 2 4 3 1"


def test_search_esearch_searchres_and_sort(server):
    with raw_session(server) as c:
        c.ok("SELECT INBOX")
        append(c, make_message("banana", body=b"yellow fruit\r\n"))
        append(c, make_message("apple", body=b"red fruit\r\n"), extra="(\\Seen) ")
        append(c, make_message("cherry", body=b"tiny red\r\n"))
        r = c.ok("SEARCH SUBJECT apple")
        assert r.untagged[0] == b"* SEARCH 2"
        r = c.ok("SEARCH UNSEEN BODY red")
        assert r.untagged[0] == b"* SEARCH 3"
        r = c.ok("UID SEARCH RETURN (MIN MAX COUNT) ALL")
        assert r.untagged[0].startswith(b"* ESEARCH (TAG ")
        assert b"UID MIN 1 MAX 3 COUNT 3" in r.untagged[0]
        r = c.ok("SEARCH RETURN () OR SUBJECT apple SUBJECT cherry")
        assert b"ALL 2:3" in r.untagged[0]
        # SEARCHRES: save, then use $.
        r = c.ok("SEARCH RETURN (SAVE) TEXT fruit")
        assert not r.untagged
        r = c.ok("FETCH $ (UID)")
        assert len(r.untagged) == 2
        r = c.ok("SORT (SUBJECT) UTF-8 ALL")
        assert r.untagged[0] == b"* SORT 2 1 3"
        r = c.ok("UID SORT (REVERSE SUBJECT) UTF-8 ALL")
        assert r.untagged[0] == b"* SORT 3 1 2"
        r = c.ok("SEARCH MODSEQ 1")
        assert b"(MODSEQ" in r.untagged[0]
        r = c.cmd("SEARCH FROBNICATE")
        assert r.status == "BAD"


def test_imaplib_end_to_end(server):
    smtp_deliver(server, BOB, make_message("for bob"))
    m = imaplib_session(server, BOB)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: for bob" in data[0][1]
        typ, data = m.search(None, "ALL")
        assert data == [b"1"]
        typ, _ = m.store("1", "+FLAGS", "\\Flagged")
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1", "(FLAGS)")
        assert b"\\Flagged" in data[0]
        typ, _ = m.copy("1", "Archive")
        assert typ == "OK"
        m.close()
    finally:
        m.logout()
