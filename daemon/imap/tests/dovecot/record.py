#!/usr/bin/env python3
"""Records Dovecot's rendering of the messages in ../messages as reference expectations.

Run by hand (needs dovecot-imapd and root, which drops to `nobody`): python3 record.py.
Writes <message>.<item>.expected files next to this script: the exact bytes Dovecot sent as
the value of that FETCH item. The Rust test tests/dovecot.rs compares postern-imap's
rendering with them. Items Dovecot refused (NO/BAD) are recorded as <...>.expected holding
"NO <text>".
"""
import os, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MSGS = os.path.join(HERE, "..", "messages")
ITEMS = [
    "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE",
    "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]", "BODY.PEEK[2.MIME]", "BODY.PEEK[2.HEADER]", "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[2.1]", "BODY.PEEK[1.1]", "BODY.PEEK[3]", "BODY.PEEK[4]",
    "BODY.PEEK[HEADER.FIELDS (From Subject)]", "BODY.PEEK[HEADER.FIELDS.NOT (From)]",
    "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[1]<2.5>", "BODY.PEEK[]<0.20>",
    "BINARY.PEEK[1]", "BINARY.PEEK[2]", "BINARY.PEEK[3]", "BINARY.SIZE[1]", "BINARY.SIZE[3]",
    "BINARY.PEEK[]",
]

def name_of(item):
    return re.sub(r"[^A-Za-z0-9.]+", "_", item).strip("_")

def main():
    out_dir = HERE
    for f in sorted(os.listdir(MSGS)):
        if not f.endswith(".eml"):
            continue
        base = f[:-4]
        tmp = tempfile.mkdtemp()
        md = os.path.join(tmp, "md")
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d))
        shutil.copy(os.path.join(MSGS, f), os.path.join(md, "cur", "1.x:2,"))
        conf = os.path.join(tmp, "dovecot.conf")
        with open(conf, "w") as c:
            c.write(f"mail_location = maildir:{md}\nprotocols = imap\nssl = no\n"
                    f"log_path = {tmp}/log\nmail_uid = nobody\nmail_gid = nogroup\n")
        subprocess.run(["chown", "-R", "nobody:nogroup", tmp], check=True)
        env = dict(os.environ, USER="nobody", HOME=tmp, MAIL=f"maildir:{md}")
        proc = subprocess.Popen(["/usr/lib/dovecot/imap", "-c", conf], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)

        def command(tag, text):
            """Sends one command; returns (untagged responses, tagged line)."""
            proc.stdin.write(f"{tag} {text}\r\n".encode())
            proc.stdin.flush()
            untagged, cur = [], b""
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("dovecot closed the connection")
                cur += line
                m = re.search(rb"\{(\d+)\}\r\n$", line)
                if m:
                    cur += proc.stdout.read(int(m.group(1)))
                    continue
                if cur.startswith(tag.encode() + b" "):
                    return untagged, cur
                untagged.append(cur)
                cur = b""

        command("a", "SELECT INBOX")
        for i, item in enumerate(ITEMS):
            untagged, tagged = command(f"f{i}", f"FETCH 1 ({item})")
            fetches = [u for u in untagged if u.startswith(b"* 1 FETCH (")]
            if tagged.split(b" ")[1] == b"OK" and fetches:
                body = fetches[0][len(b"* 1 FETCH ("):]
                assert body.endswith(b")\r\n"), (f, item, body)
                body = body[:-3]
                # Strip the item name Dovecot echoes ("BODY[1] ", "BINARY[1] ",
                # "BODY[HEADER.FIELDS (FROM)]<0> ", ...).
                if b"[" in body.split(b" ", 1)[0]:
                    end = body.index(b"]") + 1
                    if body[end:end + 1] == b"<":
                        end = body.index(b">", end) + 1
                    value = body[end + 1:]
                else:
                    value = body[body.find(b" ") + 1:]
            else:
                value = b"NO " + tagged.split(b" ", 1)[1].rstrip(b"\r\n")
                value = re.sub(rb" \([0-9.+ ]+secs\)\.", b"", value)
            with open(os.path.join(out_dir, f"{base}.{name_of(item)}.expected"), "wb") as o:
                o.write(value)
        command("z", "LOGOUT")
        proc.wait(timeout=10)
        shutil.rmtree(tmp)

if __name__ == "__main__":
    sys.exit(main())
