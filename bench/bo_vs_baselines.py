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

Choose on validation, report on held-out images: the largest front's validation hypervolume is
inflated by its luck (the best of hundreds of noisy accuracies), which a 24-point front cannot share.
``--holdout N`` (default 1000; 0 skips it) therefore re-measures every configuration on some run's or
the reference's validation front (inside the region, at some (channel, SNR)) on ``N`` images of the
test split, which no method saw, and prints the same table with each front, still chosen on
validation, scored on those images.

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

import torch  # noqa: E402

from bench.optuna_baseline import OptunaProposer  # noqa: E402
from paretoctl.optimizer.build import (  # noqa: E402
    config_id,
    convergence,
    measure_on_test,
    open_context,
    reference_record,
    run_method,
    tome_marks,
)
from paretoctl.optimizer.builddir import BuildLock  # noqa: E402
from paretoctl.optimizer.config import load_config  # noqa: E402
from paretoctl.optimizer.pareto import pareto_mask, per_snr_hypervolumes, snr_objectives, snr_reference  # noqa: E402
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
    ap.add_argument("--holdout", type=int, default=1000, help="test images that re-score the fronts (0: skip)")
    ap.add_argument("--optuna", action="store_true",
                    help="also run Optuna's BoTorchSampler with its defaults (pip install -e '.[bench]')")
    args = ap.parse_args()

    if args.holdout < 0:
        ap.error(f"--holdout must be 0 or more test images, got {args.holdout}")
    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "search.budget": args.budget,
                                    "search.initial": min(args.initial, args.budget),
                                    **({"data.test_limit": args.holdout} if args.holdout else {})})
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
    print(f"\n## BoTorch vs baselines: budget {args.budget} evaluations, seeds {args.seeds}, "
          f"{cfg.data.val_limit} validation images, split {cfg.split_index}\n")
    print(f"Hypervolume per (channel, SNR) inside the region of interest ({drop:g} points below the unmerged "
          "model there) in (accuracy, -GFLOPs/unmerged, -channel uses/unmerged), mean ± std over seeds; "
          "ratio = method / BoTorch. Every front includes the unmerged model and ToMe's marks in the region.\n")
    wins, worst = hv_table(hv, ref_hv, methods, baselines)
    print(f"\nBoTorch beats every baseline at {wins}/{len(ref_hv)} grid points; "
          f"its worst ratio to the reference front is {worst:.3f}. Reference sweep: {len(sweep)} schedules. "
          f"Wall time {time.time() - t0:.0f} s.")
    held: dict[str, Any] = {}
    if args.holdout:
        held = holdout_scores(ctx, args.holdout, ref, runs, everything, grid, drop)
        print(f"\n## The same fronts, chosen on validation, scored on {args.holdout} held-out test images\n")
        print(f"{held['measured']} configurations lie on some run's or the reference's validation front inside "
              "the region; each front keeps its validation choice and takes its held-out accuracies "
              "(the region is measured from the unmerged model's held-out accuracy).\n")
        wins_h, worst_h = hv_table(held["hv"], held["reference_hv"], methods, baselines)
        print(f"\nHeld out: BoTorch beats every baseline at {wins_h}/{len(ref_hv)} grid points; its worst ratio "
              f"to the reference front is {worst_h:.3f}. Wall time {time.time() - t0:.0f} s.")
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
               "hv": hv, "seconds": seconds, "holdout": held}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))


def hv_table(hv: dict[str, dict[int, dict[str, float]]], ref_hv: dict[str, float], methods: list[str],
             baselines: list[str]) -> tuple[int, float]:
    """Print one hypervolume table (mean ± std over seeds, ratio to BoTorch, share of the reference).

    Returns:
        (grid points where BoTorch beats every baseline, BoTorch's worst ratio to the reference).
    """
    def mean(m: str, k: str) -> float:
        return statistics.fmean(hv[m][s][k] for s in hv[m])

    def spread(m: str, k: str) -> float:
        vals = [hv[m][s][k] for s in hv[m]]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    print("| channel@SNR dB | " + " | ".join(methods) + " | reference sweep | BoTorch / reference |")
    print("|---" * (len(methods) + 3) + "|")
    wins, shares = 0, []
    for k in ref_hv:
        cells = []
        for m in methods:
            ratio = mean(m, k) / mean("botorch", k) if mean("botorch", k) > 0 else float("nan")
            cells.append(f"{mean(m, k):.4f} ± {spread(m, k):.4f}" + ("" if m == "botorch" else f" ({ratio:.2f})"))
        wins += all(mean("botorch", k) > mean(m, k) for m in baselines)
        shares.append(mean("botorch", k) / ref_hv[k] if ref_hv[k] > 0 else float("nan"))
        print(f"| {k} | " + " | ".join(cells) + f" | {ref_hv[k]:.4f} | {shares[-1]:.3f} |")
    return wins, min(shares)


def front_members(records: list[dict[str, Any]], ref: dict[str, Any], grid: list[float],
                  drop: float) -> list[dict[str, Any]]:
    """The records on the validation front of some (channel, SNR) and inside the region there."""
    keep: dict[str, dict[str, Any]] = {}
    for channel in ref["accuracy_val"]:
        for idx in range(len(grid)):
            y = torch.tensor([snr_objectives(r, ref, channel, idx) for r in records], dtype=torch.double)
            inside = (y > torch.tensor(snr_reference(ref, channel, idx, drop), dtype=torch.double)).all(dim=-1)
            for rec, on in zip(records, (pareto_mask(y) & inside).tolist(), strict=True):
                if on:
                    keep.setdefault(config_id(rec), rec)
    return list(keep.values())


def holdout_scores(ctx: Any, images: int, ref: dict[str, Any], runs: dict[str, dict[int, list[dict[str, Any]]]],
                   everything: list[dict[str, Any]], grid: list[float], drop: float) -> dict[str, Any]:
    """Hypervolumes of every run's and the reference's validation front, scored on held-out test images."""
    members = {m: {s: front_members([ref, *recs], ref, grid, drop) for s, recs in per.items()}
               for m, per in runs.items()}
    ref_members = front_members(everything, ref, grid, drop)
    wanted = {config_id(r): r for r in [ref, *ref_members, *(r for per in members.values()
                                                             for recs in per.values() for r in recs)]}
    test = measure_on_test(ctx, [{**r, "id": i} for i, r in wanted.items()])
    sizes = {t["accuracy_test"][next(iter(t["accuracy_test"]))][0]["n_images"] for t in test.values()}
    if sizes != {images}:
        raise SystemExit(f"the archive's held-out measurements used {sorted(sizes)} images, not --holdout {images}: "
                         "use a fresh --out")

    def scored(rec: dict[str, Any]) -> dict[str, Any]:
        return {**rec, "accuracy_val": test[config_id(rec)]["accuracy_test"]}

    held_ref = scored(ref)
    hv = {m: {s: per_snr_hypervolumes([held_ref, *map(scored, recs)], held_ref, grid, drop)
              for s, recs in per.items()} for m, per in members.items()}
    return {"images": images, "measured": len(wanted),
            "reference_hv": per_snr_hypervolumes([held_ref, *map(scored, ref_members)], held_ref, grid, drop),
            "hv": hv}


if __name__ == "__main__":
    main()
