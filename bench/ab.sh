#!/usr/bin/env bash
# A/B of service builds (or settings) under the throughput benchmark's 100-log load, alternating
# them round by round so a noisy spell of the machine hits every side alike.
#
#   bash bench/ab.sh DURATION_SECONDS COMMAND_A COMMAND_B [COMMAND ...]
#   e.g. bash bench/ab.sh 10 /tmp/old-build target/release/aioops-mcp-iforest
#        bash bench/ab.sh 8 target/release/aioops-mcp-iforest \
#            'STORE_SYNCHRONOUS=normal target/release/aioops-mcp-iforest'
#
# Each command is a service binary, optionally preceded by VAR=value settings. Each run starts it on
# a fresh DATA_DIR, posts 30 batches so every service fits its model, loads it for 5 s with wrk so
# retention reaches its bound, then measures DURATION seconds (wrk -t2 -c32, batch_100.json from
# bench/make_bodies.py). ROUNDS (default 3) rounds, in reverse order every other round (use an even
# number); one RESULT line per run, then the mean requests/s of each command.
#
# With API_TOKEN in the environment every request carries it, and every command inherits it; a
# command can drop it with a leading `API_TOKEN=` (empty is unset), e.g. to measure the token check:
#   API_TOKEN=$(openssl rand -hex 32) bash bench/ab.sh 8 'API_TOKEN= BINARY' BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="$1"
shift
ROUNDS="${ROUNDS:-3}"
PORT="${PORT:-8201}"

if ! command -v wrk >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/make_bodies.py "$work"
url="http://127.0.0.1:$PORT/api/v1/stream/multi-source"
auth=()
if [ -n "${API_TOKEN:-}" ]; then auth=(-H "authorization: Bearer $API_TOKEN"); fi

load() { # seconds
    BODY_FILE="$work/batch_100.json" wrk -t2 -c32 -d"$1s" -s bench/post.lua "$url"
}

commands=("$@")
reversed=()
for ((i = ${#commands[@]} - 1; i >= 0; i--)); do reversed+=("${commands[$i]}"); done
for round in $(seq "$ROUNDS"); do
    # Even rounds run the commands in reverse order: the first run of a round measured ~5 % faster
    # than the same build run second (2026-12-06), a bias that alternating cancels.
    if ((round % 2 == 0)); then order=("${reversed[@]}"); else order=("${commands[@]}"); fi
    for command in "${order[@]}"; do
        rm -rf "$work/data"
        DATA_DIR="$work/data" API_PORT="$PORT" LOG_LEVEL=error bash -c "exec env $command" &
        service=$!
        for _ in $(seq 100); do
            curl -fs -o /dev/null -X POST -H 'content-type: application/json' "${auth[@]}" \
                --data-binary @"$work/batch_1.json" "$url" && break
            sleep 0.1
        done
        for _ in $(seq 30); do
            curl -fs -o /dev/null -X POST -H 'content-type: application/json' "${auth[@]}" \
                --data-binary @"$work/batch_100.json" "$url"
        done
        load 5 >/dev/null
        echo "round=$round [$command] $(load "$DURATION" | grep '^RESULT')" | tee -a "$work/results"
        kill "$service"
        wait "$service" 2>/dev/null || true
    done
done
# The mean of each command over the rounds, in the order given.
for command in "$@"; do
    grep -F "[$command] " "$work/results" | sed 's/.*rps=\([0-9.]*\).*/\1/' |
        awk -v c="$command" '{ s += $1; n++ } END { printf "MEAN [%s] rps=%.1f over %d runs\n", c, s / n, n }'
done
