"""Helpers for the hwmond system tests: fixture roots built from recorded output, configs,
starting the real hwmond binary, and a health API client. Every wait is bounded."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("POSTERN_BIN_DIR", str(REPO / "target" / "debug")))
HWMOND = BIN_DIR / "hwmond"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
RECORDED = FIXTURES / "recorded"
FAKE_SMARTCTL = FIXTURES / "bin" / "recorded-smartctl"
FAKE_MDADM = FIXTURES / "bin" / "recorded-mdadm"
BOARDS = REPO / "board-configs"

MD_SCENARIOS = ["healthy", "degraded", "degraded-removed", "rebuilding", "recovered", "failed"]


def toml_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_str(x) for x in v) + "]"
    return json.dumps(str(v))


def render(sections: dict) -> str:
    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        for k, v in keys.items():
            out.append(f"{k} = {toml_str(v)}")
        out.append("")
    return "\n".join(out)


def set_md_scenario(root: Path, scenario: str) -> None:
    """Makes `root` (proc/ + sys/ + mdadm output) the recorded md `scenario`, replacing the
    files in place the way the kernel changes them between two polls."""
    src = RECORDED / "md" / scenario
    (root / "proc").mkdir(parents=True, exist_ok=True)
    tmp = root / "proc" / "mdstat.new"
    shutil.copyfile(src / "proc" / "mdstat", tmp)
    md = root / "sys" / "block" / "md0" / "md"
    new = root / "sys" / "block" / "md0" / "md.new"
    if new.exists():
        shutil.rmtree(new)
    shutil.copytree(src / "sys" / "block" / "md0" / "md", new, symlinks=True)
    for f in src.glob("mdadm-detail-export-*.txt"):
        shutil.copyfile(f, root / f.name)
    old = root / "sys" / "block" / "md0" / "md.old"
    if md.exists():
        md.rename(old)
    new.rename(md)
    if old.exists():
        shutil.rmtree(old)
    os.replace(tmp, root / "proc" / "mdstat")


def recorded_smart(name: str) -> dict:
    return json.loads((RECORDED / "smartctl" / name).read_text())


def write_smart(dir: Path, device: str, doc: dict) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    tmp = dir / f".{device}.json.new"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, dir / f"{device}.json")


def hot(doc: dict, celsius: int) -> dict:
    d = copy.deepcopy(doc)
    d["temperature"]["current"] = celsius
    if "nvme_smart_health_information_log" in d:
        d["nvme_smart_health_information_log"]["temperature"] = celsius
    return d


def failing_sata(doc: dict, reallocated: int = 8, pending: int = 2, passed: bool = True) -> dict:
    """The recorded SATA disk with the attributes a dying disk changes: Reallocated_Sector_Ct
    (5) raw value, and a Current_Pending_Sector (197) row; health as given."""
    d = copy.deepcopy(doc)
    table = d["ata_smart_attributes"]["table"]
    for a in table:
        if a["id"] == 5:
            a["raw"] = {"value": reallocated, "string": str(reallocated)}
    table.append({
        "id": 197, "name": "Current_Pending_Sector", "value": 100, "worst": 100, "thresh": 0,
        "when_failed": "",
        "flags": {"value": 50, "string": "-O--CK ", "prefailure": False, "updated_online": True,
                  "performance": False, "error_rate": False, "event_count": True,
                  "auto_keep": True},
        "raw": {"value": pending, "string": str(pending)},
    })
    d["smart_status"]["passed"] = passed
    if not passed:
        d["smartctl"]["exit_status"] = 8
    return d


def base_config(root: Path, socket_path: Path, **over) -> dict:
    """Every collector pointed at `root` (an empty tree unless the test fills it); smartctl and
    mdadm replaced by the recorded-output scripts."""
    cfg = {
        "hwmond": {"socket": str(socket_path), "history": 16, "log_level": "info"},
        "smart": {"enable": False, "command": [str(FAKE_SMARTCTL), str(root / "smartctl")],
                  "interval_secs": 0.5},
        "mdraid": {"enable": False, "proc_root": str(root / "proc"), "sys_root": str(root / "sys"),
                   "command": [str(FAKE_MDADM), str(root)], "interval_secs": 0.2},
        "hwmon": {"enable": False, "root": str(root / "sys"), "interval_secs": 0.5},
        "thermal": {"enable": False, "root": str(root / "sys"), "interval_secs": 0.5},
        "edac": {"enable": False, "root": str(root / "sys"), "interval_secs": 0.5},
        "system": {"enable": False},
        "filesystem": {"enable": False, "mounts": [], "interval_secs": 0.5},
    }
    for section, keys in over.items():
        cfg.setdefault(section, {}).update(keys)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(render(cfg))
    return path


def run_hwmond(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(HWMOND), *args], capture_output=True, text=True, timeout=timeout)


def status_once(cfg_path: Path, board: Path | None = None) -> dict:
    args = ["--config", str(cfg_path)]
    if board:
        args += ["--board", str(board)]
    r = run_hwmond(*args, "status", "--once", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def component(snap: dict, cid: str) -> dict:
    for c in snap["components"]:
        if c["id"] == cid:
            return c
    raise AssertionError(f"{cid} not in {[c['id'] for c in snap['components']]}")


def reading(comp: dict, name: str) -> float:
    for r in comp["readings"]:
        if r["name"] == name:
            return r["value"]
    raise AssertionError(f"{name} not in {comp['readings']}")


class Hwmond:
    """A running hwmond daemon."""

    def __init__(self, cfg_path: Path, socket_path: Path, log_path: Path, board: Path | None = None):
        self.socket_path = socket_path
        self.log_path = log_path
        args = [str(HWMOND), "--config", str(cfg_path)]
        if board:
            args += ["--board", str(board)]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args + ["run"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hwmond exited {self.proc.returncode}: {log_path.read_text()}")
            try:
                self.state()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"hwmond did not listen on {socket_path}: {log_path.read_text()}")

    def connect(self, timeout: float = 10) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(self.socket_path))
        return s

    def request(self, req: dict | bytes, timeout: float = 10) -> dict:
        with self.connect(timeout) as s:
            data = req if isinstance(req, bytes) else json.dumps(req).encode() + b"\n"
            s.sendall(data)
            return json.loads(s.makefile("rb").readline())

    def state(self) -> dict:
        return self.request({"get": "state"})

    def events(self, timeout: float = 15) -> "EventStream":
        return EventStream(self.connect(timeout))

    def wait_state(self, pred, timeout: float = 15, what: str = "state") -> dict:
        deadline = time.monotonic() + timeout
        snap = None
        while time.monotonic() < deadline:
            snap = self.state()
            if pred(snap):
                return snap
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last: {json.dumps(snap)[:2000]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


class EventStream:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.sendall(b'{"get":"events"}\n')
        self.file = sock.makefile("rb")

    def next(self) -> dict:
        line = self.file.readline()
        if not line:
            raise AssertionError("event stream closed")
        return json.loads(line)

    def until(self, pred, timeout: float = 15, what: str = "event") -> list[dict]:
        """Events up to and including the first matching `pred`."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; saw {[(e['component'], e['name']) for e in seen]}")
            self.sock.settimeout(left)
            try:
                e = self.next()
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"timed out waiting for {what}; saw {[(e['component'], e['name']) for e in seen]}")
            seen.append(e)
            if pred(e):
                return seen

    def close(self):
        self.file.close()
        self.sock.close()
