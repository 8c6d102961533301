# syntax=docker/dockerfile:1

# floopy container image: the gateway (floopy-gateway, the entrypoint) and
# the control plane (floopy-control).
#
#   docker build -t floopy-gateway .
#   docker run --rm -p 8080:8080 \
#       -e OPENAI_API_KEY -e ANTHROPIC_API_KEY \
#       --stop-timeout 20 floopy-gateway
#
# The image runs conf/gateway.yaml (copied to /etc/floopy-gateway/); mount
# your own configuration over /etc/floopy-gateway/gateway.yaml, or pass
# `--config FILE`. `docker run ... floopy-gateway --check-config FILE`
# validates a configuration and exits. The control plane runs from the same
# image: `docker run --entrypoint floopy-control floopy-gateway --config
# /etc/floopy-gateway/control/control.yaml` (mount a configuration naming
# your control database).

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# Pingora links against the system OpenSSL (libssl-dev) rather than a vendored
# copy; cmake and pkg-config are needed by native dependencies; librdkafka
# (built from source by rdkafka-sys and linked statically) and mimalloc need
# a C/C++ toolchain and make, librdkafka's compression zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
        build-essential zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
ENV OPENSSL_NO_VENDOR=1

WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when a
# manifest, the lock file or .cargo/ change, not on every source change.
# The workspace's members are the gateway (the root package) and the crates
# under crates/; the placeholder sources satisfy every target their manifests
# declare or cargo discovers. Only the floopy-gateway and floopy-control
# binaries are built, from normal dependencies alone: the fake provider
# (crates/fake-provider) is a dev-dependency and is never compiled into this
# image (tests/dependencies.rs checks it).
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
COPY crates/model/Cargo.toml crates/model/
COPY crates/control-db/Cargo.toml crates/control-db/
COPY crates/fake-provider/Cargo.toml crates/fake-provider/
COPY crates/control/Cargo.toml crates/control/
RUN mkdir -p src benches crates/model/src crates/control-db/src crates/fake-provider/src/bin \
        crates/control/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > crates/control/src/main.rs \
    && touch src/lib.rs crates/model/src/lib.rs crates/control-db/src/lib.rs \
        crates/fake-provider/src/lib.rs crates/control/src/lib.rs \
    && echo 'fn main() {}' > crates/fake-provider/src/bin/fake-provider.rs \
    && echo 'fn main() {}' > benches/hot_path.rs \
    && echo 'fn main() {}' > benches/control_1m.rs \
    && cargo build --release --locked -p floopy-gateway --bin floopy-gateway \
        -p floopy-control --bin floopy-control \
    && rm -rf src crates/*/src

# The real sources. COPY keeps the files' modification times, which can be
# older than the placeholder build above; touching them makes sure cargo
# rebuilds the crates themselves instead of keeping the placeholders. The
# control database migrations (crates/control-db/migrations) are compiled
# into the binary.
COPY src/ src/
COPY crates/ crates/
RUN find src crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p floopy-gateway --bin floopy-gateway \
        -p floopy-control --bin floopy-control \
    && install -m 0755 target/release/floopy-gateway /usr/local/bin/floopy-gateway \
    && install -m 0755 target/release/floopy-control /usr/local/bin/floopy-control

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: to verify the providers' TLS certificates; libssl3: the
# OpenSSL the binary is linked against. Nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user. Its working directory holds what the gateway writes
# at the shipped configuration's relative paths: the request log
# (var/request-logs.jsonl) and the month-to-date spend (var/spend-state.json).
# Mount a volume on /var/lib/floopy-gateway to keep them across containers.
# The pid file and the upgrade socket of the shipped configuration are in /tmp.
RUN groupadd --system --gid 10001 floopy \
    && useradd --system --uid 10001 --gid floopy \
        --home-dir /var/lib/floopy-gateway --no-create-home \
        --shell /usr/sbin/nologin floopy \
    && mkdir -p /var/lib/floopy-gateway \
    && chown floopy:floopy /var/lib/floopy-gateway

COPY --from=builder /usr/local/bin/floopy-gateway /usr/local/bin/floopy-gateway
COPY --from=builder /usr/local/bin/floopy-control /usr/local/bin/floopy-control
COPY conf/ /etc/floopy-gateway/

USER floopy:floopy
WORKDIR /var/lib/floopy-gateway

# 8080: the proxy. 9090: the admin listener (/healthz, /readyz, /metrics).
# The shipped configuration binds the admin listener to 127.0.0.1, i.e. inside
# the container only; to probe or scrape it from outside, use a configuration
# with `admin_listen: "0.0.0.0:9090"` and keep that port off public networks.
EXPOSE 8080 9090

# No HEALTHCHECK: the image has no curl or wget (and the admin listener is on
# the container's loopback by default). Let the orchestrator probe
# GET /healthz (liveness) and GET /readyz (readiness) on the admin port.

# SIGTERM is a graceful shutdown: stop accepting, let requests in flight
# finish for server.grace_period_seconds (10 s in the shipped configuration),
# then flush the request log within graceful_shutdown_timeout_seconds (5 s).
# Docker kills the container 10 s after SIGTERM by default: give it more
# (`docker stop -t 20`, `--stop-timeout 20`, compose `stop_grace_period: 20s`,
# Kubernetes `terminationGracePeriodSeconds: 20`).
STOPSIGNAL SIGTERM

ENTRYPOINT ["floopy-gateway"]
CMD ["--config", "/etc/floopy-gateway/gateway.yaml"]
