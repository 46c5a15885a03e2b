#!/usr/bin/env bash
# Run every benchmark and write its figures to bench/results/NAME.json. Pass --quick for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
for b in bench/*.py; do
  name=$(basename "$b" .py)
  [ "$name" = common ] && continue  # shared plumbing, not a benchmark
  .venv/bin/python "$b" --json "bench/results/$name.json" "$@"
done
