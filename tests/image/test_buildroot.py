"""The Buildroot BR2_EXTERNAL tree (image/br2-external, DESIGN.md 3.7) against the real
Buildroot 2026.02.3 release in ../shared/buildroot, offline: every board file has a
defconfig, each defconfig loads and survives a savedefconfig round trip without losing an
option, utils/check-package --br2-external is clean, and the post-build and post-image
scripts give the GPT layout of image/README.md (run with the host's genimage, mkfs and rauc
on stand-in kernel, GRUB and binaries: a full Buildroot build downloads sources)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "image" / "br2-external"
TARBALL = REPO.parent / "shared" / "buildroot" / "buildroot-2026.02.3.tar.xz"
BOARDS = sorted(p.stem for p in (REPO / "board-configs").glob("*.toml"))
# Kconfig is compiled on the first defconfig (a few seconds); nothing here downloads.
STEP_TIMEOUT = 300
LAYOUT = ["efi", "boot_a", "system_a", "boot_b", "system_b", "persist"]


def defconfig_name(board: str) -> str:
    return f"postern_{board.replace('-', '_')}_defconfig"


def run(cmd, timeout=STEP_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Runs a step; on failure the assertion carries the tool's own output."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} did not finish in {timeout} s:\n{e.stdout}\n{e.stderr}")
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}"
    return p


@pytest.fixture(scope="module")
def buildroot(tmp_path_factory) -> Path:
    assert TARBALL.is_file(), f"{TARBALL} is missing (the Buildroot release the tree is checked against)"
    dest = tmp_path_factory.mktemp("buildroot")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(dest, filter="tar")
    top = dest / "buildroot-2026.02.3"
    assert (top / "Makefile").is_file()
    return top


def env_offline() -> dict:
    # No proxy and no download tool reachable: a step that tried to fetch would fail here
    # rather than quietly use the network.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["BR2_DL_DIR"] = "/nonexistent-postern-dl"
    return env


def test_every_board_has_its_defconfig():
    assert BOARDS, "no board-configs/*.toml"
    missing = [b for b in BOARDS if not (TREE / "configs" / defconfig_name(b)).is_file()]
    assert not missing, f"boards without configs/postern_<board>_defconfig: {missing}"
    # ... and each is what the generator writes for the board today.
    run([sys.executable, str(TREE / "board" / "postern" / "gen-defconfigs.py"), "--check"])
    # No defconfig for a board that does not exist.
    names = {defconfig_name(b) for b in BOARDS}
    extra = [p.name for p in (TREE / "configs").iterdir() if p.name not in names]
    assert not extra, f"defconfigs without a board file: {extra}"


@pytest.mark.parametrize("board", BOARDS)
def test_defconfig_loads_and_round_trips(buildroot, tmp_path, board):
    out = tmp_path / "out"
    run(["make", "-C", str(buildroot), f"BR2_EXTERNAL={TREE}", f"O={out}", defconfig_name(board)],
        env=env_offline())
    config = (out / ".config").read_text()
    # Options that the packages' dependencies could silently switch off.
    for opt in ("BR2_PACKAGE_POSTERND=y", "BR2_PACKAGE_POSTERN_HWMOND=y",
                "BR2_PACKAGE_POSTERN_INIT=y", "BR2_PACKAGE_RAUC=y", "BR2_PACKAGE_MDADM=y",
                "BR2_PACKAGE_SMARTMONTOOLS=y", "BR2_TARGET_ROOTFS_EROFS=y",
                "BR2_TARGET_GRUB2_X86_64_EFI=y", "BR2_PACKAGE_HOST_GENIMAGE=y",
                "BR2_LINUX_KERNEL=y", "BR2_INIT_NONE=y", f'BR2_POSTERN_BOARD="{board}"'):
        assert f"\n{opt}\n" in config, f"{opt} missing from the loaded .config of {board}"
    saved = tmp_path / "saved_defconfig"
    run(["make", "-C", str(out), "savedefconfig", f"BR2_DEFCONFIG={saved}"], env=env_offline())
    ours = (TREE / "configs" / defconfig_name(board)).read_text().splitlines()
    kept = set(saved.read_text().splitlines())
    dropped = [line for line in ours if line.strip() and line not in kept]
    assert not dropped, (f"savedefconfig dropped options of {defconfig_name(board)} "
                         f"(unknown, defaulted or unmet dependencies): {dropped}")


def test_check_package_is_clean(buildroot):
    files = sorted(str(p.relative_to(TREE)) for p in TREE.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    assert "external.desc" in files and "Config.in" in files and "external.mk" in files
    p = subprocess.run([sys.executable, str(buildroot / "utils" / "check-package"),
                        "--br2-external", *files],
                       cwd=TREE, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert p.returncode == 0 and "0 warnings generated" in p.stderr, p.stdout + p.stderr


@pytest.mark.parametrize("board", BOARDS)
def test_grub_cfg_parses(tmp_path, board):
    """post-image.sh renders image/build's grub.cfg template for the board."""
    cfg = tmp_path / "grub.cfg"
    with open(cfg, "w") as f:
        subprocess.run([sys.executable, str(REPO / "image" / "lib" / "grub_cfg.py"),
                        str(REPO / "board-configs" / f"{board}.toml")], stdout=f, check=True,
                       timeout=60)
    run(["grub-script-check", str(cfg)])


def test_post_scripts_give_the_image_layout(buildroot, tmp_path):
    """post-build.sh and post-image.sh of the qemu-x86_64 board, with stand-ins for what
    the packages build (kernel, GRUB, postern-init) and the host's image tools."""
    board = "qemu-x86_64"
    out = tmp_path / "out"
    run(["make", "-C", str(buildroot), f"BR2_EXTERNAL={TREE}", f"O={out}", defconfig_name(board)],
        env=env_offline())
    target, binaries, build = out / "target", out / "images", out / "build"
    for d in (target / "usr" / "sbin", target / "sbin", binaries / "efi-part" / "EFI" / "BOOT",
              build):
        d.mkdir(parents=True, exist_ok=True)
    (target / "usr" / "sbin" / "postern-init").write_bytes(b"\x7fELF stand-in")
    (target / "sbin" / "init").symlink_to("../bin/busybox")  # what busybox would leave
    (binaries / "efi-part" / "EFI" / "BOOT" / "bootx64.efi").write_bytes(b"MZ stand-in")
    # Incompressible, as a kernel is: RAUC refuses a bundle whose squashfs is a single block.
    (binaries / "bzImage").write_bytes(os.urandom(256 * 1024))
    rootfs_src = tmp_path / "rootfs-src"
    (rootfs_src / "etc").mkdir(parents=True)
    run(["mkfs.erofs", "--quiet", "-T0", str(binaries / "rootfs.erofs"), str(rootfs_src)])
    env = dict(env_offline(), BR2_CONFIG=str(out / ".config"), BR2_EXTERNAL_POSTERN_PATH=str(TREE),
               BASE_DIR=str(out), TARGET_DIR=str(target), BINARIES_DIR=str(binaries),
               BUILD_DIR=str(build), HOST_DIR=str(out / "host"), SOURCE_DATE_EPOCH="1700000000")
    common = TREE / "board" / "postern" / "common"
    run([str(common / "post-build.sh"), str(target)], env=env, cwd=buildroot)
    run([str(common / "post-image.sh"), str(binaries)], env=env, cwd=buildroot)

    # Rootfs paths of image/README.md.
    assert (target / "etc/postern/board.toml").read_bytes() == \
        (REPO / "board-configs" / f"{board}.toml").read_bytes()
    assert os.readlink(target / "sbin" / "init") == "/usr/sbin/postern-init"
    build_json = json.loads((target / "etc/postern/build.json").read_text())
    assert build_json["board"] == board and len(build_json["commit"]) >= 7
    assert f"compatible=postern-{board}\n" in (target / "etc/rauc/system.conf").read_text()
    assert (target / "etc/rauc/keyring.pem").read_text().startswith("-----BEGIN CERTIFICATE")

    # The GPT layout, in order.
    disk = binaries / f"postern-{board}.img"
    table = json.loads(run(["sfdisk", "--json", str(disk)]).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    assert [p.get("name") for p in table["partitions"]] == LAYOUT
    assert table["partitions"][0]["type"].upper() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

    # The EFI partition: GRUB, the A/B script and an environment block with both slots good.
    efi = f"{binaries / 'efi.vfat'}"
    listing = run(["mdir", "-i", efi, "-b", "::/EFI/BOOT"]).stdout.upper()
    for name in ("BOOTX64.EFI", "GRUB.CFG", "GRUBENV"):
        assert name in listing, listing
    grubenv = run(["mtype", "-i", efi, "::/EFI/BOOT/grubenv"]).stdout
    assert len(grubenv) == 1024 and grubenv.startswith("# GRUB Environment Block\n")
    for var in ("ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"):
        assert f"\n{var}\n" in grubenv
    boot = run(["mdir", "-i", str(binaries / "boot.vfat"), "-b", "::/"]).stdout.upper()
    assert "BZIMAGE" in boot and "INITRD.CPIO" in boot
    initrd = run(["cpio", "-t", "--quiet", "-F", str(binaries / "initrd.cpio")]).stdout.split()
    assert "init" in initrd

    # The signed bundle verifies against the keyring the slot carries.
    bundle = binaries / f"postern-{board}.raucb"
    info = run(["rauc", "info", "--output-format=json",
                f"--keyring={target / 'etc/rauc/keyring.pem'}", str(bundle)]).stdout
    assert json.loads(info)["compatible"] == f"postern-{board}"
