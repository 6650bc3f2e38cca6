"""A remote peer cannot write a log line per handshake (issue 13, DESIGN.md 6): rustls warns
about an IP address sent as the SNI name (RFC 6066 3 allows host names only); a flood of such
handshakes, and of garbage, leaves no line each, only one `tls.peer_warnings` summary and one
`tls.handshake_failures` summary."""

import re
import socket
import subprocess


from harness import HOST

HANDSHAKES = 50


def test_a_flood_of_bad_handshakes_gives_one_summary(make_server):
    srv = make_server()
    before = len(srv.log().splitlines())
    for _ in range(HANDSHAKES):
        # Python's ssl never sends an IP address as SNI; openssl s_client does as told.
        subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{srv.ports.submissions}",
                        "-servername", "127.0.0.1"], input=b"", capture_output=True,
                       timeout=15)
        with socket.create_connection((HOST, srv.ports.submissions), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\x05garbage" * 4)
            s.settimeout(5)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert srv.stop() == 0
    lines = srv.log().splitlines()[before:]
    per_handshake = [l for l in lines if "SNI" in l and "tls.peer_warnings" not in l]
    assert per_handshake == [], per_handshake[:5]
    summaries = [l for l in lines if "tls.peer_warnings" in l]
    assert len(summaries) == 1, summaries
    assert f"count={HANDSHAKES}" in summaries[0], summaries[0]
    # The garbage connections failed their handshakes: counted, one line for all of them.
    failures = [l for l in lines if "tls.handshake_failures" in l]
    assert len(failures) == 1, failures
    count = int(re.search(r"count=(\d+)", failures[0]).group(1))
    assert count >= HANDSHAKES, failures[0]
    # Whatever else the flood caused stays far below a line per connection.
    assert len(lines) < 20, lines
