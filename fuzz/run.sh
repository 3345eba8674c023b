#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and reports executions and crashes.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]     # default: 60 s each, all targets
#
# Needs: a nightly Rust toolchain (cargo fuzz builds with -Zsanitizer / coverage flags that
# stable refuses) and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The harnesses themselves build on stable: `cd fuzz && cargo test` replays the seed corpus
# through them without libFuzzer.
#
# Targets (fuzz/src/*.rs says what each one checks): config, affinity, node, admin.
# Seeds are read from fuzz/corpus/<target>/ (committed, never written to); what the fuzzer finds
# goes to fuzz/corpus.local/<target>/, crashes and the last run's log (run.log) to
# fuzz/artifacts/<target>/ (both git-ignored).
# Knobs (environment):
#   FUZZ_TOOLCHAIN=nightly    toolchain for cargo fuzz
#   SANITIZER=none            none | address: the library forbids unsafe code and the hunt is for
#                             panics, so the default trades ASan for about twice the executions
#   JOBS=1                    parallel fuzzing processes per target (libFuzzer -fork)
#   FUZZ_ARGS="..."           extra libFuzzer flags, e.g. "-max_len=16384"
# A crash prints its artifact; reproduce with `cargo +nightly fuzz run TARGET ARTIFACT`, shrink
# with `cargo +nightly fuzz tmin TARGET ARTIFACT`. Exit status: 0 if no target crashed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(config affinity node admin)
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
SANITIZER=${SANITIZER:-none}
JOBS=${JOBS:-1}
read -r -a EXTRA <<<"${FUZZ_ARGS:-}"

die() {
    echo "fuzz: error: $*" >&2
    exit 1
}
[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] && ((SECONDS_PER_TARGET > 0)) ||
    die "SECONDS_PER_TARGET must be a positive integer, got '$SECONDS_PER_TARGET'"
rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1 ||
    die "no $TOOLCHAIN toolchain; install with: rustup toolchain install $TOOLCHAIN"
cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1 ||
    die "cargo-fuzz is missing; install with: cargo install cargo-fuzz"

CHILD=""
cleanup() {
    # Only the fuzzer this script started, if an interrupt left it running.
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$HERE"
echo "fuzz: building ${TARGETS[*]} (cargo +$TOOLCHAIN fuzz build, sanitizer $SANITIZER)" >&2
for t in "${TARGETS[@]}"; do
    [[ -f fuzz_targets/$t.rs ]] || die "no target '$t' (have: $(cd fuzz_targets && ls | sed 's/\.rs$//' | tr '\n' ' '))"
    cargo "+$TOOLCHAIN" fuzz build --debug-assertions --sanitizer "$SANITIZER" "$t" >&2
done

crashed=()
printf '%-9s %8s %12s %10s %8s  %s\n' target seconds executions exec/s corpus result
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus.local/$t" "artifacts/$t"
    log="artifacts/$t/run.log"
    fork=()
    ((JOBS > 1)) && fork=("-fork=$JOBS")
    start=$(date +%s)
    # Bounded three ways: total time, time per input, memory.
    set +e
    cargo "+$TOOLCHAIN" fuzz run --debug-assertions --sanitizer "$SANITIZER" "$t" \
        "corpus.local/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${fork[@]}" "${EXTRA[@]}" >"$log" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    status=$?
    CHILD=""
    set -e
    took=$(($(date +%s) - start))
    # One final-stats block per process; with -fork the parent's "Done N runs" line sums them.
    execs=$(awk '/stat::number_of_executed_units:/ {n = $2} /^#[0-9]+.*DONE/ {sub("#", "", $1); d = $1} END {print (n ? n : (d ? d : 0))}' "$log")
    rate=$(awk -v e="$execs" -v s="$took" 'BEGIN {printf "%.0f", s ? e / s : 0}')
    corpus=$(find "corpus.local/$t" -type f | wc -l)
    if ((status == 0)); then
        result=ok
    else
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/Test unit written to //')
        result="CRASH (exit $status) ${artifact:-see log}"
        crashed+=("$t")
        echo "---- $t: last lines of the fuzzer's log" >&2
        grep -v '^#' "$log" | tail -n 40 >&2
    fi
    printf '%-9s %8s %12s %10s %8s  %s\n' "$t" "$took" "$execs" "$rate" "$corpus" "$result"
done

if ((${#crashed[@]})); then
    echo "fuzz: crashed: ${crashed[*]} (artifacts in $HERE/artifacts/)" >&2
    exit 1
fi
