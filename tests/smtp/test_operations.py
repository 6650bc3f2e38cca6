"""Operations: certificate reload (SIGHUP and file change) and per-IP connection limits."""

from __future__ import annotations

import hashlib
import signal
import smtplib
import socket
import subprocess
import time

from harness import (ALICE, HOST, REMOTE_SENDER, RawSMTP, client_tls_context, make_message,
                     metric_sum, parse_metrics, wait_until)


def served_certificate(port: int) -> bytes:
    """DER of the certificate the submissions listener presents."""
    ctx = client_tls_context()
    with socket.create_connection((HOST, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def make_certificate(directory, name: str):
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def pem_to_der(pem_path) -> bytes:
    out = subprocess.run(["openssl", "x509", "-in", str(pem_path), "-outform", "DER"],
                         check=True, capture_output=True, timeout=30)
    return out.stdout


def install(cert, key, srv):
    """Replace the served pair the way an operator (or certbot) would: write, then rename."""
    tls = srv.tls_dir()
    for src, dst in ((key, tls / "self-signed.key"), (cert, tls / "self-signed.crt")):
        tmp = dst.with_suffix(".new")
        tmp.write_bytes(src.read_bytes())
        tmp.replace(dst)


def test_sighup_reloads_certificate_and_bad_files_keep_the_old_one(server, tmp_path):
    first = served_certificate(server.ports.submissions)
    assert first == pem_to_der(server.tls_dir() / "self-signed.crt")

    cert, key = make_certificate(tmp_path, "reloaded.test")
    install(cert, key, server)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: served_certificate(server.ports.submissions) == pem_to_der(cert),
               timeout=10, what="new certificate served after SIGHUP")

    # A broken certificate must not take TLS down: the previous one stays in service.
    (server.tls_dir() / "self-signed.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "tls.certificate_reload_failed" in server.log(), timeout=10,
               what="reload failure logged")
    assert served_certificate(server.ports.submissions) == pem_to_der(cert)
    # STARTTLS on the MX listener uses the same certificate.
    with RawSMTP(server.ports.mx) as s:
        s.ehlo()
        s.starttls()
        assert hashlib.sha256(s.sock.getpeercert(binary_form=True)).digest() == \
            hashlib.sha256(pem_to_der(cert)).digest()


def test_certificate_file_change_is_picked_up_without_signal(server, tmp_path):
    cert, key = make_certificate(tmp_path, "rotated.test")
    # mtime granularity: make sure the new files are visibly newer.
    time.sleep(1.1)
    install(cert, key, server)
    # reload_check_secs defaults to 5.
    wait_until(lambda: served_certificate(server.ports.submissions) == pem_to_der(cert),
               timeout=20, what="rotated certificate served")


def test_per_ip_connection_limit(make_server):
    srv = make_server(smtp={"max_connections_per_ip": 3})
    held = [RawSMTP(srv.ports.mx) for _ in range(3)]
    try:
        for conn in held:
            assert conn.banner.code == 220
        refused = RawSMTP(srv.ports.mx)
        reply = refused.banner
        assert reply.code == 421 and reply.enhanced == "4.7.0", reply
        refused.close()
        held.pop().close()
        # The slot is released when a connection ends.
        def fresh_connection_greeted():
            with RawSMTP(srv.ports.mx) as again:
                return again.banner.code == 220
        wait_until(fresh_connection_greeted, timeout=10, what="slot released")
    finally:
        for conn in held:
            conn.close()
    metrics = parse_metrics(srv.metrics())
    assert metric_sum(metrics, "postern_smtp_connections_refused_total") >= 1


def test_tls_handshake_garbage_on_465_is_dropped_and_service_continues(server):
    with socket.create_connection((HOST, server.ports.submissions), timeout=10) as raw:
        raw.sendall(b"EHLO not-tls\r\n" * 50)
        raw.settimeout(10)
        try:
            data = raw.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert not data.startswith(b"220")
    ctx = client_tls_context()
    with socket.create_connection((HOST, server.ports.submissions), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(4).startswith(b"220")
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def listening_sockets(port: int) -> int:
    """LISTEN sockets bound to `port` on IPv4 (/proc/net/tcp state 0A)."""
    count = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            count += 1
    return count


def test_workers_each_listen_with_reuseport_and_commit_to_their_own_shard(make_server):
    """DESIGN 3.4: one worker per core, each with its own SO_REUSEPORT listener and its own
    store shard. Four workers: four listening sockets on each port, four shards; the kernel
    spreads 200 connections over the workers, so several shards receive mail, and every
    message is in exactly one shard."""
    srv = make_server(start=False)
    text = srv.cfg.read_text()
    assert "workers = 2" in text
    srv.cfg.write_text(text.replace("workers = 2", "workers = 4"))
    srv.start()
    for port in (srv.ports.mx, srv.ports.submission, srv.ports.imap, srv.ports.pop3):
        assert listening_sockets(port) == 4, port
    ids = [f"<worker-spread-{i}@client.test>" for i in range(200)]
    for msgid in ids:
        with smtplib.SMTP(HOST, srv.ports.mx, timeout=15) as s:
            assert s.sendmail(REMOTE_SENDER, [ALICE], make_message("spread", msgid=msgid)) == {}
    srv.stop()
    shards = sorted((srv.data_dir / "store").glob("shard-*"))
    assert [p.name for p in shards] == [f"shard-{i}" for i in range(4)]
    where = {msgid: [] for msgid in ids}
    for shard in shards:
        data = b"".join(seg.read_bytes() for seg in shard.glob("seg-*.log"))
        for msgid in ids:
            if msgid.encode() in data:
                where[msgid].append(shard.name)
    assert all(len(v) == 1 for v in where.values()), {k: v for k, v in where.items() if len(v) != 1}
    used = {v[0] for v in where.values()}
    assert len(used) >= 2, f"every connection went to one worker: {used}"
