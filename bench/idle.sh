#!/usr/bin/env bash
# Memory per idle keep-alive client connection: each proxy in turn, in front of the same four
# nginx backends as compare.sh, gets N client connections that each make one request and then
# stay open and silent; the proxy's resident memory (VmRSS, nginx: its workers summed) before
# and after, per connection.
#
#   apt-get install -y nginx haproxy curl python3   # once
#   bench/idle.sh [ringproxy|ringproxy-epoll|ringproxy-b|nginx|haproxy ...]   # default: all but -b
#
# Knobs: CONNS=2000 (kept below the proxies' connection limits), RINGPROXY_BIN=path,
# RINGPROXY_BIN_B=path (a second build, as "ringproxy-b").
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CONNS=${CONNS:-2000}
export KEYSPACE=${KEYSPACE:-1000000}
PROXIES=("$@")
((${#PROXIES[@]})) || PROXIES=(ringproxy ringproxy-epoll nginx haproxy)

NAME=idle
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need_tools "nginx haproxy curl python3" nginx haproxy curl python3
ringproxy_bin
setup

rss_kb() { # pids... -> summed VmRSS in kB
    local sum=0 pid
    for pid in "$@"; do
        sum=$((sum + $(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")))
    done
    echo "$sum"
}

echo "| proxy | idle connections | RSS before MB | RSS with them MB | KiB per idle connection |"
echo "|---|---|---|---|---|"
for p in "${PROXIES[@]}"; do
    case $p in
    ringproxy | ringproxy-epoll | ringproxy-b)
        bin=$RINGPROXY_BIN
        [[ $p == ringproxy-b ]] && bin=${RINGPROXY_BIN_B:?RINGPROXY_BIN_B names the second build}
        # A connection limit above CONNS whatever the open-file limit says.
        start_proxy "$p" "\\nmax_connections = $((CONNS + 100))" "$bin"
        ;;
    nginx | haproxy) start_proxy "$p" ;;
    *) echo "idle: unknown proxy $p" >&2 && exit 1 ;;
    esac
    wait_up "$p"
    pids=$pid
    [[ $p == nginx ]] && pids=$(pgrep -P "$pid" | paste -sd' ' -)
    # shellcheck disable=SC2086 # several pids for nginx
    before=$(rss_kb $pids)
    # The clients hold their connections until told to let go (stdin closes).
    exec 3> >(python3 "$HERE/idle_clients.py" "$PORT" "$CONNS" >"$DIR/$p.clients")
    for _ in $(seq 300); do
        grep -q '^ready' "$DIR/$p.clients" 2>/dev/null && break
        grep -q '^error' "$DIR/$p.clients" 2>/dev/null && { cat "$DIR/$p.clients" >&2; exit 1; }
        sleep 0.1
    done
    grep -q '^ready' "$DIR/$p.clients" || { echo "idle: $CONNS connections to $p not up in 30 s" >&2; exit 1; }
    sleep 0.5
    # shellcheck disable=SC2086
    after=$(rss_kb $pids)
    exec 3>&-
    awk -v p="$p" -v n="$CONNS" -v b="$before" -v a="$after" \
        'BEGIN { printf "| %s | %d | %.1f | %.1f | %.1f |\n", p, n, b / 1024, a / 1024, (a - b) / n }'
    stop_pid "$pid"
done
