"""Wall time of one real evaluation with the server's last block whole or for the class token only.

The head of a class-token ViT reads one token, so the last block's attention queries, output
projection and MLP for every other token are never used (``server_forward(..., head_only=True)``).
This script times :meth:`paretoctl.optimizer.evaluator.Evaluator.evaluate` on the default build's
test images (the bundled model, the default channels and grid) with ``head_only`` off and on, in
rounds that alternate which goes first, and reports medians, their ratio, and whether both measured
the same accuracy at every (channel, SNR).

Usage:
    .venv/bin/python bench/head_only.py [--images 1000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from paretoctl.models.data import subset
from paretoctl.models.flops import analytic_cost
from paretoctl.models.timing import machine_info
from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.executor import load_model, make_evaluator, open_split

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
SCHEDULES: dict[str, list[int]] = {
    "unmerged": [0] * 12,
    "r=3 per block": [3] * 12,
    "front-like, merging early": [8, 6, 4, 2, 1, 1, 1, 0, 0, 0, 0, 1],
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000, help="test images per evaluation (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each timing every pair once (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a build worker)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG)
    model = load_model(cfg)
    evaluator = make_evaluator(cfg, "test", model, subset(open_split(cfg, "test", model), args.images, seed=0))
    evaluator.batches = list(evaluator.batches)  # decode once: only the model and the channel are timed
    seconds: dict[tuple[str, bool], list[float]] = {(n, h): [] for n in SCHEDULES for h in (False, True)}
    accuracy: dict[tuple[str, bool], object] = {}
    start_load, started = os.getloadavg()[0], time.perf_counter()
    evaluator.evaluate(SCHEDULES["unmerged"])  # warm-up: allocator pools, lazy imports
    for k in range(args.rounds):
        for name, r in SCHEDULES.items():
            for head_only in ((False, True) if k % 2 == 0 else (True, False)):
                evaluator.head_only = head_only
                t0 = time.perf_counter()
                accuracy[(name, head_only)] = evaluator.evaluate(r).accuracy
                seconds[(name, head_only)].append(time.perf_counter() - t0)
    info = machine_info()
    print(f"`python bench/head_only.py --images {args.images} --rounds {args.rounds} --threads {args.threads}`")
    print(f"{info['cpu']}, torch {info['torch']}, {info['threads']} threads, {cfg.channel.snr_grid_db} dB x "
          f"{len(cfg.channel.kinds)} channels; {time.perf_counter() - started:.0f} s in all; load average "
          f"{start_load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n")
    print("| schedule | GFLOPs | whole last block, s (median) | class token only, s | ratio | same accuracies |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, r in SCHEDULES.items():
        whole, short = (statistics.median(seconds[(name, h)]) for h in (False, True))
        same = "yes" if accuracy[(name, True)] == accuracy[(name, False)] else "NO"
        gflops = analytic_cost(model, r, cfg.split_index).total_gflops
        print(f"| {name} {r} | {gflops:.4f} | {whole:.2f} | {short:.2f} | {short / whole:.3f} | {same} |")


if __name__ == "__main__":
    main()
