"""Postfix as a real peer MTA relaying to posternd's MX over STARTTLS (DESIGN.md section 4)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import ALICE, BOB, HOST, TEAM, metric_sum, parse_metrics, split_trace, wait_until

# Shared with benches/compare-smtp.sh: the services a private Postfix instance runs.
MASTER_CF = Path(__file__).resolve().parents[1] / "peers" / "postfix-master.cf"


class PrivatePostfix:
    """A Postfix instance of its own (config, queue, data under tmp), sending only to posternd."""

    def __init__(self, root, relay_port: int):
        self.etc = root / "etc"
        self.queue = root / "queue"
        self.data = root / "data"
        self.maillog = root / "maillog"
        for d in (self.etc, self.queue, self.data):
            d.mkdir(parents=True)
        shutil.chown(self.data, "postfix")
        self.etc.joinpath("master.cf").write_text(MASTER_CF.read_text())
        self.etc.joinpath("main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
manpage_directory = /usr/share/man
sample_directory = no
readme_directory = no
html_directory = no
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {root}
myhostname = peer.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
biff = no
# Everything goes to posternd's MX on loopback, never anywhere else.
relayhost = [{HOST}]:{relay_port}
default_transport = smtp
smtp_dns_support_level = disabled
# Refuse to send in clear: posternd offers STARTTLS on the MX (self-signed, so "encrypt",
# which does not verify the certificate).
smtp_tls_security_level = encrypt
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_loglevel = 1
""")

    def postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.etc), *args], capture_output=True,
                              timeout=60)

    def start(self):
        p = self.postfix("start")
        assert p.returncode == 0, (p.stdout, p.stderr, self.log())

    def stop(self):
        self.postfix("stop")

    def sendmail(self, sender: str, recipients: list[str], message: bytes):
        p = subprocess.run(["sendmail", "-C", str(self.etc), "-f", sender, "-i", "--", *recipients],
                           input=message, capture_output=True, timeout=60)
        assert p.returncode == 0, (p.stdout, p.stderr)
        # Do not wait for the next queue scan.
        self.postfix("flush")

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def postfix_peer(server):
    assert shutil.which("postfix") and shutil.which("sendmail"), \
        "postfix is not installed (tests/run installs it)"
    # Postfix's daemons run as the postfix user and must reach their queue: pytest's own
    # temporary directories are private to root, so the instance lives in /var/tmp.
    root = Path(tempfile.mkdtemp(prefix="postern-postfix-", dir="/var/tmp"))
    root.chmod(0o755)
    pf = PrivatePostfix(root, server.ports.mx)
    try:
        pf.start()
        yield pf
    finally:
        pf.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postfix_relays_to_posternd_over_starttls(server, postfix_peer):
    body = (b"Subject: from a real MTA\r\nFrom: <carol@postfix.test>\r\n"
            b"Message-ID: <peer-1@postfix.test>\r\n\r\n"
            b"Line one.\r\n.leading dot survives\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n")
    postfix_peer.sendmail("carol@postfix.test", [ALICE, TEAM], body.replace(b"\r\n", b"\n"))

    def accepted():
        return metric_sum(parse_metrics(server.metrics()), "postern_smtp_messages_accepted_total")
    wait_until(lambda: accepted() >= 1, timeout=60, what="Postfix delivered to posternd")
    log = postfix_peer.log()
    assert "status=sent" in log, log
    # Postfix's log shows the TLS it negotiated with posternd.
    assert "TLS connection established to" in log and "TLSv1.3" in log, log

    server.stop()
    alice = server.export(ALICE)
    bob = server.export(BOB)
    # alice is both a direct recipient and a member of team: one copy (one transaction).
    assert len(alice) == 1 and len(bob) == 1, (alice, bob)
    return_path, received, rest = split_trace(alice[0])
    assert return_path == b"carol@postfix.test"
    assert b"from peer.postfix.test" in received and b"ESMTPS" in received, received
    # Postfix adds its own trace and header fields above the body; the body arrives intact.
    assert rest.endswith(b"\r\n\r\nLine one.\r\n.leading dot survives\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n")
    assert b"Received: by peer.postfix.test" in rest
    # One transaction, one stored record: every recipient gets the same bytes.
    assert bob[0] == alice[0]
