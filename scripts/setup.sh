#!/usr/bin/env bash
# Create .venv and install segdial with its development tools. torch==2.13.0 goes in first so
# that pip takes the local CPU wheel instead of a CUDA build from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "segdial is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
