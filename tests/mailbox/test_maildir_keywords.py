"""Maildir keywords (`postern mailbox export|import --maildir`): keywords other than $Forwarded
(the standard letter P) travel as Dovecot's keyword letters a..z, named by the folder's
`dovecot-keywords` file. Round trip Postern -> Maildir -> Postern over IMAP, a Maildir written
by Dovecot itself (doveadm) imported, and Postern's export read back by Dovecot."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
from harness import ALICE, BOB, HOST, PASSWORDS, SOCK_TIMEOUT, client_tls_context, make_message

DATE = '"14-Nov-2023 22:13:20 +0000"'


def cli(srv, *args):
    return harness.run_cli(srv.cfg, "mailbox", *args, timeout=120)


def imap(srv, user: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(HOST, srv.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    m.login(user, PASSWORDS[user])
    return m


def fetch_flags(m: imaplib.IMAP4_SSL, mailbox: str) -> list[tuple[bytes, set[str]]]:
    """[(Subject header line, flags without \\Recent)] in UID order."""
    typ, _ = m.select(f'"{mailbox}"')
    assert typ == "OK", mailbox
    typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
        assert flags, item[0]
        got = {f for f in flags.group(1).decode().split() if f != "\\Recent"}
        out.append((item[1].strip(), got))
    return out


def cur_files(folder: Path) -> dict[int, str]:
    """uid -> info letters of an export folder's cur/ (names `<uid>:2,<letters>`)."""
    out = {}
    for f in (folder / "cur").iterdir():
        m = re.fullmatch(r"(\d+):2,([A-Za-z]*)", f.name)
        assert m, f"unexpected file name in export: {f.name}"
        out[int(m.group(1))] = m.group(2)
    return out


# (subject, mailbox, APPEND flags)
MESSAGES = [
    ("k1", "INBOX", ["\\Seen", "$Label1", "Work"]),
    ("k2", "INBOX", ["$Forwarded", "\\Flagged", "Work"]),
    ("k3", "INBOX", []),
    ("k4", "INBOX", ["\\Answered", "$Junk", "$label1", "Later"]),
    ("p1", "Projects", ["Later", "\\Draft"]),
]


def test_keywords_round_trip_through_maildir(server, tmp_path):
    m = imap(server, ALICE)
    try:
        assert m.create("Projects")[0] == "OK"
        for subject, mailbox, flags in MESSAGES:
            typ, data = m.append(mailbox, "(" + " ".join(flags) + ")", DATE,
                                 make_message(subject, body=f"{subject}\r\n".encode()))
            assert typ == "OK", data
        before = {mb: fetch_flags(m, mb) for mb in ("INBOX", "Projects")}
    finally:
        m.logout()
    assert [f for _, f in before["INBOX"]][0] == {"\\Seen", "$Label1", "Work"}

    # Export through the running daemon (admin socket).
    out = tmp_path / "out"
    cli(server, "export", "--user", ALICE, "--all", "--maildir", str(out))

    # Letters in order of first use per folder; $Forwarded stays P and gets no letter;
    # keyword letters follow the system letters in ASCII order; a keyword is one letter
    # whatever its case.
    assert (out / "dovecot-keywords").read_text() == "0 $Label1\n1 Work\n2 $Junk\n3 Later\n"
    inbox = cur_files(out)
    assert sorted(inbox.values()) == sorted(["Sab", "FPb", "", "Racd"]), inbox
    by_uid = [inbox[u] for u in sorted(inbox)]
    assert by_uid == ["Sab", "FPb", "", "Racd"]
    projects = out / ".Projects"
    assert (projects / "dovecot-keywords").read_text() == "0 Later\n", "per-folder letters"
    assert list(cur_files(projects).values()) == ["Da"]

    # Import into another account: the same keywords.
    p = cli(server, "import", "--user", BOB, "--mailbox", "Copy", "--maildir", str(out))
    assert b"imported 5 messages" in p.stdout, p.stdout
    m = imap(server, BOB)
    try:
        after_inbox = fetch_flags(m, "Copy")
        after_projects = fetch_flags(m, "Copy/Projects")
    finally:
        m.logout()

    def lower(rows):
        return [(s, {f.lower() for f in fl}) for s, fl in rows]

    # $label1 and $Label1 are one keyword (IMAP keywords compare case-insensitively).
    assert lower(after_inbox) == lower(before["INBOX"])
    assert lower(after_projects) == lower(before["Projects"])
    assert after_inbox[0][1] == {"\\Seen", "$Label1", "Work"}

    # Exporting again into the same Maildir keeps the letters already given.
    (out / "dovecot-keywords").write_text("0 $Label1\n1 Work\n2 $Junk\n3 Later\n5 Other\n")
    shutil.rmtree(out / "cur")
    cli(server, "export", "--user", ALICE, "--mailbox", "INBOX", "--maildir", str(out))
    assert (out / "dovecot-keywords").read_text() == "0 $Label1\n1 Work\n2 $Junk\n3 Later\n5 Other\n"
    assert sorted(cur_files(out).values()) == sorted(["Sab", "FPb", "", "Racd"])


# -- Dovecot (doveadm) on either side --------------------------------------------------------

@pytest.fixture
def dovecot():
    """A private doveadm (no daemon) over a Maildir at <dir>/md, mail accessed as nobody:
    (doveadm command, environment, Maildir path). Outside pytest's tmp_path, whose parents
    nobody cannot enter."""
    # tests/run installs dovecot-core and runs as root: a missing doveadm is a failure, not
    # a reason to skip.
    assert shutil.which("doveadm") is not None, "needs doveadm (Debian dovecot-core)"
    assert os.geteuid() == 0, "needs root (doveadm drops to nobody)"

    base = Path(tempfile.mkdtemp(prefix="postern-dovecot-"))
    try:
        for d in (base / "home", base / "run"):
            d.mkdir()
        os.chmod(base, 0o755)
        shutil.chown(base / "home", 65534, 65534)
        conf = base / "dovecot.conf"
        conf.write_text(f"""base_dir = {base / 'run'}
log_path = {base / 'dovecot.log'}
mail_location = maildir:{base / 'md'}:LAYOUT=fs
mail_uid = 65534
mail_gid = 65534
first_valid_uid = 1
ssl = no
""")
        env = dict(os.environ, HOME=str(base / "home"), USER="nobody")
        yield ["doveadm", "-c", str(conf)], env, base / "md"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def doveadm(cmd, env, *args, input: bytes | None = None) -> str:
    p = subprocess.run(cmd + list(args), env=env, input=input, capture_output=True, timeout=60)
    assert p.returncode == 0, (args, p.stderr.decode(errors="replace"))
    return p.stdout.decode()


def test_import_a_maildir_written_by_dovecot(server, dovecot):
    cmd, env, md = dovecot
    md.mkdir()
    shutil.chown(md, 65534, 65534)
    for subject, flags in (("d1", "\\Seen $Label1 NonJunk"), ("d2", "\\Flagged Important"),
                           ("d3", "")):
        doveadm(cmd, env, "save", "-m", "INBOX", input=make_message(subject))
        if flags:
            doveadm(cmd, env, "flags", "add", flags, "mailbox", "INBOX", "header", "Subject",
                    subject)
    keywords = (md / "dovecot-keywords").read_text()
    assert "$Label1" in keywords and "Important" in keywords, keywords
    names = [f.name for sub in ("cur", "new") for f in (md / sub).iterdir()]
    assert any(re.search(r":2,S[a-z]+$", n) for n in names), names

    p = cli(server, "import", "--user", BOB, "--mailbox", "FromDovecot", "--maildir", str(md))
    assert b"imported 3 messages" in p.stdout, p.stdout
    m = imap(server, BOB)
    try:
        got = {s: f for s, f in fetch_flags(m, "FromDovecot")}
    finally:
        m.logout()
    assert got == {b"Subject: d1": {"\\Seen", "$Label1", "NonJunk"},
                   b"Subject: d2": {"\\Flagged", "Important"},
                   b"Subject: d3": set()}, got


def test_dovecot_reads_the_exported_keywords(server, dovecot):
    cmd, env, md = dovecot
    m = imap(server, ALICE)
    try:
        for subject, flags in (("e1", "(\\Seen Alpha $Beta)"), ("e2", "($Beta $Forwarded)")):
            assert m.append("INBOX", flags, DATE, make_message(subject))[0] == "OK"
    finally:
        m.logout()
    cli(server, "export", "--user", ALICE, "--maildir", str(md))
    for root, dirs, files in os.walk(md):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), 65534, 65534)
    shutil.chown(md, 65534, 65534)
    out = doveadm(cmd, env, "fetch", "flags hdr.subject", "mailbox", "INBOX", "all")
    got = {}
    for block in out.split("\f"):
        flags = re.search(r"^flags: ?(.*)$", block, re.M)
        subject = re.search(r"^hdr\.subject: ?(.*)$", block, re.M)
        if flags and subject:
            got[subject.group(1).strip()] = set(flags.group(1).split()) - {"\\Recent"}
    # Dovecot has no letter for $Forwarded: 'P' is the Maildir "passed" flag, which Dovecot
    # ignores, so e2 shows only $Beta.
    assert got == {"e1": {"\\Seen", "Alpha", "$Beta"}, "e2": {"$Beta"}}, out
