"""What batching costs for input-adaptive (threshold) merging, side by side in one run.

Threshold merging leaves each image its own token count, so a batch is padded to its longest image
(``paretoctl.models.threshold``: padding has size 0 and is masked by proportional attention). Three
ways to run the same images are timed in interleaved rounds (rotated order, medians):

- **padded batch**: the whole batch at once, padded (what the build's evaluator does);
- **per image**: the same images one at a time (batch 1: no padding, no batching either);
- **fixed schedule**: ToMe with the fixed schedule closest to the threshold configuration's mean
  token counts (the rounded-mean schedule), batched: what the same average compute costs when every
  image merges alike.

It also reports the compute that padding wastes: the GFLOPs of the padded batch (every image
charged its batch's longest token count at each block) against the sum of the per-image GFLOPs
(the figure the objectives use), both from ``paretoctl.models.flops``.

Usage::

    python bench/threshold_batching.py                      # bundled model, 256 validation images
    python bench/threshold_batching.py --quick              # fewer rounds, to check it works
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paretoctl.models.data import fmnist_eval_splits
from paretoctl.models.flops import cost_from_shape, vit_shape
from paretoctl.models.patch import apply_merging, set_schedule, set_thresholds
from paretoctl.models.schedule import max_merge
from paretoctl.models.split import edge_forward
from paretoctl.models.timing import machine_info
from paretoctl.models.vit_fmnist import vit_fmnist_patch4_28


def counts_per_image(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[B, L + 1]`` real tokens entering each block and leaving the last, per image."""
    depth = len(model.blocks)  # type: ignore[arg-type]
    record: list[torch.Tensor] = []
    state = edge_forward(model, images, depth, record)  # type: ignore[arg-type]
    final = (state.size[..., 0] > 0).sum(dim=1)
    return torch.stack([*record, final], dim=1)


def schedule_of(counts: torch.Tensor, num_prefix: int) -> list[int]:
    """The feasible fixed schedule closest to mean counts ``[L + 1]`` (rounded, then clipped)."""
    tokens = [round(float(c)) for c in counts]
    r, n = [], tokens[0]
    for nxt in tokens[1:]:
        step = min(max(n - nxt, 0), max_merge(n - num_prefix))
        r.append(step)
        n -= step
    return r


def padded_gflops(model: torch.nn.Module, counts: torch.Tensor, batch: int) -> float:
    """GFLOPs the padded batches compute: each image charged its batch's longest count per block."""
    shape = vit_shape(model)  # type: ignore[arg-type]
    total = 0.0
    for start in range(0, counts.shape[0], batch):
        longest = counts[start:start + batch].amax(dim=0)
        r = schedule_of(longest.float(), shape.num_prefix)
        total += cost_from_shape(shape, r, shape.depth).total_gflops * min(batch, counts.shape[0] - start)
    return total


def per_image_gflops(model: torch.nn.Module, counts: torch.Tensor) -> float:
    shape = vit_shape(model)  # type: ignore[arg-type]
    return sum(cost_from_shape(shape, schedule_of(c.float(), shape.num_prefix), shape.depth).total_gflops
               for c in counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.95, 0.9])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 2 if args.quick else args.rounds
    torch.set_num_threads(args.threads)
    model = apply_merging(vit_fmnist_patch4_28(pretrained=True).eval())
    val, _ = fmnist_eval_splits()
    images = torch.stack([val[i][0] for i in range(args.images)])
    info = machine_info()
    print(f"# {info['cpu']}, torch {info['torch']}, {info['threads']} thread(s), "
          f"load average {os.getloadavg()[0]:.2f}; "
          f"{args.images} validation images, batch {args.batch}, {rounds} interleaved rounds, medians")
    print("| thresholds | mean tokens after last block | padded batch s | per image s | fixed schedule s "
          "| padded / fixed | per image / padded | padded GFLOPs / per-image GFLOPs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in args.thresholds:
        print(measure(model, images, t, args.batch, rounds))


def measure(model: torch.nn.Module, images: torch.Tensor, threshold: float, batch: int, rounds: int) -> str:
    """One table row: the three ways timed in interleaved, rotated rounds (medians), and the waste."""
    depth = len(model.blocks)  # type: ignore[arg-type]
    with torch.inference_mode():
        set_thresholds(model, [threshold] * depth)
        counts = counts_per_image(model, images)
        fixed_r = schedule_of(counts.float().mean(dim=0), int(model.num_prefix_tokens))

        def padded() -> None:
            set_thresholds(model, [threshold] * depth)
            for s in range(0, len(images), batch):
                model(images[s:s + batch])

        def per_image() -> None:
            set_thresholds(model, [threshold] * depth)
            for i in range(len(images)):
                model(images[i:i + 1])

        def fixed() -> None:
            set_schedule(model, fixed_r)
            for s in range(0, len(images), batch):
                model(images[s:s + batch])

        ways: list[tuple[str, Callable[[], None]]] = [("padded", padded), ("per_image", per_image), ("fixed", fixed)]
        runs: dict[str, list[float]] = {name: [] for name, _ in ways}
        for _, fn in ways:
            fn()  # warm-up
        for k in range(rounds):
            for name, fn in ways[k % 3:] + ways[:k % 3]:
                t0 = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in runs.items()}
    waste = padded_gflops(model, counts, batch) / per_image_gflops(model, counts)
    return (f"| {threshold} | {counts[:, -1].float().mean():.1f} | {med['padded']:.3f} | {med['per_image']:.3f} "
            f"| {med['fixed']:.3f} | {med['padded'] / med['fixed']:.2f} | {med['per_image'] / med['padded']:.2f} "
            f"| {waste:.3f} |")


if __name__ == "__main__":
    main()
