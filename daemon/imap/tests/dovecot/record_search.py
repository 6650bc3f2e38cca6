#!/usr/bin/env python3
"""Records Dovecot's SEARCH and SORT results over all messages in ../messages, as a mailbox.

Run by hand (needs dovecot-imapd and root, which drops to `nobody`): python3 record_search.py.
Message i (sorted file names, from 1) gets UID i, the flags and internal date of FLAGS[i-1] and
DATES[i-1] (the Rust test tests/dovecot.rs uses the same table), LF-only files are stored with
CRLF. Writes search.expected: one "<program>\t<UID list>" line per program.
"""
import os, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MSGS = os.path.join(HERE, "..", "messages")
FLAGS = ["S", "", "F", "RS", "", "D", "S", "", "T", "", "FS", "", "S", "", "R"]
BASE = 1704110400  # 2024-01-01 12:00:00 UTC
DATES = [BASE + i * 86400 for i in range(15)]
PROGRAMS = [
    "ALL", "SEEN", "UNSEEN", "FLAGGED", "ANSWERED", "DELETED", "DRAFT", "UNDRAFT",
    "NOT SEEN", "OR FLAGGED ANSWERED", "LARGER 300", "SMALLER 200", "UID 3:5,9",
    "2:4,12", "BEFORE 5-Jan-2024", "ON 5-Jan-2024", "SINCE 10-Jan-2024",
    "SENTBEFORE 1-Jan-2000", "SENTSINCE 1-Jan-2000", "SENTON 17-Jul-1996",
    "FROM a@b", "FROM gray", "FROM \"Terry\"", "FROM \"andré\"", "TO example.com", "CC klensin",
    "BCC undisclosed", "SUBJECT inner", "SUBJECT \"IMAP4rev2 été\"", "SUBJECT nested",
    "HEADER Content-Type multipart", "HEADER X-8bit \"\"", "HEADER Message-ID \"<id@x.y>\"",
    "BODY hello", "BODY \"second line\"", "BODY \"été\"", "BODY \"héllo wörld\"", "BODY \"break = eq\"",
    "BODY plain", "BODY digest", "TEXT inner", "TEXT \"d1 body\"", "TEXT Klensin",
    "NOT BODY a", "OR SUBJECT fwd SUBJECT unterminated", "KEYWORD $Junk",
]
SORTS = [
    "(SUBJECT)", "(REVERSE SIZE)", "(ARRIVAL)", "(REVERSE ARRIVAL)", "(FROM)", "(TO)", "(CC)",
    "(DATE)", "(REVERSE DATE SUBJECT)", "(DISPLAYFROM)", "(DISPLAYTO)", "(SIZE)",
]

def main():
    tmp = tempfile.mkdtemp()
    md = os.path.join(tmp, "md")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, d))
    conf = os.path.join(tmp, "dovecot.conf")
    with open(conf, "w") as c:
        c.write(f"mail_location = maildir:{md}\nprotocols = imap\nssl = no\n"
                f"log_path = {tmp}/log\nmail_uid = nobody\nmail_gid = nogroup\n")
    env = dict(os.environ, USER="nobody", HOME=tmp, MAIL=f"maildir:{md}", TZ="UTC")
    names = sorted(n for n in os.listdir(MSGS) if n.endswith(".eml"))[:len(FLAGS)]
    assert len(names) == len(FLAGS), (len(names), len(FLAGS))
    for i, n in enumerate(names):
        data = open(os.path.join(MSGS, n), "rb").read()
        if b"\r" not in data:
            data = data.replace(b"\n", b"\r\n")
        path = os.path.join(md, "cur", f"{i + 1:03}.x:2,{FLAGS[i]}")
        open(path, "wb").write(data)
        os.utime(path, (DATES[i], DATES[i]))
        subprocess.run(["chown", "-R", "nobody:nogroup", tmp], check=True)
        # One sync per message so that UIDs follow the file order.
        subprocess.run(["/usr/lib/dovecot/imap", "-c", conf], input=b"a SELECT INBOX\r\nz LOGOUT\r\n",
                       capture_output=True, env=env, check=True)
    cmds = b"a SELECT INBOX\r\n"
    for i, p in enumerate(PROGRAMS):
        cmds += f"s{i} UID SEARCH CHARSET UTF-8 {p}\r\n".encode()
    for i, p in enumerate(SORTS):
        cmds += f"o{i} UID SORT {p} UTF-8 ALL\r\n".encode()
    cmds += b"z LOGOUT\r\n"
    out = subprocess.run(["/usr/lib/dovecot/imap", "-c", conf], input=cmds, capture_output=True,
                         env=env, check=True).stdout.decode("utf-8", "replace")
    results = re.findall(r"^\* (SEARCH|SORT)((?: \d+)*)\r$", out, re.M)
    tagged = re.findall(r"^([so]\d+) (OK|NO|BAD)", out, re.M)
    assert all(t[1] == "OK" for t in tagged), [t for t in tagged if t[1] != "OK"]
    assert len(results) == len(PROGRAMS) + len(SORTS), out
    with open(os.path.join(HERE, "search.expected"), "w") as f:
        for p, (kind, r) in zip(PROGRAMS + SORTS, results):
            f.write(f"{kind}\t{p}\t{r.strip()}\n")
    shutil.rmtree(tmp)

if __name__ == "__main__":
    sys.exit(main())
