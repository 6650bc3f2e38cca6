#!/usr/bin/env bash
# Does one user's IMAP work stall another user's mail? SMTP ingest to rcpt@bench.test is
# measured alone and while `imap-load mix` (SEARCH and FETCH FLAGS over a 100k-message
# mailbox of bench@bench.test) runs, for each posternd binary given, in one run on one
# machine: before and after a change to the store's locking, side by side.
#
#   benches/lock-contention.sh OLD/posternd NEW/posternd
#
# Needs release builds of postern, smtp-load, imap-load and the fill tool in BIN
# (default target/release):
#   cargo build --release -p posternd -p postern-smtp-load -p imap-load
#   cargo build --release -p postern-store --example fill_store
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
MESSAGES=${MESSAGES:-100000}
SECS=${SECS:-15}
CLIENTS=${CLIENTS:-10}
IMAP_CLIENTS=${IMAP_CLIENTS:-4}
WEIGHTS=${WEIGHTS:-search_subject=40,fetch_flags=40,store=20}
[ $# -ge 1 ] || { echo "usage: $0 POSTERND [POSTERND...]" >&2; exit 2; }
for b in postern smtp-load imap-load examples/fill_store; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/postern-locks.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
. benches/store-bench.sh
smtp=$(free_port)
imap=$(free_port)
bench_config "$work/postern.toml" "$work/data" "$smtp" "$imap"
cfg=(--config "$work/postern.toml")
mkdir -p "$work/data"
"$BIN/examples/fill_store" "$work/data/store" "$MESSAGES" 10240 2 >&2
"$BIN/postern" "${cfg[@]}" domain add bench.test >/dev/null
for u in bench rcpt; do
    "$BIN/postern" "${cfg[@]}" user add "$u@bench.test" --password 'Bench-Passw0rd-4kQ9zX' >/dev/null
done
cp -a "$work/data" "$work/data.orig"

smtp_load() {
    "$BIN/smtp-load" --target "127.0.0.1:$smtp" --clients "$CLIENTS" --messages 1000000000 \
        --duration "$SECS" --size 10240 --warmup 200 --json
}

echo "| posternd | ingest | msg/s | p50 ms | p99 ms | IMAP ops/s | IMAP p99 ms |"
echo "|---|---|---|---|---|---|---|"
for posternd in "$@"; do
    rm -rf "$work/data" && cp -a "$work/data.orig" "$work/data"
    "$posternd" "${cfg[@]}" >"$work/posternd.log" 2>&1 &
    pid=$!
    wait_port "$smtp"
    alone=$(smtp_load)
    "$BIN/imap-load" mix --target "127.0.0.1:$imap" --tls starttls --user bench@bench.test \
        --password 'Bench-Passw0rd-4kQ9zX' --clients "$IMAP_CLIENTS" --warmup 3 \
        --duration $((SECS + 4)) --weights "$WEIGHTS" --json >"$work/mix.json" &
    mix_pid=$!
    sleep 4
    with_mix=$(smtp_load)
    wait "$mix_pid"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    python3 - "$posternd" "$alone" "$with_mix" "$work/mix.json" <<'PY'
import json, sys
name, alone, mix = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
imap = json.load(open(sys.argv[4]))
total = imap.get("total", imap)
ops = total.get("ops_per_s", 0)
p99 = total.get("latency_ms", {}).get("p99", total.get("p99_ms", 0))
for label, r in (("alone", alone), ("with IMAP mix", mix)):
    l = r["latency_ms"]
    extra = f"{ops:.0f} | {p99:.1f}" if label != "alone" else "- | -"
    print(f"| {name} | {label} | {r['msg_per_s']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {extra} |")
PY
done
