"""POP3 sizes (RFC 1939 5 STAT, 7 LIST, 11): the octets of a message as RETR sends it (CRLF line
endings, before byte-stuffing; Dovecot's "virtual size"), also for messages the store holds
with bare LF line endings (IMAP APPEND of a bare-LF message)."""

import re

from pop3_helpers import deliver, imap_login, login, open_ssl

# Bare LF throughout, a line starting with a dot (byte-stuffed on the wire), an empty line,
# and a last line without a line ending.
BARE_LF = (b"From: someone@remote.test\nTo: alice@example.test\nSubject: bare lf\n\n"
           b"line one\n.dot line\n\nlast line without a line ending")
MIXED = b"Subject: mixed\r\n\r\ncrlf line\r\nbare lf line\n..two dots\nend\r\n"


def append_raw(m, message: bytes) -> None:
    """APPEND the bytes unchanged (imaplib's append() would turn bare LF into CRLF)."""
    m.literal = message
    typ, data = m._simple_command("APPEND", "INBOX")
    assert typ == "OK", data


def rfc822_sizes(m) -> list[int]:
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    typ, data = m.fetch("1:*", "(RFC822.SIZE)")
    assert typ == "OK", data
    return [int(re.search(rb"RFC822\.SIZE (\d+)", d).group(1)) for d in data]


def pop3_sizes(srv) -> tuple[list[int], list[int], tuple[int, int], list[int]]:
    """(LIST sizes, LIST n sizes, STAT, lengths of RETR as poplib returns it joined with CRLF)
    of one POP3 session."""
    p = open_ssl(srv)
    try:
        login(p)
        stat = p.stat()
        _, listing, _ = p.list()
        sizes = [int(l.split()[1]) for l in listing]
        singles = [int(p.list(n).split()[2]) for n in range(1, len(sizes) + 1)]
        retr = []
        for n in range(1, len(sizes) + 1):
            # What poplib returns (un-stuffed lines), joined with CRLF.
            resp, lines, _ = p.retr(n)
            retr.append(len(b"".join(l + b"\r\n" for l in lines)))
            # The +OK line gives the size too.
            assert resp == f"+OK {sizes[n - 1]} octets".encode(), resp
        p.quit()
    except BaseException:
        p.close()
        raise
    return sizes, singles, stat, retr


def test_list_and_stat_count_the_octets_retr_sends(server):
    deliver(server, subject="crlf")  # SMTP: CRLF already
    m = imap_login(server)
    try:
        append_raw(m, BARE_LF)
        append_raw(m, MIXED)
        stored = rfc822_sizes(m)
    finally:
        m.logout()
    # The premise: the store keeps the APPENDed bytes as sent (bare LF included).
    assert stored[1:] == [len(BARE_LF), len(MIXED)], stored

    sizes, singles, stat, retr = pop3_sizes(server)
    assert sizes == retr, "LIST must give the length of what RETR sends"
    assert singles == sizes
    assert stat == (3, sum(retr))
    # A bare LF is two octets on the wire; the last line gets its CRLF.
    assert sizes[1] == len(BARE_LF) + BARE_LF.count(b"\n") + 2
    assert sizes[2] == len(MIXED) + 2
    assert sizes[0] == stored[0], "a CRLF message's size is its stored size"

    # The next session (sizes remembered) and a message that arrived meanwhile.
    m = imap_login(server)
    try:
        append_raw(m, b"Subject: later\n\nanother bare lf message\n")
    finally:
        m.logout()
    sizes2, singles2, stat2, retr2 = pop3_sizes(server)
    assert sizes2[:3] == sizes
    assert sizes2 == retr2 == singles2
    assert stat2 == (4, sum(retr2))
