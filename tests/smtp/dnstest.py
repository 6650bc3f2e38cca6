"""A real DNSSEC-signed DNS for system tests: a private root zone "." holding every test name
(sender.test., ...), signed with ldns-signzone (keys made by
ldns-keygen in the test's directory) and served by unbound as an authoritative zone
(auth-zone) on 127.0.0.1:<free port>. posternd is pointed at it with [dns] nameservers and
validates every answer from the zone's key-signing key as its root trust anchor ([dns]
trust_anchor): the chain of trust is the one a real resolver walks, one level deep.

A missing tool (unbound, ldns-keygen, ldns-signzone) fails the test: tests/run installs them.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness import free_port

ZONE = "."


def need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if Path(p).is_file()), None)
    assert path, f"{tool} is not installed (tests/run installs unbound and ldnsutils)"
    return path


def _keygen(workdir: Path, ksk: bool) -> str:
    args = [need("ldns-keygen"), "-a", "ECDSAP256SHA256"]
    if ksk:
        args.append("-k")
    args.append(ZONE)
    out = subprocess.run(args, cwd=workdir, check=True, capture_output=True, timeout=60)
    return out.stdout.decode().strip()


def absolute(owner: str) -> str:
    """Owners without a trailing dot are below test."""
    return owner if owner.endswith(".") else f"{owner}.test."


class SignedDns:
    """records: (owner, type, rdata); tampered: (owner, type, rdata) put in place of the signed
    rdata after signing, so that its signature no longer verifies (a bogus answer)."""

    def __init__(self, workdir: Path, records: list[tuple[str, str, str]],
                 tampered: list[tuple[str, str, str]] = ()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        ksk = _keygen(self.dir, True)
        zsk = _keygen(self.dir, False)
        lines = [
            f"$ORIGIN {ZONE}",
            "$TTL 300",
            ". IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300",
            ". IN NS ns.test.",
            "ns.test. IN A 127.0.0.1",
        ]
        for owner, rtype, rdata in list(records) + list(tampered):
            lines.append(f"{absolute(owner)} IN {rtype} {rdata}")
        zone = self.dir / "test.zone"
        zone.write_text("\n".join(lines) + "\n")
        # RFC 4035 2: every RRset signed, NSEC chain for denial of existence.
        subprocess.run([need("ldns-signzone"), "-f", str(self.dir / "test.zone.signed"),
                        str(zone), ksk, zsk], cwd=self.dir, check=True, capture_output=True,
                       timeout=60)
        if tampered:
            signed = self.dir / "test.zone.signed"
            text = signed.read_text()
            for owner, rtype, rdata in tampered:
                pattern = re.compile(rf"^({re.escape(absolute(owner))}\s+\d+\s+IN\s+{rtype}\s+).*$",
                                     re.M)
                text, n = pattern.subn(lambda m: m.group(1) + rdata + " \"tampered\"", text)
                assert n == 1, f"{owner} {rtype} not found once in the signed zone"
            signed.write_text(text)
        # The trust anchor posternd's resolver starts from: the zone's key-signing key.
        self.trust_anchor = self.dir / "trust-anchor.key"
        shutil.copy(self.dir / f"{ksk}.key", self.trust_anchor)
        self.conf = self.dir / "unbound.conf"
        self.conf.write_text(f"""server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    use-syslog: no
    logfile: "{self.dir / 'unbound.log'}"
    verbosity: 1
    chroot: ""
    username: ""
    directory: "{self.dir}"
    pidfile: ""
    access-control: 127.0.0.0/8 allow
    # unbound answers "test." (RFC 6761) itself by default: here the private root zone does.
    # (127.0.0.1's PTR stays unbound's own "localhost", so iprev of the test client passes.)
    local-zone: "test." nodefault
    # No forwarders and no root hints are needed: everything asked is in the zone.
    module-config: "iterator"
    do-not-query-localhost: no
auth-zone:
    name: "{ZONE}"
    zonefile: "{self.dir / 'test.zone.signed'}"
    for-downstream: yes
    for-upstream: yes
    fallback-enabled: no
""")
        subprocess.run([need("unbound-checkconf"), str(self.conf)], check=True,
                       capture_output=True, timeout=30)

    def start(self) -> "SignedDns":
        self.proc = subprocess.Popen([need("unbound"), "-d", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"unbound exited: {self.log()}"
            if self.answers():
                return self
            time.sleep(0.1)
        raise AssertionError(f"unbound did not answer on port {self.port}: {self.log()}")

    def answers(self) -> bool:
        # A minimal query for test. SOA (RFC 1035 4.1).
        query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 b"\x00\x00\x06\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                reply = s.recv(4096)
            except OSError:
                return False
        return reply[:2] == b"\x12\x34" and (reply[3] & 0x0F) == 0

    def log(self) -> str:
        path = self.dir / "unbound.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def dns_config(self) -> dict:
        return {
            "nameservers": [f"127.0.0.1:{self.port}"],
            "trust_anchor": str(self.trust_anchor),
            "dnssec_validation": True,
            "timeout_ms": 2000,
            "attempts": 1,
        }
