#!/usr/bin/env bash
# load-tests/analytics.sh: the analytics API on 10 million request logs.
# Starts a ClickHouse of its own (scripts/start-clickhouse.sh, ClickHouse
# 18.16, data in a temporary directory, HTTP on a free port) and a release
# floopy-control on a database of its own, bootstraps an org with 20
# projects, generates ROWS request logs in ClickHouse (INSERT ... SELECT
# FROM numbers(): ORGS orgs sharing the table, 30 days, every environment,
# 5 models, errors and limits, sessions, users, properties, cached tokens,
# 1 % of the org's requests scored), waits for the hourly rollup to take
# it in, then times each widget, the breakdown table, the time series and
# the first page of the request list, sequentially, SAMPLES times each
# after 3 warm-up calls, and prints p50 and p95 in milliseconds (target:
# p95 under 100 ms); twice: right after the load, and with the rollup's row
# versions merged (OPTIMIZE ... FINAL, what ClickHouse's background merges
# reach). Then times the dashboard's pages: each page's data requests sent
# together, as the page sends them (p50 and p95 of the slowest). Loopback
# only; about 4 minutes, and the pages as many again.
#
# Knobs: ROWS (10000000), ORGS (1: every row in the benchmarked org), SAMPLES (30),
# PAGES (1; 0 skips the pages),
# HOLD (seconds to keep everything running afterwards, to look around).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

ROWS="${ROWS:-10000000}"
ORGS="${ORGS:-1}"
SAMPLES="${SAMPLES:-30}"

lt_ensure_binaries
"$LT_ROOT/scripts/start-postgres.sh" >/dev/null || lt_die "PostgreSQL is not available"
lt_use_temp_dir analytics

DB="floopy_load_$$"
psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $DB" || lt_die "cannot create $DB"
drop_db() { psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists $DB with (force)" >/dev/null 2>&1; }
trap 'lt_cleanup; drop_db' EXIT

CH_PORT=$(lt_free_port)
read -r CH_PID CH_URL < <(CH_TCP_PORT=$(lt_free_port) CH_INTERSERVER_PORT=$(lt_free_port) \
    "$LT_ROOT/scripts/start-clickhouse.sh" "$TMP/clickhouse" "$CH_PORT")
[[ -n "${CH_URL:-}" ]] || lt_die "ClickHouse did not start"
[[ "$CH_PID" != "-" ]] && LT_PIDS+=("$CH_PID")
ch() {
    local out
    out=$(curl -sS "$CH_URL" --data-binary "$1" -w "\n%{http_code}") || lt_die "ClickHouse is not answering"
    [[ "${out##*$'\n'}" == 200 ]] || lt_die "ClickHouse refused: ${out%$'\n'*}"
    printf "%s" "${out%$'\n'*}"
}

PORT=$(lt_free_port)
cat >"$TMP/control.yaml" <<YAML
listen: "127.0.0.1:$PORT"
database:
  url: "postgres://postgres@127.0.0.1:5432/$DB"
sessions: {secure_cookie: false}
shutdown_grace_seconds: 1
clickhouse:
  url: "${CH_URL%/}"
  prices:
    - { model: gpt-4o, input_per_mtok_usd: 2.50, cached_input_per_mtok_usd: 1.25 }
YAML
PASSWORD=load-test-password
out=$(echo "$PASSWORD" | "$LT_BIN/floopy-control" --config "$TMP/control.yaml" bootstrap \
    --org-name Load --plan enterprise --email load@floopy.local --name Load) || lt_die "bootstrap failed"
ORG=$(sed -n 's/^org id: *//p' <<<"$out")
FLOOPY_LOG=warn "$LT_BIN/floopy-control" --config "$TMP/control.yaml" serve >"$TMP/control.out" 2>"$TMP/control.err" &
CONTROL_PID=$!
LT_PIDS+=("$CONTROL_PID")
URL="http://127.0.0.1:$PORT"
lt_wait_http "$URL/readyz" 20 "$CONTROL_PID" || { cat "$TMP/control.err" >&2; lt_die "floopy-control did not start"; }
jar="$TMP/cookies"
login=$(curl -fs -c "$jar" "$URL/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"load@floopy.local\", \"password\": \"$PASSWORD\"}") || lt_die "login failed"
csrf=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])' <<<"$login")
TOKEN=$(curl -fs -b "$jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
    "$URL/v1/tokens" -d '{"name": "load"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
PROJECTS=()
for i in $(seq 1 20); do
    p=$(curl -fs -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        "$URL/v1/orgs/$ORG/projects" -d "{\"name\": \"P$i\", \"slug\": \"p$i\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || lt_die "project $i"
    PROJECTS+=("'$p'")
done
projects=$(IFS=,; echo "${PROJECTS[*]}")

# The benchmarked org is org 0; the others share the table.
now_ms=$(( $(date +%s) * 1000 ))
lt_log "generating $ROWS request logs ($ORGS org(s)) in ClickHouse $CH_URL"
started=$(date +%s)
ch "INSERT INTO request_logs SELECT
    concat('r-', toString(number)) AS request_id,
    toUInt64($now_ms - 1000 - (number * 7919) % (30 * 86400000)) AS ts_ms,
    toDateTime(intDiv(ts_ms, 1000)) AS ts,
    if(number % $ORGS = 0, '$ORG', concat('org-', toString(number % $ORGS))) AS org_id,
    if(number % 97 = 0, '', [$projects][(intDiv(number, 7) % 20) + 1]) AS project_id,
    concat('key-', toString(number % 40)) AS api_key_id,
    ['production', 'staging', 'development', ''][number % 4 + 1] AS environment,
    ['openai', 'openai', 'anthropic', 'openai', 'openai'][number % 5 + 1] AS provider,
    ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'text-embedding-3-small', 'gpt-4.1'][number % 5 + 1] AS model,
    '/v1/chat/completions' AS path,
    toUInt16(multiIf(number % 50 = 0, 429, number % 89 = 0, 402, number % 97 = 0, 403, number % 113 = 0, 502, 200)) AS status,
    multiIf(status = 429, 'rate_limit_exceeded', status = 402, 'environment_cost_cap_exceeded', status = 403, 'project_mismatch', status = 502, 'upstream_error', '') AS error_code,
    toUInt8(number % 3 = 0) AS stream,
    toUInt64(if(status = 200, 50 + number % 4000, 0)) AS prompt_tokens,
    toUInt64(if(status = 200, number % 1500, 0)) AS completion_tokens,
    toUInt64(if(number % 4 = 0, prompt_tokens / 2, 0)) AS cached_tokens,
    (prompt_tokens * 2 + completion_tokens * 10) / 1000000 AS cost_usd,
    toUInt64(prompt_tokens * 2 + completion_tokens * 10) AS cost_micro_usd,
    toUInt64(20 + (number * 31) % 3000) AS latency_ms,
    toUInt64(10 + (number * 17) % 500) AS ttfb_ms,
    if(number % 3 = 0, '', concat('s-', toString(number % 20000))) AS session_id,
    if(number % 5 = 0, '', concat('u-', toString(number % 3000))) AS user_id,
    if(number % 2 = 0, ['team', 'feature'], ['team']) AS property_keys,
    if(number % 2 = 0, [['core', 'growth'][intDiv(number % 4, 2) + 1], 'chat'], ['search']) AS property_values,
    'bench' AS gateway_id,
    now() AS inserted_at
  FROM numbers($ROWS)" >/dev/null
ch "INSERT INTO feedback SELECT
    concat('f-', toString(number)) AS feedback_id,
    concat('r-', toString(number)) AS request_id,
    toUInt64($now_ms - 1000 - (number * 7919) % (30 * 86400000) + 5000) AS ts_ms,
    toDateTime(intDiv(ts_ms, 1000)) AS ts,
    '$ORG' AS org_id, '' AS project_id, 'key-1' AS api_key_id, '' AS user_id,
    (number % 101) / 100 AS score, '' AS comment, now() AS inserted_at
  FROM numbers($ROWS) WHERE number % ($ORGS * 100) = 0" >/dev/null
lt_log "generated in $(( $(date +%s) - started )) s: $(ch 'SELECT count() FROM request_logs') rows, $(ch "SELECT count() FROM request_logs WHERE org_id = '$ORG'") in the org, $(ch 'SELECT count() FROM system.parts WHERE active AND table = '"'"'request_logs'"'") active parts"

# The hourly rollup's first run takes in everything (one replica, every
# rollup_interval_ms); the widgets read it.
# Timed once it is caught up: a run that started more than its margin
# (10 s) after the load has only the new hours to do.
loaded=$(ch "SELECT toUInt32(now())")
started=$(date +%s)
until (( $(ch "SELECT toUInt32(max(computed_at)) FROM request_rollup") > loaded + 12 )); do
    (( $(date +%s) - started < 600 )) || lt_die "the rollup did not run"
    sleep 0.5
done
lt_log "rollup computed in $(( $(date +%s) - started )) s: $(ch "SELECT count() FROM request_rollup") rows"

P1=${PROJECTS[0]//\'/}
time_endpoints() {
python3 - "$URL" "$TOKEN" "$ORG" "$P1" "$SAMPLES" <<'PY'
import json, sys, time, urllib.request
url, token, org, project, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
targets = [
    ("requests, first page", f"requests?project={project}&limit=50"),
    ("requests, first page, all projects", "requests?limit=50"),
    ("widget: cost per Mtok", f"widgets/cost-per-mtok?project={project}"),
    ("widget: quality", f"widgets/quality?project={project}"),
    ("widget: latency", f"widgets/latency?project={project}"),
    ("widget: rank (cost)", f"widgets/rank?project={project}&metric=cost"),
    ("widget: cost by environment", f"widgets/cost-by-environment?project={project}"),
    ("all-projects table", "projects"),
    ("time series (daily)", f"timeseries?project={project}&interval=day"),
]
print(f"{'endpoint':40} {'p50 ms':>8} {'p95 ms':>8}")
worst = 0.0
for name, path in targets:
    times = []
    for i in range(samples + 3):
        req = urllib.request.Request(f"{url}/v1/orgs/{org}/analytics/{path}",
                                     headers={"Authorization": f"Bearer {token}"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            assert resp.status == 200, body
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50 = times[len(times) // 2]
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    worst = max(worst, p95)
    print(f"{name:40} {p50:8.1f} {p95:8.1f}")
print(f"worst p95: {worst:.1f} ms (target 100 ms)")
PY
}

# The dashboard's pages as it loads them: each page's analytics requests
# sent together (the page waits for the slowest), over its default range
# (the last 7 days), SAMPLES times after 3 warm-up loads.
time_pages() {
python3 - "$URL" "$TOKEN" "$ORG" "$P1" "$SAMPLES" <<'PY'
import sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, token, org, project, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def page_range():
    to = int(time.time() * 1000)
    return f"from={to - 7 * 86400000}&to={to + 1}"
one = f"project={project}&"
pages = [
    ("overview, one project", [f"widgets/cost-per-mtok?{one}", f"widgets/quality?{one}", f"widgets/latency?{one}",
                               f"widgets/rank?{one}metric=requests&", f"widgets/cost-by-environment?{one}",
                               f"timeseries?{one}interval=day&"]),
    ("overview, all projects", ["projects?", "timeseries?interval=day&"]),
    ("requests, one project", [f"requests?{one}limit=50&"]),
    ("requests, all projects", ["requests?limit=50&"]),
    ("sessions", ["sessions?limit=50&"]),
    ("users", ["users?limit=50&"]),
    ("properties", ["properties?limit=50&"]),
    ("cache", ["cache?"]),
    ("rate limits", ["rate-limits?interval=day&"]),
    ("security", ["security?interval=day&"]),
    ("evaluations", ["evaluations?"]),
]
def fetch(path):
    req = urllib.request.Request(f"{url}/v1/orgs/{org}/analytics/{path}{page_range()}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        body = resp.read()
        assert resp.status == 200, body
print(f"{'page (its data requests together)':40} {'p50 ms':>8} {'p95 ms':>8}")
with ThreadPoolExecutor(max_workers=8) as pool:
    for name, paths in pages:
        times = []
        for i in range(samples + 3):
            t = time.perf_counter()
            list(pool.map(fetch, paths))
            if i >= 3:
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        p50 = times[len(times) // 2]
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(f"{name:40} {p50:8.1f} {p95:8.1f}")
PY
}

lt_log "timing, just after the load (the rollup's versions not yet merged)"
time_endpoints
ch "OPTIMIZE TABLE request_rollup FINAL" >/dev/null
lt_log "timing again with the rollup's versions merged, as background merges leave it: $(ch "SELECT count() FROM request_rollup") rows"
time_endpoints
lt_log "the dashboard's pages (PAGES=0 skips), with the rollup merged"
[[ "${PAGES:-1}" == 1 ]] && time_pages

if [[ -n "${HOLD:-}" ]]; then
    lt_log "holding: ClickHouse $CH_URL, floopy-control $URL, org $ORG, token $TOKEN, project $P1 (Ctrl-C stops)"
    sleep "$HOLD"
fi
