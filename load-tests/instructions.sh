#!/usr/bin/env bash
# load-tests/instructions.sh: user-space instructions per request of the
# reference proxy and of floopy-gateway (every feature on, file sink), counted
# by valgrind's callgrind. Unlike req/s, the count does not move with the
# machine's load, so a change to the request path can be judged on a shared,
# noisy machine. Loopback only, about 3 minutes.
#
# Each target runs under callgrind; wrk -t1 -c4 warms it up for WARMUP, the
# counters are zeroed, wrk sends load-tests/wrk/chat.lua for DURATION, the
# counters are dumped, and the total is divided by wrk's request count.
# Kernel work (system calls, TCP) is not counted: both targets make the same
# system calls per request (strace -c shows it).
#
# Then the gateway's instructions per request are split by component: the
# inclusive count of each of its Pingora phases and of the functions they
# call, which is where its own work goes (the rest of the difference is in
# Pingora's code around those phases, shared with the reference).
#
# Knobs: WARMUP (5s), DURATION (20s), KEEP_TMP=1 keeps the callgrind files
# (open them with callgrind_annotate --inclusive=yes FILE).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

WARMUP=${WARMUP:-5s}
DURATION=${DURATION:-20s}

command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
command -v valgrind >/dev/null || lt_die "valgrind is missing (apt-get install -y valgrind)"
lt_ensure_binaries

lt_use_temp_dir instructions

lt_start_fake_provider "$TMP"
export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"

# count NAME ADDR PID: prints the instructions per request of PID (a process
# under callgrind) while wrk drives ADDR; sets IR[NAME].
declare -A IR REQUESTS
count() {
    local name=$1 addr=$2 pid=$3 url="http://$2/v1/chat/completions" out requests total
    lt_run wrk -t1 -c4 -d"$WARMUP" -s "$LT_ROOT/load-tests/wrk/chat.lua" "$url" >/dev/null 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1 || lt_die "callgrind_control -z $pid failed"
    out=$(lt_run wrk -t1 -c4 -d"$DURATION" -s "$LT_ROOT/load-tests/wrk/chat.lua" "$url")
    callgrind_control -d "$pid" >/dev/null 2>&1 || lt_die "callgrind_control -d $pid failed"
    grep -q 'Non-2xx' <<<"$out" && lt_die "$name answered errors: $out"
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    REQUESTS[$name]=$requests
    total=$(callgrind_annotate "$TMP/callgrind.$name.1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [[ -n "$requests" && -n "$total" ]] || lt_die "no count for $name"
    IR[$name]=$((total / requests))
    lt_log "$name: $requests requests, $total instructions, ${IR[$name]} per request"
}

# Under callgrind a process runs some fifty times slower: generous waits.
REF_ADDR="127.0.0.1:$(lt_free_port)"
valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.reference" \
    "$LT_BIN/reference-proxy" --listen "$REF_ADDR" --upstream "$FAKE_ADDR" --threads 1 \
    >"$TMP/reference.out" 2>&1 &
REF_PID=$!
LT_PIDS+=("$REF_PID")
lt_wait_tcp "$REF_ADDR" 120 "$REF_PID" || { tail "$TMP/reference.out" >&2; lt_die "reference-proxy did not start"; }
count reference "$REF_ADDR" "$REF_PID"
lt_stop "$REF_PID"

GW_ADDR="127.0.0.1:$(lt_free_port)"
GW_ADMIN="127.0.0.1:$(lt_free_port)"
lt_write_gateway_config "$TMP/gateway.yaml" "$TMP" "$GW_ADDR" "$GW_ADMIN" "$FAKE_ADDR"
FLOOPY_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.floopy" \
    "$LT_BIN/floopy-gateway" --config "$TMP/gateway.yaml" >"$TMP/gateway.out" 2>&1 &
GW_PID=$!
LT_PIDS+=("$GW_PID")
lt_wait_http "http://$GW_ADMIN/healthz" 120 "$GW_PID" || { tail "$TMP/gateway.out" >&2; lt_die "floopy-gateway did not start"; }
count floopy "$GW_ADDR" "$GW_PID"
lt_stop "$GW_PID"

echo
echo "== user-space instructions per request (callgrind; wrk -t1 -c4, $DURATION after a $WARMUP warm-up)"
printf '%-34s %12s\n' "(3) reference Pingora proxy" "${IR[reference]}"
printf '%-34s %12s\n' "(4) floopy-gateway, all features" "${IR[floopy]}"
awk -v a="${IR[floopy]}" -v b="${IR[reference]}" \
    'BEGIN { printf "(4)/(3): %.2f; the gateway'"'"'s own work: %d per request\n", a / b, a - b }'

# The components: label, then the function (callgrind's name, exactly).
GW='<floopy_gateway::proxy::Gateway as pingora_proxy::proxy_trait::ProxyHttp>'
COMPONENTS=(
    "request_filter: key, project, body, limits|$GW::request_filter::{{closure}}"
    "  key and project (admit_header)|floopy_gateway::proxy::admission::admit_header"
    "    key hash, SHA-256 (see below)|floopy_model::keys::hash_key"
    "  body: model, stream, user (parse_request)|floopy_gateway::body::parse_request"
    "  limits: RPM and monthly cap (admit)|floopy_gateway::limits::Limiter::admit"
    "upstream_peer|$GW::upstream_peer::{{closure}}"
    "upstream_request_filter: credential, path|$GW::upstream_request_filter::{{closure}}"
    "  (prepare_request)|floopy_gateway::upstream::Provider::prepare_request"
    "upstream read timeout: timer made (Pingora)|<pingora_timeout::fast_timeout::FastOrTokioTimeout as pingora_timeout::ToTimeout>::timeout"
    "response_filter: the gateway's headers|$GW::response_filter::{{closure}}"
    "  (add_gateway_headers)|floopy_gateway::proxy::headers::add_gateway_headers"
    "response_body_filter: usage, record|$GW::response_body_filter"
    "  record built, settled, submitted (complete)|floopy_gateway::proxy::Gateway::complete"
    "    record and usage (record::build)|floopy_gateway::proxy::record::build"
    "      usage from the body (usage_from_json)|floopy_gateway::usage::json::usage_from_json"
    "    to the write-ahead log (Wal::write)|floopy_gateway::logs::wal::Wal::write"
    "logging: metrics|$GW::logging::{{closure}}"
    "log writer thread (file sink)|<floopy_gateway::logs::file::FileWriter as floopy_gateway::logs::queue::BatchWriter<floopy_gateway::logs::wal::Pending>>::write_batch"
)
echo
echo "== where the gateway's instructions go (inclusive, per request; the indented rows are part of the row above)"
# From the file's own directory: callgrind_annotate groups a function's
# costs by source file, and names a source it can open from the working
# directory differently from one it cannot, which splits the totals.
inclusive=$(cd "$TMP" && callgrind_annotate --inclusive=yes --auto=no --threshold=100 callgrind.floopy.1 2>/dev/null)
for row in "${COMPONENTS[@]}"; do
    label=${row%%|*}
    fn=${row#*|}
    # Lines read "COUNT (PCT)  FILE:FUNCTION [BINARY]"; the one whose
    # FUNCTION is exactly fn and that names the binary is the function's
    # inclusive count.
    count=$(awk -v fn="$fn" '
        / \[[^]]*\]$/ {
            line = $0
            sub(/ \[[^]]*\]$/, "", line)
            sub(/ \([0-9,]+x\)$/, "", line)
            n = index(line, ":" fn)
            if (n > 0 && n + length(fn) == length(line)) { c = $1; gsub(",", "", c); if (c + 0 > best + 0) best = c + 0 }
        }
        END { print best + 0 }' <<<"$inclusive")
    printf '%-46s %8d\n' "$label" $((count / REQUESTS[floopy]))
done
echo "(the SHA-256 of the key runs in software under valgrind; natively the CPU's SHA extensions make it a few hundred cycles)"
