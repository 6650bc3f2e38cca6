#!/usr/bin/env python3
"""Cost of inbound sender authentication: SMTP ingest msg/s of one posternd with
[sender_auth] verify = true against the same posternd with verify = false, alternated in one
run on one machine (DESIGN.md 5: a ratio side by side).

DNS is real: unbound serving a DNSSEC-signed zone on loopback (tests/smtp/dnstest.py), which
posternd validates. The load (smtp-load, 100 clients, 10 KiB, connections reused) sends
from load@client.test, whose zone publishes SPF (pass for 127.0.0.1) and DMARC p=none;
messages are not DKIM-signed, so the figure is SPF (HELO and MAIL FROM) + iprev + DMARC
lookups + parsing, mostly answered from the cache after the first message.

--lists adds a third server, verification on plus DNS block lists ([dnsbl]: two client
lists and two URI lists, zones of the same signed DNS that do not list the client): the
cost of asking the client lists at every connection (from the cache after the first) and of
extracting the URLs of every message (smtp-load's bodies carry none, so the URI lists are
not asked).

    benches/sender-auth.py [--bin-dir target/release] [--clients 100] [--size 10240]
                           [--duration 20] [--rounds 2] [--lists]

Needs unbound and ldnsutils (tests/run installs them) and built posternd, postern and
smtp-load in --bin-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "smtp")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lists", action="store_true",
                    help="also measure verification with DNS block lists configured")
    args = ap.parse_args()
    args.bin_dir = str(Path(args.bin_dir).resolve())
    os.environ["POSTERN_BIN_DIR"] = args.bin_dir
    import harness  # noqa: E402  (reads POSTERN_BIN_DIR)
    from dnstest import SignedDns, need  # noqa: E402

    load = Path(args.bin_dir) / "smtp-load"
    for binary in (harness.POSTERND, harness.POSTERN, load):
        if not binary.is_file():
            print(f"missing {binary}: cargo build --release -p posternd -p postern-smtp-load",
                  file=sys.stderr)
            return 2
    need("unbound")
    work = Path(tempfile.mkdtemp(prefix="postern-sender-auth.", dir="/var/tmp"))
    dns = SignedDns(work / "dns", [
        ("client", "A", "127.0.0.1"),
        ("client", "TXT", '"v=spf1 ip4:127.0.0.1 -all"'),
        ("_dmarc.client", "TXT", '"v=DMARC1; p=none"'),
    ]).start()
    servers = {}
    modes = ("on", "off", "lists") if args.lists else ("on", "off")
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    lists = """[dnsbl]
client = [{ zone = "dnsbl-a.test", weight = 3 }, { zone = "dnsbl-b.test", weight = 1 }]
uri = [{ zone = "uribl-a.test", weight = 3 }, { zone = "uribl-b.test", weight = 1 }]
"""
    try:
        for mode in modes:
            srv = harness.Server(work / mode, backend="auto", provision=False,
                                 sender_auth={"verify": mode != "off"}, dns=dns.dns_config(),
                                 extra=lists if mode == "lists" else "")
            srv.cli("domain", "add", "bench.test")
            srv.cli("user", "add", "rcpt@bench.test", "--password", "Bench-Passw0rd-4kQ9zX")
            servers[mode] = srv
        for _ in range(args.rounds):
            for mode in modes:
                srv = servers[mode]
                srv.start()
                try:
                    out = subprocess.run(
                        [str(load), "--target", f"127.0.0.1:{srv.ports.mx}",
                         "--clients", str(args.clients), "--messages", "100000000",
                         "--size", str(args.size), "--duration", str(args.duration),
                         "--warmup", str(args.clients), "--from", "load@client.test",
                         "--to", "rcpt@bench.test", "--helo", "client.test", "--json"],
                        capture_output=True, timeout=args.duration * 4 + 120)
                finally:
                    srv.stop()
                report = json.loads(out.stdout)
                if report.get("errors"):
                    print(f"{mode}: {report['errors']} errors: {report.get('error_texts')}",
                          file=sys.stderr)
                results[mode].append(report["msg_per_s"])
                print(f"verify {mode}: {report['msg_per_s']:.0f} msg/s "
                      f"(p99 {report['latency_ms']['p99']:.1f} ms)", flush=True)
    finally:
        for srv in servers.values():
            if srv.running:
                srv.stop()
        dns.stop()
    on, off = max(results["on"]), max(results["off"])
    print(f"\n| verify | msg/s (best of {args.rounds}) |\n|---|---|\n| off | {off:.0f} |\n"
          f"| on | {on:.0f} |", end="")
    if args.lists:
        print(f"\n| on + DNS block lists | {max(results['lists']):.0f} |", end="")
    print(f"\n\nratio on/off: {on / off:.3f}")
    if args.lists:
        print(f"ratio on+lists/off: {max(results['lists']) / off:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
