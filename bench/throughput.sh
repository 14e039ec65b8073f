#!/usr/bin/env bash
# Throughput of POST /api/v1/stream/multi-source next to a decode-only baseline, in one run.
#
#   bash bench/throughput.sh [duration_seconds]      (default 15)
#
# Installs wrk (Debian) if missing, builds release binaries, starts the service and the baseline on
# loopback, and drives each with 32 connections: realistic mixed batches of 100 logs, then single-log
# requests. Prints logs/s, p50/p99 and our throughput as a share of the baseline.
# A second service instance has every alert channel (Slack, PagerDuty, webhook) pointed at a receiver
# that accepts connections and never answers, so alert delivery's cost shows next to the plain run.
# EXTRA_ENV="VAR=value ..." passes further settings to both service instances.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
CONNECTIONS=32
THREADS=2

if ! command -v wrk >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release --quiet --bin aioops-mcp-iforest --example decode_baseline

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/make_bodies.py "$work"

target/release/examples/decode_baseline 127.0.0.1:8100 &
# shellcheck disable=SC2086
env DATA_DIR="$work/data" API_PORT=8101 LOG_LEVEL=warn ${EXTRA_ENV:-} target/release/aioops-mcp-iforest &
python3 bench/dead_receiver.py 8109 &
dead=http://127.0.0.1:8109
# shellcheck disable=SC2086
env DATA_DIR="$work/data-alerts" API_PORT=8102 LOG_LEVEL=warn SLACK_WEBHOOK_URL=$dead/slack \
    PAGERDUTY_ROUTING_KEY=benchkey PAGERDUTY_EVENTS_URL=$dead/pd GENERIC_WEBHOOK_URL=$dead/hook \
    ${EXTRA_ENV:-} target/release/aioops-mcp-iforest &
for port in 8100 8101 8102; do
    for _ in $(seq 100); do
        curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
            --data-binary @"$work/batch_1.json" "http://127.0.0.1:$port/api/v1/stream/multi-source" && break
        sleep 0.1
    done
done
# Let every service see its first logs and fit its first model before measuring.
for port in 8101 8102; do
    for _ in $(seq 20); do
        curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
            --data-binary @"$work/batch_100.json" "http://127.0.0.1:$port/api/v1/stream/multi-source"
    done
done
sleep 1

run() { # name port body logs_per_request
    local line
    line=$(BODY_FILE="$work/$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s bench/post.lua \
        "http://127.0.0.1:$2/api/v1/stream/multi-source" | grep '^RESULT')
    echo "$1 logs_per_request=$4 $line"
}

printf '%s\n' "# $(date -u +%FT%TZ) $(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
b100=$(run baseline 8100 batch_100.json 100); echo "$b100"
s100=$(run service 8101 batch_100.json 100); echo "$s100"
a100=$(run service_dead_alert_receivers 8102 batch_100.json 100); echo "$a100"
b1=$(run baseline 8100 batch_1.json 1); echo "$b1"
s1=$(run service 8101 batch_1.json 1); echo "$s1"
a1=$(run service_dead_alert_receivers 8102 batch_1.json 1); echo "$a1"

rps() { sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$1"; }
python3 - "$(rps "$b100")" "$(rps "$s100")" "$(rps "$a100")" "$(rps "$b1")" "$(rps "$s1")" "$(rps "$a1")" <<'PY'
import sys
b100, s100, a100, b1, s1, a1 = map(float, sys.argv[1:])
print(f"100-log batches: service {s100*100:,.0f} logs/s, baseline {b100*100:,.0f} logs/s, share {s100/b100:.1%}")
print(f"                 with dead alert receivers {a100*100:,.0f} logs/s, {a100/s100:.1%} of the plain service")
print(f"single-log:      service {s1:,.0f} req/s, baseline {b1:,.0f} req/s, share {s1/b1:.1%}")
print(f"                 with dead alert receivers {a1:,.0f} req/s, {a1/s1:.1%} of the plain service")
PY
echo "plain service metrics:  $(curl -fs http://127.0.0.1:8101/api/v1/metrics)"
echo "dead-receiver alerts:   $(curl -fs http://127.0.0.1:8102/api/v1/alerts | head -c 600)"
