#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use is there: a server on 127.0.0.1:5432 that lets
# postgres:postgres in, with a database `test` (TEST_DATABASE_URL, default
# postgres://postgres:postgres@127.0.0.1:5432/test, points the tests elsewhere; then this script
# does nothing). Starts the machine's cluster when it is stopped, installs Debian's postgresql
# package when there is none. Idempotent: a running server is left as it is.
set -euo pipefail

if [ -n "${TEST_DATABASE_URL:-}" ]; then
    echo "==> TEST_DATABASE_URL is set: using that PostgreSQL"
    exit 0
fi

HOST=127.0.0.1
PORT=5432

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ready() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$HOST" -p "$PORT"
}

if ! ready; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        echo "==> installing PostgreSQL (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    version=$(ls /etc/postgresql | sort -V | tail -1)
    echo "==> starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        ready && break
        sleep 0.5
    done
    ready || { echo "PostgreSQL did not start on $HOST:$PORT" >&2; exit 1; }
    # A cluster this script started may ask for passwords on TCP: give the tests' role one.
    as_postgres psql -q -c "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null
fi

export PGPASSWORD=postgres
if ! psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE test"
fi
echo "==> PostgreSQL ready on $HOST:$PORT (database test)"
