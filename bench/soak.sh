#!/usr/bin/env bash
# Reliability soak (not CI): three phases against a release ringproxy, all on 127.0.0.1.
#
#   apt-get install -y nginx wrk curl python3     # once
#   bench/soak.sh                                 # markdown report on stdout, progress on stderr
#   SOAK_MINUTES=3 bench/soak.sh                  # a shorter memory phase
#
# 1. Churn under load: wrk drives the proxy (four nginx backends, keys from x-user-id) while the
#    admin API makes CHURN_SWAPS join/leave swaps of a fifth backend (PUT then DELETE) and
#    DRAIN_CYCLES drain/undrain cycles of the four. Target: 0 non-2xx responses, 0 socket errors.
# 2. SIGTERM under load: bench/soak_sigterm.py keeps SIGTERM_CLIENTS keep-alive clients busy
#    against slow backends (bench/soak_backend.py, 0..SLOW_MS ms per answer), sends SIGTERM to
#    the proxy and records every request's start and outcome; SIGTERM_ROUNDS times, a fresh
#    proxy each. Clients pause 0..THINK_MS ms between requests, so some keep-alive connections
#    are idle at the signal. Target: 0 failures among the requests started before the signal
#    (after it, refusals are expected) and exit status 0.
# 3. Memory: wrk for SOAK_MINUTES with one swap and one drain cycle per sample, the proxy's RSS
#    read from /proc every SAMPLE_SECONDS. Target: once warm (the first sample at or after
#    RSS_WARMUP_SECONDS of load: pools filled, allocator arenas grown), no later sample more
#    than 10% above it. The report also gives first/last/max over all samples.
#
# Knobs (environment): CHURN_SWAPS=100 DRAIN_CYCLES=20 CHURN_SECONDS=60 THREADS=2 CONNS=32
#   SIGTERM_CLIENTS=32 SIGTERM_ROUNDS=5 THINK_MS=50 SLOW_MS=200 SOAK_MINUTES=10 SAMPLE_SECONDS=10 RSS_WARMUP_SECONDS=60
#   KEYSPACE=1000000
#   RINGPROXY_BIN=path (else `cargo build --release --bin ringproxy`), KEEP=1 keeps the temp dir.
# Every process started here is stopped on exit. Exit status 0 only if every target was met.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CHURN_SWAPS=${CHURN_SWAPS:-100}
DRAIN_CYCLES=${DRAIN_CYCLES:-20}
CHURN_SECONDS=${CHURN_SECONDS:-60}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
SIGTERM_CLIENTS=${SIGTERM_CLIENTS:-32}
SIGTERM_ROUNDS=${SIGTERM_ROUNDS:-5}
THINK_MS=${THINK_MS:-50}
SLOW_MS=${SLOW_MS:-200}
SOAK_MINUTES=${SOAK_MINUTES:-10}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
RSS_WARMUP_SECONDS=${RSS_WARMUP_SECONDS:-60}
export KEYSPACE=${KEYSPACE:-1000000}

log() { echo "soak: $*" >&2; }
die() {
    echo "soak: error: $*" >&2
    exit 1
}

for n in CHURN_SWAPS DRAIN_CYCLES CHURN_SECONDS SIGTERM_CLIENTS SIGTERM_ROUNDS SLOW_MS SOAK_MINUTES SAMPLE_SECONDS; do
    [[ ${!n} =~ ^[0-9]+$ ]] && ((${!n} > 0)) || die "$n must be a positive integer, got '${!n}'"
done
[[ $THINK_MS =~ ^[0-9]+$ ]] || die "THINK_MS must be a whole number of milliseconds, got '$THINK_MS'"
NAME=soak
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need_tools "nginx wrk curl python3" nginx wrk curl python3 awk sed
ringproxy_bin
BIN=$RINGPROXY_BIN

# ---- temp dir, process bookkeeping, cleanup ---------------------------------------------------

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-soak.XXXXXX")
mkdir -p "$DIR/tmp"
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports, configs, backends -----------------------------------------------------------------

# shellcheck source=ports.sh
source "$HERE/ports.sh"
for v in B0 B1 B2 B3 B4 S0 S1 S2 S3 RP_PORT RP_ADMIN; do
    pick_port "$v"
done

render() { # template backend-ports... > output: @B0@..@B3@ from the four ports given
    local template=$1
    sed -e "s|@DIR@|$DIR|g" -e "s|@B0@|$2|g" -e "s|@B1@|$3|g" -e "s|@B2@|$4|g" -e "s|@B3@|$5|g" \
        -e "s|@PORT@|$RP_PORT|g" -e "s|@ADMIN@|$RP_ADMIN|g" "$HERE/$template"
}
# compare.sh's four nginx backends, plus a fifth (cache-4) to join and leave.
render nginx-backends.conf.in "$B0" "$B1" "$B2" "$B3" |
    sed "s|^\(.*listen 127.0.0.1:$B3;.*\)$|&\n    server { listen 127.0.0.1:$B4; location / { return 200 \"backend-4\\\\n\"; } }|" \
        >"$DIR/backends.conf"
grep -q "127.0.0.1:$B4;" "$DIR/backends.conf" || die "could not add the fifth backend to the nginx config"
render ringproxy.toml.in "$B0" "$B1" "$B2" "$B3" >"$DIR/ringproxy.toml"
render ringproxy.toml.in "$S0" "$S1" "$S2" "$S3" >"$DIR/ringproxy-slow.toml"

# Waits until `curl ARGS...` succeeds, for up to 10 s while $1 lives.
wait_up() {
    local pid=$1 what=$2
    shift 2
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        curl -fsS -m 1 -o /dev/null "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 20 "$DIR"/*.log >&2 2>/dev/null || true
    die "$what did not come up"
}

nginx -p "$DIR" -e "$DIR/backends.error.log" -c "$DIR/backends.conf" -g 'daemon off;' \
    2>>"$DIR/backends.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for p in "$B0" "$B1" "$B2" "$B3" "$B4"; do
    wait_up "$NGINX_PID" "nginx backend on $p" "http://127.0.0.1:$p/"
done

PROXY_URL="http://127.0.0.1:$RP_PORT/"
ADMIN_URL="http://127.0.0.1:$RP_ADMIN"

# Starts ringproxy with config $1, logging to $2; sets PROXY_PID.
start_proxy() {
    RUST_LOG=warn "$BIN" --config "$1" 2>>"$DIR/$2.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_up "$PROXY_PID" "ringproxy ($2)" "$ADMIN_URL/healthz"
    wait_up "$PROXY_PID" "ringproxy ($2)" -H 'x-user-id: ping' "$PROXY_URL"
}

# One admin call; prints the HTTP status (000 when there was no answer).
admin() { # method path [json-body]
    local args=(-sS -m 5 -o "$DIR/admin-last.json" -w '%{http_code}' -X "$1" "$ADMIN_URL$2")
    [[ -n ${3:-} ]] && args+=(-H 'content-type: application/json' --data "$3")
    curl "${args[@]}" 2>>"$DIR/admin-curl.log" || true
}

ADMIN_BAD=0
# Calls admin and counts an answer other than $1 (an expected status).
expect() { # status method path [body]
    local want=$1 got
    shift
    got=$(admin "$@")
    if [[ $got != "$want" ]]; then
        ADMIN_BAD=$((ADMIN_BAD + 1))
        log "admin $1 $2 answered $got, expected $want: $(head -c 300 "$DIR/admin-last.json" 2>/dev/null)"
    fi
}

swap() { # one join/leave of cache-4
    expect 201 PUT /backends/cache-4 "{\"address\":\"127.0.0.1:$B4\",\"weight\":1}"
    sleep 0.1
    expect 204 DELETE /backends/cache-4
}
drain_cycle() { # one drain/undrain of cache-$1
    expect 200 POST "/backends/cache-$1/drain"
    sleep 0.1
    expect 200 POST "/backends/cache-$1/undrain"
}

# "requests non2xx socket_errors" from a wrk output file.
wrk_counts() {
    awk '/requests in/ { n = $1 }
         /Non-2xx or 3xx responses:/ { bad += $NF }
         /Socket errors:/ { gsub(",", ""); sock += $4 + $6 + $8 + $10 }
         END { print n + 0, bad + 0, sock + 0 }' "$1"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

MET=1
# Sets variable $1 to "met" if the arithmetic condition $2 holds, else to "missed" (remembered).
verdict() {
    if (($2)); then printf -v "$1" met; else
        printf -v "$1" missed
        MET=0
    fi
}

# ---- phase 1: churn under load ---------------------------------------------------------------

log "phase 1: wrk -t$THREADS -c$CONNS -d${CHURN_SECONDS}s with $CHURN_SWAPS join/leave swaps and $DRAIN_CYCLES drain/undrain cycles"
start_proxy "$DIR/ringproxy.toml" proxy-churn
wrk -t"$THREADS" -c"$CONNS" -d"${CHURN_SECONDS}s" --timeout 5s -s "$HERE/random_key.lua" \
    "$PROXY_URL" >"$DIR/wrk-churn.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 2
churn_start=$(date +%s)
every=$(((CHURN_SWAPS + DRAIN_CYCLES - 1) / DRAIN_CYCLES))
drains=0
for i in $(seq 1 "$CHURN_SWAPS"); do
    (($(date +%s) - churn_start < CHURN_SECONDS - 4)) || die "churn not done within wrk's ${CHURN_SECONDS}s after $i swaps; raise CHURN_SECONDS"
    swap
    sleep 0.1
    if ((i % every == 0 && drains < DRAIN_CYCLES)); then
        drain_cycle $((drains % 4))
        drains=$((drains + 1))
        sleep 0.1
    fi
done
while ((drains < DRAIN_CYCLES)); do
    drain_cycle $((drains % 4))
    drains=$((drains + 1))
    sleep 0.1
done
churn_took=$(($(date +%s) - churn_start))
kill -0 "$WRK_PID" 2>/dev/null || die "wrk ended before the churn did; raise CHURN_SECONDS"
wait "$WRK_PID" || die "wrk failed: $(tail -n 5 "$DIR/wrk-churn.txt")"
read -r P1_REQ P1_BAD P1_SOCK < <(wrk_counts "$DIR/wrk-churn.txt")
P1_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$DIR/wrk-churn.txt")
P1_ADMIN_BAD=$ADMIN_BAD
P1_VERSION=$(curl -fsS -m 2 "$ADMIN_URL/backends" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
kill -0 "$PROXY_PID" 2>/dev/null || die "the proxy died during phase 1"
stop_pid "$PROXY_PID"
log "phase 1: $P1_REQ requests, $P1_BAD non-2xx, $P1_SOCK socket errors; churn took ${churn_took}s; admin misses $P1_ADMIN_BAD"

# ---- phase 2: SIGTERM under load --------------------------------------------------------------

log "phase 2: $SIGTERM_ROUNDS SIGTERMs, each with $SIGTERM_CLIENTS clients (0..${THINK_MS} ms between requests) against backends answering in 0..${SLOW_MS} ms"
python3 "$HERE/soak_backend.py" "$SLOW_MS" "$S0" "$S1" "$S2" "$S3" >"$DIR/slow.out" 2>>"$DIR/slow.log" &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
for p in "$S0" "$S1" "$S2" "$S3"; do
    wait_up "$SLOW_PID" "slow backend on $p" "http://127.0.0.1:$p/"
done
P2_EXITS=""
: >"$DIR/sigterm.jsonl"
for r in $(seq 1 "$SIGTERM_ROUNDS"); do
    start_proxy "$DIR/ringproxy-slow.toml" proxy-sigterm
    python3 "$HERE/soak_sigterm.py" "$PROXY_URL" "$PROXY_PID" --clients "$SIGTERM_CLIENTS" \
        --think-ms "$THINK_MS" >>"$DIR/sigterm.jsonl" 2>>"$DIR/sigterm.log" ||
        die "soak_sigterm.py failed: $(tail -n 5 "$DIR/sigterm.log")"
    set +e
    wait "$PROXY_PID"
    status=$?
    set -e
    P2_EXITS+="${P2_EXITS:+ }$status"
    log "phase 2 round $r: $(tail -n 1 "$DIR/sigterm.jsonl"), exit status $status"
done
stop_pid "$SLOW_PID"
# Totals over the rounds: started/failed before the signal, in flight at it, started/failed
# after it, the slowest exit, and the failures before the signal by kind.
read -r P2_BEFORE P2_BEFORE_FAILED P2_INFLIGHT P2_AFTER P2_AFTER_FAILED P2_EXIT_S P2_KINDS < <(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def total(part, field):
    return sum(r[part]["started"] if field == "started" else sum(r[part]["failed"].values()) for r in rows)
kinds = {}
for r in rows:
    for k, n in r["before_signal"]["failed"].items():
        kinds[k] = kinds.get(k, 0) + n
exits = [r["proxy_exit_s"] for r in rows]
print(total("before_signal", "started"), total("before_signal", "failed"),
      total("in_flight_at_signal", "started"), total("after_signal", "started"),
      total("after_signal", "failed"),
      "never" if None in exits else max(exits),
      ",".join(f"{k}={n}" for k, n in sorted(kinds.items())) or "-")
' "$DIR/sigterm.jsonl")
P2_EXIT_BAD=0
for status in $P2_EXITS; do
    ((status == 0)) || P2_EXIT_BAD=$((P2_EXIT_BAD + 1))
done
log "phase 2: $P2_BEFORE requests started before SIGTERM ($P2_INFLIGHT in flight), $P2_BEFORE_FAILED failed ($P2_KINDS); slowest exit ${P2_EXIT_S}s; exit statuses $P2_EXITS"

# ---- phase 3: memory over time ----------------------------------------------------------------

SAMPLES=$((SOAK_MINUTES * 60 / SAMPLE_SECONDS))
((SAMPLES >= 1)) || die "SAMPLE_SECONDS ($SAMPLE_SECONDS) is longer than the run ($SOAK_MINUTES min)"
log "phase 3: $SOAK_MINUTES min of wrk -t$THREADS -c$CONNS, RSS every ${SAMPLE_SECONDS}s ($SAMPLES samples), one swap and drain cycle per sample"
ADMIN_BAD=0
start_proxy "$DIR/ringproxy.toml" proxy-memory
RSS_START=$(rss_kib "$PROXY_PID")
# wrk runs a little past the last sample, so every sample is taken under load.
wrk -t"$THREADS" -c"$CONNS" -d"$((SAMPLES * SAMPLE_SECONDS + 5))s" --timeout 5s -s "$HERE/random_key.lua" \
    "$PROXY_URL" >"$DIR/wrk-memory.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
: >"$DIR/rss.tsv"
for i in $(seq 1 "$SAMPLES"); do
    sleep "$SAMPLE_SECONDS"
    kill -0 "$PROXY_PID" 2>/dev/null || die "the proxy died during phase 3"
    printf '%s\t%s\n' $((i * SAMPLE_SECONDS)) "$(rss_kib "$PROXY_PID")" >>"$DIR/rss.tsv"
    swap
    drain_cycle $((i % 4))
done
wait "$WRK_PID" || die "wrk failed: $(tail -n 5 "$DIR/wrk-memory.txt")"
read -r P3_REQ P3_BAD P3_SOCK < <(wrk_counts "$DIR/wrk-memory.txt")
P3_ADMIN_BAD=$ADMIN_BAD
stop_pid "$PROXY_PID"
read -r RSS_FIRST RSS_LAST RSS_MIN RSS_MAX < <(awk -F'\t' '
    NR == 1 { first = $2; min = $2; max = $2 }
    { last = $2; if ($2 < min) min = $2; if ($2 > max) max = $2 }
    END { print first, last, min, max }' "$DIR/rss.tsv")
# The warm baseline: the first sample at or after the warm-up (the last one if the run is
# shorter), and the largest sample from there on.
read -r WARM_AT RSS_WARM RSS_WARM_MAX < <(awk -F'\t' -v w="$RSS_WARMUP_SECONDS" '
    { t[NR] = $1; v[NR] = $2 }
    END {
        b = NR; for (i = 1; i <= NR; i++) if (t[i] >= w) { b = i; break }
        m = v[b]; for (i = b; i <= NR; i++) if (v[i] > m) m = v[i]
        print t[b], v[b], m
    }' "$DIR/rss.tsv")
log "phase 3: RSS first $RSS_FIRST KiB, last $RSS_LAST KiB, max $RSS_MAX KiB; $P3_REQ requests, $P3_BAD non-2xx, $P3_SOCK socket errors"

# ---- report -----------------------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict V1 "P1_BAD + P1_SOCK + P1_ADMIN_BAD == 0"
verdict V2 "P2_BEFORE_FAILED == 0 && P2_BEFORE > 0 && P2_EXIT_BAD == 0"
verdict V3 "RSS_WARM_MAX * 10 <= RSS_WARM * 11 && P3_BAD + P3_SOCK + P3_ADMIN_BAD == 0"
pct() { awk -v f="$1" -v m="$2" 'BEGIN { printf "%+.1f", f ? 100 * (m - f) / f : 0 }'; }
echo "## Soak: $(date -u '+%Y-%m-%d %H:%M UTC'), ringproxy $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores"
echo
echo "| phase | what ran | result | target |"
echo "|---|---|---|---|"
echo "| 1. churn under load | wrk -t$THREADS -c$CONNS -d${CHURN_SECONDS}s, random x-user-id; $CHURN_SWAPS join/leave swaps + $DRAIN_CYCLES drain/undrain cycles in ${churn_took}s (ring version 1 → $P1_VERSION) | $P1_REQ requests ($P1_RPS req/s), $P1_BAD non-2xx, $P1_SOCK socket errors; $P1_ADMIN_BAD admin calls answered otherwise than expected | 0 failed: $V1 |"
echo "| 2. SIGTERM under load | $SIGTERM_ROUNDS rounds: a fresh proxy, $SIGTERM_CLIENTS keep-alive clients pausing 0..${THINK_MS} ms between requests, backends answering in 0..${SLOW_MS} ms, SIGTERM after 3 s | $P2_BEFORE started before the signal ($P2_INFLIGHT of them in flight at it): $P2_BEFORE_FAILED failed ($P2_KINDS); after it: $P2_AFTER started, $P2_AFTER_FAILED refused/failed (expected); slowest exit ${P2_EXIT_S}s after SIGTERM, exit statuses $P2_EXITS | 0 failed before the signal: $V2 |"
echo "| 3. memory | wrk -t$THREADS -c$CONNS for $((SAMPLES * SAMPLE_SECONDS)) s, one swap + one drain cycle every ${SAMPLE_SECONDS}s | RSS at start $(mib "$RSS_START") MiB; under load first $(mib "$RSS_FIRST"), last $(mib "$RSS_LAST"), min $(mib "$RSS_MIN"), max $(mib "$RSS_MAX") MiB (max $(pct "$RSS_FIRST" "$RSS_MAX")% over first); warm at ${WARM_AT}s $(mib "$RSS_WARM") MiB, max after it $(mib "$RSS_WARM_MAX") MiB ($(pct "$RSS_WARM" "$RSS_WARM_MAX")%), last $(pct "$RSS_WARM" "$RSS_LAST")%; $P3_REQ requests, $P3_BAD non-2xx, $P3_SOCK socket errors, $P3_ADMIN_BAD admin misses | flat within 10% once warm: $V3 |"
echo
echo "SIGTERM rounds (soak_sigterm.py output, one line per round):"
echo
echo '```'
cat "$DIR/sigterm.jsonl"
echo '```'
echo
echo "RSS samples (seconds under load: KiB): $(awk -F'\t' '{ printf "%s%s:%s", (NR > 1 ? " " : ""), $1, $2 }' "$DIR/rss.tsv")"
((MET)) || {
    log "a target was missed; logs in $DIR (KEEP=1 keeps them)"
    exit 1
}
