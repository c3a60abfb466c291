"""Accuracy and GFLOPs of the shipped model under ToMe's own schedules (no channel): the baseline to beat.

Evaluates the bundled checkpoint on the full Fashion-MNIST test set for ToMe's constant r and its
decreasing schedule at several r, and prints a markdown table. Run:

    python bench/tome_baseline.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paretoctl.models.data import load_fmnist, subset
from paretoctl.models.flops import analytic_cost
from paretoctl.models.loading import ModelSpec, bundled_model_card, create_model
from paretoctl.models.patch import apply_merging, set_schedule
from paretoctl.models.schedule import constant_r, decreasing_r
from paretoctl.models.train import evaluate_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    args = ap.parse_args()
    model = apply_merging(create_model(ModelSpec()))
    ds = subset(load_fmnist().test, args.limit)
    loader = torch.utils.data.DataLoader(ds, batch_size=500)
    depth, patches = len(model.blocks), model.patch_embed.num_patches  # type: ignore[union-attr, arg-type]
    base_flops = analytic_cost(model, [0] * depth, 0).total_gflops
    card = bundled_model_card()
    print(f"\n## ToMe schedules on the shipped model ({len(ds)} test images, no channel)\n")
    print(f"Model card test accuracy: {100 * card.get('test_acc', float('nan')):.2f}%.\n")
    print("| schedule | r per layer | GFLOPs | FLOPs reduction | test accuracy | drop (points) |")
    print("|---|---|---:|---:|---:|---:|")
    ref_acc = None
    t0 = time.time()
    for kind, r in [("none", 0), *[("constant", r) for r in (1, 2, 3, 4, 5, 6)],
                    *[("decreasing", r) for r in (4, 8, 12)]]:
        sched = constant_r(r, depth, patches) if kind != "decreasing" else decreasing_r(r, depth, patches)
        set_schedule(model, sched)
        acc = evaluate_accuracy(model, loader)
        gflops = analytic_cost(model, sched, 0).total_gflops
        ref_acc = acc if ref_acc is None else ref_acc
        print(f"| {kind} r={r} | {sched} | {gflops:.4f} | {100 * (1 - gflops / base_flops):.1f}% | "
              f"{100 * acc:.2f}% | {100 * (ref_acc - acc):.2f} |")
    print(f"\nWall time {time.time() - t0:.0f} s.")


if __name__ == "__main__":
    main()
