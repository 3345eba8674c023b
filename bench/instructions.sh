#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable where req/s on a
# shared machine is not. One proxy at a time runs under valgrind, single-threaded (ringproxy
# `workers = 1`, nginx `master_process off` with one worker, HAProxy `nbthread 1`), in front of
# the same four nginx backends as compare.sh, driven by `wrk -t1 -c8` with random keys.
# "ringproxy" runs the default config (the byte relay for HTTP/1) but with `io = "epoll"`:
# valgrind (3.19) keeps its lock while a thread waits in io_uring_enter, so a relay on io_uring
# stops the whole process under it. On io_uring the relay's own work is the same and the I/O
# layer's is smaller (compare.sh: user CPU per request 2.7 µs on io_uring, 3.5 on epoll), so
# this row bounds the default's from above. "ringproxy-hyper" is the same binary with
# `http1 = "hyper"` in [proxy].
#
#   apt-get install -y nginx haproxy wrk curl valgrind    # once
#   bench/instructions.sh [ringproxy|ringproxy-hyper|nginx|haproxy|l4-floor ...]  # default: the
#                             first four; l4-floor is compare.sh's bound (HAProxy in mode tcp)
#
# Knobs: DURATION=8s, RINGPROXY_BIN=path (else `cargo build --release --bin ringproxy`),
# KEEP=1 keeps the temp dir with the callgrind profiles (`callgrind_annotate DIR/NAME.out`).
# Startup is included in the count; over ~10k requests it adds well under 1 %.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${DURATION:-8s}
export KEYSPACE=${KEYSPACE:-1000000}
PROXIES=("$@")
((${#PROXIES[@]})) || PROXIES=(ringproxy ringproxy-hyper nginx haproxy)

NAME=instructions
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need_tools "nginx haproxy wrk curl valgrind" nginx haproxy wrk curl valgrind callgrind_annotate
if [[ " ${PROXIES[*]} " == *" ringproxy "* || " ${PROXIES[*]} " == *" ringproxy-hyper "* ]]; then
    ringproxy_bin
fi
setup

echo "| proxy | requests | instructions | instructions per request |"
echo "|---|---|---|---|"
for p in "${PROXIES[@]}"; do
    out="$DIR/$p.out"
    case $p in
    ringproxy | ringproxy-hyper)
        # See the top: io_uring hangs under valgrind.
        path='\nio = "epoll"'
        [[ $p == ringproxy-hyper ]] && path='\nhttp1 = "hyper"\nio = "epoll"'
        render ringproxy.toml.in | sed "s/^\\[proxy\\]/[proxy]\\nworkers = 1$path/" >"$DIR/$p.toml"
        RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$RINGPROXY_BIN" --config "$DIR/$p.toml" 2>"$DIR/$p.log" &
        ;;
    nginx)
        render nginx-proxy.conf.in >"$DIR/nginx-proxy.conf"
        valgrind --tool=callgrind --callgrind-out-file="$out" nginx -p "$DIR" -e "$DIR/nginx.error.log" \
            -c "$DIR/nginx-proxy.conf" -g 'daemon off; master_process off;' 2>"$DIR/$p.log" &
        ;;
    haproxy)
        render haproxy.cfg.in | sed 's/^\( *\)nbthread .*/\1nbthread 1/' >"$DIR/haproxy.cfg"
        valgrind --tool=callgrind --callgrind-out-file="$out" haproxy -f "$DIR/haproxy.cfg" -db 2>"$DIR/$p.log" &
        ;;
    l4-floor)
        render haproxy-tcp.cfg.in | sed 's/^\( *\)nbthread .*/\1nbthread 1/' >"$DIR/haproxy-tcp.cfg"
        valgrind --tool=callgrind --callgrind-out-file="$out" haproxy -f "$DIR/haproxy-tcp.cfg" -db 2>"$DIR/$p.log" &
        ;;
    *)
        echo "instructions: unknown proxy '$p' (have: ringproxy ringproxy-hyper nginx haproxy l4-floor)" >&2
        exit 1
        ;;
    esac
    pid=$!
    wait_up "$p"
    # Under `set -e -o pipefail` a failed pipeline in an assignment would end the script
    # without a word: each says what failed instead.
    requests=$(wrk -t1 -c8 -d"$DURATION" -s "$HERE/random_key.lua" "http://127.0.0.1:$PORT/" | awk '/requests in/ {print $1}') || {
        echo "instructions: wrk against $p failed (see $DIR/$p.log; KEEP=1 keeps it)" >&2
        exit 1
    }
    # Each stops cleanly on its own signal; callgrind writes its profile when the process exits
    # (slowly under valgrind: up to 10 s).
    if [[ $p == haproxy || $p == l4-floor ]]; then signal=TERM; else signal=INT; fi
    stop_pid "$pid" "$signal" 100
    total=$(callgrind_annotate "$out"* 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') || total=""
    [[ -n $total && ${requests:-0} -gt 0 ]] || {
        echo "instructions: no profile or no requests for $p (see $DIR/$p.log; KEEP=1 keeps it)" >&2
        exit 1
    }
    awk -v p="$p" -v n="$requests" -v t="$total" 'BEGIN { printf "| %s | %d | %d | %.0f |\n", p, n, t, t / n }'
done
