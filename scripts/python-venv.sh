# shellcheck shell=bash
# Sourced by the test scripts: `ensure_venv` creates "$VENV" with "$PYTHON" and installs
# "$REQUIREMENTS" into it, again whenever the requirements file changes (a hash stamp in the venv).
# Debian's python3 lacks ensurepip without python3-venv; virtualenv from PyPI works there.
ensure_venv() {
    local stamp="$VENV/.requirements.sha256" want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "==> Creating $VENV from $REQUIREMENTS"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        "$PYTHON" -m pip install --quiet --user --disable-pip-version-check virtualenv \
            || "$PYTHON" -m pip install --quiet --user --break-system-packages --disable-pip-version-check virtualenv
        "$PYTHON" -m virtualenv --quiet "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
}
