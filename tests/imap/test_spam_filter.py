"""The spam filter ([filter], daemon/filter, daemon/posternd/src/filter.rs) against the real
posternd: the X-Postern-Spam header on MX mail, training by IMAP MOVE into and out of Junk
(Python imaplib), trained spam delivered into Junk, a retrained message scoring higher,
per-user and global allow/block lists with regular expressions through `postern filter`, and
`[admin] allowed_networks` on the metrics listener (127.0.0.2 refused, 127.0.0.1 allowed)."""

from __future__ import annotations

import hashlib
import re
import smtplib
import socket
import time
import urllib.request

import pytest

from harness import ALICE, BOB, HOST, SOCK_TIMEOUT, make_message, metric_sum, parse_metrics
from imapsupport import imaplib_session

SPAM_WORDS = "viagra pills cheap pharmacy discount prescription lottery winner claim prize"
HAM_WORDS = "meeting agenda project review quarterly report colleagues schedule budget draft"

FILTER_CONFIG = """
[filter]
min_training = 2
block = ["/^promo-[0-9]+@/", "blocked.test"]
allow = ["friend@blocked.test"]

[admin]
allowed_networks = ["127.0.0.1/32"]
"""


@pytest.fixture
def srv(make_server):
    s = make_server(start=False)
    with open(s.cfg, "a") as f:
        f.write(FILTER_CONFIG)
    s.start()
    return s


def message(words: str, n: int, sender: str = "sender@remote.test") -> bytes:
    body = (f"{words} item{n}\r\n" * 3).encode()
    return make_message(subject=f"{words.split()[0]} {n}", body=body, sender=sender,
                        msgid=f"<{words.split()[0]}.{n}.{time.time_ns()}@client.test>")


def mx(srv, msg: bytes, rcpts=(ALICE,), sender: str = "sender@remote.test"):
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=SOCK_TIMEOUT) as s:
        s.sendmail(sender, list(rcpts), msg)


def headers_in(m, mailbox: str) -> list[bytes]:
    """The X-Postern-Spam fields (unfolded) of every message in `mailbox`, in UID order."""
    typ, _ = m.select(mailbox)
    assert typ == "OK"
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-Postern-Spam Subject)])")
    assert typ == "OK"
    out = []
    for item in data:
        if isinstance(item, tuple):
            out.append(re.sub(rb"\r\n[ \t]", b" ", item[1]))
    return out


def score_of(field: bytes) -> float:
    m = re.search(rb"X-Postern-Spam: score=([0-9.]+)", field)
    assert m, field
    return float(m.group(1))


def wait_trained(srv, spam: int, ham: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        metrics = parse_metrics(srv.metrics())
        got = (metric_sum(metrics, 'postern_filter_trained_total{class="spam"}'),
               metric_sum(metrics, 'postern_filter_trained_total{class="ham"}'))
        if got[0] >= spam and got[1] >= ham:
            return
        assert time.monotonic() < deadline, f"trained {got}, expected {(spam, ham)}"
        time.sleep(0.1)


def uids_matching(m, mailbox: str, word: str) -> list[bytes]:
    m.select(mailbox)
    typ, data = m.uid("SEARCH", "SUBJECT", word)
    assert typ == "OK"
    return data[0].split()


def test_training_by_move_junk_delivery_and_retraining(srv):
    # Untrained: delivered to the INBOX with the explanation header.
    mx(srv, message(SPAM_WORDS, 0))
    m = imaplib_session(srv)
    fields = headers_in(m, "INBOX")
    assert len(fields) == 1 and b"verdict=deliver reason=untrained" in fields[0], fields

    # Train: spam moved into Junk (UID MOVE), ham moved out of Junk into the INBOX.
    for n in range(1, 3):
        mx(srv, message(SPAM_WORDS, n))
    spam_uids = uids_matching(m, "INBOX", "viagra")
    assert len(spam_uids) == 3
    typ, _ = m.uid("MOVE", b",".join(spam_uids).decode(), "Junk")
    assert typ == "OK"
    for n in range(3):
        typ, _ = m.append("Junk", None, None, message(HAM_WORDS, n))
        assert typ == "OK"
    ham_uids = uids_matching(m, "Junk", "meeting")
    typ, _ = m.uid("MOVE", b",".join(ham_uids).decode(), "INBOX")
    assert typ == "OK"
    wait_trained(srv, spam=3, ham=3)

    # Trained spam lands in Junk, with the tokens that decided it; ham stays in the INBOX.
    mx(srv, message(SPAM_WORDS, 10))
    mx(srv, message(HAM_WORDS, 10))
    junk = [f for f in headers_in(m, "Junk") if b"viagra 10" in f]
    assert len(junk) == 1, headers_in(m, "Junk")
    assert b"verdict=junk reason=bayes; tokens:" in junk[0], junk[0]
    assert score_of(junk[0]) >= 0.9
    assert b'"viagra"=' in junk[0] or b'"pills"=' in junk[0] or b'"pharmacy"=' in junk[0]
    inbox = [f for f in headers_in(m, "INBOX") if b"meeting 10" in f]
    assert len(inbox) == 1 and b"verdict=deliver reason=bayes" in inbox[0], inbox
    assert score_of(inbox[0]) < 0.5

    # A message of words the filter has barely seen: delivered; moved into Junk over IMAP
    # (plain MOVE), it is learned as spam, and the same text then scores higher.
    unsure = "newsletter gardening tomatoes meeting viagra seedlings compost"
    mx(srv, message(unsure, 20))
    before = [f for f in headers_in(m, "INBOX") if b"newsletter 20" in f]
    assert len(before) == 1, headers_in(m, "INBOX")
    s1 = score_of(before[0])
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"newsletter 20"')
    seq = data[0].split()
    assert len(seq) == 1
    typ, _ = m._simple_command("MOVE", seq[0].decode(), "Junk")
    assert typ == "OK"
    wait_trained(srv, spam=4, ham=3)
    mx(srv, message(unsure, 21))
    after = [f for mb in ("INBOX", "Junk") for f in headers_in(m, mb) if b"newsletter 21" in f]
    assert len(after) == 1
    s2 = score_of(after[0])
    print(f"retraining: score {s1:.2f} before the move into Junk, {s2:.2f} after")
    assert s2 > s1, (s1, s2)
    m.logout()

    # Training survives kill -9 (each learned message is in the fsynced journal).
    srv.kill()
    srv.start()
    mx(srv, message(SPAM_WORDS, 30))
    m = imaplib_session(srv)
    assert [f for f in headers_in(m, "Junk") if b"viagra 30" in f]
    m.logout()


def test_allow_and_block_lists(srv):
    # Global regular-expression block: 550 5.7.1 at the end of DATA.
    with pytest.raises(smtplib.SMTPDataError) as e:
        mx(srv, message(HAM_WORDS, 1), sender="promo-12@shop.test")
    assert e.value.smtp_code == 550 and b"5.7.1" in e.value.smtp_error
    # Global domain block, and the global allow list beating it for one address.
    with pytest.raises(smtplib.SMTPDataError):
        mx(srv, message(HAM_WORDS, 2), sender="anyone@mail.blocked.test")
    mx(srv, message(HAM_WORDS, 3), sender="friend@blocked.test")

    # Per-user lists through the CLI (the running daemon's admin socket).
    srv.cli("filter", "block", "add", "Pest@Remote.test", "--user", ALICE)
    srv.cli("filter", "block", "add", "/^deals-.*@/", "--user", ALICE)
    srv.cli("filter", "allow", "add", "promo-7@shop.test", "--user", ALICE)
    listed = srv.cli("filter", "block", "list", "--user", ALICE).stdout.decode().split()
    assert listed == ["pest@remote.test", "/^deals-.*@/"]
    bad = srv.cli("filter", "block", "add", "/(/", "--user", ALICE, check=False)
    assert bad.returncode != 0 and b"regular expression" in bad.stderr

    with pytest.raises(smtplib.SMTPDataError):
        mx(srv, message(HAM_WORDS, 4), sender="pest@remote.test")
    with pytest.raises(smtplib.SMTPDataError):
        mx(srv, message(HAM_WORDS, 5), sender="deals-99@remote.test")
    # The user's allow list wins over the global regex block.
    mx(srv, message(HAM_WORDS, 6), sender="promo-7@shop.test")
    # Alice deleted her Junk: it is created again, with \Junk (RFC 6154), when needed.
    m = imaplib_session(srv)
    typ, _ = m.delete("Junk")
    assert typ == "OK"
    # For two recipients of whom one blocks: not refused; Junk for the one, INBOX for the other.
    mx(srv, message(HAM_WORDS, 7), rcpts=(ALICE, BOB), sender="pest@remote.test")
    typ, listed = m.list('""', "Junk")
    assert typ == "OK" and len(listed) == 1 and b"\\Junk" in listed[0], listed

    inbox = headers_in(m, "INBOX")
    assert any(b"meeting 3" in f and b"reason=allow; allow=global:friend@blocked.test" in f
               for f in inbox), inbox
    assert any(b"meeting 6" in f and b"allow=user:promo-7@shop.test" in f for f in inbox), inbox
    assert not any(b"meeting 7" in f for f in inbox)
    junk = headers_in(m, "Junk")
    assert any(b"meeting 7" in f and b"block=user:pest@remote.test" in f for f in junk), junk
    m.logout()
    b = imaplib_session(srv, BOB)
    assert any(b"meeting 7" in f for f in headers_in(b, "INBOX"))
    b.logout()

    # Removed: delivered again.
    srv.cli("filter", "block", "remove", "pest@remote.test", "--user", ALICE)
    mx(srv, message(HAM_WORDS, 8), sender="pest@remote.test")
    gone = srv.cli("filter", "block", "remove", "pest@remote.test", "--user", ALICE, check=False)
    assert gone.returncode != 0
    # Lists survive a restart (lists.json).
    srv.stop()
    srv.start()
    with pytest.raises(smtplib.SMTPDataError):
        mx(srv, message(HAM_WORDS, 9), sender="deals-1@remote.test")
    metrics = parse_metrics(srv.metrics())
    assert metric_sum(metrics, "postern_filter_failures_total") == 0


def test_metrics_listener_refuses_sources_outside_allowed_networks(srv):
    # Allowed: 127.0.0.1/32.
    with urllib.request.urlopen(f"http://{HOST}:{srv.ports.metrics}/metrics", timeout=5) as r:
        assert r.status == 200
    # 127.0.0.2 (also loopback, not allowed): closed without an answer.
    for _ in range(3):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.bind(("127.0.0.2", 0))
            s.connect((HOST, srv.ports.metrics))
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                got = s.recv(1024)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
            assert got == b""
    metrics = parse_metrics(srv.metrics())
    assert metric_sum(metrics, "postern_admin_refused_total") == 3
    # Logged once (rate-limited), not once per connection.
    log = srv.log()
    assert log.count("admin.access.refused") == 1, log
    assert "127.0.0.2" in log


def user_db_stem(user: str) -> str:
    """The file stem of a user's token database (daemon/posternd/src/filter.rs user_key)."""
    def digest(b: bytes) -> int:
        return int.from_bytes(hashlib.sha256(b).digest()[:8], "little")
    return f"u-{digest(user.lower().encode()):016x}{digest((user + chr(0)).lower().encode()):016x}"


def test_a_filter_failure_delivers_to_the_inbox_and_raises_the_alert(make_server):
    srv = make_server(start=False)
    # Alice's token database cannot be opened: its journal is a directory.
    (srv.data_dir / "filter" / f"{user_db_stem(ALICE)}.0.journal").mkdir(parents=True)
    srv.start()
    mx(srv, message(SPAM_WORDS, 1), rcpts=(ALICE, BOB))
    m = imaplib_session(srv)
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER])")
    headers = [item[1] for item in data if isinstance(item, tuple)]
    assert len(headers) == 1 and b"Subject: viagra 1" in headers[0]
    assert b"X-Postern-Spam" not in headers[0]
    m.logout()
    # Bob's copy went the same way: the whole message is delivered unfiltered.
    b = imaplib_session(srv, BOB)
    assert len(headers_in(b, "INBOX")) == 1
    b.logout()
    metrics = parse_metrics(srv.metrics())
    assert metric_sum(metrics, "postern_filter_failures_total") == 1
    assert 'event="filter.failed"' in srv.log() or "event=filter.failed" in srv.log()
