"""`postern mailbox import|export` (Maildir, Maildir++, mboxrd) against the real binaries: offline
on a stopped data dir (the CLI opens the store) and through a running posternd (admin socket).

Round trips are compared byte for byte with flags and dates; a 20,000-message mbox import is
measured for peak RSS (ru_maxrss of the CLI process, from wait4)."""

from __future__ import annotations

import imaplib
import os
import random
import re
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import (ALICE, BOB, HOST, REMOTE_SENDER, client_tls_context, make_message,
                     split_trace)

LETTERS = "DFPRST"
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
WEEKDAYS = "Mon Tue Wed Thu Fri Sat Sun".split()


def asctime(t: int) -> str:
    tm = time.gmtime(t)
    return (f"{WEEKDAYS[tm.tm_wday]} {MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year}")


def cli(srv, *args, check=True, timeout=600):
    return harness.run_cli(srv.cfg, "mailbox", *args, check=check, timeout=timeout)


def rand_message(rng: random.Random, i: int, size: int = 2000) -> bytes:
    """A CRLF message with the lines mbox must protect: From_ lines at any quoting depth,
    lines that look like separators, a trailing empty line sometimes, 8-bit bytes."""
    lines = [f"From: Sender {i} <s{i}@remote.test>", f"To: {ALICE}", f"Subject: message {i}",
             f"Message-Id: <{i}.{rng.random()}@remote.test>", ""]
    body = []
    while sum(len(x) + 2 for x in body) < size:
        r = rng.random()
        if r < 0.05:
            body.append(">" * rng.randrange(0, 4) + "From somebody at the start of a line")
        elif r < 0.08:
            body.append("")
        elif r < 0.1:
            body.append("caf\xe9 \xff")
        else:
            body.append("".join(rng.choice("abcdefghij klmnop.") for _ in range(rng.randrange(1, 78))))
    if rng.random() < 0.2:
        body.append("")
    return ("\r\n".join(lines + body) + "\r\n").encode("latin-1")


def rand_flags(rng: random.Random) -> str:
    return "".join(c for c in LETTERS if rng.random() < 0.4)


def make_maildir(root: Path, folders: dict[str, list[tuple[bytes, str, int]]]) -> None:
    """folders: '' (root) or Maildir++ folder name ('.Sent') -> [(bytes, flag letters, mtime)]."""
    for folder, messages in folders.items():
        d = root / folder if folder else root
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder:
            (d / "maildirfolder").write_bytes(b"")
        for n, (body, flags, mtime) in enumerate(messages):
            # Unseen mail without flags in new/ (no info), the rest in cur/.
            name = f"{mtime}.M{n}P1.src" + (f":2,{flags}" if flags or n % 2 else "")
            sub = "cur" if (flags or n % 2) else "new"
            p = d / sub / name
            p.write_bytes(body)
            os.utime(p, (mtime, mtime))


def read_maildir(root: Path) -> dict[str, list[tuple[bytes, str, int]]]:
    """Folder -> [(bytes, flag letters, mtime)] in mtime order (then name)."""
    out = {}
    for d in [root] + sorted(p for p in root.iterdir() if p.name.startswith(".") and p.is_dir()):
        folder = "" if d == root else d.name
        items = []
        for sub in ("cur", "new"):
            if not (d / sub).is_dir():
                continue
            for f in (d / sub).iterdir():
                m = re.search(r":2,([A-Z]*)$", f.name)
                items.append((int(f.stat().st_mtime), f.name, f.read_bytes(), m.group(1) if m else ""))
        items.sort(key=lambda x: (x[0], x[1]))
        out[folder] = [(b, fl, mt) for mt, _, b, fl in items]
    return out


def summary_counts(stdout: bytes) -> tuple[int, int]:
    m = re.search(rb"imported (\d+) messages .*; (\d+) duplicates skipped", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def stopped(make_server):
    """A provisioned data dir whose daemon ran once (INBOX exists) and is stopped."""
    srv = make_server()
    srv.stop()
    return srv


def sample_maildir(rng) -> dict[str, list[tuple[bytes, str, int]]]:
    base = 1_600_000_000
    return {
        "": [(rand_message(rng, i), rand_flags(rng), base + i * 60) for i in range(12)],
        ".Sent": [(rand_message(rng, 100 + i), "S", base + 5000 + i) for i in range(4)],
        ".Lists.rust": [(rand_message(rng, 200 + i, 500), rand_flags(rng), base + 9000 + i)
                        for i in range(5)],
        ".Lists.rust.announce": [(rand_message(rng, 300), "FS", base + 9500)],
    }


@pytest.mark.parametrize("running", [False, True], ids=["offline", "daemon"])
def test_maildir_round_trip(make_server, tmp_path, running):
    srv = make_server()
    if not running:
        srv.stop()
    rng = random.Random(7)
    src = tmp_path / "src"
    folders = sample_maildir(rng)
    make_maildir(src, folders)
    p = cli(srv, "import", "--user", ALICE, "--maildir", str(src))
    assert summary_counts(p.stdout) == (22, 0), p.stdout
    out = tmp_path / "out"
    cli(srv, "export", "--user", ALICE, "--all", "--maildir", str(out))
    got = read_maildir(out)
    assert set(got) == set(folders), sorted(got)
    for folder, messages in folders.items():
        assert got[folder] == messages, f"folder {folder!r} differs after the round trip"
    assert (out / ".Lists.rust" / "maildirfolder").is_file()

    # A rerun adds nothing (idempotent) and leaves the store as it was.
    p = cli(srv, "import", "--user", ALICE, "--maildir", str(src))
    assert summary_counts(p.stdout) == (0, 22), p.stdout
    out2 = tmp_path / "out2"
    cli(srv, "export", "--user", ALICE, "--all", "--maildir", str(out2))
    assert read_maildir(out2) == got

    # A single mailbox exports at the root, as the harness expects (cur/<uid>:2,<flags>).
    srv.stop()
    exported = srv.export(ALICE, mailbox="Lists/rust/announce")
    assert exported == [folders[".Lists.rust.announce"][0][0]]


def test_maildir_lf_files_and_subfolders_under_mailbox(stopped, tmp_path):
    src = tmp_path / "lf"
    make_maildir(src, {"": [(b"Subject: lf\n\nline one\nline two\n", "S", 1_500_000_000)],
                       ".Old": [(b"Subject: old\r\n\r\nx\r\n", "", 1_500_000_001)]})
    cli(stopped, "import", "--user", BOB, "--mailbox", "Imported", "--maildir", str(src))
    assert stopped.export(BOB, mailbox="Imported") == [b"Subject: lf\r\n\r\nline one\r\nline two\r\n"]
    assert stopped.export(BOB, mailbox="Imported/Old") == [b"Subject: old\r\n\r\nx\r\n"]


def write_mbox(path: Path, messages: list[tuple[bytes, str, int]]) -> bytes:
    """Writes messages (CRLF bytes, flag letters, date) the way mboxrd export does: LF line ends,
    '>'-quoted From_ lines, Status/X-Status at the end of the header, an empty separator line."""
    out = bytearray()
    for body, flags, date in messages:
        m = re.match(rb"Return-Path: <([^>]*)>", body)
        sender = m.group(1).decode() if m and m.group(1) else "MAILER-DAEMON"
        out += f"From {sender} {asctime(date)}\n".encode()
        text = body.replace(b"\r\n", b"\n")
        head, sep, rest = text.partition(b"\n\n")
        fields = b""
        if "S" in flags:
            fields += b"Status: RO\n"
        xs = "".join(x for f, x in (("R", "A"), ("F", "F"), ("D", "T"), ("T", "D")) if f in flags)
        if xs:
            fields += f"X-Status: {xs}\n".encode()
        if "P" in flags:
            fields += b"X-Keywords: $Forwarded\n"
        text = head + b"\n" + fields + b"\n" + rest if sep else head + fields
        lines = text.split(b"\n")
        quoted = [b">" + l if re.match(rb">*From ", l) else l for l in lines]
        out += b"\n".join(quoted)
        out += b"\n"
    path.write_bytes(bytes(out))
    return bytes(out)


@pytest.mark.parametrize("running", [False, True], ids=["offline", "daemon"])
def test_mbox_round_trip(make_server, tmp_path, running):
    srv = make_server()
    if not running:
        srv.stop()
    rng = random.Random(11)
    messages = []
    for i in range(40):
        body = rand_message(rng, i)
        if i % 3 == 0:
            body = f"Return-Path: <r{i}@remote.test>\r\n".encode() + body
        messages.append((body, rand_flags(rng), 1_400_000_000 + i * 3600))
    src = tmp_path / "in.mbox"
    original = write_mbox(src, messages)
    assert original.count(b"\n>From ") and original.count(b"\n>>>From "), "quoting exercised"
    p = cli(srv, "import", "--user", ALICE, "--mailbox", "Archive/2014", "--mbox", str(src))
    assert summary_counts(p.stdout) == (40, 0)
    out = tmp_path / "out.mbox"
    cli(srv, "export", "--user", ALICE, "--mailbox", "Archive/2014", "--mbox", str(out))
    assert out.read_bytes() == original, "mbox -> store -> mbox is not byte for byte"
    # The store holds CRLF messages exactly as they were before mbox encoding.
    srv.stop()
    stored = srv.export(ALICE, mailbox="Archive/2014")
    assert stored == [b for b, _, _ in messages]


def test_mbox_all_mailboxes_directory(stopped, tmp_path):
    src = tmp_path / "md"
    make_maildir(src, sample_maildir(random.Random(3)))
    cli(stopped, "import", "--user", ALICE, "--maildir", str(src))
    tree = tmp_path / "mboxes"
    cli(stopped, "export", "--user", ALICE, "--all", "--mbox", str(tree))
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.mbox"))
    assert files == ["INBOX.mbox", "Lists/rust.mbox", "Lists/rust/announce.mbox", "Sent.mbox"]
    # Importing the tree into another account reproduces every mailbox.
    p = cli(stopped, "import", "--user", BOB, "--mailbox", "Copy", "--mbox", str(tree))
    assert summary_counts(p.stdout) == (22, 0)
    for name in ("INBOX", "Sent", "Lists/rust", "Lists/rust/announce"):
        assert stopped.export(BOB, mailbox=f"Copy/{name}") == stopped.export(ALICE, mailbox=name)


def test_import_into_running_daemon_beside_smtp(server, tmp_path):
    """Import through the admin socket while SMTP deliveries go on; afterwards the INBOX holds
    every delivered and every imported message exactly once, in UID order per source."""
    rng = random.Random(5)
    before = [make_message(subject=f"smtp before {i}") for i in range(3)]
    for m in before:
        with smtplib.SMTP(HOST, server.ports.mx, timeout=30) as s:
            assert s.sendmail(REMOTE_SENDER, [ALICE], m) == {}
    imported = [(rand_message(rng, i, 4000), "S" if i % 2 else "", 1_300_000_000 + i)
                for i in range(300)]
    src = tmp_path / "big.mbox"
    write_mbox(src, imported)
    during = []
    stop = threading.Event()

    def deliver():
        n = 0
        while not stop.is_set():
            m = make_message(subject=f"smtp during {n}")
            with smtplib.SMTP(HOST, server.ports.mx, timeout=30) as s:
                assert s.sendmail(REMOTE_SENDER, [ALICE], m) == {}
            during.append(m)
            n += 1

    t = threading.Thread(target=deliver, daemon=True)
    t.start()
    try:
        p = cli(server, "import", "--user", ALICE, "--mbox", str(src))
    finally:
        stop.set()
        t.join(60)
    assert summary_counts(p.stdout) == (300, 0)
    # Read back while the daemon runs (admin socket), then offline: both agree.
    live = tmp_path / "live"
    cli(server, "export", "--user", ALICE, "--maildir", str(live))
    live_files = sorted(((int(f.name.split(":")[0]), f.name, f.read_bytes())
                         for f in (live / "cur").iterdir()))
    # Over IMAP, the same messages with the same UIDs and flags.
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(), timeout=30)
    m.login(ALICE, harness.PASSWORDS[ALICE])
    assert m.select("INBOX", readonly=True)[0] == "OK"
    typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    over_imap = []
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            seen = b"\\Seen" in re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1)
            over_imap.append((uid, seen, item[1]))
    m.logout()
    assert [(u, b) for u, _, b in over_imap] == [(u, b) for u, _, b in live_files]
    assert [s for _, s, _ in over_imap] == [n.endswith(":2,S") for _, n, _ in live_files]
    offline = server.export_all_uids(users=(ALICE,))[ALICE]
    assert [(u, b) for u, _, b in live_files] == offline
    smtp_got = [split_trace(b)[2] for _, b in offline if b.startswith(b"Return-Path:")]
    import_got = [(b, n) for _, n, b in live_files if not b.startswith(b"Return-Path:")]
    assert smtp_got == before + during
    assert [b for b, _ in import_got] == [b for b, _, _ in imported]
    assert [n.endswith(":2,S") for _, n in import_got] == [f == "S" for _, f, _ in imported]


def test_bad_inputs(stopped, tmp_path):
    no_from = tmp_path / "nofrom.mbox"
    no_from.write_bytes(b"Subject: x\n\nbody\n")
    p = cli(stopped, "import", "--user", ALICE, "--mbox", str(no_from), check=False)
    assert p.returncode != 0
    assert f"{no_from}:1: not an mbox file".encode() in p.stderr, p.stderr

    torn = tmp_path / "torn.mbox"
    torn.write_bytes(b"From a Thu Jan  1 00:00:00 1970\nSubject: a\n\nA\n\n"
                     b"From b Thu Jan  1 00:00:00 1970\nSubject: b\n\nhalf a li")
    p = cli(stopped, "import", "--user", ALICE, "--mailbox", "Torn", "--mbox", str(torn), check=False)
    assert p.returncode != 0
    assert f"{torn}:9: the file ends inside a line".encode() in p.stderr, p.stderr
    assert b"imported 1 messages" in p.stderr, p.stderr
    # What came before the torn message is stored; rerunning does not duplicate it.
    assert stopped.export(ALICE, mailbox="Torn") == [b"Subject: a\r\n\r\nA\r\n"]
    torn.write_bytes(torn.read_bytes() + b"ne\n")
    p = cli(stopped, "import", "--user", ALICE, "--mailbox", "Torn", "--mbox", str(torn))
    assert summary_counts(p.stdout) == (1, 1)
    assert stopped.export(ALICE, mailbox="Torn") == [b"Subject: a\r\n\r\nA\r\n",
                                                      b"Subject: b\r\n\r\nhalf a line\r\n"]

    p = cli(stopped, "import", "--user", ALICE, "--maildir", str(tmp_path), check=False)
    assert p.returncode != 0 and b"not a Maildir" in p.stderr

    md = tmp_path / "md"
    make_maildir(md, {"": [(b"Subject: a\r\n\r\n", "", 1)]})
    (md / os.fsdecode(b".Caf\xe9") / "cur").mkdir(parents=True)
    p = cli(stopped, "import", "--user", ALICE, "--mailbox", "Bad", "--maildir", str(md), check=False)
    assert p.returncode != 0 and b"not UTF-8" in p.stderr and b".Caf" in p.stderr, p.stderr
    # Checked before anything was written.
    p = cli(stopped, "export", "--user", ALICE, "--mailbox", "Bad", "--maildir",
            str(tmp_path / "x"), check=False)
    assert p.returncode != 0 and b"no mailbox" in p.stderr

    p = cli(stopped, "import", "--user", "nobody@example.test", "--mbox", str(torn), check=False)
    assert p.returncode != 0 and b"no such user" in p.stderr
    p = cli(stopped, "import", "--user", ALICE, "--mbox", str(tmp_path / "missing.mbox"),
            check=False)
    assert p.returncode != 0 and b"missing.mbox: cannot open" in p.stderr
    p = cli(stopped, "import", "--user", ALICE, check=False)
    assert p.returncode != 0  # neither --maildir nor --mbox


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("running", [False, True], ids=["offline", "daemon"])
def test_large_mbox_import_bounded_memory(make_server, tmp_path, running):
    """20,000 messages (~200 MB) stream through with bounded memory: peak RSS of the CLI (which
    holds the store when posternd is stopped) stays far below the input size, and so does the
    growth of posternd's peak RSS when the import goes through it."""
    srv = make_server()
    if not running:
        srv.stop()
    src = tmp_path / "large.mbox"
    count, size = 20_000, 10_000
    rng = random.Random(1)
    block = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(size))
    with open(src, "wb") as f:
        for i in range(count):
            body = "\n".join(block[j:j + 76] for j in range(i % 50, size, 76))
            f.write((f"From MAILER-DAEMON {asctime(1_500_000_000 + i)}\n"
                     f"Subject: large {i}\nMessage-Id: <{i}@large.test>\n\n{body}\n\n").encode())
    total = src.stat().st_size
    assert total > 190_000_000

    def run_measured(*args) -> tuple[bytes, int]:
        """Runs the CLI; returns (stdout, peak RSS in KiB). The peak is VmHWM of the CLI's own
        address space, polled while it runs (wait4's ru_maxrss would also count the pytest
        process image that the child had between fork and exec)."""
        with open(tmp_path / "out.txt", "wb") as out, open(tmp_path / "err.txt", "wb") as err:
            proc = subprocess.Popen([str(harness.POSTERN), "--config", str(srv.cfg), "mailbox",
                                     *args], stdout=out, stderr=err)
            deadline = time.monotonic() + 900
            peak = 0
            while True:
                try:
                    peak = max(peak, vm_hwm_kib(proc.pid))
                except (OSError, AssertionError, ValueError):
                    pass  # exited (a zombie has no address space left)
                pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                assert time.monotonic() < deadline, "CLI did not finish"
                time.sleep(0.01)
            proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, (tmp_path / "err.txt").read_bytes()
        assert peak > 0, "VmHWM never read"
        return (tmp_path / "out.txt").read_bytes(), peak

    daemon_before = vm_hwm_kib(srv.proc.pid) if running else 0
    t0 = time.monotonic()
    out, peak_kib = run_measured("import", "--user", ALICE, "--mailbox", "Large", "--mbox", str(src))
    elapsed = time.monotonic() - t0
    assert summary_counts(out) == (count, 0)
    print(f"import of {count} messages ({total / 1e6:.0f} MB) in {elapsed:.1f}s, "
          f"CLI peak RSS {peak_kib / 1024:.1f} MiB")
    assert peak_kib < 64 * 1024, f"peak RSS {peak_kib} KiB for a {total} byte mbox"
    if running:
        grown = vm_hwm_kib(srv.proc.pid) - daemon_before
        print(f"posternd peak RSS {daemon_before / 1024:.1f} -> "
              f"{(daemon_before + grown) / 1024:.1f} MiB during the import")
        assert grown < 64 * 1024, f"posternd peak RSS grew by {grown} KiB"

    # And back out: the export is the input byte for byte, also with bounded memory.
    dst = tmp_path / "large-out.mbox"
    t0 = time.monotonic()
    _, peak_kib = run_measured("export", "--user", ALICE, "--mailbox", "Large", "--mbox", str(dst))
    print(f"export in {time.monotonic() - t0:.1f}s, CLI peak RSS {peak_kib / 1024:.1f} MiB")
    assert peak_kib < 64 * 1024
    assert dst.stat().st_size == total
    with open(src, "rb") as a, open(dst, "rb") as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            assert x == y, "exported mbox differs from the imported one"
            if not x:
                break


def test_errors_through_the_daemon(server, tmp_path):
    """Through a running posternd: a torn mbox stores what precedes the tear, names file and line,
    and a rerun after the fix adds only the missing message."""
    torn = tmp_path / "torn.mbox"
    torn.write_bytes(b"From a Thu Jan  1 00:00:00 1970\nSubject: a\n\nA\n\n"
                     b"From b Thu Jan  1 00:00:00 1970\nSubject: b\n\nhalf a li")
    p = cli(server, "import", "--user", BOB, "--mailbox", "Torn", "--mbox", str(torn), check=False)
    assert p.returncode != 0
    assert f"{torn}:9: the file ends inside a line".encode() in p.stderr, p.stderr
    assert b"imported 1 messages" in p.stderr, p.stderr
    torn.write_bytes(torn.read_bytes() + b"ne\n")
    p = cli(server, "import", "--user", BOB, "--mailbox", "Torn", "--mbox", str(torn))
    assert summary_counts(p.stdout) == (1, 1)
    p = cli(server, "export", "--user", BOB, "--mailbox", "Nope", "--mbox", str(tmp_path / "n"),
            check=False)
    assert p.returncode != 0 and b"no mailbox" in p.stderr, p.stderr
    assert server.running
    assert server.export(BOB, mailbox="Torn") == [b"Subject: a\r\n\r\nA\r\n",
                                                   b"Subject: b\r\n\r\nhalf a line\r\n"]


def test_admin_protocol_garbage(server):
    """A broken client on the admin socket gets an error frame; the daemon keeps serving and
    stores nothing from it."""
    import socket as socketlib
    path = str(server.data_dir / "admin.sock")

    def session(lines: bytes) -> bytes:
        with socketlib.socket(socketlib.AF_UNIX) as s:
            s.settimeout(15)
            s.connect(path)
            s.sendall(lines)
            s.shutdown(socketlib.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    out = session(b'mailbox-import {"user":"alice@example.test"}\nnot json\n')
    assert out.startswith(b"ok\n") and b'"t":"error"' in out and b"bad frame" in out, out
    out = session(b'mailbox-import {"user":"nobody@example.test"}\n')
    assert out.startswith(b"error no such user"), out
    # A message frame whose body is cut short by the end of the connection is not stored.
    out = session(b'mailbox-import {"user":"alice@example.test"}\n'
                  b'{"t":"message","mailbox":"Cut","flags":[],"internal_date":0,"size":100}\nshort')
    assert b'"t":"error"' in out, out
    assert session(b"ping\n") == b"pong\n"
    assert server.export(ALICE, mailbox="INBOX") == []
    p = cli(server, "export", "--user", ALICE, "--mailbox", "Cut", "--maildir", "/nonexistent/x",
            check=False)
    assert p.returncode != 0 and b"no mailbox" in p.stderr


def read_offset(pid: int, path: Path) -> int:
    """The file offset of `pid`'s descriptor open on `path` (0 if none is open yet)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        return int(f.readline().split()[1])
            except OSError:
                continue
    except OSError:
        pass
    return 0


@pytest.mark.parametrize("seed", range(4))
def test_kill_daemon_during_import_then_rerun(make_server, tmp_path, seed):
    """posternd is SIGKILLed while an import streams through it. Every message the CLI counted
    as imported survives; after a restart, rerunning the same import completes the mailbox
    without duplicates, and the result is the input, in order, byte for byte."""
    srv = make_server()
    rng = random.Random(seed)
    messages = [(rand_message(rng, i, 3000), "S" if i % 3 else "", 1_200_000_000 + i)
                for i in range(3000)]
    src = tmp_path / "in.mbox"
    write_mbox(src, messages)
    with open(tmp_path / "err1.txt", "wb") as err:
        proc = subprocess.Popen([str(harness.POSTERN), "--config", str(srv.cfg), "mailbox",
                                 "import", "--user", ALICE, "--mbox", str(src)],
                                stdout=subprocess.DEVNULL, stderr=err)
        # Kill when the CLI has read a random part of the input (its file offset, from
        # /proc/<pid>/fdinfo), however fast or slow this machine is.
        target = rng.uniform(0.1, 0.8) * src.stat().st_size
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if read_offset(proc.pid, src) >= target:
                break
            time.sleep(0.002)
        srv.kill()
        proc.wait(timeout=120)
    stderr = (tmp_path / "err1.txt").read_bytes()
    if proc.returncode == 0:
        pytest.skip("the import finished before the kill")
    m = re.search(rb"before the error: imported (\d+) messages", stderr)
    assert m, stderr
    acked = int(m.group(1))
    srv.start()
    p = cli(srv, "import", "--user", ALICE, "--mbox", str(src))
    imported, duplicates = summary_counts(p.stdout)
    assert imported + duplicates == len(messages)
    assert duplicates >= acked, f"{acked} acknowledged before the kill, {duplicates} found after"
    stored = srv.export_all_uids(users=(ALICE,))[ALICE]
    assert [b for _, b in stored] == [b for b, _, _ in messages]
    print(f"seed {seed}: {acked} acknowledged before the kill, {duplicates} stored, "
          f"{imported} added by the rerun")
