"""The board files as the image builder reads them: `postern-board check` passes on every file in
board-configs/, `postern-board show --json` has every key image/build and the init use (with the
defaults filled in), and a broken copy is refused with `file:line:column: message` naming the
offending key. Runs the real binary (target/debug/postern-board, or POSTERN_BIN_DIR); boots
nothing. Build it with `cargo build -p postern-board`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("POSTERN_BIN_DIR", str(REPO / "target" / "debug")))
POSTERN_BOARD = BIN_DIR / "postern-board"
BOARDS = sorted((REPO / "board-configs").glob("*.toml"))
SKUS = ["qemu-x86_64", "postern-1u-nvme-raid1", "postern-2u-sata-raid10"]


def postern_board(*args) -> subprocess.CompletedProcess:
    if not POSTERN_BOARD.is_file():
        pytest.fail(f"{POSTERN_BOARD} not found (cargo build -p postern-board, or set "
                    "POSTERN_BIN_DIR)")
    return subprocess.run([str(POSTERN_BOARD), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text`."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def test_the_boards_are_there():
    names = {p.stem for p in BOARDS}
    assert set(SKUS) <= names, names


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_check_passes(board):
    r = postern_board("check", board)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{board}: ok ({board.stem})"
    assert r.stderr == ""


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_show_json_has_what_the_builder_needs(board):
    r = postern_board("show", "--json", board)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["board"]["name"] == board.stem
    assert b["system_disk"]["device"].startswith("/dev/")
    for key in ("efi_mib", "boot_mib", "system_mib", "persist_mib"):
        assert isinstance(b["image"][key], int) and b["image"][key] > 0, key
    modules = b["kernel"]["modules"]
    assert isinstance(b["kernel"]["cmdline"], str)
    for needed in ("erofs", "vfat", "ext4", "md-mod"):
        assert needed in modules, needed
    assert b["console"]["device"].startswith(("ttyS", "hvc"))
    assert b["console"]["baud"] == 115200
    wd = b["watchdog"]
    assert wd["device"] == "/dev/watchdog"
    # Empty: the driver is built into the kernel (or, for the test guest, there is none).
    assert wd["module"] == "" or wd["module"] in modules
    assert 0 < 2 * wd["feed_interval_secs"] <= wd["timeout_secs"]

    data = [a for a in b["array"] if a["role"] == "data"]
    assert len(data) == 1, b["array"]
    data = data[0]
    assert data["device"].startswith("/dev/md")
    assert data["level"] in ("raid1", "raid10", "raid5", "raid6")
    assert data["filesystem"] == "ext4"
    assert data["mount"] == "/var/lib/postern"
    disks = {d["block_device"]: d for d in b["disk"]}
    assert data["devices"], data
    for member in data["devices"]:
        assert disks[member]["role"] == "data", member
    # The personality the level needs is loaded.
    personality = {"raid5": "raid456", "raid6": "raid456"}.get(data["level"], data["level"])
    assert personality in modules
    assert b["system_disk"]["device"] not in data["devices"]


def test_the_qemu_appliance_board():
    """What qemu/ builds the machine from: a virtio system disk and NVMe ids nvme0/nvme1."""
    b = json.loads(postern_board("show", "--json", REPO / "board-configs/qemu-x86_64.toml").stdout)
    assert b["system_disk"]["device"] == "/dev/vda"
    assert [d["device"] for d in b["disk"]] == ["/dev/nvme0", "/dev/nvme1"]
    data = next(a for a in b["array"] if a["role"] == "data")
    assert (data["level"], data["devices"]) == ("raid1", ["/dev/nvme0n1", "/dev/nvme1n1"])
    assert b["watchdog"]["module"] == "i6300esb"
    for module in ("virtio_blk", "virtio_pci", "nvme", "ipmi_si", "ipmi_devintf"):
        assert module in b["kernel"]["modules"], module


def test_a_broken_board_names_file_line_and_column(tmp_path):
    text = (REPO / "board-configs/qemu-x86_64.toml").read_text()
    # A data array member that is no [[disk]], a zero size and an unknown key.
    broken = (text
              .replace('"/dev/nvme0n1", "/dev/nvme1n1"]', '"/dev/nvme0n1", "/dev/nvme7n1"]')
              .replace("efi_mib = 16", "efi_mib = 0")
              .replace("baud = 115200", "baud = 115200\nparity = \"none\""))
    board = tmp_path / "qemu-x86_64.toml"
    board.write_text(broken)
    r = postern_board("check", board)
    assert r.returncode == 1
    assert r.stdout == ""
    # Unknown keys stop the parse: that one comes alone.
    line, column = position(broken, "parity")
    assert r.stderr.splitlines() == [f"{board}:{line}:{column}: unknown field `parity`, expected "
                                     "`device` or `baud`"]

    broken = broken.replace('\nparity = "none"', "")
    board.write_text(broken)
    r = postern_board("check", board)
    assert r.returncode == 1
    efi = position(broken, "efi_mib")
    member = position(broken, '"/dev/nvme7n1"')
    assert r.stderr.splitlines() == [
        f"{board}:{efi[0]}:{efi[1]}: [image] efi_mib must be more than 0",
        f"{board}:{member[0]}:{member[1]}: array md0: /dev/nvme7n1 is not the block_device of "
        "any [[disk]]",
    ]
    # show refuses it the same way, and prints no JSON.
    r = postern_board("show", "--json", board)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"{board}:{efi[0]}:{efi[1]}: ")


def test_raid10_with_three_disks_is_refused(tmp_path):
    text = (REPO / "board-configs/postern-2u-sata-raid10.toml").read_text()
    members = 'devices = ["/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/sde", "/dev/sdf", "/dev/sdg"]'
    assert members in text
    broken = text.replace(members, 'devices = ["/dev/sdb", "/dev/sdc", "/dev/sdd"]')
    board = tmp_path / "b.toml"
    board.write_text(broken)
    r = postern_board("check", board)
    assert r.returncode == 1
    line, _ = position(broken, "devices = [")
    assert r.stderr.strip() == (f"{board}:{line}:1: array md0: raid10 needs at least 4 members, "
                                "devices lists 3")


def test_check_reports_every_file(tmp_path):
    """One broken file among good ones: the good ones are ok, the exit status is 1."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[board]\nname = \"bad\"\n")
    good = REPO / "board-configs/qemu-x86_64.toml"
    r = postern_board("check", good, bad)
    assert r.returncode == 1
    assert f"{good}: ok (qemu-x86_64)" in r.stdout
    assert f"{bad}:1:1: no [system_disk]" in r.stderr
    missing = tmp_path / "missing.toml"
    r = postern_board("check", missing)
    assert r.returncode == 1 and f"{missing}: cannot read" in r.stderr
