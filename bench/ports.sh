# Free-port picking for the bench scripts (sourced, not run). Needs a `die` function.
# Ports come from below the kernel's ephemeral range, so no outgoing connection can hold them,
# and are checked free in /proc, so no extra tools are needed.

# True when no TCP socket uses local port $1.
port_free() {
    local hex
    hex=$(printf '%04X' "$1")
    ! grep -qE "^ *[0-9]+: [0-9A-F]+:${hex} " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPHEMERAL_LOW=32768
PORT_LOW=$((EPHEMERAL_LOW > 20000 ? 20000 : 10000))
PORT_SPAN=$((EPHEMERAL_LOW - PORT_LOW))
((PORT_SPAN >= 1000)) || PORT_SPAN=10000
TAKEN=" "

# Sets the variable named $1 to a free port not handed out before (no subshell, so TAKEN and
# RANDOM advance).
pick_port() {
    local p
    for _ in $(seq 500); do
        p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        if [[ $TAKEN != *" $p "* ]] && port_free "$p"; then
            TAKEN+="$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    die "no free port found"
}
