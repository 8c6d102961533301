#!/usr/bin/env bash
# load-tests/run.sh SCENARIO [k6 args...]
#
# Runs the k6 scenario load-tests/k6/SCENARIO.js (smoke, load, spike,
# streaming, soak) and exits with k6's exit code (99 when a threshold failed).
#
# Local mode (default): starts target/release/fake-provider and
# target/release/floopy-gateway (built with `cargo build --workspace --release --bins`
# only if missing) on free loopback ports, with a configuration written to a
# temporary directory, waits for GET /healthz, runs k6 against it, then stops
# both (SIGTERM, wait).
#
# Remote mode: when FLOOPY_URL and FLOOPY_KEY are both set in the
# environment, nothing is started; k6 runs against that deployment
# (FLOOPY_PROJECT, FLOOPY_MODEL, ... are passed through as set).
#
# Scenario knobs are environment variables read by the scripts: RATE,
# DURATION, VUS, ... (see load-tests/README.md). KEEP_TMP=1 keeps the
# temporary directory (configuration, request log, process output).
set -uo pipefail

usage() {
    echo "usage: load-tests/run.sh SCENARIO [k6 args...]   (SCENARIO: smoke load spike streaming soak)" >&2
    exit 2
}
[[ $# -ge 1 ]] || usage
case "$1" in -h | --help) usage ;; esac
SCENARIO=$1
shift

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

SCRIPT="$LT_ROOT/load-tests/k6/$SCENARIO.js"
[[ -f "$SCRIPT" ]] || { echo "no such scenario: $SCRIPT" >&2; usage; }

lt_ensure_k6

if [[ -n "${FLOOPY_URL:-}" && -n "${FLOOPY_KEY:-}" ]]; then
    lt_log "FLOOPY_URL and FLOOPY_KEY set: running $SCENARIO against $FLOOPY_URL, starting nothing"
    export FLOOPY_URL FLOOPY_KEY
    "$K6" run "$@" "$SCRIPT"
    exit $?
fi
if [[ -n "${FLOOPY_URL:-}" || -n "${FLOOPY_KEY:-}" ]]; then
    lt_die "set both FLOOPY_URL and FLOOPY_KEY to target a deployment, or neither to start one locally"
fi

lt_ensure_binaries

TMP=$(mktemp -d "${TMPDIR:-/tmp}/floopy-load.XXXXXX")
RC=1
# shellcheck disable=SC2317 # called by the EXIT trap
finish() {
    lt_cleanup
    if [[ "${KEEP_TMP:-0}" == 1 || $RC -ne 0 ]]; then
        lt_log "kept $TMP (configuration, request log, process output)"
    else
        rm -rf "$TMP"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lt_start_fake_provider "$TMP"
lt_start_gateway "$TMP" "$FAKE_ADDR"

export FLOOPY_URL="http://$GW_ADDR"
export FLOOPY_KEY="$LT_KEY_PROD"
export FLOOPY_KEY_NOENV="$LT_KEY_NOENV"
export FLOOPY_PROJECT="${FLOOPY_PROJECT-$LT_PROJECT_ID}"
export FLOOPY_ANTHROPIC_MODEL="${FLOOPY_ANTHROPIC_MODEL-claude-sonnet-4-5}"
export FLOOPY_FAKE_PROVIDER=1

rss() { awk '/^VmRSS/ {print $2 " kB"}' "/proc/$1/status" 2>/dev/null; }
# The gateway's resident memory every RSS_EVERY seconds while k6 runs (the
# soak's evidence that memory stays flat), in $TMP/rss.tsv: seconds, kB.
RSS_EVERY=${RSS_EVERY:-30}
sample_rss() {
    local start=$SECONDS kb
    while kill -0 "$GW_PID" 2>/dev/null; do
        kb=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null) || break
        printf '%d\t%s\n' $((SECONDS - start)) "$kb" >>"$TMP/rss.tsv"
        sleep "$RSS_EVERY"
    done
}
lt_log "gateway resident memory before: $(rss "$GW_PID")"
sample_rss >/dev/null 2>&1 &
SAMPLER_PID=$!
lt_log "k6 run $SCENARIO against $FLOOPY_URL"
"$K6" run "$@" "$SCRIPT"
RC=$?
kill "$SAMPLER_PID" 2>/dev/null
wait "$SAMPLER_PID" 2>/dev/null
lt_log "gateway resident memory after: $(rss "$GW_PID")"
if [[ -s "$TMP/rss.tsv" ]]; then
    # Every sample on one line, then the growth over each half of the run:
    # a leak keeps growing in the second half, a warm-up does not.
    awk -F'\t' '{t[NR] = $1; kb[NR] = $2}
        END {
            line = "gateway resident memory (s:MB):"
            for (i = 1; i <= NR; i++) line = line sprintf(" %d:%.1f", t[i], kb[i] / 1024)
            print line
            mid = int((NR + 1) / 2)
            printf "gateway resident memory growth: first half %+.1f MB, second half %+.1f MB (%d samples every '"$RSS_EVERY"' s)\n",
                (kb[mid] - kb[1]) / 1024, (kb[NR] - kb[mid]) / 1024, NR
        }' "$TMP/rss.tsv" >&2
fi

# Stop the gateway first so that it writes out its request log, then count it.
lt_stop "$GW_PID"
if [[ -f "$TMP/request-logs.jsonl" ]]; then
    lt_log "request log records written by the gateway: $(wc -l <"$TMP/request-logs.jsonl")"
fi
if grep -qiE 'panic|error' "$TMP/gateway.err" 2>/dev/null; then
    lt_log "gateway stderr has errors (first lines):"
    grep -iE 'panic|error' "$TMP/gateway.err" | head -n 5 >&2
fi
lt_log "k6 exit code: $RC"
# A panic in the gateway fails the run, whatever k6's thresholds said.
if grep -q 'panicked at' "$TMP/gateway.err" 2>/dev/null; then
    lt_log "the gateway panicked during the run:"
    grep -A3 'panicked at' "$TMP/gateway.err" | head -n 20 >&2
    [[ "$RC" -ne 0 ]] || RC=1
fi
exit $RC
