"""Test harness for the Postern system tests.

Starts the real `posternd` binary with a temporary configuration (the schema of
daemon/config/reference.toml), provisions accounts through the real `postern` CLI, and offers small
clients (raw socket SMTP, TLS contexts, mailbox export) with every wait bounded in time.
Only loopback addresses are used.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN_DIR = Path(os.environ.get("POSTERN_BIN_DIR", str(REPO / "target" / "debug")))
POSTERND = BIN_DIR / "posternd"
POSTERN = BIN_DIR / "postern"

HOST = "127.0.0.1"
HOSTNAME = "mail.example.test"
DOMAIN = "example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
TEAM = "team@example.test"
PASSWORDS = {
    ALICE: "Alice-Secret-9f3Kq27xLm",
    BOB: "Bob-Secret-4tZp81WvNc",
}
REMOTE_SENDER = "sender@remote.test"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0
SOCK_TIMEOUT = 15.0

SMTP_DEFAULTS = {
    "max_message_size": 10 * 1024 * 1024,
    "max_recipients": 100,
    "max_command_line": 2048,
    "max_data_line": 8192,
    "max_commands": 1000,
    "max_errors": 10,
    "max_connections": 10000,
    "max_connections_per_ip": 1000,
    "max_submission_connections_per_ip": 1000,
    "timeout_command_secs": 60,
    "timeout_data_secs": 60,
    # No wait before the MX greeting (tests/smtp/test_early_talker.py sets one).
    "greeting_delay_ms": 0,
    # Every test sends from 127.0.0.1 as a few accounts: no hourly allowances
    # (tests/smtp/test_rate_limits.py sets them).
    "mx_messages_per_ip_per_hour": 0,
    "submission_messages_per_hour": 0,
    "submission_recipients_per_hour": 0,
}


def free_port() -> int:
    """A free loopback TCP port (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


@dataclass
class Ports:
    mx: int
    submission: int
    submissions: int
    metrics: int
    imap: int
    imaps: int
    pop3: int
    pop3s: int

    @staticmethod
    def allocate() -> "Ports":
        seen: set[int] = set()
        out = []
        while len(out) < 8:
            p = free_port()
            if p not in seen:
                seen.add(p)
                out.append(p)
        return Ports(*out)


def render_config(
    data_dir: Path,
    ports: Ports,
    backend: str = "auto",
    smtp: dict | None = None,
    tls_min_version: str = "1.2",
    workers: int = 2,
    sender_auth: dict | None = None,
    dns: dict | None = None,
    extra: str = "",
) -> str:
    limits = dict(SMTP_DEFAULTS)
    limits.update(smtp or {})
    lines = [
        "[server]",
        f"hostname = {toml_value(HOSTNAME)}",
        f"data_dir = {toml_value(str(data_dir))}",
        f"workers = {workers}",
        "",
        "[tls]",
        f"min_version = {toml_value(tls_min_version)}",
        "",
    ]
    for kind, port in (
        ("mx", ports.mx),
        ("submission", ports.submission),
        ("submissions", ports.submissions),
        ("imap", ports.imap),
        ("imaps", ports.imaps),
        ("pop3", ports.pop3),
        ("pop3s", ports.pop3s),
    ):
        lines += [
            "[[listener]]",
            f"kind = {toml_value(kind)}",
            f"bind = {toml_value([f'{HOST}:{port}'])}",
            "",
        ]
    lines.append("[smtp]")
    for k, v in limits.items():
        lines.append(f"{k} = {toml_value(v)}")
    lines += [
        "",
        "[store]",
        f"backend = {toml_value(backend)}",
        # Small segments: every test creates a data dir and segments may be preallocated.
        "segment_size = 8388608",
        "",
        "[metrics]",
        f"bind = {toml_value(f'{HOST}:{ports.metrics}')}",
        "",
        "[log]",
        'level = "info"',
        'format = "text"',
        "",
    ]
    # Sender authentication asks DNS; tests never send traffic off the host (DESIGN.md 4), so
    # it is off unless a test brings its own DNS server (tests/smtp/test_sender_auth.py).
    auth = {"verify": False}
    auth.update(sender_auth or {})
    lines.append("[sender_auth]")
    lines += [f"{k} = {toml_value(v)}" for k, v in auth.items()]
    lines.append("")
    if dns:
        lines.append("[dns]")
        lines += [f"{k} = {toml_value(v)}" for k, v in dns.items()]
        lines.append("")
    # More sections, as TOML text (tests/smtp/test_dnsbl.py: [dnsbl] with its lists).
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def run_cli(cfg: Path | None, *args: str, input: bytes | None = None, timeout: float = CLI_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run `postern [--config CFG] args...` with a bounded time."""
    cmd = [str(POSTERN)]
    if cfg is not None:
        cmd += ["--config", str(cfg)]
    cmd += list(args)
    p = subprocess.run(cmd, input=input if input is not None else b"", capture_output=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout.decode(errors='replace')}"
            f"\nstderr:\n{p.stderr.decode(errors='replace')}"
        )
    return p


class Server:
    """One posternd instance on a temp dir; can be stopped, killed and restarted on the same data."""

    def __init__(self, root: Path, backend: str = "auto", smtp: dict | None = None,
                 tls_min_version: str = "1.2", provision: bool = True,
                 sender_auth: dict | None = None, dns: dict | None = None, extra: str = ""):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.cfg = self.root / "postern.toml"
        self.log_path = self.root / "posternd.log"
        self.ports = Ports.allocate()
        self.backend = backend
        self.cfg.write_text(render_config(self.data_dir, self.ports, backend, smtp, tls_min_version,
                                          sender_auth=sender_auth, dns=dns, extra=extra))
        self.proc: subprocess.Popen | None = None
        # Runs in the child before exec (e.g. a seccomp filter the daemon must live with).
        self.preexec_fn = None
        # Extra environment of the daemon (e.g. SSL_CERT_FILE for a machine without CA roots).
        self.env: dict[str, str] = {}
        self._logf = None
        self.failed = False
        if provision:
            self.provision()

    # -- accounts ---------------------------------------------------------------------------
    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run_cli(self.cfg, *args, **kw)

    def provision(self) -> None:
        self.cli("domain", "add", DOMAIN)
        for user, pw in PASSWORDS.items():
            self.cli("user", "add", user, "--password", pw)
        self.cli("alias", "add", TEAM, ALICE, BOB)

    # -- process control --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert not self.running, "already running"
        self._logf = open(self.log_path, "ab")
        self._logf.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        self._logf.flush()
        self.proc = subprocess.Popen(
            [str(POSTERND), "--config", str(self.cfg)],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            cwd=str(self.root), env={**os.environ, "NO_COLOR": "1", **self.env},
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        pending = [self.ports.mx, self.ports.submission, self.ports.submissions, self.ports.metrics,
                   self.ports.imap, self.ports.imaps, self.ports.pop3, self.ports.pop3s]
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"posternd exited with {self.proc.returncode} during start\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"posternd did not listen on {pending} within {timeout}s\n"
                                     f"{self.log_tail()}")
            try:
                with socket.create_connection((HOST, pending[0]), timeout=1):
                    pass
                pending.pop(0)
            except OSError:
                time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status (None if not running)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout=timeout)
                self._note(f"posternd ignored SIGTERM for {timeout}s; killed")
        self._close_log()
        self.proc = None
        return rc

    def kill(self) -> None:
        """SIGKILL (crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self._note("posternd SIGKILLed by test")
        self._close_log()
        self.proc = None

    def _note(self, text: str) -> None:
        with open(self.log_path, "ab") as f:
            f.write(f"===== {text} =====\n".encode())

    def _close_log(self) -> None:
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 200) -> str:
        lines = self.log().splitlines()
        return "posternd log (tail):\n" + "\n".join(lines[-n:])

    # -- mailbox ---------------------------------------------------------------------------
    def export(self, user: str, restart: bool = False, mailbox: str | None = None) -> list[bytes]:
        """Stop the daemon (export works on a stopped data dir), export the user's mailbox and
        return the messages in UID order. Restart afterwards if asked."""
        was_running = self.running
        if was_running:
            self.stop()
        try:
            return export_mailbox(self.cfg, user, self.root, mailbox)
        finally:
            if restart and was_running:
                self.start()

    def export_all(self, users=(ALICE, BOB), restart: bool = False) -> dict[str, list[bytes]]:
        return {u: [b for _, b in v] for u, v in self.export_all_uids(users, restart).items()}

    def export_all_uids(self, users=(ALICE, BOB), restart: bool = False):
        was_running = self.running
        if was_running:
            self.stop()
        out = {u: export_mailbox_uids(self.cfg, u, self.root) for u in users}
        if was_running and restart:
            self.start()
        return out

    # -- metrics ---------------------------------------------------------------------------
    def metrics(self) -> str:
        url = f"http://{HOST}:{self.ports.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=SOCK_TIMEOUT) as r:
            assert r.status == 200, r.status
            return r.read().decode()

    def tls_dir(self) -> Path:
        return self.data_dir / "tls"


_export_counter = 0


def export_mailbox(cfg: Path, user: str, workdir: Path, mailbox: str | None = None) -> list[bytes]:
    return [b for _, b in export_mailbox_uids(cfg, user, workdir, mailbox)]


def export_mailbox_uids(cfg: Path, user: str, workdir: Path,
                        mailbox: str | None = None) -> list[tuple[int, bytes]]:
    """Export a mailbox; returns [(uid, bytes)] in UID order. The export dir is removed after."""
    global _export_counter
    _export_counter += 1
    out = Path(workdir) / f"export-{_export_counter}-{user.split('@')[0]}"
    if out.exists():
        shutil.rmtree(out)
    args = ["mailbox", "export", "--user", user]
    if mailbox:
        args += ["--mailbox", mailbox]
    args += ["--maildir", str(out)]
    p = run_cli(cfg, *args, timeout=120, check=False)
    if p.returncode != 0:
        raise AssertionError(f"mailbox export for {user} exited {p.returncode}: "
                             f"{p.stderr.decode(errors='replace')}")
    cur = out / "cur"
    assert cur.is_dir(), f"export wrote no {cur}"
    files = []
    for f in cur.iterdir():
        m = re.fullmatch(r"(\d+):2(,.*)?", f.name)
        assert m, f"unexpected file name in export: {f.name}"
        files.append((int(m.group(1)), f.read_bytes()))
    files.sort()
    uids = [u for u, _ in files]
    assert len(set(uids)) == len(uids), f"duplicate UIDs {uids}"
    shutil.rmtree(out, ignore_errors=True)
    return files


TRACE_RE = re.compile(
    rb"Return-Path: <([^>\r\n]*)>\r\n"
    # Our Authentication-Results on verified MX mail ([sender_auth] verify = true).
    rb"(?:Authentication-Results:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)?"
    rb"(Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)"
    # The spam filter's explanation header on MX mail (daemon/posternd/src/filter.rs).
    rb"(?:X-Postern-Spam:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)?")


def split_trace(stored: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a stored message into (return_path, received_header, client_bytes). Fails when the
    message does not start with exactly one Return-Path line and one (possibly folded) Received
    (and, on MX mail, our Authentication-Results before it and the filter's X-Postern-Spam field
    after it, both dropped)."""
    m = TRACE_RE.match(stored)
    assert m, f"stored message does not start with Return-Path + Received: {stored[:300]!r}"
    return m.group(1), m.group(2), stored[m.end():]


def strip_trace(stored: bytes) -> bytes:
    return split_trace(stored)[2]


# -- TLS --------------------------------------------------------------------------------------

def client_tls_context(max_version=None, min_version=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def legacy_tls_context() -> ssl.SSLContext:
    """A client context that offers only TLS 1.0/1.1, with OpenSSL's security level lowered so
    that the *client* really offers them (Debian's OpenSSL refuses them by default)."""
    ctx = client_tls_context(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def assert_modern_tls(sock) -> None:
    v = sock.version()
    assert v in ("TLSv1.2", "TLSv1.3"), f"negotiated {v}"


# -- raw SMTP ---------------------------------------------------------------------------------

class Reply:
    def __init__(self, code: int, lines: list[bytes]):
        self.code = code
        self.lines = lines

    @property
    def text(self) -> str:
        return "\n".join(l.decode(errors="replace") for l in self.lines)

    @property
    def enhanced(self) -> str | None:
        m = re.match(r"\d\.\d{1,3}\.\d{1,3}", self.lines[0][4:].decode(errors="replace")) if self.lines else None
        return m.group(0) if m else None

    def __repr__(self):
        return f"Reply({self.code}, {self.text!r})"


class Closed(Exception):
    pass


class RawClient:
    """The byte-exact transport every raw protocol client shares (RawSMTP here, RawPOP3 in
    tests/pop3, RawIMAP in tests/imap): a plain or TLS socket, a receive buffer, CRLF lines,
    the TLS upgrade and closing. Subclasses read their greeting in __init__."""

    def __init__(self, port: int, tls: bool = False, timeout: float = SOCK_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        """Receive once into the buffer; Closed at EOF."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed(f"connection closed; partial {self.buf[:200]!r}")
        self.buf += chunk

    def _readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def start_tls(self) -> None:
        """Upgrade after the server accepted STARTTLS/STLS. Nothing may follow its answer
        (RFC 3207 4 / RFC 2595 4: no response injection)."""
        assert not self.buf, f"data after the TLS command's answer: {self.buf!r}"
        self.sock = client_tls_context().wrap_socket(self.sock)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF) within `timeout`, sending nothing."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
        assert data == b"" and not self.buf, f"unexpected data {self.buf + data!r}"
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class RawSMTP(RawClient):
    """A byte-exact SMTP client over a plain or TLS socket, for tests that must control every byte."""

    def __init__(self, port: int, tls: bool = False, timeout: float = SOCK_TIMEOUT):
        super().__init__(port, tls, timeout)
        self.banner = self.reply()

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self._readline()
            assert len(line) >= 3 and line[:3].isdigit(), f"bad reply line {line!r}"
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                return Reply(int(line[:3]), lines)
            assert line[3:4] == b"-", f"bad reply line {line!r}"

    def cmd(self, line: str | bytes) -> Reply:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def ehlo(self, name: str = "client.test") -> Reply:
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, r
        return r

    def starttls(self) -> None:
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        self.start_tls()

    def replies_until_closed(self, timeout: float = 5.0) -> tuple[list[Reply], bool]:
        """Read every reply until the peer closes or `timeout` passes without data.
        Returns (replies, closed)."""
        out = []
        self.sock.settimeout(timeout)
        try:
            while True:
                out.append(self.reply())
        except Closed:
            return out, True
        except (socket.timeout, TimeoutError):
            return out, False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return out, True


def dot_stuff(msg: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency: double a leading dot on every line."""
    out = re.sub(rb"(?m)^\.", b"..", msg)
    return out


def ehlo_keywords(reply: Reply) -> dict[str, str]:
    kws = {}
    for line in reply.lines[1:]:
        parts = line[4:].decode().split(None, 1)
        if parts:
            kws[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
    return kws


def make_message(subject: str = "test", body: bytes = b"Hello.\r\n", extra_headers: bytes = b"",
                 msgid: str | None = None, sender: str = REMOTE_SENDER) -> bytes:
    """A message From: `sender` (on submission, an address the user owns: the From check)."""
    msgid = msgid or f"<{time.time_ns()}.{os.getpid()}@client.test>"
    return (
        b"From: Sender <" + sender.encode() + b">\r\n"
        b"To: Alice <alice@example.test>\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-Id: " + msgid.encode() + b"\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n" + extra_headers + b"\r\n" + body
    )


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def trickle(sock, data: bytes, interval: float = 0.5, limit: float = 20.0) -> tuple[float, bytes, bool]:
    """Slowloris: send `data` one byte every `interval` seconds (starting over when it runs
    out) and collect what the peer sends, until the peer closes or `limit` seconds pass.
    Returns (seconds until the close, bytes received, closed). Plain sockets only."""
    start = time.monotonic()
    received = b""
    i = 0
    while time.monotonic() - start < limit:
        readable, _, _ = select.select([sock], [], [], interval)
        try:
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return time.monotonic() - start, received, True
                received += chunk
                continue
            j = i % len(data)
            sock.sendall(data[j:j + 1])
            i += 1
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start, received, True
    return time.monotonic() - start, received, False


def wait_until(pred, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")
