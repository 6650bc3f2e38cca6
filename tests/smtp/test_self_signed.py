"""The generated self-signed certificate (issue 13): valid for a year from a day before its
creation (not 1975 to 4096), and replaced at start when it nears its end."""

import calendar
import socket
import ssl
import subprocess
import time

import pytest

from harness import HOST, client_tls_context

DAY = 86400


def validity(path) -> tuple[float, float]:
    decoded = ssl._ssl._test_decode_cert(str(path))
    parse = lambda s: calendar.timegm(time.strptime(s, "%b %d %H:%M:%S %Y %Z"))
    return parse(decoded["notBefore"]), parse(decoded["notAfter"])


def served_certificate(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as raw:
        with client_tls_context().wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def file_der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_generated_certificate_lasts_a_year(server):
    cert = server.tls_dir() / "self-signed.crt"
    not_before, not_after = validity(cert)
    now = time.time()
    assert now - 2 * DAY < not_before <= now, (not_before, now)
    assert now + 360 * DAY < not_after < now + 370 * DAY, (not_after, now)
    assert served_certificate(server.ports.submissions) == file_der(cert)


def test_a_certificate_near_its_end_is_replaced_at_start(make_server):
    srv = make_server(start=False)
    tls = srv.tls_dir()
    tls.mkdir(parents=True, exist_ok=True)
    cert, key = tls / "self-signed.crt", tls / "self-signed.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "5",
                    "-subj", "/CN=mail.example.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    old = file_der(cert)
    assert validity(cert)[1] < time.time() + 6 * DAY
    srv.start()
    assert file_der(cert) != old
    assert validity(cert)[1] > time.time() + 360 * DAY
    assert served_certificate(srv.ports.submissions) == file_der(cert)
    assert "tls.self_signed_renewing" in srv.log()
    # A certificate far from its end is kept across restarts.
    renewed = file_der(cert)
    srv.stop()
    srv.start()
    assert file_der(cert) == renewed
