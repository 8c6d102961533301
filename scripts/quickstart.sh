#!/usr/bin/env bash
# Brings up the whole product on this machine, on embedded defaults:
#   - PostgreSQL on 127.0.0.1:5432 (installed and started when missing), a
#     database `floopy` in it;
#   - the fake provider on 127.0.0.1:18090 (answers every configured model:
#     no provider needs to be reachable);
#   - ClickHouse on 127.0.0.1:8123 (Debian's, installed when missing; data in
#     var/clickhouse), with the analytics tables;
#   - floopy-control (the management API) on 127.0.0.1:8081, with a demo org
#     and its owner on the first run, reading its analytics from ClickHouse;
#   - floopy-gateway on 127.0.0.1:8080 (admin listener :9090), on the same
#     control database, writing its request logs straight into ClickHouse
#     (no Kafka broker to run).
# Prints the API's address, the demo login and a demo key. Ctrl-C stops all.
#
#   scripts/quickstart.sh          the whole product (above)
#   scripts/quickstart.sh --file   the gateway alone, no database: keys and
#                                  projects from conf/quickstart.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --workspace --bins
bin=target/release

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

"$bin/fake-provider" --listen 127.0.0.1:18090 >/dev/null &
pids+=($!)

if [[ "${1:-}" == "--file" ]]; then
  shift
  "$bin/floopy-gateway" --config conf/quickstart.yaml "$@"
  exit
fi

scripts/start-postgres.sh
read -r ch_pid ch_url < <(scripts/start-clickhouse.sh var/clickhouse 8123)
[[ -n "${ch_url:-}" ]] || { echo "quickstart: ClickHouse did not start" >&2; exit 1; }
[[ "$ch_pid" != "-" ]] && pids+=("$ch_pid")
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'floopy'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database floopy'

email=demo@floopy.local
password=floopy-demo-password
has_org=$(psql -h 127.0.0.1 -U postgres -d floopy -tAc \
  "select 1 from information_schema.tables where table_name = 'users'" 2>/dev/null || true)
if [[ -n "$has_org" ]]; then
  has_org=$(psql -h 127.0.0.1 -U postgres -d floopy -tAc "select 1 from users where email = '$email'")
fi
if [[ -z "$has_org" ]]; then
  echo "$password" | "$bin/floopy-control" --config conf/control/quickstart.yaml bootstrap \
    --org-name "Demo" --plan pro --email "$email" --name "Demo Owner" >/dev/null
fi

mkdir -p var
"$bin/floopy-control" --config conf/control/quickstart.yaml serve >var/control.out 2>var/control.err &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

"$bin/floopy-gateway" --config conf/quickstart-postgres.yaml &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

# A demo key, through the API as the demo owner would make it.
jar=$(mktemp)
login=$(curl -fs -c "$jar" http://127.0.0.1:8081/v1/auth/login \
  -H 'content-type: application/json' \
  -d "{\"email\": \"$email\", \"password\": \"$password\"}")
csrf=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])' <<<"$login")
org=$(curl -fs -b "$jar" http://127.0.0.1:8081/v1/orgs | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
key=$(curl -fs -b "$jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
  "http://127.0.0.1:8081/v1/orgs/$org/keys" \
  -d '{"name": "quickstart", "environment": "development"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
rm -f "$jar"

cat <<MSG

floopy is running.
  dashboard        http://127.0.0.1:8081/   (sign in with the login below)
  management API   http://127.0.0.1:8081/v1/   (OpenAPI: http://127.0.0.1:8081/openapi.json)
  login            $email / $password
  organization     $org
  gateway          http://127.0.0.1:8080   (admin: http://127.0.0.1:9090/metrics)
  demo key         $key

  curl -s http://127.0.0.1:8080/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
    -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}'

Ctrl-C stops everything.
MSG
wait
