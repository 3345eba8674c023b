#!/usr/bin/env bash
# Hot keys and warm-up (issue 15), measured with real processes on 127.0.0.1.
#
#   apt-get install -y varnish curl   # once; varnish only for the "join" part
#   bench/balance.sh                  # both parts: markdown on stdout, progress on stderr
#   bench/balance.sh bound            # only bounded loads (~2 min after the build)
#   bench/balance.sh join             # only the Varnish join (~11 min)
#
# Part "bound": four backends (examples/slow_backend.rs: 5 ms per request, at most SLOTS served
# at once each, the rest wait; each counts its own requests in flight, exactly) behind
# ringproxy with `[affinity] key = ["path"]` and `debug_headers = true`. examples/zipf_load.rs
# sends CONNS closed-loop connections of GET /k/<key>: one key at 30 % of requests, the rest
# Zipf(1.1) over 100k keys, fixed seed. Configs: off, `bound = BOUND` + `spread = "any"`,
# `bound = BOUND` + `spread = "hot"`; ringproxy restarts for each run, gets WARM_REQUESTS
# requests (another seed) to fill its hot-key sketch, then the backends' counters are reset
# and REQUESTS requests are measured. Reported: each backend's mean and peak in flight, the
# share of requests of each key class answered by a backend other than the key's owner (owners
# from ringproxy::ring::Ring over the same ids at the default vnodes), p50/p99 latency.
#
# Part "join": one origin (slow_backend with `Cache-Control: max-age=300`, counting requests
# per 100 ms) behind five Varnish caches (`varnishd -F -s malloc,64m`), four of them behind
# ringproxy. zipf_load first sends every key once (`--sweep`: the four caches then hold all of
# them, so the origin sees no first-time misses), then RATE requests/s of the same key mix
# (JOIN_CONNS connections, fixed seed). After BEFORE seconds a fifth Varnish joins through the
# admin API (PUT /backends/cache-4) and the load goes on for AFTER + TAIL seconds. Everything
# starts fresh (empty caches) for each run. Reported for the AFTER seconds after the join:
# origin requests per second, the busiest second, and the hit ratio 1 − origin requests /
# client requests; with and without `warmup = WARMUP`.
#
# Each part runs ROUNDS rounds; a round runs every config once, the order rotating and
# alternating direction between rounds; tables show medians over rounds. Knobs (environment):
#   ROUNDS=3 SEED=1 DELAY_MS=5 KEYS=100000
#   bound: CONNS=32 SLOTS=8 REQUESTS=20000 WARM_REQUESTS=3000 BOUND=1.25
#   join:  RATE=1000 JOIN_CONNS=16 BEFORE=20 AFTER=30 TAIL=10 WARMUP=30s (priming uses CONNS)
#   RINGPROXY_BIN=path  skip `cargo build --release` of ringproxy (the examples are still built)
#   KEEP=1              keep the temp dir (configs, logs, per-request TSVs)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-1}
DELAY_MS=${DELAY_MS:-5}
CONNS=${CONNS:-32}
SLOTS=${SLOTS:-8}
REQUESTS=${REQUESTS:-20000}
WARM_REQUESTS=${WARM_REQUESTS:-3000}
BOUND=${BOUND:-1.25}
RATE=${RATE:-1000}
JOIN_CONNS=${JOIN_CONNS:-16}
BEFORE=${BEFORE:-20}
AFTER=${AFTER:-30}
TAIL=${TAIL:-10}
WARMUP=${WARMUP:-30s}
KEYS=${KEYS:-100000}
PARTS=("$@")
((${#PARTS[@]})) || PARTS=(bound join)

log() { echo "balance: $*" >&2; }
die() {
    echo "balance: error: $*" >&2
    exit 1
}

for p in "${PARTS[@]}"; do
    [[ $p == bound || $p == join ]] || die "unknown part '$p' (have: bound join)"
done
want() { [[ " ${PARTS[*]} " == *" $1 "* ]]; }

# ---- tools ----------------------------------------------------------------------------------

missing=()
for tool in curl awk sort cargo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if want join; then
    command -v varnishd >/dev/null 2>&1 || missing+=(varnishd)
fi
if ((${#missing[@]})); then
    die "missing: ${missing[*]}; install with: sudo apt-get update && sudo apt-get install -y varnish curl"
fi

log "building the examples (cargo build --release --example zipf_load --example slow_backend)"
(cd "$ROOT" && cargo build --release --example zipf_load --example slow_backend >&2)
LOAD="$ROOT/target/release/examples/zipf_load"
BACKEND="$ROOT/target/release/examples/slow_backend"
NAME=balance
# shellcheck source=lib.sh
source "$HERE/lib.sh"
ringproxy_bin
BIN=$RINGPROXY_BIN

# ---- temp dir, process bookkeeping, cleanup ---------------------------------------------------

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-balance.XXXXXX")
# varnishd drops to its own user when started as root: it must reach its work dirs.
chmod 755 "$DIR"
PIDS=()

# Direct children of $1 (varnishd's cache process), from /proc.
children() {
    local f s
    for f in /proc/[0-9]*/stat; do
        s=$(cat "$f" 2>/dev/null) || continue
        s=${s##*) }
        read -r _ ppid _ <<<"$s"
        if [[ $ppid == "$1" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
    return 0
}

# Stops the processes $@ (and their direct children): TERM, up to ~5 s, then KILL.
stop() {
    local pid kids=() keep=()
    for pid in "$@"; do
        mapfile -t more < <(children "$pid")
        kids+=("${more[@]}")
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@" "${kids[@]}"; do
        stop_pid "$pid"
    done
    for pid in "${PIDS[@]}"; do
        [[ " $* " == *" $pid "* ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# Not lib.sh's cleanup: varnishd's cache processes are stopped with it.
cleanup() {
    if ((${#PIDS[@]})); then
        stop "${PIDS[@]}"
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $DIR"
    else
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until `curl URL` succeeds while process $2 lives (~10 s at most).
wait_for() {
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || break
        curl -fsS -m 1 -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 20 "$DIR"/*.log >&2 2>/dev/null || true
    die "nothing answers at $1"
}

# ---- free ports -------------------------------------------------------------------------------

# shellcheck source=ports.sh
source "$HERE/ports.sh"
for v in B0 B1 B2 B3 RP_PORT RP_ADMIN ORIGIN V0 V1 V2 V3 V4; do
    pick_port "$v"
done
BACKENDS=("$B0" "$B1" "$B2" "$B3")
CACHES=("$V0" "$V1" "$V2" "$V3" "$V4")
IDS=cache-0,cache-1,cache-2,cache-3

# ringproxy config: $1 = balance lines, then backend ports (ids cache-0, cache-1, ...).
ringproxy_config() {
    local balance=$1 i=0 port
    shift
    printf '[proxy]\nlisten = "127.0.0.1:%s"\ndebug_headers = true\n\n' "$RP_PORT"
    printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "$RP_ADMIN"
    printf '[affinity]\nkey = ["path"]\n\n'
    [[ -n $balance ]] && printf '[balance]\n%s\n\n' "$balance"
    for port in "$@"; do
        printf '[[backends]]\nid = "cache-%s"\naddress = "127.0.0.1:%s"\n\n' "$i" "$port"
        i=$((i + 1))
    done
}

start_ringproxy() { # config-file log-file
    RUST_LOG=warn "$BIN" --config "$1" 2>>"$2" &
    RP_PID=$!
    PIDS+=("$RP_PID")
    wait_for "http://127.0.0.1:$RP_ADMIN/healthz" "$RP_PID"
}

# Round r visits configs in a rotated order, backwards in even rounds.
order() { # round config...
    local r=$1 n i k
    shift
    n=$#
    local all=("$@")
    for i in $(seq 0 $((n - 1))); do
        if ((r % 2)); then k=$(((r - 1 + i) % n)); else k=$(((r - 1 + n - 1 - i) % n)); fi
        echo "${all[$k]}"
    done
}

RESULTS="$DIR/results.tsv" # config round metric value
: >"$RESULTS"
median() { # config metric
    awk -F'\t' -v c="$1" -v m="$2" '$1 == c && $3 == m { print $4 }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
values() { # config metric: every round's value, in round order
    awk -F'\t' -v c="$1" -v m="$2" '$1 == c && $3 == m { printf "%s%s", sep, $4; sep = " / " }' "$RESULTS"
}

echo "## Hot keys and warm-up: bench/balance.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), ringproxy $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo

# ---- part 1: bounded loads ----------------------------------------------------------------------

if want bound; then
    specs=()
    for i in 0 1 2 3; do specs+=("cache-$i=127.0.0.1:${BACKENDS[$i]}"); done
    "$BACKEND" --delay-ms "$DELAY_MS" --slots "$SLOTS" --lifetime 2h "${specs[@]}" 2>>"$DIR/backends.log" &
    PID_BACKENDS=$!
    PIDS+=("$PID_BACKENDS")
    wait_for "http://127.0.0.1:$B0/__stats" "$PID_BACKENDS"

    declare -A BALANCE=(
        [off]=""
        [any]=$(printf 'bound = %s\nspread = "any"' "$BOUND")
        [hot]=$(printf 'bound = %s\nspread = "hot"' "$BOUND")
    )
    CONFIGS=(off any hot)
    log "bound: $ROUNDS rounds x ${#CONFIGS[@]} configs x $REQUESTS requests over $CONNS connections (backends: $DELAY_MS ms, $SLOTS slots)"
    for r in $(seq 1 "$ROUNDS"); do
        for c in $(order "$r" "${CONFIGS[@]}"); do
            run="$DIR/bound-$c-$r"
            ringproxy_config "${BALANCE[$c]}" "${BACKENDS[@]}" >"$run.toml"
            start_ringproxy "$run.toml" "$DIR/ringproxy.log"
            "$LOAD" --url "127.0.0.1:$RP_PORT" --conns "$CONNS" --requests "$WARM_REQUESTS" \
                --keys "$KEYS" --duration 30s --seed $((SEED + 1000)) >/dev/null
            curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$B0/__reset"
            "$LOAD" --url "127.0.0.1:$RP_PORT" --conns "$CONNS" --requests "$REQUESTS" \
                --keys "$KEYS" --duration 120s --seed "$SEED" --ring "$IDS" --out "$run.tsv" >"$run.load"
            curl -fsS -m 2 "http://127.0.0.1:$B0/__stats" >"$run.stats"
            curl -fsS -m 2 "http://127.0.0.1:$RP_ADMIN/metrics" >"$run.metrics"
            stop "$RP_PID"
            {
                awk -v c="$c" -v r="$r" -F'\t' '{ print c "\t" r "\t" $1 "\t" $2 }' "$run.load"
                # name requests in_flight peak mean seconds
                awk -v c="$c" -v r="$r" '
                    { print c "\t" r "\tmean_" $1 "\t" $5; print c "\t" r "\tpeak_" $1 "\t" $4
                      sum += $5; n++; if ($5 > max) max = $5; if ($4 > peak) peak = $4 }
                    END { printf "%s\t%s\tmean_ratio\t%.3f\n%s\t%s\tpeak_max\t%d\n%s\t%s\tmean_avg\t%.2f\n",
                          c, r, max / (sum / n), c, r, peak, c, r, sum / n }' "$run.stats"
                awk -v c="$c" -v r="$r" '/^ringproxy_bounded_spills_total/ { s += $NF }
                    END { print c "\t" r "\tspills\t" s + 0 }' "$run.metrics"
            } >>"$RESULTS"
            log "round $r $(awk -F'\t' -v c="$c" -v r="$r" '$1 == c && $2 == r { v[$3] = $4 }
                END { printf "%-3s %5s req/s  p50 %5s ms  p99 %6s ms  busiest/mean in flight %s  peak %s  cold left owner %s%%  hot left %s%%",
                      c, v["rps"], v["p50_ms"], v["p99_ms"], v["mean_ratio"], v["peak_max"], v["cold_left_pct"], v["hot_left_pct"] }' "$RESULTS")"
        done
    done
    stop "$PID_BACKENDS"

    hot_owner=$(awk -F'\t' '$3 == "hot_owner" { print $4; exit }' "$RESULTS")
    echo "### Bounded loads: $ROUNDS interleaved rounds, $REQUESTS requests over $CONNS connections each"
    echo
    echo "4 backends of $DELAY_MS ms per request, $SLOTS served at once each; keys: 30 % one key (owner $hot_owner),"
    echo "70 % Zipf(1.1) over $KEYS keys; medians over rounds (every round's value in the per-round table)."
    echo
    echo "| config | req/s | p50 ms | p99 ms | busiest backend's mean in flight / mean of all | highest peak in flight | hot key off owner | head keys off owner | cold keys off owner | largest Zipf rank off owner | spills |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    declare -A LABEL=([off]="off" [any]="bound = $BOUND, spread = \"any\"" [hot]="bound = $BOUND, spread = \"hot\"")
    for c in "${CONFIGS[@]}"; do
        echo "| ${LABEL[$c]} | $(median "$c" rps) | $(median "$c" p50_ms) | $(median "$c" p99_ms) | $(median "$c" mean_ratio) | $(median "$c" peak_max) | $(median "$c" hot_left_pct) % | $(median "$c" head_left_pct) % | $(median "$c" cold_left_pct) % | $(median "$c" max_rank_off_owner) | $(median "$c" spills) |"
    done
    echo
    echo "Per backend, mean / peak requests in flight (medians), and its share of answers:"
    echo
    echo "| config | cache-0 | cache-1 | cache-2 | cache-3 |"
    echo "|---|---|---|---|---|"
    for c in "${CONFIGS[@]}"; do
        row="| ${LABEL[$c]} |"
        for i in 0 1 2 3; do
            row+=" $(median "$c" "mean_cache-$i") / $(median "$c" "peak_cache-$i"), $(median "$c" "answered_pct_cache-$i") % |"
        done
        echo "$row"
    done
    echo
    echo "- key classes: *hot* the 30 % key; *head* the $(median hot head_ranks) Zipf ranks expected above half of"
    echo "  \`hot_share\` (0.5 % of requests each; $(median hot head_share_pct) % of requests together), which the sketch may"
    echo "  judge hot; *cold* all other keys ($(median hot cold_share_pct) % of requests). \"off owner\": answered by a backend"
    echo "  other than the key's owner on the ring. Zipf ranks 1 to $(median hot hot_ranks) are expected at or above \`hot_share\` (1 %)."
    echo "- spills: \`ringproxy_bounded_spills_total\` summed over backends after the run, warm-up included; one"
    echo "  request passing two full backends counts twice."
    echo "- in flight as the backends count it (exact, time-weighted mean); with $CONNS connections at most $CONNS"
    echo "  are in flight in all, and the bound's cap is then ceil($BOUND × ($CONNS + 1) / 4) = $(awk -v b="$BOUND" -v n="$CONNS" 'BEGIN { c = b * (n + 1) / 4; print (c == int(c)) ? c : int(c) + 1 }')."
    echo
    echo "Per round (p99 ms; busiest/mean; cold keys off owner %; largest rank off owner):"
    echo
    for c in "${CONFIGS[@]}"; do
        echo "- ${LABEL[$c]}: p99 $(values "$c" p99_ms); busiest/mean $(values "$c" mean_ratio); cold off owner $(values "$c" cold_left_pct); largest rank $(values "$c" max_rank_off_owner)"
    done
    echo
fi

# ---- part 2: a fifth Varnish joins ----------------------------------------------------------------

# Origin requests in [from, to) ms, from the origin's 100 ms timeline (bucket start times).
origin_between() { # timeline from to
    awk -v a="$2" -v b="$3" '$1 >= a && $1 < b { s += $2 } END { print s + 0 }' "$1"
}
# Client requests started in [from, to) ms, from zipf_load's TSV.
client_between() { # tsv from to
    awk -F'\t' -v a="$2" -v b="$3" 'NR > 1 && $1 >= a && $1 < b { n++ } END { print n + 0 }' "$1"
}

if want join; then
    declare -A JOIN_BALANCE=([cold]="" [warm]="warmup = \"$WARMUP\"")
    MODES=(cold warm)
    total=$((BEFORE + AFTER + TAIL))
    log "join: $ROUNDS rounds x ${#MODES[@]} configs x ${total}s at $RATE req/s (join after ${BEFORE}s)"
    for r in $(seq 1 "$ROUNDS"); do
        for m in $(order "$r" "${MODES[@]}"); do
            run="$DIR/join-$m-$r"
            "$BACKEND" --delay-ms "$DELAY_MS" --cache-control max-age=300 --lifetime 10m \
                "origin=127.0.0.1:$ORIGIN" 2>>"$DIR/origin.log" &
            pid_origin=$!
            PIDS+=("$pid_origin")
            wait_for "http://127.0.0.1:$ORIGIN/__stats" "$pid_origin"
            pid_caches=()
            for i in 0 1 2 3 4; do
                varnishd -F -n "$run-varnish-$i" -a "127.0.0.1:${CACHES[$i]}" -b "127.0.0.1:$ORIGIN" \
                    -s malloc,64m -T none -p thread_pools=1 -p thread_pool_min=10 \
                    >>"$DIR/varnish.log" 2>&1 &
                pid_caches+=($!)
                PIDS+=($!)
            done
            for i in 0 1 2 3 4; do
                wait_for "http://127.0.0.1:${CACHES[$i]}/__ready" "${pid_caches[$i]}"
            done
            ringproxy_config "${JOIN_BALANCE[$m]}" "${CACHES[@]:0:4}" >"$run.toml"
            start_ringproxy "$run.toml" "$DIR/ringproxy.log"
            # Every key once through the four caches: the steady state is a warm fleet.
            "$LOAD" --url "127.0.0.1:$RP_PORT" --conns "$CONNS" --sweep --requests $((KEYS + 1)) \
                --keys "$KEYS" --duration 300s >"$run.prime"
            primed=$(awk -F'\t' '$1 == "requests" { n = $2 } $1 == "errors" { e = $2 } END { print n - e }' "$run.prime")
            ((primed == KEYS + 1)) || die "priming sent $primed of $((KEYS + 1)) keys (see $run.prime)"
            curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$ORIGIN/__reset"

            "$LOAD" --url "127.0.0.1:$RP_PORT" --conns "$JOIN_CONNS" --rate "$RATE" \
                --requests $((RATE * (total + 5))) --duration "${total}s" --seed "$SEED" --keys "$KEYS" \
                --out "$run.tsv" >"$run.load" &
            pid_load=$!
            PIDS+=("$pid_load")
            sleep "$BEFORE"
            join_ms=$(date +%s%3N)
            curl -fsS -m 5 -o /dev/null -X PUT "http://127.0.0.1:$RP_ADMIN/backends/cache-4" \
                -d "{\"address\": \"127.0.0.1:${CACHES[4]}\", \"weight\": 1}"
            wait "$pid_load"
            stop "$pid_load"
            curl -fsS -m 2 "http://127.0.0.1:$ORIGIN/__timeline" >"$run.timeline"
            stop "$RP_PID" "${pid_caches[@]}" "$pid_origin"

            j=$((join_ms - join_ms % 100)) # the timeline's 100 ms grid
            a=$((j + AFTER * 1000))
            {
                o=$(origin_between "$run.timeline" "$j" "$a")
                n=$(client_between "$run.tsv" "$j" "$a")
                ob=$(origin_between "$run.timeline" $((j - 10000)) "$j")
                nb=$(client_between "$run.tsv" $((j - 10000)) "$j")
                ot=$(origin_between "$run.timeline" "$a" $((a + TAIL * 1000)))
                nt=$(client_between "$run.tsv" "$a" $((a + TAIL * 1000)))
                awk -v m="$m" -v r="$r" -v o="$o" -v n="$n" -v ob="$ob" -v nb="$nb" -v ot="$ot" -v nt="$nt" \
                    -v after="$AFTER" -v tail="$TAIL" 'BEGIN {
                    printf "%s\t%s\torigin_rps_after\t%.1f\n", m, r, o / after
                    printf "%s\t%s\thit_pct_after\t%.2f\n", m, r, n ? 100 * (1 - o / n) : 0
                    printf "%s\t%s\tclient_rps_after\t%.0f\n", m, r, n / after
                    printf "%s\t%s\torigin_rps_before\t%.1f\n", m, r, ob / 10
                    printf "%s\t%s\thit_pct_before\t%.2f\n", m, r, nb ? 100 * (1 - ob / nb) : 0
                    printf "%s\t%s\torigin_rps_tail\t%.1f\n", m, r, ot / tail
                    printf "%s\t%s\thit_pct_tail\t%.2f\n", m, r, nt ? 100 * (1 - ot / nt) : 0
                }'
                # The busiest second after the join, and origin req/s per 5 s from 10 s before.
                awk -v m="$m" -v r="$r" -v j="$j" -v after="$AFTER" -v tail="$TAIL" '
                    { k = int(($1 - j) / 1000); if ($1 < j) k = -1 - int((j - 1 - $1) / 1000); sec[k] += $2 }
                    END {
                        for (k = 0; k < after; k++) if (sec[k] > peak) peak = sec[k]
                        printf "%s\t%s\torigin_peak_1s\t%d\n", m, r, peak
                        for (s = -10; s < after + tail; s += 5) {
                            t = 0; for (k = s; k < s + 5; k++) t += sec[k]
                            printf "%s\t%s\torigin_rps_%+d\t%.1f\n", m, r, s, t / 5
                        }
                    }' "$run.timeline"
                # The joiner's share of answers in the last 5 s of the window; Varnish's own hit count.
                awk -F'\t' -v m="$m" -v r="$r" -v a="$a" -v j="$j" 'NR > 1 && $1 >= a - 5000 && $1 < a { n++; if ($3 == "cache-4") c++ }
                    NR > 1 && $1 >= j && $1 < a && $7 != "-" { v++; if ($7 == "hit") h++ }
                    END { printf "%s\t%s\tjoiner_pct_end\t%.1f\n%s\t%s\tvarnish_hit_pct_after\t%.2f\n", m, r, n ? 100 * c / n : 0, m, r, v ? 100 * h / v : 0 }' "$run.tsv"
                awk -F'\t' -v m="$m" -v r="$r" '$1 == "errors" { print m "\t" r "\terrors\t" $2 }' "$run.load"
            } >>"$RESULTS"
            log "round $r $(awk -F'\t' -v m="$m" -v r="$r" '$1 == m && $2 == r { v[$3] = $4 }
                END { printf "%-4s origin %s req/s before, %s after (busiest second %s), hit %s%% -> %s%%, joiner %s%% at the end, errors %s",
                      m, v["origin_rps_before"], v["origin_rps_after"], v["origin_peak_1s"], v["hit_pct_before"], v["hit_pct_after"], v["joiner_pct_end"], v["errors"] }' "$RESULTS")"
        done
    done

    # A round counts when the load generator kept its rate after the join: on a busy machine it
    # can be starved of CPU, and then fewer requests find fewer moved keys.
    min_rps=$((RATE * 9 / 10))
    declare -A VALID
    for m in "${MODES[@]}"; do
        VALID[$m]=$(awk -F'\t' -v c="$m" -v min="$min_rps" '$1 == c && $3 == "client_rps_after" && $4 >= min { n++ } END { print n + 0 }' "$RESULTS")
    done
    median_join() { # mode metric: over the valid rounds, or all rounds if none is
        awk -F'\t' -v c="$1" -v m="$2" -v min="$min_rps" -v all="$((VALID[$1] == 0))" '
            $1 == c && $3 == "client_rps_after" && $4 >= min { ok[$2] = 1 }
            $1 == c && $3 == m { v[$2] = $4 }
            END { for (r in v) if (all || ok[r]) print v[r] }' "$RESULTS" | sort -g |
            awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
    }

    echo "### A fifth Varnish joins: $ROUNDS interleaved rounds per config, $RATE req/s, join after ${BEFORE}s"
    echo
    echo "One origin ($DELAY_MS ms, \`Cache-Control: max-age=300\`) behind Varnish 4 + 1 (\`-s malloc,64m\`), ringproxy"
    echo "\`key = [\"path\"]\`, same key mix and seed as above. Hit ratio = 1 − origin requests / client requests in the"
    echo "window. Medians over the rounds in which the client kept at least $min_rps req/s after the join: ${VALID[cold]} of"
    echo "$ROUNDS without warm-up, ${VALID[warm]} of $ROUNDS with (all rounds where none did)."
    echo
    echo "| config | origin req/s, 10 s before | origin req/s, ${AFTER} s after join | busiest second after | hit ratio before | hit ratio, ${AFTER} s after | origin req/s, next ${TAIL} s | joiner's share, last 5 s | client req/s after |"
    echo "|---|---|---|---|---|---|---|---|---|"
    declare -A JLABEL=([cold]="no warm-up" [warm]="warmup = \"$WARMUP\"")
    for m in "${MODES[@]}"; do
        echo "| ${JLABEL[$m]} | $(median_join "$m" origin_rps_before) | $(median_join "$m" origin_rps_after) | $(median_join "$m" origin_peak_1s) | $(median_join "$m" hit_pct_before) % | $(median_join "$m" hit_pct_after) % | $(median_join "$m" origin_rps_tail) | $(median_join "$m" joiner_pct_end) % | $(median_join "$m" client_rps_after) |"
    done
    echo
    echo "Origin req/s per 5 s around the join (medians; the join is at 0 s):"
    echo
    head="| config |"
    sep="|---|"
    for s in $(seq -10 5 $((AFTER + TAIL - 5))); do
        head+=" $(printf '%+d' "$s")–$((s + 5)) s |"
        sep+="---|"
    done
    echo "$head"
    echo "$sep"
    for m in "${MODES[@]}"; do
        row="| ${JLABEL[$m]} |"
        for s in $(seq -10 5 $((AFTER + TAIL - 5))); do
            row+=" $(median_join "$m" "origin_rps_$(printf '%+d' "$s")") |"
        done
        echo "$row"
    done
    echo
    echo "Per round: origin req/s after the join; hit ratio after; Varnish's own hit share (X-Varnish) after; client"
    echo "req/s after (below $min_rps: the load generator was starved of CPU); client errors:"
    echo
    for m in "${MODES[@]}"; do
        echo "- ${JLABEL[$m]}: $(values "$m" origin_rps_after); $(values "$m" hit_pct_after) %; $(values "$m" varnish_hit_pct_after) %; $(values "$m" client_rps_after) req/s; errors $(values "$m" errors)"
    done
    echo
fi
