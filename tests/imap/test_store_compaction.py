"""Store upkeep seen from outside: mail delivered over SMTP, expunged and copied over IMAP,
then `postern store stats` and `postern store compact` through the running daemon and on the
stopped store. Compaction gives the space back and every remaining message (and every copy
of an expunged one) reads back byte for byte over IMAP, also after a kill -9 and a restart,
which start from the index checkpoint."""

import imaplib
import random
import re
import smtplib

from harness import ALICE, HOST, REMOTE_SENDER, SOCK_TIMEOUT, make_message, run_cli
from imapsupport import imaplib_session

MESSAGES = 30
BODY_BYTES = 150_000


def lines(rng) -> bytes:
    """About BODY_BYTES of random 76-character lines (SMTP lines stay under 1000)."""
    return b"".join(bytes(rng.choice(b"abcdefghij") for _ in range(76)) + b"\r\n"
                    for _ in range(BODY_BYTES // 78))


def small_segments(srv):
    """1 MiB segments (many sealed ones to compact), no background passes (the test compacts
    when it asks), and every sealed segment with a tenth dead is worth a pass: which
    segments the SMTP sessions' shards filled, and so how dead each one is, varies from run
    to run (at the default 50% some runs left half the dead segments alone)."""
    text = srv.cfg.read_text()
    assert "segment_size = 8388608" in text
    srv.cfg.write_text(text.replace(
        "segment_size = 8388608", "segment_size = 1048576\ncompact_interval_secs = 0\ncompact_dead_percent = 10"))


def stats(srv) -> dict[str, int]:
    """The `all` line of `postern store stats`: used, live and dead MiB and the dead share."""
    out = run_cli(srv.cfg, "store", "stats").stdout.decode()
    m = re.search(r"^\s*all\s+(\d+)\s+([\d.]+) MiB\s+([\d.]+) MiB\s+([\d.]+) MiB\s+(\d+)%$",
                  out, re.M)
    assert m, out
    return {"segments": int(m[1]), "used": float(m[2]), "live": float(m[3]),
            "dead": float(m[4]), "dead_pct": int(m[5])}


def segment_bytes(srv) -> int:
    return sum(p.stat().st_size for p in (srv.data_dir / "store").glob("shard-*/seg-*.log"))


def texts(srv, mailbox: str) -> list[bytes]:
    """BODY[TEXT] of every message of a mailbox, in UID order."""
    m = imaplib_session(srv)
    try:
        typ, _ = m.select(mailbox, readonly=True)
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[TEXT])")
        assert typ == "OK", data
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        m.logout()


def test_compaction_gives_space_back_and_mail_stays_readable(make_server):
    srv = make_server(start=False)
    small_segments(srv)
    srv.start()
    rng = random.Random(7)
    bodies = []
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=SOCK_TIMEOUT) as s:
        for i in range(MESSAGES):
            body = f"message {i}\r\n".encode() + lines(rng)
            s.sendmail(REMOTE_SENDER, [ALICE], make_message(f"m{i}", body))
            bodies.append(body)

    # Copy two messages to Saved, then expunge all but every sixth from INBOX (the two
    # copied among them: the copies keep their stored bytes alive).
    m = imaplib_session(srv)
    assert m.create("Saved")[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert m.uid("COPY", "2,3", "Saved")[0] == "OK"
    doomed = ",".join(str(u) for u in range(1, MESSAGES + 1) if u % 6 != 0)
    assert m.uid("STORE", doomed, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    m.logout()
    kept = [bodies[u - 1] for u in range(1, MESSAGES + 1) if u % 6 == 0]
    archived = [bodies[1], bodies[2]]
    # Sealing the last written segments: compaction never touches one being appended to.
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=SOCK_TIMEOUT) as s:
        for i in range(8):
            body = f"filler {i}\r\n".encode() + lines(rng)
            s.sendmail(REMOTE_SENDER, [ALICE], make_message(f"f{i}", body))
            kept.append(body)

    before = stats(srv)
    assert before["dead_pct"] >= 50, before
    bytes_before = segment_bytes(srv)

    out = run_cli(srv.cfg, "store", "compact", timeout=300).stdout.decode()
    m = re.search(r"compacted: (\d+) segments rewritten, (\d+) removed, ([\d.]+) MiB given back",
                  out)
    assert m, out
    assert int(m[1]) + int(m[2]) > 0, out
    assert float(m[3]) > 2, out
    after = stats(srv)
    assert after["dead"] < before["dead"] / 2, (before, after)
    assert after["live"] == before["live"], (before, after)
    assert segment_bytes(srv) < bytes_before * 0.6, (bytes_before, segment_bytes(srv))
    assert "store.compaction.done" in srv.log()

    assert texts(srv, "INBOX") == kept
    assert texts(srv, "Saved") == archived

    # kill -9, then start from the checkpoint written after the pass.
    srv.kill()
    srv.start()
    assert texts(srv, "INBOX") == kept
    assert texts(srv, "Saved") == archived
    opened = [line for line in srv.log().splitlines() if "store.opened" in line]
    assert "from_checkpoint=true" in opened[-1], opened[-1]

    # Stopped: the CLI works on the store itself.
    assert srv.stop() == 0
    offline = stats(srv)
    assert abs(offline["live"] - after["live"]) < 0.2, (offline, after)
    out = run_cli(srv.cfg, "store", "compact", timeout=300).stdout.decode()
    assert out.startswith("compacted: "), out
    srv.start()
    assert texts(srv, "INBOX") == kept
    opened = [line for line in srv.log().splitlines() if "store.opened" in line]
    assert "from_checkpoint=true" in opened[-1] and "records_replayed=0" in opened[-1], opened[-1]
