"""The appliance's life: signed A/B updates, refused bundles, rollback after a failed health
check, the hardware watchdog and factory reset, on the real image under QEMU (issue 10).

One appliance boots once (first boot) and goes through the steps in order, as a box in the
field would: mail before the update, bundles that must be refused, the update into slot B and
its reboot, a broken update that GRUB's boot counting rolls back, a watchdog reset, and a
factory reset. Bundles reach the box the way an operator's USB stick would: a read-only disk
hot-plugged on a spare PCIe port (Appliance.attach_media), read back and handed to RAUC.

The bundles are built here by image/build itself: a newer version of the same board, one whose
posternd fails its health check (--test-health-fail), one for another board, and the newer one
re-signed (rauc resign) with a key the box does not trust.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import time

import pytest

from conftest import BOARD, REPO, Box, boot_box, close_box

OTHER_BOARD = "postern-1u-nvme-raid1"
BUILD_TIMEOUT = 1800
# A TCG boot to the health check takes about 20-40 s here; a broken slot waits for its health
# timeout (shortened below) before it reboots.
REBOOT_TIMEOUT = 600.0
HEALTH_TIMEOUT_SECS = 25
GRUBENV = "/run/postern/esp/EFI/BOOT/grubenv"


def build(out: pathlib.Path, *args: str) -> pathlib.Path:
    """image/build into `out`; returns the bundle it made."""
    log = out.with_suffix(".log")
    with open(log, "wb") as f:
        r = subprocess.run([str(REPO / "image" / "build"), "--out", str(out), *args], cwd=REPO,
                           stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=BUILD_TIMEOUT)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    assert r.returncode == 0, f"image/build {' '.join(args)} failed:\n{tail}"
    bundles = sorted(out.glob("*.raucb"))
    assert len(bundles) == 1, f"{out}: bundles {bundles}"
    return bundles[0]


def other_key(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed signing key and certificate the appliance's keyring does not contain."""
    key, cert = tmp / "other.key.pem", tmp / "other.cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "30", "-subj",
                    "/O=Not Postern/CN=someone else's signing key"],
                   check=True, capture_output=True, timeout=120)
    return key, cert


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, image) -> dict[str, pathlib.Path]:
    tmp = tmp_path_factory.mktemp("bundles")
    out = {
        "update": build(tmp / "update", "--board", BOARD, "--version", "99.0.0-update"),
        "broken": build(tmp / "broken", "--board", BOARD, "--version", "99.1.0-broken",
                        "--test-health-fail"),
        "other-board": build(tmp / "other-board", "--board", OTHER_BOARD,
                             "--version", "99.2.0-other"),
    }
    # The same update, signed by a key outside the keyring: `rauc resign` checks the old
    # signature against our keyring and writes the new one.
    key, cert = other_key(tmp)
    keyring = REPO / "image" / "keys" / "dev" / "ca.cert.pem"
    foreign = tmp / "foreign-key.raucb"
    r = subprocess.run(["rauc", "resign", "--keyring", str(keyring), "--key", str(key),
                        "--cert", str(cert), "--signing-keyring", str(cert),
                        str(out["update"]), str(foreign)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"rauc resign: {r.stdout}{r.stderr}"
    out["foreign-key"] = foreign
    return out


@pytest.fixture(scope="module")
def life(request, tmp_path_factory, image) -> Box:
    b = boot_box(tmp_path_factory, image, "lifecycle")
    wait_marked_good(b, 0, "A")
    yield b
    close_box(b.app)


def console(box: Box) -> str:
    return (box.app.run_dir / "console.log").read_text(errors="replace")


def console_since(box: Box, offset: int) -> str:
    return console(box)[offset:]


def wait_console(box: Box, offset: int, pattern: str, what: str,
                 timeout: float = REBOOT_TIMEOUT) -> re.Match:
    """The first match of `pattern` in the console after `offset`."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, console_since(box, offset))
        if m:
            return m
        if not box.app.alive():
            raise AssertionError(f"QEMU exited while waiting for {what}")
        if time.monotonic() > deadline:
            tail = "\n".join(console_since(box, offset).splitlines()[-40:])
            raise AssertionError(f"no {what} within {timeout} s; console since:\n{tail}")
        time.sleep(1)


def guest_json(box: Box, command: str) -> object:
    return json.loads(box.sh(command))


# The init mounts the ESP only while it marks a slot good; rauc-session leaves it mounted.
MOUNT_ESP = ("grep -q ' /run/postern/esp ' /proc/mounts || { mkdir -p /run/postern/esp && "
             "mount -t vfat \"/dev/$(sed -n 's/^DEVNAME=//p' "
             "$(grep -l '^PARTNAME=efi$' /sys/class/block/*/uevent))\" /run/postern/esp; }")


def grubenv(box: Box) -> dict[str, str]:
    out = box.sh(f"{MOUNT_ESP}; /sbin/init grubenv list {GRUBENV}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def build_json(box: Box) -> dict:
    return guest_json(box, "cat /etc/postern/build.json")


def booted_slot(box: Box) -> str:
    m = re.search(r"postern\.slot=([AB])", box.sh("cat /proc/cmdline"))
    assert m, "no postern.slot= on the kernel command line"
    return m.group(1)


def records(box: Box) -> list[dict]:
    """The boot records on /persist, oldest first (`records --json`: one object a line)."""
    out = box.sh("/sbin/init records --json")
    data = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert data and all(isinstance(r, dict) for r in data), out
    return data


def install(box: Box, bundle: pathlib.Path) -> tuple[int, str]:
    """The bundle on hot-plugged media, read back in the guest and given to RAUC. Returns
    (rauc's exit code, its output)."""
    serial = box.app.attach_media(bundle)
    try:
        dev = ""
        deadline = time.monotonic() + 60
        while not dev and time.monotonic() < deadline:
            dev = box.sh("for b in /sys/block/vd*; do [ \"$(cat $b/serial 2>/dev/null)\" = "
                         f"{serial} ] && echo /dev/${{b##*/}}; done; true").strip()
            time.sleep(0.5)
        assert dev, f"the media {serial} did not appear in the guest"
        size = bundle.stat().st_size
        box.sh(f"head -c {size} {dev} > /tmp/update.raucb")
        r = box.app.cmd("rauc-session install /tmp/update.raucb", 600)
        box.sh("rm -f /tmp/update.raucb")
        return r.rc, r.out + r.err
    finally:
        box.app.detach_media()


def reboot(box: Box) -> int:
    """Asks the init to reboot; returns the console offset from which the next boot reads."""
    offset = len(console(box))
    try:
        box.app.cmd("/sbin/init control reboot", 30)
    except Exception:  # noqa: BLE001 - the channel may go down with the guest before answering
        pass
    return offset


def wait_marked_good(box: Box, offset: int, slot: str, timeout: float = REBOOT_TIMEOUT) -> None:
    wait_console(box, offset, rf"postern-init: slot {slot} marked good",
                 f"slot {slot} marked good", timeout)
    box.app.wait_ready(120)


def send_marker(box: Box, subject: str) -> None:
    box.submit(f"From: {box.address}\r\nTo: {box.address}\r\nSubject: {subject}\r\n\r\n"
               f"{subject}\r\n".encode())


def subjects(box: Box) -> list[str]:
    return [re.search(rb"(?im)^Subject: (.*?)\r?$", raw).group(1).decode()
            for _, raw in box.inbox() if re.search(rb"(?im)^Subject: ", raw)]


def test_factory_state(life):
    """First boot: slot A, both slots good with no tries used, the first boot recorded."""
    assert booted_slot(life) == "A"
    env = grubenv(life)
    assert env.get("ORDER") == "A B", env
    assert env.get("A_OK") == "1" and env.get("A_TRY") == "0", env
    recs = records(life)
    assert recs and recs[-1]["slot"] == "A", recs
    names = [m["name"] for m in recs[-1]["milestones"]]
    for name in ("persist-mounted", "array-ready", "data-mkfs", "data-mounted", "provisioned",
                 "posternd-healthy", "marked-good"):
        assert name in names, f"milestone {name} missing from {names}"
    send_marker(life, "before the update")


def test_bundle_signed_with_another_key_is_refused(life, bundles):
    rc, out = install(life, bundles["foreign-key"])
    assert rc != 0, f"a bundle signed by an unknown key was installed:\n{out}"
    assert re.search(r"(?i)signature|verif", out), out
    print(f"\nforeign key refused: {out.strip().splitlines()[-1]}")
    assert grubenv(life).get("ORDER") == "A B", "a refused bundle changed the boot order"


def test_bundle_for_another_board_is_refused(life, bundles):
    rc, out = install(life, bundles["other-board"])
    assert rc != 0, f"a bundle for {OTHER_BOARD} was installed:\n{out}"
    assert re.search(r"(?i)compatible", out), out
    print(f"\nother board refused: {out.strip().splitlines()[-1]}")
    assert grubenv(life).get("ORDER") == "A B", "a refused bundle changed the boot order"


def test_update_installs_into_the_other_slot_reboots_and_marks_it_good(life, bundles):
    t0 = time.monotonic()
    rc, out = install(life, bundles["update"])
    assert rc == 0, out
    env = grubenv(life)
    assert env.get("ORDER", "").startswith("B"), env
    assert booted_slot(life) == "A"
    t_install = time.monotonic() - t0
    offset = reboot(life)
    wait_marked_good(life, offset, "B")
    print(f"\nupdate: install {t_install:.1f} s, install + reboot to slot B marked good "
          f"{time.monotonic() - t0:.1f} s (TCG)")
    assert booted_slot(life) == "B"
    assert build_json(life)["version"] == "99.0.0-update"
    env = grubenv(life)
    assert env.get("B_OK") == "1" and env.get("B_TRY") == "0", env
    # The mail store is on the data array, not in the slot: it survives the update.
    assert "before the update" in subjects(life)


def test_failed_health_check_rolls_back_within_three_boots(life, bundles):
    rc, out = install(life, bundles["broken"])
    assert rc == 0, out
    assert grubenv(life).get("ORDER", "").startswith("A")
    before = {r["boot"] for r in records(life)}
    # A shorter health timeout keeps the three failing boots short; the value travels on the
    # kernel command line like any other argument from grubenv.
    extra = f"postern.test=1 postern.health_timeout={HEALTH_TIMEOUT_SECS}"
    life.sh(f"{MOUNT_ESP}; /sbin/init grubenv set {GRUBENV} "
            f"EXTRA_CMDLINE={shlex.quote(extra)}")
    t0 = time.monotonic()
    offset = reboot(life)
    wait_marked_good(life, offset, "B", timeout=3 * REBOOT_TIMEOUT)
    print(f"\nrollback: broken slot A tried and slot B good again after "
          f"{time.monotonic() - t0:.1f} s (TCG)")
    text = console_since(life, offset)
    failures = re.findall(r"postern-init: BOOT FAILED: .*health check", text)
    assert 1 <= len(failures) <= 3, f"{len(failures)} failed boots:\n{text[-3000:]}"
    assert booted_slot(life) == "B"
    assert build_json(life)["version"] == "99.0.0-update"
    env = grubenv(life)
    assert env.get("A_TRY") == "3" or env.get("A_OK") == "0", env
    # The failed boots' records are still readable, with their reason.
    new = [r for r in records(life) if r["boot"] not in before]
    failed = [r for r in new if r["slot"] == "A"]
    assert failed, f"no record of the failed boots on slot A: {new}"
    for r in failed:
        assert r["outcome"] == "failed", r
        assert "health check" in (r.get("reason") or ""), r
    assert "before the update" in subjects(life)


def test_watchdog_resets_a_hung_init_and_the_record_says_why(life):
    before = max(r["boot"] for r in records(life))
    offset = len(console(life))
    life.sh("/sbin/init control test-stop-watchdog")
    # The board's watchdog timeout is 60 s; the next boot starts when it fires.
    wait_console(life, offset, r"postern-init: stage 2 on slot", "a boot after the watchdog",
                 timeout=REBOOT_TIMEOUT)
    wait_marked_good(life, offset, "B")
    recs = {r["boot"]: r for r in records(life)}
    assert before in recs, f"the stopped boot's record is gone: {sorted(recs)}"
    stopped = recs[before]
    assert stopped["outcome"] == "watchdog-reset", stopped
    assert "watchdog-stop-test" in [m["name"] for m in stopped["milestones"]], stopped


def test_factory_reset_returns_to_first_boot_with_a_new_admin_password(life):
    old_password = life.password
    offset = len(console(life))
    r = life.app.cmd("postern factory-reset --yes", 60)
    assert r.rc == 0 or "reboot" in (r.out + r.err).lower(), r
    m = wait_console(life, offset,
                     r"postern-init: admin account (\S+) password: (\S+)",
                     "a new admin password after the factory reset")
    wait_marked_good(life, offset, "B")
    address, password = m.group(1), m.group(2)
    assert address == life.address
    assert password != old_password
    life.password = password
    text = console_since(life, offset)
    assert "milestone factory-reset-done" in text, text[-3000:]
    assert "milestone data-mkfs" in text, "the data array was not made anew"
    # The old mail is gone and the old password no longer works.
    assert subjects(life) == []
    life.password = old_password
    with pytest.raises(Exception):
        life.imap()
    life.password = password


def test_power_button_shuts_down_cleanly(life):
    """The ACPI power button (QMP system_powerdown): the init stops the services with SIGTERM
    (none needs SIGKILL), unmounts, stops md and powers off by itself; the next boot finds the record closed as a clean
    shutdown and the array clean (no resync)."""
    last = max(r["boot"] for r in records(life))
    offset = len(console(life))
    t0 = time.monotonic()
    life.app.qmp("system_powerdown", timeout=10)
    try:
        life.app.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("QEMU still runs 120 s after the power button:\n"
                             + console_since(life, offset)[-3000:])
    print(f"\npower button: powered off after {time.monotonic() - t0:.1f} s")
    text = console_since(life, offset)
    assert "milestone shutdown-requested" in text, text[-3000:]
    # posternd, hwmond and udhcpc stop on SIGTERM within the grace period (a signal mask
    # inherited from the init once made every stop end in SIGKILL).
    assert "SIGKILL" not in text, text[-3000:]
    life.app.reboot_after_power_cut()
    wait_marked_good(life, 0, "B")
    recs = {r["boot"]: r for r in records(life)}
    assert recs[last]["outcome"] == "clean-shutdown", recs[last]
    assert "resync" not in life.sh("cat /proc/mdstat")
