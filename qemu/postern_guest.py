"""Host side of the QEMU test guest: boot it, talk to it, inject faults.

Used by tests/qemu/ and qemu/capture-fixtures. The guest is built by qemu/build-guest and
booted by qemu/run-guest (TCG only); its init (qemu/guest/init) serves two virtio-serial ports:

- the command channel: we send ``ID BASE64(command)``; the guest answers
  ``R ID RC BASE64(stdout) BASE64(stderr)`` ("-" for empty);
- the event channel: hwmond's event stream, one JSON object a line (and the init's own boot
  milestones, objects with a "guest" key);
- the kernel log channel: /dev/kmsg records, timestamped on arrival like the events, so that
  the moment the guest kernel did something (md finished a rebuild) is known on the host clock.

QMP (``qmp.sock``) drives the virtual hardware (NVMe ``smart_critical_warning``, ``device_del``).
ipmi_sim (OpenIPMI) is the BMC behind ``ipmi-bmc-extern``; :class:`IpmiSim` starts it with a
``serial kcs ... codec VM`` interface and drives its console.

Every wait is bounded; :meth:`Guest.close` and :meth:`IpmiSim.close` kill what they started.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

QEMU_DIR = pathlib.Path(__file__).resolve().parent
REPO = QEMU_DIR.parent
DEFAULT_GUEST = REPO / "target" / "qemu-guest"


class GuestError(RuntimeError):
    pass


_BUILT: dict[pathlib.Path, tuple[bool, bool]] = {}


def missing_tools(*tools: str) -> list[str]:
    """The host tools among `tools` that are not on PATH (tests/run installs them all)."""
    return [t for t in tools if shutil.which(t) is None]


def build_guest(out: pathlib.Path = DEFAULT_GUEST, hwmond: bool | None = None,
                posternd: bool | None = None, timeout: float = 1800) -> pathlib.Path:
    """Run qemu/build-guest; returns the guest directory.

    hwmond / posternd: None = when the crate is in the tree (build-guest's default). A guest
    already built by this process with the same contents is reused, so the test modules of one
    pytest run share one build.
    """
    want = (
        (REPO / "hwmon" / "Cargo.toml").is_file() if hwmond is None else hwmond,
        (REPO / "daemon" / "posternd" / "Cargo.toml").is_file() if posternd is None else posternd,
    )
    out = pathlib.Path(out).resolve()
    if _BUILT.get(out) == want and (out / "initramfs.cpio").is_file():
        return out
    cmd = [str(QEMU_DIR / "build-guest"), "--out", str(out)]
    if not want[0]:
        cmd.append("--no-hwmond")
    if not want[1]:
        cmd.append("--no-posternd")
    subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    _BUILT[out] = want
    return out


def _die_with_parent(argv: list[str]) -> list[str]:
    """argv run so that the child is SIGKILLed when the test process dies, however it dies
    (setpriv --pdeathsig, util-linux): no QEMU or ipmi_sim outlives a killed test run."""
    if shutil.which("setpriv") is None:
        return argv
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect_unix(path: pathlib.Path, deadline: float, proc: subprocess.Popen | None) -> socket.socket:
    while True:
        if proc is not None and proc.poll() is not None:
            raise GuestError(f"QEMU exited ({proc.returncode}) before {path.name} was ready")
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise GuestError(f"cannot connect to {path}") from None
            time.sleep(0.05)


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class Qmp:
    """A QMP client on a unix socket (one monitor: QEMU serves one client per -qmp socket).

    Asynchronous events that arrive while a command waits for its answer are skipped."""

    def __init__(self, path: pathlib.Path, deadline: float,
                 proc: subprocess.Popen | None = None) -> None:
        self.path = pathlib.Path(path)
        self._lock = threading.Lock()
        self._sock = _connect_unix(self.path, deadline, proc)
        self._sock.settimeout(max(1.0, deadline - time.monotonic()))
        self._file = self._sock.makefile("rwb")
        greeting = json.loads(self._file.readline() or b"{}")
        if "QMP" not in greeting:
            raise GuestError(f"unexpected QMP greeting {greeting}")
        self.execute("qmp_capabilities")

    def execute(self, execute: str, timeout: float = 30, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        with self._lock:
            self._sock.settimeout(timeout)
            self._file.write(json.dumps(msg).encode() + b"\n")
            self._file.flush()
            while True:
                line = self._file.readline()
                if not line:
                    raise GuestError(f"QMP closed during {execute}")
                reply = json.loads(line)
                if "event" in reply:
                    continue
                if "error" in reply:
                    raise GuestError(f"QMP {execute}: {reply['error']}")
                return reply.get("return")

    def close(self) -> None:
        for c in (self._file, self._sock):
            try:
                c.close()
            except OSError:
                pass


@dataclass
class Event:
    t: float            # host time.monotonic() when the line arrived
    obj: dict[str, Any]
    raw: str


@dataclass
class CmdResult:
    rc: int
    out: str
    err: str
    seconds: float

    def check(self) -> CmdResult:
        if self.rc != 0:
            raise GuestError(f"guest command failed ({self.rc}): {self.err.strip() or self.out.strip()}")
        return self


@dataclass
class Guest:
    run_dir: pathlib.Path
    guest_dir: pathlib.Path = DEFAULT_GUEST
    ipmi: str | None = None          # "127.0.0.1:PORT" of ipmi_sim's VM serial interface
    append: str = ""
    # The initramfs (static posternd, postern and hwmond plus the guest tools, ~72 MB) is
    # unpacked into RAM: with 256 MiB that failed ("Initramfs unpacking failed: write error").
    mem_mib: int = 512
    disk_mib: int = 64
    raid5_disks: int = 0             # extra virtio disks (serials PSTN-R5-K) for an md RAID5
    hostfwd: dict[int, int] = field(default_factory=dict)  # host 127.0.0.1 port -> guest port
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    events: list[Event] = field(default_factory=list)
    kmsg: list[tuple[float, str]] = field(default_factory=list)  # (arrival, message text)
    bad_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._replies: dict[str, tuple[float, str]] = {}
        self._ids = itertools.count(1)
        self._cmd_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._cmd_sock: socket.socket | None = None
        self._ev_sock: socket.socket | None = None
        self._kmsg_sock: socket.socket | None = None
        self._qmp: Qmp | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30) -> Guest:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A run directory booted before (a successor() after power_cut()): its sockets are
        # stale; the disk images stay (run-guest creates them only when missing).
        for name in ("qmp.sock", "cmd.sock", "events.sock", "kmsg.sock"):
            (self.run_dir / name).unlink(missing_ok=True)
        cmd = [str(QEMU_DIR / "run-guest"), "--guest", str(self.guest_dir), "--run",
               str(self.run_dir), "--mem", str(self.mem_mib), "--disk-mib", str(self.disk_mib)]
        if self.ipmi:
            cmd += ["--ipmi", self.ipmi]
        if self.append:
            cmd += ["--append", self.append]
        if self.raid5_disks:
            cmd += ["--raid5-disks", str(self.raid5_disks)]
        for host_port, guest_port in self.hostfwd.items():
            cmd += ["--hostfwd", f"{host_port}:{guest_port}"]
        self._launch(cmd)
        self._attach(timeout)
        return self

    def _launch(self, cmd: list[str]) -> None:
        """Start QEMU (or a script that execs it) in its own process group, output to
        qemu.log; power_cut() and close() kill that group."""
        self.started_at = time.monotonic()
        with open(self.run_dir / "qemu.log", "wb") as log:
            self.proc = subprocess.Popen(_die_with_parent(cmd), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def _attach(self, timeout: float, channels: tuple[str, ...] = ("events", "cmd", "kmsg")) -> None:
        """Connect to the virtio-serial ports named in `channels` and to qmp.sock in the run
        directory and start their reader threads (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        socks = {name: _connect_unix(self.run_dir / f"{name}.sock", deadline, self.proc)
                 for name in channels}
        self._ev_sock = socks.get("events")
        self._cmd_sock = socks.get("cmd")
        self._kmsg_sock = socks.get("kmsg")
        self._qmp = Qmp(self.run_dir / "qmp.sock", deadline, self.proc)
        for target, sock in ((self._read_events, self._ev_sock), (self._read_cmd, self._cmd_sock),
                             (self._read_kmsg, self._kmsg_sock)):
            if sock is None:
                continue
            t = threading.Thread(target=target, args=(sock,), daemon=True)
            t.start()
            self._threads.append(t)

    def wait_ready(self, timeout: float = 120) -> float:
        """Wait until the command channel answers; returns seconds since QEMU was started."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestError(f"guest not ready after {timeout} s; console:\n{self.console()}")
            try:
                self.cmd("true", timeout=min(remaining, 10))
                return time.monotonic() - self.started_at
            except GuestError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise GuestError(f"QEMU exited ({self.proc.returncode}); console:\n{self.console()}") from None

    def console(self) -> str:
        try:
            return (self.run_dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.qmp("quit", timeout=5)
            except (GuestError, OSError, ValueError) as e:
                # QEMU is killed below anyway.
                print(f"QMP quit failed: {e}", file=sys.stderr)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for s in (self._cmd_sock, self._ev_sock, self._kmsg_sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self._qmp is not None:
            self._qmp.close()

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL to QEMU, no QMP quit, no guest shutdown. What the guest
        kernel had not yet written to its virtual disks (its page cache, md's stripe cache) is
        lost; a write the guest saw complete was already written into the image file by QEMU
        (pwrite returned, with any cache= mode on a raw image) and stays there: the host does
        not crash, so its page cache keeps it. Not modelled: a crash of the host itself (the
        disks' "volatile cache" is the host's page cache, and cache=unsafe ignores flushes)."""
        if self.proc is None or self.proc.poll() is not None:
            raise GuestError("power_cut: QEMU is not running")
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._closed = True
        self._close_sockets()

    def successor(self, **changes: Any) -> Guest:
        """A new, not yet started Guest on the same run directory, so the same disk images
        (boot it after power_cut() or close()); `changes` override fields (a new hostfwd)."""
        if self.proc is not None and self.proc.poll() is None:
            raise GuestError("successor: this guest's QEMU still runs")
        return dataclasses.replace(self, proc=None, started_at=0.0, events=[], kmsg=[],
                                   bad_lines=[], **changes)

    def __enter__(self) -> Guest:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- readers -------------------------------------------------------------------------
    def _lines(self, sock: socket.socket):
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield time.monotonic(), line.decode("utf-8", errors="replace").rstrip("\r")

    def _read_events(self, sock: socket.socket) -> None:
        for t, line in self._lines(sock):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                with self._cond:
                    self.bad_lines.append(line)
                continue
            with self._cond:
                self.events.append(Event(t, obj if isinstance(obj, dict) else {"value": obj}, line))
                self._cond.notify_all()

    def _read_kmsg(self, sock: socket.socket) -> None:
        # /dev/kmsg records: "PRIORITY,SEQ,USEC,FLAGS;MESSAGE" (Documentation/ABI/testing/dev-kmsg);
        # continuation lines (" KEY=value") are dropped.
        for t, line in self._lines(sock):
            if ";" not in line or line.startswith(" "):
                continue
            with self._cond:
                self.kmsg.append((t, line.split(";", 1)[1]))
                self._cond.notify_all()

    def wait_kmsg(self, text: str, timeout: float, after: float | None = None) -> float:
        """Host arrival time of the first kernel log message containing `text`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, msg in self.kmsg:
                    if (after is None or t >= after) and text in msg:
                        return t
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GuestError(f"no kernel message {text!r} within {timeout} s")
                self._cond.wait(remaining)

    def _read_cmd(self, sock: socket.socket) -> None:
        for t, line in self._lines(sock):
            parts = line.split(" ")
            if len(parts) == 5 and parts[0] == "R":
                with self._cond:
                    self._replies[parts[1]] = (t, line)
                    self._cond.notify_all()

    # --- the command channel -------------------------------------------------------------
    def cmd(self, command: str, timeout: float = 60) -> CmdResult:
        """Run a shell command in the guest; bounded by `timeout` on the host side."""
        if self._cmd_sock is None:
            raise GuestError("guest not started")
        cid = f"c{next(self._ids)}"
        payload = base64.b64encode(command.encode()).decode()
        start = time.monotonic()
        with self._cmd_lock:
            self._cmd_sock.sendall(f"{cid} {payload}\n".encode())
        deadline = start + timeout
        with self._cond:
            while cid not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GuestError(f"no answer to {command!r} within {timeout} s")
                self._cond.wait(remaining)
            t, line = self._replies.pop(cid)
        _, _, rc, out, err = line.split(" ")

        def dec(s: str) -> str:
            return "" if s == "-" else base64.b64decode(s).decode("utf-8", errors="replace")

        return CmdResult(int(rc), dec(out), dec(err), t - start)

    def write_file(self, path: str, data: bytes, mode: str = "0644", chunk: int = 48 * 1024,
                   timeout: float = 60) -> None:
        """Write `data` to `path` in the guest (base64 through the command channel)."""
        q = _sh_quote(path)
        self.cmd(f": > {q}.part", timeout=timeout).check()
        for i in range(0, len(data), chunk):
            b64 = base64.b64encode(data[i:i + chunk]).decode()
            self.cmd(f"echo {b64} | base64 -d >> {q}.part", timeout=timeout).check()
        self.cmd(f"chmod {mode} {q}.part && mv {q}.part {q}", timeout=timeout).check()

    def read_file(self, path: str, chunk: int = 512 * 1024, timeout: float = 60) -> bytes:
        """The bytes of `path` in the guest, fetched in chunks through the command channel
        (each reply is one base64 line, so large files go in several commands)."""
        q = _sh_quote(path)
        size = int(self.cmd(f"stat -c %s {q}", timeout=timeout).check().out.strip())
        out = bytearray()
        while len(out) < size:
            # dd counts blocks of `chunk` bytes: chunk divides every offset read so far.
            r = self.cmd(f"dd if={q} bs={chunk} skip={len(out) // chunk} count=1 2>/dev/null"
                         " | base64 -w 0", timeout=timeout).check()
            got = base64.b64decode(r.out.strip())
            if not got:
                raise GuestError(f"{path} shrank while read ({len(out)} of {size} bytes)")
            out += got
        return bytes(out[:size])

    # --- events --------------------------------------------------------------------------
    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                   after: float | None = None, what: str = "event") -> Event:
        """The first event (arrived at or after host monotonic time `after`) matching pred."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if (after is None or ev.t >= after) and pred(ev.obj):
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(e.raw for e in self.events[-15:])
                    raise GuestError(f"no {what} within {timeout} s; last events:\n{tail}")
                self._cond.wait(remaining)

    # --- QMP -----------------------------------------------------------------------------
    def qmp(self, execute: str, timeout: float = 30, **arguments: Any) -> Any:
        if self._qmp is None:
            raise GuestError("QMP not connected")
        return self._qmp.execute(execute, timeout=timeout, **arguments)


# --- ipmi_sim -----------------------------------------------------------------------------

@dataclass
class IpmiSim:
    """OpenIPMI's ipmi_sim as the guest's BMC (ipmi-bmc-extern speaks its "VM" serial codec).

    `emu` is an ipmi_sim command file (ipmi_sim_cmd(5)) and `sdrs` the SDR source that
    `sdrcomp` compiles into the state directory (the MC is added with `persist_sdr`); `name`
    must be the BMC name the emu file's state directory uses. The console (`console` in the
    generated lan.conf, loopback) takes ipmi_sim_cmd(5) commands at run time such as
    ``sensor_set_value 0x20 0 NUM VALUE 1``. There is no LAN channel: the guest reaches the BMC
    only through KCS.
    """

    work_dir: pathlib.Path
    emu: pathlib.Path
    sdrs: pathlib.Path | None = None
    name: str = "postern-bmc"
    vm_port: int = 0
    console_port: int = 0
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> IpmiSim:
        if shutil.which("ipmi_sim") is None:
            raise GuestError("ipmi_sim not installed (Debian package openipmi)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.vm_port = self.vm_port or free_port()
        self.console_port = self.console_port or free_port()
        state = self.work_dir / "state"
        # ipmi_sim keeps its persistent state in STATEDIR/ipmi_sim/NAME/ (sdr.20.main, sel.20).
        persist = state / "ipmi_sim" / self.name
        persist.mkdir(parents=True, exist_ok=True)
        if self.sdrs is not None:
            # -8: ID strings as 8-bit ASCII. Without it sdrcomp packs short upper-case names
            # ("FAN1", "12V") as 6-bit ASCII, which ipmitool in the guest prints garbled.
            subprocess.run(["sdrcomp", "-8", "-o", str(persist / "sdr.20.main"),
                            str(self.sdrs)], check=True, timeout=30, capture_output=True)
        conf = self.work_dir / "lan.conf"
        # ipmi_lan(5): the BMC at 0x20 and the QEMU "VM" serial interface (ipmi-bmc-extern).
        conf.write_text(
            f'name "{self.name}"\n'
            "set_working_mc 0x20\n"
            f"serial kcs 127.0.0.1 {self.vm_port} codec VM\n"
            f"console 127.0.0.1 {self.console_port}\n"
        )
        with open(self.work_dir / "ipmi_sim.log", "wb") as log:
            self.proc = subprocess.Popen(
                _die_with_parent(["ipmi_sim", "-n", "-c", str(conf), "-f", str(self.emu),
                                  "-s", str(state)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # SIGPIPE stays ignored (as in Python): ipmi_sim dies of it when a console or
                # the QEMU connection goes away while it writes.
                restore_signals=False, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise GuestError(f"ipmi_sim exited ({self.proc.returncode}): "
                                 f"{(self.work_dir / 'ipmi_sim.log').read_text(errors='replace')}")
            try:
                self.console("", timeout=2)
                return self
            except (OSError, GuestError):
                if time.monotonic() > deadline:
                    raise GuestError("ipmi_sim console did not open") from None
                time.sleep(0.1)

    @property
    def vm_address(self) -> str:
        return f"127.0.0.1:{self.vm_port}"

    def console(self, command: str, timeout: float = 10) -> str:
        """Run one ipmi_sim_cmd(5) command on the console; returns what it printed."""
        with socket.create_connection(("127.0.0.1", self.console_port), timeout=timeout) as s:
            s.settimeout(0.2)
            deadline = time.monotonic() + timeout

            def until_prompts(n: int, out: bytes) -> bytes:
                # The console (telnet) prints "> " when it is ready for a command.
                while out.count(b"> ") < n:
                    if time.monotonic() > deadline:
                        raise GuestError(f"ipmi_sim console: no prompt after {command!r}")
                    try:
                        chunk = s.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        raise GuestError("ipmi_sim console closed")
                    out += chunk
                return out

            out = until_prompts(1, b"")
            s.sendall(command.encode() + b"\n")
            out = until_prompts(2, out)
        text = out.split(b"> ", 1)[1].decode(errors="replace")
        if "**" in text:
            raise GuestError(f"ipmi_sim console: {text.strip()}")
        return text

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
