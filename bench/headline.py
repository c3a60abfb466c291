"""The headline table from a built front: FLOPs saved at each accuracy loss a user may ask for.

For each channel, at one grid SNR (the top one unless ``--snr``), and at each loss level (0.25, 0.5,
1 and 2 points): the cheapest front configuration whose *validation* accuracy there is within the
level of the unmerged model's, beside the cheapest of ToMe's uniform schedules (constant r and
decreasing r, every r, exactly as ToMe defines them: not clipped to the build's ``search.max_proportion``,
which the build's own marks are) chosen the same way. Both are reported on the *test* split, with standard
errors. The uniform schedules are measured here, with the front's own build config (same validation
and test images, same channel noise seeds), so both columns are measured on the same images; the
unmerged model is re-measured on test as a check that they are. Measurements are archived in
``--work``, so a rerun is instant. Run:

    python bench/headline.py runs/default/front.json --work runs/headline [--levels 0.25 0.5 1 2] [--snr 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paretoctl.optimizer.build import measure_on_test, open_context, reference_record, run_method  # noqa: E402
from paretoctl.optimizer.builddir import BuildLock  # noqa: E402
from paretoctl.optimizer.config import parse_config  # noqa: E402
from paretoctl.optimizer.proposers import FixedProposer, tome_schedules  # noqa: E402
from paretoctl.optimizer.space import SearchSpace  # noqa: E402
from paretoctl.service.schema import load_front  # noqa: E402


def cheapest_within(rows: list[dict[str, Any]], ref_acc: float, level: float) -> dict[str, Any] | None:
    """The row of least GFLOPs whose validation accuracy is at most ``level`` points below ``ref_acc``."""
    ok = [r for r in rows if r["val"] >= ref_acc - level / 100 - 1e-12]
    return min(ok, key=lambda r: r["gflops"]) if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("front", type=Path)
    ap.add_argument("--work", type=Path, default=ROOT / "runs/headline", help="archive of the uniform schedules")
    ap.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0], help="losses, points")
    ap.add_argument("--snr", type=float, default=None, help="grid SNR in dB (default: the top of the grid)")
    args = ap.parse_args()
    front = load_front(args.front)
    grid = front.provenance.snr_grid_db
    idx = len(grid) - 1 if args.snr is None else grid.index(args.snr)
    cfg = parse_config(dict(front.provenance.config), str(args.front))
    args.work.mkdir(parents=True, exist_ok=True)
    with BuildLock(args.work):
        ctx = open_context(cfg, args.work, resume=True, progress=lambda *_: None)
        ref = reference_record(ctx)
        # ToMe's schedules as ToMe defines them: in the uncapped space every r maps to itself.
        tome_space = SearchSpace(ctx.space.shape, ctx.space.split, max_proportion=1.0)
        points = [tome_space.from_r(r) for r in tome_schedules(tome_space)]
        uniform = run_method(ctx, "uniform", len(points), 0, ref, tag="headline-tome", space=tome_space,
                             proposer=FixedProposer(points, cfg.search.q))
        ids = {"unmerged": {**ref, "id": "unmerged"}}
        ids.update({f"uniform-{rec['eval_id']:04d}": {**rec, "id": f"uniform-{rec['eval_id']:04d}"} for rec in uniform})
        for ch in front.provenance.channel_kinds:
            ref_val = ref["accuracy_val"][ch][idx]["mean"]
            rows = [{"id": k, "val": rec["accuracy_val"][ch][idx]["mean"], "gflops": rec["gflops"]["total"], "rec": rec}
                    for k, rec in ids.items()]
            chosen = {lv: cheapest_within(rows, ref_val, lv) for lv in args.levels}
            need = [ids["unmerged"]] + [c["rec"] for c in chosen.values() if c is not None]
            test = measure_on_test(ctx, list({r["id"]: r for r in need}.values()))
            report(front, ch, idx, args.levels, chosen, test)


def report(front: Any, ch: str, idx: int, levels: list[float], uniform: dict[float, dict[str, Any] | None],
           test: dict[str, dict[str, Any]]) -> None:
    """One markdown table: per loss level, the front's and the uniform schedules' FLOPs saved and test drop."""
    ref = front.config(front.reference_config_id)
    ref_val, ref_test = ref.accuracy_val[ch][idx].mean, ref.accuracy_test[ch][idx]
    again = test["unmerged"]["accuracy_test"][ch][idx]["mean"]
    same = "" if abs(again - ref_test.mean) < 1e-12 else ", NOT the same images"
    snr = front.provenance.snr_grid_db[idx]
    print(f"\n## {ch} at {snr:g} dB: unmerged {100 * ref_val:.2f}% val, {100 * ref_test.mean:.2f}% ± "
          f"{100 * ref_test.stderr:.2f} test (re-measured here: {100 * again:.2f}%{same})\n")
    print("| loss allowed (points, val) | front config | FLOPs saved | test drop (points) | "
          "uniform ToMe | FLOPs saved | test drop (points) |")
    print("|---:|---|---:|---:|---|---:|---:|")
    for lv in levels:
        ok = [c for c in front.configs if c.accuracy_val[ch][idx].mean >= ref_val - lv / 100 - 1e-12]
        best = min(ok, key=lambda c: c.gflops.total)
        t = best.accuracy_test[ch][idx]
        cells = [f"{lv:g}", best.id, f"{100 * (1 - best.gflops.total / ref.gflops.total):.1f}%",
                 f"{100 * (ref_test.mean - t.mean):.2f} ± {100 * t.stderr:.2f}"]
        u = uniform[lv]
        if u is None:
            cells += ["-", "-", "-"]
        else:
            ut = test[u["id"]]["accuracy_test"][ch][idx]
            cells += [f"r={u['rec']['r']}", f"{100 * (1 - u['gflops'] / ref.gflops.total):.1f}%",
                      f"{100 * (again - ut['mean']):.2f} ± {100 * ut['stderr']:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
