"""image/build: the appliance image builder (issue 10; image/README.md).

Builds the qemu-x86_64 image twice into two fresh directories and compares the bytes (disk image,
RAUC bundle, every partition image), then checks what was built: the GPT layout against the
board file, the EROFS system slot and what is in it (its programs run with their own libraries),
the initial grubenv, the bundle's signature (`rauc info --keyring`, and a foreign CA refused),
and the manifest. A build for the 2U SKU board shows that other boards build too.

The builder must need no root: when the suite runs as root (CI), the builds run as `nobody`
(setpriv), and in every case with sudo, su, mount, umount, losetup and chroot on the PATH
replaced by traps that record the call and fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import tempfile
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILDER = REPO / "image" / "build"
BOARD = "qemu-x86_64"
OTHER_BOARD = "postern-2u-sata-raid10"
OTHER_VERSION = "9.9.9-test"
LABELS = ["efi", "boot_a", "system_a", "boot_b", "system_b", "persist"]
SIZE_KEYS = {"efi": "efi", "boot_a": "boot", "system_a": "system", "boot_b": "boot",
             "system_b": "system", "persist": "persist"}
BUILD_TIMEOUT = 3600
TRAPPED = ["sudo", "su", "mount", "umount", "losetup", "chroot"]
BINS = [("postern-init", "postern-init"), ("postern-board", "postern-board"),
        ("posternd", "posternd"), ("posternd", "postern"), ("postern-hwmon", "hwmond")]
TOOLS = {"apt-get": "apt", "dpkg-deb": "dpkg", "mkfs.erofs": "erofs-utils",
         "fsck.erofs": "erofs-utils", "grub-mkimage": "grub-common", "mcopy": "mtools",
         "mkfs.fat": "dosfstools", "mke2fs": "e2fsprogs", "sfdisk": "fdisk", "rauc": "rauc",
         "mksquashfs": "squashfs-tools", "faketime": "faketime", "cpio": "cpio",
         "openssl": "openssl", "readelf": "binutils", "depmod": "kmod",
         "grub-script-check": "grub-common"}


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git(*args) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip()


def board_sizes(board: str) -> dict:
    image = tomllib.loads((REPO / "board-configs" / f"{board}.toml").read_text())["image"]
    return {k: int(image[f"{k}_mib"]) for k in ("efi", "boot", "system", "persist")}


class Builder:
    """Runs image/build as an unprivileged user (nobody when we are root), with traps for the
    privileged commands, in directories that user owns."""

    def __init__(self, base: pathlib.Path, bin_dir: str):
        self.base = base
        self.bin_dir = bin_dir
        self.traps = base / "traps"
        self.trap_log = base / "trap.log"
        self.traps.mkdir()
        self.trap_log.touch()
        for name in TRAPPED:
            t = self.traps / name
            t.write_text(f"#!/bin/sh\necho \"{name} $*\" >>{self.trap_log}\nexit 1\n")
            t.chmod(0o755)
        self.as_nobody = os.geteuid() == 0 and shutil.which("setpriv") is not None
        self.cache = base / "debs"
        self.cache.mkdir()
        # Seed the package cache with the .debs a previous build fetched (the builder checks
        # each one's SHA256 against apt's lists), so the test does not fetch 100 MB again.
        seed = REPO / "target" / "image" / "debs"
        if seed.is_dir():
            for deb in seed.glob("*.deb"):
                shutil.copyfile(deb, self.cache / deb.name)
        self.keys = base / "keys"
        # Pinned for the builds, so that a commit landing between them cannot change the bytes.
        self.env = dict(os.environ, SOURCE_DATE_EPOCH=git("log", "-1", "--format=%ct"),
                        POSTERN_COMMIT=git("rev-parse", "HEAD"),
                        POSTERN_IMAGE_KEY_DIR=str(self.keys), HOME=str(base),
                        PATH=f"{self.traps}:{os.environ['PATH']}")
        if self.as_nobody:
            nobody = pwd.getpwnam("nobody")
            for p in [base, *base.rglob("*")]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
            self.prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                           "--clear-groups", "--reset-env"]
            self.env["USER"] = self.env["LOGNAME"] = "nobody"
        else:
            self.prefix = []

    def build(self, board: str, name: str, *extra: str) -> pathlib.Path:
        out = self.base / name
        cmd = [str(BUILDER), "--board", board, "--out", str(out), "--bin-dir", self.bin_dir,
               "--cache", str(self.cache), *extra]
        if self.as_nobody:
            # setpriv --reset-env drops the environment: hand the builder its variables.
            keep = ["SOURCE_DATE_EPOCH", "POSTERN_COMMIT", "POSTERN_IMAGE_KEY_DIR", "HOME",
                    "PATH", "USER", "LOGNAME"]
            cmd = [*self.prefix, "env", *[f"{k}={self.env[k]}" for k in keep], *cmd]
        r = subprocess.run(cmd, env=self.env, cwd=self.base, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
        assert r.returncode == 0, f"image/build --board {board} failed:\n{r.stdout[-6000:]}"
        print(r.stdout[-1500:])
        return out


@pytest.fixture(scope="module")
def builds():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        pytest.fail(f"missing tools: install {' '.join(missing)} (tests/run does)")
    # The static binaries, built once (as the test user: cargo's home is root's in CI); the
    # unprivileged builds take them from here.
    cargo = [str(REPO / "image" / "lib" / "cargo-static")]
    for pkg, binary in BINS:
        cargo += ["-p", pkg, "--bin", binary]
    r = subprocess.run(cargo, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=BUILD_TIMEOUT)
    assert r.returncode == 0, f"cargo build failed:\n{r.stderr[-4000:]}"
    base = pathlib.Path(tempfile.mkdtemp(prefix="postern-image-test-"))
    base.chmod(0o755)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    release = pathlib.Path(r.stdout.strip().splitlines()[-1])
    for _, binary in BINS:
        shutil.copy2(release / binary, bin_dir / binary)
    try:
        b = Builder(base, str(bin_dir))
        first = b.build(BOARD, "first")
        second = b.build(BOARD, "second")
        # The other board also carries the options of the rollback test's bundle.
        other = b.build(OTHER_BOARD, "other", "--version", OTHER_VERSION, "--test-health-fail")
        yield {"first": first, "second": second, "other": other, "builder": b}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bundle_of(out: pathlib.Path) -> pathlib.Path:
    bundles = list(out.glob("*.raucb"))
    assert len(bundles) == 1, bundles
    return bundles[0]


def partitions(disk: pathlib.Path) -> list[dict]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True, text=True,
                                      stdout=subprocess.PIPE).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    assert table["sectorsize"] == 512
    return table["partitions"]


def extract_partition(disk: pathlib.Path, label: str, dest: pathlib.Path) -> pathlib.Path:
    part = next(p for p in partitions(disk) if p["name"] == label)
    with open(disk, "rb") as src, open(dest, "wb") as out:
        src.seek(part["start"] * 512)
        out.write(src.read(part["size"] * 512))
    return dest


def test_two_builds_are_identical(builds):
    first, second = builds["first"], builds["second"]
    assert bundle_of(first).name == bundle_of(second).name
    for name in ["disk.img", bundle_of(first).name, "system.erofs", "boot.vfat", "efi.vfat",
                 "persist.ext4", "initrd.cpio", "BOOTX64.EFI"]:
        assert sha256(first / name) == sha256(second / name), f"{name} differs between builds"
    m1 = json.loads((first / "manifest.json").read_text())
    m2 = json.loads((second / "manifest.json").read_text())
    assert m1["artefacts"] == m2["artefacts"]


def test_builder_needs_no_root(builds):
    b = builds["builder"]
    assert b.trap_log.read_text() == "", f"image/build ran privileged commands: " \
                                         f"{b.trap_log.read_text()}"
    if b.as_nobody:
        # The outputs are nobody's: the builds really ran unprivileged.
        assert (builds["first"] / "disk.img").stat().st_uid == pwd.getpwnam("nobody").pw_uid


@pytest.mark.parametrize("which,board", [("first", BOARD), ("other", OTHER_BOARD)])
def test_gpt_layout_follows_the_board(builds, which, board):
    disk = builds[which] / "disk.img"
    parts = partitions(disk)
    assert [p["name"] for p in parts] == LABELS
    sizes = board_sizes(board)
    expect_start = 2048
    for p in parts:
        assert p["start"] == expect_start, p
        assert p["size"] == sizes[SIZE_KEYS[p["name"]]] * 2048, p
        expect_start += p["size"]
    assert parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # the ESP
    # The backup GPT fits after the last partition.
    assert disk.stat().st_size == (expect_start + 2048) * 512


def test_system_slot_is_erofs_with_the_appliance(builds, tmp_path):
    out = builds["first"]
    disk = out / "disk.img"
    for label in ("system_a", "system_b"):
        img = extract_partition(disk, label, tmp_path / f"{label}.img")
        with open(img, "rb") as f:
            f.seek(1024)
            assert f.read(4) == (0xE0F5E1E2).to_bytes(4, "little"), f"{label} is not EROFS"
    root = tmp_path / "root"
    r = subprocess.run(["fsck.erofs", f"--extract={root}", str(tmp_path / "system_a.img")],
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout
    for path in ["sbin/init", "usr/sbin/posternd", "usr/sbin/postern", "usr/sbin/hwmond",
                 "usr/bin/postern-board", "bin/busybox", "usr/sbin/mdadm", "usr/sbin/mke2fs",
                 "usr/sbin/smartctl", "usr/bin/rauc", "usr/bin/grub-editenv",
                 "usr/bin/dbus-daemon", "etc/postern/board.toml", "etc/postern/build.json",
                 "etc/postern/modules.order", "etc/rauc/system.conf", "etc/rauc/keyring.pem"]:
        assert (root / path).exists(), f"/{path} missing from system_a"
    assert (root / "sbin/init").read_bytes() != (root / "bin/busybox").read_bytes()
    assert (root / "etc/postern/board.toml").read_bytes() == \
        (REPO / "board-configs" / f"{BOARD}.toml").read_bytes()
    build = json.loads((root / "etc/postern/build.json").read_text())
    assert build["board"] == BOARD
    assert build["commit"] == builds["builder"].env["POSTERN_COMMIT"]
    conf = (root / "etc/rauc/system.conf").read_text()
    assert f"compatible=postern-{BOARD}\n" in conf and "bootloader=grub\n" in conf
    assert (root / "etc/rauc/keyring.pem").read_bytes() == \
        (builds["builder"].keys / "ca.cert.pem").read_bytes()
    # Every module in the load order (paths relative to /lib/modules/KVER) is in the slot,
    # with the board's watchdog and the soft dependency of ext4.
    order = (root / "etc/postern/modules.order").read_text().splitlines()
    for line in order:
        assert (root / "lib/modules" / build["kernel"] / line).is_file(), line
    names = [os.path.basename(m) for m in order]
    assert {"erofs.ko", "ext4.ko", "i6300esb.ko", "crc32c_generic.ko"} <= set(names), names
    assert names.index("jbd2.ko") < names.index("ext4.ko")
    # The Debian programs run with the libraries the builder put next to them (their own
    # loader and library directory, nothing from the host).
    loader = root / "usr/lib64/ld-linux-x86-64.so.2"
    libdir = root / "usr/lib/x86_64-linux-gnu"
    for prog, arg in [("usr/bin/rauc", "--version"), ("usr/sbin/mdadm", "--version"),
                      ("usr/sbin/smartctl", "--version"), ("usr/bin/dbus-daemon", "--version"),
                      ("usr/sbin/mke2fs", "-V"), ("usr/bin/grub-editenv", "--version")]:
        r = subprocess.run([str(loader), "--library-path", str(libdir), str(root / prog), arg],
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, f"/{prog} {arg}: {r.stdout}"


def test_grubenv_starts_with_both_slots_good(builds):
    r = subprocess.run(["mtype", "-i", f"{builds['first'] / 'disk.img'}@@1M",
                        "::/EFI/BOOT/grubenv"], text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert r.returncode == 0, r.stdout
    env = dict(line.split("=", 1) for line in r.stdout.splitlines()
               if "=" in line and not line.startswith("#"))
    assert env == {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "1", "B_TRY": "0",
                   "EXTRA_CMDLINE": ""}
    assert len(r.stdout) == 1024  # a GRUB environment block: save_env rewrites it in place
    for out in (builds["first"], builds["other"]):
        r = subprocess.run(["grub-script-check", str(out / "grub.cfg")], text=True,
                           capture_output=True)
        assert r.returncode == 0, f"grub.cfg: {r.stdout}{r.stderr}"
    cfg = (builds["first"] / "grub.cfg").read_text()
    assert "console=ttyS0,115200" in cfg and "save_env" in cfg
    assert "console=ttyS1,115200" in (builds["other"] / "grub.cfg").read_text()


def test_bundle_verifies_against_the_keyring_only(builds, tmp_path):
    out = builds["first"]
    keyring = builds["builder"].keys / "ca.cert.pem"
    r = subprocess.run(["rauc", "info", f"--keyring={keyring}", "--output-format=json",
                        str(bundle_of(out))], text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["compatible"] == f"postern-{BOARD}"
    manifest = json.loads((out / "manifest.json").read_text())
    assert info["version"] == manifest["version"]
    images = {i_name for img in info["images"] for i_name in img}
    assert images == {"rootfs", "kernel"}, info["images"]
    # A CA that did not issue the signing certificate is refused.
    foreign = tmp_path / "foreign.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=foreign", "-keyout", str(tmp_path / "k.pem"), "-out",
                    str(foreign)], check=True, capture_output=True)
    r = subprocess.run(["rauc", "info", f"--keyring={foreign}", str(bundle_of(out))],
                       text=True, capture_output=True)
    assert r.returncode != 0, "the bundle verified against a foreign CA"
    other = json.loads(subprocess.run(
        ["rauc", "info", f"--keyring={keyring}", "--output-format=json",
         str(bundle_of(builds["other"]))], check=True, text=True,
        stdout=subprocess.PIPE).stdout)
    assert other["compatible"] == f"postern-{OTHER_BOARD}"
    assert other["version"] == OTHER_VERSION
    assert bundle_of(builds["other"]).name == f"postern-{OTHER_BOARD}-{OTHER_VERSION}.raucb"


def test_health_fail_build_has_a_posternd_that_exits(builds, tmp_path):
    img = extract_partition(builds["other"] / "disk.img", "system_a", tmp_path / "system.img")
    root = tmp_path / "root"
    subprocess.run(["fsck.erofs", f"--extract={root}", str(img)], check=True,
                   capture_output=True)
    build = json.loads((root / "etc/postern/build.json").read_text())
    assert build["test_health_fail"] is True and build["version"] == OTHER_VERSION
    r = subprocess.run(["sh", str(root / "usr/sbin/posternd"), "--config", "/nonexistent"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--test-health-fail" in r.stderr
    assert (root / "usr/sbin/posternd.real").stat().st_size > 1 << 20


def test_manifest_lists_packages_lock_and_artefacts(builds):
    out = builds["first"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["cargo_lock_sha256"] == sha256(REPO / "Cargo.lock")
    names = {p["name"]: p for p in m["packages"]}
    for pkg in ["busybox-static", "mdadm", "e2fsprogs", "smartmontools", "rauc", "grub-common",
                "grub-efi-amd64-bin", "dbus-daemon", "libc6", "libglib2.0-0",
                m["kernel"]["package"]]:
        assert pkg in names, f"{pkg} missing from the manifest"
    for p in m["packages"]:
        assert re.fullmatch(r"[0-9a-f]{64}", p["sha256"]) and p["version"], p
    expected = {f.name for f in out.iterdir() if f.is_file() and f.name != "manifest.json"}
    assert set(m["artefacts"]) == expected
    for name, a in m["artefacts"].items():
        assert a["sha256"] == sha256(out / name), name
    assert m["partitions"] == [{"label": lbl, "size_mib": board_sizes(BOARD)[SIZE_KEYS[lbl]]}
                               for lbl in LABELS]
    # DESIGN.md's budget: the compressed system image stays within 64 MiB.
    assert m["artefacts"]["system.erofs"]["size"] <= 64 << 20
