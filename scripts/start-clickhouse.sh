#!/usr/bin/env bash
# Starts a ClickHouse for the analytics on this machine, with the shipped
# tables of a deployment without Kafka (every file of conf/clickhouse/ but
# 003_kafka.sql, which is for deployments with a broker):
#   - installs Debian's clickhouse-server when missing (ClickHouse 18.16,
#     the one this machine's package registry has);
#   - runs it with its data under DIR (default var/clickhouse), HTTP on
#     127.0.0.1:PORT (default 8123), native TCP on CH_TCP_PORT (default
#     PORT+10877: 19000) and the interserver port on CH_INTERSERVER_PORT
#     (default PORT+10886);
#   - applies the SQL (every statement is CREATE ... IF NOT EXISTS), and
#     the upgrade/ files of the columns an older table lacks.
# When a ClickHouse already answers on PORT, only the SQL is applied.
# Prints the server's PID ("-" when it was already running) and URL.
#
#   scripts/start-clickhouse.sh [DIR] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-var/clickhouse}")
port="${2:-8123}"
url="http://127.0.0.1:$port/"
tcp_port="${CH_TCP_PORT:-$((port + 10877))}"
interserver_port="${CH_INTERSERVER_PORT:-$((port + 10886))}"

if ! command -v clickhouse-server >/dev/null 2>&1; then
  echo "start-clickhouse: installing ClickHouse from Debian" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    clickhouse-server clickhouse-client >&2
fi

pid=""
if ! curl -fs "${url}ping" >/dev/null 2>&1; then
  mkdir -p "$dir"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$dir/server.log</log><errorlog>$dir/error.log</errorlog><console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp_port</tcp_port>
    <http_port>$port</http_port>
    <interserver_http_port>$interserver_port</interserver_http_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
  cat >"$dir/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  clickhouse-server --config-file="$dir/config.xml" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "${url}ping" >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "start-clickhouse: the server exited; see $dir/error.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  curl -fs "${url}ping" >/dev/null || { echo "start-clickhouse: no answer on $url" >&2; exit 1; }
fi

for f in conf/clickhouse/*.sql; do
  [[ "$f" == *kafka* ]] && continue
  # Statements end with ";" at a line's end; comments are left out.
  grep -v '^\s*--' "$f" | awk 'BEGIN{RS=";\n"} {gsub(/^[ \n]+|[ \n;]+$/, ""); if (length) print $0 "\0"}' |
    while IFS= read -r -d '' statement; do
      curl -fsS "$url" --data-binary "$statement" >/dev/null ||
        { echo "start-clickhouse: $f refused" >&2; exit 1; }
    done
done
# Columns added since a table was first made (ClickHouse 18.16 has no ADD
# COLUMN IF NOT EXISTS): upgrade/TABLE.COLUMN.sql runs when the column is
# missing.
for f in conf/clickhouse/upgrade/*.sql; do
  name=$(basename "$f" .sql)
  table=${name%%.*} column=${name#*.}
  have=$(curl -fsS "$url" --data-binary \
    "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = '$table' AND name = '$column'")
  if [ "$have" = "0" ]; then
    grep -v '^\s*--' "$f" | curl -fsS "$url" --data-binary @- >/dev/null ||
      { echo "start-clickhouse: $f refused" >&2; exit 1; }
  fi
done
echo "${pid:--} $url"
