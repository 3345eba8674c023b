# Shared by the bench scripts. Source it after setting NAME (for messages), HERE and ROOT.
# Every script:
#   need_tools "apt line" tool...   exit 1 naming what is missing
#   ringproxy_bin                   RINGPROXY_BIN, built with cargo unless set
#   stop_pid PID [SIGNAL] [TENTHS]  SIGNAL (TERM), up to TENTHS/10 s (~5 s), then KILL; reaped
#   cleanup                         (the EXIT trap) stops PIDS, removes DIR unless KEEP=1
# The ones that measure one proxy at a time in front of the four nginx backends
# (instructions.sh, syscalls.sh) also:
#   setup                           DIR, PIDS, B0..B3, PORT, ADMIN, the backends running
#   render TEMPLATE                 a config from bench/TEMPLATE on stdout
#   start_proxy PROXY [LINES] [BIN] starts ringproxy, ringproxy-hyper, ringproxy-epoll, nginx,
#                                   haproxy or l4-floor on PORT (LINES: more [proxy] lines for
#                                   ringproxy, e.g. '\nworkers = 1'; BIN: another ringproxy
#                                   build); sets pid
#   wait_up PROXY                   until the proxy on PORT answers, else its log and exit 1

need_tools() {
    local install=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "$NAME: missing $tool; install with: sudo apt-get install -y $install" >&2
            exit 1
        }
    done
}

ringproxy_bin() {
    if [[ -z ${RINGPROXY_BIN:-} ]]; then
        echo "$NAME: building ringproxy (cargo build --release --bin ringproxy)" >&2
        (cd "$ROOT" && cargo build --release --bin ringproxy >&2)
        RINGPROXY_BIN="$ROOT/target/release/ringproxy"
    fi
    [[ -x $RINGPROXY_BIN ]] || {
        echo "$NAME: no ringproxy binary at $RINGPROXY_BIN" >&2
        exit 1
    }
}

stop_pid() {
    local pid=$1 signal=${2:-TERM} tenths=${3:-50} _
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq "$tenths"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    # All asked at once, then each given its ~5 s.
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "$NAME: kept $DIR" >&2
    else
        rm -rf "$DIR"
    fi
}

render() {
    sed -e "s|@DIR@|$DIR|g" -e "s|@B0@|$B0|g" -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" \
        -e "s|@B3@|$B3|g" -e "s|@PORT@|$PORT|g" -e "s|@ADMIN@|$ADMIN|g" "$HERE/$1"
}

setup() {
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-$NAME.XXXXXX")
    mkdir -p "$DIR/tmp"
    PIDS=()
    trap cleanup EXIT
    # shellcheck source=ports.sh
    source "$HERE/ports.sh"
    local v
    for v in B0 B1 B2 B3 PORT ADMIN; do
        pick_port "$v"
    done
    render nginx-backends.conf.in >"$DIR/backends.conf"
    nginx -p "$DIR" -e "$DIR/backends.error.log" -c "$DIR/backends.conf" -g 'daemon off;' \
        2>>"$DIR/backends.stderr" &
    PIDS+=($!)
}

start_proxy() {
    local p=$1 lines=${2:-} bin=${3:-$RINGPROXY_BIN}
    case $p in
    ringproxy*)
        [[ $p == ringproxy-hyper ]] && lines+='\nhttp1 = "hyper"'
        [[ $p == ringproxy-epoll ]] && lines+='\nio = "epoll"'
        render ringproxy.toml.in | sed "s/^\\[proxy\\]/[proxy]$lines/" >"$DIR/$p.toml"
        RUST_LOG=warn "$bin" --config "$DIR/$p.toml" 2>"$DIR/$p.log" &
        ;;
    nginx)
        render nginx-proxy.conf.in >"$DIR/nginx-proxy.conf"
        nginx -p "$DIR" -e "$DIR/nginx.error.log" -c "$DIR/nginx-proxy.conf" -g 'daemon off;' 2>"$DIR/$p.log" &
        ;;
    haproxy)
        render haproxy.cfg.in >"$DIR/haproxy.cfg"
        haproxy -f "$DIR/haproxy.cfg" -db 2>"$DIR/$p.log" &
        ;;
    l4-floor)
        render haproxy-tcp.cfg.in >"$DIR/haproxy-tcp.cfg"
        haproxy -f "$DIR/haproxy-tcp.cfg" -db 2>"$DIR/$p.log" &
        ;;
    *) echo "$NAME: unknown proxy $p" >&2 && exit 1 ;;
    esac
    pid=$!
}

wait_up() {
    local _
    for _ in $(seq 150); do
        curl -fsS -m 2 -o /dev/null -H 'x-user-id: ping' "http://127.0.0.1:$PORT/" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "$NAME: $1 did not come up" >&2
    tail -n 20 "$DIR/$1.log" >&2 2>/dev/null || true
    exit 1
}
