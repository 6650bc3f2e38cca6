#!/usr/bin/env bash
# compare-logins.sh: the login-heavy IMAP workload of issue 13 (clients that reconnect for
# every session: connect, TLS, LOGIN, SELECT, FETCH, LOGOUT) against posternd with its
# verified-credential cache on and off, and a private Dovecot from Debian with its auth cache
# off (the default) and on, every server verifying the same Argon2id PHC string (Dovecot's
# {ARGON2ID} scheme) over implicit TLS. Run as root on Debian 12; safe to re-run (fresh
# temporary directory, leftovers of a killed run stopped first).
#
#   benches/compare-logins.sh [--seconds S] [--warmup S] [--clients "10 50"] [--keep]
#
# Writes raw JSON lines and the markdown table to bench-results/ at the repository root.
set -euo pipefail
export LC_ALL=C

SECS=10
WARMUP=2
CLIENTS="10 50"
PORT_BASE=25143
KEEP=0
BIN_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECS="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --bin-dir) BIN_DIR="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        echo "Options: --seconds S (10), --warmup S (2), --clients LIST (\"10 50\"),"
        echo "  --port-base P (25143: posternd P, P+1; Dovecot P+2, P+3), --bin-dir DIR, --keep"
        exit 0 ;;
    *) echo "compare-logins.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '%s\n' "compare-logins: $*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (Dovecot's private instances start as root and drop privileges)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
RESULTS_DIR="$REPO/bench-results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$RESULTS_DIR/logins-$STAMP.jsonl"
TABLE="$RESULTS_DIR/logins-$STAMP.md"
USER_NAME=bench@bench.test
PASSWORD=Bench-Passw0rd-4kQ9zX
# Messages in each INBOX; every session FETCHes the flags of the first 10.
MESSAGES=20

# ---------------------------------------------------------------- dependencies
need_pkgs=()
[ -x /usr/lib/dovecot/imap ] || need_pkgs+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
    # The package's own system instance is not used: stop it if it started.
    if [ -f /run/dovecot/master.pid ]; then
        kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
    fi
fi

# ---------------------------------------------------------------- leftovers of killed runs
for old in /var/tmp/postern-logins-bench.*; do
    [ -d "$old" ] || continue
    for pidfile in "$old"/*/run/master.pid "$old"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] \
            && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE 'dovecot|posternd'; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    sleep 1
    rm -rf "$old"
done

port_busy() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
PORT_PD_CACHE=$PORT_BASE
PORT_PD_NOCACHE=$((PORT_BASE + 1))
PORT_DV=$((PORT_BASE + 2))
PORT_DV_CACHE=$((PORT_BASE + 3))
for p in $PORT_PD_CACHE $PORT_PD_NOCACHE $PORT_DV $PORT_DV_CACHE; do
    port_busy "$p" && die "port $p is in use; pick others with --port-base"
done

WORK="$(mktemp -d /var/tmp/postern-logins-bench.XXXXXX)"
chmod 755 "$WORK"
cleanup() {
    set +e
    for pidfile in "$WORK"/*.pid "$WORK"/*/run/master.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # name port logfile
    for _ in $(seq 300); do port_busy "$2" && return 0; sleep 0.1; done
    log "$1 did not start listening on port $2"
    [ -f "$3" ] && tail -n 30 "$3" >&2
    exit 1
}

# ---------------------------------------------------------------- build
if [ -n "$BIN_DIR" ]; then
    BIN_DIR="$(cd "$BIN_DIR" && pwd)"
else
    log "building imap-load, posternd and postern (release)"
    (cd "$REPO" && cargo build -q --release -p imap-load -p posternd --bin imap-load --bin posternd --bin postern)
    BIN_DIR="$TARGET_DIR/release"
fi
LOAD="$BIN_DIR/imap-load"
POSTERND="$BIN_DIR/posternd"
POSTERN="$BIN_DIR/postern"
for b in "$LOAD" "$POSTERND" "$POSTERN"; do [ -x "$b" ] || die "$b not found"; done

# One EC P-256 certificate for every server, so all do the same handshake work.
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=imap.bench.test" -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" \
    >/dev/null 2>&1 || die "openssl could not make a certificate"
chmod 644 "$WORK/tls/cert.pem"
chmod 600 "$WORK/tls/key.pem"

# ---------------------------------------------------------------- posternd, cache on and off
start_posternd() { # name port ttl
    local dir="$WORK/$1"
    mkdir -p "$dir"
    cat >"$dir/postern.toml" <<EOF
[server]
hostname = "postern.bench.test"
data_dir = "$dir/data"

[tls]
certificate = "$WORK/tls/cert.pem"
private_key = "$WORK/tls/key.pem"

[auth]
credential_cache_ttl_secs = $3

[[listener]]
kind = "imaps"
bind = ["127.0.0.1:$2"]

[imap]
max_connections_per_ip = 1000

[sender_auth]
# The ingest benchmarks measure the store and protocol path; sender authentication asks DNS
# (benches/sender-auth.py measures its cost).
verify = false

[metrics]
bind = ""

[log]
level = "warn"
EOF
    "$POSTERN" --config "$dir/postern.toml" domain add bench.test >/dev/null
    "$POSTERN" --config "$dir/postern.toml" user add "$USER_NAME" --password "$PASSWORD" >/dev/null
    "$POSTERND" --config "$dir/postern.toml" >"$dir/posternd.log" 2>&1 &
    echo $! >"$WORK/$1.pid"
    wait_port "posternd ($1)" "$2" "$dir/posternd.log"
}
log "starting posternd, cache on (127.0.0.1:$PORT_PD_CACHE) and off (127.0.0.1:$PORT_PD_NOCACHE)"
start_posternd posternd-cache "$PORT_PD_CACHE" 300
start_posternd posternd-nocache "$PORT_PD_NOCACHE" 0

HASH="$(python3 -c 'import json, sys
def find(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == sys.argv[2] and isinstance(v, dict) and "password_hash" in v:
                return v["password_hash"]
            h = find(v)
            if h: return h
print(find(json.load(open(sys.argv[1]))) or "")' "$WORK/posternd-cache/data/accounts.json" "$USER_NAME")"
# shellcheck disable=SC2016 # the literal PHC prefix, nothing to expand
case "$HASH" in '$argon2id$'*) ;; *) die "no Argon2id hash for $USER_NAME in accounts.json" ;; esac

# ---------------------------------------------------------------- Dovecot, auth cache off and on
# Debian's Dovecot 2.3, a private instance each (own base_dir, config, log). passwd-file with
# posternd's own PHC string as {ARGON2ID} (verified with libsodium in auth-worker processes);
# Maildir; imap-login in the documented high-performance mode (service_count = 0,
# process_min_avail = 2). "dovecot" leaves auth_cache_size at its default 0 (no cache);
# "dovecot-cache" sets auth_cache_size = 10M, auth_cache_ttl = 300 s, the same TTL as posternd.
start_dovecot() { # name port cache-size
    local dir="$WORK/$1"
    mkdir -p "$dir/run" "$dir/state" "$dir/home"
    chown nobody:nogroup "$dir/home"
    printf '%s:{ARGON2ID}%s:65534:65534::%s/home/bench::\n' "$USER_NAME" "$HASH" "$dir" >"$dir/users"
    chmod 644 "$dir/users"
    cat >"$dir/dovecot.conf" <<EOF
instance_name = postern-logins-$1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$WORK/tls/cert.pem
ssl_key = <$WORK/tls/key.pem
auth_mechanisms = plain login
auth_cache_size = $3
auth_cache_ttl = 300 s
passdb {
  driver = passwd-file
  args = username_format=%u $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/users
}
last_valid_uid = 0
first_valid_uid = 65534
mail_location = maildir:~/Maildir
default_process_limit = 500
default_client_limit = 2000
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $2
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  vsz_limit = 2G
}
protocol imap {
  mail_max_userip_connections = 1000
}
EOF
    dovecot -c "$dir/dovecot.conf" || { tail -n 20 "$dir/dovecot.log" >&2; die "Dovecot ($1) did not start"; }
    wait_port "Dovecot ($1)" "$2" "$dir/dovecot.log"
}
log "starting Dovecot $(dovecot --version | cut -d' ' -f1), auth cache off (127.0.0.1:$PORT_DV) and on (127.0.0.1:$PORT_DV_CACHE)"
start_dovecot dovecot "$PORT_DV" 0
start_dovecot dovecot-cache "$PORT_DV_CACHE" 10M

TARGETS="posternd-cache posternd-nocache dovecot dovecot-cache"
port_of() {
    case "$1" in
    posternd-cache) echo "$PORT_PD_CACHE" ;;
    posternd-nocache) echo "$PORT_PD_NOCACHE" ;;
    dovecot) echo "$PORT_DV" ;;
    dovecot-cache) echo "$PORT_DV_CACHE" ;;
    esac
}
common() { printf '%s\n' --target "127.0.0.1:$(port_of "$1")" --tls implicit --user "$USER_NAME" --password "$PASSWORD"; }

# The same generated messages in every INBOX (IMAP APPEND).
for t in $TARGETS; do
    mapfile -t args < <(common "$t")
    "$LOAD" load "${args[@]}" --count "$MESSAGES" >/dev/null || die "populating $t failed"
done

mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
cell=0
for c in $CLIENTS; do
    # Rotate the order per cell so that drift (other load on the machine) hits all alike.
    # shellcheck disable=SC2086 # TARGETS is a list of plain words
    set -- $TARGETS
    for _ in $(seq $((cell % 4))); do set -- "${@:2}" "$1"; done
    cell=$((cell + 1))
    for t in "$@"; do
        log "$t: $c clients, ${WARMUP} s warm-up, ${SECS} s measured"
        mapfile -t args < <(common "$t")
        out="$("$LOAD" logins "${args[@]}" --clients "$c" --duration "$SECS" --warmup "$WARMUP" --json)" \
            || log "$t: errors (see the table)"
        printf '{"server":"%s","clients":%s,"report":%s}\n' "$t" "$c" "${out:-null}" >>"$RESULTS"
    done
done

python3 - "$RESULTS" "$SECS" >"$TABLE" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
targets = ["posternd-cache", "posternd-nocache", "dovecot", "dovecot-cache"]
by = {(r["server"], r["clients"]): r["report"] or {} for r in rows}
def op(rep, name, key):
    return ((rep.get("ops") or {}).get(name) or {}).get(key)
def rate(s, c):
    return op(by.get((s, c), {}), "session", "ops_per_s") or 0.0
def fmt(v, d=1):
    return "-" if v is None else f"{v:,.{d}f}"
print(f"Sessions per second (connect, TLS, LOGIN, SELECT, FETCH 1:10, LOGOUT; {sys.argv[2]} s per cell),")
print("mean LOGIN latency in ms in brackets, errors when any.\n")
print("| clients | " + " | ".join(targets) + " | cache / dovecot | cache / dovecot-cache | no cache / dovecot |")
print("|---|" + "---|" * (len(targets) + 3))
for c in sorted({r["clients"] for r in rows}):
    cells = []
    for s in targets:
        rep = by.get((s, c), {})
        errs = (rep.get("total") or {}).get("errors") or 0
        cell = f"{fmt(rate(s, c))} ({fmt(op(rep, 'login', 'mean_ms'))})"
        cells.append(cell + (f", {errs} errors" if errs else ""))
    def ratio(a, b):
        return f"{rate(a, c) / rate(b, c):.2f}x" if rate(b, c) else "-"
    cells += [ratio("posternd-cache", "dovecot"), ratio("posternd-cache", "dovecot-cache"),
              ratio("posternd-nocache", "dovecot")]
    print(f"| {c} | " + " | ".join(cells) + " |")
PY
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE"
