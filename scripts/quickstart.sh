#!/usr/bin/env bash
# Runs floopy-gateway on its embedded defaults (conf/quickstart.yaml): keys
# and projects from the YAML, request logs to var/request-logs.jsonl, and a
# fake provider inside the process on 127.0.0.1:18090, so it answers on a
# machine that reaches no provider. Proxy on 127.0.0.1:8080, admin on :9090.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release --locked --bin floopy-gateway -- --config conf/quickstart.yaml "$@"
