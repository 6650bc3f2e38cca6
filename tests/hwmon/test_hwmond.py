"""hwmond system tests: the real binary against fixture trees and smartctl/mdadm output recorded
in the QEMU guest (tests/hwmon/fixtures/recorded), over its health API socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hwmond_harness import (
    BOARDS, HWMOND, MD_SCENARIOS, RECORDED, Hwmond, base_config, component, failing_sata, hot,
    reading, recorded_smart, run_hwmond, set_md_scenario, status_once, write_config, write_smart,
)


@pytest.fixture(autouse=True)
def _hwmond_built():
    # A missing binary fails the test (tests/run builds it first); it never skips.
    assert HWMOND.exists(), f"{HWMOND} not built (cargo build -p postern-hwmon)"


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    return root, tmp_path / "hwmond.sock", tmp_path


# --- md RAID, recorded --------------------------------------------------------------------

EXPECTED_MD = {
    # scenario: (state, storage safe, reason fragment)
    "healthy": ("OK", True, ""),
    "degraded": ("CRITICAL", True, "no redundancy left"),
    "degraded-removed": ("CRITICAL", True, "no redundancy left"),
    "rebuilding": ("WARNING", True, "rebuilding"),
    "recovered": ("OK", True, ""),
    "failed": ("CRITICAL", False, "failed"),
}


@pytest.mark.parametrize("scenario", MD_SCENARIOS)
def test_recorded_md_states(env, scenario):
    root, sock, tmp = env
    set_md_scenario(root, scenario)
    cfg = write_config(tmp / "h.toml", base_config(root, sock, mdraid={"enable": True}))
    snap = status_once(cfg)
    md0 = component(snap, "array/md0")
    state, safe, why = EXPECTED_MD[scenario]
    assert md0["state"] == state, md0
    assert why in md0["reason"], md0
    assert snap["storage"]["safe"] is safe, snap["storage"]
    assert reading(md0, "disks_required") == 2
    # mdadm --detail --export (recorded) gives the array UUID.
    export = (RECORDED / "md" / scenario / "mdadm-detail-export-md0.txt").read_text()
    uuid = next(l.split("=", 1)[1] for l in export.splitlines() if l.startswith("MD_UUID="))
    assert md0["attributes"]["uuid"] == uuid
    if scenario == "rebuilding":
        assert 0 < reading(md0, "sync_percent") < 100
        assert "sdb:rebuilding" in md0["attributes"]["members"]
    if scenario == "failed":
        assert any("array/md0" in r for r in snap["storage"]["reasons"])


def test_array_lifecycle_events_within_a_poll(env):
    """The fixture tree changes between polls like the kernel's would: healthy -> a member
    fails -> removed -> replacement rebuilding -> recovered -> both fail. Each step produces
    mdadm --monitor's events on the event stream and the state on the state request."""
    root, sock, tmp = env
    set_md_scenario(root, "healthy")
    cfg = write_config(tmp / "h.toml", base_config(root, sock, mdraid={"enable": True}))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        assert component(d.state(), "array/md0")["state"] == "OK"
        ev = d.events()
        set_md_scenario(root, "degraded")
        seen = ev.until(lambda e: e["component"] == "array/md0" and e["name"] == "StateChanged",
                        what="md0 degraded")
        names = [e["name"] for e in seen if e["component"] == "array/md0"]
        assert "DegradedArray" in names and "Fail" in names, names
        change = seen[-1]
        assert (change["from"], change["to"]) == ("OK", "CRITICAL")
        assert {"name": "degraded", "value": 1.0, "unit": "count"} in change["readings"]
        d.wait_state(lambda s: component(s, "array/md0")["state"] == "CRITICAL", what="CRITICAL")

        set_md_scenario(root, "degraded-removed")
        set_md_scenario(root, "rebuilding")
        seen = ev.until(lambda e: e["name"] == "RebuildStarted", what="RebuildStarted")
        d.wait_state(lambda s: component(s, "array/md0")["state"] == "WARNING", what="WARNING")

        set_md_scenario(root, "recovered")
        # Both, in either order: a poll may fall between two of the files changing.
        names = set()
        ev.until(lambda e: names.add(e["name"]) or {"RebuildFinished", "SpareActive"} <= names,
                 what="RebuildFinished and SpareActive")
        ok = d.wait_state(lambda s: component(s, "array/md0")["state"] == "OK", what="OK")
        assert ok["storage"]["safe"]
        hist = component(ok, "array/md0")["history"]
        assert [h["state"] for h in hist][-3:] == ["CRITICAL", "WARNING", "OK"], hist

        set_md_scenario(root, "failed")
        ev.until(lambda e: e["component"] == "array/md0" and e["to"] == "CRITICAL"
                 and e["name"] == "StateChanged", what="failed")
        s = d.wait_state(lambda s: not s["storage"]["safe"], what="storage unsafe")
        assert "array/md0" in s["storage"]["reasons"][0]
        ev.close()
    finally:
        assert d.stop() == 0
    assert not sock.exists(), "socket removed at shutdown"


def test_array_disappears(env):
    root, sock, tmp = env
    set_md_scenario(root, "healthy")
    cfg = write_config(tmp / "h.toml", base_config(root, sock, mdraid={"enable": True}))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        ev = d.events()
        (root / "proc" / "mdstat").write_text("Personalities : [raid1] \nunused devices: <none>\n")
        seen = ev.until(lambda e: e["name"] == "DeviceDisappeared", what="DeviceDisappeared")
        assert seen[-1]["to"] == "CRITICAL"
        ev.close()
    finally:
        d.stop()


# --- SMART, recorded and derived from recorded ----------------------------------------------

def smart_env(root: Path, docs: dict[str, dict]):
    for dev, doc in docs.items():
        write_smart(root / "smartctl", dev, doc)


def smart_cfg(root, sock, tmp, devices):
    return write_config(tmp / "h.toml", base_config(
        root, sock, smart={"enable": True, "devices": devices}))


def test_recorded_smart_healthy_and_scan(env):
    root, sock, tmp = env
    smart_env(root, {
        "sda": recorded_smart("sda-healthy.json"),
        "sdb": recorded_smart("sda-healthy.json"),
        "nvme0": recorded_smart("nvme0-healthy.json"),
    })
    shutil.copyfile(RECORDED / "smartctl" / "scan-open.json", root / "smartctl" / "scan-open.json")
    # No device list, no board: smartctl --scan-open finds the guest's three disks.
    snap = status_once(smart_cfg(root, sock, tmp, []))
    ids = sorted(c["id"] for c in snap["components"])
    assert ids == ["disk/nvme0", "disk/sda", "disk/sdb"]
    for c in snap["components"]:
        assert c["state"] == "OK", c
    nvme = component(snap, "disk/nvme0")
    assert reading(nvme, "temperature") == 50
    assert reading(nvme, "critical_warning") == 0
    assert nvme["attributes"]["protocol"] == "NVMe"
    sda = component(snap, "disk/sda")
    assert reading(sda, "reallocated_sectors") == 0
    assert reading(sda, "power_on_hours") >= 0


@pytest.mark.parametrize("file,bit", [
    ("nvme0-critical-warning-0x01-spare.json", "available spare below threshold"),
    ("nvme0-critical-warning-0x02-temperature.json", "temperature outside threshold"),
    ("nvme0-critical-warning-0x04-reliability.json", "reliability degraded"),
])
def test_recorded_nvme_critical_warning(env, file, bit):
    root, sock, tmp = env
    smart_env(root, {"nvme0": recorded_smart(file)})
    snap = status_once(smart_cfg(root, sock, tmp, ["/dev/nvme0:nvme"]))
    c = component(snap, "disk/nvme0")
    assert c["state"] == "CRITICAL"
    assert bit in c["reason"]


def test_recorded_unsupported_and_missing_disks(env):
    root, sock, tmp = env
    smart_env(root, {"vda": recorded_smart("vda.json")})
    # vda: smartctl cannot open it (recorded); sdz: no such device (a removed disk).
    snap = status_once(smart_cfg(root, sock, tmp, ["/dev/vda", "/dev/sdz"]))
    vda = component(snap, "disk/vda")
    assert vda["state"] == "CRITICAL" and "Unable to detect device type" in vda["reason"]
    sdz = component(snap, "disk/sdz")
    assert sdz["state"] == "CRITICAL" and "No such device" in sdz["reason"]


def test_hot_disk_makes_storage_unsafe(env):
    root, sock, tmp = env
    smart_env(root, {"sda": hot(recorded_smart("sda-healthy.json"), 66),
                     "nvme0": recorded_smart("nvme0-healthy.json")})
    cfg = smart_cfg(root, sock, tmp, ["/dev/sda:sat", "/dev/nvme0:nvme"])
    snap = status_once(cfg)
    assert component(snap, "disk/sda")["state"] == "WARNING"
    assert snap["storage"]["safe"]
    smart_env(root, {"sda": hot(recorded_smart("sda-healthy.json"), 72)})
    snap = status_once(cfg)
    sda = component(snap, "disk/sda")
    assert sda["state"] == "CRITICAL", sda
    assert not snap["storage"]["safe"]
    assert "temperature" in snap["storage"]["reasons"][0]
    # NVMe with its own limits (wctemp/cctemp): the drive's thresholds win over the defaults.
    nv = hot(recorded_smart("nvme0-healthy.json"), 75)
    nv["nvme_composite_temperature_threshold"] = {"warning": 70, "critical": 85}
    smart_env(root, {"sda": recorded_smart("sda-healthy.json"), "nvme0": nv})
    snap = status_once(cfg)
    nvme = component(snap, "disk/nvme0")
    assert nvme["state"] == "WARNING" and "warning 70" in nvme["reason"], nvme


def test_failing_sata_disk_events(env):
    """Reallocated sectors rise while the daemon runs: WARNING with the rise as an event; then
    overall health FAILED: CRITICAL."""
    root, sock, tmp = env
    sda = recorded_smart("sda-healthy.json")
    smart_env(root, {"sda": sda})
    cfg = smart_cfg(root, sock, tmp, ["/dev/sda:sat"])
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        ev = d.events()
        smart_env(root, {"sda": failing_sata(sda, reallocated=8, pending=0)})
        seen = ev.until(lambda e: e["name"] == "StateChanged", what="WARNING")
        names = [e["name"] for e in seen]
        assert "ReallocatedSectorsIncreased" in names, names
        assert seen[-1]["to"] == "WARNING"
        assert {"name": "reallocated_sectors", "value": 8.0, "unit": "count"} in seen[-1]["readings"]
        smart_env(root, {"sda": failing_sata(sda, reallocated=8, pending=3, passed=False)})
        seen = ev.until(lambda e: e["name"] == "StateChanged", what="CRITICAL")
        assert seen[-1]["to"] == "CRITICAL"
        assert "FAILED" in seen[-1]["reason"]
        c = component(d.state(), "disk/sda")
        assert reading(c, "pending_sectors") == 3
        ev.close()
    finally:
        d.stop()


def test_nvme_wear_and_spare(env):
    root, sock, tmp = env
    nv = recorded_smart("nvme0-healthy.json")
    log = nv["nvme_smart_health_information_log"]
    log.update({"available_spare": 100, "available_spare_threshold": 10, "percentage_used": 92})
    smart_env(root, {"nvme0": nv})
    cfg = smart_cfg(root, sock, tmp, ["/dev/nvme0:nvme"])
    c = component(status_once(cfg), "disk/nvme0")
    assert c["state"] == "WARNING" and "percentage used" in c["reason"]
    log.update({"available_spare": 5, "percentage_used": 10, "media_errors": 2})
    smart_env(root, {"nvme0": nv})
    c = component(status_once(cfg), "disk/nvme0")
    assert c["state"] == "CRITICAL" and "available spare 5" in c["reason"], c
    assert "media errors 2" in c["reason"]


# --- sysfs: hwmon (recorded), thermal, EDAC --------------------------------------------------

def atomic_write(path: Path, text: str) -> None:
    """Changes a value the way sysfs does: a reader sees the old or the new one, never ''."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_recorded_hwmon_sysfs(env):
    _, sock, tmp = env
    root = RECORDED / "hwmon"
    cfg = write_config(tmp / "h.toml", base_config(root, sock, hwmon={"enable": True}))
    snap = status_once(cfg)
    c = component(snap, "sensor/nvme/Composite")
    assert c["state"] == "OK"
    assert abs(reading(c, "temp1") - 49.85) < 1e-6


def test_sysfs_tree_fan_stall_thermal_edac(env):
    root, sock, tmp = env
    chip = root / "sys" / "class" / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    for f, v in {"name": "nct6779", "fan1_input": "1200", "fan1_min": "300",
                 "temp1_input": "41000", "temp1_max": "80000", "temp1_crit": "95000",
                 "temp1_label": "SYSTIN", "in1_input": "12100", "in1_min": "11400",
                 "in1_max": "12600"}.items():
        (chip / f).write_text(v + "\n")
    zone = root / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    for f, v in {"type": "x86_pkg_temp", "temp": "45000", "trip_point_0_type": "critical",
                 "trip_point_0_temp": "100000"}.items():
        (zone / f).write_text(v + "\n")
    mc = root / "sys" / "devices" / "system" / "edac" / "mc" / "mc0"
    mc.mkdir(parents=True)
    (mc / "ce_count").write_text("0\n")
    (mc / "ue_count").write_text("0\n")
    cfg = write_config(tmp / "h.toml", base_config(
        root, sock, hwmon={"enable": True}, thermal={"enable": True}, edac={"enable": True}))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        s = d.state()
        assert s["overall"] == "OK", s
        assert component(s, "fan/nct6779/fan1")["state"] == "OK"
        assert component(s, "sensor/thermal/zone0-x86_pkg_temp")["state"] == "OK"
        assert component(s, "memory/mc0")["state"] == "OK"
        ev = d.events()
        atomic_write(chip / "fan1_input", "0\n")
        seen = ev.until(lambda e: e["component"] == "fan/nct6779/fan1", what="fan stall")
        assert seen[-1]["to"] == "CRITICAL" and "stalled" in seen[-1]["reason"]
        atomic_write(mc / "ue_count", "1\n")
        seen = ev.until(lambda e: e["component"] == "memory/mc0" and e["name"] == "StateChanged",
                        what="EDAC UE")
        assert seen[-1]["to"] == "CRITICAL"
        assert "UncorrectableErrorsIncreased" in [e["name"] for e in seen]
        ev.close()
    finally:
        d.stop()


# --- filesystems and the storage verdict ---------------------------------------------------

def test_full_data_filesystem_is_unsafe(env, tmp_path):
    root, sock, tmp = env
    mnt = tmp_path / "data"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.fail("cannot mount a tmpfs: the tests run as root (tests/run)")
    try:
        cfg = write_config(tmp / "h.toml", base_config(
            root, sock, filesystem={"enable": True, "mounts": ["/"], "data_mounts": [str(mnt)]}))
        snap = status_once(cfg)
        name = "filesystem/" + str(mnt).strip("/").replace("/", "-")
        assert component(snap, name)["state"] == "OK"
        assert snap["storage"]["safe"]
        # Fill it to >= 95%.
        with open(mnt / "fill", "wb") as f:
            try:
                f.write(b"\0" * (1024 * 1024))
            except OSError:
                pass
        snap = status_once(cfg)
        c = component(snap, name)
        assert c["state"] == "CRITICAL", c
        assert reading(c, "used_percent") >= 95
        assert not snap["storage"]["safe"]
        assert "full" in snap["storage"]["reasons"][0]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --- the daemon, the API and the CLI ---------------------------------------------------------

def test_status_table_and_json_from_the_daemon(env):
    root, sock, tmp = env
    set_md_scenario(root, "degraded")
    smart_env(root, {"sda": recorded_smart("sda-healthy.json")})
    cfg = write_config(tmp / "h.toml", base_config(
        root, sock, mdraid={"enable": True}, smart={"enable": True, "devices": ["/dev/sda"]},
        system={"enable": True}))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        r = run_hwmond("--config", str(cfg), "status")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "overall: CRITICAL"
        assert lines[1] == "storage: safe"
        table = "\n".join(lines)
        for cid in ["array/md0", "disk/sda", "cpu/cpu", "memory/ram"]:
            assert cid in table, table
        assert "COMPONENT" in table and "STATE" in table
        md_line = next(l for l in lines if l.startswith("array/md0"))
        assert "CRITICAL" in md_line and "degraded" in md_line
        # For an operator: within 100 columns, the worst component first, with its since-time.
        assert all(len(l) <= 100 for l in lines), table
        header = next(i for i, l in enumerate(lines) if l.startswith("COMPONENT"))
        assert lines[header + 1] == md_line, table
        assert md_line.split()[2:4][1].count(":") == 1, md_line
        r = run_hwmond("--config", str(cfg), "status", "--json")
        snap = json.loads(r.stdout)
        assert component(snap, "array/md0")["collector"] == "mdraid"
        assert component(snap, "array/md0")["history"][0]["state"] == "CRITICAL"
        # The API: several requests on one connection; bad ones get an error and the
        # connection stays usable.
        with d.connect() as s:
            f = s.makefile("rb")
            s.sendall(b'{"get":"nonsense"}\n{"get":"state"}\nnot json\n{"get":"state"}\n')
            assert "error" in json.loads(f.readline())
            assert json.loads(f.readline())["overall"] == "CRITICAL"
            assert "error" in json.loads(f.readline())
            assert "storage" in json.loads(f.readline())
    finally:
        d.stop()


def test_second_daemon_refuses_the_socket(env):
    root, sock, tmp = env
    cfg = write_config(tmp / "h.toml", base_config(root, sock))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    try:
        r = run_hwmond("--config", str(cfg), "run", timeout=30)
        assert r.returncode != 0
        assert "another hwmond" in r.stderr
        assert d.state()["overall"] == "OK"
    finally:
        d.stop()


def test_stale_socket_file_is_replaced(env):
    root, sock, tmp = env
    sock.write_text("stale")
    cfg = write_config(tmp / "h.toml", base_config(root, sock))
    d = Hwmond(cfg, sock, tmp / "hwmond.log")
    d.stop()


def test_bad_config_reports_file_and_line(env):
    _, _, tmp = env
    cfg = tmp / "bad.toml"
    cfg.write_text("[hwmond]\nhistory = 4\n\n[mdraid]\nintervall_secs = 1\n")
    r = run_hwmond("--config", str(cfg), "check-config")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{cfg}:5:1: unknown field `intervall_secs`"), r.stderr
    board = tmp / "board.toml"
    board.write_text("[board]\nname = \"x\"\n[[disk]]\nname = \"sda\"\ndevice = \"/dev/sda\"\nrole = \"primary\"\n")
    r = run_hwmond("--config", str(tmp / "missing.toml"), "check-config")
    assert r.returncode == 2 and "cannot read" in r.stderr
    good = write_config(tmp / "good.toml", {"hwmond": {"board": str(board)}})
    r = run_hwmond("--config", str(good), "check-config")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{board}:6:"), r.stderr


GUEST_BOARD = (BOARDS / "qemu-test-guest.toml").read_text()
EXTRA_SENSOR = ('\n[[sensor]]\nname = "Extra"\nkind = "sensor"\ncomponent = "extra"\n'
                'thresholds = { upper_non_critical = 90.0, upper_critical = 80.0 }\n')
GUEST_LINES = GUEST_BOARD.count("\n")
RAID_LINE = GUEST_BOARD[:GUEST_BOARD.index('level = "raid1"')].count("\n") + 1

# (config text after [hwmond], board text or None, expected "line:column: message" in the file
# that is wrong: the config unless a board is given).
REFUSED = {
    "metrics listen": ('\n[sinks.metrics]\nenable = true\nlisten = "0.0.0.0:9188"\n', None,
                       "6:1: [sinks.metrics] listen 0.0.0.0:9188: only loopback addresses are allowed"),
    "ipmi lan without host": ('\n[ipmi]\nenable = true\n  interface = "lan"\n', None,
                              '6:3: [ipmi] interface = "lan" needs host'),
    "email without recipients": ('\n[sinks.email]\nenable = true\nfrom = "a@b.test"\nto = []\n',
                                 None, "7:1: [sinks.email] to: no recipient"),
    "unknown log level": ('log_level = "verbose"\n', None,
                          "3:1: log_level: unknown level `verbose`"),
    "unknown raid level": ("", GUEST_BOARD.replace('level = "raid1"', 'level = "raid0"'),
                           f"{RAID_LINE}:1: array md0: level `raid0` is not one of"),
    "inverted thresholds": ("", GUEST_BOARD + EXTRA_SENSOR,
                            f"{GUEST_LINES + 6}:43: sensor Extra: thresholds: upper_non_critical 90 "
                            "must not be above upper_critical 80"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_check_config_refuses_what_run_refuses(env, case):
    """`hwmond check-config` and `hwmond run` share one validation: each case is refused by
    both, with the same file:line:column and message."""
    root, sock, tmp = env
    extra, board_text, want = REFUSED[case]
    text = f'[hwmond]\nsocket = "{sock}"\n' + extra
    where = tmp / "h.toml"
    if board_text is not None:
        where = tmp / "board.toml"
        where.write_text(board_text)
        text += f'board = "{where}"\n'
    cfg = tmp / "h.toml"
    cfg.write_text(text)
    for command in ("check-config", "run"):
        r = run_hwmond("--config", str(cfg), command, timeout=30)
        assert r.returncode == 2, (command, r.returncode, r.stderr)
        assert r.stderr.startswith(f"{where}:{want}"), (command, r.stderr)
    assert not sock.exists()


@pytest.mark.parametrize("board", sorted(p.name for p in BOARDS.glob("*.toml")))
def test_board_configs_check(board):
    r = run_hwmond("--board", str(BOARDS / board), "check-config")
    assert r.returncode == 0, r.stderr
    assert "disks" in r.stdout


def test_qemu_board_with_recorded_guest_output(env):
    """The qemu-test-guest board against what the guest recorded: its disks (by the board's device
    paths and -d types), its md0 array, and the data array's role in the storage verdict."""
    root, sock, tmp = env
    smart_env(root, {"sda": recorded_smart("sda-healthy.json"),
                     "sdb": recorded_smart("sda-healthy.json"),
                     "nvme0": recorded_smart("nvme0-healthy.json")})
    set_md_scenario(root, "healthy")
    cfg = write_config(tmp / "h.toml", base_config(
        root, sock, mdraid={"enable": True}, smart={"enable": True}))
    snap = status_once(cfg, board=BOARDS / "qemu-test-guest.toml")
    for cid in ["disk/sda", "disk/sdb", "disk/nvme0n1", "array/md0"]:
        assert component(snap, cid)["state"] == "OK", component(snap, cid)
    assert component(snap, "disk/sda")["attributes"]["location"] == "AHCI port 0"
    set_md_scenario(root, "failed")
    snap = status_once(cfg, board=BOARDS / "qemu-test-guest.toml")
    assert not snap["storage"]["safe"]
    # A board disk that is gone (sdb removed from the guest) is CRITICAL.
    os.remove(root / "smartctl" / "sdb.json")
    snap = status_once(cfg, board=BOARDS / "qemu-test-guest.toml")
    assert component(snap, "disk/sdb")["state"] == "CRITICAL"
