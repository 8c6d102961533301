#!/usr/bin/env bash
# load-tests/compare.sh: the side-by-side benchmark, loopback only, about 9 minutes pinned (12 with the peers).
#
# One fake provider (release build) is the common upstream of:
#   (1) direct       wrk -> fake provider
#   (2) nginx        wrk -> nginx proxy_pass (1 worker, keepalive 64) -> fake provider
#   (3) reference    wrk -> target/release/reference-proxy --threads 2 -> fake provider
#   (4) floopy       wrk -> target/release/floopy-gateway, every feature on -> fake provider
# Each is driven at its peak by wrk (closed loop: WRK_CONNECTIONS connections
# sending as fast as answers come back) with load-tests/wrk/chat.lua; the
# table gives req/s, p50 and p99, and the ratios (4)/(3) and (4)/(2).
# Then (1), (3) and (4) are driven at half of (4)'s peak rate, at a constant
# arrival rate, and the p50 and p99 that (4) (and (3)) add over (1) are
# printed, with (3)'s and (4)'s CPU per request at that same rate. The
# open-loop generator is oha (`cargo install oha --locked`,
# `-q RATE --latency-correction`) when it is installed: it holds that rate on
# two shared cores. Otherwise k6 (constant-arrival-rate,
# load-tests/k6/latency.js), which needs some fifteen times wrk's CPU per
# request and on two cores cannot hold half of the gateway's peak.
#
# Pinned mode (PINNED=1, the default on 2 cores or more): each proxy runs
# alone on PROXY_CPU (1) with one worker thread (the reference's --threads 1,
# the gateway's server.threads: 1, nginx's one worker), every thread of its
# process bound there (the gateway's log writer, Kafka client and admin
# listener included); wrk (-t1), the latency generator, the fake provider
# and the Kafka broker run on LOAD_CPU (0). Every target is measured in each
# of ROUNDS rounds, and the table gives min / median / max over the rounds
# for req/s and CPU per request, the medians of p50, p99 and of the
# process's minor page faults per request. PINNED=0 is the
# earlier shared mode (everything on every core, 2 threads each).
#
# Peers, when installed by load-tests/install-peers.sh: (5) LiteLLM's proxy
# (PyPI litellm[proxy], 2 workers, no database, no callbacks) and (6)
# Portkey's open-source gateway (npm @portkey-ai/gateway, routed to the fake
# provider with its custom-host header), measured at their peak like the
# others (their own key and headers, the same body).
#
# Knobs (environment): WRK_THREADS (2; 1 pinned), WRK_CONNECTIONS (64), WRK_DURATION
# (15s), WARMUP (3s), K6_DURATION (15s; the duration of each latency
# measurement, whatever the tool), LATENCY_TOOL (auto: oha if installed, else
# k6; or oha, k6), LOW_RATE (1000; the supplementary low-rate latency pair, 0
# to skip it), ROUNDS (5; (3),(4) pairs measured, the median ratio is
# reported), STRICT=1 to exit 1 when a target of the SPEC is missed (by
# default the exit code only reflects whether the measurement itself worked).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

lt_choose_pinning
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-15s}
WARMUP=${WARMUP:-3s}
K6_DURATION=${K6_DURATION:-15s}
STRICT=${STRICT:-0}
ROUNDS=${ROUNDS:-5}
CLK_TCK=$(getconf CLK_TCK)

command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
command -v nginx >/dev/null || lt_die "nginx is missing (apt-get install -y nginx)"
lt_ensure_binaries
LATENCY_TOOL=${LATENCY_TOOL:-auto}
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [[ "$LATENCY_TOOL" == auto ]]; then
    if [[ -x "$OHA" ]]; then LATENCY_TOOL=oha; else LATENCY_TOOL=k6; fi
fi
case "$LATENCY_TOOL" in
    oha) [[ -x "$OHA" ]] || lt_die "oha is missing (cargo install oha --locked)" ;;
    k6) lt_ensure_k6 ;;
    *) lt_die "LATENCY_TOOL must be auto, oha or k6, not '$LATENCY_TOOL'" ;;
esac

lt_use_temp_dir compare

echo "== floopy-gateway side-by-side benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "nproc: $(nproc)"
echo "load before: $(uptime)"
echo "wrk: -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency (after a $WARMUP warm-up), script load-tests/wrk/chat.lua"
if ((PINNED)); then
    echo "pinned: each proxy alone on CPU $PROXY_CPU with one worker thread; wrk, the latency generator, the fake provider and the broker on CPU $LOAD_CPU"
else
    echo "note: wrk, k6 and every server share this machine's $(nproc) cores; nothing is pinned."
fi
echo

# --- the servers -----------------------------------------------------------

lt_start_fake_provider "$TMP"

lt_start_nginx "$TMP" "$FAKE_ADDR"
lt_start_reference "$TMP" "$FAKE_ADDR"

# (4) the gateway, every feature on (see lt_write_gateway_config), logging to
# a real Kafka broker (tansu, from scripts/install-kafka-tools.sh) when one is
# installed, else to the JSON Lines file.
SINK_NOTE="request log (file sink, JSON Lines; install tansu for the Kafka sink)"
KAFKA_PID=""
if lt_start_kafka "$TMP"; then
    SINK_NOTE="request log to Kafka (tansu broker on this machine, idempotent producer, lz4)"
    KAFKA_PID=${LT_PIDS[-1]}
fi
lt_start_gateway "$TMP" "$FAKE_ADDR"

# (5) LiteLLM's proxy and (6) Portkey's gateway, when installed
# (bash load-tests/install-peers.sh), on the same fake provider. Each needs
# its own key or headers; the request body is the same.
PEERS=()
declare -A TARGET_KEY TARGET_HEADERS
if lt_start_litellm "$TMP" "$FAKE_ADDR"; then
    PEERS+=("litellm $LITELLM_ADDR $LITELLM_PID")
    TARGET_KEY[litellm]=$LITELLM_KEY
fi
if lt_start_portkey "$TMP"; then
    PEERS+=("portkey $PORTKEY_ADDR $PORTKEY_PID")
    TARGET_KEY[portkey]=sk-test
    TARGET_HEADERS[portkey]="x-portkey-provider: openai|x-portkey-custom-host: http://$FAKE_ADDR/v1"
fi
((${#PEERS[@]} > 0)) || lt_log "peers not installed (bash load-tests/install-peers.sh): LiteLLM and Portkey left out"

if ((PINNED)); then
    # shellcheck disable=SC2086 # KAFKA_PID is empty or one pid
    lt_pin "$LOAD_CPU" "$FAKE_PID" $KAFKA_PID
    lt_pin "$PROXY_CPU" "$NGINX_PID" "$REF_PID" "$GW_PID"
    for peer in "${PEERS[@]}"; do
        read -r _ _ pid <<<"$peer"
        lt_pin "$PROXY_CPU" "$pid"
    done
fi

export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"
PATH_CHAT=/v1/chat/completions
BODY_FILE="$LT_ROOT/load-tests/wrk/chat-body.json"

# One request through each target before measuring: a target that answers
# anything but 200 would make its numbers meaningless.
for target in "direct $FAKE_ADDR" "nginx $NGINX_ADDR" "reference $REF_ADDR" "floopy $GW_ADDR" "${PEERS[@]}"; do
    read -r name addr _ <<<"$target"
    set -- "$name" "$addr"
    extra=()
    IFS='|' read -r -a pairs <<<"${TARGET_HEADERS[$name]:-}"
    for pair in "${pairs[@]}"; do [[ -n "$pair" ]] && extra+=(-H "$pair"); done
    status=$(curl -s -o "$TMP/probe-$1.body" -D "$TMP/probe-$1.headers" -w '%{http_code}' --max-time 10 \
        -H "Authorization: Bearer ${TARGET_KEY[$name]:-$FLOOPY_KEY}" -H "floopy-project-id: $FLOOPY_PROJECT" \
        "${extra[@]}" \
        -H 'Content-Type: application/json' \
        -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' "http://$2$PATH_CHAT")
    [[ "$status" == 200 ]] || { cat "$TMP/probe-$1.body" >&2; lt_die "$1 ($2) answered $status to the probe"; }
done
grep -qi '^floopy-request-id:' "$TMP/probe-floopy.headers" || lt_die "the gateway's answer has no floopy-request-id"

# --- peak throughput with wrk ------------------------------------------------

# The sum, over a process and its children (nginx's worker), of an awk
# expression of the fields of /proc/PID/stat after "pid (comm) " (all threads).
proc_stat_sum() {
    local fields_expr=$1 total=0 pid fields
    shift
    for pid in "$@" $(pgrep -P "$1" 2>/dev/null); do
        fields=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + $(awk "{print $fields_expr}" <<<"$fields")))
    done
    echo "$total"
}

# CPU time (clock ticks) used so far: utime and stime, fields 12 and 13.
cpu_ticks() { proc_stat_sum '$12 + $13' "$@"; }

# Minor page faults so far: minflt, field 8.
minor_faults() { proc_stat_sum '$8' "$@"; }

# wrk latency "231.00us" / "1.23ms" / "1.02s" / "2.00m" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

declare -A RPS P50 P99 ERRS CPU_US FAULTS
# measure NAME ADDR PID: warm-up, then the measured wrk run; fills the tables above.
measure() {
    local name=$1 addr=$2 pid=$3 out="$TMP/wrk-$1.txt" before after faults reqs base=${1%%#*}
    # A peer's own key and headers (wrk/chat.lua reads them).
    local -x FLOOPY_KEY="${TARGET_KEY[$base]:-$FLOOPY_KEY}" FLOOPY_EXTRA_HEADERS="${TARGET_HEADERS[$base]:-}"
    lt_run "${LOAD[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WARMUP" -s "$LT_ROOT/load-tests/wrk/chat.lua" \
        "http://$addr$PATH_CHAT" >/dev/null 2>&1
    before=$(cpu_ticks "$pid")
    faults=$(minor_faults "$pid")
    lt_run "${LOAD[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WRK_DURATION" --latency \
        -s "$LT_ROOT/load-tests/wrk/chat.lua" "http://$addr$PATH_CHAT" >"$out" 2>&1
    after=$(cpu_ticks "$pid")
    faults=$(($(minor_faults "$pid") - faults))
    RPS[$name]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    local non2xx sockerr
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sockerr=$(awk '/Socket errors:/ { n = 0; for (i = 3; i <= NF; i++) n += $i + 0; print n }' "$out")
    ERRS[$name]=$((${non2xx:-0} + ${sockerr:-0}))
    CPU_US[$name]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="${reqs:-0}" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
    FAULTS[$name]=$(awk -v f="$faults" -v n="${reqs:-0}" 'BEGIN { if (n > 0) printf "%.3f", f / n; else print "-" }')
    if [[ -z "${RPS[$name]}" ]]; then
        cat "$out" >&2
        lt_die "could not read wrk's output for $name"
    fi
    lt_log "$name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, errors ${ERRS[$name]}"
}

TARGETS=("direct $FAKE_ADDR $FAKE_PID" "nginx $NGINX_ADDR $NGINX_PID" "reference $REF_ADDR $REF_PID" "floopy $GW_ADDR $GW_PID" "${PEERS[@]}")
declare -A SPREAD_RPS SPREAD_CPU
if ((PINNED)); then
    lt_log "peak throughput, pinned: 4 targets in each of $ROUNDS rounds, each $WARMUP + $WRK_DURATION"
    PAIR_RATIOS=()
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in "${TARGETS[@]}"; do
            read -r name addr pid <<<"$target"
            measure "$name#$round" "$addr" "$pid"
        done
        PAIR_RATIOS+=("$(awk -v a="${RPS[floopy#$round]}" -v b="${RPS[reference#$round]}" 'BEGIN { printf "%.1f", 100 * a / b }')")
    done
    # Each target's figures: the spread over the rounds; its median stands
    # for it below (half of the gateway's median peak for the latency).
    for target in "${TARGETS[@]}"; do
        read -r name _ <<<"$target"
        rps=() cpu=() p50=() p99=() faults=() errs=0
        for ((round = 1; round <= ROUNDS; round++)); do
            rps+=("${RPS[$name#$round]}") cpu+=("${CPU_US[$name#$round]}")
            p50+=("${P50[$name#$round]}") p99+=("${P99[$name#$round]}") faults+=("${FAULTS[$name#$round]}")
            errs=$((errs + ${ERRS[$name#$round]}))
        done
        SPREAD_RPS[$name]=$(lt_spread "${rps[@]}")
        SPREAD_CPU[$name]=$(lt_spread "${cpu[@]}")
        read -r _ "RPS[$name]" _ <<<"${SPREAD_RPS[$name]}"
        read -r _ "CPU_US[$name]" _ <<<"${SPREAD_CPU[$name]}"
        read -r _ "P50[$name]" _ <<<"$(lt_spread "${p50[@]}")"
        read -r _ "P99[$name]" _ <<<"$(lt_spread "${p99[@]}")"
        read -r _ "FAULTS[$name]" _ <<<"$(lt_spread "${faults[@]}")"
        ERRS[$name]=$errs
    done
else
    lt_log "peak throughput: 4 targets, then $((ROUNDS - 1)) more (3),(4) pairs, each $WARMUP + $WRK_DURATION"
    for target in "${TARGETS[@]}"; do
        read -r name addr pid <<<"$target"
        measure "$name" "$addr" "$pid"
    done
    # More (3),(4) pairs, back to back: on a shared machine one pair can land on
    # a noisy moment; the median of the pairs' ratios is the figure reported.
    PAIR_RATIOS=("$(awk -v a="${RPS[floopy]}" -v b="${RPS[reference]}" 'BEGIN { printf "%.1f", 100 * a / b }')")
    for ((round = 2; round <= ROUNDS; round++)); do
        measure "reference#$round" "$REF_ADDR" "$REF_PID"
        measure "floopy#$round" "$GW_ADDR" "$GW_PID"
        PAIR_RATIOS+=("$(awk -v a="${RPS[floopy#$round]}" -v b="${RPS[reference#$round]}" 'BEGIN { printf "%.1f", 100 * a / b }')")
    done
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "-" }'; }

echo
if ((PINNED)); then
    echo "== peak throughput, pinned (wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, closed loop; min / median / max over $ROUNDS rounds)"
    printf '%-34s %-22s %-22s %9s %9s %7s %10s\n' target "req/s" "proxy CPU us/req" "p50 ms" "p99 ms" errors "faults/req"
    row() {
        printf '%-34s %-22s %-22s %9s %9s %7s %10s\n' "$1" "${SPREAD_RPS[$2]// / / }" "${SPREAD_CPU[$2]// / / }" \
            "${P50[$2]}" "${P99[$2]}" "${ERRS[$2]}" "${FAULTS[$2]}"
    }
else
    echo "== peak throughput (wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, closed loop)"
    printf '%-34s %10s %10s %10s %8s %14s %10s\n' target "req/s" "p50 ms" "p99 ms" errors "proxy CPU us/req" "faults/req"
    row() { printf '%-34s %10s %10s %10s %8s %14s %10s\n' "$1" "${RPS[$2]}" "${P50[$2]}" "${P99[$2]}" "${ERRS[$2]}" "${CPU_US[$2]}" "${FAULTS[$2]}"; }
fi
row "(1) direct to the fake provider" direct
row "(2) nginx proxy_pass" nginx
row "(3) reference Pingora proxy" reference
row "(4) floopy-gateway, all features" floopy
for peer in "${PEERS[@]}"; do
    read -r name _ <<<"$peer"
    case "$name" in
        litellm) row "(5) LiteLLM proxy, 2 workers" litellm ;;
        portkey) row "(6) Portkey gateway (Node.js)" portkey ;;
    esac
done
echo "(proxy CPU us/req: CPU time of that target's own process (all its threads) per request; for (1) the fake provider's)"
echo "(faults/req: that process's minor page faults per request, the median over the rounds when pinned)"
if ((PINNED)); then
    echo "(p50 and p99: the medians over the rounds)"
    RCPU=$(awk -v a="${CPU_US[floopy]}" -v b="${CPU_US[reference]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    echo "(4)/(3) CPU per request (medians): $RCPU   (target: <= 1.10)"
fi
R43=$(printf '%s\n' "${PAIR_RATIOS[@]}" | sort -n | awk '{v[NR] = $1} END { print v[int((NR + 1) / 2)] }')
R42=$(ratio "${RPS[floopy]}" "${RPS[nginx]}")
echo
echo "(4)/(3) floopy-gateway / reference proxy throughput: ${R43}%   (SPEC target: >= 90%)"
echo "        median of $ROUNDS back-to-back pairs: ${PAIR_RATIOS[*]} (%)"
echo "(4)/(2) floopy-gateway / nginx throughput:           ${R42}%"
echo "(4) features: bearer key auth, floopy-project-id header, environment key (production) with"
echo "    RPM limit and monthly cost cap, usage parsing and pricing, $SINK_NOTE."

# --- latency at a constant arrival rate: half of (4)'s peak -------------------

HALF=$((RPS[floopy] / 2))
((HALF >= 1)) || lt_die "no throughput measured for floopy-gateway"
declare -A K50 K99 KRATE KDROP KFAIL
# k6_at NAME URL RATE: k6 latency.js at RATE req/s for K6_DURATION; p50/p99 from
# --summary-export, stored under NAME@RATE.
k6_at() {
    local name=$1 url=$2 rate=$3 id="$1@$3" json="$TMP/k6-$1-$3.json"
    FLOOPY_URL="$url" RATE="$rate" DURATION="$K6_DURATION" PRE_VUS=32 MAX_VUS=1000 \
        lt_run "${LOAD[@]}" "$K6" run --quiet --summary-export "$json" "$LT_ROOT/load-tests/k6/latency.js" \
        >"$TMP/k6-$name-$rate.txt" 2>&1
    local rc=$?
    [[ -f "$json" ]] || { tail -n 30 "$TMP/k6-$name-$rate.txt" >&2; lt_die "k6 wrote no summary for $id (exit $rc)"; }
    read -r "K50[$id]" "K99[$id]" "KRATE[$id]" "KDROP[$id]" "KFAIL[$id]" < <(python3 - "$json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
d = m["http_req_duration"]
fail = m.get("http_req_failed", {})
print("%.3f %.3f %.0f %d %.4f" % (d["med"], d["p(99)"], m["http_reqs"]["rate"],
      m.get("dropped_iterations", {}).get("count", 0), fail.get("value", fail.get("rate", 0))))
EOF
)
    lt_log "$name at $rate req/s: p50 ${K50[$id]} ms, p99 ${K99[$id]} ms (achieved ${KRATE[$id]} req/s, dropped ${KDROP[$id]}, k6 exit $rc)"
}
# oha_at NAME URL RATE: oha at RATE req/s (open loop, latency corrected for
# coordinated omission) for K6_DURATION, with the body and headers of
# wrk/chat.lua; stored as k6_at stores its results.
oha_at() {
    local name=$1 url=$2 rate=$3 id="$1@$3" json="$TMP/oha-$1-$3.json"
    lt_run "${LOAD[@]}" "$OHA" -z "$K6_DURATION" -q "$rate" -c 64 --latency-correction --no-tui \
        --output-format json -m POST -H "Authorization: Bearer $FLOOPY_KEY" \
        -H "floopy-project-id: $FLOOPY_PROJECT" -H "content-type: application/json" \
        -D "$BODY_FILE" "$url$PATH_CHAT" >"$json" 2>"$TMP/oha-$name-$rate.err"
    local rc=$?
    ((rc == 0)) || { tail -n 20 "$TMP/oha-$name-$rate.err" >&2; lt_die "oha failed for $id (exit $rc)"; }
    read -r "K50[$id]" "K99[$id]" "KRATE[$id]" "KDROP[$id]" "KFAIL[$id]" < <(python3 - "$json" "$rate" "$K6_DURATION" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution") or {}
total = sum(codes.values())
seconds = float(sys.argv[3].rstrip("sm")) * (60 if sys.argv[3].endswith("m") else 1)
planned = int(float(sys.argv[2]) * seconds)
# Requests still in flight when the time is up are reported as errors.
errors = {k: v for k, v in (d.get("errorDistribution") or {}).items() if "deadline" not in k}
bad = total - codes.get("200", 0) + sum(errors.values())
print("%.3f %.3f %.0f %d %.4f" % (p["p50"] * 1000, p["p99"] * 1000, s["requestsPerSec"],
      max(0, planned - total), bad / max(total, 1)))
EOF
)
    lt_log "$name at $rate req/s: p50 ${K50[$id]} ms, p99 ${K99[$id]} ms (achieved ${KRATE[$id]} req/s, not sent ${KDROP[$id]}, oha)"
}
# K6_DURATION ("15s", "2m") in seconds.
latency_seconds() { awk -v d="$K6_DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }'; }
# latency_at NAME URL RATE [PID]: the open-loop run; with PID, also that
# process's CPU per request over the run (EQ_CPU[NAME@RATE]): at the same
# rate for every target, so a slower proxy's fewer requests per wake-up do
# not count against it as they do at each one's own peak.
declare -A EQ_CPU
latency_at() {
    local before after seconds
    [[ -n "${4:-}" ]] && before=$(cpu_ticks "$4")
    if [[ "$LATENCY_TOOL" == oha ]]; then oha_at "$1" "$2" "$3"; else k6_at "$1" "$2" "$3"; fi
    if [[ -n "${4:-}" ]]; then
        after=$(cpu_ticks "$4")
        seconds=$(latency_seconds)
        EQ_CPU[$1@$3]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v r="${KRATE[$1@$3]}" -v s="$seconds" \
            'BEGIN { if (r * s > 0) printf "%.1f", t / hz * 1e6 / (r * s); else print "-" }')
    fi
}
# latency_pair RATE TITLE: (1), (3) then (4) at RATE; prints the table and
# sets ADD50 / ADD99 (what (4) adds over (1)).
latency_pair() {
    local rate=$1 title=$2 tool ref50 ref99
    lt_log "latency at $rate req/s for $K6_DURATION each ($LATENCY_TOOL)"
    latency_at direct "http://$FAKE_ADDR" "$rate"
    latency_at reference "http://$REF_ADDR" "$rate" "$REF_PID"
    latency_at floopy "http://$GW_ADDR" "$rate" "$GW_PID"
    ADD50=$(awk -v a="${K50[floopy@$rate]}" -v b="${K50[direct@$rate]}" 'BEGIN { printf "%+.3f", a - b }')
    ADD99=$(awk -v a="${K99[floopy@$rate]}" -v b="${K99[direct@$rate]}" 'BEGIN { printf "%+.3f", a - b }')
    ref50=$(awk -v a="${K50[reference@$rate]}" -v b="${K50[direct@$rate]}" 'BEGIN { printf "%+.3f", a - b }')
    ref99=$(awk -v a="${K99[reference@$rate]}" -v b="${K99[direct@$rate]}" 'BEGIN { printf "%+.3f", a - b }')
    REF_ADD99=$ref99
    if [[ "$LATENCY_TOOL" == oha ]]; then
        tool="oha -q $rate --latency-correction (open loop, 64 connections)"
    else
        tool="k6 constant-arrival-rate"
    fi
    echo
    echo "== latency $title: $rate req/s, $tool for $K6_DURATION"
    printf '%-34s %10s %10s %12s %8s %8s\n' target "p50 ms" "p99 ms" "achieved/s" dropped "failed"
    printf '%-34s %10s %10s %12s %8s %8s\n' "(1) direct to the fake provider" "${K50[direct@$rate]}" "${K99[direct@$rate]}" "${KRATE[direct@$rate]}" "${KDROP[direct@$rate]}" "${KFAIL[direct@$rate]}"
    printf '%-34s %10s %10s %12s %8s %8s\n' "(3) reference Pingora proxy" "${K50[reference@$rate]}" "${K99[reference@$rate]}" "${KRATE[reference@$rate]}" "${KDROP[reference@$rate]}" "${KFAIL[reference@$rate]}"
    printf '%-34s %10s %10s %12s %8s %8s\n' "(4) floopy-gateway, all features" "${K50[floopy@$rate]}" "${K99[floopy@$rate]}" "${KRATE[floopy@$rate]}" "${KDROP[floopy@$rate]}" "${KFAIL[floopy@$rate]}"
    echo "added by floopy-gateway over direct: p50 ${ADD50} ms, p99 ${ADD99} ms"
    echo "added by the reference proxy over direct: p50 ${ref50} ms, p99 ${ref99} ms"
    echo "proxy CPU us/req at this rate: reference ${EQ_CPU[reference@$rate]}, floopy-gateway ${EQ_CPU[floopy@$rate]} ($(awk -v a="${EQ_CPU[floopy@$rate]}" -v b="${EQ_CPU[reference@$rate]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }') times)"
    local name planned
    planned=$(awk -v r="$rate" -v s="$(latency_seconds)" 'BEGIN { printf "%d", r * s }')
    for name in direct reference floopy; do
        if ((${KDROP[$name@$rate]} * 100 > planned)); then
            echo "warning: $LATENCY_TOOL dropped ${KDROP[$name@$rate]} of $planned requests against $name (> 1%): the load generator, sharing the cores, could not hold the rate; these latencies include its own saturation"
        fi
        if awk -v f="${KFAIL[$name@$rate]}" 'BEGIN { exit !(f > 0) }'; then
            echo "warning: $name failed a fraction ${KFAIL[$name@$rate]} of its requests at $rate req/s"
        fi
    done
}

# Supplementary, first: a low fixed rate, where the generator is far from saturating the
# machine, so the difference is mostly the gateway's own added latency.
LOW_RATE=${LOW_RATE:-1000}
if ((LOW_RATE > 0 && LOW_RATE < HALF)); then
    latency_pair "$LOW_RATE" "at a low fixed rate (supplementary)"
fi
latency_pair "$HALF" "at half of (4)'s peak (the SPEC's measurement; target: p99 added < 1 ms)"

# --- verdict ------------------------------------------------------------------

echo
MISSED=0
if awk -v r="$R43" 'BEGIN { exit !(r + 0 >= 90) }'; then
    echo "throughput target (>= 90% of the reference proxy): met (${R43}%)"
else
    echo "throughput target (>= 90% of the reference proxy): MISSED (${R43}%)"
    MISSED=1
fi
if awk -v a="$ADD99" 'BEGIN { exit !(a + 0 < 1) }'; then
    echo "latency target (p99 added at half peak < 1 ms): met (${ADD99} ms)"
else
    echo "latency target (p99 added at half peak < 1 ms): MISSED (${ADD99} ms)"
    MISSED=1
fi
if awk -v a="$ADD99" -v r="$REF_ADD99" 'BEGIN { exit !(a - r <= 0.3) }'; then
    echo "latency target (p99 added no more than 0.3 ms above the reference's, ${REF_ADD99} ms): met"
else
    echo "latency target (p99 added no more than 0.3 ms above the reference's, ${REF_ADD99} ms): MISSED"
    MISSED=1
fi
if ((PINNED)); then
    if awk -v r="$RCPU" 'BEGIN { exit !(r + 0 > 0 && r + 0 <= 1.10) }'; then
        echo "CPU target (pinned: within 10% of the reference's per request): met (${RCPU})"
    else
        echo "CPU target (pinned: within 10% of the reference's per request): MISSED (${RCPU})"
        MISSED=1
    fi
fi
BROKEN=0
for name in direct nginx reference floopy; do
    if ((${ERRS[$name]} > 0)); then
        echo "warning: $name had ${ERRS[$name]} errors (non-2xx answers or socket errors): its numbers are not comparable"
        BROKEN=1
    fi
done

echo
echo "load after: $(uptime)"
lt_cleanup
if ((BROKEN)); then exit 1; fi
if ((STRICT && MISSED)); then exit 1; fi
exit 0
