#!/usr/bin/env bash
# The whole test suite: formatting, lints, the shipped configurations, unit
# and integration tests (the real binary against the fake provider, the real
# PostgreSQL, the tansu Kafka broker and ClickHouse 18.16 and chdb), and the
# end-to-end test with the official `openai` Python client.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/start-postgres.sh
# tansu (built once, ~15 min, then cached), ClickHouse, the librdkafka and
# chdb venv; exports FLOOPY_TANSU, FLOOPY_CH_LIBS, FLOOPY_PYTHON.
kafka_env=$(scripts/install-kafka-tools.sh)
eval "$kafka_env"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --bins --locked

echo "== shipped configurations"
# --check-config validates everything but DNS; the reference configuration
# reads its provider keys from the environment.
for f in conf/*.yaml; do
  OPENAI_API_KEY=check ANTHROPIC_API_KEY=check target/debug/floopy-gateway --check-config "$f"
done
target/debug/floopy-control --check-config conf/control/*.yaml

echo "== unit and integration tests"
cargo nextest run --workspace --locked --no-fail-fast

echo "== fuzz targets, 60 s each"
bash scripts/fuzz.sh 60

echo "== end-to-end: the official openai Python client"
bash tests/e2e/run.sh

echo "== k6 smoke scenario (release build)"
cargo build --workspace --release --bins --locked
bash load-tests/run.sh smoke
