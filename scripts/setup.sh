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
# Headless Chromium (Debian's package) renders the analytics report in the tests; install it when
# it is missing and apt-get is usable (CI runs as root on a clean machine).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
    echo "warning: could not install chromium; the report rendering test will fail" >&2
fi
echo "segdial is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
