"""curl as an IMAP client of posternd: imap:// with STARTTLS required (--ssl-reqd) and imaps://;
list mailboxes, fetch by UID byte for byte, search, APPEND with -T (upload)."""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess

import pytest

import harness
from harness import ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, make_message, strip_trace



@pytest.fixture(autouse=True)
def _curl_installed():
    # A missing client fails the test (tests/run installs it); it never skips.
    assert shutil.which("curl"), "curl not installed (tests/run installs it)"


def curl(url: str, *args: str, user: str = ALICE, check: bool = True) -> subprocess.CompletedProcess:
    # -k: the server's certificate is the self-signed one made at first start.
    cmd = ["curl", "-sS", "-k", "--max-time", "30", "--user", f"{user}:{PASSWORDS[user]}",
           *args, url]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()}"
    return p


def urls(srv) -> list[tuple[str, tuple[str, ...]]]:
    """(base URL, extra curl options) for STARTTLS on imap:// and implicit TLS on imaps://."""
    return [(f"imap://{HOST}:{srv.ports.imap}", ("--ssl-reqd",)),
            (f"imaps://{HOST}:{srv.ports.imaps}", ())]


def deliver(srv, msg: bytes, rcpt: str = ALICE) -> None:
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=30) as s:
        assert s.sendmail(REMOTE_SENDER, [rcpt], msg) == {}


def stored_messages(srv, user: str = ALICE, mailbox: str = "INBOX") -> list[tuple[int, bytes]]:
    """The mailbox as posternd stores it, read through the running daemon (admin socket)."""
    out = srv.root / "curl-export"
    shutil.rmtree(out, ignore_errors=True)
    harness.run_cli(srv.cfg, "mailbox", "export", "--user", user, "--mailbox", mailbox,
                    "--maildir", str(out))
    got = sorted((int(f.name.split(":")[0]), f.read_bytes()) for f in (out / "cur").iterdir())
    shutil.rmtree(out, ignore_errors=True)
    return got


@pytest.fixture(scope="module")
def srv(module_factory):
    s = module_factory()
    for i, subject in enumerate(["curl alpha", "curl beta", "curl gamma needle"]):
        deliver(s, make_message(subject=subject, body=f"body {i}\r\n.leading dot\r\n".encode()))
    deliver(s, make_message(subject="for bob"), BOB)
    return s


@pytest.mark.parametrize("mode", [0, 1], ids=["imap-starttls", "imaps"])
def test_list_mailboxes(srv, mode):
    base, opts = urls(srv)[mode]
    p = curl(base + "/", *opts)
    lines = p.stdout.decode().splitlines()
    names = [re.sub(r'^\* LIST \([^)]*\) (?:"[^"]*"|NIL) ', "", l).strip('"') for l in lines]
    assert all(l.startswith("* LIST ") for l in lines), lines
    assert "INBOX" in names, lines


@pytest.mark.parametrize("mode", [0, 1], ids=["imap-starttls", "imaps"])
def test_fetch_by_uid_byte_for_byte(srv, mode):
    base, opts = urls(srv)[mode]
    stored = stored_messages(srv)
    assert len(stored) >= 3
    for uid, body in stored:
        p = curl(f"{base}/INBOX/;UID={uid}", *opts)
        assert p.stdout == body, f"UID {uid}: FETCH BODY[] differs from the stored message"
    # The client's bytes are inside, after posternd's trace fields.
    assert strip_trace(stored[0][1]).startswith(b"From: Sender")
    # A UID that does not exist is an error, not an empty message.
    p = curl(f"{base}/INBOX/;UID=999999", *opts, check=False)
    assert p.returncode != 0 and not p.stdout


@pytest.mark.parametrize("mode", [0, 1], ids=["imap-starttls", "imaps"])
def test_search(srv, mode):
    base, opts = urls(srv)[mode]
    stored = stored_messages(srv)
    needle = [u for u, b in stored if b"Subject: curl gamma needle" in b]
    p = curl(f"{base}/INBOX?SUBJECT%20needle", *opts)
    m = re.search(rb"^\* SEARCH((?: \d+)*)\r?$", p.stdout, re.M)
    assert m, p.stdout
    seqs = [int(x) for x in m.group(1).split()]
    # SEARCH answers sequence numbers; here UIDs and sequence numbers coincide (no expunges).
    assert seqs == needle, (seqs, needle)
    p = curl(f"{base}/INBOX?SUBJECT%20no-such-subject-anywhere", *opts)
    assert re.search(rb"^\* SEARCH\r?$", p.stdout, re.M), p.stdout
    # Bob's message is not visible to Alice.
    p = curl(f"{base}/INBOX?SUBJECT%20%22for%20bob%22", *opts)
    assert re.search(rb"^\* SEARCH\r?$", p.stdout, re.M), p.stdout


@pytest.mark.parametrize("mode", [0, 1], ids=["imap-starttls", "imaps"])
def test_append_upload(srv, mode, tmp_path):
    base, opts = urls(srv)[mode]
    msg = make_message(subject=f"uploaded by curl {mode}",
                       body=b"line\r\n\r\nFrom the start\r\n.dot\r\n" + bytes(range(128, 256)) + b"\r\n")
    f = tmp_path / "upload.eml"
    f.write_bytes(msg)
    before = stored_messages(srv)
    curl(f"{base}/INBOX", *opts, "-T", str(f))
    after = stored_messages(srv)
    new = after[len(before):]
    assert [b for _, b in new] == [msg], "APPEND stored other bytes than the upload"
    uid = new[0][0]
    p = curl(f"{base}/INBOX/;UID={uid}", *opts)
    assert p.stdout == msg


def test_examine_custom_request_and_bad_password(srv):
    base, opts = urls(srv)[1]
    p = curl(base + "/", *opts, "-X", "EXAMINE INBOX")
    assert re.search(rb"^\* (\d+) EXISTS", p.stdout, re.M), p.stdout
    cmd = ["curl", "-sS", "-k", "--max-time", "30", "--user", f"{ALICE}:wrong-password",
           base + "/"]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode == 67, p  # CURLE_LOGIN_DENIED
