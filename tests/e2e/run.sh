#!/usr/bin/env bash
# End-to-end test: the official `openai` Python client against the real
# floopy-gateway binary, with the fake-provider binary as the provider.
#
#   bash tests/e2e/run.sh [extra pytest args]
#
# Environment:
#   FLOOPY_E2E_VENV  the virtualenv to create or reuse (default target/e2e-venv)
#   FLOOPY_BIN_DIR   where floopy-gateway and fake-provider are (default target/debug);
#                    when both are missing there, `cargo build --workspace --bins` builds them
#                    (only for the default directory).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

venv="${FLOOPY_E2E_VENV:-target/e2e-venv}"
bin_dir="${FLOOPY_BIN_DIR:-target/debug}"

# --- Python client and test runner -------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
    echo "e2e: creating virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
# pip is quick when the requirements are already satisfied.
"$venv/bin/python" -m pip install -q "openai>=1.50,<3" "pytest>=8"

# --- Binaries under test -------------------------------------------------------
if [[ ! -x "$bin_dir/floopy-gateway" || ! -x "$bin_dir/fake-provider" ]]; then
    if [[ -n "${FLOOPY_BIN_DIR:-}" ]]; then
        echo "e2e: $bin_dir/floopy-gateway or $bin_dir/fake-provider is missing" >&2
        exit 1
    fi
    echo "e2e: building the binaries (cargo build --workspace --bins)" >&2
    cargo build --workspace --bins
fi
for bin in floopy-gateway fake-provider; do
    if [[ ! -x "$bin_dir/$bin" ]]; then
        echo "e2e: $bin_dir/$bin not found after the build" >&2
        exit 1
    fi
done
FLOOPY_BIN_DIR="$(cd "$bin_dir" && pwd)"
export FLOOPY_BIN_DIR

# --- Tests ---------------------------------------------------------------------
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "e2e: pytest collected no tests" >&2
fi
exit "$status"
