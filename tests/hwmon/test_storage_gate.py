"""The storage gate end to end: a real hwmond watching a fixture md RAID tree (recorded in the
QEMU guest) and a real posternd whose `[health] socket` points at hwmond's health API. When the
array fails, new mail gets 451 4.3.5 at MAIL FROM (and nothing is stored); when the fixture
is healthy again, mail is accepted (250) and delivered. hwmond down: mail is accepted."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import subprocess
import time

import pytest

import harness
from harness import ALICE, HOST, make_message, parse_metrics, wait_until
from hwmond_harness import HWMOND, Hwmond, base_config, set_md_scenario, write_config


@pytest.fixture(autouse=True)
def _hwmond_built():
    # A missing binary fails the test (tests/run builds it first); it never skips.
    assert HWMOND.exists(), f"{HWMOND} not built (cargo build -p postern-hwmon)"


@pytest.fixture
def hw(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    set_md_scenario(root, "healthy")
    sock = tmp_path / "hwmond.sock"
    cfg = write_config(tmp_path / "hwmond.toml",
                       base_config(root, sock, mdraid={"enable": True, "interval_secs": 0.2}))
    d = Hwmond(cfg, sock, tmp_path / "hwmond.log")
    yield d, root, sock
    d.stop()


@pytest.fixture
def gated(make_server, hw):
    d, root, sock = hw
    srv = make_server(start=False)
    with open(srv.cfg, "a") as f:
        f.write(f'\n[health]\nsocket = "{sock}"\n')
    srv.start()
    return srv, d, root


def send(port: int, subject: str):
    """One message with smtplib; returns (code, text) of the first refusal, or (250, b"")."""
    with smtplib.SMTP(HOST, port, timeout=10) as c:
        c.ehlo("client.test")
        code, text = c.mail("sender@remote.test")
        if code != 250:
            return code, text
        code, text = c.rcpt(ALICE)
        if code != 250:
            return code, text
        code, text = c.data(make_message(subject=subject))
        return code, text


def gate_metric(srv, name: str) -> float:
    return parse_metrics(srv.metrics()).get(name, 0.0)


def test_failed_array_refuses_mail_until_repaired(gated):
    srv, d, root = gated
    assert send(srv.ports.mx, "before")[0] == 250
    wait_until(lambda: gate_metric(srv, "postern_health_gate_reachable") == 1, 10,
               what="gate sees hwmond")

    set_md_scenario(root, "failed")
    d.wait_state(lambda s: not s["storage"]["safe"], what="storage unsafe")
    t0 = time.monotonic()
    wait_until(lambda: gate_metric(srv, "postern_health_gate_closed") == 1, 10,
               what="gate closed")
    print(f"gate closed {time.monotonic() - t0:.3f} s after hwmond's verdict")
    code, text = send(srv.ports.mx, "during")
    assert code == 451, (code, text)
    assert text.startswith(b"4.3.5 "), text
    assert b"array/md0" in text and b"try again later" in text, text
    # The submission listener is gated too (swaks, a real client, over STARTTLS + AUTH).
    out = subprocess.run(
        ["swaks", "--server", f"{HOST}:{srv.ports.submission}", "--tls", "--auth", "PLAIN",
         "--auth-user", ALICE, "--auth-password", harness.PASSWORDS[ALICE], "--from", ALICE,
         "--to", ALICE, "--timeout", "10"], capture_output=True, text=True, timeout=60)
    # swaks marks an error reply "<**" (plain) or "<~*" (inside TLS).
    assert "<~* 451 4.3.5 " in out.stdout, out.stdout[-2000:]
    # IMAP APPEND is gated too: NO [UNAVAILABLE] (RFC 5530), nothing stored.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with imaplib.IMAP4_SSL(HOST, srv.ports.imaps, ssl_context=ctx, timeout=10) as imap:
        imap.login(ALICE, harness.PASSWORDS[ALICE])
        typ, data = imap.append("INBOX", None, None, make_message(subject="appended"))
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], (typ, data)
    assert gate_metric(srv, "postern_health_gate_refusals_total") >= 3

    set_md_scenario(root, "healthy")
    d.wait_state(lambda s: s["storage"]["safe"], what="storage safe again")
    wait_until(lambda: gate_metric(srv, "postern_health_gate_closed") == 0, 10,
               what="gate open")
    assert send(srv.ports.mx, "after")[0] == 250
    subjects = [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in srv.export(ALICE)]
    assert subjects == [b"before", b"after"], subjects


def test_hwmond_down_keeps_accepting(gated):
    srv, d, root = gated
    wait_until(lambda: gate_metric(srv, "postern_health_gate_reachable") == 1, 10,
               what="gate sees hwmond")
    d.stop()
    wait_until(lambda: gate_metric(srv, "postern_health_gate_reachable") == 0, 10,
               what="gate notices hwmond is gone")
    assert send(srv.ports.mx, "while hwmond is down")[0] == 250
    assert gate_metric(srv, "postern_health_gate_poll_errors_total") >= 1
    assert "health.gate.unreachable" in srv.log()


def test_full_data_filesystem_gives_452_until_space_is_freed(make_server, tmp_path):
    """A full data filesystem (a 1 MiB tmpfs filled up): 452 4.3.1 (RFC 3463 "mail system
    full"); freeing the space brings back 250."""
    mnt = tmp_path / "data"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.fail("cannot mount a tmpfs: the tests run as root (tests/run)")
    d = None
    try:
        sock = tmp_path / "hwmond.sock"
        cfg = write_config(tmp_path / "hwmond.toml", base_config(
            tmp_path / "root", sock,
            filesystem={"enable": True, "mounts": [], "data_mounts": [str(mnt)],
                        "interval_secs": 0.2}))
        d = Hwmond(cfg, sock, tmp_path / "hwmond.log")
        srv = make_server(start=False)
        with open(srv.cfg, "a") as f:
            f.write(f'\n[health]\nsocket = "{sock}"\n')
        srv.start()
        assert send(srv.ports.mx, "room")[0] == 250
        with open(mnt / "fill", "wb") as f:
            try:
                f.write(b"\0" * (1024 * 1024))
            except OSError:
                pass
        d.wait_state(lambda s: not s["storage"]["safe"], what="filesystem full")
        wait_until(lambda: gate_metric(srv, "postern_health_gate_closed") == 1, 10,
                   what="gate closed")
        code, text = send(srv.ports.mx, "no room")
        assert (code, text[:6]) == (452, b"4.3.1 "), (code, text)
        (mnt / "fill").unlink()
        d.wait_state(lambda s: s["storage"]["safe"], what="space freed")
        wait_until(lambda: gate_metric(srv, "postern_health_gate_closed") == 0, 10,
                   what="gate open")
        assert send(srv.ports.mx, "room again")[0] == 250
    finally:
        if d:
            d.stop()
        subprocess.run(["umount", str(mnt)], capture_output=True)
