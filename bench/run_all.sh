#!/usr/bin/env bash
# Runs every benchmark and keeps each one's markdown output under runs/bench/, for bench/RESULTS.md.
# Usage: bench/run_all.sh [front.json]   (the headline and latency benches need a built front;
# default runs/default/front.json, as `make run` writes it)
set -euo pipefail
cd "$(dirname "$0")/.."
# No OMP_WAIT_POLICY=PASSIVE here: at 2 threads it doubles the batch-1 forward time (RESULTS.md).
PY=.venv/bin/python
mkdir -p runs/bench
front=${1:-runs/default/front.json}
uptime | tee runs/bench/load.txt
$PY bench/machine_speed.py | tee runs/bench/machine_speed_before.md
$PY bench/merge_speed.py --threads 1,2 --schedules half | tee runs/bench/merge_speed.md
$PY bench/merge_speed.py --threads 1,2 --schedules half --compiled | tee runs/bench/merge_speed_compiled.md
$PY bench/weight_traffic.py | tee runs/bench/weight_traffic.md
$PY bench/channel_speed.py | tee runs/bench/channel_speed.md
$PY bench/server_chunk.py | tee runs/bench/server_chunk.md
$PY bench/head_only.py | tee runs/bench/head_only.md
$PY bench/service_load.py | tee runs/bench/service_load.md
$PY bench/executors.py --rounds 3 | tee runs/bench/executors.md
$PY bench/tome_baseline.py | tee runs/bench/tome_baseline.md
$PY bench/digital_link.py --images 500 | tee runs/bench/digital_link.md
$PY bench/threshold_batching.py | tee runs/bench/threshold_batching.md
$PY bench/papers_setup.py --out runs/papers --build | tee runs/bench/papers_setup.md
if [ -f "$front" ]; then
  $PY bench/latency_error.py --front "$front" | tee runs/bench/latency_error.md
  $PY bench/headline.py "$front" --work runs/headline | tee runs/bench/headline.md
  $PY bench/screening.py "$(dirname "$front")" --threads 2 | tee runs/bench/screening.md
fi
$PY bench/bo_vs_baselines.py --out runs/bench_bo --budget 24 --seeds 0 1 2 --sweep 480 --optuna | tee runs/bench/bo_vs_baselines.md
$PY bench/machine_speed.py | tee runs/bench/machine_speed_after.md
