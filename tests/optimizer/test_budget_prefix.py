"""A smaller budget builds a prefix of a larger build, so ``bench/budget_replay.py`` may replay one.

The default build's budget and front cap were chosen by replaying a finished build at smaller budgets
(bench/RESULTS.md); that is only sound if a build with budget ``b`` evaluates exactly what the larger
build evaluated first, and selects the front the replay selects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.budget_replay import prefix, replay
from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.optimizer.build import config_id, front_regret, run_build
from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.preflight import preflight
from tests.optimizer.conftest import smoke_config_text

VOLATILE = {"wall_s", "time"}
"""Fields that are clocks, not measurements."""


def _stable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def test_a_smaller_budget_evaluates_the_larger_builds_first_records_and_replays_to_its_front(
        smoke_build: Path, tmp_path: Path) -> None:
    big = list(JsonlArchive(smoke_build / "archive.jsonl"))
    cfg_path = tmp_path / "smoke4.yaml"
    cfg_path.write_text(smoke_config_text(budget=4))
    cfg = load_config(cfg_path)
    out = tmp_path / "b4"
    front_path = run_build(cfg, out)
    small = list(JsonlArchive(out / "archive.jsonl"))
    expected = prefix(big, "botorch", 4)
    assert sum(r["method"] == "botorch" for r in big) == 8 and sum(r["method"] == "botorch" for r in small) == 4
    assert [_stable(r) for r in small] == [_stable(r) for r in expected]  # same schedules, same accuracies
    for r in big:
        r["id"] = config_id(r)
    _, front, regret = replay(big, cfg, 4, cfg.search.max_front_configs, preflight(cfg).profile)
    built = json.loads(front_path.read_text())
    built_ids = sorted(c["id"] for c in built["configs"] if c["id"] != "unmerged")
    assert built_ids == sorted(c["id"] for c in front if c["id"] != "unmerged")
    # What the replay prices is what the smaller build's own front leaves against the larger archive.
    grid = cfg.channel.snr_grid_db
    ref = next(r for r in big if r["method"] == "reference")
    built_front = [r for r in big if r["id"] in built_ids]
    assert regret == front_regret(big, built_front, ref, len(grid), cfg.search.max_accuracy_drop,
                                  preflight(cfg).profile)


def test_replay_at_the_builds_own_budget_and_cap_is_what_the_build_reported(smoke_build: Path) -> None:
    cfg = load_config(smoke_build / "config.yaml")
    records = list(JsonlArchive(smoke_build / "archive.jsonl"))
    for r in records:
        r["id"] = config_id(r)
    _, front, regret = replay(records, cfg, cfg.search.budget, cfg.search.max_front_configs, preflight(cfg).profile)
    reported = json.loads((smoke_build / "convergence.json").read_text())["front_regret"]
    assert regret == reported
    built = json.loads((smoke_build / "front.json").read_text())
    assert sorted(c["id"] for c in built["configs"] if c["id"] != "unmerged") == \
        sorted(c["id"] for c in front if c["id"] != "unmerged")
