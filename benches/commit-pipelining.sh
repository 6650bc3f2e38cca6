#!/usr/bin/env bash
# Commit pipelining (issue 13): SMTP ingest of two posternd builds side by side in one run,
# at 1, 10 and 50 clients, each on a fresh store on the same disk, plus that disk's 4 KiB
# O_DSYNC write latency. The builds alternate per round so that drift of this noisy machine
# falls on both alike.
#
#   benches/commit-pipelining.sh OLD_POSTERND NEW_POSTERND [DIR]   # DIR: /var/tmp
#
# Build each posternd with `cargo build --release -p posternd -p postern-smtp-load` and copy it
# away (target/release/postern and smtp-load of either build serve both). ROUNDS (3), SECS (10)
# and CLIENTS ("1 10 50") set the length.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 10 50"}
old=$1 new=$2 base=${3:-/var/tmp}
for b in "$old" "$new" "$BIN/postern" "$BIN/smtp-load"; do
    [ -x "$b" ] || { echo "missing $b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d "$base/postern-pipelining.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
. benches/store-bench.sh

# run BUILD_LABEL POSTERND CLIENTS: one fresh daemon, one load run; appends a JSON line.
run() {
    local label=$1 daemon=$2 clients=$3 dir port
    dir=$(mktemp -d "$work/run.XXXXXX")
    port=$(free_port)
    bench_config "$dir/postern.toml" "$dir/data" "$port"
    "$BIN/postern" --config "$dir/postern.toml" domain add bench.test >/dev/null
    "$BIN/postern" --config "$dir/postern.toml" user add rcpt@bench.test \
        --password 'Bench-Passw0rd-4kQ9zX' >/dev/null
    "$daemon" --config "$dir/postern.toml" >"$dir/posternd.log" 2>&1 &
    pid=$!
    wait_port "$port"
    "$BIN/smtp-load" --target "127.0.0.1:$port" --clients "$clients" --messages 1000000000 \
        --duration "$SECS" --size 10240 --warmup $((clients * 20)) --json |
        python3 -c 'import json,sys; r=json.load(sys.stdin); r["build"]=sys.argv[1]; r["clients"]=int(sys.argv[2]); print(json.dumps(r))' \
            "$label" "$clients" >>"$work/results.jsonl"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    rm -rf "$dir"
}

for round in $(seq "$ROUNDS"); do
    for clients in $CLIENTS; do
        if ((round % 2)); then
            run old "$old" "$clients"
            run new "$new" "$clients"
        else
            run new "$new" "$clients"
            run old "$old" "$clients"
        fi
    done
done

python3 - "$work/results.jsonl" "$work/dsync" <<'PY'
import json, os, statistics, sys, time
rows = [json.loads(line) for line in open(sys.argv[1])]
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
buf, lat = b"\0" * 4096, []
for i in range(2000):
    t = time.perf_counter()
    os.pwrite(fd, buf, (i % 256) * 4096)
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
dsync_p50, dsync_p99 = lat[1000], lat[1980]

def med(build, clients, key):
    got = [r for r in rows if r["build"] == build and r["clients"] == clients]
    if key == "msg_per_sec":
        return statistics.median(r["msg_per_s"] for r in got)
    return statistics.median(r["latency_ms"][key] for r in got)

print("| clients | build | msg/s | p50 ms | p99 ms | p99 / O_DSYNC p99 |")
print("|---|---|---|---|---|---|")
for clients in sorted({r["clients"] for r in rows}):
    for build in ("old", "new"):
        print(f"| {clients} | {build} | {med(build, clients, 'msg_per_sec'):.0f} | "
              f"{med(build, clients, 'p50'):.3f} | {med(build, clients, 'p99'):.3f} | "
              f"{med(build, clients, 'p99') / dsync_p99:.1f} |")
    ratio = med("new", clients, "msg_per_sec") / med("old", clients, "msg_per_sec")
    print(f"| {clients} | new / old | {ratio:.2f}x | | | |")
print(f"\nO_DSYNC 4 KiB pwrite on the same disk: p50 {dsync_p50:.3f} ms, p99 {dsync_p99:.3f} ms")
print(f"(medians of {len(rows) // 2 // len({r['clients'] for r in rows})} rounds per cell)")
PY
