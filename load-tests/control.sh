#!/usr/bin/env bash
# load-tests/control.sh: floopy-control's API under load (k6,
# load-tests/k6/control.js), loopback only, about 40 seconds. Starts a
# release floopy-control on a database of its own in the local Postgres
# (scripts/start-postgres.sh), bootstraps an org with 5 projects, makes a
# personal access token through the API, runs the readers and writers, and
# prints the p99 of reads and writes (k6's summary; thresholds from the
# script's READ_P99_MS and WRITE_P99_MS).
#
# Knobs: READERS (8), WRITERS (2), DURATION (20s).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

lt_ensure_binaries
lt_ensure_k6
"$LT_ROOT/scripts/start-postgres.sh" >/dev/null || lt_die "PostgreSQL is not available"
lt_use_temp_dir control

DB="floopy_load_$$"
psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $DB" || lt_die "cannot create $DB"
drop_db() { psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists $DB with (force)" >/dev/null 2>&1; }
trap 'lt_cleanup; drop_db' EXIT

PORT=$(lt_free_port)
cat >"$TMP/control.yaml" <<YAML
listen: "127.0.0.1:$PORT"
database:
  url: "postgres://postgres@127.0.0.1:5432/$DB"
sessions: {secure_cookie: false}
login_throttle: {max_failures_per_client: 1000}
shutdown_grace_seconds: 1
YAML
PASSWORD=load-test-password
echo "$PASSWORD" | "$LT_BIN/floopy-control" --config "$TMP/control.yaml" bootstrap \
    --org-name Load --plan pro --email load@floopy.local --name Load >/dev/null || lt_die "bootstrap failed"
FLOOPY_LOG=warn "$LT_BIN/floopy-control" --config "$TMP/control.yaml" serve >"$TMP/control.out" 2>"$TMP/control.err" &
CONTROL_PID=$!
LT_PIDS+=("$CONTROL_PID")
URL="http://127.0.0.1:$PORT"
lt_wait_http "$URL/readyz" 20 "$CONTROL_PID" || { cat "$TMP/control.err" >&2; lt_die "floopy-control did not start"; }

jar="$TMP/cookies"
login=$(curl -fs -c "$jar" "$URL/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"load@floopy.local\", \"password\": \"$PASSWORD\"}") || lt_die "login failed"
csrf=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])' <<<"$login")
ORG=$(curl -fs -b "$jar" "$URL/v1/orgs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
TOKEN=$(curl -fs -b "$jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
    "$URL/v1/tokens" -d '{"name": "load"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
for i in 1 2 3 4 5; do
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        "$URL/v1/orgs/$ORG/projects" -d "{\"name\": \"P$i\", \"slug\": \"p$i\"}" || lt_die "project $i"
done

lt_log "floopy-control on $URL (pid $CONTROL_PID), org $ORG"
CONTROL_URL="$URL" TOKEN="$TOKEN" ORG="$ORG" "$K6" run --quiet "$LT_ROOT/load-tests/k6/control.js"
status=$?
lt_log "k6 exit code: $status"
exit "$status"
