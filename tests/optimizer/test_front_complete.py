"""The front is complete for the policy: replaying a real build's archive finds no better decision.

A real smoke build (bundled model, real BoTorch search, timing on) with a cap large enough not to
bind. Its archive is then replayed: every schedule non-dominated in (validation accuracy, edge
GFLOPs, server GFLOPs, channel uses) at some (channel, grid SNR) must be on the front, and for
every (channel, grid SNR, budget on a fine grid) and several device profiles the front's decision
must be as accurate as the best schedule of the whole archive within the budget (zero regret).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.optimizer.build import config_id, front_regret, policy_complete_ids, run_build, select_front
from paretoctl.optimizer.config import load_config
from paretoctl.service.latency import latency_parts, load_profile
from paretoctl.service.policy import select
from paretoctl.service.schema import DeviceProfile, load_front
from tests.optimizer.conftest import ROOT, smoke_config_text


@pytest.fixture(scope="module")
def uncapped_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uncapped")
    cfg_path = out.parent / "uncapped.yaml"
    text = smoke_config_text(max_front_configs=64)
    text += "timing:\n  min_runs: 5\n  max_runs: 20\n  max_seconds: 10\n"
    cfg_path.write_text(text)
    run_build(load_config(cfg_path), out)
    return out


def _archive(out: Path) -> list[dict[str, Any]]:
    return [{**rec, "id": config_id(rec)} for rec in JsonlArchive(out / "archive.jsonl")]


def _dominated_in_four(a: list[float], b: list[float]) -> bool:
    """``b`` dominates ``a`` (maximisation, all four objectives)."""
    return all(y >= x for x, y in zip(a, b, strict=True)) and any(y > x for x, y in zip(a, b, strict=True))


def test_every_policy_pareto_schedule_is_on_the_front(uncapped_build: Path) -> None:
    front = load_front(uncapped_build / "front.json")
    recs = _archive(uncapped_build)
    on_front = {tuple(c.r) for c in front.configs}
    grid = front.provenance.snr_grid_db
    for ch in front.provenance.channel_kinds:
        for i in range(len(grid)):
            objs = [[r["accuracy_val"][ch][i]["mean"], -r["gflops"]["edge"], -r["gflops"]["server"],
                     -r["channel_uses"]] for r in recs]
            for rec, y in zip(recs, objs, strict=True):  # an independent O(n^2) dominance check
                if not any(_dominated_in_four(y, other) for other in objs):
                    assert tuple(rec["r"]) in on_front, f"{rec['id']} is Pareto-optimal at {ch}@{grid[i]} but missing"
    assert policy_complete_ids(recs, front.provenance.channel_kinds, len(grid)) <= {
        rec["id"] for rec in recs if tuple(rec["r"]) in on_front}


def _profiles(front_profile: DeviceProfile) -> list[DeviceProfile]:
    devices = ROOT / "configs" / "devices"
    edge_heavy = DeviceProfile(name="edge-heavy", edge_gflops_per_s=0.05, server_gflops_per_s=5.0,
                               symbol_rate_hz=5e7)
    link_heavy = DeviceProfile(name="link-heavy", edge_gflops_per_s=50.0, server_gflops_per_s=0.5,
                               symbol_rate_hz=2e4, link_overhead_ms=3.0)
    return [front_profile.model_copy(update={"measurements": None}), load_profile(devices / "mcu-class.yaml"),
            load_profile(devices / "jetson-nano-class.yaml"), edge_heavy, link_heavy]


def test_front_decisions_have_zero_regret_against_the_archive(uncapped_build: Path) -> None:
    front = load_front(uncapped_build / "front.json")
    recs = _archive(uncapped_build)
    grid = front.provenance.snr_grid_db
    checked = 0
    for profile in _profiles(front.device_profile):
        lat = [latency_parts(r["gflops"]["edge"], r["gflops"]["server"], r["channel_uses"], profile)[3] for r in recs]
        points = sorted(set(lat))
        budgets = sorted({*points, *[(a + b) / 2 for a, b in itertools.pairwise(points)],
                          points[-1] * 1.5})
        for ch in front.provenance.channel_kinds:
            for i, snr in enumerate(grid):
                for budget in budgets:
                    fitting = [r["accuracy_val"][ch][i]["mean"] for r, t in zip(recs, lat, strict=True)
                               if t <= budget]
                    d = select(front, snr, budget, channel=ch, profile=profile)
                    if not fitting:
                        assert not d.feasible
                        continue
                    assert d.feasible and d.validation_accuracy is not None
                    assert d.validation_accuracy.mean == pytest.approx(max(fitting), abs=1e-12), (
                        f"{profile.name} {ch}@{snr} budget {budget}: front {d.config_id} "
                        f"{d.validation_accuracy.mean} < archive {max(fitting)}")
                    checked += 1
    assert checked > 100


def test_the_build_timed_every_front_configuration(uncapped_build: Path) -> None:
    front = load_front(uncapped_build / "front.json")
    m = front.device_profile.measurements
    assert m is not None and m.statistic == "p90" and m.machine.threads >= 1 and m.machine.torch == torch.__version__
    assert {c.config_id for c in m.configs} == {c.id for c in front.configs}
    for cfg in front.configs:
        timing = next(t for t in m.configs if t.config_id == cfg.id)
        assert cfg.latency.edge_source == cfg.latency.server_source == "measured"
        assert cfg.latency.transmit_source == "modelled"
        assert cfg.latency.edge_ms == timing.edge.p90_ms and cfg.latency.server_ms == timing.server.p90_ms
        assert 5 <= timing.edge.runs <= 20 and timing.edge.p50_ms <= timing.edge.p90_ms
        assert cfg.latency.total_ms == pytest.approx(cfg.latency.edge_ms + cfg.latency.transmit_ms
                                                     + cfg.latency.server_ms)


def _rec(rid: str, acc: float, edge: float, server: float, uses: int) -> dict[str, Any]:
    pts = [{"snr_db": 0.0, "mean": acc, "stderr": 0.0, "n_images": 100, "n_draws": 1}]
    return {"id": rid, "r": [0], "gflops": {"total": edge + server, "edge": edge, "server": server},
            "channel_uses": uses, "accuracy_val": {"awgn": pts}}


def test_total_gflops_hypervolume_would_drop_what_the_four_objectives_keep() -> None:
    # b has more total GFLOPs than a but less edge work: a slow edge device prefers b, so it stays.
    ref = _rec("unmerged", 0.90, 1.0, 1.0, 100)
    a = _rec("a", 0.85, 0.9, 0.1, 50)
    b = _rec("b", 0.85, 0.2, 0.9, 50)
    kept = {c["id"] for c in select_front([ref, a, b], ref, [0.0], cap=10)}
    assert kept == {"unmerged", "a", "b"}
    dominated = _rec("d", 0.84, 0.9, 0.9, 60)
    assert "d" not in {c["id"] for c in select_front([ref, a, b, dominated], ref, [0.0], cap=10)}


def test_over_the_cap_the_regret_decides() -> None:
    # Budgets under the model (1 ms per GFLOP, 1 ms per 1000 uses): ref 2.1, x 1.05, y 0.55, z 0.3.
    ref = _rec("unmerged", 0.90, 1.0, 1.0, 100)
    x = _rec("x", 0.899, 0.5, 0.5, 50)
    y = _rec("y", 0.89, 0.25, 0.25, 50)
    z = _rec("z", 0.60, 0.1, 0.15, 50)
    chosen = [c["id"] for c in select_front([ref, x, y, z], ref, [0.0], cap=2, max_accuracy_drop=3.0)]
    # Greedy: y first (alone it leaves 0.009 + 0.01 in the region, >= 0.87). Then {ref, y} leaves 0.009
    # at budget 1.05 (x missing), {x, y} only 0.001 at 2.1; the cheap z (far outside) cannot compete.
    assert sorted(chosen) == ["x", "y"]


def test_front_regret_reports_what_the_cap_left() -> None:
    # The records of the test above; the unmerged model is always served. Queries at budgets 0.3, 0.55,
    # 1.05, 2.1: the best answers are z .60, y .89, x .899, ref .90 (the last three inside the region).
    ref = _rec("unmerged", 0.90, 1.0, 1.0, 100)
    x = _rec("x", 0.899, 0.5, 0.5, 50)
    y = _rec("y", 0.89, 0.25, 0.25, 50)
    z = _rec("z", 0.60, 0.1, 0.15, 50)
    pool = [ref, x, y, z]
    got = front_regret(pool, [x, y], ref, 1, max_accuracy_drop=3.0)
    assert got["queries_roi"] == 3 and got["queries"] == 4
    assert got["max_roi_points"] == 0.0 and got["mean_roi_points"] == 0.0
    assert got["max_points"] == pytest.approx(60.0)  # budget 0.3: only z fits, and it was left out
    # By loss level (GFLOPs: ref 2, x 1, y 0.5, z 0.25): within 0.25 and 0.5 points x is the cheapest,
    # within 1 and 2 points y; {x, y} serves every level at its cheapest.
    assert got["level_gap_points"] == 0.0 and got["level_gap_at"] is None
    alone = front_regret(pool, [y], ref, 1, max_accuracy_drop=3.0)
    assert alone["max_roi_points"] == pytest.approx(0.9)  # budget 1.05 gets y (.89), not x (.899)
    assert alone["mean_roi_points"] == pytest.approx(0.3)
    # Within 0.25 points only x or the unmerged model qualify: 0% saved instead of 50%.
    assert alone["level_gap_points"] == pytest.approx(50.0)
    assert alone["level_gap_at"] == {"channel": "awgn", "snr_index": 0, "level": 0.25}
    assert front_regret(pool, pool, ref, 1, max_accuracy_drop=3.0)["max_points"] == 0.0
