#!/usr/bin/env bash
# load-tests/tls-compare.sh: TLS termination side by side, loopback only,
# about 3 minutes.
#
# One fake provider (release build) behind:
#   (1) nginx   wrk -> nginx (2 workers, TLS, keepalive 64 upstream) -> fake provider
#   (2) floopy  wrk -> floopy-gateway's TLS listener (2 threads, every feature on) -> fake provider
# with the same certificate (ECDSA P-256, made here with openssl) and the same
# request (load-tests/wrk/chat.lua). Two measurements each, ROUNDS times in
# alternation (the machine is shared: the median of the rounds' ratios is the
# figure):
#   - kept-alive: wrk -c64, each connection's handshake once, then requests;
#   - new handshakes: wrk -c64 with "Connection: close", a TCP connection
#     and a full TLS handshake per request (wrk does not resume sessions);
#   - and, for scale, kept-alive over each one's plain HTTP listener: what
#     TLS costs each, apart from what each does per request (the gateway
#     authenticates, prices and logs every request; nginx only forwards).
#
# Knobs: WRK_THREADS (2), WRK_CONNECTIONS (64), WRK_DURATION (10s), ROUNDS (3).
set -uo pipefail

# shellcheck source=load-tests/lib.sh
source "$(dirname "$0")/lib.sh"

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
ROUNDS=${ROUNDS:-3}

command -v wrk >/dev/null || lt_die "wrk is missing (apt-get install -y wrk)"
command -v nginx >/dev/null || lt_die "nginx is missing (apt-get install -y nginx)"
command -v openssl >/dev/null || lt_die "openssl is missing (apt-get install -y openssl)"
lt_ensure_binaries
lt_use_temp_dir tls-compare

echo "== TLS termination side by side ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "nproc: $(nproc); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, $ROUNDS rounds; nothing is pinned"

# A local test certificate: the command the README gives.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$TMP/tls.key" -out "$TMP/tls.pem" 2>/dev/null || lt_die "openssl could not make a certificate"

lt_start_fake_provider "$TMP"

# (1) nginx terminating TLS.
conf_dir="$TMP/nginx"
mkdir -p "$conf_dir"
chmod 755 "$TMP" "$conf_dir"
chmod 644 "$TMP/tls.key"
NGINX_ADDR="127.0.0.1:$(lt_free_port)"
NGINX_PLAIN="127.0.0.1:$(lt_free_port)"
cat >"$conf_dir/nginx.conf" <<EOF
worker_processes 2;
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
        server $FAKE_ADDR;
        keepalive 64;
    }
    server {
        listen $NGINX_ADDR ssl;
        listen $NGINX_PLAIN;
        ssl_certificate $TMP/tls.pem;
        ssl_certificate_key $TMP/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        location / {
            proxy_pass http://fake_provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
nginx -t -q -p "$conf_dir/" -e "$conf_dir/error.log" -c "$conf_dir/nginx.conf" || lt_die "nginx rejects its configuration"
nginx -p "$conf_dir/" -e "$conf_dir/error.log" -c "$conf_dir/nginx.conf" -g 'daemon off;' >"$conf_dir/stdout" 2>&1 &
NGINX_PID=$!
LT_PIDS+=("$NGINX_PID")
lt_wait_tcp "$NGINX_ADDR" 10 "$NGINX_PID" || { cat "$conf_dir/error.log" >&2; lt_die "nginx did not start"; }

# (2) the gateway's TLS listener, beside its plain one.
TLS_ADDR="127.0.0.1:$(lt_free_port)"
GW_ADDR="127.0.0.1:$(lt_free_port)"
GW_ADMIN="127.0.0.1:$(lt_free_port)"
lt_write_gateway_config "$TMP/gateway.yaml" "$TMP" "$GW_ADDR" "$GW_ADMIN" "$FAKE_ADDR"
sed -i "/^  admin_listen:/a\\
  tls:\\
    listen: \"$TLS_ADDR\"\\
    certificates:\\
      - { cert: \"$TMP/tls.pem\", key: \"$TMP/tls.key\" }" "$TMP/gateway.yaml"
FLOOPY_LOG=warn "$LT_BIN/floopy-gateway" --config "$TMP/gateway.yaml" >"$TMP/gateway.out" 2>"$TMP/gateway.err" &
GW_PID=$!
LT_PIDS+=("$GW_PID")
lt_wait_http "http://$GW_ADMIN/healthz" 30 "$GW_PID" || { tail -n 30 "$TMP/gateway.err" >&2; lt_die "floopy-gateway did not start"; }
lt_wait_tcp "$TLS_ADDR" 10 "$GW_PID" || lt_die "floopy-gateway does not accept TLS on $TLS_ADDR"

export FLOOPY_KEY="$LT_KEY_PROD" FLOOPY_PROJECT="$LT_PROJECT_ID"
for target in "nginx $NGINX_ADDR" "floopy $TLS_ADDR"; do
    read -r name addr <<<"$target"
    status=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 \
        -H "Authorization: Bearer $FLOOPY_KEY" -H "floopy-project-id: $FLOOPY_PROJECT" \
        -H 'Content-Type: application/json' \
        -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' "https://$addr/v1/chat/completions")
    [[ "$status" == 200 ]] || lt_die "$name ($addr) answered $status to the probe"
done

# run NAME ADDR MODE: one wrk run; prints req/s.
run() {
    local out="$TMP/wrk-$1-$3.txt" extra=() scheme=https
    [[ "$3" == handshakes ]] && extra=(-H "Connection: close")
    [[ "$3" == plain ]] && scheme=http
    lt_run wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WRK_DURATION" "${extra[@]}" \
        -s "$LT_ROOT/load-tests/wrk/chat.lua" "$scheme://$2/v1/chat/completions" >"$out" 2>&1
    local errors
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    [[ -z "$errors" ]] || lt_log "$1 $3: $errors non-2xx answers"
    awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out"
}

declare -a KEEP HAND PLAIN
for ((round = 1; round <= ROUNDS; round++)); do
    nk=$(run nginx "$NGINX_ADDR" keepalive); fk=$(run floopy "$TLS_ADDR" keepalive)
    nh=$(run nginx "$NGINX_ADDR" handshakes); fh=$(run floopy "$TLS_ADDR" handshakes)
    np=$(run nginx "$NGINX_PLAIN" plain); fp=$(run floopy "$GW_ADDR" plain)
    lt_log "round $round: kept-alive nginx $nk, floopy $fk req/s; new handshakes nginx $nh, floopy $fh /s; plain nginx $np, floopy $fp req/s"
    KEEP+=("$nk $fk")
    HAND+=("$nh $fh")
    PLAIN+=("$np $fp")
done

echo
printf '%-22s %-28s %-28s %s\n' measure "nginx (per round)" "floopy-gateway (per round)" "floopy/nginx (median)"
printf '%-22s %-28s %-28s %s%%\n' "kept-alive req/s" "$(printf '%s ' "${KEEP[@]%% *}")" "$(printf '%s ' "${KEEP[@]##* }")" "$(lt_median_ratio "${KEEP[@]}")"
printf '%-22s %-28s %-28s %s%%\n' "new handshakes /s" "$(printf '%s ' "${HAND[@]%% *}")" "$(printf '%s ' "${HAND[@]##* }")" "$(lt_median_ratio "${HAND[@]}")"
printf '%-22s %-28s %-28s %s%%\n' "plain HTTP req/s" "$(printf '%s ' "${PLAIN[@]%% *}")" "$(printf '%s ' "${PLAIN[@]##* }")" "$(lt_median_ratio "${PLAIN[@]}")"
# kept-alive TLS / plain, per target: what TLS costs it.
tls_share() {
    local i pairs=()
    for ((i = 0; i < ROUNDS; i++)); do
        read -r nk fk <<<"${KEEP[i]}"
        read -r np fp <<<"${PLAIN[i]}"
        if [[ "$1" == nginx ]]; then pairs+=("$np $nk"); else pairs+=("$fp $fk"); fi
    done
    lt_median_ratio "${pairs[@]}"
}
echo "kept-alive over TLS as a share of plain HTTP (median): nginx $(tls_share nginx)%, floopy-gateway $(tls_share floopy)%"
echo "(wrk, both proxies and the fake provider share the machine's $(nproc) cores)"
