#!/usr/bin/env bash
# load-tests/timeline.sh: where the slowest requests spent their time at
# half of the gateway's peak, from the gateway's own per-request phase
# timeline (FLOOPY_TIMELINE=1, served at the admin listener's
# /debug/timeline). Loopback only; about a minute.
#
# Pinned as compare.sh pins: the gateway (one worker thread, every feature
# on, the Kafka sink to a tansu broker when installed) alone on PROXY_CPU
# (1); wrk, oha, the fake provider and the broker on LOAD_CPU (0). wrk
# finds the peak (PEAK_DURATION), then oha holds half of it open loop for
# DURATION, and the slowest 50 requests of that run are printed, phase by
# phase:
#   filter    in request_filter (auth, the body read, routing, admission)
#   upstream  from leaving request_filter to the upstream's response header
#   body      from the response header to the body's last chunk
#   record    building, settling and submitting the request's record
#   after     from the record to the end of `logging`
#   runq      the worker thread's run delay while the request was in flight:
#             runnable, but another thread had the core
# A tail whose runq is most of it is the scheduler's; one spent in a phase
# with a small runq is the work of that phase.
#
# Knobs: PEAK_DURATION (8s), DURATION (15s), RATE (half of the measured
# peak), SHOW (20 rows), TMPDIR (where the gateway's files, its write-ahead
# log included, go: /dev/shm takes the disk out).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PEAK_DURATION=${PEAK_DURATION:-8s}
DURATION=${DURATION:-15s}
SHOW=${SHOW:-20}
LOAD=(taskset -c "$LOAD_CPU")

command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[[ -x "$OHA" ]] || lt_die "oha is missing (cargo install oha --locked)"
lt_ensure_binaries
lt_use_temp_dir timeline

export LT_GATEWAY_THREADS=1 FLOOPY_TIMELINE=1
lt_start_fake_provider "$TMP"
SINK="file"
if lt_start_kafka "$TMP"; then SINK="kafka"; fi
KAFKA_PID=""
[[ "$SINK" == kafka ]] && KAFKA_PID=${LT_PIDS[-1]}
lt_start_gateway "$TMP" "$FAKE_ADDR"
# shellcheck disable=SC2086 # KAFKA_PID is empty or one pid
lt_pin "$LOAD_CPU" "$FAKE_PID" $KAFKA_PID
lt_pin "$PROXY_CPU" "$GW_PID"
lt_log "sink: $SINK; the gateway's files in $TMP"

export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"
URL="http://$GW_ADDR/v1/chat/completions"
lt_run "${LOAD[@]}" wrk -t1 -c64 -d3s -s "$LT_ROOT/load-tests/wrk/chat.lua" "$URL" >/dev/null 2>&1
lt_run "${LOAD[@]}" wrk -t1 -c64 -d"$PEAK_DURATION" -s "$LT_ROOT/load-tests/wrk/chat.lua" "$URL" >"$TMP/wrk.txt" 2>&1
PEAK=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk.txt")
[[ -n "$PEAK" ]] || { cat "$TMP/wrk.txt" >&2; lt_die "could not read wrk's output"; }
RATE=${RATE:-$((PEAK / 2))}
lt_log "peak $PEAK req/s; now $RATE req/s open loop for $DURATION"

# What the peak left behind is not part of the half-peak run.
curl -fs "http://$GW_ADMIN/debug/timeline" >/dev/null || lt_die "no /debug/timeline on $GW_ADMIN"
lt_run "${LOAD[@]}" "$OHA" -z "$DURATION" -q "$RATE" -c 64 --latency-correction --no-tui \
    --output-format json -m POST -H "Authorization: Bearer $FLOOPY_KEY" \
    -H "floopy-project-id: $FLOOPY_PROJECT" -H "content-type: application/json" \
    -D "$LT_ROOT/load-tests/wrk/chat-body.json" "$URL" >"$TMP/oha.json" 2>"$TMP/oha.err" ||
    { tail -n 20 "$TMP/oha.err" >&2; lt_die "oha failed"; }
curl -fs "http://$GW_ADMIN/debug/timeline" >"$TMP/timeline.json" || lt_die "cannot read the timeline"

python3 - "$TMP/oha.json" "$TMP/timeline.json" "$SHOW" <<'PY'
import json, sys
oha = json.load(open(sys.argv[1]))
rows = json.load(open(sys.argv[2]))
show = int(sys.argv[3])
p = oha["latencyPercentiles"]
print(f"client side (oha): {oha['summary']['requestsPerSec']:.0f} req/s, "
      f"p50 {p['p50'] * 1000:.2f} ms, p99 {p['p99'] * 1000:.2f} ms, p99.9 {p['p99.9'] * 1000:.2f} ms")
def phases(r):
    return {
        "filter": r["request_filter_out_us"] - r["request_filter_in_us"],
        "upstream": r["response_header_us"] - r["request_filter_out_us"],
        "body": max(0, r["body_end_us"] - r["response_header_us"]),
        "record": r["record_out_us"] - r["record_in_us"],
        "after": r["total_us"] - r["record_out_us"],
        "runq": r["run_delay_us"],
    }
cols = ["filter", "upstream", "body", "record", "after", "runq"]
print(f"the slowest {len(rows)} requests inside the gateway (µs); the first {min(show, len(rows))}:")
print(f"{'total':>8} " + " ".join(f"{c:>9}" for c in cols) + "  moved")
for r in rows[:show]:
    ph = phases(r)
    print(f"{r['total_us']:>8} " + " ".join(f"{ph[c]:>9}" for c in cols) + f"  {'yes' if r['moved_thread'] else 'no'}")
if rows:
    n = len(rows)
    total = sum(r["total_us"] for r in rows)
    sums = {c: sum(phases(r)[c] for r in rows) for c in cols}
    print("share of the slowest requests' time: " + ", ".join(f"{c} {100 * sums[c] / total:.0f}%" for c in cols)
          + " (runq overlaps the phases)")
PY
