"""Test peers for the IPMI tests: OpenIPMI's ipmi_sim as the BMC (RMCP+ on loopback, values
changed at run time on its console), an SMTP listener with STARTTLS that keeps what it
receives, a webhook receiver and a syslog (UDP) collector. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
IPMI_SIM = shutil.which("ipmi_sim")
SDRCOMP = shutil.which("sdrcomp")
IPMITOOL = shutil.which("ipmitool")

USER = "postern"
PASSWORD = "bmc-secret-1"

# Sensor numbers in postern.emu / postern.sdrs.
PSU1, PSU2, FAN1, FAN2, CPU_TEMP, INLET_TEMP = 0x10, 0x11, 0x20, 0x21, 0x30, 0x31


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bmc:
    """ipmi_sim with the Postern board's SDRs, a LAN channel (RMCP+) on a loopback UDP port
    and its emulation console on a loopback TCP port."""

    def __init__(self, workdir: Path, lan_port: int | None = None,
                 console_port: int | None = None):
        self.workdir = workdir
        self.lan_port = lan_port or free_port(socket.SOCK_DGRAM)
        self.console_port = console_port or free_port()
        state = workdir / "state"
        (state / "ipmi_sim" / "postern-bmc").mkdir(parents=True, exist_ok=True)
        sdr = subprocess.run([SDRCOMP, str(HERE / "postern.sdrs")], capture_output=True,
                             timeout=30, check=True)
        (state / "ipmi_sim" / "postern-bmc" / "sdr.20.main").write_bytes(sdr.stdout)
        conf = (HERE / "lan.conf.in").read_text()
        conf = conf.replace("@LAN_PORT@", str(self.lan_port)).replace(
            "@CONSOLE_PORT@", str(self.console_port))
        (workdir / "lan.conf").write_text(conf)
        self.log = open(workdir / "ipmi_sim.log", "wb")
        self.proc = subprocess.Popen(
            [IPMI_SIM, "-c", str(workdir / "lan.conf"), "-f", str(HERE / "postern.emu"),
             "-s", str(state), "-n"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self.console = None
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"ipmi_sim exited {self.proc.returncode}: "
                                     f"{(workdir / 'ipmi_sim.log').read_text()}")
            try:
                self.console = socket.create_connection(("127.0.0.1", self.console_port), 2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("ipmi_sim console did not open")
                time.sleep(0.05)
        self.console.settimeout(5)
        self._read_prompt()

    def _read_prompt(self) -> bytes:
        buf = b""
        deadline = time.monotonic() + 5
        while not buf.rstrip().endswith(b">"):
            if time.monotonic() > deadline:
                raise AssertionError(f"no ipmi_sim prompt: {buf!r}")
            chunk = self.console.recv(4096)
            if not chunk:
                raise AssertionError("ipmi_sim console closed")
            buf += chunk
        return buf

    def command(self, line: str) -> str:
        """One ipmi_sim_cmd(5) command on the console; returns its output."""
        self.console.sendall(line.encode() + b"\n")
        out = self._read_prompt().decode(errors="replace")
        if "error" in out.lower() or "invalid" in out.lower():
            raise AssertionError(f"ipmi_sim refused {line!r}: {out!r}")
        return out

    def set_value(self, sensor: int, raw: int) -> None:
        # generate-event 1: the BMC also logs threshold crossings in its SEL.
        self.command(f"sensor_set_value 0x20 0 {sensor:#04x} {raw} 1")

    def set_bit(self, sensor: int, bit: int, value: int) -> None:
        self.command(f"sensor_set_bit 0x20 0 {sensor:#04x} {bit} {value} 1")

    def ipmitool(self, *args: str, timeout: float = 30) -> str:
        r = subprocess.run(
            [IPMITOOL, "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.lan_port), "-U", USER,
             "-P", PASSWORD, "-C", "3", *args], capture_output=True, text=True, errors="replace",
            timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stop(self) -> None:
        if self.console:
            self.console.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def make_cert(workdir: Path, name: str = "localhost") -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for `name` signed by it: (ca, cert, key)."""
    ca, ca_key = workdir / "ca.pem", workdir / "ca-key.pem"
    cert, key, csr = workdir / "smtp-cert.pem", workdir / "smtp-key.pem", workdir / "smtp.csr"
    ext = workdir / "smtp-ext.cnf"
    ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "2", "-subj", "/CN=hwmon test CA", "-keyout", str(ca_key),
        "-out", str(ca))
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


class SmtpListener:
    """A minimal ESMTP server (RFC 5321) with STARTTLS (RFC 3207) on loopback, in a thread.
    Keeps every message with its envelope, TLS use and arrival time."""

    def __init__(self, cert: Path, key: Path):
        self.port = free_port()
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "SMTP listener did not start"

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    async def _session(self, reader, writer):
        tls = False
        env = {"from": None, "to": []}

        async def say(line: str):
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await say("220 sink.test ESMTP")
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    ext = ["sink.test", "8BITMIME", "PIPELINING"] + ([] if tls else ["STARTTLS"])
                    for i, e in enumerate(ext):
                        await say(("250 " if i == len(ext) - 1 else "250-") + e)
                elif verb == "STARTTLS" and not tls:
                    await say("220 2.0.0 go ahead")
                    await writer.start_tls(self.ctx)
                    tls = True
                    env = {"from": None, "to": []}
                elif verb == "MAIL":
                    env = {"from": cmd.split(":", 1)[1].strip().strip("<>"), "to": []}
                    await say("250 2.1.0 ok")
                elif verb == "RCPT":
                    env["to"].append(cmd.split(":", 1)[1].strip().strip("<>"))
                    await say("250 2.1.5 ok")
                elif verb == "DATA":
                    await say("354 go ahead")
                    data = b""
                    while True:
                        l = await asyncio.wait_for(reader.readline(), 30)
                        if l in (b".\r\n", b""):
                            break
                        if l.startswith(b".."):
                            l = l[1:]
                        data += l
                    msg = message_from_bytes(data)
                    with self.lock:
                        self.messages.append({"from": env["from"], "to": list(env["to"]),
                                              "tls": tls, "time": time.monotonic(),
                                              "subject": msg["Subject"], "data": data,
                                              "component": msg["X-Postern-Component"],
                                              "state": msg["X-Postern-State"]})
                    await say("250 2.0.0 queued")
                elif verb == "QUIT":
                    await say("221 2.0.0 bye")
                    return
                elif verb in ("RSET", "NOOP"):
                    await say("250 2.0.0 ok")
                else:
                    await say("502 5.5.1 not implemented")
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float = 20, what: str = "mail") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.received():
                if pred(m):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got "
                             f"{[m['subject'] for m in self.received()]}")

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class WebhookReceiver:
    """http.server on loopback keeping every POSTed JSON body."""

    def __init__(self):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                outer.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hwmon"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, pred, timeout: float = 20, what: str = "webhook") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for b in list(self.bodies):
                if pred(b):
                    return b
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SyslogCollector:
    """A UDP syslog collector (RFC 5426) on loopback."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.running = True
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while self.running:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            self.lines.append(data.decode(errors="replace"))

    def wait_for(self, pred, timeout: float = 20, what: str = "syslog line") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for l in list(self.lines):
                if pred(l):
                    return l
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {self.lines[-5:]}")

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


def scrape(port: int) -> dict[str, float]:
    """GET /metrics -> {"name{labels}": value}."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out
