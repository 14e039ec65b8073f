#!/usr/bin/env bash
# OTLP/HTTP with two independent real clients (issue #15): the Python OpenTelemetry SDK's OTLP/HTTP
# log exporter (protobuf, gzip) posts to the API port's /v1/logs, and the Node.js SDK's OTLP/HTTP
# log exporter (JSON) to the OTLP port (OTLP_HTTP_PORT). Each sends a baseline the service learns
# from, then an outlier and a burst of rule-breaking failures; scripts/otlp/check.py asserts through
# the REST API alone that they were judged, stored, learned from and alerted on like REST logs.
#
# Installs what it needs: the pinned Python packages (scripts/otlp/requirements.txt) into a
# virtualenv at $VENV (default .venv-otlp, reused while the requirements are unchanged), the pinned
# npm packages (scripts/otlp/package-lock.json) into scripts/otlp/node_modules; builds the debug
# binary and runs it on 127.0.0.1 with a temporary DATA_DIR. Needs python3 (3.11+), node (20.6+)
# and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python-venv.sh
. scripts/python-venv.sh

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-otlp}
REQUIREMENTS=scripts/otlp/requirements.txt

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "test-otlp.sh needs Python 3.11 or later")'

ensure_venv

lock_stamp=scripts/otlp/node_modules/.package-lock.sha256
want_lock=$(sha256sum scripts/otlp/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$lock_stamp" 2>/dev/null)" != "$want_lock" ]; then
    echo "==> npm ci in scripts/otlp"
    (cd scripts/otlp && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want_lock" >"$lock_stamp"
fi

echo "==> cargo build --locked --bin aioops-mcp-iforest"
cargo build --locked --quiet --bin aioops-mcp-iforest
binary=target/debug/aioops-mcp-iforest

# Two free ports on the loopback interface (the kernel's choice, released just before use).
read -r api_port otlp_port < <("$PYTHON" - <<'PY'
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
PY
)
data_dir=$(mktemp -d)
log="$data_dir/service.log"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$data_dir"
}
trap cleanup EXIT

echo "==> Starting the service on 127.0.0.1:$api_port (OTLP/HTTP also on $otlp_port)"
# The payment failures of each client come as a burst: three within a minute page once.
API_HOST=127.0.0.1 API_PORT=$api_port OTLP_HTTP_PORT=$otlp_port DATA_DIR="$data_dir/data" \
    MIN_TRAIN_SAMPLES=200 RETRAIN_INTERVAL_SECONDS=0 LOG_FORMAT=text LOG_LEVEL=warn \
    COMPLEX_ALERT_RULES='{"py-payments": {"count": 3, "window_seconds": 60}, "node-payments": {"count": 3, "window_seconds": 60}}' \
    "$binary" >"$log" 2>&1 &
pid=$!
base="http://127.0.0.1:$api_port"
for _ in $(seq 1 100); do
    if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base/health" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$log"
        echo "the service exited before it was healthy" >&2
        exit 1
    fi
    sleep 0.1
done

python_endpoint="$base/v1/logs"
node_endpoint="http://127.0.0.1:$otlp_port/v1/logs"
# Each step must succeed; on the first that fails, show the service's log and stop.
step() {
    if ! "$@"; then
        echo "---- failed: $* ----" >&2
        echo "---- service log ----" >&2
        cat "$log" >&2
        exit 1
    fi
}
echo "==> Baselines: Python (protobuf, gzip) and Node.js (JSON)"
step "$VENV/bin/python" scripts/otlp/emit.py "$python_endpoint" baseline
step node scripts/otlp/emit.js "$node_endpoint" baseline
step "$PYTHON" scripts/otlp/check.py "$base" wait-model py-checkout
step "$PYTHON" scripts/otlp/check.py "$base" wait-model node-checkout
echo "==> Probes: an outlier and a burst of rule-breaking failures from each"
step "$VENV/bin/python" scripts/otlp/emit.py "$python_endpoint" probe
step node scripts/otlp/emit.js "$node_endpoint" probe
echo "==> Checking through the REST API"
step "$PYTHON" scripts/otlp/check.py "$base" verify
