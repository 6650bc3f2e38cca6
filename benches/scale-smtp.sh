#!/usr/bin/env bash
# scale-smtp.sh: posternd's durable SMTP ingest at 1, 2, 4, 8 ... workers on one many-core
# machine (DESIGN.md section 5, "multicore"). posternd is pinned to the first W cores, the
# load generator to the last LOAD_CORES cores, so the two never share a core.
#
#   benches/scale-smtp.sh [--bin-dir DIR] [--workers "1 2 4 8"] [--load-cores N]
#                         [--clients N] [--seconds S] [--size BYTES] [--backend B]
#
# Needs posternd, postern and smtp-load in --bin-dir (default target/release); built
# statically (RUSTFLAGS="-C target-feature=+crt-static") they run on a machine without Rust.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$REPO/target/release"
WORKERS="1 2 4 8"
LOAD_CORES=8
CLIENTS=200
SECONDS_PER_CELL=10
SIZE=10240
BACKEND=auto
PORT=24525
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) BIN_DIR="$2"; shift ;;
    --workers) WORKERS="$2"; shift ;;
    --load-cores) LOAD_CORES="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --seconds) SECONDS_PER_CELL="$2"; shift ;;
    --size) SIZE="$2"; shift ;;
    --backend) BACKEND="$2"; shift ;;
    *) echo "scale-smtp.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

CORES=$(nproc)
LOAD_FIRST=$((CORES - LOAD_CORES))
[ "$LOAD_FIRST" -ge 1 ] || { echo "scale-smtp.sh: need more than $LOAD_CORES cores" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/postern-scale.XXXXXX)
RAW="${RAW:-$REPO/bench-results/scale-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
mkdir -p "$(dirname "$RAW")"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "| workers | msg/s | speed-up | efficiency | p50 ms | p99 ms | errors |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
BASE=""
for W in $WORKERS; do
    if [ "$W" -gt "$LOAD_FIRST" ]; then
        echo "scale-smtp.sh: skipping $W workers: only $LOAD_FIRST cores left beside the load" >&2
        continue
    fi
    DIR="$WORK/w$W"
    mkdir -p "$DIR"
    cat >"$DIR/postern.toml" <<EOF
[server]
hostname = "bench.test"
data_dir = "$DIR/data"
workers = $W

[[listener]]
kind = "mx"
bind = ["127.0.0.1:$PORT"]

[smtp]
max_connections_per_ip = 10000
max_commands = 1000000
# Greet at once, as Postfix's smtpd (no postscreen) does in the comparison.
greeting_delay_ms = 0
# Load from one address: no hourly message allowance (DESIGN.md 2 rate limits).
mx_messages_per_ip_per_hour = 0

[store]
backend = "$BACKEND"
shards = $W

[sender_auth]
# The ingest benchmarks measure the store and protocol path; sender authentication asks DNS
# (benches/sender-auth.py measures its cost).
verify = false

[metrics]
bind = ""
EOF
    "$BIN_DIR/postern" --config "$DIR/postern.toml" domain add bench.test >/dev/null
    "$BIN_DIR/postern" --config "$DIR/postern.toml" user add rcpt@bench.test --password Bench-Passw0rd-4kQ9zX >/dev/null
    taskset -c "0-$((W - 1))" "$BIN_DIR/posternd" --config "$DIR/postern.toml" 2>"$DIR/posternd.log" &
    PID=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
        sleep 0.1
    done
    JSON=$(taskset -c "$LOAD_FIRST-$((CORES - 1))" "$BIN_DIR/smtp-load" --target "127.0.0.1:$PORT" \
        --clients "$CLIENTS" --messages 100000000 --duration "$SECONDS_PER_CELL" --size "$SIZE" \
        --threads "$LOAD_CORES" --from load@remote.test --to rcpt@bench.test --warmup 200 --json)
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    echo "$JSON" >>"$RAW"
    command -v python3 >/dev/null || { echo "| $W | (raw JSON in $RAW) |"; continue; }
    python3 - "$W" "$JSON" "${BASE:-}" <<'EOF'
import json, sys
w, r, base = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
rate = r["msg_per_s"]
base = float(base) if base else rate
speedup = rate / base
print(f"| {w} | {rate:.0f} | {speedup:.2f}x | {speedup / w * 100:.0f}% | "
      f"{r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | {r['errors']} |")
EOF
    if [ -z "$BASE" ]; then
        BASE=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['msg_per_s'])" "$JSON")
    fi
    rm -rf "$DIR"
done
