#!/usr/bin/env bash
# Throughput of POST /v1/logs (OTLP/HTTP) side by side with the REST path, in one run (issue #15).
#
#   bash bench/otlp_throughput.sh [duration_seconds]      (default 15; PROFILE=debug for a smoke run)
#
# Installs wrk (Debian) if missing, builds the binary (release unless PROFILE=debug), writes the
# same 100 logs as a REST body (formats named, and format_type "auto") and as an OTLP protobuf and
# JSON export (bench/make_otlp_bodies.py, with scripts/test-otlp.sh's virtualenv for the protobuf
# classes), starts one service on loopback and drives each body with wrk, 32 connections, in turn.
# Prints logs/s, p50/p99 and each as a share of the REST path (the mean of a REST run first and
# last, which brackets the machine's drift).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
PROFILE="${PROFILE:-release}"
CONNECTIONS=32
THREADS=2
VENV=${VENV:-.venv-otlp}

if ! command -v wrk >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/otlp/requirements.txt
fi
if [ "$PROFILE" = release ]; then
    cargo build --release --quiet --bin aioops-mcp-iforest
else
    cargo build --quiet --bin aioops-mcp-iforest
fi
binary=target/$PROFILE/aioops-mcp-iforest

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
(cd bench && "../$VENV/bin/python" make_otlp_bodies.py "$work")

port=8111
env DATA_DIR="$work/data" API_HOST=127.0.0.1 API_PORT=$port LOG_LEVEL=warn RETRAIN_INTERVAL_SECONDS=0 \
    "$binary" &
base=http://127.0.0.1:$port
for _ in $(seq 100); do
    curl -fs -o /dev/null "$base/health" && break
    sleep 0.1
done
# Let both services see their first logs and fit their first models (the first fit runs once a
# service has MIN_TRAIN_SAMPLES logs) before measuring, through every door.
for _ in $(seq 20); do
    curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
        --data-binary @"$work/rest_100.json" "$base/api/v1/stream/multi-source"
    curl -fs -o /dev/null -X POST -H 'content-type: application/x-protobuf' \
        --data-binary @"$work/otlp_100.pb" "$base/v1/logs"
done
sleep 2

run() { # name path body content_type
    local line
    line=$(BODY_FILE="$work/$3" CONTENT_TYPE="$4" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
        -s bench/post.lua "$base$2" | grep '^RESULT')
    echo "$1 $line"
}

printf '%s\n' "# $(date -u +%FT%TZ) $(nproc) cores, $PROFILE build, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, 100 logs/request"
rest=$(run rest /api/v1/stream/multi-source rest_100.json application/json); echo "$rest"
auto=$(run rest_auto /api/v1/stream/multi-source rest_auto_100.json application/json); echo "$auto"
pb=$(run otlp_protobuf /v1/logs otlp_100.pb application/x-protobuf); echo "$pb"
js=$(run otlp_json /v1/logs otlp_100.json application/json); echo "$js"
# REST once more: how far the machine drifted during the run.
again=$(run rest_again /api/v1/stream/multi-source rest_100.json application/json); echo "$again"

rps() { sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$1"; }
python3 - "$(rps "$rest")" "$(rps "$auto")" "$(rps "$pb")" "$(rps "$js")" "$(rps "$again")" <<'PY'
import sys
first, auto, pb, js, again = map(float, sys.argv[1:])
rest = (first + again) / 2
for name, rps in [("REST, formats named", rest), ("REST, format_type auto", auto),
                  ("OTLP protobuf", pb), ("OTLP JSON", js)]:
    print(f"{name:24} {rps * 100:>12,.0f} logs/s  {rps / rest:6.1%} of REST")
PY
echo "metrics: $(curl -fs "$base/api/v1/metrics")"
