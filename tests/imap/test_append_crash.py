"""Durability of IMAP APPEND (DESIGN 3.3: an OK to APPEND only once the message is on stable
storage): several IMAPS clients stream APPENDs, posternd is SIGKILLed at a random moment,
restarted on the same data dir, and the mailboxes are exported and compared.

Per message the client knows one of:
  acked     -- got the tagged OK: stored exactly once, byte for byte, with its flags (and at the
               UID of APPENDUID when the server sent one), in every later round too;
  in_doubt  -- the whole literal was sent, no tagged reply: stored at most once; after the first
               check its state is fixed;
  failed    -- the literal was not complete (or NO/BAD came back): never stored.
No other message may appear. Rounds accumulate on one data dir, in runs of ROUNDS_PER_DIR seeds.
"""

from __future__ import annotations

import base64
import random
import re
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
from harness import ALICE, BOB, HOST, PASSWORDS, Server, client_tls_context

SEEDS = range(20)
ROUNDS_PER_DIR = 5
THREADS = 6
MSGID_RE = re.compile(rb"^Message-Id: <([^>]+)>\r\n", re.M | re.I)
APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.I)
FLAG_LETTER = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Draft": "D"}


class Gone(Exception):
    """The connection broke (the daemon was killed)."""


class RawIMAP:
    """A byte-exact IMAPS client: the test must know exactly how much of a literal was sent."""

    def __init__(self, port: int, timeout: float = 10.0):
        try:
            sock = socket.create_connection((HOST, port), timeout=timeout)
            self.sock = client_tls_context().wrap_socket(sock)
        except (OSError, ssl.SSLError) as e:
            raise Gone(str(e)) from e
        self.buf = b""
        self.tags = 0
        greeting = self.line()
        assert greeting.startswith(b"* OK"), greeting

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (OSError, ssl.SSLError) as e:
                raise Gone(str(e)) from e
            if not chunk:
                raise Gone("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            raise Gone(str(e)) from e

    def tag(self) -> bytes:
        self.tags += 1
        return f"a{self.tags}".encode()

    def tagged(self, tag: bytes) -> bytes:
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line[len(tag) + 1:]

    def cmd(self, text: str) -> bytes:
        tag = self.tag()
        self.send(tag + b" " + text.encode() + b"\r\n")
        return self.tagged(tag)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Ledger:
    messages: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)  # id -> (user, bytes, letters)
    must: set[str] = field(default_factory=set)
    must_not: set[str] = field(default_factory=set)
    doubt: set[str] = field(default_factory=set)
    appenduid: dict[str, int] = field(default_factory=dict)
    uids: dict[str, int] = field(default_factory=dict)


def make_msg(rng: random.Random, msgid: str, user: str) -> bytes:
    size = rng.randint(512, 40 * 1024)
    payload = base64.b64encode(rng.randbytes(size * 3 // 4 + 3))[:size]
    lines = [payload[i:i + 76] for i in range(0, len(payload), 76)]
    return (f"From: <sender@remote.test>\r\nTo: <{user}>\r\nSubject: append {msgid}\r\n"
            f"Message-Id: <{msgid}>\r\n\r\n").encode() + b"\r\n".join(lines) + b"\r\n"


def client(port, prefix, tid, seed, stop, ledger, lock):
    rng = random.Random(f"{seed}-{tid}")
    user = ALICE if tid % 2 == 0 else BOB
    try:
        c = RawIMAP(port)
    except Gone:
        return
    try:
        r = c.cmd(f"LOGIN {quoted(user)} {quoted(PASSWORDS[user])}")
        if not r.startswith(b"OK"):
            return
        n = 0
        while not stop.is_set():
            n += 1
            msgid = f"{prefix}-t{tid}-n{n}@append.test"
            msg = make_msg(rng, msgid, user)
            flags = [f for f in ("\\Seen", "\\Flagged", "\\Answered") if rng.random() < 0.4]
            letters = "".join(sorted(FLAG_LETTER[f] for f in flags))
            with lock:
                ledger.messages[msgid] = (user, msg, letters)
                ledger.must_not.add(msgid)
            tag = c.tag()
            c.send(tag + f" APPEND INBOX ({' '.join(flags)}) {{{len(msg)}}}\r\n".encode())
            cont = c.line()
            if not cont.startswith(b"+"):
                return
            # The literal goes in pieces, slowly for some messages, so that kills land in the
            # middle of literals as well as between the last byte and the tagged OK.
            slow = rng.random() < 0.3
            pieces = sorted(rng.sample(range(1, len(msg)), 3))
            start = 0
            for end in pieces + [len(msg)]:
                c.send(msg[start:end])
                start = end
                if slow and end < len(msg):
                    time.sleep(0.02)
            c.send(b"\r\n")
            with lock:
                ledger.must_not.discard(msgid)
                ledger.doubt.add(msgid)
            reply = c.tagged(tag)
            with lock:
                ledger.doubt.discard(msgid)
                if reply.startswith(b"OK"):
                    ledger.must.add(msgid)
                    m = APPENDUID_RE.search(reply)
                    if m:
                        ledger.appenduid[msgid] = int(m.group(2))
                else:
                    ledger.must_not.add(msgid)
                    return
    except Gone:
        return
    finally:
        c.close()


def export_with_flags(srv: Server, user: str) -> list[tuple[int, str, bytes]]:
    out = srv.root / f"export-{time.monotonic_ns()}"
    harness.run_cli(srv.cfg, "mailbox", "export", "--user", user, "--maildir", str(out),
                    timeout=120)
    got = []
    for f in (out / "cur").iterdir():
        m = re.fullmatch(r"(\d+):2,([A-Z]*)", f.name)
        assert m, f.name
        got.append((int(m.group(1)), m.group(2), f.read_bytes()))
    shutil.rmtree(out, ignore_errors=True)
    return sorted(got)


def check(srv: Server, ledger: Ledger) -> dict:
    seen: dict[str, list[tuple[str, int, str, bytes]]] = {}
    for user in (ALICE, BOB):
        for uid, letters, body in export_with_flags(srv, user):
            ids = MSGID_RE.findall(body)
            assert len(ids) == 1, f"unexpected stored message: {body[:200]!r}"
            seen.setdefault(ids[0].decode(), []).append((user, uid, letters, body))
    unknown = set(seen) - set(ledger.messages)
    assert not unknown, f"messages nobody appended: {sorted(unknown)[:10]}"
    dup = {i: len(c) for i, c in seen.items() if len(c) != 1}
    assert not dup, f"stored more than once: {dup}"
    missing = sorted(ledger.must - set(seen))
    assert not missing, f"{len(missing)} APPENDs that got OK are lost: {missing[:10]}"
    resurrected = sorted(ledger.must_not & set(seen))
    assert not resurrected, f"{len(resurrected)} incomplete/refused APPENDs stored: {resurrected[:10]}"
    for msgid, [(user, uid, letters, body)] in seen.items():
        want_user, want_body, want_letters = ledger.messages[msgid]
        assert user == want_user, msgid
        assert body == want_body, f"{msgid}: stored bytes differ from the APPEND literal"
        assert letters == want_letters, f"{msgid}: flags {letters!r}, appended {want_letters!r}"
        if msgid in ledger.appenduid:
            assert uid == ledger.appenduid[msgid], f"{msgid}: UID {uid} but APPENDUID said {ledger.appenduid[msgid]}"
        if msgid in ledger.uids:
            assert uid == ledger.uids[msgid], f"UID of {msgid} changed"
        ledger.uids[msgid] = uid
    found = {i for i in ledger.doubt if i in seen}
    absent = len(ledger.doubt) - len(found)
    ledger.must |= found
    ledger.must_not |= ledger.doubt - found
    ledger.doubt.clear()
    return {"stored": len(seen), "in_doubt_found": len(found),
            "in_doubt_absent": absent}


class CrashState:
    def __init__(self, root: Path):
        self.root = root
        self.server: Server | None = None
        self.ledger = Ledger()
        self.generation = 0

    def fresh(self):
        self.discard()
        self.generation += 1
        self.server = Server(self.root / f"gen{self.generation}")
        self.ledger = Ledger()

    def discard(self):
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.root, ignore_errors=True)
            self.server = None


@pytest.fixture(scope="module")
def crash_state(tmp_path_factory):
    st = CrashState(tmp_path_factory.mktemp("append-crash"))
    yield st
    st.discard()


@pytest.mark.parametrize("seed", SEEDS)
def test_append_crash_round(crash_state, seed):
    st = crash_state
    if st.server is None or seed % ROUNDS_PER_DIR == 0:
        st.fresh()
    srv = st.server
    ledger = st.ledger
    ok = False
    try:
        rng = random.Random(seed * 104729 + 3)
        srv.start()
        lock = threading.Lock()
        stop = threading.Event()
        prefix = f"g{st.generation}-s{seed}"
        threads = [threading.Thread(target=client, args=(srv.ports.imaps, prefix, t, seed, stop,
                                                         ledger, lock), daemon=True)
                   for t in range(THREADS)]
        started = len(ledger.messages)
        for t in threads:
            t.start()
        # Kill at a random moment once APPENDs flow (logins take a while on a loaded machine).
        harness.wait_until(lambda: len(ledger.messages) > started, 30, 0.02, "a first APPEND")
        time.sleep(rng.uniform(0.05, 2.0))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "client thread stuck after the kill"

        # Recovery, then one more APPEND proves the restarted daemon works.
        srv.start()
        msgid = f"{prefix}-after@append.test"
        msg = make_msg(rng, msgid, ALICE)
        ledger.messages[msgid] = (ALICE, msg, "S")
        ledger.must_not.add(msgid)
        c = RawIMAP(srv.ports.imaps)
        try:
            assert c.cmd(f"LOGIN {quoted(ALICE)} {quoted(PASSWORDS[ALICE])}").startswith(b"OK")
            tag = c.tag()
            c.send(tag + f" APPEND INBOX (\\Seen) {{{len(msg)}}}\r\n".encode())
            assert c.line().startswith(b"+")
            c.send(msg + b"\r\n")
            reply = c.tagged(tag)
            assert reply.startswith(b"OK"), reply
        finally:
            c.close()
        ledger.must_not.discard(msgid)
        ledger.must.add(msgid)
        srv.stop()
        cut = sum(1 for i in ledger.must_not if i.startswith(prefix + "-t"))
        stats = check(srv, ledger)
        stats["cut_mid_literal"] = cut
        print(f"seed {seed}: {stats}, acked total {len(ledger.must)}")
        assert len(ledger.must) > 0
        ok = True
    finally:
        if srv.running:
            srv.stop()
        if not ok:
            print(srv.log_tail(300))
            st.server = None
