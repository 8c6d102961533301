#!/usr/bin/env bash
# Installs what the Kafka and ClickHouse tests need, caching what is slow to
# build where later runs on the same machine find it:
# - tansu, a Kafka-compatible broker (crates.io; ~15 min to build, cached
#   in ~/.cache/floopy/tansu),
# - ClickHouse 18.16 from Debian (clickhouse-server, clickhouse-client),
# - a Python venv (~/.cache/floopy/venv) with confluent-kafka, whose wheel
#   carries a librdkafka new enough to talk to tansu (ClickHouse 18.16 loads
#   it through LD_LIBRARY_PATH), and chdb (the current ClickHouse engine
#   in-process, to check the SQL on a modern ClickHouse), schemathesis
#   (floopy-control's API against its OpenAPI document), the openai
#   client (the gateway's HTTPS listener) and playwright (the dashboard's
#   browser test, in Debian's chromium).
# Prints the environment the tests read (FLOOPY_TANSU, FLOOPY_CH_LIBS,
# FLOOPY_PYTHON) as `export` lines.
set -euo pipefail

cache="${FLOOPY_CACHE:-$HOME/.cache/floopy}"
mkdir -p "$cache"

tansu="$cache/tansu/bin/tansu"
if [ ! -x "$tansu" ]; then
  echo "install-kafka-tools: building tansu (cached in $cache/tansu)" >&2
  cargo install tansu --locked --features dynostore --root "$cache/tansu" >&2
fi

if ! command -v clickhouse-server >/dev/null 2>&1; then
  echo "install-kafka-tools: installing ClickHouse from Debian" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clickhouse-server clickhouse-client >&2
fi

venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import confluent_kafka, chdb, schemathesis, openai, playwright' >/dev/null 2>&1; then
  echo "install-kafka-tools: installing confluent-kafka, chdb, schemathesis, openai and playwright into $venv" >&2
  # schemathesis 3.39 needs a Hypothesis from before 6.131.15. openai: the
  # HTTPS listener's test with the official client. playwright: the
  # dashboard's browser test, driving Debian's chromium (no browser is
  # downloaded).
  "$venv/bin/pip" install -q "confluent-kafka>=2.4,<3" "chdb>=3" \
    "schemathesis==3.39.16" "hypothesis<=6.131.14" "openai>=1.50,<3" \
    "playwright>=1.50,<2" >&2
fi

# ClickHouse 18.16 links librdkafka.so.1: point it at the wheel's copy.
libs="$cache/librdkafka"
mkdir -p "$libs"
wheel_lib=$("$venv/bin/python" - <<'PY'
import glob, os, confluent_kafka
base = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
found = sorted(glob.glob(os.path.join(base, "confluent_kafka.libs", "librdkafka*.so*")))
print(found[0] if found else "")
PY
)
if [ -z "$wheel_lib" ]; then
  echo "install-kafka-tools: no librdkafka in the confluent-kafka wheel" >&2
  exit 1
fi
ln -sf "$wheel_lib" "$libs/librdkafka.so.1"

echo "export FLOOPY_TANSU=$tansu"
echo "export FLOOPY_CH_LIBS=$libs"
echo "export FLOOPY_PYTHON=$venv/bin/python"
