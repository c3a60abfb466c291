"""How fast this machine evaluates right now: one worker's unit of build work, timed.

Why: on a shared 2-core VM the same evaluation has taken 16.8 s at one hour and 23.4 s at the next,
with nothing else running, so a build time means little without the machine's speed beside it. The
unit is what a build worker does: the unmerged bundled model on 1,000 test images at every (channel,
SNR) of the default grid, on one torch thread (``Evaluator.evaluate_part``). Run it just before and
just after a timed build, and compare builds by their time divided by this figure.

    python bench/machine_speed.py [--images 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs/default.yaml"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from paretoctl.models.data import subset
    from paretoctl.models.timing import cpu_model
    from paretoctl.optimizer.config import load_config
    from paretoctl.optimizer.executor import load_model, make_evaluator, open_split

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    cfg = load_config(args.config)
    model = load_model(cfg)
    evaluator = make_evaluator(cfg, "test", model, subset(open_split(cfg, "test", model), args.images, seed=0))
    unmerged = [0] * len(model.blocks)  # type: ignore[arg-type]
    evaluator.evaluate_part(unmerged)  # warm-up: allocator, data loading
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        evaluator.evaluate_part(unmerged)
        seconds.append(time.perf_counter() - start)
    cpu = cpu_model() or platform.processor()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: unmerged model, {args.images} test images x "
          f"{len(cfg.channel.kinds) * len(cfg.channel.snr_grid_db)} (channel, SNR), 1 thread: "
          f"median {statistics.median(seconds):.2f} s (runs {', '.join(f'{s:.2f}' for s in seconds)}); "
          f"{cpu}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
