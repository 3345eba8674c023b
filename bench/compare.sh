#!/usr/bin/env bash
# Proxy load comparison: ringproxy vs nginx (`hash $http_x_user_id consistent`) vs HAProxy
# (`balance hdr(x-user-id)` + `hash-type consistent`) over the same four backends, plus
# wrk straight at one backend as the ceiling. ringproxy runs twice, one process per HTTP/1
# server path: "ringproxy" with the default config (the byte relay, on io_uring where the kernel
# allows it) and "ringproxy-hyper", the same binary with `http1 = "hyper"` in [proxy]; and
# "ringproxy-epoll", the relay with `io = "epoll"` (what it runs on where io_uring is refused). "l4-floor" is HAProxy in `mode tcp`, passing
# bytes between paired connections without reading them: not a candidate (it cannot route by
# key), but the bound on what any HTTP proxy can reach here with the same socket calls.
# "l4-epoll", "l4-uring" and "l4-hosted" (only when named in TARGETS) are one small layer-4
# relay (bench/l4relay.c, built here with gcc and liburing) in its I/O modes: readiness with
# recv/send, as every proxy here does; io_uring; io_uring waited on through epoll, as a ring
# inside an epoll event loop (tokio's) would be. Their ratios size the io_uring lever.
# "rt-tokio", "rt-monoio" and "rt-monoio-epoll" (also only when named) are the same relay in
# Rust (bench/rtrelay, built here with cargo) on tokio and on monoio's io_uring and epoll
# drivers: does an off-the-shelf io_uring runtime keep the lever?
#
#   apt-get install -y nginx haproxy wrk curl      # once, on a fresh Debian/Ubuntu machine
#   bench/compare.sh                               # markdown on stdout, progress on stderr
#
# Everything listens on 127.0.0.1 at free high ports; nginx and HAProxy run as the current user
# with their configs, pids and logs in a temp dir; every process started here is stopped on exit.
# Runs are interleaved (each round visits every target; the order rotates each round and
# alternates direction) and the table shows the median over the rounds. Knobs (environment):
#   ROUNDS=5 DURATION=5s THREADS=2 CONNS=64 KEYSPACE=1000000 WARMUP=2s
#   RINGPROXY_BIN=path   use this binary instead of `cargo build --release --bin ringproxy`
#   RINGPROXY_BIN_B=path also run this second ringproxy binary as target "ringproxy-b" (A/B of
#                        two builds, same config, same rounds)
#   TARGETS="ringproxy ringproxy-hyper"   measure only these (of direct ringproxy
#                        ringproxy-hyper ringproxy-epoll ringproxy-b nginx haproxy l4-floor, and
#                        l4-epoll l4-uring
#                        l4-hosted rt-tokio rt-monoio rt-monoio-epoll which run only when named);
#                        every process is still started for the sanity
#                        check
#   KEEP=1               keep the temp dir (configs, logs, raw wrk outputs)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2s}
export KEYSPACE=${KEYSPACE:-1000000}

log() { echo "compare: $*" >&2; }
die() {
    echo "compare: error: $*" >&2
    exit 1
}

# ---- tools ----------------------------------------------------------------------------------

NAME=compare
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need_tools "nginx haproxy wrk curl" nginx haproxy wrk curl awk sed
ringproxy_bin
BIN=$RINGPROXY_BIN
BIN_B=${RINGPROXY_BIN_B:-}
[[ -z $BIN_B || -x $BIN_B ]] || die "no ringproxy binary at $BIN_B"

# ---- temp dir, process bookkeeping, cleanup ---------------------------------------------------

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-compare.XXXXXX")
mkdir -p "$DIR/tmp"
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- free ports -------------------------------------------------------------------------------

# shellcheck source=ports.sh
source "$HERE/ports.sh"

for v in B0 B1 B2 B3 RP_PORT RP_ADMIN RPH_PORT RPH_ADMIN RPE_PORT RPE_ADMIN RPB_PORT RPB_ADMIN NG_PORT HA_PORT L4_PORT \
    LE_PORT LU_PORT LH_PORT RT_PORT RM_PORT RE_PORT; do
    pick_port "$v"
done

render() { # template port-for-@PORT@ output
    sed -e "s|@DIR@|$DIR|g" -e "s|@B0@|$B0|g" -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" \
        -e "s|@B3@|$B3|g" -e "s|@PORT@|$2|g" -e "s|@ADMIN@|$RP_ADMIN|g" "$HERE/$1" >"$3"
}
render nginx-backends.conf.in "" "$DIR/backends.conf"
render nginx-proxy.conf.in "$NG_PORT" "$DIR/nginx-proxy.conf"
render haproxy.cfg.in "$HA_PORT" "$DIR/haproxy.cfg"
render haproxy-tcp.cfg.in "$L4_PORT" "$DIR/haproxy-tcp.cfg"
render ringproxy.toml.in "$RP_PORT" "$DIR/ringproxy.toml"
render ringproxy.toml.in "$RPH_PORT" "$DIR/ringproxy-hyper.toml"
sed -i -e "s|:$RP_ADMIN\"|:$RPH_ADMIN\"|" -e 's/^\[proxy\]/[proxy]\nhttp1 = "hyper"/' "$DIR/ringproxy-hyper.toml"
grep -q '^http1 = "hyper"' "$DIR/ringproxy-hyper.toml" || die "no [proxy] section in ringproxy.toml.in"
render ringproxy.toml.in "$RPE_PORT" "$DIR/ringproxy-epoll.toml"
sed -i -e "s|:$RP_ADMIN\"|:$RPE_ADMIN\"|" -e 's/^\[proxy\]/[proxy]\nio = "epoll"/' "$DIR/ringproxy-epoll.toml"
render ringproxy.toml.in "$RPB_PORT" "$DIR/ringproxy-b.toml"
sed -i "s|:$RP_ADMIN\"|:$RPB_ADMIN\"|" "$DIR/ringproxy-b.toml"

# ---- start everything -------------------------------------------------------------------------

nginx -p "$DIR" -e "$DIR/backends.error.log" -c "$DIR/backends.conf" -g 'daemon off;' \
    2>>"$DIR/backends.stderr" &
PID_BACKENDS=$!
PIDS+=("$PID_BACKENDS")

RUST_LOG=warn "$BIN" --config "$DIR/ringproxy.toml" 2>>"$DIR/ringproxy.log" &
PID_RINGPROXY=$!
PIDS+=("$PID_RINGPROXY")

RUST_LOG=warn "$BIN" --config "$DIR/ringproxy-hyper.toml" 2>>"$DIR/ringproxy-hyper.log" &
PID_RINGPROXY_HYPER=$!
PIDS+=("$PID_RINGPROXY_HYPER")

RUST_LOG=warn "$BIN" --config "$DIR/ringproxy-epoll.toml" 2>>"$DIR/ringproxy-epoll.log" &
PID_RINGPROXY_EPOLL=$!
PIDS+=("$PID_RINGPROXY_EPOLL")

if [[ -n $BIN_B ]]; then
    RUST_LOG=warn "$BIN_B" --config "$DIR/ringproxy-b.toml" 2>>"$DIR/ringproxy-b.log" &
    PID_RINGPROXY_B=$!
    PIDS+=("$PID_RINGPROXY_B")
fi

nginx -p "$DIR" -e "$DIR/nginx-proxy.error.log" -c "$DIR/nginx-proxy.conf" -g 'daemon off;' \
    2>>"$DIR/nginx-proxy.stderr" &
PID_NGINX=$!
PIDS+=("$PID_NGINX")

haproxy -f "$DIR/haproxy.cfg" -db 2>>"$DIR/haproxy.log" &
PID_HAPROXY=$!
PIDS+=("$PID_HAPROXY")

haproxy -f "$DIR/haproxy-tcp.cfg" -db 2>>"$DIR/haproxy-tcp.log" &
PID_L4=$!
PIDS+=("$PID_L4")

# The layer-4 relays that size the io_uring lever: built and started only when asked for.
declare -A RELAY_PORT=([l4-epoll]=$LE_PORT [l4-uring]=$LU_PORT [l4-hosted]=$LH_PORT
    [rt-tokio]=$RT_PORT [rt-monoio]=$RM_PORT [rt-monoio-epoll]=$RE_PORT) PID_RELAY=()
L4RELAY=()
for t in l4-epoll l4-uring l4-hosted rt-tokio rt-monoio rt-monoio-epoll; do
    [[ " ${TARGETS:-} " == *" $t "* ]] && L4RELAY+=("$t")
done
if [[ " ${L4RELAY[*]} " == *" rt-"* ]]; then
    log "building bench/rtrelay (cargo build --release)"
    (cd "$HERE/rtrelay" && cargo build --release >&2) || die "cannot build bench/rtrelay"
fi
if [[ " ${L4RELAY[*]} " == *" l4-"* ]]; then
    need_tools "gcc liburing-dev" gcc
    gcc -O2 -o "$DIR/l4relay" "$HERE/l4relay.c" -luring -lpthread 2>>"$DIR/l4relay.log" ||
        die "cannot build bench/l4relay.c (apt-get install -y gcc liburing-dev; see $DIR/l4relay.log)"
fi
for t in "${L4RELAY[@]}"; do
    case $t in
    l4-*) relay=("$DIR/l4relay" "${t#l4-}") ;;
    rt-*) relay=("$HERE/rtrelay/target/release/rtrelay" "${t#rt-}") ;;
    esac
    "${relay[@]}" "${RELAY_PORT[$t]}" "$THREADS" "$B0" "$B1" "$B2" "$B3" 2>>"$DIR/$t.log" &
    PID_RELAY[$t]=$!
    PIDS+=("$!")
done

declare -A URL=(
    [direct]="http://127.0.0.1:$B0/"
    [ringproxy]="http://127.0.0.1:$RP_PORT/"
    [ringproxy-hyper]="http://127.0.0.1:$RPH_PORT/"
    [ringproxy-epoll]="http://127.0.0.1:$RPE_PORT/"
    [nginx]="http://127.0.0.1:$NG_PORT/"
    [haproxy]="http://127.0.0.1:$HA_PORT/"
    [l4-floor]="http://127.0.0.1:$L4_PORT/"
)
declare -A PID_OF=([direct]=$PID_BACKENDS [ringproxy]=$PID_RINGPROXY [ringproxy-hyper]=$PID_RINGPROXY_HYPER
    [ringproxy-epoll]=$PID_RINGPROXY_EPOLL [nginx]=$PID_NGINX [haproxy]=$PID_HAPROXY [l4-floor]=$PID_L4)
ALL=(direct ringproxy ringproxy-hyper ringproxy-epoll nginx haproxy l4-floor)
if [[ -n $BIN_B ]]; then
    URL[ringproxy-b]="http://127.0.0.1:$RPB_PORT/"
    PID_OF[ringproxy-b]=$PID_RINGPROXY_B
    ALL=(direct ringproxy ringproxy-hyper ringproxy-epoll ringproxy-b nginx haproxy l4-floor)
fi
for t in "${L4RELAY[@]}"; do
    URL[$t]="http://127.0.0.1:${RELAY_PORT[$t]}/"
    PID_OF[$t]=${PID_RELAY[$t]}
    ALL+=("$t")
done
read -r -a TARGETS <<<"${TARGETS:-${ALL[*]}}"
for t in "${TARGETS[@]}"; do
    [[ -n ${URL[$t]:-} ]] || die "unknown target '$t' (have: ${ALL[*]})"
done

for t in "${ALL[@]}"; do
    ok=0
    for _ in $(seq 100); do
        kill -0 "${PID_OF[$t]}" 2>/dev/null || break
        if curl -fsS -m 1 -o /dev/null -H 'x-user-id: ping' "${URL[$t]}" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.1
    done
    if ((!ok)); then
        tail -n 20 "$DIR"/*.log "$DIR"/*.stderr >&2 2>/dev/null || true
        die "$t did not come up at ${URL[$t]}"
    fi
done
log "all up in $DIR (backends $B0 $B1 $B2 $B3; ringproxy $RP_PORT, ringproxy-hyper $RPH_PORT, nginx $NG_PORT, haproxy $HA_PORT, l4-floor $L4_PORT)"

# ---- sanity: every proxy routes by key --------------------------------------------------------

for t in "${ALL[@]:1}"; do
    [[ $t == l4-* || $t == rt-* ]] && continue # route connections, not keys
    declare -A seen=()
    for k in $(seq 1 40); do
        a=$(curl -fsS -m 2 -H "x-user-id: user-$k" "${URL[$t]}") || die "$t failed for user-$k"
        b=$(curl -fsS -m 2 -H "x-user-id: user-$k" "${URL[$t]}") || die "$t failed for user-$k"
        [[ $a =~ ^backend-[0-3]$ ]] || die "$t answered '$a' for user-$k"
        [[ $a == "$b" ]] || die "$t sent user-$k to $a then to $b"
        seen[$a]=1
    done
    ((${#seen[@]} >= 3)) || die "$t sent 40 keys to only ${#seen[@]} backend(s)"
    log "sanity: $t routes 40 keys stably over ${#seen[@]} backends (user-1 -> $(curl -fsS -m 2 -H 'x-user-id: user-1' "${URL[$t]}"))"
    unset seen
done

# Both server paths (and both I/O models) share the affinity code and the ring: every key must
# land on the same backend.
for other in ringproxy-hyper ringproxy-epoll; do
    for k in $(seq 1 40); do
        a=$(curl -fsS -m 2 -H "x-user-id: user-$k" "${URL[ringproxy]}") || die "ringproxy failed for user-$k"
        b=$(curl -fsS -m 2 -H "x-user-id: user-$k" "${URL[$other]}") || die "$other failed for user-$k"
        [[ $a == "$b" ]] || die "user-$k went to $a through ringproxy but to $b through $other"
    done
    log "sanity: ringproxy and $other route 40 keys to the same backends"
done

# ---- measuring --------------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Direct children of $1 (nginx workers), from /proc.
children() {
    local parent=$1 f s pid
    for f in /proc/[0-9]*/stat; do
        s=$(cat "$f" 2>/dev/null) || continue
        pid=${s%% *}
        s=${s##*) }
        # after "pid (comm) ": state ppid ...
        set -- $s
        [[ $2 == "$parent" ]] && echo "$pid"
    done
    return 0
}

# The process and its children (nginx master + workers; ringproxy and HAProxy are one process).
family() { echo "$1"; children "$1"; }

# CPU ticks used so far by $1 and its children: "user system".
cpu_ticks() {
    local user=0 sys=0 p s
    for p in $(family "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        set -- $s
        user=$((user + ${12}))
        sys=$((sys + ${13}))
    done
    echo "$user $sys"
}

# Peak RSS (VmHWM) summed over $1 and its children, in KiB.
peak_rss_kib() {
    local total=0 p v
    for p in $(family "$1"); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

seconds() { # "5s" / "500ms" / "1m" -> seconds
    case $1 in
    *ms) awk -v v="${1%ms}" 'BEGIN {print v / 1000}' ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *) echo "$1" ;;
    esac
}
DUR_S=$(seconds "$DURATION")

run_wrk() { # target duration outfile
    wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency -s "$HERE/random_key.lua" "${URL[$1]}" >"$3" 2>&1
}

RESULTS="$DIR/results.tsv"
: >"$RESULTS"

log "warm-up: ${WARMUP} per target"
for t in "${TARGETS[@]}"; do
    run_wrk "$t" "$WARMUP" "$DIR/warmup-$t.txt"
done

log "$ROUNDS rounds x ${#TARGETS[@]} targets x $DURATION (wrk -t$THREADS -c$CONNS, keys user-1..$KEYSPACE)"
for r in $(seq 1 "$ROUNDS"); do
    n=${#TARGETS[@]}
    for i in $(seq 0 $((n - 1))); do
        # Odd rounds walk the list forwards, even rounds backwards, both from a start that
        # moves each round: no target always follows the same other one.
        if ((r % 2)); then k=$(((r - 1 + i) % n)); else k=$(((r - 1 + n - 1 - i) % n)); fi
        t=${TARGETS[$k]}
        out="$DIR/wrk-$t-$r.txt"
        read -r pu0 ps0 < <(cpu_ticks "${PID_OF[$t]}")
        read -r bu0 bs0 < <(cpu_ticks "$PID_BACKENDS")
        run_wrk "$t" "$DURATION" "$out"
        read -r pu1 ps1 < <(cpu_ticks "${PID_OF[$t]}")
        read -r bu1 bs1 < <(cpu_ticks "$PID_BACKENDS")
        awk -v t="$t" -v r="$r" -v tck="$CLK_TCK" -v dur="$DUR_S" \
            -v pu=$((pu1 - pu0)) -v ps=$((ps1 - ps0)) -v bc=$((bu1 - bu0 + bs1 - bs0)) '
            function ms(v) {
                if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
                if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
                if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
                if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
                return v + 0
            }
            /^Requests\/sec:/ { rps = $2 }
            /^ +99%/ { p99 = ms($2) }
            /Non-2xx or 3xx responses:/ { bad += $NF }
            /Socket errors:/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
            END {
                if (rps == "") rps = 0
                # proxy cores used; for "direct" the proxy *is* the backends
                cores = (pu + ps) / tck / dur
                n = rps * dur # requests in the run
                us = n > 0 ? 1e6 / tck / n : 0 # microseconds of CPU per request, per tick
                printf "%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t%d\t%.1f\t%.1f\t%.1f\n", t, r, rps, p99, cores, bc / tck / dur, bad, (pu + ps) * us, pu * us, ps * us
            }' "$out" >>"$RESULTS"
        log "round $r $(tail -n 1 "$RESULTS" | awk -F'\t' '{printf "%-15s %10.0f req/s  p99 %7.3f ms  proxy %.2f cores (%.1f us/req)  backends %.2f cores  errors %d", $1, $3, $4, $5, $8, $6, $7}')"
    done
done

# ---- report -----------------------------------------------------------------------------------

spread() { # numbers on stdin -> "median min max", nothing for none
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit
        print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}
median() { # column target
    local m
    read -r m _ < <(awk -F'\t' -v c="$1" -v t="$2" '$1 == t { print $c }' "$RESULTS" | spread)
    echo "${m:-0}"
}
errors() { awk -F'\t' -v t="$1" '$1 == t { s += $7 } END { print s + 0 }' "$RESULTS"; }

declare -A RPS P99 CPU US USR SYS RSS
for t in "${TARGETS[@]}"; do
    RPS[$t]=$(median 3 "$t")
    P99[$t]=$(median 4 "$t")
    CPU[$t]=$(median 5 "$t")
    US[$t]=$(median 8 "$t")
    USR[$t]=$(median 9 "$t")
    SYS[$t]=$(median 10 "$t")
done
for t in "${TARGETS[@]}"; do
    RSS[$t]=$(peak_rss_kib "${PID_OF[$t]}")
done
BACKEND_CPU=$(awk -F'\t' '$1 != "direct" { s += $6; n++ } END { if (n) printf "%.2f", s / n }' "$RESULTS")

echo "## Proxy comparison: $ROUNDS interleaved rounds of wrk -t$THREADS -c$CONNS -d$DURATION --latency, random x-user-id from $KEYSPACE keys"
echo
echo "| target | median req/s | median p99 ms | proxy CPU cores | proxy CPU µs/req (user + sys) | peak RSS MB | errors (all rounds) |"
echo "|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
    label=$t
    [[ $t == direct ]] && label="direct to one backend (ceiling)"
    [[ $t == ringproxy ]] && label="ringproxy (default config)"
    [[ $t == ringproxy-hyper ]] && label="ringproxy-hyper (http1 = \"hyper\")"
    [[ $t == ringproxy-epoll ]] && label="ringproxy-epoll (io = \"epoll\")"
    [[ $t == l4-floor ]] && label="l4-floor (HAProxy mode tcp, no HTTP: the bound)"
    [[ $t == l4-epoll ]] && label="l4-epoll (bench/l4relay.c, epoll + recv/send)"
    [[ $t == l4-uring ]] && label="l4-uring (bench/l4relay.c, io_uring)"
    [[ $t == l4-hosted ]] && label="l4-hosted (bench/l4relay.c, io_uring waited on through epoll)"
    [[ $t == rt-tokio ]] && label="rt-tokio (bench/rtrelay, tokio)"
    [[ $t == rt-monoio ]] && label="rt-monoio (bench/rtrelay, monoio on io_uring)"
    [[ $t == rt-monoio-epoll ]] && label="rt-monoio-epoll (bench/rtrelay, monoio on epoll)"
    awk -v l="$label" -v r="${RPS[$t]}" -v p="${P99[$t]}" -v c="${CPU[$t]}" -v u="${US[$t]}" -v uu="${USR[$t]}" -v us="${SYS[$t]}" -v m="${RSS[$t]}" -v e="$(errors "$t")" \
        'BEGIN { printf "| %s | %.0f | %.2f | %.2f | %.1f (%.1f + %.1f) | %.1f | %d |\n", l, r, p, c, u, uu, us, m / 1024, e }'
done
echo
has() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
if has ringproxy && has nginx && has haproxy; then
awk -v rp="${RPS[ringproxy]}" -v ng="${RPS[nginx]}" -v ha="${RPS[haproxy]}" \
    -v prp="${P99[ringproxy]}" -v png="${P99[nginx]}" -v pha="${P99[haproxy]}" \
    -v urp="${US[ringproxy]}" -v ung="${US[nginx]}" -v uha="${US[haproxy]}" 'BEGIN {
    printf "- throughput ringproxy/nginx = %.3f (target >= 1.10: %s)\n", rp / ng, (rp / ng >= 1.10 ? "met" : "missed")
    printf "- throughput ringproxy/HAProxy = %.3f (target >= 1.10: %s)\n", rp / ha, (rp / ha >= 1.10 ? "met" : "missed")
    printf "- p99 ringproxy %.2f ms vs nginx %.2f ms, HAProxy %.2f ms (target <= both: %s)\n", prp, png, pha, (prp <= png && prp <= pha ? "met" : "missed")
    printf "- CPU per request ringproxy/nginx = %.3f, ringproxy/HAProxy = %.3f (target < nginx: %s)\n", urp / ung, urp / uha, (urp < ung ? "met" : "missed")
}'
fi
# The same ratio round by round: each round measures every target within a minute, so a
# round's ratio is less exposed to the machine's load drifting over the run than the medians'.
paired() { # column target-a target-b -> "median (min-max)" of a's figure over b's, per round
    awk -F'\t' -v c="$1" -v a="$2" -v b="$3" '$1 == a { x[$2] = $c } $1 == b { y[$2] = $c }
        END { for (r in x) if (r in y && y[r] > 0) print x[r] / y[r] }' "$RESULTS" | spread |
        awk '{ printf "%.3f (%.3f-%.3f)", $1, $2, $3 } END { if (NR == 0) printf "n/a" }'
}
if has ringproxy && has nginx && has haproxy; then
    echo "- per round (informative; the targets above read the medians): req/s ringproxy/nginx $(paired 3 ringproxy nginx), ringproxy/HAProxy $(paired 3 ringproxy haproxy); p99 ringproxy/nginx $(paired 4 ringproxy nginx), ringproxy/HAProxy $(paired 4 ringproxy haproxy)"
fi
if has ringproxy && has nginx && has haproxy && has direct; then
awk -v rp="${RPS[ringproxy]}" -v ng="${RPS[nginx]}" -v ha="${RPS[haproxy]}" -v d="${RPS[direct]}" 'BEGIN {
    printf "- ceiling: ringproxy reaches %.1f%% of direct-to-backend req/s (nginx %.1f%%, HAProxy %.1f%%)\n", 100 * rp / d, 100 * ng / d, 100 * ha / d
}'
fi
if has ringproxy && has nginx && has l4-floor; then
    awk -v rp="${RPS[ringproxy]}" -v ng="${RPS[nginx]}" -v l4="${RPS[l4-floor]}" \
        -v urp="${US[ringproxy]}" -v ung="${US[nginx]}" -v ul4="${US[l4-floor]}" 'BEGIN {
        printf "- floor: the layer-4 relay makes %.3f x nginx req/s at %.3f x its CPU per request; ringproxy makes %.3f x the floor req/s at %.2f x its CPU per request\n", l4 / ng, ul4 / ung, rp / l4, urp / ul4
    }'
fi
if has l4-epoll && has l4-uring; then
    awk -v e="${RPS[l4-epoll]}" -v u="${RPS[l4-uring]}" -v ue="${US[l4-epoll]}" -v uu="${US[l4-uring]}" 'BEGIN {
        printf "- io_uring lever: the same layer-4 relay makes %.3f x the req/s with io_uring at %.3f x the CPU per request (%.1f vs %.1f µs)", u / e, uu / ue, uu, ue
    }'
    echo "; per round: req/s $(paired 3 l4-uring l4-epoll), CPU per request $(paired 8 l4-uring l4-epoll)"
fi
if has rt-tokio && has rt-monoio; then
    echo "- a Rust io_uring runtime: rt-monoio makes $(paired 3 rt-monoio rt-tokio) x rt-tokio's req/s at $(paired 8 rt-monoio rt-tokio) x its CPU per request (per round)"
fi
if has l4-epoll && has l4-hosted; then
    echo "- io_uring hosted in an epoll loop: $(paired 3 l4-hosted l4-epoll) x the epoll relay's req/s, $(paired 8 l4-hosted l4-epoll) x its CPU per request (per round)"
fi
if has ringproxy && has ringproxy-hyper; then
    awk -v a="${RPS[ringproxy]}" -v b="${RPS[ringproxy-hyper]}" -v ua="${US[ringproxy]}" -v ub="${US[ringproxy-hyper]}" \
        -v pa="${P99[ringproxy]}" -v pb="${P99[ringproxy-hyper]}" 'BEGIN {
        printf "- default (relay) vs hyper path: ringproxy/ringproxy-hyper throughput = %.3f, CPU per request = %.3f, p99 %.2f vs %.2f ms\n", a / b, ua / ub, pa, pb
    }'
fi
if has ringproxy && has ringproxy-epoll; then
    echo "- relay on io_uring vs on epoll: ringproxy/ringproxy-epoll req/s $(paired 3 ringproxy ringproxy-epoll), CPU per request $(paired 8 ringproxy ringproxy-epoll) (per round)"
fi
if has ringproxy && has ringproxy-b; then
    awk -v a="${RPS[ringproxy]}" -v b="${RPS[ringproxy-b]}" -v ua="${US[ringproxy]}" -v ub="${US[ringproxy-b]}" \
        -v pa="$BIN" -v pb="$BIN_B" 'BEGIN {
        printf "- A/B: ringproxy-b/ringproxy throughput = %.3f, CPU per request = %.3f (ringproxy = %s, ringproxy-b = %s)\n", b / a, ub / ua, pa, pb
    }'
fi
echo "- backends' CPU during proxied runs: $BACKEND_CPU cores on average; wrk, the backends and the proxy share the machine's $(nproc) cores"
echo "- proxy CPU: user+system time of the proxy's processes during its runs (medians over rounds); µs/req is the"
echo "  CPU cost per request, which depends less on what else the machine is doing than req/s does. Direct row: the backends."
echo "- peak RSS: VmHWM of the process over the whole run, warm-up and sanity checks included (nginx: master +"
echo "  workers summed; direct row: the backends' nginx)"
echo
echo "Per-round results (target, round, req/s, p99 ms, proxy cores, backend cores, errors, proxy CPU µs/req, user, sys):"
echo
echo '```'
cat "$RESULTS"
echo '```'
