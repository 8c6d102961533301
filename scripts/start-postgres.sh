#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use is up on 127.0.0.1:5432 with the
# `postgres` role reachable without a password (FLOOPY_TEST_PG overrides the
# URL and skips all of this). Installs Debian's PostgreSQL when missing.
set -euo pipefail

if [ -n "${FLOOPY_TEST_PG:-}" ]; then
  exit 0
fi

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "start-postgres: installing postgresql"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql
fi

if ! ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "start-postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do ready && break; sleep 0.2; done
fi
ready || { echo "start-postgres: PostgreSQL is not accepting connections on 127.0.0.1:5432" >&2; exit 1; }

if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "start-postgres: 127.0.0.1 needs trust authentication for the postgres role (or set FLOOPY_TEST_PG)" >&2
  exit 1
fi
# The tests reach it over TLS too (control.url's sslmode): Debian's clusters
# have TLS on with the machine's self-signed certificate; turn it on where
# it is off.
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'show ssl')" != "on" ]; then
  cert=/etc/ssl/certs/ssl-cert-snakeoil.pem key=/etc/ssl/private/ssl-cert-snakeoil.key
  if [ ! -r "$cert" ]; then
    echo "start-postgres: making a self-signed certificate (ssl-cert)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    command -v make-ssl-cert >/dev/null 2>&1 || {
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ssl-cert
    }
    $SUDO make-ssl-cert generate-default-snakeoil
  fi
  echo "start-postgres: turning TLS on"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "alter system set ssl_cert_file = '$cert'" \
    -c "alter system set ssl_key_file = '$key'" -c "alter system set ssl = on" -c "select pg_reload_conf()" >/dev/null
  sleep 1
  [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'show ssl')" = "on" ] \
    || { echo "start-postgres: TLS could not be turned on (see the server log)" >&2; exit 1; }
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
echo "start-postgres: ready on 127.0.0.1:5432"
