#!/usr/bin/env bash
# load-tests/profile.sh: where the CPU time of one request goes, kernel
# included, in (2) nginx proxy_pass, (3) the reference Pingora proxy and
# (4) floopy-gateway (every feature on, Kafka sink when tansu is installed),
# each driven at its peak by wrk on the same fake provider, as in compare.sh.
# Loopback only, about 4 minutes.
#
# instructions.sh counts user-space instructions, which do not move with the
# machine's load; this script measures time, which does: CPU samples
# (`perf record -e cpu-clock`) of each process while wrk runs, divided by the
# requests wrk completed, split into categories (scheduling and wake-ups in
# the kernel, the network stack, allocation, Pingora, tokio, the gateway's
# own code...) and, for the two Pingora proxies, by thread (the workers,
# the request log's writer/forwarder, the Kafka client's threads). ROUNDS
# (5) rounds of the three in turn; every figure is the median of the
# rounds, in microseconds of CPU per request.
#
# Pinned as compare.sh pins (PINNED=1, the default on 2 cores or more):
# each proxy alone on PROXY_CPU (1) with one worker thread, everything the
# gateway runs beside its worker on that core too; wrk, the fake provider,
# the Kafka broker and perf on LOAD_CPU (0). PINNED=0 lets every process
# run anywhere with two worker threads.
#
# Knobs: ROUNDS (5), DURATION (10, seconds measured per target and round),
# WARMUP (3s), WRK_THREADS (2; 1 pinned), WRK_CONNECTIONS (64), FREQ (999,
# samples per second per CPU), TOP (15, symbols listed), PINNED, PROXY_CPU,
# LOAD_CPU, KEEP_TMP=1 keeps the perf data (open it with
# `perf report -i FILE`).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3s}
lt_choose_pinning
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
FREQ=${FREQ:-999}
TOP=${TOP:-15}

[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || lt_die "DURATION must be a whole number of seconds, not '$DURATION'"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || lt_die "ROUNDS must be a number >= 1, not '$ROUNDS'"
command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
command -v perf >/dev/null || lt_die "perf is missing (apt-get install -y linux-perf)"
lt_ensure_binaries

lt_use_temp_dir profile

lt_start_fake_provider "$TMP"
lt_start_nginx "$TMP" "$FAKE_ADDR"
lt_start_reference "$TMP" "$FAKE_ADDR"
SINK="file sink"
KAFKA_PID=""
if lt_start_kafka "$TMP"; then
    SINK="Kafka sink (tansu)"
    KAFKA_PID=${LT_PIDS[-1]}
fi
lt_start_gateway "$TMP" "$FAKE_ADDR"
MODE="shared: every process on any CPU, two worker threads"
if ((PINNED)); then
    # shellcheck disable=SC2086 # KAFKA_PID is empty or one pid
    lt_pin "$LOAD_CPU" "$FAKE_PID" $KAFKA_PID
    lt_pin "$PROXY_CPU" "$NGINX_PID" "$REF_PID" "$GW_PID"
    MODE="pinned: each proxy alone on CPU $PROXY_CPU with one worker thread; wrk, the fake provider, the broker and perf on CPU $LOAD_CPU"
fi
export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"

# switches PIDS: "voluntary involuntary" context switches so far, summed over
# every thread of each pid in the comma-separated list.
switches() {
    local pid
    for pid in ${1//,/ }; do
        cat /proc/"$pid"/task/*/status 2>/dev/null
    done | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2}
        END {print v + 0, n + 0}'
}

# sample NAME ADDR PIDS ROUND: wrk at the peak while perf samples PIDS (a
# comma-separated list, every thread of each); leaves
# TMP/NAME.ROUND.report (perf report), TMP/NAME.ROUND.requests and
# TMP/NAME.ROUND.switches (context switches during the run, before and after).
sample() {
    local name=$1 addr=$2 pids=$3 round=$4 url="http://$2/v1/chat/completions" perf_pid requests
    lt_run "${LOAD[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WARMUP" -s "$LT_ROOT/load-tests/wrk/chat.lua" "$url" >/dev/null 2>&1
    "${LOAD[@]}" perf record -e cpu-clock -F "$FREQ" -p "$pids" -o "$TMP/$name.$round.data" -- sleep "$DURATION" \
        >"$TMP/$name.$round.perf.out" 2>&1 &
    perf_pid=$!
    LT_PIDS+=("$perf_pid")
    switches "$pids" >"$TMP/$name.$round.switches"
    lt_run "${LOAD[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${DURATION}s" -s "$LT_ROOT/load-tests/wrk/chat.lua" \
        "$url" >"$TMP/$name.$round.wrk" 2>&1
    switches "$pids" >>"$TMP/$name.$round.switches"
    wait "$perf_pid" || { cat "$TMP/$name.$round.perf.out" >&2; lt_die "perf record failed on $name"; }
    unset 'LT_PIDS[-1]'
    grep -q 'Non-2xx' "$TMP/$name.$round.wrk" && lt_die "$name answered errors: $(cat "$TMP/$name.$round.wrk")"
    requests=$(awk '/requests in/ {print $1}' "$TMP/$name.$round.wrk")
    [[ -n "$requests" ]] || lt_die "no request count from wrk for $name"
    echo "$requests" >"$TMP/$name.$round.requests"
    # '|' between the fields: thread names hold spaces, symbols commas.
    perf report -i "$TMP/$name.$round.data" --stdio --no-children --sort comm,dso,sym -t '|' \
        >"$TMP/$name.$round.report" 2>/dev/null || lt_die "perf report failed on $name"
    lt_log "$name round $round: $requests requests in ${DURATION}s"
}

NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n1)
[[ -n "$NGINX_WORKER" ]] || lt_die "nginx has no worker process"
lt_log "profiling: $ROUNDS rounds of (2), (3), (4), ${DURATION}s each at wrk -t$WRK_THREADS -c$WRK_CONNECTIONS"
for ((round = 1; round <= ROUNDS; round++)); do
    sample nginx "$NGINX_ADDR" "$NGINX_PID,$NGINX_WORKER" "$round"
    sample reference "$REF_ADDR" "$REF_PID" "$round"
    sample floopy "$GW_ADDR" "$GW_PID" "$round"
done

echo
echo "== CPU per request by category, µs (perf cpu-clock; median of $ROUNDS rounds; gateway with the $SINK)"
echo "$MODE"
python3 - "$TMP" "$ROUNDS" "$TOP" <<'EOF'
import re
import statistics
import sys

tmp, rounds, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

KERNEL_SCHED = re.compile(
    r"schedule|switch|pick_next|enqueue|dequeue|update_curr|update_load|wake|ttwu|select_task"
    r"|irqentry_exit|_raw_spin_unlock_irq|futex|psi_|sched|nanosleep|hrtimer")
KERNEL_NET = re.compile(r"tcp|skb|ip_|ipv4|inet|sock|net_|napi|dev_|loopback|sk_|netif|nf_|sendto|recvfrom")


def category(dso, sym):
    if dso.startswith("[kernel"):
        if KERNEL_SCHED.search(sym):
            return "kernel: scheduling, wake-ups"
        if KERNEL_NET.search(sym):
            return "kernel: TCP/IP, sockets"
        if "ep_" in sym or "epoll" in sym:
            return "kernel: epoll"
        return "kernel: other"
    if "floopy_gateway" in sym:
        return "floopy-gateway's own code"
    if dso == "nginx":
        return "nginx's own code"
    if re.search(r"\bmi_|_mi_|mimalloc", sym):
        return "allocator (mimalloc)"
    if re.search(r"mem(cpy|move|set|cmp)", sym):
        return "libc memcpy/memset"
    if "pingora" in sym:
        return "pingora"
    if "tokio" in sym:
        return "tokio"
    if re.search(r"\bhttp::|httparse", sym):
        return "http, httparse"
    if re.search(r"rd_kafka|rdk|LZ4|lz4|crc32", sym, re.I) or "libz" in dso:
        return "rdkafka, lz4"
    return "other user space"


def thread_group(comm):
    """A thread's name without its number (tokio's and librdkafka's threads
    are numbered)."""
    return re.sub(r"[-_]?\d+$", "", comm.strip()) or "?"


def load(name, r):
    requests = int(open(f"{tmp}/{name}.{r}.requests").read())
    cats, syms, threads, total_ns = {}, {}, {}, None
    for line in open(f"{tmp}/{name}.{r}.report", errors="replace"):
        m = re.match(r"# Event count \(approx\.\): (\d+)", line)
        if m:
            total_ns = int(m.group(1))
            continue
        # "  12.34% |comm |dso |[.] symbol"
        fields = line.split("|", 3)
        m = re.match(r"\s*([\d.]+)%\s*$", fields[0])
        if not m or len(fields) < 4 or total_ns is None:
            continue
        us = float(m.group(1)) / 100 * total_ns / requests / 1000
        comm, dso = fields[1].strip(), fields[2].strip()
        sym = re.sub(r"^\[.\]\s*", "", fields[3].strip())
        cat = category(dso, sym)
        cats[cat] = cats.get(cat, 0.0) + us
        syms[sym] = syms.get(sym, 0.0) + us
        group = thread_group(comm)
        threads[group] = threads.get(group, 0.0) + us
    if total_ns is None:
        sys.exit(f"no samples in {tmp}/{name}.{r}.report")
    cats["total"] = total_ns / requests / 1000
    before, after = (list(map(int, line.split())) for line in open(f"{tmp}/{name}.{r}.switches"))
    switches = {"voluntary": (after[0] - before[0]) / requests,
                "involuntary": (after[1] - before[1]) / requests}
    return cats, syms, switches, threads


def medians(name, index):
    runs = [load(name, r)[index] for r in range(1, rounds + 1)]
    keys = set().union(*runs)
    return {k: statistics.median(run.get(k, 0.0) for run in runs) for k in keys}


cols = [("(2) nginx", medians("nginx", 0)), ("(3) ref", medians("reference", 0)),
        ("(4) gw", medians("floopy", 0))]
ngx_c, ref_c, gw_c = (c for _, c in cols)
print(f"{'category':34}" + "".join(f"{name:>11}" for name, _ in cols) + f"{'(3)-(2)':>9}{'(4)-(3)':>9}")
order = sorted((k for k in set().union(*(c for _, c in cols)) if k != "total"),
               key=lambda k: -(gw_c.get(k, 0) - ref_c.get(k, 0)))
for k in order + ["total"]:
    n, r, g = (c.get(k, 0.0) for _, c in cols)
    print(f"{k:34}{n:11.1f}{r:11.1f}{g:11.1f}{r - n:+9.1f}{g - r:+9.1f}")
print(f"CPU per request: (4)/(3) {gw_c['total'] / ref_c['total']:.2f}, "
      f"(3)/(2) {ref_c['total'] / ngx_c['total']:.2f}")
print("context switches per request (all threads):")
for label, name in (("(2) nginx", "nginx"), ("(3) ref", "reference"), ("(4) gw", "floopy")):
    sw = medians(name, 2)
    print(f"  {label:10} voluntary {sw['voluntary']:.3f}, involuntary {sw['involuntary']:.3f}")

ref_t, gw_t = medians("reference", 3), medians("floopy", 3)
print("\n== CPU per request by thread, µs (median; a thread's number left out)")
print(f"{'thread':34}{'(3) ref':>11}{'(4) gw':>11}{'(4)-(3)':>9}")
for k in sorted(set(ref_t) | set(gw_t), key=lambda k: -max(gw_t.get(k, 0), ref_t.get(k, 0))):
    r, g = ref_t.get(k, 0.0), gw_t.get(k, 0.0)
    if max(r, g) >= 0.05:
        print(f"{k:34}{r:11.1f}{g:11.1f}{g - r:+9.1f}")

ref_s, gw_s = medians("reference", 1), medians("floopy", 1)
print(f"\n== the {top} symbols that grew most from (3) to (4), µs per request (median)")
print(f"{'(4)-(3)':>7} {'(4)':>7} {'(3)':>7}  symbol")
for k in sorted(set(ref_s) | set(gw_s), key=lambda k: -(gw_s.get(k, 0) - ref_s.get(k, 0)))[:top]:
    r, g = ref_s.get(k, 0.0), gw_s.get(k, 0.0)
    print(f"{g - r:+7.2f} {g:7.2f} {r:7.2f}  {k[:110]}")
EOF
