"""Do schedules that merge many tokens in one block lose more accuracy than spread ones of the same FLOPs?

Reads build archives (``archive.jsonl``), keeps each schedule once, and fits the isotonic curve of
grid-mean validation accuracy against relative GFLOPs (``paretoctl.optimizer.prior_mean``) to the
*spread* schedules (every block merges at most ``--cap`` tokens). For every *concentrated* schedule
(some block merges more than ``--cap``) it prints how far its accuracy lies from that curve at its
own FLOPs, and summarises those inside ``--band`` (the FLOPs savings users pick from). This is the
evidence behind ``search.max_proportion: 0.5`` in ``configs/default.yaml`` (r <= 12 in the bundled
model's first block). Run:

    python bench/concentrated_merges.py runs/default/archive.jsonl [more archives ...] [--cap 12] [--band 30 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paretoctl.optimizer.archive import JsonlArchive  # noqa: E402
from paretoctl.optimizer.pareto import objective_vector  # noqa: E402
from paretoctl.optimizer.prior_mean import CostCurveMean, isotonic_increasing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archives", nargs="+", type=Path)
    ap.add_argument("--cap", type=int, default=12, help="largest r of a spread schedule")
    ap.add_argument("--band", type=float, nargs=2, default=(30.0, 60.0), help="FLOPs saved, %%, summarised")
    args = ap.parse_args(argv)
    records: dict[tuple[int, ...], dict[str, Any]] = {}
    for path in args.archives:
        for rec in JsonlArchive(path):
            if rec.get("merging", "proportions") == "proportions":
                records.setdefault(tuple(rec["r"]), rec)
    reference = records.get(tuple([0] * len(next(iter(records)))))
    if reference is None:
        print("error: no unmerged record in the archives", file=sys.stderr)
        return 2

    def grid_mean_and_cost(rec: dict[str, Any]) -> tuple[float, float]:
        """Grid-mean validation accuracy and GFLOPs relative to the unmerged model's."""
        acc_mean, neg_gflops_rel, _ = objective_vector(rec, reference)
        return acc_mean, -neg_gflops_rel

    spread = [r for r in records.values() if max(r["r"]) <= args.cap]
    concentrated = [r for r in records.values() if max(r["r"]) > args.cap]
    acc, rel = torch.tensor([grid_mean_and_cost(r) for r in spread], dtype=torch.double).unbind(1)
    knots, values = isotonic_increasing(rel, acc)
    curve = CostCurveMean(lambda x: x[..., 0], knots, values)
    print(f"{len(records)} schedules: {len(spread)} spread (max r <= {args.cap}), {len(concentrated)} concentrated")
    print(f"{'FLOPs saved':>11}  {'vs spread curve (points)':>24}  r")
    inside = []
    for rec in sorted(concentrated, key=lambda r: -r["gflops"]["total"]):
        acc_mean, c = grid_mean_and_cost(rec)
        if c < float(knots[0]):
            continue  # cheaper than every spread schedule: the curve does not reach it
        gap = 100 * (acc_mean - float(curve.curve(torch.tensor([[c]], dtype=torch.double))[0]))
        saved = 100 * (1 - c)
        if args.band[0] <= saved <= args.band[1]:
            inside.append(gap)
        print(f"{saved:>10.1f}%  {gap:>24.2f}  {rec['r']}")
    if inside:
        below = sum(g < 0 for g in inside)
        print(f"at {args.band[0]:.0f}-{args.band[1]:.0f}% saved: {below} of {len(inside)} below the spread curve, "
              f"median {statistics.median(inside):.2f} points, range {min(inside):.2f} to {max(inside):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
