"""Evaluations per hour with the local executor and the Ray executor, on this machine.

Evaluates the same schedules (a seeded random draw of the search space) on the bundled model and
Fashion-MNIST with each executor, checks that both measure the same accuracies, and prints a
markdown table: evaluations per hour (start-up excluded), the one-off start-up (Ray instance, actors
loading the model from the object store) and Ray's per-evaluation overhead relative to local.
On N cores, Ray with N one-CPU actors can at best approach N times the throughput of one process
that uses N threads for matrix products; on 2 shared cores expect no speed-up.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/executors.py [--evals 8] [--val-limit 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.executor import LocalExecutor, RayExecutor, load_model, make_evaluator
from paretoctl.optimizer.space import SearchSpace, ViTShape

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "smoke.yaml")
    ap.add_argument("--evals", type=int, default=8, help="schedules evaluated by each executor")
    ap.add_argument("--val-limit", type=int, default=1000, help="validation images per evaluation")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ray actors (one CPU each)")
    args = ap.parse_args()

    import ray

    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "data.batch_size": 250,
                                    "runtime.executor": "ray", "runtime.ray_workers": args.workers,
                                    "runtime.device": "cpu", "search.q": args.workers})
    torch.manual_seed(0)
    model = load_model(cfg)
    space = SearchSpace(ViTShape.of(model), cfg.split_index, cfg.search.max_proportion)
    xs = torch.rand(args.evals, space.dim, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    schedules = [space.to_r(x.tolist()) for x in xs]

    torch.set_num_threads(os.cpu_count() or 1)
    driver = make_evaluator(cfg, "val", model)
    driver.evaluate(schedules[0])  # warm-up
    t0 = time.perf_counter()
    local = list(LocalExecutor(lambda _split: driver).evaluate("val", schedules))
    t_local = time.perf_counter() - t0

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    executor = RayExecutor(cfg, model)
    list(executor.evaluate("val", schedules[: args.workers]))  # warm-up: each actor opens its data once
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    remote = list(executor.evaluate("val", schedules))
    t_ray = time.perf_counter() - t0
    executor.close()
    ray.shutdown()

    same = all(a.accuracy == b.accuracy for a, b in zip(local, remote, strict=True))
    print(f"{args.evals} evaluations of {args.val_limit} images x {len(cfg.channel.snr_grid_db)} SNRs "
          f"(bundled model), {os.cpu_count()} CPUs, {args.workers} Ray actors; accuracies identical: {same}\n")
    print("| executor | evaluations / hour | s / evaluation | start-up (s) |")
    print("|---|---:|---:|---:|")
    print(f"| local ({torch.get_num_threads()} threads) | {3600 * args.evals / t_local:,.0f} | "
          f"{t_local / args.evals:.2f} | 0 |")
    print(f"| ray ({args.workers} actors x 1 CPU) | {3600 * args.evals / t_ray:,.0f} | "
          f"{t_ray / args.evals:.2f} | {t_start:.1f} |")
    print(f"\nRay / local time per evaluation: {t_ray / t_local:.2f}x")


if __name__ == "__main__":
    main()
