#!/usr/bin/env bash
# compare-smtp.sh: durable SMTP ingest of posternd vs Postfix vs smtp-sink, side by side on one
# host (DESIGN.md section 5). Run as root on Debian 12. Safe to re-run: every run uses a fresh
# temporary directory, and leftovers of a run that was killed are stopped first.
#
#   benches/compare-smtp.sh [--peers-only] [--quick] [options]      (see --help)
#
# Writes raw JSON lines and the markdown table to bench-results/ at the repository root.
set -euo pipefail
export LC_ALL=C

usage() {
    cat <<'EOF'
Usage: benches/compare-smtp.sh [options]

  --peers-only        skip posternd (measure Postfix and smtp-sink only)
  --quick             short cells (2 s each, small warm-up): proves the setup works
  --seconds S         length of each cell in seconds (default 10; --quick: 2)
  --messages N        send exactly N messages per cell instead of running for --seconds
  --size BYTES        message size (default 10240)
  --clients "A B C"   client counts (default "1 10 100")
  --tls MODES         "off on" (default), "off" or "on"
  --conn MODE         reuse | new | both (default both): keep connections for many messages,
                      or one connection (and one STARTTLS) per message
  --rounds R          repeat the whole matrix R times; the table shows the median (default 1)
  --port-base P       posternd on P, Postfix on P+1, smtp-sink on P+2 (default 22525)
  --keep              keep the temporary directory (configs, logs, queues) for inspection
  --store-backend B   posternd [store] backend: auto (default), io_uring or portable
  -h, --help          this text
EOF
}

PEERS_ONLY=0
QUICK=0
SECONDS_PER_CELL=""
MESSAGES=""
SIZE=10240
CLIENTS="1 10 100"
TLS_MODES="off on"
CONN=both
ROUNDS=1
PORT_BASE=22525
KEEP=0
STORE_BACKEND=auto
while [ $# -gt 0 ]; do
    case "$1" in
    --peers-only) PEERS_ONLY=1 ;;
    --quick) QUICK=1 ;;
    --seconds) SECONDS_PER_CELL="$2"; shift ;;
    --messages) MESSAGES="$2"; shift ;;
    --size) SIZE="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --tls) TLS_MODES="$2"; shift ;;
    --conn) CONN="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --keep) KEEP=1 ;;
    --store-backend) STORE_BACKEND="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare-smtp.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$SECONDS_PER_CELL" ]; then
    if [ "$QUICK" = 1 ]; then SECONDS_PER_CELL=2; else SECONDS_PER_CELL=10; fi
fi
case "$CONN" in
reuse) CONN_MODES="reuse" ;;
new) CONN_MODES="new" ;;
both) CONN_MODES="reuse new" ;;
*) echo "compare-smtp.sh: --conn must be reuse, new or both" >&2; exit 2 ;;
esac

log() { printf '%s\n' "compare-smtp: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (Postfix needs it to start its private instance)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
RESULTS_DIR="$REPO/bench-results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$RESULTS_DIR/smtp-$STAMP.jsonl"
TABLE="$RESULTS_DIR/smtp-$STAMP.md"

PORT_POSTERN=$PORT_BASE
PORT_POSTFIX=$((PORT_BASE + 1))
PORT_SINK=$((PORT_BASE + 2))

# ---------------------------------------------------------------- dependencies
need_pkgs=()
command -v postfix >/dev/null 2>&1 || need_pkgs+=(postfix)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} from Debian"
    # "No configuration" leaves /etc/postfix without a main.cf, so no system instance starts.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
fi
SMTP_SINK="$(command -v smtp-sink || echo /usr/sbin/smtp-sink)"
[ -x "$SMTP_SINK" ] || die "smtp-sink not found (it ships in Debian's postfix package)"

# ---------------------------------------------------------------- leftovers of killed runs
# Only what an earlier run of this script started, found through the pid files it wrote.
for old in /var/tmp/postern-bench.*; do
    [ -d "$old" ] || continue
    if [ -f "$old/postfix/etc/main.cf" ]; then
        postfix -c "$old/postfix/etc" stop >/dev/null 2>&1 || true
    fi
    for pidfile in "$old"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] \
            && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE 'smtp-sink|posternd'; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$old"
done

port_busy() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
for p in $PORT_POSTFIX $PORT_SINK; do
    port_busy "$p" && die "port $p is in use; pick others with --port-base"
done
if [ "$PEERS_ONLY" = 0 ] && port_busy "$PORT_POSTERN"; then
    die "port $PORT_POSTERN is in use; pick others with --port-base"
fi

# ---------------------------------------------------------------- temp dir and cleanup
# /var/tmp: the same filesystem for Postfix's queue and posternd's data_dir, so both pay the
# same fsync.
WORK="$(mktemp -d /var/tmp/postern-bench.XXXXXX)"
chmod 755 "$WORK"
POSTFIX_STARTED=0
cleanup() {
    set +e
    if [ "$POSTFIX_STARTED" = 1 ]; then
        postfix -c "$WORK/postfix/etc" stop >/dev/null 2>&1
    fi
    for pidfile in "$WORK"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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
log "building smtp-load (release)"
(cd "$REPO" && cargo build -q --release -p postern-smtp-load)
LOAD="$TARGET_DIR/release/smtp-load"
if [ "$PEERS_ONLY" = 0 ]; then
    log "building posternd and postern (release)"
    (cd "$REPO" && cargo build -q --release -p posternd --bin posternd --bin postern)
fi

# ---------------------------------------------------------------- TLS certificate
# EC P-256, the kind of key posternd generates for itself, so both servers do the same
# handshake work.
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=postfix.bench.test" -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" \
    >/dev/null 2>&1 || die "openssl could not make a certificate"
chmod 600 "$WORK/tls/key.pem"

# ---------------------------------------------------------------- Postfix
# A private instance: its own config, queue and data directories; no chroot. It keeps
# Postfix's durability (cleanup fsyncs the queue file before the 250) and then discards.
PF="$WORK/postfix"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
chown postfix: "$PF/data" # master.lock and the TLS session cache live there
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
manpage_directory = /usr/share/man
sample_directory = no
readme_directory = no
html_directory = no
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PF/maillog
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination = bench.test
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_banner = \$myhostname ESMTP
biff = no
# Accept every recipient of bench.test and throw the mail away after it is queued.
local_recipient_maps =
alias_maps =
alias_database =
default_transport = discard
local_transport = discard:
relay_transport = discard
message_size_limit = 52428800
# No throttling: 100 clients from one address must all be served, and Postfix should show
# its best ingest rate (in_flow_delay would slow smtpd when qmgr lags behind).
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
in_flow_delay = 0s
smtpd_peername_lookup = no
# STARTTLS with a self-signed certificate; session cache as a Debian install has it.
smtpd_tls_cert_file = $WORK/tls/cert.pem
smtpd_tls_key_file = $WORK/tls/key.pem
smtpd_tls_security_level = may
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
smtpd_tls_loglevel = 0
EOF
# The services every private Postfix of the project runs (shared with the peer-MTA tests),
# behind the benchmark's own smtpd listener.
{
    echo "127.0.0.1:$PORT_POSTFIX inet n - n - - smtpd"
    cat "$REPO/tests/peers/postfix-master.cf"
} >"$PF/etc/master.cf"
log "starting Postfix on 127.0.0.1:$PORT_POSTFIX ($PF)"
postfix -c "$PF/etc" check >/dev/null 2>&1 || postfix -c "$PF/etc" check
if ! postfix -c "$PF/etc" start >/dev/null 2>&1; then
    tail -n 20 "$PF/maillog" >&2 2>/dev/null
    die "Postfix did not start"
fi
POSTFIX_STARTED=1
wait_port Postfix "$PORT_POSTFIX" "" "$PF/maillog"

# ---------------------------------------------------------------- smtp-sink
# -c: counters (to /dev/null); -u postfix: drop root; backlog 1000. No storage at all: the
# protocol ceiling. It has no STARTTLS.
log "starting smtp-sink on 127.0.0.1:$PORT_SINK"
"$SMTP_SINK" -c -u postfix "127.0.0.1:$PORT_SINK" 1000 >/dev/null 2>"$WORK/smtp-sink.log" &
echo $! >"$WORK/smtp-sink.pid"
wait_port smtp-sink "$PORT_SINK" "$(cat "$WORK/smtp-sink.pid")" "$WORK/smtp-sink.log"

# ---------------------------------------------------------------- posternd
if [ "$PEERS_ONLY" = 0 ]; then
    PD="$WORK/postern"
    mkdir -p "$PD"
    cat >"$PD/postern.toml" <<EOF
[server]
hostname = "postern.bench.test"
data_dir = "$PD/data"

[[listener]]
kind = "mx"
bind = ["127.0.0.1:$PORT_POSTERN"]

[smtp]
# 100 clients share one address, and reused connections carry thousands of transactions.
max_connections_per_ip = 10000
max_commands = 1000000
# Greet at once, as Postfix's smtpd (no postscreen) does in the comparison.
greeting_delay_ms = 0
# Load from one address: no hourly message allowance (DESIGN.md 2 rate limits).
mx_messages_per_ip_per_hour = 0

[store]
backend = "$STORE_BACKEND"

[sender_auth]
# The ingest benchmarks measure the store and protocol path; sender authentication asks DNS
# (benches/sender-auth.py measures its cost).
verify = false

[metrics]
bind = ""

[log]
level = "warn"
EOF
    POSTERND="$TARGET_DIR/release/posternd"
    POSTERN="$TARGET_DIR/release/postern"
    log "starting posternd on 127.0.0.1:$PORT_POSTERN ($PD)"
    "$POSTERND" --config "$PD/postern.toml" >"$PD/posternd.log" 2>&1 &
    echo $! >"$WORK/posternd.pid"
    wait_port posternd "$PORT_POSTERN" "$(cat "$WORK/posternd.pid")" "$PD/posternd.log"
    "$POSTERN" --config "$PD/postern.toml" domain add bench.test >/dev/null \
        || die "postern domain add bench.test failed"
    "$POSTERN" --config "$PD/postern.toml" user add rcpt@bench.test --password Bench-Passw0rd-4kQ9zX \
        >/dev/null || die "postern user add rcpt@bench.test failed"
fi

# ---------------------------------------------------------------- disk fsync latency
# DESIGN.md section 5 compares p99 with the disk's fsync latency: 4 KiB synchronous writes
# on the filesystem that holds both queues.
FSYNC_N=200
dd_out="$(dd if=/dev/zero of="$WORK/fsync.probe" bs=4096 count=$FSYNC_N oflag=dsync 2>&1 | tail -n 1)"
rm -f "$WORK/fsync.probe"
FSYNC_MS="$(printf '%s\n' "$dd_out" | awk -v n=$FSYNC_N -F', ' '{split($(NF-1), a, " "); printf "%.3f", a[1] * 1000 / n}')"
log "disk: 4 KiB O_DSYNC write takes ${FSYNC_MS} ms on average"

# ---------------------------------------------------------------- the matrix
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
TARGETS=()
[ "$PEERS_ONLY" = 0 ] && TARGETS+=("posternd=127.0.0.1:$PORT_POSTERN")
TARGETS+=("postfix=127.0.0.1:$PORT_POSTFIX" "smtp-sink=127.0.0.1:$PORT_SINK")

run_one() { # name addr clients tls conn round
    local name="$1" addr="$2" clients="$3" tls="$4" conn="$5" round="$6"
    local args=(--target "$addr" --clients "$clients" --size "$SIZE" --json
        --from "load@client.test" --to "rcpt@bench.test" --helo "client.test")
    local warm=$((clients * 10))
    [ "$QUICK" = 1 ] && warm=$((clients * 2))
    args+=(--warmup "$warm")
    [ "$tls" = on ] && args+=(--starttls)
    if [ "$conn" = new ]; then args+=(--no-reuse); else args+=(--reuse); fi
    if [ -n "$MESSAGES" ]; then
        args+=(--messages "$MESSAGES")
    else
        args+=(--messages 1000000000 --duration "$SECONDS_PER_CELL")
    fi
    local out rc=0
    out="$("$LOAD" "${args[@]}" 2>"$WORK/load.err")" || rc=$?
    [ -n "$out" ] || out=null
    printf '{"server":"%s","clients":%s,"tls":"%s","conn":"%s","round":%s,"rc":%s,"result":%s}\n' \
        "$name" "$clients" "$tls" "$conn" "$round" "$rc" "$out" >>"$RESULTS"
    if [ "$out" = null ]; then
        log "  $name: failed (rc $rc): $(tr '\n' ' ' <"$WORK/load.err")"
    else
        printf '%s\n' "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
lat = r["latency_ms"]
p99 = "-" if lat["p99"] is None else "%.2f ms" % lat["p99"]
err = "" if not r["errors"] else "  ERRORS %d: %s" % (r["errors"], r["error_texts"][0]["text"] if r["error_texts"] else "")
print("compare-smtp:   %-9s %9.1f msg/s  p99 %s%s" % (sys.argv[1], r["msg_per_s"], p99, err), file=sys.stderr)
' "$name"
    fi
}

# Before every measurement: wait (bounded) until Postfix has discarded its backlog. At 100
# clients Postfix's queue runs behind its smtpd; its queue manager and discard agents go on
# deleting queue files after the load stops, and their file system work would otherwise land
# in whatever cell runs next (the 1-client cells, bound by fdatasync latency, most of all).
settle() {
    local deadline=$((SECONDS + 60)) q="$PF/queue"
    while ((SECONDS < deadline)); do
        if [ -z "$(find "$q/maildrop" "$q/incoming" "$q/active" "$q/deferred" -type f -print -quit 2>/dev/null)" ]; then
            sleep 1
            return 0
        fi
        sleep 0.2
    done
    log "  (Postfix's queue still not empty after 60 s; measuring anyway)"
}

cells=0
for round in $(seq "$ROUNDS"); do
    for conn in $CONN_MODES; do
        for tls in $TLS_MODES; do
            for clients in $CLIENTS; do
                log "round $round: conn=$conn tls=$tls clients=$clients"
                # Rotate the order per cell so that drift on the machine hits every target alike.
                n=${#TARGETS[@]}
                for i in $(seq 0 $((n - 1))); do
                    t="${TARGETS[$(((i + cells) % n))]}"
                    name="${t%%=*}"
                    addr="${t#*=}"
                    if [ "$name" = smtp-sink ] && [ "$tls" = on ]; then
                        continue # smtp-sink has no STARTTLS
                    fi
                    settle
                    run_one "$name" "$addr" "$clients" "$tls" "$conn" "$round"
                done
                cells=$((cells + 1))
            done
        done
    done
done

# ---------------------------------------------------------------- the table
python3 - "$RESULTS" "$SIZE" "$FSYNC_MS" "$PEERS_ONLY" "$SECONDS_PER_CELL" "$MESSAGES" >"$TABLE" <<'PY'
import json, statistics, sys

path, size, fsync_ms, peers_only, secs, messages = sys.argv[1:7]
rows = [json.loads(l) for l in open(path) if l.strip()]
cells = {}
for r in rows:
    key = (r["conn"], r["tls"], r["clients"])
    cells.setdefault(key, {}).setdefault(r["server"], []).append(r)

def med(runs, f):
    vals = [f(r["result"]) for r in runs if r["result"] is not None]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def rate(runs):
    return med(runs, lambda x: x["msg_per_s"] if x["messages_ok"] else 0.0)

def p99(runs):
    return med(runs, lambda x: x["latency_ms"]["p99"])

def errors(runs):
    return sum((r["result"] or {}).get("errors", 0) + (1 if r["result"] is None else 0) for r in runs)

def fmt_rate(runs, tls, name):
    if name == "smtp-sink" and tls == "on":
        return "n/a"
    if not runs:
        return "-"
    v = rate(runs)
    s = "failed" if v is None else "%.0f" % v
    e = errors(runs)
    return s + (" (%d err)" % e if e else "")

def fmt_p99(runs, tls, name):
    if name == "smtp-sink" and tls == "on":
        return "n/a"
    v = p99(runs) if runs else None
    return "-" if v is None else "%.2f" % v

def ratio(a, b):
    if not a or not b:
        return "-"
    ra, rb = rate(a), rate(b)
    if not ra or not rb:
        return "-"
    return "%.2fx" % (ra / rb)

conn_label = {"reuse": "reused", "new": "per message"}
length = ("%s messages" % messages) if messages else ("%s s" % secs)
print("SMTP ingest, %s-byte messages, %s per cell; disk 4 KiB O_DSYNC write %s ms%s." % (
    size, length, fsync_ms, "; posternd skipped (--peers-only)" if peers_only == "1" else ""))
print()
print("| connection | clients | STARTTLS | posternd msg/s | Postfix msg/s | smtp-sink msg/s "
      "| posternd p99 ms | Postfix p99 ms | smtp-sink p99 ms | posternd/Postfix | posternd/smtp-sink |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
order = {"reuse": 0, "new": 1}
for key in sorted(cells, key=lambda k: (order.get(k[0], 9), k[1] != "off", k[2])):
    conn, tls, clients = key
    c = cells[key]
    pd, pf, sk = c.get("posternd", []), c.get("postfix", []), c.get("smtp-sink", [])
    print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        conn_label.get(conn, conn), clients, "yes" if tls == "on" else "no",
        fmt_rate(pd, tls, "posternd"), fmt_rate(pf, tls, "postfix"), fmt_rate(sk, tls, "smtp-sink"),
        fmt_p99(pd, tls, "posternd"), fmt_p99(pf, tls, "postfix"), fmt_p99(sk, tls, "smtp-sink"),
        ratio(pd, pf), "n/a" if tls == "on" else ratio(pd, sk)))
errs = {}
for r in rows:
    res = r["result"]
    by_text = errs.setdefault(r["server"], {})
    if res is None:
        key = "smtp-load failed (rc %d)" % r["rc"]
        by_text[key] = by_text.get(key, 0) + 1
    else:
        for e in res["error_texts"]:
            by_text[e["text"]] = by_text.get(e["text"], 0) + e["count"]
errs = {k: v for k, v in errs.items() if v}
if errs:
    print()
    print("Errors (all cells):")
    for server, by_text in errs.items():
        for t, n in sorted(by_text.items(), key=lambda kv: -kv[1])[:10]:
            print("- %s: %dx %s" % (server, n, t))
PY
cat "$TABLE"
log "raw results: $RESULTS"
log "table: $TABLE"
