#!/usr/bin/env bash
# Observability checks against the real (debug) binary on 127.0.0.1, with tools independent of
# the service's own code:
#
#   - GET /metrics after traffic, parsed by promtool (`promtool check metrics`, Debian's
#     `prometheus` package) and by Python's prometheus_client in the format served (0.0.4 text
#     and OpenMetrics); N logs in must move the counters by N;
#   - every PromQL expression of the chart's Grafana dashboard names only metrics a scrape shows;
#   - GET /openapi.json validated by openapi-spec-validator; /docs and every asset its page
#     loads fetched from the binary (nothing from the network);
#   - Schemathesis against the binary with every check, bounded examples: no 5xx, every answer as
#     the description says.
#
# Installs what it lacks: promtool with apt-get (as root, or through sudo), the Python tools pinned
# in scripts/observability-requirements.txt into a virtualenv at $VENV (default .venv-obs, reused
# while the requirements are unchanged). Builds the debug binary with cargo unless $BINARY is set.
# SCHEMATHESIS_MAX_EXAMPLES (default 25, seed 42) bounds the fuzzing; raise it for a deeper run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python-venv.sh
. scripts/python-venv.sh

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-obs}
REQUIREMENTS=scripts/observability-requirements.txt

if ! command -v promtool >/dev/null 2>&1; then
    echo "==> Installing promtool (Debian package prometheus)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

ensure_venv

if [ -z "${BINARY:-}" ]; then
    echo "==> cargo build (debug)"
    cargo build --locked --quiet --bin aioops-mcp-iforest
    BINARY=target/debug/aioops-mcp-iforest
fi

PATH="$VENV/bin:$PATH" "$VENV/bin/python" scripts/observability_check.py "$BINARY"
