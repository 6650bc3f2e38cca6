"""Durability (DESIGN 3.3): SIGKILL posternd during a stream of deliveries, restart, and compare.

Each round: 8 client threads stream deliveries to alice/bob; at a random moment posternd is
SIGKILLed; it is restarted on the same data dir (recovery), one more message is delivered to prove
it works, it is stopped, and both INBOXes are exported. Per message the client knows one of:
  acked     -- got 250 after the final dot: must be stored exactly once, byte for byte, forever;
  in_doubt  -- final dot sent, no reply: stored at most once; after the first check its state is
               fixed (present stays present exactly once, absent stays absent);
  failed    -- never completed (or got a non-2xx reply after the dot): must never be stored.
No other message may appear. Rounds accumulate on one data dir per backend.
"""

from __future__ import annotations

import base64
import random
import re
import shutil
import smtplib
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from harness import ALICE, BOB, HOST, REMOTE_SENDER, Server, dot_stuff, split_trace

SEEDS = range(20)
# Rounds accumulate on one data dir (recovery over recovery), in runs of this many seeds so the
# mailboxes stay small enough for quick exports.
ROUNDS_PER_DIR = 5
THREADS = 8
MSGID_RE = re.compile(rb"^Message-Id: <([^>]+)>\r\n", re.M | re.I)


@dataclass
class Ledger:
    messages: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (rcpt, bytes)
    must: set[str] = field(default_factory=set)       # present exactly once
    must_not: set[str] = field(default_factory=set)   # absent
    doubt: set[str] = field(default_factory=set)      # not yet checked once
    uids: dict[str, int] = field(default_factory=dict)  # id -> UID seen at the last check
    max_uid: dict[str, int] = field(default_factory=dict)  # user -> highest UID seen


class CrashState:
    def __init__(self, root, backend):
        self.root = root
        self.backend = backend
        self.server: Server | None = None
        self.ledger = Ledger()
        self.generation = 0

    def fresh(self):
        self.discard()
        self.generation += 1
        self.server = Server(self.root / f"gen{self.generation}", backend=self.backend,
                             smtp={"timeout_command_secs": 30, "timeout_data_secs": 30})
        self.ledger = Ledger()

    def discard(self):
        """Remove a data dir whose rounds all passed (failing ones are kept for inspection)."""
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.root, ignore_errors=True)
            self.server = None


@pytest.fixture(scope="module")
def crash_states(tmp_path_factory):
    states: dict[str, CrashState] = {}
    yield states, tmp_path_factory
    for st in states.values():
        st.discard()


def make_msg(rng: random.Random, msgid: str, rcpt: str) -> bytes:
    size = rng.randint(1024, 30 * 1024)
    payload = base64.b64encode(rng.randbytes(size * 3 // 4 + 3))[:size]
    lines = [payload[i:i + 76] for i in range(0, len(payload), 76)]
    # A few dot-leading lines so dot-stuffing is part of the contract under test.
    if rng.random() < 0.3:
        lines.insert(rng.randrange(len(lines) + 1), b".dot-line")
    body = b"\r\n".join(lines) + b"\r\n"
    return (f"From: <{REMOTE_SENDER}>\r\nTo: <{rcpt}>\r\nSubject: crash {msgid}\r\n"
            f"Message-Id: <{msgid}>\r\n\r\n").encode() + body


def client(port, prefix, tid, seed, stop, ledger, lock):
    rng = random.Random(f"{seed}-{tid}")
    n = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP(HOST, port, local_hostname="crash.test", timeout=10)
        except (OSError, smtplib.SMTPException):
            return  # server gone
        try:
            s.ehlo()
            while not stop.is_set():
                n += 1
                msgid = f"{prefix}-t{tid}-n{n}@crash.test"
                rcpt = ALICE if rng.random() < 0.6 else BOB
                msg = make_msg(rng, msgid, rcpt)
                with lock:
                    ledger.messages[msgid] = (rcpt, msg)
                    ledger.must_not.add(msgid)  # until the dot has been sent
                if s.mail(REMOTE_SENDER)[0] != 250 or s.rcpt(rcpt)[0] != 250:
                    return
                if s.docmd("DATA")[0] != 354:
                    return
                s.send(dot_stuff(msg) + b".\r\n")
                # From here on the server may have the whole message.
                with lock:
                    ledger.must_not.discard(msgid)
                    ledger.doubt.add(msgid)
                code, _ = s.getreply()
                with lock:
                    ledger.doubt.discard(msgid)
                    if code == 250:
                        ledger.must.add(msgid)
                    else:
                        ledger.must_not.add(msgid)
                        return
        except (smtplib.SMTPException, OSError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass


def check(srv: Server, ledger: Ledger) -> dict:
    got = srv.export_all_uids()
    seen: dict[str, list[tuple[str, bytes]]] = {}
    new_uids: dict[str, int] = {}
    for user, msgs in got.items():
        for uid, m in msgs:
            rp, _, rest = split_trace(m)
            assert rp == REMOTE_SENDER.encode()
            ids = MSGID_RE.findall(rest)
            assert len(ids) == 1, f"unexpected stored message: {rest[:300]!r}"
            msgid = ids[0].decode()
            seen.setdefault(msgid, []).append((user, rest))
            new_uids[msgid] = uid
    unknown = set(seen) - set(ledger.messages)
    assert not unknown, f"messages nobody sent: {sorted(unknown)[:10]}"
    for msgid, copies in seen.items():
        assert len(copies) == 1, f"{msgid} stored {len(copies)} times"
    missing = sorted(i for i in ledger.must if i not in seen)
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:10]}"
    resurrected = sorted(i for i in ledger.must_not if i in seen)
    assert not resurrected, f"{len(resurrected)} unacknowledged/refused messages stored: {resurrected[:10]}"
    for msgid, [(user, rest)] in seen.items():
        rcpt, sent = ledger.messages[msgid]
        assert user == rcpt, f"{msgid} delivered to {user}, sent to {rcpt}"
        assert rest == sent, f"{msgid} stored bytes differ from the bytes sent"
    # RFC 9051 2.3.1.1: UIDs never change, and a message added later gets a higher UID.
    for msgid, uid in new_uids.items():
        user = seen[msgid][0][0]
        if msgid in ledger.uids:
            assert ledger.uids[msgid] == uid, f"UID of {msgid} changed {ledger.uids[msgid]} -> {uid}"
        else:
            assert uid > ledger.max_uid.get(user, 0), \
                f"new message {msgid} got UID {uid} <= earlier {ledger.max_uid.get(user)}"
    for msgid, uid in new_uids.items():
        user = seen[msgid][0][0]
        ledger.uids[msgid] = uid
        ledger.max_uid[user] = max(ledger.max_uid.get(user, 0), uid)
    # In-doubt messages are now decided for good.
    found = {i for i in ledger.doubt if i in seen}
    ledger.must |= found
    ledger.must_not |= ledger.doubt - found
    ledger.doubt.clear()
    return {"stored": len(seen), "in_doubt_found": len(found)}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("backend", ["io_uring", "portable"])
def test_crash_round(crash_states, backend, seed):
    states, tmp_path_factory = crash_states
    if backend not in states:
        states[backend] = CrashState(tmp_path_factory.mktemp(f"crash-{backend}"), backend)
    st = states[backend]
    if st.server is None or seed % ROUNDS_PER_DIR == 0:
        st.fresh()
    srv = st.server
    ok = False
    try:
        rng = random.Random(seed * 7919 + (1 if backend == "io_uring" else 2))
        srv.start()
        ledger = st.ledger
        lock = threading.Lock()
        stop = threading.Event()
        prefix = f"{backend}-g{st.generation}-s{seed}"
        threads = [threading.Thread(target=client, args=(srv.ports.mx, prefix, t, seed, stop,
                                                         ledger, lock), daemon=True)
                   for t in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 2.5))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "client thread stuck after the kill"

        # Recovery, then prove the recovered daemon accepts mail.
        srv.start()
        msgid = f"{prefix}-after@crash.test"
        msg = make_msg(rng, msgid, ALICE)
        ledger.messages[msgid] = (ALICE, msg)
        ledger.must_not.add(msgid)
        with smtplib.SMTP(HOST, srv.ports.mx, timeout=30) as s:
            assert s.sendmail(REMOTE_SENDER, [ALICE], msg) == {}
        ledger.must_not.discard(msgid)
        ledger.must.add(msgid)
        srv.stop()
        stats = check(srv, ledger)
        print(f"{backend} seed {seed}: {stats}, acked total {len(ledger.must)}")
        ok = True
    finally:
        if srv.running:
            srv.stop()
        if not ok:
            print(srv.log_tail(300))
            # Do not carry a broken data dir into the next seed.
            st.server = None
