#!/usr/bin/env bash
# Runs every benchmark and keeps each one's markdown output under runs/bench/, for bench/RESULTS.md.
# Usage: bench/run_all.sh [front.json]   (the headline needs a built front; default runs/default/front.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
PY=.venv/bin/python
mkdir -p runs/bench
front=${1:-runs/default/front.json}
$PY bench/tome_baseline.py | tee runs/bench/tome_baseline.md
$PY bench/merge_speed.py | tee runs/bench/merge_speed.md
$PY bench/channel_speed.py | tee runs/bench/channel_speed.md
$PY bench/service_load.py | tee runs/bench/service_load.md
[ -f "$front" ] && $PY bench/headline.py "$front" | tee runs/bench/headline.md
$PY bench/bo_vs_baselines.py --out runs/bench_bo | tee runs/bench/bo_vs_baselines.md
