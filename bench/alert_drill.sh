#!/usr/bin/env bash
# Alerting at volume (issue #18): the real service and `log-simulator alert-drill`, at a fixed seed.
#
#   bash bench/alert_drill.sh
#
# Builds both release binaries, starts the service on 127.0.0.1:8420 with a temporary DATA_DIR,
# waits for /health, then runs the drill with a fixed seed and start time (so the logs sent are
# the same on every run) and --json, and prints its figures:
#   - warm-up: 2048 normal web_server logs, then a wait until its model is fitted on them;
#   - normal: one simulated hour of normal web_server traffic at 1,000 logs/s (3.6 M logs, sent as
#     fast as the service takes them): alerts raised per simulated hour, the false-alert figure;
#   - incident: five simulated minutes at the same rate with 2 % model spikes: time to the first
#     alert in simulated seconds (to the end of a 1,000-log batch, i.e. within one second).
# Before each measured phase the drill waits up to 200 s for alerts still firing to resolve.
# EXTRA_ENV="VAR=value ..." passes further settings to the service (e.g.
# EXTRA_ENV='COMPLEX_ALERT_RULES={"web_server":{"count":50}}'); SIM_ARGS="--flag value ..." further
# flags to the drill (e.g. SIM_ARGS="--services web_server,database --incident-kind rule_spike").
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8420}"
SEED="${SEED:-42}"

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

cmd=("$bin/log-simulator" alert-drill --url "http://127.0.0.1:$PORT/api/v1/stream/multi-source"
     --seed "$SEED" --start-time 2024-01-15T10:00:00Z --json --quiet)
# shellcheck disable=SC2206
cmd+=(${SIM_ARGS:-})
printf '# %s %s cores, commit %s\n# %s\n' "$(date -u +%FT%TZ)" "$(nproc)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "${cmd[*]}"
status=0
summary=$("${cmd[@]}") || status=$?
echo "$summary"
if [ -n "$summary" ]; then
    python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
d = s["alert_drill"]
w, n, i = d["warmup"], d["normal"], d["incident"]
print(f"sent {s['sent']} logs in {s['elapsed_seconds']:.1f} s, rejected {s['rejected']}, undelivered {s['undelivered']}")
if w:
    print(f"warm-up   {w['logs_per_service']} logs/service; models {w['models']} ({w['outcome']}, waited {w['waited_seconds']:.1f} s)")
if n:
    trips = "n/a" if n["rule_trips"] is None else f"{n['rule_trips']} ({n['rule_trips_per_hour']:.1f}/h)"
    print(f"normal    {n['simulated_seconds']:.0f} s simulated, {n['logs']} logs in {n['wall_seconds']:.1f} s wall: "
          f"{n['alerts']} alerts = {n['alerts_per_hour']:.2f} per simulated hour; rule trips {trips}; "
          f"flagged {n['flagged']} ({n['flagged_per_hour']:.1f}/h); firing before {n['firing_before']}, "
          f"at start {n['firing_at_start']}, at end {n['firing_at_end']}")
if i:
    first = i["time_to_first_alert_seconds"]
    first = "none" if first is None else f"{first:.1f} s (resolution {i['resolution_seconds']:.1f} s, {i['first_alert_service']})"
    print(f"incident  {i['kind']} at {i['share']:.1%} for {i['simulated_seconds']:.0f} s simulated: first alert {first}; "
          f"{i['alerts']} alerts, rule trips {i['rule_trips']}; {i['detected']}/{i['injected']} spikes flagged; "
          f"firing before {i['firing_before']}, at start {i['firing_at_start']}")
PY
fi
echo "service alert stats: $(curl -fs "http://127.0.0.1:$PORT/api/v1/alerts/stats" | head -c 600)"
echo "service models:      $(curl -fs "http://127.0.0.1:$PORT/api/v1/models" | head -c 300)"
exit "$status"
