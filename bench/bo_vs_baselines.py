"""BoTorch vs the baselines at an equal evaluation budget, on the bundled model, over several seeds.

For every method (botorch, sobol, nsga2, uniform) and seed it runs the search with the same
evaluator (same validation images, same channel noise) and prints the hypervolume at every
(channel, SNR) of the grid, each method's ratio to BoTorch, and BoTorch's ratio to a reference front
built from a much larger Sobol + uniform sweep (plus every point any method found).

Everything is archived in the output directory, so an interrupted run resumes where it stopped, and
identical schedules are measured once. Run:

    python bench/bo_vs_baselines.py --out runs/bench_bo [--budget 40] [--initial 8] [--seeds 0 1 2] [--sweep 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paretoctl.optimizer.build import convergence, open_context, reference_record, run_method  # noqa: E402
from paretoctl.optimizer.builddir import BuildLock  # noqa: E402
from paretoctl.optimizer.config import load_config  # noqa: E402
from paretoctl.optimizer.pareto import per_snr_hypervolumes  # noqa: E402
from paretoctl.service.fileio import atomic_write_text  # noqa: E402

METHODS = ("botorch", "sobol", "nsga2", "uniform")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs/default.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs/bench_bo"))
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--initial", type=int, default=8, help="BoTorch's Sobol design (NSGA-II's population)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sweep", type=int, default=200, help="Sobol points of the reference sweep")
    ap.add_argument("--val-limit", type=int, default=1000)
    args = ap.parse_args()

    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "search.budget": args.budget,
                                    "search.initial": min(args.initial, args.budget)})
    out = Path(args.out)
    t0 = time.time()

    def progress(phase: str, done: int, total: int, hv: float | None) -> None:
        hv_s = f" HV {hv:.4f}" if hv is not None else ""
        line = f"[{time.time() - t0:7.0f}s] {phase:<16} {done:>4}/{total}{hv_s}"
        print(f"\r{line}   ", end="", flush=True, file=sys.stderr)

    with BuildLock(out):
        run_bench(args, cfg, out, progress, t0)


def run_bench(args: argparse.Namespace, cfg: Any, out: Path, progress: Any, t0: float) -> None:
    """Every method at every seed on one evaluator (shared archive), then the hypervolume table."""
    ctx = open_context(cfg, out, resume=True, progress=progress)
    grid = cfg.channel.snr_grid_db
    ref = reference_record(ctx)
    runs: dict[str, dict[int, list[dict]]] = {m: {} for m in METHODS}
    for seed in args.seeds:
        for method in METHODS:
            seed_used = 0 if method == "uniform" else seed  # ToMe's schedules have no randomness
            runs[method][seed] = run_method(ctx, method, args.budget, seed_used, ref, tag=f"{method}-s{seed_used}")
    sweep = run_method(ctx, "sobol", args.sweep, 10_000, ref, tag="sweep-sobol")
    sweep += run_method(ctx, "uniform", 2 * (ctx.space.shape.num_patches // 2 + 1), 0, ref, tag="sweep-uniform")
    print(file=sys.stderr)

    everything = [ref, *sweep] + [r for per in runs.values() for recs in per.values() for r in recs]
    ref_hv = per_snr_hypervolumes(everything, ref, grid)
    hv = {m: {s: per_snr_hypervolumes([ref, *recs], ref, grid) for s, recs in per.items()} for m, per in runs.items()}
    keys = list(ref_hv)

    def mean(m: str, k: str) -> float:
        return statistics.fmean(hv[m][s][k] for s in hv[m])

    def spread(m: str, k: str) -> float:
        vals = [hv[m][s][k] for s in hv[m]]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    print(f"\n## BoTorch vs baselines: budget {args.budget} evaluations, seeds {args.seeds}, "
          f"{cfg.data.val_limit} validation images, split {cfg.split_index}\n")
    print("Hypervolume per (channel, SNR) in (accuracy, -GFLOPs/unmerged, -channel uses/unmerged), "
          "mean ± std over seeds; ratio = method / BoTorch.\n")
    print("| channel@SNR dB | " + " | ".join(METHODS) + " | reference sweep | BoTorch / reference |")
    print("|---" * (len(METHODS) + 3) + "|")
    wins = 0
    for k in keys:
        cells = []
        for m in METHODS:
            ratio = mean(m, k) / mean("botorch", k) if mean("botorch", k) > 0 else float("nan")
            cells.append(f"{mean(m, k):.4f} ± {spread(m, k):.4f}" + ("" if m == "botorch" else f" ({ratio:.2f})"))
        bo_beats = all(mean("botorch", k) > mean(m, k) for m in METHODS if m != "botorch")
        wins += bo_beats
        print(f"| {k} | " + " | ".join(cells) + f" | {ref_hv[k]:.4f} | {mean('botorch', k) / ref_hv[k]:.3f} |")
    worst = min(mean("botorch", k) / ref_hv[k] for k in keys)
    print(f"\nBoTorch beats every baseline at {wins}/{len(keys)} grid points; "
          f"its worst ratio to the reference front is {worst:.3f}. Reference sweep: {len(sweep)} schedules. "
          f"Wall time {time.time() - t0:.0f} s.")
    by_method = {f"{m}": runs[m][args.seeds[0] if m != "uniform" else 0] for m in METHODS}
    atomic_write_text(out / "convergence.json", json.dumps(convergence(by_method, ref, grid)))
    summary = {"budget": args.budget, "seeds": args.seeds, "reference_hv": ref_hv, "hv": hv}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
