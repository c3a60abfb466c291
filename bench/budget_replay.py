"""What a smaller search budget or front cap would have cost: a finished build replayed at its prefixes.

A build's proposals depend only on the history before each batch and the batch's index, never on the
budget (``paretoctl.optimizer.proposers``), so a build with budget ``b`` evaluates exactly the first
``b`` records of a larger build of the same config: the reference, ToMe's marks and the method's
first ``b`` evaluations. This script selects the front of every (budget, cap) from those records, as
the build would, and prints, on validation:

- the policy regret and FLOPs gap that front leaves against the pool of the *whole* archive
  (``paretoctl.optimizer.build.front_regret``: worst and mean points inside the region, worst FLOPs
  saving missed at a loss level);
- the worker-seconds of evaluation it needs: the validation records kept (their ``wall_s``), and the
  test measurement of its front from ``test_archive.jsonl`` (``?`` where a configuration was never
  measured on test: run with ``--measure``).

``--measure DIR`` also writes each variant as a build directory under ``DIR`` (the records, the test
archive, the config with the budget and cap changed, timing off) and resumes it, which measures the
missing test configurations and writes its ``front.json`` for ``bench/headline.py``:

    python bench/budget_replay.py runs/default [--budgets 28 32 40] [--caps 10 12 14] [--measure runs/replay]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paretoctl.optimizer.archive import JsonlArchive  # noqa: E402
from paretoctl.optimizer.build import config_id, front_regret, run_build, select_front  # noqa: E402
from paretoctl.optimizer.builddir import CONFIG_NAME, config_yaml, recorded_config  # noqa: E402
from paretoctl.optimizer.config import BuildConfig, parse_config  # noqa: E402
from paretoctl.optimizer.preflight import preflight  # noqa: E402
from paretoctl.optimizer.space import record_candidate  # noqa: E402


def prefix(records: list[dict[str, Any]], method: str, budget: int) -> list[dict[str, Any]]:
    """The records a build with ``budget`` would hold: everything not ``method``'s, then its first ``budget``."""
    own = sorted((r for r in records if r["method"] == method), key=lambda r: r["eval_id"])
    if budget > len(own):
        raise SystemExit(f"the build holds {len(own)} {method} evaluations, fewer than the budget {budget}")
    keep = {id(r) for r in own[:budget]}
    return [r for r in records if r["method"] != method or id(r) in keep]


def replay(records: list[dict[str, Any]], cfg: BuildConfig, budget: int, cap: int,
           profile: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The records a build with ``budget`` and front cap ``cap`` would hold, the front it would select,
    and what that front leaves against the pool of all ``records`` (each record needs its ``id``)."""
    s, grid = cfg.search, cfg.channel.snr_grid_db
    ref = next(r for r in records if r["method"] == "reference")
    kept = prefix(records, s.method, budget)
    front = select_front(kept, ref, grid, cap, s.max_accuracy_drop, profile=profile)
    return kept, front, front_regret(records, front, ref, len(grid), s.max_accuracy_drop, profile)


def variant_config(cfg: BuildConfig, budget: int, cap: int) -> BuildConfig:
    raw = cfg.model_dump(mode="json")
    raw["search"].update(budget=budget, max_front_configs=cap)
    raw["timing"]["enabled"] = False  # the headline needs accuracies only
    return parse_config(raw, f"replay budget {budget} cap {cap}")


def measure(build: Path, out: Path, cfg: BuildConfig, kept: list[dict[str, Any]]) -> Path:
    """A resumable build directory holding ``kept`` and the build's test archive; resumed to its front."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    archive = JsonlArchive(out / "archive.jsonl")
    for r in sorted(kept, key=lambda r: r["eval_id"]):
        archive.append({k: v for k, v in r.items() if k != "id"})
    for name in ("test_archive.jsonl", "plan.json"):
        if (build / name).exists():
            shutil.copy(build / name, out / name)
    (out / CONFIG_NAME).write_text(config_yaml(cfg))
    return run_build(cfg, out, resume=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", type=Path, help="a finished build directory (archive.jsonl, config.yaml)")
    ap.add_argument("--budgets", type=int, nargs="+", default=None, help="default: 24, 28, ... up to the build's")
    ap.add_argument("--caps", type=int, nargs="+", default=None, help="default: 10, 12, 14 and the build's")
    ap.add_argument("--measure", type=Path, default=None, help="write and resume each variant under this folder")
    args = ap.parse_args()
    cfg = parse_config(recorded_config(args.build / CONFIG_NAME), str(args.build / CONFIG_NAME))
    s = cfg.search
    budgets = args.budgets or list(range(24, s.budget + 1, s.q))
    caps = args.caps or sorted({10, 12, 14, s.max_front_configs})
    profile = preflight(cfg).profile
    records = list(JsonlArchive(args.build / "archive.jsonl"))
    for r in records:
        r["id"] = config_id(r)
    tests = {record_candidate(t).key: t for t in JsonlArchive(args.build / "test_archive.jsonl")}
    ref = next(r for r in records if r["method"] == "reference")
    print(f"{args.build}: {len(records)} records, {s.method} budget {s.budget}, cap {s.max_front_configs}")
    print("| budget | cap | worst regret in region (points) | mean | worst FLOPs gap at a level (points) "
          "| validation work (worker-s) | test work (worker-s) | front |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for budget in budgets:
        for cap in caps:
            kept, front, got = replay(records, cfg, budget, cap, profile)
            configs = [ref, *(c for c in front if c["id"] != ref["id"])]
            walls = [tests.get(record_candidate(c).key, {}).get("wall_s") for c in configs]
            test_work = "?" if None in walls else f"{sum(walls):.0f}"
            val_work = sum(float(r.get("wall_s", 0.0)) for r in kept)
            ids = ", ".join(sorted(c["id"] for c in front if c["id"] != ref["id"]))
            print(f"| {budget} | {cap} | {got['max_roi_points']:.2f} | {got['mean_roi_points']:.3f} "
                  f"| {got['level_gap_points']:.1f} | {val_work:.0f} | {test_work} | {ids} |")
            if args.measure is not None:
                path = measure(args.build, args.measure / f"b{budget}c{cap}", variant_config(cfg, budget, cap), kept)
                print(f"  wrote {path}")


if __name__ == "__main__":
    main()
