"""mbsync (isync) keeps a local Maildir in sync with posternd over IMAPS, both ways: pull what
was delivered, push local changes (a new message, a flag change, a deletion), pull remote
changes; checked over IMAP (imaplib) and by `postern mailbox export`."""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

import harness
from harness import ALICE, HOST, PASSWORDS, REMOTE_SENDER, client_tls_context, make_message



@pytest.fixture(autouse=True)
def _mbsync_installed():
    # A missing client fails the test (tests/run installs it); it never skips.
    assert shutil.which("mbsync"), "mbsync not installed (tests/run installs it)"

TUID_RE = re.compile(rb"^X-TUID: [^\n]*\n", re.M)


def write_config(srv, root: Path) -> Path:
    local = root / "mail"
    local.mkdir(parents=True, exist_ok=True)
    cert = srv.tls_dir() / "self-signed.crt"
    assert cert.is_file(), f"no server certificate at {cert}"
    cfg = root / "mbsyncrc"
    # isync 1.4 syntax (SSLType; 1.5 renamed it TLSType). "localhost" is in the certificate's
    # subjectAltName, so the host name check passes against the pinned self-signed cert.
    cfg.write_text(f"""
IMAPAccount postern
Host localhost
Port {srv.ports.imaps}
User {ALICE}
Pass "{PASSWORDS[ALICE]}"
SSLType IMAPS
CertificateFile {cert}
SystemCertificates no
Timeout 30

IMAPStore remote
Account postern

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
""")
    return cfg


def mbsync(cfg: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(["mbsync", "-c", str(cfg), "-V", "sync"], capture_output=True, timeout=120)
    assert p.returncode == 0, f"mbsync exited {p.returncode}\n{p.stdout.decode()}\n{p.stderr.decode()}"
    return p


def local_messages(cfg: Path) -> dict[Path, tuple[str, bytes]]:
    inbox = cfg.parent / "mail" / "INBOX"
    out = {}
    for sub in ("cur", "new"):
        for f in (inbox / sub).iterdir():
            m = re.search(r":2,([A-Za-z]*)$", f.name)
            out[f] = (m.group(1) if m else "", f.read_bytes())
    return out


def lf(b: bytes) -> bytes:
    return TUID_RE.sub(b"", b.replace(b"\r\n", b"\n"))


def imap_state(srv) -> dict[bytes, tuple[set[str], bytes]]:
    """Message-Id -> (flags, bytes) of Alice's INBOX over IMAPS."""
    m = imaplib.IMAP4_SSL(HOST, srv.ports.imaps, ssl_context=client_tls_context(), timeout=30)
    try:
        m.login(ALICE, PASSWORDS[ALICE])
        typ, _ = m.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        out = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, body = item
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
            mid = re.search(rb"^Message-Id: (<[^>]+>)", body, re.M | re.I).group(1)
            out[mid] = (flags, body)
        m.logout()
        return out
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def exported(srv) -> dict[bytes, tuple[str, bytes]]:
    out = srv.root / "mbsync-export"
    shutil.rmtree(out, ignore_errors=True)
    harness.run_cli(srv.cfg, "mailbox", "export", "--user", ALICE, "--maildir", str(out))
    got = {}
    for f in (out / "cur").iterdir():
        body = f.read_bytes()
        mid = re.search(rb"^Message-Id: (<[^>]+>)", body, re.M | re.I).group(1)
        got[mid] = (f.name.split(":2,")[1], body)
    shutil.rmtree(out, ignore_errors=True)
    return got


def msgid(body: bytes) -> bytes:
    return re.search(rb"^Message-Id: (<[^>]+>)", body, re.M | re.I).group(1)


def test_mbsync_both_ways(server, tmp_path):
    sent = [make_message(subject=f"sync {i}", msgid=f"<sync{i}@remote.test>") for i in range(4)]
    for m in sent:
        with smtplib.SMTP(HOST, server.ports.mx, timeout=30) as s:
            assert s.sendmail(REMOTE_SENDER, [ALICE], m) == {}
    cfg = write_config(server, tmp_path)

    # 1. Pull: every delivered message arrives in the local Maildir (LF line ends there).
    mbsync(cfg)
    local = local_messages(cfg)
    remote = imap_state(server)
    assert len(local) == 4 and len(remote) == 4
    by_id = {msgid(b): (p, fl, b) for p, (fl, b) in local.items()}
    assert set(by_id) == set(remote)
    for mid, (_, body) in remote.items():
        assert lf(by_id[mid][2]) == lf(body), f"{mid}: local copy differs"

    # 2. Local changes: flag one, delete one, add one.
    path, letters, _ = by_id[b"<sync0@remote.test>"]
    flagged = path.parent.parent / "cur" / (path.name.split(":2,")[0] + ":2," + "".join(sorted(set(letters + "FS"))))
    path.rename(flagged)
    by_id[b"<sync1@remote.test>"][0].unlink()
    new_local = make_message(subject="written locally", msgid="<local1@client.test>").replace(b"\r\n", b"\n")
    (cfg.parent / "mail" / "INBOX" / "new" / "1700000000.local1.client").write_bytes(new_local)
    mbsync(cfg)

    remote = imap_state(server)
    assert set(remote) == {b"<sync0@remote.test>", b"<sync2@remote.test>", b"<sync3@remote.test>",
                           b"<local1@client.test>"}, sorted(remote)
    assert {"\\Flagged", "\\Seen"} <= remote[b"<sync0@remote.test>"][0]
    assert "\\Flagged" not in remote[b"<sync2@remote.test>"][0]
    # The pushed message is stored with CRLF line ends (RFC 9051 APPEND) and the same content.
    pushed = remote[b"<local1@client.test>"][1]
    assert b"\r\n" in pushed and lf(pushed) == new_local
    ex = exported(server)
    assert set(ex) == set(remote)
    assert set("FS") <= set(ex[b"<sync0@remote.test>"][0])
    assert ex[b"<local1@client.test>"][1] == pushed

    # 3. Remote changes: a flag set over IMAP and a new delivery come down.
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(), timeout=30)
    m.login(ALICE, PASSWORDS[ALICE])
    m.select("INBOX")
    typ, data = m.search(None, "HEADER", "Message-Id", "sync2@remote.test")
    assert typ == "OK" and data[0], data
    assert m.store(data[0].split()[0].decode(), "+FLAGS", "(\\Answered)")[0] == "OK"
    m.logout()
    late = make_message(subject="late", msgid="<late@remote.test>")
    with smtplib.SMTP(HOST, server.ports.mx, timeout=30) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], late) == {}
    mbsync(cfg)
    local = {msgid(b): (fl, b) for _, (fl, b) in local_messages(cfg).items()}
    assert set(local) == set(remote) | {b"<late@remote.test>"}
    assert "R" in local[b"<sync2@remote.test>"][0]
    assert lf(local[b"<late@remote.test>"][1]).endswith(lf(late))

    # 4. A second sync with nothing changed changes nothing.
    mbsync(cfg)
    assert {msgid(b): fl for _, (fl, b) in local_messages(cfg).items()} == \
        {k: v[0] for k, v in local.items()}
    assert set(imap_state(server)) == set(local)
