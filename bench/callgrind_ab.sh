#!/usr/bin/env bash
# Instructions the service executes per ingested log, for several builds, counted by callgrind.
#
#   bash bench/callgrind_ab.sh COMMAND_A COMMAND_B [COMMAND ...]
#   e.g. bash bench/callgrind_ab.sh /tmp/old-release target/release/aioops-mcp-iforest
#        bash bench/callgrind_ab.sh target/release/aioops-mcp-iforest \
#            'API_TOKEN=secret target/release/aioops-mcp-iforest'
#
# Each command is a service binary, optionally preceded by VAR=value settings; with API_TOKEN among
# them, every POST carries it as a bearer token.
#
# Wall-clock A/B runs (bench/ab.sh) need a quiet machine: on two cores a build beside the benchmark
# halves it, and even alone rounds vary by ±15 %. An instruction count does not depend on what else
# the machine is doing, so this compares builds while other work runs. It counts CPU work, not
# contention, so it complements ab.sh rather than replacing it.
#
# Each binary runs under `valgrind --tool=callgrind` on a fresh DATA_DIR. Warm-up: WARM_BATCHES
# (default 80) batches of 100 mixed logs (bench/make_bodies.py), enough for every service's reservoir
# to fill and its automatic refits to finish (the script waits until GET /api/v1/models stops
# changing). Then instrumentation is switched on for BATCHES (default 300) sequential requests of
# batch_100.json and switched off: the count covers every thread of the service (HTTP, decoding,
# parsing, detection, storage, alerting) and nothing of the client.
set -euo pipefail
cd "$(dirname "$0")/.."
WARM_BATCHES="${WARM_BATCHES:-80}"
BATCHES="${BATCHES:-300}"
PORT="${PORT:-8301}"
KEEP_DIR="${KEEP_DIR:-}" # if set, each run's callgrind output is kept there (for callgrind_annotate)

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/make_bodies.py "$work"
url="http://127.0.0.1:$PORT/api/v1/stream/multi-source"
token=""
post() { # body file
    curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
        ${token:+-H "authorization: Bearer $token"} --data-binary @"$1" "$url"
}

run=0
for command in "$@"; do
    read -ra words <<<"$command"
    binary="${words[-1]}"
    settings=("${words[@]:0:${#words[@]}-1}")
    token=""
    for setting in "${settings[@]}"; do
        [[ "$setting" == API_TOKEN=* ]] && token="${setting#API_TOKEN=}"
    done
    rm -rf "$work/data" "$work"/callgrind.out.*
    env "${settings[@]}" DATA_DIR="$work/data" API_PORT="$PORT" LOG_LEVEL=error \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out.%p" \
        "$binary" 2>"$work/valgrind.log" &
    service=$!
    for _ in $(seq 600); do post "$work/batch_1.json" && break; sleep 0.2; done
    for _ in $(seq "$WARM_BATCHES"); do post "$work/batch_100.json"; done
    previous=""
    for _ in $(seq 120); do # until the automatic refits are over (at most 4 minutes)
        sleep 2
        models=$(curl -fs "http://127.0.0.1:$PORT/api/v1/models")
        [[ "$models" == "$previous" ]] && break
        previous="$models"
    done
    callgrind_control --instr=on "$service" >/dev/null 2>&1
    for _ in $(seq "$BATCHES"); do post "$work/batch_100.json"; done
    callgrind_control --instr=off "$service" >/dev/null 2>&1
    kill -INT "$service"
    wait "$service" 2>/dev/null || true
    instructions=$(cat "$work"/callgrind.out.* | sed -n 's/^totals: \([0-9]*\).*/\1/p' |
        awk '{ s += $1 } END { print s }')
    logs=$((BATCHES * 100))
    run=$((run + 1))
    if [[ -n "$KEEP_DIR" ]]; then
        mkdir -p "$KEEP_DIR"
        cat "$work"/callgrind.out.* >"$KEEP_DIR/callgrind.$run.$(basename "$binary")"
    fi
    echo "RESULT [$command] instructions=$instructions logs=$logs per_log=$((instructions / logs))"
done
