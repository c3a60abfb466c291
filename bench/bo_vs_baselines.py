"""BoTorch vs the baselines at an equal evaluation budget, on the bundled model, over several seeds.

For every method (botorch, sobol, nsga2, uniform; ``--optuna`` adds Optuna's BoTorchSampler with its
defaults, ``bench/optuna_baseline.py``) and seed it runs the search with the same
evaluator (same validation images, same channel noise) and prints the hypervolume *inside the region
of interest* (``search.max_accuracy_drop`` points below the unmerged model at that grid point;
``--max-drop`` overrides it) at every (channel, SNR), each method's ratio to BoTorch, and BoTorch's
ratio to a reference front built from a much larger Sobol + uniform sweep (plus every point any
method found). As in a build, the unmerged model and ToMe's uniform schedules inside the region
(``tome_marks``) are measured first and are part of every method's front (BoTorch's GP also learns
from them); each method then spends the same budget. It also prints the seconds spent proposing
against the seconds spent evaluating, per method, and ``--effort`` adds BoTorch runs with other
acquisition-optimiser settings (``restarts,raw_samples,mc_samples,maxiter``) to weigh proposal time
against quality.

Everything is archived in the output directory, so an interrupted run resumes where it stopped, and
identical schedules are measured once. Run:

    python bench/bo_vs_baselines.py --out runs/bench_bo [--budget 40] [--initial 8] [--seeds 0 1 2] [--sweep 200]
        [--max-drop 3] [--effort 2,32,16,15 6,128,32,60]
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

from bench.optuna_baseline import OptunaProposer  # noqa: E402
from paretoctl.optimizer.build import convergence, open_context, reference_record, run_method, tome_marks  # noqa: E402
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
    ap.add_argument("--max-drop", type=float, default=None, help="region of interest, points (default: config's)")
    ap.add_argument("--effort", nargs="*", default=[], help="extra BoTorch settings restarts,raw,mc,maxiter")
    ap.add_argument("--optuna", action="store_true",
                    help="also run Optuna's BoTorchSampler with its defaults (pip install -e '.[bench]')")
    args = ap.parse_args()

    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "search.budget": args.budget,
                                    "search.initial": min(args.initial, args.budget)})
    out = Path(args.out)
    t0 = time.time()

    def progress(phase: str, done: int, total: int, hv: float | None) -> None:
        hv_s = f" HV {hv:.4f}" if hv is not None else ""
        line = f"[{time.time() - t0:7.0f}s] {phase:<16} {done:>4}/{total}{hv_s}"
        print(f"\r{line}   ", end="", flush=True, file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    with BuildLock(out):
        run_bench(args, cfg, out, progress, t0)


def run_bench(args: argparse.Namespace, cfg: Any, out: Path, progress: Any, t0: float) -> None:
    """Every method at every seed on one evaluator (shared archive), then the hypervolume table."""
    ctx = open_context(cfg, out, resume=True, progress=progress)
    grid = cfg.channel.snr_grid_db
    ref = reference_record(ctx)
    drop = cfg.search.max_accuracy_drop if args.max_drop is None else args.max_drop
    marks = tome_marks(ctx, ref)
    efforts = {f"botorch-e{i}": tuple(int(v) for v in e.split(",")) for i, e in enumerate(args.effort)}
    baselines = [*METHODS[1:], *(["optuna"] if args.optuna else [])]
    methods = ["botorch", *baselines, *efforts]
    runs: dict[str, dict[int, list[dict]]] = {m: {} for m in methods}
    base_search = ctx.cfg.search
    for seed in args.seeds:
        for method in methods:
            seed_used = 0 if method == "uniform" else seed  # ToMe's schedules have no randomness
            ctx.cfg = cfg
            if method in efforts:
                nr, rs, mc, mi = efforts[method]
                search = base_search.model_copy(update={"num_restarts": nr, "raw_samples": rs, "mc_samples": mc,
                                                        "maxiter": mi})
                ctx.cfg = cfg.model_copy(update={"search": search})
            kind = "botorch" if method in efforts else method
            proposer = OptunaProposer(ctx.searched.dim, seed_used) if method == "optuna" else None
            runs[method][seed] = [*marks, *run_method(ctx, kind, args.budget, seed_used, ref,
                                                      tag=f"{method}-s{seed_used}", proposer=proposer)]
    ctx.cfg = cfg
    sweep = run_method(ctx, "sobol", args.sweep, 10_000, ref, tag="sweep-sobol")
    sweep += run_method(ctx, "uniform", 2 * (ctx.space.shape.num_patches // 2 + 1), 0, ref, tag="sweep-uniform")
    print(file=sys.stderr)

    everything = [ref, *sweep] + [r for per in runs.values() for recs in per.values() for r in recs]
    ref_hv = per_snr_hypervolumes(everything, ref, grid, drop)
    hv = {m: {s: per_snr_hypervolumes([ref, *recs], ref, grid, drop) for s, recs in per.items()}
          for m, per in runs.items()}
    keys = list(ref_hv)

    def mean(m: str, k: str) -> float:
        return statistics.fmean(hv[m][s][k] for s in hv[m])

    def spread(m: str, k: str) -> float:
        vals = [hv[m][s][k] for s in hv[m]]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    print(f"\n## BoTorch vs baselines: budget {args.budget} evaluations, seeds {args.seeds}, "
          f"{cfg.data.val_limit} validation images, split {cfg.split_index}\n")
    print(f"Hypervolume per (channel, SNR) inside the region of interest ({drop:g} points below the unmerged "
          "model there) in (accuracy, -GFLOPs/unmerged, -channel uses/unmerged), mean ± std over seeds; "
          "ratio = method / BoTorch. Every front includes the unmerged model and ToMe's marks in the region.\n")
    print("| channel@SNR dB | " + " | ".join(methods) + " | reference sweep | BoTorch / reference |")
    print("|---" * (len(methods) + 3) + "|")
    wins = 0
    for k in keys:
        cells = []
        for m in methods:
            ratio = mean(m, k) / mean("botorch", k) if mean("botorch", k) > 0 else float("nan")
            cells.append(f"{mean(m, k):.4f} ± {spread(m, k):.4f}" + ("" if m == "botorch" else f" ({ratio:.2f})"))
        bo_beats = all(mean("botorch", k) > mean(m, k) for m in baselines)
        wins += bo_beats
        share = mean("botorch", k) / ref_hv[k] if ref_hv[k] > 0 else float("nan")
        print(f"| {k} | " + " | ".join(cells) + f" | {ref_hv[k]:.4f} | {share:.3f} |")
    worst = min(mean("botorch", k) / ref_hv[k] if ref_hv[k] > 0 else float("nan") for k in keys)
    print(f"\nBoTorch beats every baseline at {wins}/{len(keys)} grid points; "
          f"its worst ratio to the reference front is {worst:.3f}. Reference sweep: {len(sweep)} schedules. "
          f"Wall time {time.time() - t0:.0f} s.")
    seconds = {m: {what: sum(ctx.seconds.get(f"{m}-s{0 if m == 'uniform' else s}/{what}", 0.0) for s in args.seeds)
                   for what in ("propose", "evaluate")} for m in methods}
    print("\nSeconds spent in this session (a resumed run counts only what it did), summed over seeds:\n")
    print("| method | proposing | evaluating | proposing / evaluating |\n|---|---:|---:|---:|")
    for m in methods:
        p_s, e_s = seconds[m]["propose"], seconds[m]["evaluate"]
        setting = f" {efforts[m]}" if m in efforts else ""
        print(f"| {m}{setting} | {p_s:.1f} | {e_s:.1f} | {p_s / e_s if e_s > 0 else float('nan'):.2f} |")
    by_method = {f"{m}": runs[m][args.seeds[0] if m != "uniform" else 0] for m in methods}
    atomic_write_text(out / "convergence.json", json.dumps(convergence(by_method, ref, grid, drop)))
    summary = {"budget": args.budget, "seeds": args.seeds, "max_accuracy_drop": drop, "reference_hv": ref_hv,
               "hv": hv, "seconds": seconds}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
