"""POP3 with curl, a real independent client: pop3:// with STLS (--ssl-reqd) and pop3s://,
SASL PLAIN and USER/PASS, LIST, RETR by number, UIDL and DELE as custom commands."""

import shutil
import subprocess

import pytest

from harness import ALICE, HOST, PASSWORDS, make_message
from pop3_helpers import deliver, export_with_flags



@pytest.fixture(autouse=True)
def _curl_installed():
    # A missing client fails the test (tests/run installs it); it never skips.
    assert shutil.which("curl"), "curl not installed (tests/run installs it)"


def curl(*args: str, user: str = ALICE, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["curl", "-sS", "-k", "--max-time", "30", "-u", f"{user}:{PASSWORDS[user]}", *args]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, (cmd, p.returncode, p.stderr.decode(errors="replace"))
    return p


def url(srv, scheme: str, path: str = "") -> str:
    port = srv.ports.pop3s if scheme == "pop3s" else srv.ports.pop3
    return f"{scheme}://{HOST}:{port}/{path}"


SCHEMES = [("pop3", ["--ssl-reqd"]), ("pop3s", [])]


@pytest.mark.parametrize("scheme,extra", SCHEMES, ids=["pop3+stls", "pop3s"])
def test_curl_list_and_retr(server, scheme, extra):
    sent = [deliver(server, msg=make_message(f"c{i}", b".dot\r\nbody %d\r\n" % i))
            for i in range(2)]
    listing = curl(*extra, url(server, scheme)).stdout
    lines = listing.decode().split("\r\n")
    assert lines[-1] == "" and [l.split()[0] for l in lines[:-1]] == ["1", "2"], listing
    got = [curl(*extra, url(server, scheme, str(n))).stdout for n in (1, 2)]
    for g, s in zip(got, sent):
        # curl un-stuffs the RETR response: the stored message, client bytes at the end.
        assert g.endswith(s), g
    stored = [b for _, _, b in export_with_flags(server)]
    assert got == stored


@pytest.mark.parametrize("mech", ["PLAIN", "*"])
def test_curl_login_mechanisms(server, mech):
    deliver(server)
    # AUTH=PLAIN forces SASL PLAIN (RFC 5034); "*" lets curl choose from CAPA.
    out = curl("--login-options", f"AUTH={mech}", url(server, "pop3s", "1")).stdout
    assert b"Subject: " in out


def test_curl_uidl_and_dele(server):
    for i in range(3):
        deliver(server, subject=f"del{i}")
    out = curl("--ssl-reqd", "-X", "UIDL", url(server, "pop3")).stdout
    uidls = [l.split() for l in out.decode().split("\r\n") if l]
    assert [n for n, _ in uidls] == ["1", "2", "3"]
    # A command without a multi-line response needs -I (no body); curl ends with QUIT,
    # which commits the deletion (RFC 1939 6).
    curl("--ssl-reqd", "-X", "DELE 2", "-I", url(server, "pop3"))
    after = curl("--ssl-reqd", "-X", "UIDL", url(server, "pop3")).stdout
    remaining = [l.split()[1] for l in after.decode().split("\r\n") if l]
    assert remaining == [uidls[0][1], uidls[2][1]]
    assert len(export_with_flags(server)) == 2


def test_curl_refused_without_tls(server):
    deliver(server)
    # Without --ssl-reqd curl tries to log in over plaintext: the server refuses.
    p = curl(url(server, "pop3", "1"), check=False)
    assert p.returncode != 0
    assert b"Subject:" not in p.stdout


def test_curl_wrong_password(server):
    cmd = ["curl", "-sS", "-k", "--max-time", "30", "-u", f"{ALICE}:not-the-password",
           url(server, "pop3s")]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode == 67, p  # CURLE_LOGIN_DENIED
