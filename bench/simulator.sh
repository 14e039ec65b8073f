#!/usr/bin/env bash
# End to end: the real service and the log simulator, at a fixed seed, for a few seconds.
#
#   bash bench/simulator.sh [logs]        (default 2000: 10 s at 200 logs/s)
#
# Builds both release binaries, starts the service on 127.0.0.1:8110 with a temporary DATA_DIR,
# waits for /health, then runs log-simulator with a fixed seed and start time (so the logs sent
# are the same on every run) and --json, and prints its summary: delivery, TP/FP/FN and
# precision / recall / F1 against the simulator's labels, recall per anomaly kind. Each service
# gets WARMUP normal logs first so it can fit its model (MIN_TRAIN_SAMPLES, default 50) before
# anomalies arrive. Each model judges by its learned baseline, held to FALSE_ALARM_BUDGET (0.001):
# precision 0.985, recall 1.000 measured (BENCHMARKS.md); EXTRA_ENV="FALSE_ALARM_BUDGET=0.01" shows
# the trade-off. EXTRA_ENV="VAR=value ..." passes further settings to the service;
# SIM_ARGS="--flag value ..." further flags to the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-2000}"
PORT="${PORT:-8110}"
SEED="${SEED:-42}"
RATE="${RATE:-200}"
WARMUP="${WARMUP:-100}"

# PROFILE=dev runs debug builds (a quick check of this script, not a measurement).
PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --quiet --bin aioops-mcp-iforest --bin log-simulator
bin=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck disable=SC2086
env DATA_DIR="$work/data" API_HOST=127.0.0.1 API_PORT="$PORT" LOG_LEVEL=warn ${EXTRA_ENV:-} \
    "$bin/aioops-mcp-iforest" >"$work/service.log" 2>&1 &
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/health" || { cat "$work/service.log"; exit 1; }

cmd=("$bin/log-simulator" --url "http://127.0.0.1:$PORT/api/v1/stream/multi-source"
     --seed "$SEED" --start-time 2024-01-15T10:00:00Z --count "$COUNT" --rate "$RATE" --batch 20
     --warmup "$WARMUP" --anomaly-ratio 0.05 --json --quiet)
# shellcheck disable=SC2206
cmd+=(${SIM_ARGS:-})
printf '# %s %s cores\n# %s\n' "$(date -u +%FT%TZ)" "$(nproc)" "${cmd[*]}"
status=0
summary=$("${cmd[@]}") || status=$?
echo "$summary"
python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
d = s["detection"]
fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
print(f"sent {s['sent']}, accepted {s['accepted']}, rejected {s['rejected']}, undelivered {s['undelivered']}")
print(f"TP {d['true_positives']} FP {d['false_positives']} FN {d['false_negatives']} TN {d['true_negatives']}: "
      f"precision {fmt(d['precision'])}, recall {fmt(d['recall'])}, F1 {fmt(d['f1'])}")
for kind, k in s["by_kind"].items():
    print(f"  {kind:<12} {k['detected']}/{k['judged']} caught (recall {fmt(k['recall'])})")
print(f"flagged by {s['by_detector']}")
PY
echo "service metrics: $(curl -fs "http://127.0.0.1:$PORT/api/v1/metrics")"
echo "service models:  $(curl -fs "http://127.0.0.1:$PORT/api/v1/models" | head -c 600)"
exit "$status"
