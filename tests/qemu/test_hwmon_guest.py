"""hwmond in a QEMU guest (TCG) against virtual hardware faults (DESIGN.md 3.6, 3.8).

One guest for the module (qemu/build-guest builds it, with a static hwmond; qemu/run-guest
boots it): an md RAID1 over two SATA disks, an NVMe disk, and an IPMI BMC (ipmi_sim through
ipmi-bmc-extern + isa-ipmi-kcs, the SDRs of tests/hwmon/ipmi/). hwmond's event stream comes to
the host on a virtio-serial port; guest commands go through another (qemu/postern_guest.py).

Faults, each injected from the host and waited for in hwmond's events:
- `mdadm --fail` of a RAID member -> DegradedArray; `--remove` + `--add` -> RebuildStarted,
  then RebuildFinished and the array back to OK;
- QMP `qom-set` of the NVMe device's `smart_critical_warning` -> the NVMe disk CRITICAL, and
  back to OK when cleared;
- ipmi_sim console: a fan below its lower critical threshold -> the fan CRITICAL; a temperature
  change -> the new reading in hwmond's state; PSU1's "failure detected" bit -> the PSU
  CRITICAL;
- QMP `device_del` of the NVMe disk (hot removal) -> the disk CRITICAL.

The detection latency of each (host clock: injection to the event's arrival on the host,
which includes the virtio-serial hop) is printed at the end of the module; for md, also from
the guest kernel's own log record of the change (streamed from /dev/kmsg on another port and
timestamped on arrival the same way) to hwmond's event. Timing is reported,
never asserted (DESIGN.md 4). Every wait is bounded; QEMU and ipmi_sim are killed at the end.

Run: python3 -m pytest -q tests/qemu   (needs qemu-system-x86, openipmi, busybox-static,
mdadm, smartmontools, socat; tests/run installs them)
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "qemu"))

from postern_guest import Guest, GuestError, IpmiSim, build_guest, missing_tools

IPMI_DIR = REPO / "tests" / "hwmon" / "ipmi"
SOCKET = "/run/postern/hwmond.sock"
# Sensor numbers and raw values from tests/hwmon/ipmi/postern.emu (FAN1: RPM = raw * 60, lower
# critical 600 RPM; CPU Temp: degrees C = raw; PSU1: sensor-specific, bit 1 failure).
FAN1 = 0x20
FAN1_OK_RAW = 90
FAN1_STALLED_RAW = 5
CPU_TEMP = 0x30
PSU1 = 0x10

LATENCIES: list[tuple[str, float]] = []
BOOT: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    LATENCIES.append((name, seconds))
    print(f"latency {name}: {seconds:.2f} s")


class Env:
    def __init__(self, guest: Guest, sim: IpmiSim) -> None:
        self.guest = guest
        self.sim = sim

    def state(self, timeout: float = 20) -> dict[str, Any]:
        """hwmond's health snapshot ({"get":"state"} on its socket, in the guest)."""
        r = self.guest.cmd(
            f"echo '{{\"get\":\"state\"}}' | socat -t 2 - UNIX-CONNECT:{SOCKET}", timeout=timeout)
        if r.rc != 0 or not r.out.strip():
            raise GuestError(f"no state from hwmond: rc {r.rc} {r.err.strip()}")
        return json.loads(r.out.strip().splitlines()[0])

    def component(self, state: dict[str, Any], pred) -> dict[str, Any] | None:
        for c in state.get("components", []):
            if pred(str(c.get("id", ""))):
                return c
        return None

    def hwmond_log(self) -> str:
        try:
            return self.guest.cmd("tail -n 80 /var/log/hwmond.log", timeout=10).out
        except (GuestError, OSError):
            return "(no log: the guest does not answer)"


def _require(*tools: str) -> None:
    if missing := missing_tools(*tools):
        pytest.fail(f"missing tools {missing} (tests/run installs qemu-system-x86, openipmi, "
                    "busybox-static, mdadm, smartmontools, socat)")


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    _require("qemu-system-x86_64", "ipmi_sim", "sdrcomp", "busybox", "mdadm", "smartctl",
             "socat")
    root = tmp_path_factory.mktemp("qemu")
    t_build = time.monotonic()
    guest_dir = build_guest(hwmond=True)
    BOOT["build"] = time.monotonic() - t_build
    sim = IpmiSim(root / "ipmi", emu=IPMI_DIR / "postern.emu", sdrs=IPMI_DIR / "postern.sdrs")
    guest = Guest(root / "guest", guest_dir=guest_dir)
    try:
        sim.start()
        guest.ipmi = sim.vm_address
        guest.start()
        BOOT["ready"] = guest.wait_ready(timeout=240)
        yield Env(guest, sim)
    finally:
        guest.close()
        sim.close()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"qemu/build-guest (incl. the static hwmond build): {BOOT.get('build', 0):.1f} s",
                 f"guest boot (QEMU start to command channel up): {BOOT.get('ready', 0):.1f} s"]
        if "first_state" in BOOT:
            lines.append("hwmond's first complete state (from QEMU start): "
                         f"{BOOT['first_state']:.1f} s")
        lines += [f"{name}: {sec:.2f} s" for name, sec in LATENCIES]
        capman = request.config.pluginmanager.getplugin("capturemanager")
        if reporter is not None and capman is not None:
            # Straight to the terminal, not into the test's captured output.
            with capman.global_and_fixture_disabled():
                reporter.write_line("")
                reporter.write_sep("-", "QEMU guest: boot and fault detection latency (host "
                                   "clock)")
                for line in lines:
                    reporter.write_line(line)


def test_first_state(env: Env):
    g = env.guest
    t0 = time.monotonic()
    deadline = t0 + 120
    state = None
    while time.monotonic() < deadline:
        try:
            state = env.state()
        except (GuestError, json.JSONDecodeError):
            time.sleep(0.5)
            continue
        ids = [c.get("id") for c in state.get("components", [])]
        # The first complete picture: the array, the NVMe disk and the BMC's fans.
        if "array/md0" in ids and any("nvme0" in i for i in ids) and any("FAN1" in i for i in ids):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"hwmond never reported array, NVMe and IPMI components; last state "
                    f"{state}\nhwmond log:\n{env.hwmond_log()}\nconsole:\n{g.console()}")
    BOOT["first_state"] = time.monotonic() - t0 + BOOT.get("ready", 0)
    md0 = env.component(state, lambda i: i == "array/md0")
    assert md0 is not None and md0["state"] == "OK", md0
    nvme = env.component(state, lambda i: i.startswith("disk/") and "nvme0" in i)
    assert nvme is not None and nvme["state"] == "OK", nvme
    for disk in ("sda", "sdb"):
        assert env.component(state, lambda i, d=disk: i == f"disk/{d}") is not None, disk
    fan = env.component(state, lambda i: "FAN1" in i)
    assert fan is not None and fan["state"] == "OK", fan
    assert state["storage"]["safe"] is True, state["storage"]
    # The event stream is connected: the relay is up once hwmond answers; Discovered events for
    # components that start OK are not required.
    assert not g.bad_lines, g.bad_lines


def _is(name: str, component: str):
    return lambda e: e.get("name") == name and e.get("component") == component


def test_raid_member_failure_and_rebuild(env: Env):
    g = env.guest
    t_fail = time.monotonic()
    g.cmd("mdadm /dev/md0 --fail /dev/sdb").check()
    ev = g.wait_event(_is("DegradedArray", "array/md0"), 60, after=t_fail, what="DegradedArray")
    record("md RAID1 member failed (mdadm --fail sent) -> DegradedArray", ev.t - t_fail)
    t_kernel = g.wait_kmsg("md0: Disk failure on sdb", 30, after=t_fail)
    record("  kernel's 'Disk failure on sdb' -> DegradedArray", ev.t - t_kernel)
    assert "(F)" in g.cmd("cat /proc/mdstat").check().out
    assert ev.obj["to"] in ("WARNING", "CRITICAL"), ev.obj
    md0 = env.component(env.state(), lambda i: i == "array/md0")
    assert md0 is not None and md0["state"] in ("WARNING", "CRITICAL"), md0

    g.cmd("mdadm /dev/md0 --remove /dev/sdb").check()
    # A bounded rebuild rate (8 MB/s: about 8 s for the 64 MiB member) so that it is seen
    # in progress whatever the host's speed.
    g.cmd("echo 8000 > /proc/sys/dev/raid/speed_limit_max; "
          "echo 8000 > /proc/sys/dev/raid/speed_limit_min").check()
    t_add = time.monotonic()
    g.cmd("mdadm /dev/md0 --add /dev/sdb").check()
    started = g.wait_event(_is("RebuildStarted", "array/md0"), 60, after=t_add,
                           what="RebuildStarted")
    record("md member re-added (mdadm --add sent) -> RebuildStarted", started.t - t_add)
    t_kernel = g.wait_kmsg("recovery of RAID array md0", 30, after=t_add)
    record("  kernel's 'recovery of RAID array md0' -> RebuildStarted", started.t - t_kernel)
    finished = g.wait_event(_is("RebuildFinished", "array/md0"), 180, after=started.t,
                            what="RebuildFinished")
    record("md re-add -> RebuildFinished (includes the rebuild itself)", finished.t - t_add)
    # When md itself finished: the kernel's message, timestamped on arrival like the events.
    t_done = g.wait_kmsg("md0: recovery done", 30, after=t_add)
    record("  kernel's 'md0: recovery done' -> RebuildFinished", finished.t - t_done)
    ok = g.wait_event(lambda e: e.get("component") == "array/md0" and e.get("to") == "OK", 60,
                      after=started.t, what="array/md0 back to OK")
    assert "[UU]" in g.cmd("cat /proc/mdstat").check().out
    assert ok.t >= started.t
    g.cmd("echo 500000 > /proc/sys/dev/raid/speed_limit_max; "
          "echo 500000 > /proc/sys/dev/raid/speed_limit_min").check()


def test_nvme_critical_warning(env: Env):
    g = env.guest

    def nvme_event(to: str):
        return lambda e: (str(e.get("component", "")).startswith("disk/")
                          and "nvme0" in str(e.get("component")) and e.get("to") == to)

    t_set = time.monotonic()
    # Bit 2: NVM subsystem reliability degraded (NVMe 1.4 figure 194, Critical Warning).
    g.qmp("qom-set", path="/machine/peripheral/nvme0", property="smart_critical_warning",
          value=0x04)
    ev = g.wait_event(nvme_event("CRITICAL"), 90, after=t_set, what="NVMe CRITICAL")
    record("NVMe smart_critical_warning set -> disk CRITICAL", ev.t - t_set)
    smart = json.loads(g.cmd("smartctl --json -a /dev/nvme0").out)
    assert smart["nvme_smart_health_information_log"]["critical_warning"] == 4

    t_clear = time.monotonic()
    g.qmp("qom-set", path="/machine/peripheral/nvme0", property="smart_critical_warning",
          value=0)
    ev = g.wait_event(nvme_event("OK"), 90, after=t_clear, what="NVMe back to OK")
    record("NVMe critical warning cleared -> disk OK", ev.t - t_clear)


def test_ipmi_sensors_through_kcs(env: Env):
    g = env.guest
    sim = env.sim

    def fan1(to: str):
        return lambda e: "FAN1" in str(e.get("component", "")) and e.get("to") == to

    t_stall = time.monotonic()
    sim.console(f"sensor_set_value 0x20 0 {FAN1:#x} {FAN1_STALLED_RAW} 1")
    ev = g.wait_event(fan1("CRITICAL"), 60, after=t_stall, what="FAN1 CRITICAL")
    record("IPMI fan below lower critical (ipmi_sim) -> fan CRITICAL", ev.t - t_stall)
    # The event carries the reading: raw 5 is 300 RPM (M = 60).
    speeds = [r["value"] for r in ev.obj.get("readings", []) if r.get("unit") == "rpm"]
    assert speeds == [FAN1_STALLED_RAW * 60], ev.obj

    t_ok = time.monotonic()
    sim.console(f"sensor_set_value 0x20 0 {FAN1:#x} {FAN1_OK_RAW} 1")
    ev = g.wait_event(fan1("OK"), 60, after=t_ok, what="FAN1 back to OK")
    record("IPMI fan back to normal -> fan OK", ev.t - t_ok)

    # A change that crosses no threshold shows up as the reading in hwmond's state. The
    # component is found by its IPMI sensor number (attribute ipmi_number).
    def cpu_temp(state) -> float | None:
        for c in state.get("components", []):
            if int(c.get("attributes", {}).get("ipmi_number", "-1"), 0) == CPU_TEMP:
                for r in c.get("readings", []):
                    if r.get("unit") == "celsius":
                        return float(r["value"])
        return None

    before = cpu_temp(env.state())
    assert before is not None, "no CPU Temp reading in hwmond's state"
    target = 61.0 if before != 61.0 else 62.0
    t_temp = time.monotonic()
    sim.console(f"sensor_set_value 0x20 0 {CPU_TEMP:#x} {int(target)} 0")
    deadline = t_temp + 60
    seen = before
    while time.monotonic() < deadline:
        seen = cpu_temp(env.state())
        if seen == target:
            break
        time.sleep(0.2)
    assert seen == target, f"CPU Temp stayed {seen} (wanted {target})"
    record("IPMI temperature reading changed -> seen in hwmond state (polled)",
           time.monotonic() - t_temp)


def test_ipmi_psu_failure(env: Env):
    """PSU1's sensor-specific offset 1, failure detected (IPMI 2.0 table 42-3)."""
    g = env.guest
    sim = env.sim

    def psu1(to: str):
        return lambda e: e.get("component") == "psu/PSU1" and e.get("to") == to

    t_fail = time.monotonic()
    sim.console(f"sensor_set_bit 0x20 0 {PSU1:#x} 1 1 1")
    ev = g.wait_event(psu1("CRITICAL"), 60, after=t_fail, what="psu/PSU1 CRITICAL")
    record("IPMI PSU1 failure asserted (ipmi_sim) -> PSU CRITICAL", ev.t - t_fail)

    t_ok = time.monotonic()
    sim.console(f"sensor_set_bit 0x20 0 {PSU1:#x} 1 0 1")
    ev = g.wait_event(psu1("OK"), 60, after=t_ok, what="psu/PSU1 back to OK")
    record("IPMI PSU1 failure deasserted -> PSU OK", ev.t - t_ok)


def test_nvme_removal(env: Env):
    """Last: the NVMe disk is gone for good. QMP device_del (ACPI PCI hot-unplug in the guest)
    -> hwmond's smartctl cannot open a configured disk -> CRITICAL."""
    g = env.guest
    t_del = time.monotonic()
    g.qmp("device_del", id="nvme0")
    ev = g.wait_event(lambda e: e.get("component") == "disk/nvme0" and e.get("to") == "CRITICAL",
                      90, after=t_del, what="disk/nvme0 CRITICAL after device_del")
    record("NVMe hot-removed (QMP device_del) -> disk CRITICAL", ev.t - t_del)
    # The guest finishes the hot-unplug (driver unbound, /dev/nvme0 gone) on its own time;
    # smartctl may fail on the disk before that.
    gone = g.cmd("for i in $(seq 100); do [ -e /dev/nvme0 ] || exit 0; usleep 300000; done; "
                 "exit 1", timeout=60)
    assert gone.rc == 0, "the guest still has /dev/nvme0 30 s after device_del"
    state = env.state()
    nvme = env.component(state, lambda i: i == "disk/nvme0")
    assert nvme is not None and nvme["state"] == "CRITICAL", nvme
