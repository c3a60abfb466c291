"""Timing the patched model: the statistics by hand, and the stopping rule on a real timm model."""

from __future__ import annotations

import math

import pytest
import torch

from paretoctl.models.loading import ModelSpec, create_model
from paretoctl.models.patch import apply_merging, get_schedule
from paretoctl.models.split import TRACE_SOURCE_ATTR
from paretoctl.models.timing import (
    TimingSettings,
    front_measurements,
    machine_info,
    median_ci,
    quantile,
    quantile_ci,
    summarise,
    time_schedules,
)
from paretoctl.service.schema import Measurements


def test_quantiles_interpolate_like_numpy() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert quantile(xs, 0.5) == 3.0
    assert quantile(xs, 0.9) == pytest.approx(4.0 + 0.6 * 6.0)  # position 3.6
    assert quantile([5.0], 0.9) == 5.0


def test_median_interval_uses_order_statistics() -> None:
    xs = [float(i) for i in range(1, 101)]  # n = 100: ranks 50 -+ 9.8 -> 40th and 60th values
    assert median_ci(xs) == (40.0, 60.0)
    st = summarise(list(reversed(xs)))
    assert (st.p50_ms, st.runs) == (50.5, 100)
    assert st.rel_ci == pytest.approx(10.0 / 50.5)
    assert math.isinf(summarise([1.0, 2.0]).rel_ci)  # too few runs to judge


def test_p90_interval_uses_binomial_ranks_and_needs_enough_runs() -> None:
    xs = [float(i) for i in range(1, 101)]  # n = 100: ranks 90 -+ 1.96 * 3 = 84.1, 95.9 -> 84th and 96th
    assert quantile_ci(xs, 0.9) == (84.0, 96.0)
    assert quantile_ci(xs, 0.5) == (40.0, 60.0)  # ranks 50 -+ 9.8, rounded outward
    # the upper rank of a p90 leaves the sample below 35 runs: n = 34 needs rank ceil(30.6 + 3.43) = 35
    assert quantile_ci(xs[:34], 0.9) is None and quantile_ci(xs[:35], 0.9) == (28.0, 35.0)
    st = summarise(xs)
    assert st.p90_rel_ci == pytest.approx((96.0 - 84.0) / 2 / st.p90_ms)
    assert st.rel_ci_of("p90") == st.p90_rel_ci and st.rel_ci_of("p50") == st.rel_ci
    assert math.isinf(summarise(xs[:15]).p90_rel_ci) and summarise(xs[:15]).to_json()["p90_rel_ci"] == 1.0


def test_the_stopping_rule_judges_the_served_statistic() -> None:
    """With an interval any finite width meets, a median is judged at min_runs; a p90 cannot be before 35 runs.

    (A 100% interval was not loose enough: on a loaded machine one slow run in five made the median's
    five-run interval wider than the median itself, and the median went on to nine runs.)
    """
    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    loose = {"warmup": 0, "min_runs": 5, "max_runs": 30, "rel_ci": 1e9, "max_seconds": 60.0}
    (med,) = time_schedules(model, [[0] * depth], split=2, settings=TimingSettings(statistic="p50", **loose))
    (p90,) = time_schedules(model, [[0] * depth], split=2, settings=TimingSettings(statistic="p90", **loose))
    assert med.edge.runs == 5 and p90.edge.runs == 30
    with pytest.raises(ValueError, match="statistic"):
        TimingSettings(statistic="p99")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_runs"):
        TimingSettings(min_runs=10, max_runs=5)
    with pytest.raises(ValueError, match="rel_ci"):
        TimingSettings(rel_ci=0.0)


def test_time_schedules_on_a_real_model_respects_the_bounds_and_restores_the_model() -> None:
    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    apply_merging(model, [2] + [0] * (depth - 1), trace_source=True)
    schedules = [[0] * depth, [8] * 2 + [0] * (depth - 2)]
    s = TimingSettings(warmup=1, min_runs=5, max_runs=12, rel_ci=1e-9, max_seconds=30.0)
    out = time_schedules(model, schedules, split=2, settings=s)
    assert [t.r for t in out] == [tuple(r) for r in schedules]
    for t in out:
        for part in (t.edge, t.server):
            assert part.runs == 12  # an unreachable rel_ci runs to max_runs
            assert 0 < part.p50_ms <= part.p90_ms
    assert get_schedule(model) == (2,) + (0,) * (depth - 1)
    assert getattr(model, TRACE_SOURCE_ATTR) is True


def test_time_budget_still_gives_every_schedule_min_runs() -> None:
    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    s = TimingSettings(warmup=0, min_runs=5, max_runs=1000, rel_ci=1e-9, max_seconds=1e-6)
    out = time_schedules(model, [[0] * depth, [4] * depth], split=1, settings=s)
    assert [t.edge.runs for t in out] == [5, 5]


def test_front_measurements_validate_as_the_artifact_section() -> None:
    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    doc = front_measurements(model, [("unmerged", [0] * depth), ("m", [4] * depth)], 3,
                             TimingSettings(warmup=0, min_runs=5, max_runs=5), front_checksum="sha256:x")
    m = Measurements.model_validate(doc)
    assert [c.config_id for c in m.configs] == ["unmerged", "m"] and m.statistic == "p90"
    assert m.machine.threads == torch.get_num_threads() and m.machine.torch == torch.__version__
    got = m.lookup("m", (4,) * depth)
    assert got == (m.configs[1].edge.p90_ms, m.configs[1].server.p90_ms)
    assert m.lookup("m", (0,) * depth) is None  # the same id with another schedule is not this measurement
    assert machine_info(4)["server_batch"] == 4


def test_threshold_configurations_are_timed_on_every_real_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold configuration's edge runs cycle through the given images (its p90 spans them),
    its server gets padded batches of their own edge tokens; a fixed schedule keeps one image."""
    import paretoctl.models.timing as timing
    from paretoctl.models.patch import get_thresholds

    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    kept = [0.5] * depth
    apply_merging(model, thresholds=kept, trace_source=True)
    images = torch.randn(6, 3, *model.patch_embed.img_size, generator=torch.Generator().manual_seed(1))
    seen: list[tuple[bool, float]] = []
    real_edge = timing.edge_forward

    def spy(m: object, x: torch.Tensor, split: int, record: object = None) -> object:
        if x.shape[0] == 1:  # edge runs are at batch 1; the server inputs are prepared at the server batch
            seen.append((get_thresholds(m) is not None, round(float(x.sum()), 3)))  # type: ignore[arg-type]
        return real_edge(m, x, split)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "edge_forward", spy)
    s = TimingSettings(server_batch=2, warmup=0, min_runs=5, max_runs=9, rel_ci=1.0, max_seconds=30.0)
    out = time_schedules(model, [[0] * depth, [0] * depth], split=2, settings=s,
                         thresholds=[None, [0.2] * depth], images=images)
    assert out[0].thresholds is None and out[1].thresholds == (0.2,) * depth
    # At least min_runs, and every image at least once (more only when a loaded machine widens the
    # medians' intervals beyond rel_ci); never beyond max_runs.
    assert 5 <= out[0].edge.runs <= 9 and 6 <= out[1].edge.runs <= 9
    adaptive = [v for is_t, v in seen if is_t]
    fixed = {v for is_t, v in seen if not is_t}
    sums = [round(float(img.sum()), 3) for img in images]
    assert len(adaptive) == out[1].edge.runs
    assert adaptive == [sums[j % len(sums)] for j in range(len(adaptive))]  # the images in turn
    assert len(fixed) == 1  # the single synthetic image
    assert get_thresholds(model) == tuple(kept) and getattr(model, TRACE_SOURCE_ATTR) is True  # restored
    with pytest.raises(ValueError, match="pass images"):
        time_schedules(model, [[0] * depth], split=2, settings=s, thresholds=[[0.2] * depth])


def test_torch_threads_sets_and_restores() -> None:
    from paretoctl.models.timing import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        assert machine_info()["threads"] == 1  # what the measurements record is what was timed with
    assert torch.get_num_threads() == before


def test_compiled_timing_runs_fixed_schedules_compiled_and_thresholds_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compiled=True``: each fixed schedule's edge and server run through one compiled function each
    (compiled once, before the clock starts), a threshold configuration stays eager, and the document
    says which figures are of which path."""
    import paretoctl.models.timing as timing
    from paretoctl.models.patch import get_thresholds

    model = create_model(ModelSpec("test_vit"))
    depth = len(model.blocks)
    made: list[object] = []
    real_paths = timing._compiled_paths

    def keep(m: object, n: int) -> object:
        fast = real_paths(m, n)
        made.append(fast)
        return fast

    monkeypatch.setattr(timing, "_compiled_paths", keep)
    eager_edge_at_batch_1: list[bool] = []
    real_edge = timing.edge_forward

    def spy(m: object, x: torch.Tensor, split: int, record: object = None) -> object:
        if x.shape[0] == 1:  # a timed edge run (the server inputs are prepared at server_batch 2)
            eager_edge_at_batch_1.append(get_thresholds(m) is not None)  # type: ignore[arg-type]
        return real_edge(m, x, split)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "edge_forward", spy)
    images = torch.randn(3, 3, *model.patch_embed.img_size, generator=torch.Generator().manual_seed(2))
    s = TimingSettings(server_batch=2, warmup=1, min_runs=5, max_runs=5, max_seconds=1e-6)  # clock: after compiling
    doc = front_measurements(model, [("unmerged", [0] * depth), ("m", [4] * depth), ("t", [0] * depth)], 2, s,
                             thresholds={"t": [0.3] * depth}, images=images, compiled=True)
    (fast,) = made
    assert fast.cached == 4  # type: ignore[attr-defined]  # edge and server of the two fixed schedules
    assert sorted({key[2] for key in fast.compile_seconds}) == [(0,) * depth, (4,) * depth]  # type: ignore[attr-defined]
    assert eager_edge_at_batch_1 and all(eager_edge_at_batch_1)  # only the threshold configuration ran eager
    m = Measurements.model_validate(doc)
    by_id = {c.config_id: c for c in m.configs}
    for cid in ("unmerged", "m"):
        assert by_id[cid].mode == "compiled" and by_id[cid].compile_s is not None and by_id[cid].compile_s > 0
        assert by_id[cid].edge.runs == 5 and by_id[cid].edge.p50_ms > 0
    assert by_id["t"].mode == "eager" and by_id["t"].compile_s is None and "mode" not in doc["configs"][2]
    assert timing.time_schedules(model, [[0] * depth], 2, s, compiled=True)[0].mode == "compiled"
    assert timing.time_schedules(model, [[0] * depth], 2, s)[0].mode == "eager"
