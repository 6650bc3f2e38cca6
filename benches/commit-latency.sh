#!/usr/bin/env bash
# SMTP latency at one client against the disk's own durable-write latency, same disk, same
# run (issue 13's commit-latency target: SMTP p99 at 1 client within 2x a 4 KiB O_DSYNC
# write). smtp-load sends 10 KiB messages for SECS seconds over one reused connection to a
# fresh posternd whose store is under DIR; then 2000 O_DSYNC 4 KiB pwrites in a file there.
#
#   benches/commit-latency.sh [DIR]          # DIR defaults to /var/tmp
#
# Needs release builds: cargo build --release -p posternd -p postern-smtp-load
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
SECS=${SECS:-15}
base=${1:-/var/tmp}
for b in posternd postern smtp-load; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d "$base/postern-latency.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
. benches/store-bench.sh
port=$(free_port)
bench_config "$work/postern.toml" "$work/data" "$port"
cfg=(--config "$work/postern.toml")
"$BIN/postern" "${cfg[@]}" domain add bench.test >/dev/null
"$BIN/postern" "${cfg[@]}" user add rcpt@bench.test --password 'Bench-Passw0rd-4kQ9zX' >/dev/null
"$BIN/posternd" "${cfg[@]}" >"$work/posternd.log" 2>&1 &
pid=$!
wait_port "$port"
smtp=$("$BIN/smtp-load" --target "127.0.0.1:$port" --clients 1 --messages 1000000000 \
    --duration "$SECS" --size 10240 --warmup 50 --json)
read -r dsync_p50 dsync_p99 < <(dsync_latency "$work/dsync")
python3 - "$smtp" "$dsync_p50" "$dsync_p99" <<'PY'
import json, sys
smtp = json.loads(sys.argv[1])["latency_ms"]
dsync = {"p50": float(sys.argv[2]), "p99": float(sys.argv[3])}
print("| | p50 ms | p99 ms |")
print("|---|---|---|")
print(f"| SMTP, 1 client, 10 KiB | {smtp['p50']:.3f} | {smtp['p99']:.3f} |")
print(f"| O_DSYNC 4 KiB pwrite | {dsync['p50']:.3f} | {dsync['p99']:.3f} |")
print(f"| ratio | {smtp['p50'] / dsync['p50']:.1f} | {smtp['p99'] / dsync['p99']:.1f} |")
PY
