"""Hardware faults on the booted appliance (DESIGN.md 3.6, 3.8): hwmond in the image sees
them, says so in its state and mails the admin through posternd; the mail keeps flowing.

One appliance (fresh first boot) for the module; faults through qemu/appliance.py `Faults`:
- ipmi_sim console: FAN1 to 0 RPM -> fan/FAN1 CRITICAL and an alert mail to the admin; back
  to normal -> OK. PSU1's failure bit -> psu/PSU1 CRITICAL and an alert mail; cleared -> OK.
- QMP device_del of the NVMe controller nvme1 (one member of the data RAID1) while deliveries
  stream in on port 25: the array degrades, hwmond reports the array not OK and its alert mail
  (to the admin, read over IMAPS) names the md event DegradedArray; every delivery that got a
  250 before, during and after the removal is in the admin's INBOX.
- A blank disk into the same slot (blockdev-add + device_add), `mdadm --remove failed/detached`
  and `mdadm --add` through the command channel (the init does not add replacement disks by
  itself): md rebuilds onto it, /proc/mdstat shows both members in sync, hwmond's array is OK
  again and a RECOVERED mail follows.

hwmond's state comes from `hwmond status --json` in the guest (the command channel, test
boots only). Every wait is bounded; timing is printed, never asserted.
"""

from __future__ import annotations

import email
import re
import smtplib
import threading
import time

from harness import REMOTE_SENDER

ALERT_TIMEOUT = 240.0


def _alert(box, component: str, state: str | tuple[str, ...],
           body_has: str | None = None) -> bytes:
    states = (state,) if isinstance(state, str) else state
    def pred(m, raw):
        return (m["X-Postern-Component"] == component and m["X-Postern-State"] in states
                and (body_has is None or body_has.encode() in raw))
    return box.wait_mail(pred, f"{'/'.join(states)} alert mail for {component}"
                         + (f" naming {body_has}" if body_has else ""), timeout=ALERT_TIMEOUT)


def _state(cid: str, *states: str):
    return lambda c: c["id"] == cid and c.get("state") in states


def test_fan_stall_and_psu_failure(box):
    faults = box.app.faults
    box.wait_component(_state("fan/FAN1", "OK"), "fan/FAN1 OK (hwmond reads the BMC)")
    t = time.monotonic()
    faults.fan_stall("FAN1")
    c = box.wait_component(_state("fan/FAN1", "CRITICAL"), "fan/FAN1 CRITICAL")
    print(f"fan stall -> CRITICAL after {time.monotonic() - t:.1f} s: {c.get('reason')}")
    _alert(box, "fan/FAN1", "CRITICAL")
    faults.fan_ok("FAN1")
    box.wait_component(_state("fan/FAN1", "OK"), "fan/FAN1 OK again")

    box.wait_component(_state("psu/PSU1", "OK"), "psu/PSU1 OK")
    t = time.monotonic()
    faults.psu_fail("PSU1")
    c = box.wait_component(_state("psu/PSU1", "CRITICAL"), "psu/PSU1 CRITICAL")
    print(f"PSU failure -> CRITICAL after {time.monotonic() - t:.1f} s: {c.get('reason')}")
    _alert(box, "psu/PSU1", "CRITICAL")
    faults.psu_ok("PSU1")
    box.wait_component(_state("psu/PSU1", "OK"), "psu/PSU1 OK again")


class Load:
    """Deliveries on port 25 to the admin from one thread, one message per connection-reuse
    step; remembers the Message-IDs that got their 250."""

    def __init__(self, box, prefix: str) -> None:
        self.box, self.prefix = box, prefix
        self.acked: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.box.ports[25], local_hostname="load.test",
                                  timeout=60) as s:
                    while not self.stop.is_set():
                        n += 1
                        msgid = f"{self.prefix}-{n}@load.test"
                        msg = (f"From: <{REMOTE_SENDER}>\r\nTo: <{self.box.address}>\r\n"
                               f"Subject: load {n}\r\nMessage-Id: <{msgid}>\r\n\r\n"
                               + "payload line\r\n" * 200).encode()
                        s.sendmail(REMOTE_SENDER, [self.box.address], msg)
                        self.acked.append(msgid)
                        time.sleep(0.2)
            except (smtplib.SMTPException, OSError) as e:
                # Recorded: the test asserts that deliveries kept succeeding afterwards.
                self.errors.append(f"{type(e).__name__}: {e}")
                time.sleep(1)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), "load thread stuck"

    def wait_acked(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        target = len(self.acked) + n
        while len(self.acked) < target:
            assert time.monotonic() < deadline, \
                f"deliveries stalled: {len(self.acked)} acked, errors {self.errors[-5:]}"
            time.sleep(0.2)


def _mdstat(box) -> str:
    return box.sh("cat /proc/mdstat")


def test_disk_removed_under_load_then_replaced(box):
    md, members, cid = box.data_array()
    slot = "nvme1"
    member = next((m for m in members if m.startswith(f"/dev/{slot}")), None)
    assert member, f"no member of {md} on {slot}: {members}"
    box.wait_component(_state(cid, "OK"), f"{cid} OK before the fault")
    print(f"before: {_mdstat(box)}")

    with Load(box, f"degrade-{time.time_ns()}") as load:
        load.wait_acked(5)
        t = time.monotonic()
        box.app.faults.disk_remove(slot)
        print(f"device_del {slot} done after {time.monotonic() - t:.1f} s")
        c = box.wait_component(lambda c: c["id"] == cid and c.get("state") != "OK",
                               f"{cid} degraded")
        print(f"{cid} {c.get('state')} after {time.monotonic() - t:.1f} s: {c.get('reason')}")
        # Mail keeps flowing on the degraded array.
        load.wait_acked(10)
    acked = list(load.acked)
    # hwmond may first see the member faulty but not yet removed (WARNING, no event) and only
    # then the array degraded (the DegradedArray event, CRITICAL on a two-disk RAID1), or see
    # the degraded array at once: the alert that names DegradedArray is either.
    mail = _alert(box, cid, ("WARNING", "CRITICAL"), body_has="DegradedArray")
    print(f"alert: {email.message_from_bytes(mail)['Subject']}")
    stored = {m.group(1).decode() for _, raw in box.inbox()
              for m in [re.search(rb"^Message-Id: <([^>]+)>", raw, re.M | re.I)] if m}
    lost = [i for i in acked if i not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged deliveries missing: {lost[:5]}"

    # The replacement: a blank disk in the same slot, added to the array by hand.
    serial = box.app.faults.disk_add(slot)
    # The new disk gets another name (nvme2n1 while md still holds the failed nvme1n1): find
    # its block device by the serial QEMU gave it. /sys/block/X/device is the controller, or
    # with native NVMe multipath the subsystem; both have the serial.
    # The sysfs serial is the controller's 20-byte field, space padded: `read` trims it.
    find = (f"for b in /sys/block/nvme*; do read -r s < $b/device/serial && "
            f"[ \"$s\" = {serial} ] && echo /dev/${{b##*/}}; done; true")
    deadline = time.monotonic() + 60
    new_member = ""
    while not new_member:
        assert time.monotonic() < deadline, f"no NVMe disk with serial {serial} after disk-add"
        time.sleep(1)
        new_member = box.sh(find).strip()
        if new_member and box.app.cmd(f"test -b {new_member}").rc != 0:
            new_member = ""
    member = new_member
    # The old member is gone from the system: md keeps it as faulty/detached until removed.
    box.app.cmd(f"mdadm {md} --remove failed; mdadm {md} --remove detached", 60)
    box.sh(f"mdadm {md} --add {member}", 120)
    t = time.monotonic()
    deadline = t + 900
    while True:
        stat = _mdstat(box)
        if "recovery" not in stat and "resync" not in stat and re.search(r"\[UU\]", stat):
            break
        assert time.monotonic() < deadline, f"rebuild did not finish in 900 s:\n{stat}"
        time.sleep(3)
    print(f"rebuild onto {member} ({serial}) finished after {time.monotonic() - t:.1f} s")
    box.wait_component(_state(cid, "OK"), f"{cid} OK after the rebuild", timeout=240)
    _alert(box, cid, "RECOVERED")
    # And mail still flows on the rebuilt array.
    box.deliver(REMOTE_SENDER, f"From: <{REMOTE_SENDER}>\r\nSubject: after rebuild\r\n"
                f"Message-Id: <rebuilt-{time.time_ns()}@load.test>\r\n\r\nok\r\n".encode())
