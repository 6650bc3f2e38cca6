"""Power cut of the appliance during a stream of deliveries (DESIGN.md 3.3, 4).

Each round: the client threads of tests/smtp/test_crash.py (through tests/qemu/
test_store_raid.py `stream_and_interrupt`) deliver on the MX port 25 to the admin address,
keeping a ledger: a message that got its 250 must survive. At a random moment after at least
10 acknowledgements QEMU gets SIGKILL (Appliance.power_cut: no shutdown, nothing flushed that
the guest had not written). The same run directory boots again (same system disk copy, same
NVMe data disks, same forwarded ports): the init assembles the dirty RAID1, checks and mounts
the file system, posternd recovers its store. Then, over IMAPS, test_crash.check against the one
ledger of the module: every acknowledged message is in the admin's INBOX exactly once, byte for
byte, with a UID that never changes; nothing refused or never sent; an in-doubt one at most
once. hwmond's alert mails (from hwmond@) are not part of the ledger and are left aside.

Rounds: POSTERN_IMAGE_POWER_CUT_ROUNDS (default 5), each with a printed seed; replay with
POSTERN_IMAGE_POWER_CUT_SEEDS=S1,S2,... A power cut here is a guest power cut; the host keeps
its page cache (qemu/README.md explains what that models and what not).
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
import types

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "smtp"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "qemu"))

import test_crash  # noqa: E402
from harness import REMOTE_SENDER, split_trace  # noqa: E402
from test_crash import Ledger, check  # noqa: E402
from test_store_raid import stream_and_interrupt  # noqa: E402


def _seeds() -> list[int]:
    if os.environ.get("POSTERN_IMAGE_POWER_CUT_SEEDS"):
        return [int(s) for s in os.environ["POSTERN_IMAGE_POWER_CUT_SEEDS"].split(",")]
    rounds = int(os.environ.get("POSTERN_IMAGE_POWER_CUT_ROUNDS", "5"))
    return [random.SystemRandom().randrange(1 << 32) for _ in range(rounds)]


SEEDS = _seeds()
# A reboot after a power cut: no provisioning, but fsck of the data file system and recovery.
BANNER_TIMEOUT = float(os.environ.get("POSTERN_IMAGE_BANNER_TIMEOUT", "900"))
MSGID_RE = re.compile(rb"^Message-Id: <([^>]+)>\r\n", re.M | re.I)


class Ledgered:
    """What stream_and_interrupt and test_crash.check need: the ledger, the MX port and the
    admin's INBOX as {recipient: [(UID, stored bytes)]}."""

    def __init__(self, box) -> None:
        self.box = box
        self.ledger = Ledger()
        self.smtp_port = box.ports[25]

    def export_all_uids(self) -> dict[str, list[tuple[int, bytes]]]:
        mine = []
        for uid, raw in self.box.inbox(timeout=300):
            rp, _, rest = split_trace(raw)
            ids = MSGID_RE.findall(rest)
            if rp != REMOTE_SENDER.encode() and not any(i.endswith(b"@crash.test") for i in ids):
                continue  # an alert from hwmond, not a message of the stream
            mine.append((uid, raw))
        return {self.box.address: mine}


@pytest.fixture(scope="module")
def ledgered(box) -> Ledgered:
    return Ledgered(box)


@pytest.mark.parametrize("round_no,seed", [pytest.param(i, s, id=f"round{i}")
                                            for i, s in enumerate(SEEDS)])
def test_power_cut_during_deliveries(ledgered, box, monkeypatch, round_no, seed):
    print(f"power cut round {round_no}: seed {seed} "
          f"(replay: POSTERN_IMAGE_POWER_CUT_SEEDS={seed})")
    # test_crash's clients send to ALICE or BOB: here both are the appliance's admin.
    monkeypatch.setattr(test_crash, "ALICE", box.address)
    monkeypatch.setattr(test_crash, "BOB", box.address)
    env = types.SimpleNamespace(ledger=ledgered.ledger, smtp_port=box.ports[25])
    acked, doubt = stream_and_interrupt(env, f"cut{round_no}-{seed}", seed,
                                        box.app.power_cut, "power cut")
    print(f"  {acked} acknowledged in this stream, {doubt} in doubt at the cut")
    t0 = time.monotonic()
    box.app.reboot_after_power_cut()
    t = box.app.wait_banner(BANNER_TIMEOUT)
    box.app.wait_ready(120)
    print(f"  SMTP banner {t:.1f} s after the new QEMU started "
          f"({time.monotonic() - t0:.1f} s after the cut)")
    result = check(ledgered, ledgered.ledger)
    print(f"  after recovery: {result}")
    assert result["stored"] >= len(ledgered.ledger.must)
