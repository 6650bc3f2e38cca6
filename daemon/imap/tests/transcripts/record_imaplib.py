#!/usr/bin/env python3
"""Records the bytes Python's imaplib sends for a broad session, for tests/transcripts.rs.

A loopback stand-in server answers every command with OK (a "+" continuation for
synchronising literals, AUTHENTICATE and IDLE) and logs everything the client sent to
imaplib.bin. Run: python3 record_imaplib.py
"""
import imaplib, os, re, socket, threading

HERE = os.path.dirname(os.path.abspath(__file__))

def serve(sock, log):
    conn, _ = sock.accept()
    f = conn.makefile("rb")
    conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ IDLE MOVE UIDPLUS ENABLE "
                 b"AUTH=PLAIN SASL-IR NAMESPACE QUOTA SORT ESEARCH CONDSTORE] ready\r\n")
    idle_tag = None
    while True:
        line = f.readline()
        if not line:
            break
        log.append(line)
        if idle_tag is not None:
            if line.strip().upper() == b"DONE":
                conn.sendall(idle_tag + b" OK IDLE done\r\n")
                idle_tag = None
            continue
        first = line
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                break
            if not m.group(2):
                conn.sendall(b"+ Ready\r\n")
            log.append(f.read(int(m.group(1))))
            # The command goes on after the literal.
            line = f.readline()
            log.append(line)
        parts = first.split(b" ")
        tag = parts[0]
        cmd = parts[1].strip().upper() if len(parts) > 1 else b""
        if cmd == b"AUTHENTICATE" and len(parts) == 3:
            conn.sendall(b"+ \r\n")
            resp = f.readline()
            log.append(resp)
            conn.sendall(tag + b" OK done\r\n")
            continue
        if cmd == b"IDLE":
            idle_tag = tag
            conn.sendall(b"+ idling\r\n")
            continue
        if cmd == b"SELECT" or cmd == b"EXAMINE":
            conn.sendall(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n")
        if cmd == b"LOGOUT":
            conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            break
        conn.sendall(tag + b" OK done\r\n")
    conn.close()

def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    log = []
    t = threading.Thread(target=serve, args=(sock, log))
    t.start()
    c = imaplib.IMAP4("127.0.0.1", sock.getsockname()[1], timeout=10)
    c.login("alice", 'p"ss w\\rd')
    c.enable("CONDSTORE")
    c.namespace()
    c.list()
    c.list('""', "INBOX/%")
    c.lsub()
    c.create("Arch&ive")
    c.create('"Entw&APw-rfe"')
    c.rename("Arch&ive", "Old")
    c.subscribe("Old")
    c.unsubscribe("Old")
    c.status("INBOX", "(MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)")
    c.getquotaroot("INBOX")
    c.select("INBOX")
    c.append("INBOX", r"(\Seen $Junk)", imaplib.Time2Internaldate(1700000000),
             b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n")
    c.fetch("1:*", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
    c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (From Subject Date)] BODY[TEXT]<0.100>)")
    c.fetch("2", "(RFC822)")
    c.fetch("3", "(BINARY.PEEK[1] BINARY.SIZE[1])")
    c.uid("FETCH", "1:*", "(UID FLAGS MODSEQ)", "(CHANGEDSINCE 1)")
    c.search(None, "ALL")
    c.search("UTF-8", "SUBJECT", '"caf\u00e9"'.encode())
    c.search(None, '(OR UNSEEN FLAGGED SINCE 1-Jan-2024 NOT FROM "bob")')
    c.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "UNDELETED")
    c.sort("(REVERSE DATE)", "UTF-8", "ALL")
    c.uid("SORT", "(SUBJECT)", "UTF-8", "UNSEEN")
    c.store("1:2", "+FLAGS.SILENT", r"(\Deleted)")
    c.uid("STORE", "5", "FLAGS", r"(\Seen \Answered)")
    c.copy("1", "Old")
    c.uid("COPY", "1:3", "Old")
    c.uid("MOVE", "4", "Trash")
    c.expunge()
    c.uid("EXPUNGE", "1:3")
    c.check()
    c.noop()
    c.close()
    c.select("Old", readonly=True)
    c.unselect()
    c.xatom("ID", '("name" "imaplib" "version" NIL)')
    c.delete("Old")
    c.logout()
    t.join(timeout=10)
    with open(os.path.join(HERE, "imaplib.bin"), "wb") as f:
        f.write(b"".join(log))

if __name__ == "__main__":
    main()
