"""The papers' setup on the bundled model: thresholds against fixed proportions, and the headline.

Two parts, both on ``configs/papers.yaml`` (the whole encoder on the device, the final tokens sent,
AWGN and Rayleigh block fading, SNR 0-20 dB):

1. **Hypervolume at equal budget and seeds.** For every seed, BoTorch searches the per-layer
   similarity thresholds and, separately, the fixed per-layer proportions, with the same budget,
   the same evaluator (same validation images, same channel noise) and one shared archive. Each
   front is the unmerged model plus the method's own evaluations; its hypervolume inside the region
   of interest (``search.max_accuracy_drop`` points below the unmerged model) in (accuracy,
   -GFLOPs / unmerged, -channel uses / unmerged) is printed per (channel, SNR), mean ± std over
   seeds, with the ratio thresholds / proportions.
2. **The headline** (``--build``): the whole build (``paretoctl build``) of the config, then per
   channel at the top SNR the configuration of least mean GFLOPs whose *validation* accuracy is
   within 0.5 points of the unmerged model's, reported on the *test* split (difference with its
   standard error, taken as independent, so conservative): its FLOPs reduction and its share of the
   tokens sent (mean tokens sent / the unmerged model's), beside the best fixed schedule of the front
   under the same rule. The papers report about 30% fewer FLOPs and under 20% of the communication.

Everything is archived under ``--out``, so a rerun resumes. Run::

    python bench/papers_setup.py --out runs/papers [--seeds 0 1] [--budget 20] [--val-limit 1000] [--build]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paretoctl.optimizer.build import open_context, reference_record, run_build, run_method  # noqa: E402
from paretoctl.optimizer.builddir import BuildLock  # noqa: E402
from paretoctl.optimizer.config import load_config  # noqa: E402
from paretoctl.optimizer.pareto import per_snr_hypervolumes  # noqa: E402
from paretoctl.service.schema import FrontArtifact, FrontConfig, load_front  # noqa: E402


def compare_spaces(args: argparse.Namespace, t0: float) -> None:
    """Part 1: thresholds against proportions, BoTorch at equal budget on one evaluator."""
    cfg = load_config(args.config, {"data.val_limit": args.val_limit, "search.budget": args.budget,
                                    "search.initial": min(args.initial, args.budget)})
    out = args.out / "spaces"
    out.mkdir(parents=True, exist_ok=True)

    def progress(phase: str, done: int, total: int, hv: float | None) -> None:
        print(f"\r[{time.time() - t0:6.0f}s] {phase:<24} {done:>3}/{total}   ", end="", flush=True, file=sys.stderr)

    with BuildLock(out):
        ctx = open_context(cfg, out, resume=True, progress=progress)
        ref = reference_record(ctx)
        spaces = {"proportions": ctx.space, "thresholds": ctx.searched}
        runs = {name: {seed: run_method(ctx, "botorch", args.budget, seed, ref, tag=f"{name}-s{seed}", space=space)
                       for seed in args.seeds} for name, space in spaces.items()}
    print(file=sys.stderr)
    grid, drop = cfg.channel.snr_grid_db, cfg.search.max_accuracy_drop
    hv = {name: {seed: per_snr_hypervolumes([ref, *recs], ref, grid, drop) for seed, recs in per.items()}
          for name, per in runs.items()}
    keys = list(hv["proportions"][args.seeds[0]])

    def stats(name: str, key: str) -> tuple[float, float]:
        vals = [hv[name][s][key] for s in args.seeds]
        return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

    print(f"\n## Thresholds against proportions: BoTorch, budget {args.budget}, seeds {args.seeds}, "
          f"{cfg.data.val_limit} validation images, split {cfg.split_index} (of {ctx.space.dim} blocks)\n")
    print(f"Hypervolume inside the region of interest ({drop:g} points) per (channel, SNR), mean ± std over seeds.\n")
    print("| channel@SNR dB | proportions | thresholds | thresholds / proportions |\n|---|---:|---:|---:|")
    wins = 0
    for key in keys:
        (pm, ps), (tm, ts) = stats("proportions", key), stats("thresholds", key)
        wins += tm > pm
        ratio = tm / pm if pm > 0 else math.inf
        print(f"| {key} | {pm:.4f} ± {ps:.4f} | {tm:.4f} ± {ts:.4f} | {ratio:.2f} |")
    seconds = {name: {what: sum(ctx.seconds.get(f"{name}-s{s}/{what}", 0.0) for s in args.seeds)
                      for what in ("propose", "evaluate")} for name in spaces}
    print(f"\nThresholds win at {wins}/{len(keys)} grid points. Seconds this session (proposing / evaluating): "
          + ", ".join(f"{n} {v['propose']:.0f} / {v['evaluate']:.0f}" for n, v in seconds.items())
          + f". Wall {time.time() - t0:.0f} s.")


def cheapest_within(front: FrontArtifact, configs: list[FrontConfig], channel: str, idx: int,
                    level: float) -> FrontConfig | None:
    """Least mean GFLOPs among ``configs`` within ``level`` validation points of the unmerged model."""
    ref = front.config(front.reference_config_id).accuracy_val[channel][idx].mean
    ok = [c for c in configs if c.accuracy_val[channel][idx].mean >= ref - level / 100 - 1e-12]
    return min(ok, key=lambda c: c.gflops.total) if ok else None


def mean_tokens_sent(cfg: FrontConfig) -> float:
    return cfg.cost_distribution.tokens_sent.mean if cfg.cost_distribution is not None else float(cfg.tokens_sent)


def headline(args: argparse.Namespace) -> None:
    """Part 2: build the front, then the best configuration within 0.5 points at the top SNR."""
    cfg = load_config(args.config)
    path = run_build(cfg, args.out / "build", resume=(args.out / "build" / "archive.jsonl").exists(),
                     source=str(args.config))
    front = load_front(path)
    idx = len(front.provenance.snr_grid_db) - 1
    ref = front.config(front.reference_config_id)
    kinds = {"thresholds": [c for c in front.configs if c.merging == "thresholds"],
             "fixed schedule": [c for c in front.configs if c.merging == "proportions"]}
    print(f"\n## The papers' setup at {front.provenance.snr_grid_db[idx]:g} dB: within {args.level:g} validation "
          f"points of the unmerged model, least mean GFLOPs (front: {path})\n")
    print("| channel | kind | config | FLOPs reduction | tokens sent (mean) | share of tokens | "
          "share of channel uses | val drop | test drop (points) |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    for channel in front.provenance.channel_kinds:
        r_test = ref.accuracy_test[channel][idx]
        for kind, configs in kinds.items():
            best = cheapest_within(front, configs, channel, idx, args.level)
            if best is None:
                print(f"| {channel} | {kind} | none within {args.level:g} points | | | | | | |")
                continue
            test = best.accuracy_test[channel][idx]
            uses = best.cost_distribution.channel_uses.mean if best.cost_distribution else best.channel_uses
            drop_val = 100 * (ref.accuracy_val[channel][idx].mean - best.accuracy_val[channel][idx].mean)
            se = 100 * math.hypot(test.stderr, r_test.stderr)
            print(f"| {channel} | {kind} | {best.id} | {100 * (1 - best.gflops.total / ref.gflops.total):.1f}% "
                  f"| {mean_tokens_sent(best):.1f} / {ref.tokens_sent} "
                  f"| {100 * mean_tokens_sent(best) / ref.tokens_sent:.1f}% | {100 * uses / ref.channel_uses:.1f}% "
                  f"| {drop_val:.2f} | {100 * (r_test.mean - test.mean):.2f} ± {se:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs/papers.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/papers")
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--initial", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--val-limit", type=int, default=1000)
    ap.add_argument("--level", type=float, default=0.5, help="accuracy loss allowed, points")
    ap.add_argument("--build", action="store_true", help="also run the whole build and print the headline")
    ap.add_argument("--skip-spaces", action="store_true", help="only the headline")
    args = ap.parse_args()
    t0 = time.time()
    if not args.skip_spaces:
        compare_spaces(args, t0)
    if args.build or args.skip_spaces:
        headline(args)


if __name__ == "__main__":
    main()
