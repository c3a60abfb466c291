"""Does screening stop the right candidates? Every record of a build's archive, screened again and measured whole.

For each validation record of ``BUILD/archive.jsonl`` it measures part 0 of the screen's ``P`` parts
with per-image hits, applies the paired test of ``paretoctl.optimizer.screening`` (the build's own
``search.screen_images``, ``screen_z`` and ``max_accuracy_drop``, or ``--screen-images``/``--z``), and
compares the decision with the candidate's drop in grid-mean accuracy on *every* validation image
(from the record when it was measured whole, else measured now). It prints one line per record and:

- **stopped**: candidates the test stops, and the evaluation work that saves (3/4 of a whole
  measurement with ``P = 4``: the record's ``wall_s`` scaled, worker seconds);
- **false stops**: stopped candidates whose whole-split drop is inside the region (these would bias
  the front); their count should be 0;
- **kept outside**: candidates outside the region that the test lets through (only a cost).

    python bench/screening.py runs/default [--screen-images 500] [--z 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", type=Path, help="a build directory (archive.jsonl and config.yaml)")
    ap.add_argument("--screen-images", type=int, default=None, help="default: the build's, else 500")
    ap.add_argument("--z", type=float, default=None, help="default: the build's search.screen_z")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from paretoctl.optimizer.archive import JsonlArchive
    from paretoctl.optimizer.build import evaluation_record
    from paretoctl.optimizer.config import load_config
    from paretoctl.optimizer.executor import load_model, make_evaluator, open_split
    from paretoctl.optimizer.pareto import objective_vector
    from paretoctl.optimizer.screening import Screen, paired_drop, screen_parts
    from paretoctl.optimizer.space import record_candidate

    torch.set_num_threads(args.threads)
    cfg = load_config(args.build / "config.yaml")
    s = cfg.search
    images = args.screen_images if args.screen_images is not None else (s.screen_images or 500)
    model = load_model(cfg)
    dataset = open_split(cfg, "val", model)
    evaluator = make_evaluator(cfg, "val", model, dataset)
    parts = screen_parts(len(dataset), cfg.data.batch_size, images)
    records = list(JsonlArchive(args.build / "archive.jsonl"))
    reference = next(r for r in records if r["method"] == "reference")

    def grid_mean(rec: dict[str, Any]) -> float:
        """Grid-mean validation accuracy of an archive record (the search's first objective)."""
        return objective_vector(rec, reference)[0]

    screen = Screen(parts, s.max_accuracy_drop, args.z if args.z is not None else s.screen_z,
                    record_candidate(reference))
    ref_hits = evaluator.evaluate_part(screen.reference, 0, parts, per_image=True).hits
    assert ref_hits is not None
    edge = s.max_accuracy_drop / 100
    ref_mean = grid_mean(reference)
    print(f"{args.build}: {len(records) - 1} candidates, region: at most {s.max_accuracy_drop:g} points of grid-mean "
          f"validation accuracy; screen: part 0 of {parts} ({images} images), z = {screen.z:g}")
    print(f"{'method':<15} {'part-0 drop':>11} {'stderr':>7} {'whole drop':>10} {'decision':<8} {'outcome':<13} r")
    stopped = false_stops = kept_outside = 0
    saved = whole_work = 0.0
    seen: set[Any] = set()
    for rec in records:
        c = record_candidate(rec)
        if rec["method"] == "reference" or c.key in seen:
            continue
        seen.add(c.key)
        part = evaluator.evaluate_part(c, 0, parts, per_image=True)
        assert part.hits is not None
        drop = paired_drop(ref_hits, part.hits)
        if "screened" in rec:
            whole = evaluator.evaluate_candidate(c)
            whole_drop = ref_mean - grid_mean(evaluation_record(whole, rec["eval_id"], rec["method"], 0, 0, None))
            work = whole.wall_s
        else:
            whole_drop, work = ref_mean - grid_mean(rec), rec["wall_s"]
        stop = screen.rejects(drop)
        outside = whole_drop > edge
        outcome = ("FALSE STOP" if stop and not outside else "stopped" if stop
                   else "kept outside" if outside else "kept")
        stopped += stop
        false_stops += stop and not outside
        kept_outside += (not stop) and outside
        whole_work += work
        saved += work * (1 - 1 / parts) if stop else 0.0
        print(f"{rec['method']:<15} {100 * drop.drop:>10.2f}p {100 * drop.stderr:>6.2f}p {100 * whole_drop:>9.2f}p "
              f"{'stop' if stop else 'go on':<8} {outcome:<13} {rec['r']}")
    share = 100 * saved / whole_work if whole_work else 0.0
    print(f"stopped {stopped} of {len(seen)}; false stops {false_stops}; kept although outside {kept_outside}; "
          f"evaluation work saved about {saved:.0f} of {whole_work:.0f} worker seconds ({share:.0f}%)")


if __name__ == "__main__":
    main()
