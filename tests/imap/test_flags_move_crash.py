"""Durability of IMAP STORE (the store's update_flags path) and MOVE (RFC 6851) across kill -9:
several IMAPS clients STORE flags and UID MOVE messages between their own two mailboxes,
posternd is SIGKILLed at a random moment (seeded), restarted on the same data dir, and every
mailbox is read back over IMAP and compared with what the clients were told.

Each client thread owns two mailboxes and the messages in them, and works on one connection
one command at a time, so at the kill it has at most one command without a tagged reply.

STORE (UID STORE +FLAGS/-FLAGS/FLAGS, with and without .SILENT):
  acked     -- the flags it set are there after restart, unless a later acked STORE on the
               same message changed them again;
  in doubt  -- all or nothing over the messages it named: update_flags computes the new flags
               of every named message under the index lock and writes them as one
               Record::FlagsBatch (daemon/store/src/lib.rs, Store::update_flags), one
               checksummed record, so either the record is replayed or none of it is.
MOVE (UID MOVE):
  acked     -- each message is in the target exactly once, at the UID of COPYUID, and not in
               the source;
  in doubt  -- each message is in exactly one of the two mailboxes (never both, never neither).
No message appears or disappears. MODSEQ (CONDSTORE) never goes backwards across a restart:
every MODSEQ a client was shown is at most the message's MODSEQ after restart (where it did
not move), each mailbox's HIGHESTMODSEQ is at least the largest MODSEQ shown in it, and a
STORE after restart gets a MODSEQ above all of them.
After each check the in-doubt outcomes are fixed; rounds accumulate on one data dir, in runs
of ROUNDS_PER_DIR seeds.
"""

from __future__ import annotations

import random
import re
import shutil
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
from harness import ALICE, BOB, Closed, Server
from imapsupport import RawIMAP

SEEDS = range(10)
ROUNDS_PER_DIR = 5
THREADS = 4
MESSAGES_PER_THREAD = 24
FLAG_POOL = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "$Later"]
MSGID_RE = re.compile(rb"Message-Id: <([^>]+)>", re.I)
UID_RE = re.compile(rb"\bUID (\d+)")
MODSEQ_RE = re.compile(rb"\bMODSEQ \((\d+)\)")
FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
COPYUID_RE = re.compile(rb"\[COPYUID \d+ ([0-9:,]+) ([0-9:,]+)\]")
HIGHESTMODSEQ_RE = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")
APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
DEADLINE = 30.0

Flags = frozenset


class Gone(Exception):
    """The connection broke (the daemon was killed)."""


def parse_flags(raw: bytes) -> Flags:
    return Flags(f for f in raw.decode().split() if f != "\\Recent")


def expand(seqset: bytes) -> list[int]:
    out = []
    for part in seqset.decode().split(","):
        lo, _, hi = part.partition(":")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def apply_store(cur: Flags, op: str, flags: Flags) -> Flags:
    if op == "+":
        return cur | flags
    if op == "-":
        return cur - flags
    return flags


def user_of(tid: int) -> str:
    return ALICE if tid % 2 == 0 else BOB


def mailboxes_of(tid: int) -> tuple[str, str]:
    return f"T{tid}a", f"T{tid}b"


@dataclass
class Msg:
    mailbox: str
    uid: int
    flags: Flags
    modseq: int = 0  # the largest MODSEQ a client was shown at this (mailbox, uid)


@dataclass
class Ledger:
    msgs: dict[str, Msg] = field(default_factory=dict)  # Message-Id -> what clients were told
    # In-doubt commands at the kill, one per thread at most.
    store_doubt: list[dict[str, tuple[Flags, Flags]]] = field(default_factory=list)
    move_doubt: list[dict[str, tuple[str, int, str]]] = field(default_factory=list)
    highest: dict[tuple[str, str], int] = field(default_factory=dict)  # (user, mbox) -> MODSEQ
    acked: dict[str, int] = field(default_factory=lambda: {"store": 0, "move": 0})


class Client:
    """One thread's IMAPS session over imapsupport.RawIMAP; every socket error is Gone."""

    def __init__(self, port: int, user: str):
        try:
            self.c = RawIMAP(port, tls=True, timeout=DEADLINE)
            self.c.login(user)
        except (Closed, OSError, ssl.SSLError) as e:
            raise Gone(str(e)) from e

    def cmd(self, line: str, literals=None):
        try:
            return self.c.cmd(line, literals)
        except (Closed, OSError, ssl.SSLError) as e:
            raise Gone(str(e)) from e

    def close(self):
        self.c.close()


def note_modseqs(ledger: Ledger, user: str, mbox: str, by_uid: dict[int, str], untagged):
    """Records every MODSEQ shown in untagged FETCH responses of the selected mailbox."""
    for r in untagged:
        if b" FETCH (" not in r:
            continue
        u, m = UID_RE.search(r), MODSEQ_RE.search(r)
        if not (u and m):
            continue
        msgid = by_uid.get(int(u.group(1)))
        assert msgid is not None, f"FETCH for a UID nobody put in {mbox}: {r!r}"
        msg = ledger.msgs[msgid]
        msg.modseq = max(msg.modseq, int(m.group(1)))
        key = (user, mbox)
        ledger.highest[key] = max(ledger.highest.get(key, 0), int(m.group(1)))


def client(port, tid, seed, stop, ledger: Ledger, errors, progress):
    """STORE and UID MOVE at random on the thread's own messages until the daemon is gone."""
    rng = random.Random(f"{seed}-{tid}")
    user = user_of(tid)
    boxes = mailboxes_of(tid)
    mine = {i for i, m in ledger.msgs.items() if m.mailbox in boxes}
    try:
        c = Client(port, user)
    except Gone:
        return
    try:
        cur = rng.choice(boxes)
        r = c.cmd(f"SELECT {cur} (CONDSTORE)")
        assert r.status == "OK", r
        while not stop.is_set():
            here = {ledger.msgs[i].uid: i for i in mine if ledger.msgs[i].mailbox == cur}
            roll = rng.random()
            if roll < 0.08 or not here:
                cur = boxes[1] if cur == boxes[0] else boxes[0]
                r = c.cmd(f"SELECT {cur} (CONDSTORE)")
                assert r.status == "OK", r
                m = HIGHESTMODSEQ_RE.search(r.text().encode())
                assert m, r
                key = (user, cur)
                assert int(m.group(1)) >= ledger.highest.get(key, 0), \
                    f"{cur}: HIGHESTMODSEQ went back: {m.group(1)} < {ledger.highest[key]}"
                ledger.highest[key] = int(m.group(1))
                continue
            uids = sorted(rng.sample(sorted(here), min(len(here), rng.randint(1, 5))))
            uidset = ",".join(map(str, uids))
            if roll < 0.62:
                op = rng.choice("+-=")
                flags = Flags(rng.sample(FLAG_POOL, rng.randint(0 if op == "=" else 1, 3)))
                silent = rng.random() < 0.5
                item = {"+": "+FLAGS", "-": "-FLAGS", "=": "FLAGS"}[op] + \
                    (".SILENT" if silent else "")
                change = {here[u]: (ledger.msgs[here[u]].flags,
                                    apply_store(ledger.msgs[here[u]].flags, op, flags))
                          for u in uids}
                ledger.store_doubt.append(change)
                r = c.cmd(f"UID STORE {uidset} {item} ({' '.join(sorted(flags))})")
                ledger.store_doubt.remove(change)
                assert r.status == "OK", r
                for msgid, (_, after) in change.items():
                    ledger.msgs[msgid].flags = after
                note_modseqs(ledger, user, cur, here, r.untagged)
                if not silent:
                    for u in r.untagged:
                        fl = FLAGS_RE.search(u)
                        if fl and b" FETCH (" in u:
                            msgid = here[int(UID_RE.search(u).group(1))]
                            assert parse_flags(fl.group(1)) == ledger.msgs[msgid].flags, \
                                f"STORE answered {u!r}, expected {ledger.msgs[msgid].flags}"
                ledger.acked["store"] += 1
            elif roll < 0.9:
                dst = boxes[1] if cur == boxes[0] else boxes[0]
                change = {here[u]: (cur, u, dst) for u in uids}
                ledger.move_doubt.append(change)
                r = c.cmd(f"UID MOVE {uidset} {dst}")
                ledger.move_doubt.remove(change)
                assert r.status == "OK", r
                m = COPYUID_RE.search(r.text().encode())
                assert m, f"MOVE without COPYUID: {r}"
                src, new = expand(m.group(1)), expand(m.group(2))
                assert sorted(src) == uids and len(new) == len(src), r
                for s, d in zip(src, new):
                    msg = ledger.msgs[here[s]]
                    msg.mailbox, msg.uid, msg.modseq = dst, d, 0
                ledger.acked["move"] += 1
            else:
                r = c.cmd(f"UID FETCH {uidset} (UID FLAGS MODSEQ)")
                assert r.status == "OK", r
                assert len(r.untagged) == len(uids), r
                for u in r.untagged:
                    msgid = here[int(UID_RE.search(u).group(1))]
                    got = parse_flags(FLAGS_RE.search(u).group(1))
                    assert got == ledger.msgs[msgid].flags, \
                        f"{msgid}: FETCH {u!r}, expected {sorted(ledger.msgs[msgid].flags)}"
                note_modseqs(ledger, user, cur, here, r.untagged)
            progress[tid] += 1
    except Gone:
        return
    except AssertionError as e:
        errors.append(f"thread {tid}: {e}")
    finally:
        c.close()


def scan(port: int) -> tuple[dict[str, list[Msg]], dict[tuple[str, str], int]]:
    """Every message in every thread mailbox: Message-Id -> [Msg], and HIGHESTMODSEQs."""
    seen: dict[str, list[Msg]] = {}
    highest = {}
    for user in (ALICE, BOB):
        c = Client(port, user)
        try:
            for tid in range(THREADS):
                if user_of(tid) != user:
                    continue
                for mbox in mailboxes_of(tid):
                    r = c.cmd(f"SELECT {mbox} (CONDSTORE)")
                    assert r.status == "OK", r
                    highest[(user, mbox)] = int(HIGHESTMODSEQ_RE.search(r.text().encode())
                                                .group(1))
                    r = c.cmd("UID FETCH 1:* (UID FLAGS MODSEQ "
                              "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                    assert r.status == "OK", r
                    for u in r.untagged:
                        if b" FETCH (" not in u:
                            continue
                        ids = MSGID_RE.findall(u)
                        assert len(ids) == 1, f"{mbox}: unexpected message {u[:300]!r}"
                        seen.setdefault(ids[0].decode(), []).append(Msg(
                            mbox, int(UID_RE.search(u).group(1)),
                            parse_flags(FLAGS_RE.search(u).group(1)),
                            int(MODSEQ_RE.search(u).group(1))))
        finally:
            c.close()
    return seen, highest


def check(port: int, ledger: Ledger) -> dict:
    seen, highest = scan(port)
    unknown = set(seen) - set(ledger.msgs)
    assert not unknown, f"messages nobody put there: {sorted(unknown)[:10]}"
    lost = sorted(set(ledger.msgs) - set(seen))
    assert not lost, f"{len(lost)} messages lost: {lost[:10]}"
    twice = {i: [(m.mailbox, m.uid) for m in ms] for i, ms in seen.items() if len(ms) != 1}
    doubt_moved = {i for change in ledger.move_doubt for i in change}
    assert not twice, "messages in more than one place: " + ", ".join(
        f"{i} at {places} ({'in-doubt MOVE' if i in doubt_moved else 'no MOVE in doubt'})"
        for i, places in twice.items())
    got = {i: ms[0] for i, ms in seen.items()}

    # In-doubt MOVEs: each message in the source (same UID) or the target, never both.
    moved = stayed = 0
    in_move = {}
    for change in ledger.move_doubt:
        for msgid, (src, uid, dst) in change.items():
            g = got[msgid]
            if g.mailbox == src:
                assert g.uid == uid, f"{msgid}: UID in {src} changed {uid} -> {g.uid}"
                stayed += 1
            else:
                assert g.mailbox == dst, f"{msgid}: in {g.mailbox}, moved {src} -> {dst}"
                in_move[msgid] = g
                moved += 1
    # Everything else: where the clients were told, with MODSEQ not below what they saw.
    for msgid, want in ledger.msgs.items():
        g = got[msgid]
        if msgid in in_move:
            continue
        assert (g.mailbox, g.uid) == (want.mailbox, want.uid), \
            f"{msgid}: at {g.mailbox}/{g.uid}, acknowledged at {want.mailbox}/{want.uid}"
        assert g.modseq >= want.modseq, \
            f"{msgid}: MODSEQ went back across restart: {g.modseq} < {want.modseq}"
    for key, h in ledger.highest.items():
        assert highest[key] >= h, f"{key}: HIGHESTMODSEQ went back: {highest[key]} < {h}"

    # Flags: acked STOREs hold; an in-doubt STORE is all or nothing (one FlagsBatch record).
    doubtful = set()
    applied = undone = 0
    for change in ledger.store_doubt:
        before = all(got[i].flags == b for i, (b, a) in change.items())
        after = all(got[i].flags == a for i, (b, a) in change.items())
        assert before or after, "in-doubt STORE half applied: " + "; ".join(
            f"{i}: {sorted(got[i].flags)} (before {sorted(b)}, after {sorted(a)})"
            for i, (b, a) in change.items())
        applied += after and not before
        undone += before and not after
        doubtful |= set(change)
    for msgid, want in ledger.msgs.items():
        if msgid not in doubtful:
            assert got[msgid].flags == want.flags, \
                f"{msgid}: flags {sorted(got[msgid].flags)}, acknowledged {sorted(want.flags)}"

    # Fix the outcomes: the state read back is now what clients were told.
    for msgid, g in got.items():
        ledger.msgs[msgid] = g
    ledger.highest = dict(highest)
    ledger.store_doubt.clear()
    ledger.move_doubt.clear()
    return {"store_doubt_applied": applied, "store_doubt_undone": undone,
            "move_doubt_moved": moved, "move_doubt_stayed": stayed}


def store_after_restart(port: int, ledger: Ledger) -> None:
    """A STORE after restart gets a MODSEQ above every MODSEQ shown before (CONDSTORE)."""
    for tid in range(THREADS):
        user = user_of(tid)
        c = Client(port, user)
        try:
            for mbox in mailboxes_of(tid):
                here = sorted((m.uid, i) for i, m in ledger.msgs.items() if m.mailbox == mbox)
                if not here:
                    continue
                uid, msgid = here[0]
                assert c.cmd(f"SELECT {mbox} (CONDSTORE)").status == "OK"
                msg = ledger.msgs[msgid]
                new = msg.flags ^ {"$Later"}
                r = c.cmd(f"UID STORE {uid} FLAGS ({' '.join(sorted(new))})")
                assert r.status == "OK", r
                m = MODSEQ_RE.search(r.text().encode())
                assert m, r
                top = ledger.highest.get((user, mbox), 0)
                assert int(m.group(1)) > top, \
                    f"{mbox}: STORE after restart got MODSEQ {m.group(1)}, not above {top}"
                msg.flags, msg.modseq = Flags(new), int(m.group(1))
                ledger.highest[(user, mbox)] = msg.modseq
        finally:
            c.close()


def populate(srv: Server, ledger: Ledger, gen: int) -> None:
    """Each thread's two mailboxes, with MESSAGES_PER_THREAD messages in the first."""
    rng = random.Random(f"populate-{gen}")
    for tid in range(THREADS):
        user = user_of(tid)
        c = Client(srv.ports.imaps, user)
        try:
            a, b = mailboxes_of(tid)
            for mbox in (a, b):
                assert c.cmd(f"CREATE {mbox}").status == "OK"
            for n in range(MESSAGES_PER_THREAD):
                msgid = f"g{gen}-t{tid}-m{n}@flags-move.test"
                body = (f"From: <sender@remote.test>\r\nTo: <{user}>\r\nSubject: m{n}\r\n"
                        f"Message-Id: <{msgid}>\r\n\r\nbody {n}\r\n").encode()
                flags = Flags(f for f in FLAG_POOL if rng.random() < 0.3)
                r = c.cmd(f"APPEND {a} ({' '.join(sorted(flags))}) {{{len(body)}}}", [body])
                assert r.status == "OK", r
                ledger.msgs[msgid] = Msg(a, int(APPENDUID_RE.search(r.tagged).group(1)), flags)
        finally:
            c.close()


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
        self.server.start()
        populate(self.server, self.ledger, self.generation)
        check(self.server.ports.imaps, self.ledger)
        self.server.stop()

    def discard(self):
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.root, ignore_errors=True)
            self.server = None


@pytest.fixture(scope="module")
def crash_state(tmp_path_factory):
    st = CrashState(tmp_path_factory.mktemp("flags-move-crash"))
    yield st
    st.discard()


@pytest.mark.parametrize("seed", SEEDS)
def test_flags_move_crash_round(crash_state, seed):
    st = crash_state
    if st.server is None or seed % ROUNDS_PER_DIR == 0:
        st.fresh()
    srv = st.server
    ledger = st.ledger
    print(f"seed {seed} (data dir generation {st.generation})")
    ok = False
    try:
        rng = random.Random(seed * 7919 + 11)
        srv.start()
        stop = threading.Event()
        errors: list[str] = []
        progress = [0] * THREADS
        threads = [threading.Thread(target=client, args=(srv.ports.imaps, t, seed, stop, ledger,
                                                         errors, progress), daemon=True)
                   for t in range(THREADS)]
        for t in threads:
            t.start()
        # Kill at a random moment once every client works (logins take a while when loaded).
        harness.wait_until(lambda: all(progress) or errors, 60, 0.02, "every client working")
        time.sleep(rng.uniform(0.05, 1.5))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(DEADLINE + 5)
            assert not t.is_alive(), "client thread stuck after the kill"
        assert not errors, errors

        srv.start()
        in_doubt = (sum(map(len, ledger.store_doubt)), sum(map(len, ledger.move_doubt)))
        stats = check(srv.ports.imaps, ledger)
        store_after_restart(srv.ports.imaps, ledger)
        srv.stop()
        print(f"seed {seed}: commands {sum(progress)}, acked {ledger.acked}, in doubt "
              f"(store msgs, move msgs) {in_doubt}, {stats}")
        ok = True
    finally:
        if srv.running:
            srv.stop()
        if not ok:
            print(srv.log_tail(300))
            st.server = None
