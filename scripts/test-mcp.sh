#!/usr/bin/env bash
# The MCP door against the official MCP Python client: builds the service (debug), installs the
# client pinned in tests/mcp/requirements.txt into a virtualenv at $VENV (default .venv-mcp,
# reused while the requirements are unchanged), and runs tests/mcp with pytest. The tests start
# the binary on 127.0.0.1 on a free port, with an access token, and talk to nothing else.
#
# Needs only python3 (3.11+) with pip, and cargo. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-mcp}
REQUIREMENTS=tests/mcp/requirements.txt

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "test-mcp.sh needs Python 3.11 or later")'

stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> Creating $VENV from $REQUIREMENTS"
    rm -rf "$VENV"
    # Debian's python3 lacks ensurepip without python3-venv; virtualenv from PyPI works there.
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        "$PYTHON" -m pip install --quiet --user --disable-pip-version-check virtualenv \
            || "$PYTHON" -m pip install --quiet --user --break-system-packages --disable-pip-version-check virtualenv
        "$PYTHON" -m virtualenv --quiet "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
fi

# The binary `cargo test` builds (dev-dependency features unified): after `cargo test` this is
# already fresh, and a plain `cargo build` would rebuild it with other features.
echo "==> cargo test --locked --no-run --test api (builds target/debug/aioops-mcp-iforest)"
cargo test --locked --no-run --test api
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

echo "==> pytest tests/mcp"
AIOOPS_BIN="$target_dir/debug/aioops-mcp-iforest" \
    "$VENV/bin/python" -m pytest tests/mcp -q -p no:cacheprovider "$@"
