#!/usr/bin/env python3
"""Writes configs/postern_<board>_defconfig for every board-configs/*.toml.

Every appliance board gets the same Buildroot configuration except its board
name (BR2_POSTERN_BOARD) and an optional kernel fragment of its own
(board/postern/<board>/linux.fragment), so the defconfigs are generated rather
than edited by hand: a new board file needs one run of this script.

    gen-defconfigs.py            write the defconfigs
    gen-defconfigs.py --check    exit 1 if one is missing or out of date

The output is in the order and form of "make savedefconfig", so a round trip
through Buildroot gives the same file back (tests/image/test_buildroot.py).
"""

import argparse
import pathlib
import sys

TREE = pathlib.Path(__file__).resolve().parents[2]
WORKSPACE = TREE.parents[1]
BOARDS = WORKSPACE / "board-configs"
EXT = "$(BR2_EXTERNAL_POSTERN_PATH)"
COMMON = EXT + "/board/postern/common"

# Modules built into BOOTX64.EFI: grub.cfg reads and writes grubenv
# (loadenv), picks the boot partition by number (regexp, part_gpt, fat) and
# boots Linux.
GRUB_MODULES = \
    "boot linux fat part_gpt normal efi_gop loadenv regexp test echo"


def defconfig_name(board):
    # Kconfig defconfig names take no hyphens: postern-1u-nvme-raid1 ->
    # postern_postern_1u_nvme_raid1_defconfig.
    return "postern_{}_defconfig".format(board.replace("-", "_"))


def defconfig(board):
    fragments = [COMMON + "/linux.fragment"]
    if (TREE / "board" / "postern" / board / "linux.fragment").is_file():
        fragments.append(
            "{}/board/postern/{}/linux.fragment".format(EXT, board))
    lines = [
        "BR2_x86_64=y",
        # The default C library (glibc) is Rust's tier-1 x86_64 target; C++
        # for smartmontools.
        "BR2_TOOLCHAIN_BUILDROOT_CXX=y",
        'BR2_PACKAGE_OVERRIDE_FILE="{}/rust-override.mk"'.format(COMMON),
        'BR2_GLOBAL_PATCH_DIR="{}/patches"'.format(EXT),
        "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y",
        'BR2_TARGET_GENERIC_HOSTNAME="postern"',
        'BR2_TARGET_GENERIC_ISSUE="Postern"',
        "BR2_INIT_NONE=y",
        'BR2_ROOTFS_POST_BUILD_SCRIPT="{}/post-build.sh"'.format(COMMON),
        'BR2_ROOTFS_POST_IMAGE_SCRIPT="{}/post-image.sh"'.format(COMMON),
        "BR2_LINUX_KERNEL=y",
        "BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG=y",
        'BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES="{}"'.format(
            " ".join(fragments)),
        "BR2_LINUX_KERNEL_NEEDS_HOST_LIBELF=y",
        "BR2_PACKAGE_RAUC=y",
        "BR2_PACKAGE_RAUC_JSON=y",
        "BR2_TARGET_ROOTFS_EROFS=y",
        "# BR2_TARGET_ROOTFS_TAR is not set",
        "BR2_TARGET_GRUB2=y",
        "BR2_TARGET_GRUB2_X86_64_EFI=y",
        'BR2_TARGET_GRUB2_BUILTIN_MODULES_EFI="{}"'.format(GRUB_MODULES),
        "BR2_PACKAGE_HOST_DOSFSTOOLS=y",
        "BR2_PACKAGE_HOST_E2FSPROGS=y",
        "BR2_PACKAGE_HOST_GENIMAGE=y",
        "BR2_PACKAGE_HOST_MTOOLS=y",
        "BR2_PACKAGE_HOST_RAUC=y",
        'BR2_POSTERN_BOARD="{}"'.format(board),
        "BR2_PACKAGE_POSTERN_INIT=y",
        "BR2_PACKAGE_POSTERN_HWMOND=y",
        "BR2_PACKAGE_POSTERND=y",
    ]
    return "\n".join(lines) + "\n"


def boards():
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="report missing or stale defconfigs only")
    args = parser.parse_args()
    stale = []
    for board in boards():
        path = TREE / "configs" / defconfig_name(board)
        text = defconfig(board)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(WORKSPACE)))
        else:
            path.write_text(text)
    if stale:
        print("missing or out of date (run {}): {}".format(
            pathlib.Path(__file__).relative_to(WORKSPACE), " ".join(stale)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
