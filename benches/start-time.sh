#!/usr/bin/env bash
# Start time of posternd against store size: from exec to the SMTP banner (220) on the MX
# port, for stores of 10 KiB messages (0.1, 1 and 10 GB by default: about 10k, 100k and 1M
# messages), three ways each:
#   checkpoint  after a clean stop (the index checkpoint covers the whole log),
#   behind      the checkpoint plus 64 MiB of log written after it (a kill -9 later),
#   full        no checkpoint: the whole log is read, as every start did before checkpoints.
# Prints a markdown table of the median of RUNS starts (page cache warm: the data was just
# written or read; drop caches yourself for cold figures).
#
#   benches/start-time.sh                       # SIZES="0.1 1 10" RUNS=5
#   SIZES="0.1 1" RUNS=3 benches/start-time.sh
#
# Needs release builds of posternd and the fill tool:
#   cargo build --release -p posternd && cargo build --release -p postern-store --example fill_store
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"0.1 1 10"}
RUNS=${RUNS:-5}
MSG=${MSG:-10240}
BIN=${BIN:-target/release}
POSTERND=$BIN/posternd
FILL=$BIN/examples/fill_store
for b in "$POSTERND" "$FILL"; do
    [ -x "$b" ] || { echo "missing $b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/postern-start.XXXXXX)
trap 'rm -rf "$work"' EXIT

. benches/store-bench.sh
port=$(free_port)
bench_config "$work/postern.toml" "$work/data" "$port"

# Seconds from exec to the banner, median of RUNS; every start stopped cleanly unless $2 says
# "kill" (so that the state measured is the same each time).
time_start() {
    python3 - "$POSTERND" "$work/postern.toml" "$port" "$RUNS" "$1" <<'PY'
import signal, socket, statistics, subprocess, sys, time
posternd, cfg, port, runs, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
times = []
for _ in range(runs):
    t0 = time.monotonic()
    p = subprocess.Popen([posternd, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if p.poll() is not None:
            sys.exit(f"posternd exited with {p.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(64).startswith(b"220"):
                    break
        except OSError:
            time.sleep(0.002)
    times.append(time.monotonic() - t0)
    p.send_signal(signal.SIGKILL if stop == "kill" else signal.SIGTERM)
    p.wait(timeout=600)
print(f"{statistics.median(times) * 1000:.0f}")
PY
}

echo "| store | messages | checkpoint | behind (64 MiB after it) | full replay (no checkpoint) | checkpoint file |"
echo "|---|---|---|---|---|---|"
for gb in $SIZES; do
    rm -rf "$work/data"
    mkdir -p "$work/data"
    n=$(python3 -c "print(int($gb * 1e9 / $MSG))")
    "$FILL" "$work/data/store" "$n" "$MSG" 2 >/dev/null
    ckpt_mb=$(python3 -c "import os; print(round(os.path.getsize('$work/data/store/index.ckpt') / 2**20, 1))")
    with_ckpt=$(time_start stop)
    # 64 MiB more log that the checkpoint does not cover; starts are killed so it stays so.
    FILL_EXIT_WITHOUT_STOP=1 "$FILL" "$work/data/store" $((64 * 1048576 / MSG)) "$MSG" 2 >/dev/null
    behind=$(time_start kill)
    rm -f "$work/data/store/index.ckpt"
    full=$(time_start kill)
    echo "| $gb GB | $n | ${with_ckpt} ms | ${behind} ms | ${full} ms | ${ckpt_mb} MiB |"
done
