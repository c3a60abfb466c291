"""Wall time of one real evaluation with the server part in pieces of various sizes, side by side.

An evaluation stacks one batch's copies at every grid SNR (``SNRs x batch_size`` rows: 2,500 in the
default build) and runs the server part on them. This script times
:meth:`paretoctl.optimizer.evaluator.Evaluator.evaluate` on the default build's validation images
(the bundled model, the default channels and grid) with ``server_chunk`` set to each size in turn:
rounds interleave every (schedule, size) pair in a rotated order, and medians are reported with the
ratio to the whole stack. It also checks that every size measures the same accuracies.

Usage:
    .venv/bin/python bench/server_chunk.py [--images 500] [--rounds 5] [--threads 2] [--chunks 32,64,128,256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from paretoctl.models.timing import machine_info
from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.executor import load_model, make_evaluator

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
SCHEDULES: dict[str, list[int]] = {"unmerged": [0] * 12, "r=3 per block (37% fewer FLOPs)": [3] * 12}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=500, help="validation images per evaluation (default 500)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--chunks", default="32,64,128,256", help="comma-separated piece sizes, besides the whole stack")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG, {"data.val_limit": args.images, "search.screen_images": 0})  # whole evaluations
    model = load_model(cfg)
    evaluator = make_evaluator(cfg, "val", model)
    evaluator.batches = list(evaluator.batches)  # decode once: only the model and the channel are timed
    sizes: list[int | None] = [None, *(int(c) for c in args.chunks.split(","))]
    pairs = [(name, size) for name in SCHEDULES for size in sizes]
    seconds: dict[tuple[str, int | None], list[float]] = {pair: [] for pair in pairs}
    accuracy: dict[tuple[str, int | None], object] = {}
    start_load, started = os.getloadavg()[0], time.perf_counter()
    for name, size in pairs:  # warm-up: allocator pools, lazy imports
        evaluator.server_chunk = size
        evaluator.evaluate(SCHEDULES[name])
    for k in range(args.rounds):
        for name, size in pairs[k % len(pairs):] + pairs[:k % len(pairs)]:
            evaluator.server_chunk = size
            t0 = time.perf_counter()
            ev = evaluator.evaluate(SCHEDULES[name])
            seconds[(name, size)].append(time.perf_counter() - t0)
            accuracy[(name, size)] = ev.accuracy
    info = machine_info()
    print(f"`python bench/server_chunk.py --images {args.images} --rounds {args.rounds} --threads {args.threads} "
          f"--chunks {args.chunks}`")
    print(f"{info['cpu']}, torch {info['torch']}, {info['threads']} threads, {cfg.channel.snr_grid_db} dB x "
          f"{len(cfg.channel.kinds)} channels, batch {cfg.data.batch_size}; {time.perf_counter() - started:.0f} s in "
          f"all; load average {start_load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n")
    print("| schedule | server piece (images) | s per evaluation (median) | ratio to whole | same accuracies |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, size in pairs:
        whole = statistics.median(seconds[(name, None)])
        median = statistics.median(seconds[(name, size)])
        same = "yes" if accuracy[(name, size)] == accuracy[(name, None)] else "NO"
        label = "whole stack" if size is None else str(size)
        print(f"| {name} | {label} | {median:.2f} | {median / whole:.2f} | {same} |")


if __name__ == "__main__":
    main()
