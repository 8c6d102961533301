#!/usr/bin/env bash
# load-tests/attack.sh: a normal client's throughput while the gateway is
# under two slow attacks, loopback only, bounded in time and count, about
# 3 minutes.
#
# One fake provider and floopy-gateway (release builds, every feature on).
# The normal client is wrk (-t1 -c16, WRK_DURATION); each round measures it
#   - alone (the baseline of that round),
#   - while IDLE connections (default 2000) are held open without a byte,
#   - while TRICKLE connections (default 500) each send their header one
#     byte a second (none completes within the run),
# and reads the gateway's resident memory (VmRSS) during each attack. The
# machine is shared by the attacker, wrk, the gateway and the provider: the
# figure is the median over ROUNDS of attack / baseline.
#
# Knobs: IDLE (2000), TRICKLE (500), WRK_DURATION (10s), ROUNDS (3).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

IDLE=${IDLE:-2000}
TRICKLE=${TRICKLE:-500}
WRK_DURATION=${WRK_DURATION:-10s}
ROUNDS=${ROUNDS:-3}

command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
lt_ensure_binaries
lt_use_temp_dir attack
ulimit -n 20000 2>/dev/null || true

echo "== slow attacks against floopy-gateway ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "nproc: $(nproc); wrk -t1 -c16 -d$WRK_DURATION; $IDLE idle, $TRICKLE trickling connections; $ROUNDS rounds"

lt_start_fake_provider "$TMP"
lt_start_gateway "$TMP" "$FAKE_ADDR"
export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status"; }

# attacker MODE COUNT SECONDS: holds COUNT connections for SECONDS.
attacker() {
    python3 - "$GW_ADDR" "$1" "$2" "$3" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
mode, count, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
header = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
          b"X-Padding: " + b"a" * 2000 + b"\r\n")
conns = []
for _ in range(count):
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    conns.append(s)
end = time.time() + seconds
i = 0
while time.time() < end:
    if mode == "trickle":
        for s in conns:
            try:
                s.send(header[i % len(header):i % len(header) + 1])
            except OSError:
                pass
        i += 1
    time.sleep(1.0)
for s in conns:
    s.close()
PY
}

# normal NAME: one wrk run; prints req/s.
normal() {
    local out="$TMP/wrk-$1.txt"
    lt_run wrk -t1 -c16 -d"$WRK_DURATION" -s "$LT_ROOT/load-tests/wrk/chat.lua" \
        "http://$GW_ADDR/v1/chat/completions" >"$out" 2>&1
    local errors
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    [[ -z "$errors" ]] || lt_log "$1: $errors non-2xx answers"
    awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out"
}

seconds=${WRK_DURATION%s}
declare -a IDLE_PAIRS TRICKLE_PAIRS
rss_base=$(rss_kib)
for ((round = 1; round <= ROUNDS; round++)); do
    base=$(normal "base-$round")
    attacker idle "$IDLE" "$((seconds + 4))" &
    apid=$!; LT_PIDS+=("$apid"); sleep 3
    idle=$(normal "idle-$round"); rss_idle=$(rss_kib)
    wait "$apid"
    attacker trickle "$TRICKLE" "$((seconds + 4))" &
    apid=$!; LT_PIDS+=("$apid"); sleep 3
    trickle=$(normal "trickle-$round"); rss_trickle=$(rss_kib)
    wait "$apid"
    lt_log "round $round: alone $base, with $IDLE idle $idle, with $TRICKLE trickling $trickle req/s; RSS $rss_base KiB before, $rss_idle under idle, $rss_trickle under trickle"
    IDLE_PAIRS+=("$base $idle")
    TRICKLE_PAIRS+=("$base $trickle")
done

echo
echo "normal client under $IDLE idle connections: $(lt_median_ratio "${IDLE_PAIRS[@]}")% of its throughput alone (median of $ROUNDS rounds)"
echo "normal client under $TRICKLE trickling connections: $(lt_median_ratio "${TRICKLE_PAIRS[@]}")% of its throughput alone (median of $ROUNDS rounds)"
echo "gateway resident memory: $rss_base KiB at start, $(rss_kib) KiB at the end"
