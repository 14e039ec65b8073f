#!/usr/bin/env bash
# Retrain benchmark (issue #4): the service end to end next to scikit-learn on the same matrices.
#
#   bash bench/retrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q 'scikit-learn==1.9.*' numpy
cargo bench --bench retrain
bench/.venv/bin/python bench/retrain_sklearn.py
