#!/usr/bin/env bash
# What each proxied request costs the kernel, counted rather than timed: syscalls (by name),
# context switches and wake-ups done by the proxy's threads (perf tracepoints), and TCP
# segments on the whole machine (nstat; everything here is on loopback). Same four nginx
# backends, configs and random keys as compare.sh; one proxy measured at a time, wrk -t2 -c64.
#
#   apt-get install -y nginx haproxy wrk curl linux-perf iproute2    # once
#   bench/syscalls.sh [ringproxy|ringproxy-hyper|ringproxy-epoll|nginx|haproxy|l4-floor ...]  # default: the
#                                                 first four; l4-floor is compare.sh's bound
#
# Knobs: DURATION=4 (seconds counted per proxy), RINGPROXY_BIN=path. perf needs root or
# kernel.perf_event_paranoid <= -1 for tracepoints. The counts slow the proxies down; the
# figures are per request, not per second.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${DURATION:-4}
export KEYSPACE=${KEYSPACE:-1000000}
PROXIES=("$@")
((${#PROXIES[@]})) || PROXIES=(ringproxy ringproxy-hyper nginx haproxy)

NAME=syscalls
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need_tools "nginx haproxy wrk curl linux-perf iproute2" nginx haproxy wrk curl perf nstat
ringproxy_bin
setup

echo "| proxy | syscalls | of which recvfrom + sendto/writev | epoll_wait | io_uring_enter | context switches | wake-ups done | TCP segments out (machine) |"
echo "|---|---|---|---|---|---|---|---|"
for p in "${PROXIES[@]}"; do
    case $p in
    ringproxy | ringproxy-hyper | ringproxy-epoll | nginx | haproxy | l4-floor) start_proxy "$p" ;;
    *) echo "syscalls: unknown proxy $p" >&2 && exit 1 ;;
    esac
    wait_up "$p"
    # nginx: its workers; the others: the process (perf follows its threads).
    pids=$pid
    [[ $p == nginx ]] && pids=$(pgrep -P "$pid" | paste -sd, -)
    wrk -t2 -c64 -d2s -s "$HERE/random_key.lua" "http://127.0.0.1:$PORT/" >/dev/null
    nstat -n
    perf stat -x, -o "$DIR/$p.perf" -e 'syscalls:sys_enter_*,context-switches,sched:sched_wakeup' \
        -p "$pids" -- sleep $((DURATION + 2)) &
    perf_pid=$!
    # perf attaches to every thread before the counted run starts.
    sleep 0.5
    wrk -t2 -c64 -d"${DURATION}s" -s "$HERE/random_key.lua" "http://127.0.0.1:$PORT/" >"$DIR/$p.wrk"
    wait "$perf_pid"
    segs=$(nstat | awk '$1 == "TcpOutSegs" { print $2 }')
    n=$(awk '/requests in/ { print $1 }' "$DIR/$p.wrk")
    awk -F, -v p="$p" -v n="$n" -v segs="${segs:-0}" '
        $3 ~ /syscalls:sys_enter_/ { all += $1; name = $3; sub(/.*sys_enter_/, "", name); by[name] += $1 }
        $3 == "context-switches" { cs = $1 }
        $3 == "sched:sched_wakeup" { wk = $1 }
        END {
            io = by["recvfrom"] + by["sendto"] + by["writev"] + by["read"] + by["write"]
            printf "| %s | %.2f | %.2f | %.3f | %.3f | %.3f | %.3f | %.2f |\n", p, all / n, io / n, by["epoll_wait"] / n, by["io_uring_enter"] / n, cs / n, wk / n, segs / n
        }' "$DIR/$p.perf"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
echo
echo "Per request (wrk's count over ${DURATION} s; perf counts from before to after it, so idle"
echo "wake-ups slightly inflate it). Syscalls, context switches and wake-ups are the proxy's own threads';"
echo "TCP segments are the machine's (client, proxy and backends)."
