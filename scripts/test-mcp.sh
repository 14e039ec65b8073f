#!/usr/bin/env bash
# The MCP door against the official MCP Python client: builds the service (debug), installs the
# client pinned in tests/mcp/requirements.txt into a virtualenv at $VENV (default .venv-mcp,
# reused while the requirements are unchanged), and runs tests/mcp with pytest. The tests start
# the binary on 127.0.0.1 on a free port, with an access token, and talk to nothing else.
#
# Needs only python3 (3.11+) with pip, and cargo. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python-venv.sh
. scripts/python-venv.sh

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-mcp}
REQUIREMENTS=tests/mcp/requirements.txt

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "test-mcp.sh needs Python 3.11 or later")'

ensure_venv

# The binary `cargo test` builds (dev-dependency features unified): after `cargo test` this is
# already fresh, and a plain `cargo build` would rebuild it with other features.
echo "==> cargo test --locked --no-run --test api (builds target/debug/aioops-mcp-iforest)"
cargo test --locked --no-run --test api
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

echo "==> pytest tests/mcp"
AIOOPS_BIN="$target_dir/debug/aioops-mcp-iforest" \
    "$VENV/bin/python" -m pytest tests/mcp -q -p no:cacheprovider "$@"
