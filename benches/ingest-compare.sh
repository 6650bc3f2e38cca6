#!/usr/bin/env bash
# SMTP ingest of two posternd set-ups side by side in one run (two builds, or one build with
# two configurations), at 1, 10 and 50 clients, each on a fresh store on the same disk, plus
# that disk's 4 KiB O_DSYNC write latency. The sides alternate per round so that drift of this
# noisy machine falls on both alike.
#
#   benches/ingest-compare.sh OLD_POSTERND NEW_POSTERND [DIR]   # DIR: /var/tmp
#
# Commit pipelining (issue 13): two builds, each made with `cargo build --release -p posternd
# -p postern-smtp-load` and copied away (target/release/postern and smtp-load of either build
# serve both). The cost of filtering (issue 11): one build twice, with
# NEW_TOML=$'[filter]\nenabled = false' (OLD_TOML and NEW_TOML are configuration lines added to
# each side's file; OLD_LABEL and NEW_LABEL name the sides). ROUNDS (3), SECS (10) and
# CLIENTS ("1 10 50") set the length.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 10 50"}
old=$1 new=$2 base=${3:-/var/tmp}
OLD_LABEL=${OLD_LABEL:-old} NEW_LABEL=${NEW_LABEL:-new}
for b in "$old" "$new" "$BIN/postern" "$BIN/smtp-load"; do
    [ -x "$b" ] || { echo "missing $b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d "$base/postern-ingest.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
. benches/store-bench.sh

# run SIDE POSTERND CLIENTS EXTRA_TOML: one fresh daemon, one load run; appends a JSON line.
run() {
    local label=$1 daemon=$2 clients=$3 extra=$4 dir port
    dir=$(mktemp -d "$work/run.XXXXXX")
    port=$(free_port)
    bench_config "$dir/postern.toml" "$dir/data" "$port"
    printf '\n%s\n' "$extra" >>"$dir/postern.toml"
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
            run old "$old" "$clients" "${OLD_TOML:-}"
            run new "$new" "$clients" "${NEW_TOML:-}"
        else
            run new "$new" "$clients" "${NEW_TOML:-}"
            run old "$old" "$clients" "${OLD_TOML:-}"
        fi
    done
done

read -r dsync_p50 dsync_p99 < <(dsync_latency "$work/dsync")
python3 - "$work/results.jsonl" "$dsync_p50" "$dsync_p99" "$OLD_LABEL" "$NEW_LABEL" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
dsync_p50, dsync_p99 = float(sys.argv[2]), float(sys.argv[3])
labels = {"old": sys.argv[4], "new": sys.argv[5]}

def med(build, clients, key):
    got = [r for r in rows if r["build"] == build and r["clients"] == clients]
    if key == "msg_per_sec":
        return statistics.median(r["msg_per_s"] for r in got)
    return statistics.median(r["latency_ms"][key] for r in got)

print("| clients | build | msg/s | p50 ms | p99 ms | p99 / O_DSYNC p99 |")
print("|---|---|---|---|---|---|")
for clients in sorted({r["clients"] for r in rows}):
    for build in ("old", "new"):
        print(f"| {clients} | {labels[build]} | {med(build, clients, 'msg_per_sec'):.0f} | "
              f"{med(build, clients, 'p50'):.3f} | {med(build, clients, 'p99'):.3f} | "
              f"{med(build, clients, 'p99') / dsync_p99:.1f} |")
    ratio = med("new", clients, "msg_per_sec") / med("old", clients, "msg_per_sec")
    print(f"| {clients} | {labels['new']} / {labels['old']} | {ratio:.2f}x | | | |")
print(f"\nO_DSYNC 4 KiB pwrite on the same disk: p50 {dsync_p50:.3f} ms, p99 {dsync_p99:.3f} ms")
print(f"(medians of {len(rows) // 2 // len({r['clients'] for r in rows})} rounds per cell)")
PY
