#!/usr/bin/env bash
# compare-imap.sh: IMAP of posternd vs Dovecot side by side on one host (DESIGN.md section 5:
# "FETCH/SEARCH/SELECT/APPEND mix on 100k-message mailboxes vs Dovecot", "10k IMAP IDLE
# connections: <= 1/10 of Dovecot's memory per connection"). Run as root on Debian 12. Safe to
# re-run: every run uses a fresh temporary directory; leftovers of a killed run are stopped first.
#
#   benches/compare-imap.sh [--quick] [options]      (see --help)
#
# Writes raw JSON lines and the markdown table to bench-results/ at the repository root.
set -euo pipefail
export LC_ALL=C

usage() {
    cat <<'EOF'
Usage: benches/compare-imap.sh [options]

  --quick             smoke run: 2,000 messages, 5 s mix, idle 200 connections
  --messages N        messages in the large mailbox (default 100000)
  --clients C         concurrent clients of the mix (default 10)
  --seconds S         measured seconds of the mix (default 30; --quick: 5)
  --warmup S          seconds of the mix before measuring (default 10; --quick: 2)
  --selects N         SELECTs of each kind in the select test (default 50; --quick: 10)
  --weights W         operation weights of the mix, "op=w,..." (default: imap-load's)
  --idle "K1 K2"      idle connection counts (default "1000 10000"; --quick: "200")
  --tls on|off        on (default): implicit TLS (imaps) for every connection to both servers;
                      off: plaintext IMAP for both
  --populate MODE     maildir (default): the same generated Maildir goes into Dovecot's mail
                      directory and through `postern mailbox import` (posternd stopped);
                      append: IMAP APPEND into both (slow: one durable write per message)
  --appends N         also APPEND N messages into an empty mailbox of each server and report
                      the rate (default 2000; --quick: 300; 0: skip)
  --load-clients L    APPEND connections (default 1: UID order = message order)
  --pipeline W        APPENDs in flight per connection (default 16, with LITERAL+)
  --servers LIST      "posternd dovecot" (default) or one of them
  --port-base P       posternd imap P, imaps P+1; Dovecot imap P+2, imaps P+3 (default 24143)
  --same-hash         Dovecot verifies posternd's own Argon2id hash of the password ({ARGON2ID},
                      the same parameters) instead of {PLAIN}: the same LOGIN work on both
  --bin-dir DIR       use posternd, postern and imap-load from DIR instead of building them
  --keep              keep the temporary directory (configs, logs, mailboxes)
  -h, --help          this text
EOF
}

QUICK=0
MESSAGES=""
CLIENTS=10
SECS=""
WARMUP=""
SELECTS=""
WEIGHTS=""
IDLE=""
TLS=on
LOAD_CLIENTS=1
PIPELINE=16
POPULATE=maildir
APPENDS=""
SERVERS="posternd dovecot"
PORT_BASE=24143
KEEP=0
BIN_DIR=""
SAME_HASH=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --messages) MESSAGES="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --selects) SELECTS="$2"; shift ;;
    --weights) WEIGHTS="$2"; shift ;;
    --idle) IDLE="$2"; shift ;;
    --tls) TLS="$2"; shift ;;
    --load-clients) LOAD_CLIENTS="$2"; shift ;;
    --populate) POPULATE="$2"; shift ;;
    --appends) APPENDS="$2"; shift ;;
    --pipeline) PIPELINE="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --keep) KEEP=1 ;;
    --bin-dir) BIN_DIR="$2"; shift ;;
    --same-hash) SAME_HASH=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare-imap.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    : "${MESSAGES:=2000}" "${SECS:=5}" "${WARMUP:=2}" "${SELECTS:=10}" "${IDLE:=200}" "${APPENDS:=300}"
else
    : "${MESSAGES:=100000}" "${SECS:=30}" "${WARMUP:=10}" "${SELECTS:=50}" "${IDLE:=1000 10000}" "${APPENDS:=2000}"
fi
case "$TLS" in on | off) ;; *) echo "compare-imap.sh: --tls must be on or off" >&2; exit 2 ;; esac
case "$POPULATE" in maildir | append) ;; *) echo "compare-imap.sh: --populate must be maildir or append" >&2; exit 2 ;; esac
for s in $SERVERS; do
    case "$s" in posternd | dovecot) ;; *) echo "compare-imap.sh: unknown server $s" >&2; exit 2 ;; esac
done
has_server() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

log() { printf '%s\n' "compare-imap: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (Dovecot's private instance starts as root and drops privileges)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
RESULTS_DIR="$REPO/bench-results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$RESULTS_DIR/imap-$STAMP.jsonl"
TABLE="$RESULTS_DIR/imap-$STAMP.md"

PORT_PD=$PORT_BASE
PORT_PD_TLS=$((PORT_BASE + 1))
PORT_DV=$((PORT_BASE + 2))
PORT_DV_TLS=$((PORT_BASE + 3))
USER_NAME=bench@bench.test
PASSWORD=Bench-Passw0rd-4kQ9zX

# ---------------------------------------------------------------- dependencies
need_pkgs=()
command -v dovecot >/dev/null 2>&1 || need_pkgs+=(dovecot-imapd)
[ -x /usr/lib/dovecot/imap ] || need_pkgs+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
    # The package's own system instance is not used (and not needed): stop it if it started.
    if [ -f /run/dovecot/master.pid ]; then
        kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
    fi
fi

# ---------------------------------------------------------------- leftovers of killed runs
# Only what an earlier run of this script started, found through the pid files it wrote.
for old in /var/tmp/postern-imap-bench.*; do
    [ -d "$old" ] || continue
    for pidfile in "$old"/dovecot/run/master.pid "$old"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] \
            && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE 'dovecot|posternd|imap-load'; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    sleep 1
    rm -rf "$old"
done

port_busy() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
for p in $PORT_PD $PORT_PD_TLS $PORT_DV $PORT_DV_TLS; do
    port_busy "$p" && die "port $p is in use; pick others with --port-base"
done

# ---------------------------------------------------------------- temp dir and cleanup
# /var/tmp: the same filesystem for Dovecot's Maildir and posternd's data_dir.
WORK="$(mktemp -d /var/tmp/postern-imap-bench.XXXXXX)"
chmod 755 "$WORK"
DV="$WORK/dovecot"
PD="$WORK/postern"
cleanup() {
    set +e
    for pidfile in "$WORK"/idle.pid "$WORK"/posternd.pid "$DV"/run/master.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # name port pid-or-empty logfile
    local i
    for i in $(seq 300); do
        if port_busy "$2"; then return 0; fi
        if [ -n "$3" ] && ! kill -0 "$3" 2>/dev/null; then break; fi
        sleep 0.1
    done
    log "$1 did not start listening on port $2"
    [ -f "$4" ] && tail -n 30 "$4" >&2
    exit 1
}

# ---------------------------------------------------------------- build
if [ -n "$BIN_DIR" ]; then
    BIN_DIR="$(cd "$BIN_DIR" && pwd)"
    need_bins="imap-load"
    has_server posternd && need_bins="$need_bins posternd postern"
    for b in $need_bins; do
        [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found"
    done
    LOAD="$BIN_DIR/imap-load"
    POSTERND="$BIN_DIR/posternd"
    POSTERN="$BIN_DIR/postern"
else
    log "building imap-load (release)"
    (cd "$REPO" && cargo build -q --release -p imap-load)
    LOAD="$TARGET_DIR/release/imap-load"
    POSTERND="$TARGET_DIR/release/posternd"
    POSTERN="$TARGET_DIR/release/postern"
    if has_server posternd; then
        log "building posternd and postern (release)"
        (cd "$REPO" && cargo build -q --release -p posternd --bin posternd --bin postern)
    fi
fi

# ---------------------------------------------------------------- TLS certificate
# One EC P-256 certificate for both servers, so both do the same handshake work.
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=imap.bench.test" -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" \
    >/dev/null 2>&1 || die "openssl could not make a certificate"
chmod 644 "$WORK/tls/cert.pem"
chmod 600 "$WORK/tls/key.pem"

# Both servers hold up to max(idle)+some connections from one address.
MAX_IDLE=0
for k in $IDLE; do [ "$k" -gt "$MAX_IDLE" ] && MAX_IDLE=$k; done
CONN_LIMIT=$((MAX_IDLE + CLIENTS + 100))
# File descriptors: servers and load generator inherit this (root may raise the hard limit).
ulimit -n $((2 * CONN_LIMIT + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- Dovecot
# A private instance (own base_dir, config and log) of Debian's Dovecot. Mail: Maildir, the
# format the issue names, with Dovecot's durable defaults (mail_fsync = optimized: a saved
# message is fsynced before APPEND is answered; index files are written without fsync).
# imap-login runs in Dovecot's documented "high-performance" mode (service_count = 0, one
# process serving many connections, TLS included), the setting for many connections; each
# session has its own imap process (Dovecot's only model). Limits are raised so that
# MAX_IDLE connections of one user from one address are allowed, nothing else is tuned.
if has_server dovecot; then
    mkdir -p "$DV/run" "$DV/state" "$DV/home"
    chown nobody:nogroup "$DV/home"
    printf '%s:{PLAIN}%s:65534:65534::%s/home/bench::\n' "$USER_NAME" "$PASSWORD" "$DV" >"$DV/users"
    chmod 644 "$DV/users"
    if [ "$TLS" = on ]; then SSL=yes; else SSL=no; fi
    cat >"$DV/dovecot.conf" <<EOF
instance_name = postern-imap-bench
base_dir = $DV/run
state_dir = $DV/state
log_path = $DV/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = $SSL
ssl_cert = <$WORK/tls/cert.pem
ssl_key = <$WORK/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DV/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DV/users
}
last_valid_uid = 0
first_valid_uid = 65534
mail_location = maildir:~/Maildir
mail_fsync = optimized
default_process_limit = $((CONN_LIMIT + 100))
default_client_limit = $((CONN_LIMIT + 100))
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT_DV
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PORT_DV_TLS
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  vsz_limit = 2G
}
service imap {
  process_limit = $CONN_LIMIT
}
service anvil {
  client_limit = $((2 * CONN_LIMIT + 100))
}
service auth {
  client_limit = $((2 * CONN_LIMIT + 100))
}
protocol imap {
  mail_max_userip_connections = $CONN_LIMIT
}
EOF
    [ "$TLS" = on ] || sed -i '/inet_listener imaps {/,/^  }/d' "$DV/dovecot.conf"
    if [ "$POPULATE" = maildir ]; then
        log "dovecot: writing $MESSAGES messages to its Maildir"
        out="$("$LOAD" maildir --dir "$DV/home/bench/Maildir" --count "$MESSAGES" --to "$USER_NAME")" \
            || die "writing Dovecot's Maildir failed"
        chown -R nobody:nogroup "$DV/home/bench"
        sync
        POPULATE_DV="$out"
    fi
    log "starting Dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$PORT_DV/$PORT_DV_TLS ($DV)"
    dovecot -c "$DV/dovecot.conf" || { tail -n 20 "$DV/dovecot.log" >&2; die "Dovecot did not start"; }
    wait_port Dovecot "$PORT_DV" "" "$DV/dovecot.log"
fi

# ---------------------------------------------------------------- posternd
if has_server posternd; then
    mkdir -p "$PD"
    cat >"$PD/postern.toml" <<EOF
[server]
hostname = "postern.bench.test"
data_dir = "$PD/data"

[tls]
certificate = "$WORK/tls/cert.pem"
private_key = "$WORK/tls/key.pem"

[[listener]]
kind = "imap"
bind = ["127.0.0.1:$PORT_PD"]

[[listener]]
kind = "imaps"
bind = ["127.0.0.1:$PORT_PD_TLS"]

[imap]
max_connections = $CONN_LIMIT
max_connections_per_ip = $CONN_LIMIT

[sender_auth]
# The ingest benchmarks measure the store and protocol path; sender authentication asks DNS
# (benches/sender-auth.py measures its cost).
verify = false

[metrics]
bind = ""

[log]
level = "warn"
EOF
    # Accounts and the import work on the data directory while posternd is stopped.
    "$POSTERN" --config "$PD/postern.toml" domain add bench.test >/dev/null \
        || die "postern domain add bench.test failed"
    "$POSTERN" --config "$PD/postern.toml" user add "$USER_NAME" --password "$PASSWORD" \
        >/dev/null || die "postern user add $USER_NAME failed"
    if [ "$POPULATE" = maildir ]; then
        log "posternd: writing $MESSAGES messages to a Maildir and importing it (postern mailbox import)"
        "$LOAD" maildir --dir "$WORK/import" --count "$MESSAGES" --to "$USER_NAME" >/dev/null \
            || die "writing the import Maildir failed"
        sync
        t0=$(date +%s.%N)
        "$POSTERN" --config "$PD/postern.toml" mailbox import --user "$USER_NAME" \
            --maildir "$WORK/import" >"$WORK/import.log" 2>&1 \
            || { tail -n 20 "$WORK/import.log" >&2; die "postern mailbox import failed"; }
        t1=$(date +%s.%N)
        POPULATE_PD="{\"mode\":\"import\",\"count\":$MESSAGES,\"wall_s\":$(python3 -c "print(round($t1 - $t0, 3))")}"
        rm -rf "$WORK/import"
    fi
    if [ "$SAME_HASH" = 1 ] && has_server dovecot; then
        # passwd-file is re-read when it changes; nobody has logged in yet.
        hash="$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
def find(o, mine):
    # The user object: under a key equal to the address, or holding the address as a value.
    if isinstance(o, dict):
        mine = mine or sys.argv[2] in [v for v in o.values() if isinstance(v, str)]
        h = o.get("password_hash")
        if mine and isinstance(h, str) and h.startswith("$argon2id$"):
            return h
        for k, v in o.items():
            h = find(v, mine or k == sys.argv[2])
            if h: return h
    elif isinstance(o, list):
        for v in o:
            h = find(v, mine)
            if h: return h
print(find(d, False) or "")' "$PD/data/accounts.json" "$USER_NAME")"
        [ -n "$hash" ] || die "no Argon2id hash for $USER_NAME in $PD/data/accounts.json"
        printf '%s:{ARGON2ID}%s:65534:65534::%s/home/bench::\n' "$USER_NAME" "$hash" "$DV" >"$DV/users.new"
        chmod 644 "$DV/users.new"
        mv "$DV/users.new" "$DV/users"
        log "dovecot: password as posternd's Argon2id hash ($(printf '%s' "$hash" | cut -d'$' -f4))"
    fi
    log "starting posternd on 127.0.0.1:$PORT_PD/$PORT_PD_TLS ($PD)"
    "$POSTERND" --config "$PD/postern.toml" >"$PD/posternd.log" 2>&1 &
    echo $! >"$WORK/posternd.pid"
    wait_port posternd "$PORT_PD" "$(cat "$WORK/posternd.pid")" "$PD/posternd.log"
fi

target_of() { # server -> host:port for the chosen TLS mode
    case "$1:$TLS" in
    posternd:on) echo "127.0.0.1:$PORT_PD_TLS" ;;
    posternd:off) echo "127.0.0.1:$PORT_PD" ;;
    dovecot:on) echo "127.0.0.1:$PORT_DV_TLS" ;;
    dovecot:off) echo "127.0.0.1:$PORT_DV" ;;
    esac
}
if [ "$TLS" = on ]; then TLS_ARG=implicit; else TLS_ARG=plain; fi
common_args() { # server
    printf '%s\n' --target "$(target_of "$1")" --tls "$TLS_ARG" --user "$USER_NAME" --password "$PASSWORD"
}

# Server memory: the sum over the server's processes of PSS (and RSS) from smaps_rollup.
# posternd is one process; Dovecot is the master and every process under it (imap, imap-login,
# auth, anvil, log, config, stats).
server_pid() {
    case "$1" in
    posternd) cat "$WORK/posternd.pid" ;;
    dovecot) cat "$DV/run/master.pid" ;;
    esac
}
memory_json() { # server -> {"pss_kb":..,"rss_kb":..,"processes":..}
    python3 - "$(server_pid "$1")" <<'PY'
import json, os, sys
root = int(sys.argv[1])
children = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            st = f.read()
        ppid = int(st[st.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        continue
    children.setdefault(ppid, []).append(int(d))
pids, todo = [], [root]
while todo:
    p = todo.pop()
    pids.append(p)
    todo.extend(children.get(p, []))
pss = rss = n = 0
for p in pids:
    try:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "Pss":
                    pss += int(v.split()[0])
                elif k == "Rss":
                    rss += int(v.split()[0])
        n += 1
    except OSError:
        pass
print(json.dumps({"pss_kb": pss, "rss_kb": rss, "processes": n}))
PY
}

mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
record() { # server phase extra-json result-json
    printf '{"server":"%s","phase":"%s",%s"result":%s}\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- populate
# The same MESSAGES messages (seed 1, numbers 0..N-1) in each INBOX. With --populate maildir
# they were written above (Dovecot indexes its Maildir on the first SELECT; posternd imported
# it); with --populate append they go in now over IMAP, one server after the other.
has_server dovecot && [ -n "${POPULATE_DV:-}" ] && record dovecot populate "" "$POPULATE_DV"
has_server posternd && [ -n "${POPULATE_PD:-}" ] && record posternd populate "" "$POPULATE_PD"
append_run() { # server mailbox count phase
    local out
    log "$1: APPEND $3 messages to $2 ($LOAD_CLIENTS connection(s), $PIPELINE in flight each)"
    out="$("$LOAD" load $(common_args "$1") --mailbox "$2" --create --count "$3" \
        --clients "$LOAD_CLIENTS" --pipeline "$PIPELINE" --json 2>"$WORK/load-$1.err")" || {
        cat "$WORK/load-$1.err" >&2; die "$1: APPEND failed"; }
    record "$1" "$4" "" "$out"
    printf '%s\n' "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); t=r["total"]; print("compare-imap:   %s: %d appended, %.0f msg/s" % (sys.argv[1], t["ok"], t["ops_per_s"]), file=sys.stderr)' "$1"
}
if [ "$POPULATE" = append ]; then
    for s in $SERVERS; do append_run "$s" INBOX "$MESSAGES" populate; done
fi
# The first SELECT after population: Dovecot builds its index of the Maildir here.
for s in $SERVERS; do
    log "$s: first SELECT of the populated INBOX"
    out="$("$LOAD" select $(common_args "$s") --count 0 --json 2>"$WORK/prime-$s.err")" \
        || die "$s: first SELECT failed: $(tr '\n' ' ' <"$WORK/prime-$s.err")"
    record "$s" prime "" "$out"
done
# The APPEND rate into an empty mailbox (each APPEND durable before its OK on both servers).
if [ "$APPENDS" -gt 0 ]; then
    for s in $SERVERS; do append_run "$s" Bench-load "$APPENDS" append; done
fi

# ---------------------------------------------------------------- SELECT latency
for s in $SERVERS; do
    log "$s: SELECT x $SELECTS"
    out="$("$LOAD" select $(common_args "$s") --count "$SELECTS" --json 2>"$WORK/select-$s.err")" \
        || log "$s: select had errors: $(tr '\n' ' ' <"$WORK/select-$s.err")"
    [ -n "$out" ] || out=null
    record "$s" select "" "$out"
done

# ---------------------------------------------------------------- operation mix
# Each server runs alone, one after the other, with the same seed (so the same sequence of
# operations per client) on the same data.
for s in $SERVERS; do
    log "$s: mix, $CLIENTS clients, ${WARMUP}s warm-up + ${SECS}s"
    weights=()
    [ -n "$WEIGHTS" ] && weights=(--weights "$WEIGHTS")
    out="$("$LOAD" mix $(common_args "$s") --clients "$CLIENTS" --duration "$SECS" \
        --warmup "$WARMUP" "${weights[@]}" --json 2>"$WORK/mix-$s.err")" \
        || log "$s: mix had errors: $(tr '\n' ' ' <"$WORK/mix-$s.err" | cut -c1-400)"
    [ -n "$out" ] || out=null
    record "$s" mix "" "$out"
    printf '%s\n' "$out" | python3 -c 'import json,sys
r=json.load(sys.stdin)
if r: t=r["total"]; print("compare-imap:   %s: %.1f ops/s, p50 %s ms, p99 %s ms, %d errors" % (sys.argv[1], t["ops_per_s"], t["p50_ms"], t["p99_ms"], t["errors"]), file=sys.stderr)' "$s"
done

# ---------------------------------------------------------------- idle connections
mem_avail_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
# The idle test stops when the machine's available memory falls below this (3 GiB).
MIN_AVAIL_KB=$((3 * 1024 * 1024))
declare -A PER_CONN_KB
for k in $IDLE; do
    for s in $SERVERS; do
        # Skip a run that would exhaust the machine's memory: estimate from the last count
        # (the guard below still stops a run that goes beyond the estimate).
        if [ -n "${PER_CONN_KB[$s]:-}" ]; then
            need=$((PER_CONN_KB[$s] * k + MIN_AVAIL_KB))
            if [ "$need" -gt "$(mem_avail_kb)" ]; then
                log "$s: skipping $k idle connections: about $((need / 1024)) MiB needed, $(( $(mem_avail_kb) / 1024 )) MiB available"
                record "$s" idle "\"connections\":$k," 'null'
                continue
            fi
        fi
        sleep 2
        before="$(memory_json "$s")"
        log "$s: opening $k IDLE connections"
        rm -f "$WORK/idle.out"
        "$LOAD" idle $(common_args "$s") --connections "$k" >"$WORK/idle.out" 2>"$WORK/idle.err" &
        echo $! >"$WORK/idle.pid"
        ready=""
        aborted=""
        for i in $(seq 6000); do # up to 10 minutes
            if grep -q '^ready' "$WORK/idle.out" 2>/dev/null; then ready=1; break; fi
            kill -0 "$(cat "$WORK/idle.pid")" 2>/dev/null || break
            # Stop before the machine runs out of memory (other work shares it).
            if [ $((i % 10)) = 0 ] && [ "$(mem_avail_kb)" -lt "$MIN_AVAIL_KB" ]; then
                aborted=1
                break
            fi
            sleep 0.1
        done
        if [ -z "$ready" ]; then
            res=null
            if [ -n "$aborted" ]; then
                during="$(memory_json "$s")"
                log "$s: stopped opening $k idle connections: MemAvailable fell below $((MIN_AVAIL_KB / 1024)) MiB (server PSS $(printf '%s' "$during" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pss_kb"] // 1024)') MiB)"
                res="{\"aborted\":\"memory\",\"before\":$before,\"during\":$during}"
            else
                log "$s: idle did not get ready: $(tr '\n' ' ' <"$WORK/idle.err" | cut -c1-400)"
            fi
            kill "$(cat "$WORK/idle.pid")" 2>/dev/null || true
            for _ in $(seq 600); do kill -0 "$(cat "$WORK/idle.pid")" 2>/dev/null || break; sleep 0.1; done
            rm -f "$WORK/idle.pid"
            record "$s" idle "\"connections\":$k," "$res"
            sleep 5
            continue
        fi
        log "  $(head -n1 "$WORK/idle.out")"
        sleep 3 # let lazy allocations settle
        during="$(memory_json "$s")"
        kill "$(cat "$WORK/idle.pid")" 2>/dev/null || true
        for _ in $(seq 600); do kill -0 "$(cat "$WORK/idle.pid")" 2>/dev/null || break; sleep 0.1; done
        rm -f "$WORK/idle.pid"
        summary="$(tail -n1 "$WORK/idle.out")"
        case "$summary" in "{"*) ;; *) summary=null ;; esac
        res="{\"before\":$before,\"during\":$during,\"holder\":$summary}"
        record "$s" idle "\"connections\":$k," "$res"
        per="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); k=int(sys.argv[2]); print(max(0, (r["during"]["pss_kb"]-r["before"]["pss_kb"])//k))' "$res" "$k")"
        PER_CONN_KB[$s]=$per
        log "  $s: $per KiB PSS per idle connection ($(printf '%s' "$during" | python3 -c 'import json,sys; print(json.load(sys.stdin)["processes"])') processes)"
        # Let the server close the sessions before the next measurement.
        sleep 5
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- the table
python3 - "$RESULTS" "$MESSAGES" "$CLIENTS" "$SECS" "$WARMUP" "$TLS" "$LOAD_CLIENTS" "$PIPELINE" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" "$POPULATE" >"$TABLE" <<'PY'
import json, sys

path, messages, clients, secs, warmup, tls, lclients, pipeline, lb, la, ncpu, populate = sys.argv[1:13]
rows = [json.loads(l) for l in open(path) if l.strip()]
by = {}
for r in rows:
    key = (r["phase"], r.get("connections"))
    by.setdefault(key, {})[r["server"]] = r["result"]

def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d

out = []
def row(what, pd, dv, fmt="%.1f", better="higher"):
    f = lambda v: "-" if v is None else fmt % v
    ratio = "-" if (pd is None or dv is None or dv == 0) else "%.2fx" % (pd / dv)
    out.append("| %s | %s | %s | %s |" % (what, f(pd), f(dv), ratio))

print("IMAP, posternd vs Dovecot: %s-message INBOX (populated by %s), %s, %s CPUs, load average %s before and %s after." % (
    messages, "Maildir: Dovecot's own, posternd's by `postern mailbox import`" if populate == "maildir" else "IMAP APPEND",
    "implicit TLS (imaps)" if tls == "on" else "plaintext", ncpu, lb, la))
print()
print("| measure | posternd | Dovecot | posternd/Dovecot |")
print("|---|---:|---:|---:|")
ap = by.get(("append", None), {})
row("APPEND msg/s into an empty mailbox (%s conn, %s in flight)" % (lclients, pipeline),
    get(ap.get("posternd"), "total", "ops_per_s"), get(ap.get("dovecot"), "total", "ops_per_s"), "%.0f")
pr = by.get(("prime", None), {})
row("first SELECT after population, ms (Dovecot indexes its Maildir here)",
    get(pr.get("posternd"), "ops", "select_first", "p50_ms"), get(pr.get("dovecot"), "ops", "select_first", "p50_ms"), "%.0f")
mx = by.get(("mix", None), {})
row("**mix: ops/s total** (%s clients, %s s after %s s warm-up; target >= 2x)" % (clients, secs, warmup),
    get(mx.get("posternd"), "total", "ops_per_s"), get(mx.get("dovecot"), "total", "ops_per_s"))
row("mix: p50 ms, all operations", get(mx.get("posternd"), "total", "p50_ms"), get(mx.get("dovecot"), "total", "p50_ms"), "%.2f")
row("mix: p99 ms, all operations", get(mx.get("posternd"), "total", "p99_ms"), get(mx.get("dovecot"), "total", "p99_ms"), "%.2f")
ops = sorted(set((get(mx.get("posternd"), "ops") or {}).keys()) | set((get(mx.get("dovecot"), "ops") or {}).keys()))
for op in ops:
    pd, dv = get(mx.get("posternd"), "ops", op), get(mx.get("dovecot"), "ops", op)
    row("mix %s: ops/s" % op, get(pd, "ops_per_s"), get(dv, "ops_per_s"))
    row("mix %s: p50 / p99 ms" % op, get(pd, "p50_ms"), get(dv, "p50_ms"), "%.2f")
    out[-1] = out[-1].replace("p50 / p99 ms", "p50 ms")
    row("mix %s: p99 ms" % op, get(pd, "p99_ms"), get(dv, "p99_ms"), "%.2f")
    if op.startswith("search") or op == "select":
        row("mix %s: results per op (mean over the ops run)" % op, get(pd, "items_per_op"), get(dv, "items_per_op"), "%.1f")
sl = by.get(("select", None), {})
for kind in ("select_first", "select", "select_condstore", "select_qresync"):
    pd, dv = get(sl.get("posternd"), "ops", kind), get(sl.get("dovecot"), "ops", kind)
    if pd is None and dv is None:
        continue
    row("%s: p50 ms" % kind.replace("_", " "), get(pd, "p50_ms"), get(dv, "p50_ms"), "%.2f")
    if kind != "select_first":
        row("%s: p99 ms" % kind.replace("_", " "), get(pd, "p99_ms"), get(dv, "p99_ms"), "%.2f")
for (phase, k), res in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
    if phase != "idle":
        continue
    def per(r):
        if not r or r.get("aborted"):
            return None
        held = get(r, "holder", "held_at_end") or k
        return (r["during"]["pss_kb"] - r["before"]["pss_kb"]) / max(1, held)
    def total(r):
        return None if not r or r.get("aborted") else r["during"]["pss_kb"] / 1024
    def held(r):
        return get(r, "holder", "held_at_end")
    row("**idle %d: KiB PSS per connection** (target <= 0.10x)" % k, per(res.get("posternd")), per(res.get("dovecot")), "%.1f")
    row("idle %d: server PSS MiB in all" % k, total(res.get("posternd")), total(res.get("dovecot")), "%.1f")
    row("idle %d: connections held" % k, held(res.get("posternd")), held(res.get("dovecot")), "%d")
print("\n".join(out))
errs = []
for r in rows:
    res = r["result"]
    if isinstance(res, dict) and res.get("aborted"):
        errs.append("- %s idle %s: stopped when the machine's available memory fell below 3 GiB (server PSS %d MiB then)" % (
            r["server"], r.get("connections"), res["during"]["pss_kb"] // 1024))
    elif res is None:
        errs.append("- %s %s%s: no result" % (r["server"], r["phase"], " %s" % r["connections"] if r.get("connections") else ""))
    elif isinstance(res, dict):
        for e in res.get("error_texts", [])[:5]:
            errs.append("- %s %s: %dx %s" % (r["server"], r["phase"], e["count"], e["text"]))
        for f in res.get("client_failures", [])[:3]:
            errs.append("- %s %s: client failed: %s" % (r["server"], r["phase"], f))
if errs:
    print()
    print("Errors:")
    print("\n".join(errs))
PY
cat "$TABLE"
log "raw results: $RESULTS"
log "table: $TABLE"
