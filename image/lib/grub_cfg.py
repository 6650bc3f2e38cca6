#!/usr/bin/env python3
"""The ESP's grub.cfg for a board: image/lib/grub.cfg.in (A/B slot selection with RAUC's
variables and 3-try boot counting) rendered with the board's console and kernel command line.

One template, one renderer, for both builders: image/build imports it, and the Buildroot tree's
post-image script runs it (`grub_cfg.py board-configs/BOARD.toml > grub.cfg`).
"""

import os
import re
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "grub.cfg.in")


def console_args(console):
    """Kernel and GRUB console settings from the board's [console] (device "ttyS0" + baud, or a
    ready kernel argument); the QEMU default is the first serial port at 115200."""
    kernel = console.get("kernel_arg") or console.get("kernel")
    device = console.get("device", "ttyS0")
    baud = int(console.get("baud", console.get("speed", 115200)))
    if not kernel:
        kernel = f"console={device},{baud}" if device.startswith("ttyS") else f"console={device}"
    unit = int(device[4:]) if re.fullmatch(r"ttyS\d+", device) else 0
    return {"kernel": kernel,
            "grub_serial": f"serial --unit={unit} --speed={baud}",
            "grub_terminal": "serial console"}


def render(text, subs):
    """@NAME@ -> subs[NAME]; an unknown name is an error (a template and its renderer must
    agree)."""
    def sub(m):
        if m.group(1) not in subs:
            raise KeyError(f"template variable @{m.group(1)}@ unknown")
        return subs[m.group(1)]
    return re.sub(r"@([A-Z_]+)@", sub, text)


def board_cmdline(kernel):
    cmdline = (kernel or {}).get("cmdline", "")
    return " ".join(cmdline) if isinstance(cmdline, list) else cmdline


def grub_cfg(console, cmdline):
    """grub.cfg for a board's [console] table and [kernel] cmdline string."""
    c = console_args(console or {})
    subs = {"KERNEL_CMDLINE": " ".join(x for x in (c["kernel"], cmdline) if x),
            "SERIAL": c["grub_serial"], "TERMINAL": c["grub_terminal"]}
    with open(TEMPLATE) as f:
        return render(f.read(), subs)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: grub_cfg.py board-configs/BOARD.toml > grub.cfg")
    with open(sys.argv[1], "rb") as f:
        board = tomllib.load(f)
    sys.stdout.write(grub_cfg(board.get("console"), board_cmdline(board.get("kernel"))))


if __name__ == "__main__":
    main()
