"""Host side of the Postern appliance in QEMU: boot a built image the way hardware boots it
(DESIGN.md 3.8), reach it, and inject faults. Used by qemu/boot-image, qemu/fault and the
system tests in tests/image/.

The machine: q35 with OVMF (UEFI; OVMF_CODE_4M.fd read-only, a writable copy of
OVMF_VARS_4M.fd per run directory), TCG (no usable KVM here), the system disk as virtio-blk
(/dev/vda), the board's NVMe data disks each on its own pcie-root-port (a device on the q35
root bus pcie.0 cannot be unplugged: device_del needs a hot-pluggable slot), an i6300esb
watchdog whose expiry resets the machine, ipmi_sim as the BMC behind ipmi-bmc-extern +
isa-ipmi-kcs (the SDRs of tests/hwmon/ipmi/), a virtio NIC on user-mode networking with
restrict=on (the guest reaches nothing) and the mail ports forwarded from 127.0.0.1 only, and
two QMP sockets (qmp.sock for the process that booted it, qmp-cli.sock for qemu/fault: QEMU
serves one client per monitor). With test=True the virtio-serial ports of qemu/run-guest
(org.postern.cmd, org.postern.events, org.postern.kmsg) and `postern.test=1` on the kernel
command line, written as EXTRA_CMDLINE into the grubenv of the run directory's system disk.

The run directory holds everything that changes while the box runs, so the build output stays
pristine:
  system.img      a sparse (reflinked where the file system can) raw copy of the built
                  disk.img. Raw, not a qcow2 overlay: the grubenv edit needs mtools on the
                  image (a qcow2 would need qemu-nbd, i.e. root) and a raw file keeps the power
                  cut model of qemu/README.md (a write the guest saw complete is in the file).
  OVMF_VARS.fd    the UEFI variables
  nvme0.img ...   the NVMe data disks (nvme0-rN.img after `disk-add`)
  state.json      QEMU's pid, the QMP/CLI socket paths, the ipmi_sim console port, the
                  forwarded ports, the NVMe slots, the admin credentials once seen
  console.log     ttyS0 of the current boot (console-N.log: earlier boots of this directory)
  qemu.log, ipmi/ QEMU's own output; ipmi_sim's state, config and log

Every wait is bounded; close() powers the guest off (then kills QEMU) and stops ipmi_sim.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from postern_guest import (CmdResult, Guest, GuestError, IpmiSim, Qmp,  # noqa: E402
                           _die_with_parent, free_port)

QEMU_DIR = pathlib.Path(__file__).resolve().parent
REPO = QEMU_DIR.parent
IPMI_DIR = REPO / "tests" / "hwmon" / "ipmi"
OVMF_CODE = pathlib.Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = pathlib.Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

# Guest port -> what a person calls it. boot-image prints one line per port in this order;
# tests/readme greps `SMTP \(MX\)\s*:?\s*127\.0\.0\.1:(\d+)`: keep "NAME: 127.0.0.1:PORT".
MAIL_PORTS: list[tuple[int, str]] = [
    (25, "SMTP (MX)"),
    (587, "Submission (STARTTLS)"),
    (465, "Submissions (implicit TLS)"),
    (143, "IMAP (STARTTLS)"),
    (993, "IMAPS"),
    (110, "POP3 (STLS)"),
    (995, "POP3S"),
]
# Fixed host ports (boot-image's default, so the README's commands can name them).
FIXED_PORTS = {25: 10025, 587: 10587, 465: 10465, 143: 10143, 993: 10993, 110: 10110, 995: 10995}

# image/init prints the provisioned credentials once, at first boot, on the console.
ADMIN_RE = re.compile(r"postern(?:-init)?: admin account (\S+) password: (\S+)")

# ipmi_sim sensors (tests/hwmon/ipmi/postern.emu): number and the raw reading of a healthy fan
# (RPM = raw * 60; below 10 is under the lower critical threshold).
FANS = {"FAN1": (0x20, 90), "FAN2": (0x21, 88)}
# PSU sensors: sensor-specific offset 1 = failure detected, 3 = AC lost.
PSUS = {"PSU1": 0x10, "PSU2": 0x11}

DEFAULT_NVME_MIB = 256
# The spare PCIe root port removable media (attach_media) is hot-plugged into.
MEDIA_PORT = "media-port"

# In the guest (image/init/src/paths.rs): the writable configuration lives on /persist.
HWMOND_CONFIG = "/persist/etc/postern/hwmond.toml"
POSTERND_CONFIG = "/persist/etc/postern/postern.toml"
DATA_MOUNT = "/var/lib/postern"


def load_board(board: str) -> dict[str, Any]:
    path = REPO / "board-configs" / f"{board}.toml"
    if not path.is_file():
        raise GuestError(f"no board file {path}")
    with open(path, "rb") as f:
        return tomllib.load(f)


def nvme_slots(board_cfg: dict[str, Any]) -> list[str]:
    """QMP ids of the NVMe controllers the board has (`nvme0`, `nvme1`, ...): from the board's
    [[disk]] devices /dev/nvmeN[nM]; two when the board names none (the RAID1 pair)."""
    ids: set[str] = set()
    for d in board_cfg.get("disk", []):
        m = re.match(r"/dev/(nvme\d+)", str(d.get("device", "")))
        if m:
            ids.add(m.group(1))
    return sorted(ids, key=lambda s: int(s[4:])) or ["nvme0", "nvme1"]


def nvme_mib(board_cfg: dict[str, Any]) -> int:
    """Size of each NVMe data disk: [qemu] nvme_mib in the board file when it says."""
    q = board_cfg.get("qemu", {})
    return int(q.get("nvme_mib", q.get("data_disk_mib", DEFAULT_NVME_MIB)))


# --- grubenv on the efi partition (image/README.md: grub.cfg appends $EXTRA_CMDLINE) ---------

def _mtools_env() -> dict[str, str]:
    # The efi partition is a plain FAT image: mtools need not second-guess its geometry.
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def efi_offset(disk: pathlib.Path) -> int:
    """Byte offset of the GPT partition labelled `efi` in a raw disk image."""
    out = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise GuestError(f"sfdisk --json {disk}: {out.stderr.strip()}")
    table = json.loads(out.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for p in table.get("partitions", []):
        if p.get("name") == "efi":
            return int(p["start"]) * sector
    raise GuestError(f"{disk}: no GPT partition labelled efi (image/README.md)")


GRUBENV_PATH = "::/EFI/BOOT/grubenv"
GRUBENV_HEADER = b"# GRUB Environment Block\n"


def parse_grubenv(data: bytes) -> dict[str, str]:
    if not data.startswith(GRUBENV_HEADER):
        raise GuestError(f"not a GRUB environment block: {data[:40]!r}")
    env: dict[str, str] = {}
    for line in data[len(GRUBENV_HEADER):].decode("utf-8", "replace").split("\n"):
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        # grub-editenv escapes backslash and newline with a backslash.
        env[k] = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
    return env


def render_grubenv(env: dict[str, str], size: int = 1024) -> bytes:
    body = GRUBENV_HEADER + b"".join(
        f"{k}={v.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n".encode()
        for k, v in env.items())
    if len(body) > size:
        raise GuestError(f"grubenv overflows its {size} bytes")
    # GRUB rewrites the block in place: it must keep its size, padded with '#'.
    return body + b"#" * (size - len(body))


def read_grubenv(disk: pathlib.Path, offset: int) -> bytes:
    out = subprocess.run(["mcopy", "-n", "-i", f"{disk}@@{offset}", GRUBENV_PATH, "-"],
                         capture_output=True, timeout=30, env=_mtools_env())
    if out.returncode != 0:
        raise GuestError(f"mcopy {GRUBENV_PATH} from {disk}: {out.stderr.decode().strip()}")
    return out.stdout


def write_grubenv(disk: pathlib.Path, offset: int, data: bytes) -> None:
    tmp = disk.parent / "grubenv.new"
    tmp.write_bytes(data)
    try:
        out = subprocess.run(["mcopy", "-o", "-n", "-i", f"{disk}@@{offset}", str(tmp),
                              GRUBENV_PATH], capture_output=True, timeout=30, env=_mtools_env())
        if out.returncode != 0:
            raise GuestError(f"mcopy to {GRUBENV_PATH} in {disk}: {out.stderr.decode().strip()}")
    finally:
        tmp.unlink(missing_ok=True)


def set_test_cmdline(disk: pathlib.Path, test: bool) -> dict[str, str]:
    """Add `postern.test=1` to (or remove it from) EXTRA_CMDLINE in the disk's grubenv, keeping
    the boot-counting variables GRUB and the init maintain. Returns the new environment."""
    off = efi_offset(disk)
    raw = read_grubenv(disk, off)
    env = parse_grubenv(raw)
    words = [w for w in env.get("EXTRA_CMDLINE", "").split() if w != "postern.test=1"]
    if test:
        words.append("postern.test=1")
    if env.get("EXTRA_CMDLINE", "") != " ".join(words):
        env["EXTRA_CMDLINE"] = " ".join(words)
        write_grubenv(disk, off, render_grubenv(env, max(1024, len(raw))))
    return env


# --- the appliance -----------------------------------------------------------------------

def _read_state(run_dir: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(run_dir: pathlib.Path, state: dict[str, Any]) -> None:
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(run_dir / "state.json")


def default_image(board: str) -> pathlib.Path:
    return REPO / "target" / "image" / board / "disk.img"


# sockaddr_un holds 108 bytes: QEMU refuses a longer socket path (a deep checkout or a test's
# tmp dir). The longest socket name below is "qmp-cli.sock".
_SOCKET_PATH_MAX = 107 - len("/qmp-cli.sock")


def short_run_dir(run_dir: pathlib.Path) -> pathlib.Path:
    """The run directory, or, when its path is too long for the QEMU sockets in it, a short
    symlink to it under /tmp named after the real path (stable across calls, so boot-image,
    qemu/fault and tests find the same sockets)."""
    real = run_dir.resolve()
    if len(str(real)) <= _SOCKET_PATH_MAX:
        return real
    real.mkdir(parents=True, exist_ok=True)
    link = pathlib.Path(f"/tmp/postern-run-{hashlib.sha256(str(real).encode()).hexdigest()[:16]}")
    if not (link.is_symlink() and link.resolve() == real):
        link.unlink(missing_ok=True)
        link.symlink_to(real, target_is_directory=True)
    return link


def default_run_dir(board: str) -> pathlib.Path:
    return REPO / "target" / "qemu-appliance" / board


class Appliance(Guest):
    """One appliance in one run directory. boot() starts it (fresh=True: new disks), then
    wait_banner() / wait_ready() / admin_password(); cmd() runs a shell command over the test
    command channel (test=True only); faults injects faults; power_cut() and
    reboot_after_power_cut() pull the plug and boot the same disks again."""

    def __init__(self, run_dir: pathlib.Path | str | None = None, board: str = "qemu-x86_64",
                 image: pathlib.Path | str | None = None, test: bool = True, *,
                 fresh: bool = False, ipmi: bool = True, fixed_ports: bool = False,
                 interactive: bool = False, mem_mib: int = 1024, smp: int = 1) -> None:
        super().__init__(run_dir=short_run_dir(pathlib.Path(run_dir or default_run_dir(board))),
                         mem_mib=mem_mib)
        self.board = board
        self.image = pathlib.Path(image or default_image(board)).resolve()
        self.test = test
        self.fresh = fresh
        self.use_ipmi = ipmi
        self.fixed_ports = fixed_ports
        self.interactive = interactive
        self.smp = smp
        self.sim: IpmiSim | None = None
        self.ports: dict[int, int] = {}          # guest port -> host 127.0.0.1 port
        self.state: dict[str, Any] = {}
        self.boots = 0
        self.banner = ""
        self.faults = Faults(self.run_dir, self.qmp, self._ipmi_console, self.power_cut,
                             self.cmd)

    # --- preparing the run directory -------------------------------------------------------
    def _prepare(self) -> None:
        for tool in ("qemu-system-x86_64", "mcopy", "sfdisk"):
            if shutil.which(tool) is None:
                raise GuestError(f"{tool} not installed (tests/run installs qemu-system-x86, "
                                 "mtools, fdisk)")
        for f in (OVMF_CODE, OVMF_VARS):
            if not f.is_file():
                raise GuestError(f"{f} missing (Debian package ovmf)")
        if not self.image.is_file():
            raise GuestError(f"no image {self.image} (build it: image/build --board {self.board})")
        board_cfg = load_board(self.board)
        run = self.run_dir
        if self.fresh and run.exists():
            # Only what this module put there: a run directory may sit inside the user's tree.
            for p in run.iterdir():
                if p.is_dir() and p.name == "ipmi":
                    shutil.rmtree(p)
                elif p.is_file() or p.is_socket() or p.is_symlink():
                    p.unlink()
        run.mkdir(parents=True, exist_ok=True)
        self.state = _read_state(run)
        sysimg = run / "system.img"
        if not sysimg.exists():
            # A sparse copy, reflinked where the file system can: the build output stays as
            # built; GRUB's boot counting, the persist partition and power cuts act on the copy.
            subprocess.run(["cp", "--reflink=auto", "--sparse=always", str(self.image),
                            str(sysimg)], check=True, timeout=300)
            self.state = {"image": str(self.image), "image_mtime": self.image.stat().st_mtime}
        elif self.image.stat().st_mtime > self.state.get("image_mtime", 0):
            print(f"appliance: {self.image} is newer than the copy in {run}; "
                  "--fresh boots the new build", file=sys.stderr)
        if not (run / "OVMF_VARS.fd").exists():
            shutil.copyfile(OVMF_VARS, run / "OVMF_VARS.fd")
        mib = nvme_mib(board_cfg)
        nvme = self.state.get("nvme") or {}
        for i, slot in enumerate(nvme_slots(board_cfg)):
            d = nvme.setdefault(slot, {"image": str(run / f"{slot}.img"),
                                       "serial": f"PSTN-NVME-{i}", "bus": f"rp-{slot}",
                                       "node": f"drv-{slot}", "generation": 0, "mib": mib,
                                       "present": True})
            img = pathlib.Path(d["image"])
            if not img.exists():
                with open(img, "wb") as f:
                    f.truncate(d["mib"] * 1024 * 1024)
            # A disk removed in an earlier boot is back in its slot at power on.
            d["present"] = True
        self.state["nvme"] = nvme
        set_test_cmdline(sysimg, self.test)
        if self.fixed_ports:
            self.ports = dict(FIXED_PORTS)
        else:
            # Keep the ports of an earlier boot of this directory (a reboot after a power cut:
            # clients keep their addresses); otherwise free ones.
            old = {int(k): v for k, v in self.state.get("ports", {}).items()}
            self.ports = {g: old.get(g) or free_port() for g, _ in MAIL_PORTS}
        busy = [p for p in self.ports.values() if not _port_free(p)]
        if busy:
            raise GuestError(f"host ports in use: {busy} (another appliance running?)")
        for name in ("qmp.sock", "qmp-cli.sock", "cmd.sock", "events.sock", "kmsg.sock"):
            (run / name).unlink(missing_ok=True)
        # Keep the consoles of earlier boots: the admin password is printed at first boot only.
        if (run / "console.log").exists():
            n = 1
            while (run / f"console-{n}.log").exists():
                n += 1
            (run / "console.log").rename(run / f"console-{n}.log")

    def qemu_argv(self) -> list[str]:
        run = self.run_dir
        a = [
            "qemu-system-x86_64", "-name", f"postern-{self.board}",
            "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-smp", str(self.smp),
            "-m", str(self.mem_mib), "-nodefaults", "-no-user-config", "-display", "none",
            "-rtc", "base=utc",
            # UEFI: the firmware read-only, the variables writable per run directory.
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={run / 'OVMF_VARS.fd'}",
            "-qmp", f"unix:{run / 'qmp.sock'},server=on,wait=off",
            "-qmp", f"unix:{run / 'qmp-cli.sock'},server=on,wait=off",
            # The system disk (/dev/vda). cache=unsafe skips only flushes: QEMU completes a
            # guest write after its pwrite() into the file, so a power cut (SIGKILL) keeps
            # what the guest saw complete (qemu/README.md).
            "-drive", f"if=none,id=sysdisk,file={run / 'system.img'},format=raw,cache=unsafe",
            "-device", "virtio-blk-pci,drive=sysdisk,serial=PSTN-SYS-0,bootindex=0",
            # Watchdog: an expired i6300esb resets the machine (QEMU >= 7.2 -action syntax).
            "-device", "i6300esb,id=watchdog0", "-action", "watchdog=reset",
        ]
        for n, (slot, d) in enumerate(sorted(self.state["nvme"].items())):
            # Own root port per disk: hot-pluggable, so device_del/device_add work.
            a += ["-device", f"pcie-root-port,id={d['bus']},chassis={n + 1}"]
            if d.get("present", True):
                a += ["-drive", f"if=none,id={d['node']},file={d['image']},format=raw,cache=unsafe",
                      "-device", f"nvme,id={slot},serial={d['serial']},drive={d['node']},bus={d['bus']}"]
        # A spare hot-plug port for removable media (update bundles, attach_media()).
        a += ["-device", f"pcie-root-port,id={MEDIA_PORT},chassis={len(self.state['nvme']) + 1}"]
        netdev = "user,id=net0,restrict=on"
        for g, h in sorted(self.ports.items()):
            netdev += f",hostfwd=tcp:127.0.0.1:{h}-:{g}"
        a += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"]
        if self.sim is not None:
            a += ["-chardev", f"socket,id=ipmi0,host=127.0.0.1,port={self.sim.vm_port},reconnect=1",
                  "-device", "ipmi-bmc-extern,chardev=ipmi0,id=bmc0",
                  "-device", "isa-ipmi-kcs,bmc=bmc0"]
        if self.test:
            a += ["-device", "virtio-serial-pci,id=vser0"]
            for name in ("cmd", "events", "kmsg"):
                a += ["-chardev", f"socket,id={name},path={run / (name + '.sock')},server=on,wait=off",
                      "-device", f"virtserialport,bus=vser0.0,chardev={name},name=org.postern.{name}"]
        if self.interactive:
            # The console on the terminal and in console.log; Ctrl-a x quits, Ctrl-a c: monitor.
            a += ["-chardev", f"stdio,id=console,mux=on,signal=off,logfile={run / 'console.log'}",
                  "-serial", "chardev:console", "-mon", "chardev=console,mode=readline"]
        else:
            a += ["-chardev", f"file,id=console,path={run / 'console.log'}",
                  "-serial", "chardev:console"]
        return a

    def attach_media(self, path: pathlib.Path, timeout: float = 30) -> str:
        """Plug `path` in as a read-only virtio disk (removable media: an update bundle on a
        stick) on the spare root port. Returns the disk serial the guest sees in
        /sys/block/vdX/serial. A block device has whole sectors, so the file is copied into the
        run directory padded to 512 bytes; the guest reads the original length back."""
        self._media_generation = getattr(self, "_media_generation", 0) + 1
        gen = self._media_generation
        media = self.run_dir / f"media-{gen}.img"
        shutil.copyfile(path, media)
        size = media.stat().st_size
        with open(media, "r+b") as f:
            f.truncate((size + 511) // 512 * 512)
        node, serial = f"media{gen}", f"PSTN-MEDIA-{gen}"
        self.qmp("blockdev-add", timeout=timeout, driver="raw", **{"node-name": node},
                 **{"read-only": True},
                 file={"driver": "file", "filename": str(media), "read-only": True})
        self.qmp("device_add", timeout=timeout, driver="virtio-blk-pci", id="media",
                 drive=node, serial=serial, bus=MEDIA_PORT)
        return serial

    def detach_media(self, timeout: float = 60) -> None:
        """Unplug the media attached last (QMP device_del; waits until QEMU let go of it)."""
        self.qmp("device_del", id="media")
        deadline = time.monotonic() + timeout
        while "media" in {p["name"] for p in self.qmp("qom-list", path="/machine/peripheral")}:
            if time.monotonic() > deadline:
                raise GuestError(f"device_del media: still present after {timeout} s")
            time.sleep(0.5)

    # --- lifecycle -------------------------------------------------------------------------
    def boot(self, timeout: float = 60) -> Appliance:
        """Prepare the run directory, start ipmi_sim and QEMU and connect QMP (and the test
        channels). Returns at once; wait_banner() waits for the mail service."""
        self._prepare()
        if self.use_ipmi and self.sim is None:
            self.sim = IpmiSim(self.run_dir / "ipmi", emu=IPMI_DIR / "postern.emu",
                               sdrs=IPMI_DIR / "postern.sdrs").start()
        argv = self.qemu_argv()
        (self.run_dir / "qemu.argv").write_text(" ".join(argv) + "\n")
        self.boots += 1
        self.started_at = time.monotonic()
        if self.interactive:
            # The terminal is the console: QEMU keeps our stdin/stdout (and the terminal's
            # process group, so Ctrl-C reaches the guest, not QEMU).
            with open(self.run_dir / "qemu.log", "wb") as log:
                self.proc = subprocess.Popen(_die_with_parent(argv), stderr=log)
        else:
            self._launch(argv)
        self.state.update({
            "board": self.board, "qemu_pid": self.proc.pid, "test": self.test,
            "ports": {str(g): h for g, h in self.ports.items()},
            "qmp_cli": str(self.run_dir / "qmp-cli.sock"),
            "ipmi_console_port": self.sim.console_port if self.sim else None,
            "ipmi_dir": str(self.sim.work_dir) if self.sim else None,
            "started": time.time(),
        })
        _write_state(self.run_dir, self.state)
        # Readers on every channel QEMU offers, so a guest writing to one never blocks.
        self._attach(timeout, ("events", "cmd", "kmsg") if self.test else ())
        return self

    start = boot  # Guest's name for it

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def diagnostics(self, lines: int = 80) -> str:
        """The tails of the console, QEMU's output and ipmi_sim's log: for failure messages."""
        parts = []
        for title, path in (("console", self.run_dir / "console.log"),
                            ("qemu.log", self.run_dir / "qemu.log"),
                            ("ipmi_sim.log", self.run_dir / "ipmi" / "ipmi_sim.log")):
            try:
                # Without OVMF's terminal escapes (cursor moves, colours).
                text = re.sub(r"\x1b\[[0-9;=?]*[A-Za-z]", "",
                              path.read_text(errors="replace")).splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {title} ({path}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def wait_banner(self, timeout: float = 900) -> float:
        """Wait until the SMTP port answers with a 220 banner; returns seconds since QEMU
        started. user-mode networking accepts on the host port even before the guest listens
        (and then closes), so only the banner counts."""
        deadline = time.monotonic() + timeout
        port = self.ports[25]
        while True:
            if not self.alive():
                raise GuestError(f"QEMU exited ({self.proc.returncode if self.proc else '-'}) "
                                 f"before the SMTP banner\n{self.diagnostics()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.settimeout(min(10, max(1, deadline - time.monotonic())))
                    data = s.recv(512)
                if data.startswith(b"220"):
                    self.banner = data.decode(errors="replace").strip()
                    return time.monotonic() - self.started_at
            except OSError:
                pass
            # GRUB found no slot with tries left (image/lib/grub.cfg.in): every boot of both
            # slots failed, so waiting longer only repeats the failure.
            if "postern: no slot with tries left" in self.console():
                raise GuestError("every slot failed to boot (GRUB: no slot with tries left)\n"
                                 f"{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise GuestError(f"no SMTP banner on 127.0.0.1:{port} within {timeout} s\n"
                                 f"{self.diagnostics()}")
            time.sleep(1)

    def admin(self, timeout: float = 0) -> tuple[str, str]:
        """(address, password) of the provisioned admin account: printed once on the console
        at first boot, kept in state.json for later boots of the same run directory."""
        deadline = time.monotonic() + timeout
        while True:
            m = ADMIN_RE.search(self.console())
            if m:
                self.state["admin"] = {"address": m.group(1), "password": m.group(2)}
                _write_state(self.run_dir, self.state)
            if "admin" in self.state:
                return self.state["admin"]["address"], self.state["admin"]["password"]
            if time.monotonic() >= deadline:
                raise GuestError("no admin credentials on the console (a line "
                                 "'postern: admin account ADDRESS password: PASSWORD')\n"
                                 f"{self.diagnostics()}")
            time.sleep(0.5)

    def admin_password(self, timeout: float = 0) -> str:
        return self.admin(timeout)[1]

    def cmd(self, command: str, timeout: float = 60) -> CmdResult:
        if not self.test:
            raise GuestError("the command channel exists only with test=True (postern.test=1)")
        return super().cmd(command, timeout)

    def health(self, timeout: float = 60) -> dict[str, Any]:
        """hwmond's state snapshot in the guest (`hwmond status --json`)."""
        r = self.cmd(f"hwmond --config {HWMOND_CONFIG} status --json", timeout).check()
        return json.loads(r.out)

    def _ipmi_console(self, command: str) -> str:
        if self.sim is None:
            raise GuestError("no ipmi_sim (booted with ipmi=False)")
        return self.sim.console(command)

    def powerdown(self, timeout: float = 60) -> int | None:
        """ACPI power button (QMP system_powerdown): the init shuts down cleanly and QEMU exits.
        After `timeout` QEMU is killed. Returns QEMU's exit status."""
        if self.alive():
            try:
                self.qmp("system_powerdown", timeout=10)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"appliance: the guest did not power off within {timeout} s; killing QEMU",
                      file=sys.stderr)
                self._kill()
            except (GuestError, OSError, ValueError) as e:
                print(f"appliance: no clean power-off ({e}); killing QEMU", file=sys.stderr)
                self._kill()
        self._closed = True
        self._close_sockets()
        return self.proc.returncode if self.proc else None

    def _kill(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def power_cut(self) -> None:
        if self.interactive:
            self._kill()
        else:
            super().power_cut()

    def reboot_after_power_cut(self, timeout: float = 60) -> Appliance:
        """Boot again on the same run directory (same disks, same ports) after power_cut() or
        powerdown(): fresh QEMU, same ipmi_sim."""
        if self.alive():
            raise GuestError("reboot: QEMU still runs")
        self._close_sockets()
        self.fresh = False
        self.events.clear()
        self.kmsg.clear()
        self.bad_lines.clear()
        self._replies.clear()
        self._threads.clear()
        self._closed = False
        return self.boot(timeout)

    def close(self, timeout: float = 30) -> None:
        if not self._closed:
            self.powerdown(timeout)
        if self.sim is not None:
            self.sim.close()
            self.sim = None


def _port_free(port: int) -> bool:
    """Whether QEMU can listen on 127.0.0.1:port. Connections of a killed QEMU linger in
    TIME_WAIT after a power cut; slirp binds its forwards with SO_REUSEADDR, so they do not
    block it, and this check binds the same way."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --- faults --------------------------------------------------------------------------------

class Faults:
    """Fault injection on a running appliance (DESIGN.md 3.8). `qmp(execute, **args)` and
    `ipmi_console(command)` are the appliance's own connections (Appliance.faults) or those of
    the CLI (Faults.attach: qmp-cli.sock and the console port in state.json)."""

    def __init__(self, run_dir: pathlib.Path, qmp: Callable[..., Any],
                 ipmi_console: Callable[[str], str], kill: Callable[[], None],
                 cmd: Callable[..., CmdResult] | None = None) -> None:
        self.run_dir = run_dir
        self.qmp = qmp
        self.ipmi_console = ipmi_console
        self.kill = kill
        self.cmd = cmd

    @classmethod
    def attach(cls, run_dir: pathlib.Path, timeout: float = 10) -> Faults:
        """Faults for the appliance that boot-image (or a test) runs in `run_dir`."""
        state = _read_state(run_dir)
        if not state.get("qemu_pid"):
            raise GuestError(f"no running appliance in {run_dir} (no state.json)")
        qmp_conn: list[Qmp] = []

        def qmp(execute: str, timeout: float = 30, **arguments: Any) -> Any:
            if not qmp_conn:
                qmp_conn.append(Qmp(pathlib.Path(state["qmp_cli"]), time.monotonic() + timeout))
            return qmp_conn[0].execute(execute, timeout=timeout, **arguments)

        def ipmi_console(command: str) -> str:
            port = state.get("ipmi_console_port")
            if not port:
                raise GuestError("this appliance runs without ipmi_sim")
            return IpmiSim(pathlib.Path(state["ipmi_dir"]), emu=IPMI_DIR / "postern.emu",
                           console_port=int(port)).console(command)

        def kill() -> None:
            os.kill(int(state["qemu_pid"]), signal.SIGKILL)

        return cls(run_dir, qmp, ipmi_console, kill)

    # Disks --------------------------------------------------------------------------------
    def _slot(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        state = _read_state(self.run_dir)
        nvme = state.get("nvme", {})
        if name not in nvme:
            raise GuestError(f"no NVMe slot {name!r} (have {sorted(nvme)})")
        return state, nvme[name]

    def _peripherals(self) -> set[str]:
        return {p["name"] for p in self.qmp("qom-list", path="/machine/peripheral")}

    def disk_remove(self, name: str, timeout: float = 60) -> None:
        """Hot-unplug NVMe controller `name` (QMP device_del). The guest's PCIe hotplug driver
        has to let go of it; returns once QEMU has removed the device."""
        state, d = self._slot(name)
        self.qmp("device_del", id=name)
        deadline = time.monotonic() + timeout
        while name in self._peripherals():
            if time.monotonic() > deadline:
                raise GuestError(f"device_del {name}: still present after {timeout} s "
                                 "(the guest did not release the slot)")
            time.sleep(0.5)
        d["present"] = False
        _write_state(self.run_dir, state)

    def disk_add(self, name: str, timeout: float = 30) -> str:
        """A fresh blank disk into the empty slot of `name` (blockdev-add + device_add on the
        same root port, a new serial). Returns the new serial."""
        state, d = self._slot(name)
        if name in self._peripherals():
            raise GuestError(f"disk-add {name}: the slot is occupied (disk-remove it first)")
        gen = int(d.get("generation", 0)) + 1
        img = self.run_dir / f"{name}-r{gen}.img"
        with open(img, "wb") as f:
            f.truncate(int(d.get("mib", DEFAULT_NVME_MIB)) * 1024 * 1024)
        node = f"drv-{name}-r{gen}"
        serial = f"{d['serial'].split('-R')[0]}-R{gen}"
        self.qmp("blockdev-add", timeout=timeout, driver="raw", **{"node-name": node},
                 file={"driver": "file", "filename": str(img)})
        self.qmp("device_add", timeout=timeout, driver="nvme", id=name, serial=serial,
                 drive=node, bus=d["bus"])
        d.update({"image": str(img), "node": node, "serial": serial, "generation": gen,
                  "present": True})
        _write_state(self.run_dir, state)
        return serial

    def nvme_critical(self, name: str, value: int) -> None:
        """Set the NVMe SMART critical warning byte (bit 0 spare, 1 temperature, 2 reliability,
        3 read-only, 4 volatile backup); 0 clears it."""
        self.qmp("qom-set", path=f"/machine/peripheral/{name}",
                 property="smart_critical_warning", value=int(value))

    # BMC ----------------------------------------------------------------------------------
    def fan_stall(self, fan: str) -> None:
        num, _ = FANS[fan.upper()]
        self.ipmi_console(f"sensor_set_value 0x20 0 {num:#x} 0 1")

    def fan_ok(self, fan: str) -> None:
        num, raw = FANS[fan.upper()]
        self.ipmi_console(f"sensor_set_value 0x20 0 {num:#x} {raw} 1")

    def psu_fail(self, psu: str) -> None:
        self.ipmi_console(f"sensor_set_bit 0x20 0 {PSUS[psu.upper()]:#x} 1 1 1")

    def psu_ok(self, psu: str) -> None:
        self.ipmi_console(f"sensor_set_bit 0x20 0 {PSUS[psu.upper()]:#x} 1 0 1")

    # Power and space ----------------------------------------------------------------------
    def power_cut(self) -> None:
        """SIGKILL to QEMU: no guest shutdown, nothing flushed."""
        self.kill()

    FILL = "/var/lib/postern/.fault-full-disk"

    def full_disk(self, timeout: float = 300) -> None:
        """Fill the data file system (the test command channel: test=True boots only)."""
        if self.cmd is None:
            raise GuestError("full-disk needs the command channel (an Appliance with test=True)")
        # dd stops at ENOSPC with a non-zero status: that is the point.
        self.cmd(f"dd if=/dev/zero of={self.FILL} bs=1M 2>/dev/null; sync", timeout=timeout)

    def full_disk_clear(self, timeout: float = 60) -> None:
        if self.cmd is None:
            raise GuestError("full-disk needs the command channel (an Appliance with test=True)")
        self.cmd(f"rm -f {self.FILL}; sync", timeout=timeout).check()
