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
