#!/usr/bin/env bash
# Compaction: how fast it gives space back, and what it costs SMTP ingest and IMAP latency
# while it runs. A store of GB gigabytes of 10 KiB messages with DEAD percent of them expunged
# (in INBOX of bench@bench.test) is served by posternd. Each phase runs smtp-load (CLIENTS
# clients, reused connections, to rcpt@bench.test) and, at the same time, `imap-load mix`
# (IMAP_CLIENTS clients; SEARCH, FETCH FLAGS and STORE on bench's INBOX, which compaction
# rewrites) for SECS seconds: alone, then while `postern store compact` runs (throttled by
# [store] compact_rate = RATE bytes/s), then alone again, in the same run on the same
# machine. Prints a markdown table.
#
#   benches/compaction.sh      # GB=2 DEAD=70 CLIENTS=10 IMAP_CLIENTS=4 SECS=20 RATE=33554432
#
# Needs release builds:
#   cargo build --release -p posternd -p postern-smtp-load -p imap-load
#   cargo build --release -p postern-store --example fill_store
set -euo pipefail
cd "$(dirname "$0")/.."
GB=${GB:-2}
DEAD=${DEAD:-70}
CLIENTS=${CLIENTS:-10}
IMAP_CLIENTS=${IMAP_CLIENTS:-4}
WEIGHTS=${WEIGHTS:-search_subject=40,fetch_flags=40,store=20}
SECS=${SECS:-20}
RATE=${RATE:-33554432}
MSG=10240
BIN=${BIN:-target/release}
for b in posternd postern smtp-load imap-load examples/fill_store; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/postern-compaction.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

. benches/store-bench.sh
port=$(free_port)
imap=$(free_port)
STORE_EXTRA="compact_interval_secs = 0
compact_rate = $RATE" \
    bench_config "$work/postern.toml" "$work/data" "$port" "$imap"
cfg=(--config "$work/postern.toml")
mkdir -p "$work/data"
n=$(python3 -c "print(int($GB * 1e9 / $MSG))")
"$BIN/examples/fill_store" "$work/data/store" "$n" "$MSG" 2 "$DEAD" >&2
"$BIN/postern" "${cfg[@]}" domain add bench.test >/dev/null
for u in bench rcpt; do
    "$BIN/postern" "${cfg[@]}" user add "$u@bench.test" --password 'Bench-Pw-7c1e92aa' >/dev/null
done
"$BIN/posternd" "${cfg[@]}" >"$work/posternd.log" 2>&1 &
pid=$!
wait_port "$port"
stats_before=$("$BIN/postern" "${cfg[@]}" store stats | tail -1)

# load NAME: SMTP ingest and the IMAP mix together for SECS seconds; NAME.smtp, NAME.imap.
load() {
    "$BIN/imap-load" mix --target "127.0.0.1:$imap" --tls starttls --user bench@bench.test \
        --password 'Bench-Pw-7c1e92aa' --clients "$IMAP_CLIENTS" --warmup 3 \
        --duration "$SECS" --weights "$WEIGHTS" --json >"$work/$1.imap" &
    local mix_pid=$!
    "$BIN/smtp-load" --target "127.0.0.1:$port" --clients "$CLIENTS" --messages 1000000000 \
        --duration "$SECS" --size "$MSG" --warmup 200 --json >"$work/$1.smtp"
    wait "$mix_pid"
}
load alone
"$BIN/postern" "${cfg[@]}" store compact >"$work/compact.out" &
compact_pid=$!
sleep 1
load during
compact_running=$(kill -0 "$compact_pid" 2>/dev/null && echo yes || echo no)
wait "$compact_pid"
stats_after=$("$BIN/postern" "${cfg[@]}" store stats | tail -1)
# Alone again: the spread between the two runs without compaction is the noise.
load again

python3 - "$work" "$(cat "$work/compact.out")" "$stats_before" "$stats_after" "$compact_running" <<'PY'
import json, re, sys
work, compact, before, after, running = sys.argv[1:6]
def read(name):
    smtp = json.load(open(f"{work}/{name}.smtp"))
    imap = json.load(open(f"{work}/{name}.imap"))
    return smtp, imap.get("total", imap)
alone, alone_imap = read("alone")
during, during_imap = read("during")
again, again_imap = read("again")
m = re.search(r"([\d.]+) MiB given back, ([\d.]+) MiB copied, ([\d.]+) s", compact)
back, copied, secs = float(m[1]), float(m[2]), float(m[3])
print("| | msg/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
for name, r in (("ingest alone", alone), ("ingest during compaction", during),
                ("ingest alone again, after it", again)):
    l = r["latency_ms"]
    print(f"| {name} | {r['msg_per_s']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} |")
base = {k: (alone[k] + again[k]) / 2 for k in ("msg_per_s",)}
lat = {q: (alone["latency_ms"][q] + again["latency_ms"][q]) / 2 for q in ("p50", "p99")}
print(f"| during / mean of the two alone | {during['msg_per_s'] / base['msg_per_s']:.2f} | "
      f"{during['latency_ms']['p50'] / lat['p50']:.2f} | "
      f"{during['latency_ms']['p99'] / lat['p99']:.2f} |")
print()
print(f"compaction: {back:.0f} MiB given back in {secs:.1f} s ({back / secs:.0f} MiB/s reclaimed, "
      f"{copied:.0f} MiB copied)")
print()
print("| IMAP mix | ops/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
for name, r in (("alone", alone_imap), ("during compaction", during_imap),
                ("alone again, after it", again_imap)):
    print(f"| {name} | {r['ops_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
def ratio(key):
    return during_imap[key] / ((alone_imap[key] + again_imap[key]) / 2)
print(f"| during / mean of the two alone | {ratio('ops_per_s'):.2f} | {ratio('p50_ms'):.2f} | "
      f"{ratio('p99_ms'):.2f} |")
print()
print(f"compaction still running when the 'during' phase ended: {running}")
print(f"stats before: {before.split()[1:]}")
print(f"stats after:  {after.split()[1:]}")
PY
