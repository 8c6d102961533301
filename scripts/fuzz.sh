#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, from
# the committed seed corpus (fuzz/corpus/<target>), and prints each one's
# executions. New inputs the fuzzer finds go to a scratch corpus, not the
# repository; a crash fails the run and leaves its input in
# fuzz/artifacts/<target>/ (make it a regression test, then a seed).
#
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
#
# Longer runs: scripts/fuzz.sh 3600 request_body, or directly
#   cd fuzz && cargo +nightly fuzz run -s none request_body corpus/request_body
#
# Needs the nightly toolchain (cargo fuzz builds with libFuzzer's
# instrumentation) and cargo-fuzz (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(request_body stream_options sse_usage config spool_segment)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

cd fuzz
# No sanitizer: the targets are safe Rust, and the build is the whole
# gateway library (instrumented for coverage either way).
cargo +nightly fuzz build -s none 2>&1 | tail -n 3

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if cargo +nightly fuzz run -s none "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rate=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse)' "$log" | tail -n 1 | grep -o 'cov: [0-9]*' || true)
    echo "fuzz $target: ${seconds}s, ${execs} executions, ${rate}/s, ${cov:-cov: ?}, no crash"
  else
    status=1
    echo "fuzz $target: FAILED" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || tail -n 40 "$log" >&2
  fi
done
exit "$status"
