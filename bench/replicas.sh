#!/usr/bin/env bash
# Throughput of the service on its storage backends, side by side in one run: one replica on
# SQLite (the default), one replica on PostgreSQL, and three replicas sharing one PostgreSQL
# (each loaded by its own wrk, the logs/s summed), under the throughput benchmark's 100-log load.
#
#   bash bench/replicas.sh DURATION_SECONDS [BINARY]
#   e.g. ROUNDS=2 bash bench/replicas.sh 10 target/release/aioops-mcp-iforest
#
# PostgreSQL is the one the tests use (scripts/ensure-postgres.sh; BENCH_DATABASE_URL points
# elsewhere); every run gets a fresh schema. Each run warms up as bench/ab.sh does (30 batches so
# every service fits, 5 s of load so retention reaches its bound), then measures DURATION
# seconds with 32 connections in all (split over the replicas). Everything shares this
# machine's cores: PostgreSQL, the replicas and wrk. ROUNDS (default 2) rounds, the modes'
# order reversed every other round; one RESULT line per run, then each mode's mean.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="$1"
BINARY="${2:-target/release/aioops-mcp-iforest}"
ROUNDS="${ROUNDS:-2}"
BASE_PORT="${PORT:-8301}"
DATABASE="${BENCH_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"

if ! command -v wrk >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
bash scripts/ensure-postgres.sh >/dev/null
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/make_bodies.py "$work"

post() { # port file
    curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
        --data-binary @"$2" "http://127.0.0.1:$1/api/v1/stream/multi-source"
}

# run MODE REPLICAS: starts the replicas, warms them up, measures; prints the summed logs/s.
run() {
    local mode=$1 count=$2 url="" pids=() ports=()
    if [ "$mode" != sqlite ]; then
        local schema="bench_$(date +%s%N)"
        psql "$DATABASE" -qc "CREATE SCHEMA $schema" >/dev/null
        url="$DATABASE?options=-csearch_path%3D$schema"
    fi
    for i in $(seq 0 $((count - 1))); do
        local port=$((BASE_PORT + i))
        rm -rf "$work/data$i"
        DATA_DIR="$work/data$i" API_PORT="$port" LOG_LEVEL=error DATABASE_URL="$url" "$BINARY" &
        pids+=($!)
        ports+=("$port")
    done
    for port in "${ports[@]}"; do
        for _ in $(seq 100); do post "$port" "$work/batch_1.json" && break; sleep 0.1; done
    done
    for _ in $(seq 30); do
        for port in "${ports[@]}"; do post "$port" "$work/batch_100.json"; done
    done
    local connections=$((32 / count)) threads=$((count == 1 ? 2 : 1))
    load() { # seconds -> one RESULT line per replica
        local outs=()
        for port in "${ports[@]}"; do
            BODY_FILE="$work/batch_100.json" wrk -t"$threads" -c"$connections" -d"$1s" \
                -s bench/post.lua "http://127.0.0.1:$port/api/v1/stream/multi-source" \
                >"$work/wrk.$port" &
            outs+=($!)
        done
        wait "${outs[@]}"
        for port in "${ports[@]}"; do grep '^RESULT' "$work/wrk.$port"; done
    }
    load 5 >/dev/null
    local rps errors
    load "$DURATION" >"$work/measure"
    rps=$(sed 's/.*rps=\([0-9.]*\).*/\1/' "$work/measure" | awk '{ s += $1 } END { printf "%.1f", s }')
    errors=$(sed 's/.*errors=\([0-9]*\) non2xx=\([0-9]*\).*/\1 \2/' "$work/measure" | awk '{ s += $1 + $2 } END { print s }')
    kill "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
    if [ -n "$url" ]; then psql "$DATABASE" -qc "DROP SCHEMA $schema CASCADE" >/dev/null; fi
    echo "$rps $errors"
}

modes=("sqlite 1" "postgresql 1" "postgresql 3")
for round in $(seq "$ROUNDS"); do
    order=("${modes[@]}")
    if ((round % 2 == 0)); then order=("postgresql 3" "postgresql 1" "sqlite 1"); fi
    for mode in "${order[@]}"; do
        set -- $mode
        read -r rps errors < <(run "$1" "$2")
        logs=$(awk -v r="$rps" 'BEGIN { printf "%.0f", r * 100 }')
        echo "RESULT round=$round backend=$1 replicas=$2 requests_per_s=$rps logs_per_s=$logs errors=$errors" |
            tee -a "$work/results"
    done
done
for mode in "${modes[@]}"; do
    set -- $mode
    grep "backend=$1 replicas=$2 " "$work/results" | sed 's/.*logs_per_s=\([0-9]*\).*/\1/' |
        awk -v b="$1" -v n="$2" '{ s += $1; k++ } END { printf "MEAN backend=%s replicas=%s logs_per_s=%.0f over %d runs\n", b, n, s / k, k }'
done
