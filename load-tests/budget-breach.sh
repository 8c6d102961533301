#!/usr/bin/env bash
# Breach-to-refusal under load: two gateways and floopy-control on their
# default intervals (exchange 1 s, evaluation 1 s), eight clients at about
# 200 requests a second on a project with a $1 alert_and_revoke budget.
# Prints each run, then the median and the max of the time from the answer
# that crossed the budget to the later gateway's first refusal, and the
# spend past the budget in that window. RUNS=5 by default.
#
#   RUNS=10 bash load-tests/budget-breach.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/start-postgres.sh
cargo build --workspace --bins --locked
RUNS="${RUNS:-5}" cargo nextest run -p floopy-control --locked --run-ignored ignored-only \
  -E 'test(breach_to_refusal_under_load)' --no-capture 2>&1 | grep -E '^(run [0-9]|breach to refusal)'
