"""tests/image: system tests that boot the real appliance image in QEMU (DESIGN.md 3.8, 4).

The session builds the image once (`image/build --board qemu-x86_64`; the builder decides what
is up to date); each test module boots its own appliance (qemu/appliance.py, a fresh run
directory: first boot, provisioning) and shares it between its tests, because a TCG boot of
the full image takes minutes. The appliance boots with postern.test=1, so the tests reach the
guest through the org.postern.cmd command channel as well as through the forwarded mail
ports. Nothing is skipped: a missing tool or image piece fails with what is missing.

A failing test gets the tails of the appliance's console, QEMU's output and ipmi_sim's log
attached to its report.
"""

from __future__ import annotations

import email
import imaplib
import os
import pathlib
import poplib
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "qemu"))
sys.path.insert(0, str(REPO / "tests"))

from appliance import (DATA_MOUNT, OVMF_CODE, OVMF_VARS, Appliance,  # noqa: E402
                       GuestError, default_image, load_board)
from postern_guest import missing_tools  # noqa: E402

BOARD = os.environ.get("POSTERN_IMAGE_BOARD", "qemu-x86_64")
BUILD_TIMEOUT = 3600
# First boot under TCG: OVMF, GRUB, the kernel, array creation and mkfs, provisioning (keys,
# certificate), posternd's start. Bounded generously; the measured time is printed.
BANNER_TIMEOUT = float(os.environ.get("POSTERN_IMAGE_BANNER_TIMEOUT", "900"))
MAIL_TIMEOUT = 120.0

# Appliances of the running tests: their diagnostics go into failure reports.
_ACTIVE: list[Appliance] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for app in list(_ACTIVE):
        try:
            rep.sections.append((f"appliance {app.run_dir}", app.diagnostics(120)))
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the failure itself
            rep.sections.append((f"appliance {app.run_dir}", f"unavailable: {e}"))


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> pathlib.Path:
    """The built image of BOARD: image/build runs once per session."""
    missing = missing_tools("qemu-system-x86_64", "ipmi_sim", "sdrcomp", "mcopy", "sfdisk")
    missing += [str(f) for f in (OVMF_CODE, OVMF_VARS) if not f.is_file()]
    if missing:
        pytest.fail(f"missing {missing} (tests/run installs qemu-system-x86, ovmf, openipmi, "
                    "mtools, fdisk)")
    builder = REPO / "image" / "build"
    if not builder.is_file():
        pytest.fail(f"{builder} does not exist: the image builder has not landed")
    log = tmp_path_factory.mktemp("image-build") / "build.log"
    with open(log, "wb") as f:
        try:
            r = subprocess.run([str(builder), "--board", BOARD], stdout=f,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=BUILD_TIMEOUT, cwd=REPO)
        except subprocess.TimeoutExpired:
            pytest.fail(f"image/build ran over {BUILD_TIMEOUT} s; log {log}")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    if r.returncode != 0:
        pytest.fail(f"image/build --board {BOARD} failed ({r.returncode}):\n{tail}")
    img = default_image(BOARD)
    if not img.is_file():
        pytest.fail(f"image/build succeeded but {img} does not exist:\n{tail}")
    return img


def tls_context() -> ssl.SSLContext:
    """The appliance's certificate is self-signed at first boot: no verification, but only
    TLS 1.2 and up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Box:
    """A booted appliance and the clients the tests use on it (all on 127.0.0.1)."""

    def __init__(self, app: Appliance, banner_seconds: float) -> None:
        self.app = app
        self.banner_seconds = banner_seconds
        self.address, self.password = app.admin(timeout=30)
        self.board = load_board(app.board)

    @property
    def ports(self) -> dict[int, int]:
        return self.app.ports

    # SMTP ---------------------------------------------------------------------------------
    def submit(self, msg: bytes, rcpts: list[str] | None = None, timeout: float = 60) -> None:
        """Submission on 587: STARTTLS, AUTH PLAIN as the admin, the message to `rcpts`."""
        with smtplib.SMTP("127.0.0.1", self.ports[587], local_hostname="client.test",
                          timeout=timeout) as s:
            s.ehlo()
            s.starttls(context=tls_context())
            s.ehlo()
            s.user, s.password = self.address, self.password
            code, resp = s.auth("PLAIN", s.auth_plain)
            assert code == 235, f"AUTH PLAIN: {code} {resp!r}"
            refused = s.sendmail(self.address, rcpts or [self.address], msg)
            assert refused == {}, f"refused recipients {refused}"

    def deliver(self, sender: str, msg: bytes, timeout: float = 60) -> None:
        """A delivery on the MX port 25 to the admin."""
        with smtplib.SMTP("127.0.0.1", self.ports[25], local_hostname="mx-client.test",
                          timeout=timeout) as s:
            assert s.sendmail(sender, [self.address], msg) == {}

    # IMAPS / POP3S ------------------------------------------------------------------------
    def imap(self, timeout: float = 60) -> imaplib.IMAP4_SSL:
        m = imaplib.IMAP4_SSL("127.0.0.1", self.ports[993], ssl_context=tls_context(),
                              timeout=timeout)
        m.login(self.address, self.password)
        return m

    def inbox(self, timeout: float = 120) -> list[tuple[int, bytes]]:
        """Every message of the admin's INBOX as (UID, stored bytes), over IMAPS."""
        m = self.imap(timeout)
        try:
            typ, data = m.select("INBOX", readonly=True)
            assert typ == "OK", data
            if int(data[0]) == 0:
                return []  # "1:*" on an empty mailbox is an error for some servers
            typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            assert typ == "OK", data
            out = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                uid = re.search(rb"UID (\d+)", item[0])
                assert uid, item[0]
                out.append((int(uid.group(1)), item[1]))
            return out
        finally:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def wait_mail(self, pred, what: str, timeout: float = MAIL_TIMEOUT) -> bytes:
        """The first INBOX message (stored bytes) for which pred(email.message.Message, bytes)
        holds, polling over IMAPS."""
        deadline = time.monotonic() + timeout
        while True:
            for _, raw in self.inbox():
                if pred(email.message_from_bytes(raw), raw):
                    return raw
            if time.monotonic() > deadline:
                subjects = [email.message_from_bytes(r)["Subject"] for _, r in self.inbox()]
                raise AssertionError(f"no {what} in the admin's INBOX within {timeout} s; "
                                     f"subjects: {subjects[-20:]}")
            time.sleep(2)

    def pop3_messages(self, timeout: float = 60) -> list[bytes]:
        p = poplib.POP3_SSL("127.0.0.1", self.ports[995], context=tls_context(), timeout=timeout)
        try:
            p.user(self.address)
            p.pass_(self.password)
            out = []
            for entry in p.list()[1]:
                num = int(entry.split()[0])
                # poplib removes the dot-stuffing; lines come without their CRLF.
                lines = p.retr(num)[1]
                out.append(b"".join(line + b"\r\n" for line in lines))
            return out
        finally:
            try:
                p.quit()
            except (poplib.error_proto, OSError):
                pass

    # In the guest ------------------------------------------------------------------------
    def sh(self, command: str, timeout: float = 120) -> str:
        return self.app.cmd(command, timeout).check().out

    def health(self) -> dict[str, Any]:
        return self.app.health()

    def component(self, cid: str) -> dict[str, Any] | None:
        return next((c for c in self.health().get("components", []) if c.get("id") == cid), None)

    def wait_component(self, pred, what: str, timeout: float = 180) -> dict[str, Any]:
        """Poll hwmond's state (`hwmond status --json` over the command channel) until a
        component satisfies pred."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while True:
            try:
                last = self.health().get("components", [])
            except (GuestError, ValueError) as e:
                last = [{"error": str(e)}]
            for c in last:
                if "id" in c and pred(c):
                    return c
            if time.monotonic() > deadline:
                brief = [(c.get("id"), c.get("state"), c.get("reason")) for c in last]
                raise AssertionError(f"hwmond: no {what} within {timeout} s; components {brief}")
            time.sleep(2)

    def data_array(self) -> tuple[str, list[str], str]:
        """(md device, member devices, component id) of the board's data array, named the
        way image/init (plan.rs) and hwmond name them."""
        arrays = [a for a in self.board.get("array", []) if a.get("role") == "data"]
        assert arrays, f"board {self.app.board} has no data array"
        a = arrays[0]
        name = a["name"]
        md = a.get("device") or (f"/dev/{name}" if re.fullmatch(r"md\d+", name)
                                 else f"/dev/md/{name}")
        # Members are whole-disk paths (/dev/nvme0n1); older board files named them bare.
        members = [d if d.startswith("/dev/") else f"/dev/{d}" for d in a["devices"]]
        return md, members, f"array/{name}"


def boot_box(tmp_path_factory, image: pathlib.Path, name: str) -> Box:
    """A freshly booted appliance in its own run directory, up to its SMTP banner and the
    command channel."""
    run = tmp_path_factory.mktemp(name)
    app = Appliance(run, BOARD, image, test=True, fresh=True)
    _ACTIVE.append(app)
    try:
        app.boot()
        t = app.wait_banner(BANNER_TIMEOUT)
        print(f"\n{name}: SMTP banner {t:.1f} s after QEMU started (TCG): {app.banner}")
        app.wait_ready(120)
        return Box(app, t)
    except BaseException:
        close_box(app)
        raise


def close_box(app: Appliance) -> None:
    try:
        app.close()
    finally:
        if app in _ACTIVE:
            _ACTIVE.remove(app)


@pytest.fixture(scope="module")
def box(request, tmp_path_factory, image) -> Box:
    """One appliance per test module (fresh disks, first boot), shared by its tests."""
    b = boot_box(tmp_path_factory, image, request.module.__name__.rsplit(".", 1)[-1])
    yield b
    close_box(b.app)
    # The run directory holds a copy of the image: keep only what failing tests need.
    if request.session.testsfailed == 0:
        shutil.rmtree(b.app.run_dir, ignore_errors=True)


__all__ = ["Box", "BOARD", "DATA_MOUNT", "tls_context"]
