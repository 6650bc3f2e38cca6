"""The README's first command, run verbatim from a fresh working directory, as a new user would.

The README starts with a ```sh block: its first line is the main command, its second the test
command. This test copies the working tree (what git tracks plus untracked, unignored files) into
a fresh directory, runs the first line there with bash, and waits for an SMTP 220 banner on the
port the command's output names (or the dev profile's MX port). It then stops the whole process
group. So the README cannot drift from what works: when the main command changes, this test runs
the new one.

Nothing is shared with this checkout's target/: the command builds everything it needs in the
copy, as on a fresh clone (the cargo registry cache in ~/.cargo is the machine's).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A cold release build on the 2-core CI machine takes minutes; the image build longer.
BANNER_TIMEOUT = float(os.environ.get("POSTERN_README_TIMEOUT", "2400"))
DEV_MX_PORT = 2525


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"```sh\n(.*?)```", text, re.S)
    assert m, "README.md has no ```sh block with the main and test commands"
    lines = [ln for ln in m.group(1).splitlines() if ln.strip()]
    assert len(lines) >= 2, "README's first block must hold the main and the test command"
    return [re.sub(r"\s+#.*$", "", ln).strip() for ln in lines[:2]]


def fresh_copy(dest: Path) -> None:
    """A fresh clone of this repository (the builder stamps the commit and takes
    SOURCE_DATE_EPOCH from it), with the working tree's uncommitted and untracked, unignored
    files laid over it, so that the test runs what is here now."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)],
                   check=True, capture_output=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO / rel
        dst = dest / rel
        if not src.exists() and not src.is_symlink():
            dst.unlink(missing_ok=True)  # deleted in the working tree but still in the index
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def smtp_banner(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(10)
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def test_readme_commands_are_the_ci_command():
    """The second README command is what .ci/run runs."""
    _, test_cmd = readme_commands()
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci, f".ci/run does not run the README's test command {test_cmd!r}"


def test_readme_main_command_reaches_the_smtp_banner(tmp_path):
    main_cmd, _ = readme_commands()
    work = tmp_path / "fresh"
    work.mkdir()
    fresh_copy(work)
    assert not (work / "target").exists() and not (work / "postern-dev").exists()
    env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
    log_path = tmp_path / "main-command.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", main_cmd], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + BANNER_TIMEOUT
        banner = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"`{main_cmd}` exited with {proc.returncode} before the SMTP banner:\n"
                            + log_path.read_text(errors="replace")[-4000:])
            out = log_path.read_text(errors="replace")
            # The command may name the forwarded MX port (the appliance in QEMU); the dev
            # profile listens on 2525.
            m = re.search(r"SMTP \(MX\)\s*:?\s*127\.0\.0\.1:(\d+)", out)
            port = int(m.group(1)) if m else DEV_MX_PORT
            banner = smtp_banner(port)
            if banner and banner.startswith(b"220 "):
                break
            time.sleep(2)
        assert banner and banner.startswith(b"220 "), (
            f"no SMTP banner within {BANNER_TIMEOUT:.0f} s of `{main_cmd}`:\n"
            + log_path.read_text(errors="replace")[-4000:])
    finally:
        # The group may be gone already (the command exited): nothing left to stop.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=30)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        proc.wait(timeout=30)
