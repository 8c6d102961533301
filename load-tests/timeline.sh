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
if [[ -n "${RENICE:-}" ]]; then
    # An experiment: every thread but the worker at nice RENICE.
    for task in /proc/"$GW_PID"/task/*; do
        [[ "$(cat "$task/comm")" == floopy-gateway ]] && continue
        renice -n "$RENICE" -p "$(basename "$task")" >/dev/null
    done
    lt_log "the gateway's threads but its worker at nice $RENICE"
fi

export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"
URL="http://$GW_ADDR/v1/chat/completions"
lt_run "${LOAD[@]}" wrk -t1 -c64 -d3s -s "$LT_ROOT/load-tests/wrk/chat.lua" "$URL" >/dev/null 2>&1
lt_run "${LOAD[@]}" wrk -t1 -c64 -d"$PEAK_DURATION" -s "$LT_ROOT/load-tests/wrk/chat.lua" "$URL" >"$TMP/wrk.txt" 2>&1
PEAK=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk.txt")
[[ -n "$PEAK" ]] || { cat "$TMP/wrk.txt" >&2; lt_die "could not read wrk's output"; }
RATE=${RATE:-$((PEAK / 2))}
lt_log "peak $PEAK req/s; now $RATE req/s open loop for $DURATION"

# Each thread of the gateway: name, CPU time (schedstat ns), run delay
# (ns), voluntary and involuntary context switches.
threads() {
    local task
    for task in /proc/"$GW_PID"/task/*; do
        printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$task")" "$(cat "$task/comm")" \
            "$(awk '{print $1, $2}' "$task/schedstat")" \
            "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status")" \
            "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$task/status")"
    done 2>/dev/null
}

# What the peak left behind is not part of the half-peak run.
curl -fs "http://$GW_ADMIN/debug/timeline" >/dev/null || lt_die "no /debug/timeline on $GW_ADMIN"
threads >"$TMP/threads-before.tsv"
if [[ -n "${PERF_SCHED:-}" ]]; then
    # Who had the worker's core while the worker waited: the scheduler's
    # switches and wake-ups on PROXY_CPU for 5 s in the middle of the run.
    (sleep 4; perf record -q -e sched:sched_switch -e sched:sched_wakeup -C "$PROXY_CPU" \
        -o "$TMP/sched.data" -- sleep 5 >/dev/null 2>&1) &
    PERF_JOB=$!
fi
lt_run "${LOAD[@]}" "$OHA" -z "$DURATION" -q "$RATE" -c 64 --latency-correction --no-tui \
    --output-format json -m POST -H "Authorization: Bearer $FLOOPY_KEY" \
    -H "floopy-project-id: $FLOOPY_PROJECT" -H "content-type: application/json" \
    -D "$LT_ROOT/load-tests/wrk/chat-body.json" "$URL" >"$TMP/oha.json" 2>"$TMP/oha.err" ||
    { tail -n 20 "$TMP/oha.err" >&2; lt_die "oha failed"; }
curl -fs "http://$GW_ADMIN/debug/timeline" >"$TMP/timeline.json" || lt_die "cannot read the timeline"
threads >"$TMP/threads-after.tsv"

python3 - "$TMP/oha.json" "$TMP/timeline.json" "$SHOW" "$TMP/threads-before.tsv" "$TMP/threads-after.tsv" <<'PY'
import json, sys
oha = json.load(open(sys.argv[1]))
rows = json.load(open(sys.argv[2]))
show = int(sys.argv[3])
def threads(path):
    out = {}
    for line in open(path):
        tid, comm, sched, vol, invol = line.rstrip("\n").split("\t")
        cpu, delay = (int(x) for x in sched.split())
        out[tid] = (comm, cpu, delay, int(vol or 0), int(invol or 0))
    return out
before, after = threads(sys.argv[4]), threads(sys.argv[5])

print("the gateway's threads during the run (CPU and run delay in ms; context switches):")
print(f"{'thread':18} {'cpu':>8} {'runq':>8} {'voluntary':>10} {'preempted':>10}")
for tid, (comm, cpu, delay, vol, invol) in sorted(after.items(), key=lambda kv: -(kv[1][1] - before.get(kv[0], (None, 0))[1])):
    b = before.get(tid, (comm, 0, 0, 0, 0))
    dcpu, ddelay, dvol, dinvol = cpu - b[1], delay - b[2], vol - b[3], invol - b[4]
    if dcpu < 1_000_000 and dvol < 10:
        continue
    print(f"{comm:18} {dcpu / 1e6:8.1f} {ddelay / 1e6:8.1f} {dvol:10} {dinvol:10}")
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

if [[ -n "${PERF_SCHED:-}" ]]; then
    wait "$PERF_JOB"
    perf script -i "$TMP/sched.data" 2>/dev/null >"$TMP/sched.txt"
    python3 - "$TMP/sched.txt" "$GW_PID" <<'PY'
import re, sys
from collections import defaultdict
worker = None
pat = re.compile(r"\s(\d+\.\d+): sched:(sched_switch|sched_wakeup): (.*)")
events = []
for line in open(sys.argv[1]):
    m = pat.search(line)
    if m:
        events.append((float(m.group(1)), m.group(2), m.group(3)))
# The worker: the thread named floopy-gateway that ran most.
runs = defaultdict(int)
for t, kind, rest in events:
    if kind == "sched_switch":
        m = re.search(r"prev_comm=(.*?) prev_pid=(\d+)", rest)
        if m and m.group(1) == "floopy-gateway":
            runs[m.group(2)] += 1
worker = max(runs, key=runs.get) if runs else None
waiting_since = None
current, current_since = None, None
waits = []
ran = defaultdict(float)
for t, kind, rest in events:
    if kind == "sched_wakeup":
        m = re.search(r"pid=(\d+)", rest)
        if m and m.group(1) == worker and waiting_since is None:
            waiting_since, ran = t, defaultdict(float)
        continue
    m = re.search(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)", rest)
    if not m:
        continue
    prev_comm, prev_pid, state, next_comm, next_pid = m.groups()
    if current is not None and current_since is not None and waiting_since is not None and current != worker:
        ran[current_comm] += t - max(current_since, waiting_since)
    if prev_pid == worker and state.startswith("R"):
        waiting_since, ran = t, defaultdict(float)
    if next_pid == worker and waiting_since is not None:
        waits.append((t - waiting_since, dict(ran)))
        waiting_since = None
    current, current_comm, current_since = next_pid, next_comm, t
waits.sort(key=lambda w: -w[0])
print(f"the worker's longest waits for its core (perf sched, 5 s): {len(waits)} waits")
for d, who in waits[:10]:
    top = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in sorted(who.items(), key=lambda kv: -kv[1])[:4])
    print(f"  {d * 1e3:7.2f} ms: {top}")
PY
fi
