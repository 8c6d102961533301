#!/usr/bin/env bash
# Runs floopy-gateway on its embedded defaults (conf/quickstart.yaml): keys
# and projects from the YAML, request logs to var/request-logs.jsonl, and the
# fake provider (a development binary of its own, crates/fake-provider) on
# 127.0.0.1:18090, so it answers on a machine that reaches no provider.
# Proxy on 127.0.0.1:8080, admin on :9090. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --workspace --bins

target/release/fake-provider --listen 127.0.0.1:18090 &
fake_pid=$!
trap 'kill "$fake_pid" 2>/dev/null || true' EXIT
# The gateway resolves and connects to its providers lazily; the fake
# provider only has to be up before the first request, not before the start.
target/release/floopy-gateway --config conf/quickstart.yaml "$@"
