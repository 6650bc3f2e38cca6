"""posternd's store on a real md RAID5 in the QEMU guest (DESIGN.md 3.3, 3.8).

The store reads the md layout under its data directory from sysfs and aligns its writes to the
full stripe on RAID4/5/6 (daemon/store/src/stripe.rs; the fake-sysfs contract test is
daemon/store/tests/contract.rs `stripe_alignment_from_sysfs_fixture`). Here the md driver is
real: one guest (qemu/build-guest puts a static posternd and postern in it; qemu/run-guest
boots it with three extra virtio disks and a NIC on QEMU user networking whose only way in is
a hostfwd from 127.0.0.1 on the host to the guest's port 25).

- In the guest: `mdadm --create /dev/md5 --level=5 --raid-devices=3 --chunk=64` over the three
  disks, busybox mke2fs (ext2, mounted by the ext4 driver), posternd's data_dir on it.
- posternd's start log reports the md layout (raid5, chunk 65536, 2 data disks) and a stripe
  alignment of 131072; Python's smtplib on the host delivers 50 messages through the
  hostfwd (each gets 250); every segment file is a whole number of stripes (the configured
  segment_size, 1 MiB + 4 KiB, is not: the store rounds it up to the stripe), and walking the
  records in the segments (fetched from the guest) every batch starts and every written tail
  ends on a stripe boundary.
- kill -9 of posternd in the guest during a stream of deliveries (the client threads and the
  ledger of tests/smtp/test_crash.py), restart on the same array (recovery), one more delivery,
  then `postern mailbox export` in the guest: every message that got a 250 is there exactly
  once, byte for byte; nothing refused or never sent is (test_crash.check).
- The negative: a data_dir on an ext2 file system on the plain virtio disk (a block device, not
  md) gets alignment 4096 and segments of the configured size.
- Power cut (DESIGN.md 4), POWER_CUT_ROUNDS rounds with a random seed each: while the client
  threads of test_crash stream deliveries, at a random moment after at least 10 of them got
  their 250, QEMU gets SIGKILL (Guest.power_cut: no QMP quit, no guest shutdown). Then a new
  guest boots on the same run directory, so the same disk images (Guest.successor),
  `mdadm --assemble /dev/md5` of the dirty array (md resyncs it; the wait for the resync is
  bounded), `e2fsck -fy` of the ext2 that was not unmounted cleanly (as a boot does: ext2 has
  no journal, and unchecked its bitmaps can be stale, e.g. "inode doubly allocated" on the next
  create; the guest's busybox has no e2fsck, so the host's, with its shared libraries and
  loader, is copied into the guest), the mount, posternd (store recovery),
  one more delivery, export in the guest and test_crash.check against the one ledger of the
  whole module: every message that ever got a 250 is there exactly once, byte for byte, with
  its UID; nothing that did not get one; in-doubt ones at most once.
  Why this is a guest power cut: everything the guest kernel had not yet written to its virtual
  disks (page cache, md's stripe cache, a half-written stripe: the RAID5 write hole) is lost
  with the QEMU process. A write the guest saw complete is in the image file, because QEMU
  completes a virtio-blk write only after its pwrite() into the raw image returned; that is
  so for every cache= mode (run-guest uses cache=unsafe: only the flushes are skipped), and the
  test checks over QMP that each RAID5 disk is the raw image file itself (no snapshot or
  overlay that would die with QEMU). What fdatasync made durable in the guest thus survives.
  What it does not model: a crash of the host, which would also lose what sits in the host's
  page cache (with cache=unsafe the guest's flushes never reach the host's disk), nor a disk
  that lies about its own write cache.

Every wait is bounded; QEMU is killed at the end (Guest.close, and --pdeathsig if the test
process dies).

Run: python3 -m pytest -q tests/qemu/test_store_raid.py  (needs qemu-system-x86,
busybox-static, mdadm, socat, cpio; tests/run installs them)
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import random
import re
import shutil
import smtplib
import subprocess
import sys
import tarfile
import threading
import time
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "qemu"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "smtp"))

from harness import (ALICE, BOB, DOMAIN, HOST, PASSWORDS, REMOTE_SENDER, Ports,  # noqa: E402
                     render_config)
from postern_guest import (Guest, GuestError, build_guest, free_port,  # noqa: E402
                           missing_tools)
from test_crash import Ledger, check, client, make_msg  # noqa: E402

CHUNK = 64 * 1024
RAID_DISKS = 3
STRIPE = CHUNK * (RAID_DISKS - 1)          # 131072
# Not a multiple of the stripe: the store must round it up on md RAID5 (to 9 stripes) and keep
# it as it is (a multiple of 4096) elsewhere. The config's minimum is 1 MiB.
SEGMENT_SIZE = (1 << 20) + 4096
MD_MOUNT = "/mnt/md5"
PLAIN_MOUNT = "/mnt/plain"
WARMUP_MESSAGES = 50
CRASH_THREADS = 4
POWER_CUT_ROUNDS = 3
TIMES: dict[str, float] = {}
ROUNDS: list[str] = []      # one line per power-cut round, for the summary


class GuestPosternd:
    """posternd in the guest, its config written from the host, its data_dir at `data_dir`.

    The same interface as tests/harness.Server where test_crash.check needs one
    (export_all_uids)."""

    def __init__(self, guest: Guest, name: str, data_dir: str) -> None:
        self.guest = guest
        self.name = name
        self.data_dir = data_dir
        self.cfg = f"/etc/postern/{name}.toml"
        self.pidfile = f"/run/posternd-{name}.pid"
        self.starts = 0
        self.log_path = ""
        # The other listeners of harness.render_config bind the guest's loopback; MX listens
        # on the guest's NIC (port 25, the hostfwd target).
        ports = Ports(mx=25, submission=587, submissions=465, metrics=9090, imap=143, imaps=993,
                      pop3=110, pop3s=995)
        text = render_config(pathlib.Path(data_dir), ports, backend="auto",
                             smtp={"timeout_command_secs": 30, "timeout_data_secs": 30})
        for old, new in (('bind = ["127.0.0.1:25"]', 'bind = ["0.0.0.0:25"]'),
                         ("segment_size = 8388608", f"segment_size = {SEGMENT_SIZE}"),
                         ('format = "text"', 'format = "json"')):
            assert old in text, f"render_config no longer writes {old!r}"
            text = text.replace(old, new)
        guest.cmd(f"mkdir -p /etc/postern {data_dir}").check()
        guest.write_file(self.cfg, text.encode())

    def cli(self, *args: str, timeout: float = 120) -> str:
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
        return self.guest.cmd(f"postern --config {self.cfg} {quoted}", timeout=timeout).check().out

    def provision(self) -> None:
        self.cli("domain", "add", DOMAIN)
        for user in (ALICE, BOB):
            self.cli("user", "add", user, "--password", PASSWORDS[user])

    @property
    def running(self) -> bool:
        return self.guest.cmd(f"[ -f {self.pidfile} ] && kill -0 $(cat {self.pidfile})").rc == 0

    def start(self, timeout: float = 90) -> list[dict[str, Any]]:
        """Start posternd and wait for server.ready; returns the start log's JSON records."""
        self.starts += 1
        self.log_path = f"/var/log/posternd-{self.name}-{self.starts}.log"
        self.guest.cmd(
            f"NO_COLOR=1 setsid posternd --config {self.cfg} </dev/null >{self.log_path} 2>&1 &"
            f" echo $! > {self.pidfile}").check()
        deadline = time.monotonic() + timeout
        while True:
            records = self.log_records()
            if any(r.get("fields", {}).get("event") == "server.ready" for r in records):
                return records
            if not self.running:
                raise AssertionError(f"posternd {self.name} exited during start:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"posternd {self.name} not ready in {timeout} s:\n"
                                     f"{self.log()}")
            time.sleep(0.5)

    def _wait_gone(self, pid: str, timeout: float) -> bool:
        r = self.guest.cmd(f"n={int(timeout * 10)}; while kill -0 {pid} 2>/dev/null; do "
                           "[ $n -gt 0 ] || exit 1; n=$((n-1)); usleep 100000; done",
                           timeout=timeout + 30)
        return r.rc == 0

    def _signal(self, sig: str, timeout: float) -> None:
        pid = self.guest.cmd(f"cat {self.pidfile} 2>/dev/null").out.strip()
        if not pid:
            return
        self.guest.cmd(f"kill -{sig} {pid} 2>/dev/null")
        if not self._wait_gone(pid, timeout):
            self.guest.cmd(f"kill -KILL {pid} 2>/dev/null")
            assert self._wait_gone(pid, 30), f"posternd {pid} survives SIGKILL"
            raise AssertionError(f"posternd ignored SIG{sig} for {timeout} s:\n{self.log()}")
        self.guest.cmd(f"rm -f {self.pidfile}")

    def kill9(self) -> None:
        self._signal("KILL", 30)

    def stop(self) -> None:
        self._signal("TERM", 60)

    def log(self) -> str:
        if not self.log_path:
            return "(never started)"
        return self.guest.cmd(f"tail -n 200 {self.log_path}").out

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.guest.cmd(f"cat {self.log_path} 2>/dev/null").out.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def segment_sizes(self) -> dict[str, int]:
        r = self.guest.cmd(f"stat -c '%s %n' {self.data_dir}/store/shard-*/seg-*.log").check()
        return {path: int(size) for size, path in (ln.split(" ", 1) for ln in r.out.splitlines())}

    def segment_files(self) -> dict[str, bytes]:
        """The segment files (mostly preallocated zeros: they travel as one tar.gz)."""
        self.guest.cmd(f"cd {self.data_dir}/store && tar -czf /tmp/segments.tgz shard-*/seg-*.log",
                       timeout=120).check()
        out = {}
        with tarfile.open(fileobj=io.BytesIO(self.guest.read_file("/tmp/segments.tgz")),
                          mode="r:gz") as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member)
                if f is not None:
                    out[member.name] = f.read()
        return out

    def export_all_uids(self, users=(ALICE, BOB), restart: bool = False):
        """`postern mailbox export` of each user's INBOX in the guest (posternd stopped, as
        harness.Server does); the Maildirs come to the host as one tar.gz."""
        assert not restart
        self.stop()
        exp = "/tmp/export"
        cmds = [f"rm -rf {exp} {exp}.tgz", f"mkdir -p {exp}"]
        cmds += [f"postern --config {self.cfg} mailbox export --user {u} --maildir {exp}/{i}"
                 for i, u in enumerate(users)]
        cmds.append(f"tar -C {exp} -czf {exp}.tgz .")
        self.guest.cmd(" && ".join(cmds), timeout=300).check()
        data = self.guest.read_file(f"{exp}.tgz")
        out: dict[str, list[tuple[int, bytes]]] = {u: [] for u in users}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                m = re.fullmatch(r"(?:\./)?(\d+)/cur/(\d+):2(,.*)?", member.name)
                if not member.isfile():
                    continue
                assert m, f"unexpected file in the export: {member.name}"
                f = tar.extractfile(member)
                assert f is not None
                out[users[int(m.group(1))]].append((int(m.group(2)), f.read()))
        for user, files in out.items():
            files.sort()
            uids = [u for u, _ in files]
            assert len(set(uids)) == len(uids), f"duplicate UIDs for {user}: {uids}"
        return out


class Env:
    def __init__(self, guest: Guest, smtp_port: int) -> None:
        self.guest = guest
        self.smtp_port = smtp_port
        self.md: GuestPosternd | None = None
        self.ledger = Ledger()
        self.servers: list[GuestPosternd] = []

    def posternd_log(self) -> str:
        return "\n\n".join(f"== {s.name} ({s.log_path})\n{s.log()}" for s in self.servers)


# daemon/store/src/record.rs: a 24-byte header (magic "PSTN", version, kind, reserved, payload
# length LE u32, crc32c, sequence) and the payload; records of a batch are contiguous and a
# Padding record fills the batch up to the next alignment boundary.
RECORD_HEADER = 24
KIND_MESSAGE = 2
KIND_PADDING = 5


def walk_segment(seg: bytes) -> tuple[list[int], int, int]:
    """(offsets where a batch starts: 0 and the end of every Padding record, Message records,
    end of the last record)."""
    off, starts, messages = 0, [0], 0
    while off + RECORD_HEADER <= len(seg) and seg[off:off + 4] == b"PSTN":
        kind = seg[off + 5]
        off += RECORD_HEADER + int.from_bytes(seg[off + 8:off + 12], "little")
        if kind == KIND_PADDING:
            starts.append(off)
        elif kind == KIND_MESSAGE:
            messages += 1
    return starts, messages, off


def _event(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [r["fields"] for r in records if r.get("fields", {}).get("event") == name]
    assert found, f"no {name} in posternd's start log: {records}"
    return found[-1]


def _raid_members(guest: Guest) -> list[str]:
    """The RAID5 members: the run-guest disks with serials PSTN-R5-K (vdb.. today)."""
    r = guest.cmd("for b in /sys/block/vd*; do echo \"$(cat $b/serial) /dev/${b##*/}\"; done"
                  ).check()
    members = sorted(line.split()[1] for line in r.out.splitlines()
                     if line.startswith("PSTN-R5-"))
    assert len(members) == RAID_DISKS, r.out
    return members


def _require(*tools: str) -> None:
    if missing := missing_tools(*tools):
        pytest.fail(f"missing tools {missing} (tests/run installs qemu-system-x86, "
                    "busybox-static, mdadm, socat, cpio)")


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    _require("qemu-system-x86_64", "busybox", "mdadm", "socat", "cpio")
    t = time.monotonic()
    guest_dir = build_guest(posternd=True)
    TIMES["build"] = time.monotonic() - t
    smtp_port = free_port()
    guest = Guest(tmp_path_factory.mktemp("qemu-raid") / "guest", guest_dir=guest_dir,
                  append="postern.raid=0 postern.hwmond=0", mem_mib=512, disk_mib=128,
                  raid5_disks=RAID_DISKS, hostfwd={smtp_port: 25})
    e: Env | None = None
    try:
        guest.start()
        TIMES["boot"] = guest.wait_ready(timeout=240)
        t = time.monotonic()
        members = _raid_members(guest)
        guest.cmd("load-modules raid456 ext4", timeout=120).check()
        # Fresh zeroed images: parity of zeros is zero, so --assume-clean is true and skips the
        # initial resync (the array is a real RAID5 either way).
        guest.cmd(f"mdadm --create /dev/md5 --run --quiet --level=5 --raid-devices={RAID_DISKS}"
                  f" --chunk={CHUNK // 1024} --metadata=1.2 --bitmap=none --assume-clean "
                  + " ".join(members), timeout=120).check()
        guest.cmd(f"mke2fs -q -b 4096 /dev/md5 && mkdir -p {MD_MOUNT} && mount -t ext2 /dev/md5 {MD_MOUNT}",
                  timeout=120).check()
        TIMES["array"] = time.monotonic() - t
        e = Env(guest, smtp_port)
        yield e
    finally:
        guest.close()
        if e is not None:
            e.guest.close()  # the guest booted after the last power cut
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capman = request.config.pluginmanager.getplugin("capturemanager")
        if reporter is not None and capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line("")
                reporter.write_sep("-", "QEMU guest: posternd on md RAID5 (host clock)")
                for name, sec in TIMES.items():
                    reporter.write_line(f"{name}: {sec:.1f} s")
                for line in ROUNDS:
                    reporter.write_line(line)


def test_md_raid5_layout_in_sysfs(env: Env):
    g = env.guest
    r = g.cmd("cd /sys/block/md5/md && echo $(cat level chunk_size raid_disks degraded "
              "array_state)").check()
    level, chunk, disks, degraded, state = r.out.split()
    assert (level, chunk, disks, degraded) == ("raid5", str(CHUNK), str(RAID_DISKS), "0"), r.out
    assert state in ("clean", "active"), r.out
    assert "md5 : active raid5" in g.cmd("cat /proc/mdstat").check().out


def test_stripe_alignment_and_segments_on_raid5(env: Env):
    g = env.guest
    srv = GuestPosternd(g, "md5", f"{MD_MOUNT}/postern")
    env.md = srv
    env.servers.append(srv)
    srv.provision()
    t = time.monotonic()
    records = srv.start()
    TIMES["posternd start on md5"] = time.monotonic() - t
    layout = _event(records, "store.md_layout")
    assert (layout["level"], layout["chunk"], layout["data_disks"], layout["alignment"]) == \
        ("raid5", CHUNK, RAID_DISKS - 1, STRIPE), layout
    assert _event(records, "store.opened")["stripe_alignment"] == STRIPE

    rng = random.Random(5)
    ledger = env.ledger
    t = time.monotonic()
    with smtplib.SMTP(HOST, env.smtp_port, local_hostname="raid.test", timeout=60) as s:
        assert s.ehlo()[0] == 250
        for i in range(WARMUP_MESSAGES):
            msgid = f"raid5-warmup-{i}@raid.test"
            rcpt = ALICE if i % 3 else BOB
            msg = make_msg(rng, msgid, rcpt)
            ledger.messages[msgid] = (rcpt, msg)
            ledger.must_not.add(msgid)
            # sendmail raises unless the reply to the final dot is 2xx; assert 250 exactly.
            assert s.mail(REMOTE_SENDER)[0] == 250
            assert s.rcpt(rcpt)[0] == 250
            code, text = s.data(msg)
            assert code == 250, (code, text)
            ledger.must_not.discard(msgid)
            ledger.must.add(msgid)
    TIMES[f"{WARMUP_MESSAGES} deliveries over SMTP"] = time.monotonic() - t

    sizes = srv.segment_sizes()
    assert sizes, "no segment files"
    bad = {p: n for p, n in sizes.items() if n % STRIPE}
    assert not bad, f"segments not a whole number of {STRIPE}-byte stripes: {bad}"
    # The configured size rounded up to the stripe (it is not a multiple of it itself).
    assert SEGMENT_SIZE % STRIPE
    expected = -(-SEGMENT_SIZE // STRIPE) * STRIPE
    assert set(sizes.values()) == {expected}, sizes
    # Each sequential delivery is a batch of one, padded to a full stripe: 50 of them fill at
    # least 50 stripes, 6 segments of 9 stripes (unpadded, their ~750 KB would fit in the first
    # segment of each shard).
    stripes_per_segment = expected // STRIPE
    assert len(sizes) >= -(-WARMUP_MESSAGES // stripes_per_segment), sizes

    # On disk: every batch starts on a stripe boundary and every written tail ends on one.
    messages = batches = 0
    for path, seg in srv.segment_files().items():
        starts, n, end = walk_segment(seg)
        messages += n
        batches += len(starts) - 1
        assert all(o % STRIPE == 0 for o in starts), f"{path}: batch starts {starts}"
        assert end % STRIPE == 0, f"{path}: records end at {end}"
        assert not seg[end:].strip(b"\0"), f"{path}: bytes after the last record at {end}"
    assert messages == WARMUP_MESSAGES
    # A padded batch per delivery (the seeded sizes never end exactly on a stripe).
    assert batches >= WARMUP_MESSAGES


def stream_and_interrupt(env: Env, prefix: str, seed: int, interrupt, what: str) -> tuple[int, int]:
    """Client threads (tests/smtp/test_crash.py `client`) stream deliveries into the module's
    ledger; once at least 10 of this stream's messages got their 250, and after a random
    delay, `interrupt()` (kill -9 of posternd, or a power cut). Returns (acked during the
    stream, in doubt at the interruption)."""
    ledger = env.ledger
    rng = random.Random(seed)
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(env.smtp_port, prefix, tid, seed, stop,
                                                     ledger, lock), daemon=True)
               for tid in range(CRASH_THREADS)]
    acked_before = len(ledger.must)
    for th in threads:
        th.start()
    try:
        deadline = time.monotonic() + 180
        while len(ledger.must) - acked_before < 10:
            assert time.monotonic() < deadline, "the delivery stream got no 10 250s in 180 s"
            assert any(th.is_alive() for th in threads), f"every client stopped before the {what}"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        interrupt()
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    assert not any(th.is_alive() for th in threads), f"client thread stuck after the {what}"
    with lock:
        return len(ledger.must) - acked_before, len(ledger.doubt)


def deliver_after_recovery(env: Env, srv, records, msgid: str, rcpt: str, when: str) -> None:
    """After a restart: the store reopened stripe-aligned, one more delivery gets its 250 (it
    joins the ledger as acknowledged), and every segment is still whole stripes."""
    assert _event(records, "store.opened")["stripe_alignment"] == STRIPE
    ledger = env.ledger
    msg = make_msg(random.Random(msgid), msgid, rcpt)
    ledger.messages[msgid] = (rcpt, msg)
    ledger.must_not.add(msgid)
    with smtplib.SMTP(HOST, env.smtp_port, local_hostname="raid.test", timeout=60) as s:
        assert s.sendmail(REMOTE_SENDER, [rcpt], msg) == {}
    ledger.must_not.discard(msgid)
    ledger.must.add(msgid)
    bad = {p: n for p, n in srv.segment_sizes().items() if n % STRIPE}
    assert not bad, f"segments {when} not whole stripes: {bad}"


def test_kill9_during_deliveries_on_raid5(env: Env):
    srv = env.md
    assert srv is not None and srv.running, "needs the posternd of the previous test"
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    acked, in_doubt = stream_and_interrupt(env, "raid5-crash", seed, srv.kill9, "kill")
    print(f"stream: {acked} acked, {in_doubt} in doubt at the kill")

    t = time.monotonic()
    records = srv.start()
    TIMES["posternd restart (recovery) on md5"] = time.monotonic() - t
    deliver_after_recovery(env, srv, records, "raid5-after@raid.test", ALICE, "after recovery")
    t = time.monotonic()
    stats = check(srv, env.ledger)  # stops posternd, exports in the guest, compares
    TIMES["export + compare"] = time.monotonic() - t
    print(f"stored {stats}, acked total {len(env.ledger.must)}")
    assert stats["stored"] >= len(env.ledger.must) > WARMUP_MESSAGES + 10


def test_not_on_md_keeps_4096(env: Env):
    g = env.guest
    # The plain virtio disk (serial PSTN-VIRTIO-0): a real block device without an md dir.
    r = g.cmd("for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = PSTN-VIRTIO-0 ] && "
              "echo /dev/${b##*/}; done; true").check()
    dev = r.out.strip()
    assert dev.startswith("/dev/vd"), r.out
    g.cmd(f"mke2fs -q -b 4096 {dev} && mkdir -p {PLAIN_MOUNT} && mount -t ext2 {dev} {PLAIN_MOUNT}",
          timeout=120).check()
    srv = GuestPosternd(g, "plain", f"{PLAIN_MOUNT}/postern")
    env.servers.append(srv)
    records = srv.start()
    try:
        assert _event(records, "store.opened")["stripe_alignment"] == 4096
        assert not [r for r in records if r.get("fields", {}).get("event") == "store.md_layout"]
        sizes = srv.segment_sizes()
        assert sizes and set(sizes.values()) == {SEGMENT_SIZE}, sizes
    finally:
        srv.stop()


def _check_raid_disks_are_the_images(guest: Guest) -> str:
    """Over QMP: each RAID5 disk is its raw image file in the run directory itself (no
    snapshot=on overlay or other layer that would die with QEMU), so a write QEMU completed is
    in that file. Returns the cache mode, for the summary."""
    blocks = {b["device"]: b for b in guest.qmp("query-block")}
    modes = set()
    for k in range(RAID_DISKS):
        ins = blocks[f"raid5d{k}"]["inserted"]
        assert ins["drv"] == "raw", ins
        assert pathlib.Path(ins["file"]) == guest.run_dir / f"raid5-{k}.img", ins
        assert "backing_file" not in ins and "backing-filename" not in ins["image"], ins
        c = ins["cache"]
        modes.add("unsafe" if c["no-flush"] else
                  ("none" if c["direct"] else "writeback") if c["writeback"] else
                  ("directsync" if c["direct"] else "writethrough"))
    return ",".join(sorted(modes))


_E2FSCK_TGZ: list[bytes] = []


def _e2fsck_tgz() -> bytes:
    """The host's e2fsck with every shared library ldd names and the loader, as a tar.gz (the
    guest's busybox has no e2fsck)."""
    if not _E2FSCK_TGZ:
        e2fsck = shutil.which("e2fsck") or "/sbin/e2fsck"
        if not os.path.exists(e2fsck):
            pytest.fail("no e2fsck on the host (e2fsprogs) to check the ext2 after a power cut")
        ldd = subprocess.run(["ldd", e2fsck], check=True, capture_output=True, text=True,
                             timeout=30).stdout
        libs = sorted(set(re.findall(r"(/\S+\.so[.\d]*)", ldd)))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(e2fsck, arcname="e2fsck")
            for lib in libs:
                name = "ld.so" if "ld-linux" in lib else os.path.basename(lib)
                tar.add(os.path.realpath(lib), arcname=name)
        _E2FSCK_TGZ.append(buf.getvalue())
    return _E2FSCK_TGZ[0]


def _e2fsck(g: Guest, dev: str) -> str:
    """`e2fsck -fy DEV` in the guest; fails on uncorrected errors (exit status 4 and up).
    Returns a summary: exit status and the problems it fixed."""
    g.write_file("/tmp/e2fsck.tgz", _e2fsck_tgz(), timeout=120)
    g.cmd("mkdir -p /opt/e2fsck && tar -C /opt/e2fsck -xzf /tmp/e2fsck.tgz", timeout=60).check()
    r = g.cmd(f"/opt/e2fsck/ld.so --library-path /opt/e2fsck /opt/e2fsck/e2fsck -fy {dev}",
              timeout=300)
    out = r.out + r.err
    assert r.rc in (0, 1), f"e2fsck -fy {dev}: exit {r.rc}\n{out}"
    fixed = [ln.strip() for ln in out.splitlines()
             if ln.strip() and not ln.startswith(("Pass ", "e2fsck ", "/dev/"))
             and "clean" not in ln]
    return f"e2fsck exit {r.rc}" + (f" ({len(fixed)} lines: {' | '.join(fixed[:6])})"
                                     if fixed else "")


def _boot_on_same_disks(env: Env) -> tuple[GuestPosternd, str]:
    """After a power cut: a new guest on the same run directory (the same images, a new host
    port), assemble the dirty array, wait for md's resync (bounded), mount the ext2 that was
    not unmounted. Returns posternd (config written, not started) and what md and ext4 said."""
    port = free_port()
    g = env.guest.successor(hostfwd={port: 25})
    env.guest, env.smtp_port = g, port
    g.start()
    TIMES["boot after power cut"] = g.wait_ready(timeout=240)
    t = time.monotonic()
    members = _raid_members(g)
    g.cmd("load-modules raid456 ext4", timeout=120).check()
    # No --run: a dirty array that came up degraded would stay stopped (and fail here).
    r = g.cmd("mdadm --assemble /dev/md5 " + " ".join(members), timeout=120)
    assert r.rc == 0, f"mdadm --assemble: {r.err or r.out}\n{g.cmd('dmesg | tail -30').out}"
    deadline = time.monotonic() + 180
    while True:
        r = g.cmd("cd /sys/block/md5/md && echo $(cat array_state degraded sync_action "
                  "mismatch_cnt)").check()
        state, degraded, action, mismatch = r.out.split()
        assert degraded == "0", f"md5 degraded after the power cut: {r.out}"
        if state in ("clean", "active", "active-idle") and action == "idle":
            break
        assert time.monotonic() < deadline, f"md5 not usable and resynced in 180 s: {r.out}"
        time.sleep(0.5)
    TIMES["assemble + resync after power cut"] = time.monotonic() - t
    t = time.monotonic()
    fsck = _e2fsck(g, "/dev/md5")
    TIMES["e2fsck after power cut"] = time.monotonic() - t
    r = g.cmd(f"mkdir -p {MD_MOUNT} && mount -t ext2 /dev/md5 {MD_MOUNT}", timeout=120)
    assert r.rc == 0, (f"ext2 on md5 does not mount after the power cut and e2fsck: "
                       f"{r.err or r.out}\n"
                       f"{g.cmd('dmesg | tail -30').out}")
    with g._cond:
        said = [m for _, m in g.kmsg
                if "md5" in m and ("clean" in m or "resync" in m or "reconstruction" in m)
                or "EXT4-fs (md5)" in m and ("warning" in m or "error" in m)]
    said.append(f"mismatch_cnt {mismatch}")
    said.append(fsck)
    srv = GuestPosternd(g, "md5", f"{MD_MOUNT}/postern")
    env.md = srv
    env.servers.append(srv)
    return srv, "; ".join(said)


def _power_cut_seeds() -> list[int]:
    given = os.environ.get("POSTERN_POWER_CUT_SEEDS", "")  # to replay a round: "S1,S2,..."
    if given:
        return [int(x) for x in given.split(",")]
    sysrng = random.SystemRandom()
    return [sysrng.randrange(1 << 30) for _ in range(POWER_CUT_ROUNDS)]


def test_power_cut_during_deliveries_on_raid5(env: Env):
    t_all = time.monotonic()
    ledger = env.ledger
    srv = env.md
    if srv is None:  # run alone (-k power_cut)
        srv = GuestPosternd(env.guest, "md5", f"{MD_MOUNT}/postern")
        env.md = srv
        env.servers.append(srv)
        srv.provision()
    ROUNDS.append(f"power cut: RAID5 disks cache={_check_raid_disks_are_the_images(env.guest)}"
                  ", raw image files in the run directory")
    # What the earlier tests wrote (the CLI's provisioning among it) is settled, as on a system
    # that has been up for a while; the later rounds start from what the recovery left.
    env.guest.cmd("sync", timeout=120).check()
    for rnd, seed in enumerate(_power_cut_seeds(), 1):
        t_round = time.monotonic()
        print(f"power cut round {rnd}: seed {seed}")
        if not srv.running:
            srv.start()
        acked, in_flight = stream_and_interrupt(env, f"raid5-cut{rnd}", seed,
                                                env.guest.power_cut, "cut")

        srv, said = _boot_on_same_disks(env)
        t = time.monotonic()
        records = srv.start()
        TIMES["posternd start (recovery) after power cut"] = time.monotonic() - t
        deliver_after_recovery(env, srv, records, f"raid5-cut{rnd}-after@raid.test", BOB,
                               "after the power cut")
        stats = check(srv, ledger)  # stops posternd, exports in the guest, compares
        line = (f"power cut round {rnd} (seed {seed}): {acked} acked during the stream, "
                f"{in_flight} in flight at the cut ({stats['in_doubt_found']} of them stored), "
                f"{stats['stored']} stored in total ({len(ledger.must)} acked in all), "
                f"{time.monotonic() - t_round:.1f} s; after boot: {said}")
        print(line)
        ROUNDS.append(line)
        assert acked >= 10
        assert stats["stored"] == len(ledger.must)
    TIMES["power-cut test (all rounds)"] = time.monotonic() - t_all
