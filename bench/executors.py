"""Evaluations per hour in one process, in worker processes and on Ray actors, on this machine.

Evaluates the same schedules (a seeded random draw of the search space) on the bundled model and
Fashion-MNIST with each executor, checks that all measure the same accuracies, and prints a markdown
table: evaluations per hour (start-up excluded), the one-off start-up (workers loading the model)
and each executor's time per evaluation relative to one local process. The executors are timed in
interleaved rounds (each round evaluates the whole set with every executor, in a rotated order) and
the median round is reported, so drifts of the machine hit all of them alike.

On N cores, N single-threaded workers can at best approach N times the throughput of one process
whose operators use N threads; a small ViT's operators share 2 threads badly, so the workers win.

Usage:
    .venv/bin/python bench/executors.py [--evals 8] [--val-limit 1000] [--workers 2] [--rounds 3] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from paretoctl.models.timing import cpu_model
from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.executor import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    load_model,
    make_evaluator,
)
from paretoctl.optimizer.space import SearchSpace, ViTShape

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    ap.add_argument("--evals", type=int, default=8, help="schedules evaluated by each executor per round")
    ap.add_argument("--val-limit", type=int, default=1000, help="validation images per evaluation")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes / Ray actors")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    ap.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = ap.parse_args()

    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "runtime.ray_workers": args.workers,
                                    "runtime.process_workers": args.workers, "runtime.device": "cpu",
                                    "search.q": args.workers, "search.screen_images": 0})  # whole evaluations
    torch.manual_seed(0)
    model = load_model(cfg)
    space = SearchSpace(ViTShape.of(model), cfg.split_index, cfg.search.max_proportion)
    xs = torch.rand(args.evals, space.dim, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    schedules = [space.to_r(x.tolist()) for x in xs]

    torch.set_num_threads(os.cpu_count() or 1)
    threads = torch.get_num_threads()
    driver = make_evaluator(cfg, "val", model)
    starters: dict[str, Callable[[], Executor]] = {
        f"local (1 process x {threads} threads)": lambda: LocalExecutor(lambda _split: driver),
        f"processes ({args.workers} x 1 thread)": lambda: ProcessExecutor(cfg, model, lambda _split: driver),
    }
    if not args.no_ray:
        import ray

        def start_ray() -> Executor:
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
            return RayExecutor(cfg, model)

        starters[f"ray ({args.workers} actors x 1 CPU)"] = start_ray

    executors: dict[str, Executor] = {}
    start_s: dict[str, float] = {}
    for name, start in starters.items():  # start-up, and a warm-up: each worker opens its data once
        t0 = time.perf_counter()
        executors[name] = start()
        list(executors[name].evaluate("val", schedules[: args.workers]))
        start_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in executors}
    accuracies: dict[str, list[object]] = {}
    names = list(executors)
    for k in range(args.rounds):
        for name in names[k % len(names):] + names[: k % len(names)]:
            t0 = time.perf_counter()
            results = list(executors[name].evaluate("val", schedules))
            times[name].append(time.perf_counter() - t0)
            accuracies[name] = [ev.accuracy for ev in results]
    for ex in executors.values():
        ex.close()
    if not args.no_ray:
        ray.shutdown()

    same = all(acc == accuracies[names[0]] for acc in accuracies.values())
    load = os.getloadavg()[0]
    print(f"{args.evals} evaluations of {args.val_limit} images x {len(cfg.channel.snr_grid_db)} SNRs x "
          f"{len(cfg.channel.kinds)} channels (bundled model) per round, {args.rounds} interleaved rounds, "
          f"medians; {cpu_model()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, load average {load:.2f} at the end; accuracies identical: {same}\n")
    print("| executor | evaluations / hour | s / evaluation | time vs local | start-up (s) |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {3600 * args.evals / med:,.0f} | {med / args.evals:.2f} | {med / base:.2f}x | "
              f"{start_s[name] if name != names[0] else 0:.1f} |")


if __name__ == "__main__":
    main()
