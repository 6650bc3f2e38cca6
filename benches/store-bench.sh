# shellcheck shell=bash
# Sourced by the store benchmarks (start-time.sh, compaction.sh, lock-contention.sh,
# commit-latency.sh, ingest-compare.sh): one posternd configuration for all of them, and the waits they share.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_config FILE DATA_DIR MX_PORT [IMAP_PORT]: two workers and two store shards, an MX
# listener (and plain IMAP with STARTTLS when IMAP_PORT is given), metrics off. Extra lines for
# [store] come from $STORE_EXTRA.
bench_config() {
    local file=$1 data=$2 mx=$3 imap=${4:-}
    {
        printf '[server]\nhostname = "bench.test"\ndata_dir = "%s"\nworkers = 2\n\n' "$data"
        printf '[[listener]]\nkind = "mx"\nbind = ["127.0.0.1:%s"]\n\n' "$mx"
        [ -n "$imap" ] && printf '[[listener]]\nkind = "imap"\nbind = ["127.0.0.1:%s"]\n\n' "$imap"
        # The MX listener's early-talker wait would count as latency or start time, and all
        # load comes from 127.0.0.1: no per-address hourly message allowance.
        printf '[smtp]\ngreeting_delay_ms = 0\nmx_messages_per_ip_per_hour = 0\n\n'
        printf '[store]\nshards = 2\n%s\n\n' "${STORE_EXTRA:-}"
        printf '[sender_auth]\nverify = false\n\n'
        printf '[metrics]\nbind = ""\n\n[log]\nlevel = "warn"\nformat = "text"\n'
    } >"$file"
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (60 s at most).
wait_port() {
    for _ in $(seq 600); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1).close()" \
            2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after 60 s" >&2
    return 1
}

# dsync_latency FILE: p50 and p99 in ms (one line, space-separated) of 2000 O_DSYNC 4 KiB
# pwrites into FILE, the disk's own durable-write latency for the benchmarks to compare with.
dsync_latency() {
    python3 - "$1" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
buf, lat = b"\0" * 4096, []
for i in range(2000):
    t = time.perf_counter()
    os.pwrite(fd, buf, (i % 256) * 4096)
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
print(lat[1000], lat[1980])
PY
}
