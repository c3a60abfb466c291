"""Policy selection on hand-built fronts whose right answers are worked out in the comments.

The test profile (tests.fronts.DEFAULT_PROFILE): edge 20 GFLOP/s, server 2000 GFLOP/s, 1e6 symbols/s,
overheads 1 + 2 + 0.5 = 3.5 ms. So latency = 3.5 + 50 * edge_gflops + 0.5 * server_gflops + uses / 1000.
"""

from __future__ import annotations

import math
import random
import timeit

import pytest

from paretoctl.service.policy import PolicyError, UnknownChannelError, policy_index, select, snr_key
from paretoctl.service.schema import DeviceProfile, FrontArtifact
from tests.fronts import DEFAULT_PROFILE, assemble_front, hand_config, make_front

GRID = (0.0, 10.0, 20.0)


def cfg(cid: str, val: list[float], edge: float, server: float, uses: int, test: list[float] | None = None,
        channel: str = "awgn", **kw: object) -> dict:
    return hand_config(cid, {channel: val}, {channel: test} if test is not None else None, grid=GRID,
                       edge_gflops=edge, server_gflops=server, channel_uses=uses, **kw)  # type: ignore[arg-type]


# latencies: big 3.5 + 10 + 0.1 + 2 = 15.6 ms; mid 3.5 + 5 + 0.05 + 1 = 9.55 ms; small 3.5 + 1 + 0.01 + 0.2 = 4.71 ms
BIG = 15.6
MID = 9.55
SMALL = 4.71


@pytest.fixture(scope="module")
def front() -> FrontArtifact:
    return assemble_front([
        cfg("big", [0.50, 0.84, 0.90], 0.2, 0.2, 2000),
        cfg("mid", [0.60, 0.70, 0.85], 0.1, 0.1, 1000),
        cfg("small", [0.40, 0.50, 0.60], 0.02, 0.02, 200),
    ], grid=GRID)


def test_latencies_are_as_computed_by_hand(front: FrontArtifact) -> None:
    idx = policy_index(front)
    assert [c.id for c in idx.configs] == ["small", "mid", "big"]
    assert idx.totals == pytest.approx((SMALL, MID, BIG))


def test_at_a_grid_point_the_most_accurate_within_budget(front: FrontArtifact) -> None:
    d = select(front, 10.0, 20.0)
    assert d.feasible and d.config_id == "big"
    assert d.snr_used_db == [10.0] and not d.extrapolated and d.warnings == []
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.84)
    # hand_config's default test split is validation - 0.01: the reported figure is the test one
    assert d.predicted_accuracy is not None and d.predicted_accuracy.mean == pytest.approx(0.83)
    assert d.predicted_accuracy.split == "test" and d.validation_accuracy.split == "val"
    assert d.latency is not None and d.latency.total_ms == pytest.approx(BIG)
    assert d.latency.edge_ms == pytest.approx(1.0 + 10.0) and d.latency.transmit_ms == pytest.approx(2.0 + 2.0)
    assert d.gflops is not None and d.gflops.total == pytest.approx(0.4)
    assert d.channel_uses == 2000 and d.channel == "awgn" and d.source == "local"
    assert d.front_checksum == front.checksum and d.front_version == "paretoctl.front/2"
    assert d.r == front.config("big").r and d.proportions == front.config("big").proportions


def test_low_snr_prefers_the_robust_config(front: FrontArtifact) -> None:
    assert select(front, 0.0, 20.0).config_id == "mid"  # 0.60 > 0.50 > 0.40


def test_between_grid_points_uses_the_lower_neighbour_per_config(front: FrontArtifact) -> None:
    # at 5 dB: big min(0.50, 0.84) = 0.50, mid min(0.60, 0.70) = 0.60, small 0.40 -> mid.
    # (Linear interpolation would say big 0.67 > mid 0.65 and promise more than was measured.)
    d = select(front, 5.0, 20.0)
    assert d.config_id == "mid" and d.snr_used_db == [0.0, 10.0]
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.60)
    assert d.predicted_accuracy is not None and d.predicted_accuracy.mean == pytest.approx(0.59)


def test_conservative_rule_holds_when_accuracy_is_not_monotone_in_snr() -> None:
    f = assemble_front([
        cfg("odd", [0.5, 0.95, 0.30], 0.02, 0.02, 200),  # collapses at 20 dB (e.g. a quirk of the data)
        cfg("even", [0.4, 0.60, 0.65], 0.02, 0.02, 300),
    ], grid=GRID)
    assert select(f, 10.0, 100.0).config_id == "odd"
    d = select(f, 15.0, 100.0)  # odd: min(0.95, 0.30) = 0.30 < even: min(0.60, 0.65) = 0.60
    assert d.config_id == "even"
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.60)


def test_above_the_grid_uses_the_top_point_without_warning(front: FrontArtifact) -> None:
    d = select(front, 35.0, 20.0)
    assert d.config_id == "big" and d.snr_used_db == [20.0] and not d.extrapolated and d.warnings == []
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.90)


def test_below_the_grid_is_flagged_extrapolated(front: FrontArtifact) -> None:
    d = select(front, -7.0, 20.0)
    assert d.config_id == "mid" and d.snr_used_db == [0.0]
    assert d.extrapolated
    assert len(d.warnings) == 1 and "below the lowest grid point" in d.warnings[0]
    assert not select(front, 0.0, 20.0).extrapolated  # exactly at the lowest point is measured


def test_budget_excludes_slow_configs_and_is_inclusive(front: FrontArtifact) -> None:
    assert select(front, 10.0, 15.0).config_id == "mid"  # big (15.6 ms) no longer fits
    assert select(front, 10.0, BIG + 1e-9).config_id == "big"
    assert select(front, 10.0, policy_index(front).totals[2]).config_id == "big"  # == budget fits
    assert select(front, 10.0, 9.0).config_id == "small"


def test_infeasible_budget_names_the_fastest_latency(front: FrontArtifact) -> None:
    d = select(front, 10.0, 2.0)
    assert not d.feasible and d.config_id is None and d.r is None and d.latency is None
    assert d.fastest_latency_ms == pytest.approx(SMALL)
    assert d.reason is not None and "4.71" in d.reason
    assert d.best_accuracy_within_budget is None


def test_min_accuracy(front: FrontArtifact) -> None:
    ok = select(front, 10.0, 10.0, min_accuracy=0.70)  # mid reaches exactly 0.70: inclusive
    assert ok.feasible and ok.config_id == "mid"
    d = select(front, 10.0, 10.0, min_accuracy=0.75)
    assert not d.feasible and d.config_id is None
    assert d.best_accuracy_within_budget == pytest.approx(0.70)
    assert d.fastest_latency_meeting_min_accuracy_ms == pytest.approx(BIG)
    assert d.reason is not None and "0.75" in d.reason
    never = select(front, 10.0, 100.0, min_accuracy=0.99)
    assert not never.feasible and never.fastest_latency_meeting_min_accuracy_ms is None


def test_selection_uses_validation_and_reports_test() -> None:
    f = assemble_front([
        cfg("a", [0.9, 0.9, 0.9], 0.02, 0.02, 200, test=[0.70, 0.70, 0.70]),
        cfg("b", [0.8, 0.8, 0.8], 0.02, 0.02, 200, test=[0.85, 0.85, 0.85]),
    ], grid=GRID)
    d = select(f, 10.0, 100.0)
    assert d.config_id == "a"
    assert d.predicted_accuracy is not None and d.predicted_accuracy.mean == pytest.approx(0.70)
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.90)


def test_ties_go_to_lower_latency_then_smaller_id() -> None:
    f = assemble_front([
        cfg("z-slow", [0.8, 0.8, 0.8], 0.1, 0.1, 1000),
        cfg("y-fast", [0.8, 0.8, 0.8], 0.02, 0.02, 200),
        cfg("x-fast", [0.8, 0.8, 0.8], 0.02, 0.02, 200),
    ], grid=GRID)
    assert select(f, 10.0, 100.0).config_id == "x-fast"
    assert select(f, 10.0, 100.0, profile=DEFAULT_PROFILE).config_id == "x-fast"


def test_device_profile_recomputes_latency(front: FrontArtifact) -> None:
    fast = DeviceProfile(name="fast-edge", edge_gflops_per_s=200.0, server_gflops_per_s=2000.0,
                         symbol_rate_hz=1e6, edge_overhead_ms=1.0, link_overhead_ms=2.0, server_overhead_ms=0.5)
    assert select(front, 10.0, 10.0).config_id == "mid"
    d = select(front, 10.0, 10.0, profile=fast)  # big: 3.5 + 1 + 0.1 + 2 = 6.6 ms now fits
    assert d.config_id == "big" and d.device_profile == "fast-edge"
    assert d.latency is not None and d.latency.total_ms == pytest.approx(6.6)
    slow = fast.model_copy(update={"name": "slow", "edge_gflops_per_s": 0.1})
    s = select(front, 10.0, 10.0, profile=slow)  # small: 3.5 + 200 + ... > 10 ms
    assert not s.feasible and s.fastest_latency_ms == pytest.approx(3.5 + 200 + 0.01 + 0.2)


def test_channels() -> None:
    f = assemble_front([
        hand_config("awgn-best", {"awgn": [0.9] * 3, "rayleigh": [0.3] * 3}, grid=GRID),
        hand_config("fading-best", {"awgn": [0.8] * 3, "rayleigh": [0.6] * 3}, grid=GRID),
    ], grid=GRID, channels=("awgn", "rayleigh"))
    assert select(f, 10.0, 100.0).config_id == "awgn-best"  # default: the first channel
    d = select(f, 10.0, 100.0, channel="rayleigh")
    assert d.config_id == "fading-best" and d.channel == "rayleigh"
    with pytest.raises(UnknownChannelError, match="rician"):
        select(f, 10.0, 100.0, channel="rician")


@pytest.mark.parametrize(("snr", "lat", "mina", "param"), [
    (math.nan, 10.0, None, "snr_db"), (math.inf, 10.0, None, "snr_db"), (5.0, 0.0, None, "latency_ms"),
    (5.0, -1.0, None, "latency_ms"), (5.0, math.nan, None, "latency_ms"), (5.0, 10.0, 1.5, "min_accuracy"),
])
def test_bad_inputs_name_the_parameter(front: FrontArtifact, snr: float, lat: float, mina: float | None,
                                       param: str) -> None:
    with pytest.raises(PolicyError) as info:
        select(front, snr, lat, min_accuracy=mina)
    assert info.value.param == param and param in str(info.value)


def test_snr_key() -> None:
    grid = [-5.0, 0.0, 5.0]
    assert snr_key(grid, -5.0) == (0, 0, False)
    assert snr_key(grid, -5.1) == (0, 0, True)
    assert snr_key(grid, -2.0) == (0, 1, False)
    assert snr_key(grid, 0.0) == (1, 1, False)
    assert snr_key(grid, 4.999) == (1, 2, False)
    assert snr_key(grid, 5.0) == (2, 2, False)
    assert snr_key(grid, 50.0) == (2, 2, False)
    assert snr_key([3.0], 2.0) == (0, 0, True) and snr_key([3.0], 4.0) == (0, 0, False)


def _brute_force(front: FrontArtifact, snr: float, budget: float, channel: str) -> str | None:
    """The rule written the slow, obvious way."""
    grid = front.provenance.snr_grid_db
    best: tuple[float, float, str] | None = None
    for c in front.configs:
        if c.latency.total_ms > budget:
            continue
        pts = c.accuracy_val[channel]
        if snr <= grid[0]:
            acc = pts[0].mean
        elif snr >= grid[-1]:
            acc = pts[-1].mean
        else:
            k = max(i for i, g in enumerate(grid) if g <= snr)
            acc = pts[k].mean if grid[k] == snr else min(pts[k].mean, pts[k + 1].mean)
        key = (-acc, c.latency.total_ms, c.id)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def test_matches_brute_force_on_random_fronts() -> None:
    rng = random.Random(0)
    for seed in range(5):
        f = make_front(depth=6, snr_grid_db=(-5, 0, 5, 10, 20), channels=("awgn", "rayleigh"), n_configs=30,
                       seed=seed)
        lats = sorted(c.latency.total_ms for c in f.configs)
        for _ in range(200):
            snr = rng.uniform(-10, 25) if rng.random() < 0.8 else rng.choice([-5.0, 0.0, 10.0, 20.0])
            budget = rng.uniform(lats[0] * 0.9, lats[-1] * 1.1)
            ch = rng.choice(["awgn", "rayleigh"])
            assert select(f, snr, budget, channel=ch).config_id == _brute_force(f, snr, budget, ch)


def test_index_is_built_once_per_front_and_profile() -> None:
    f = make_front(n_configs=10)
    assert policy_index(f) is policy_index(f)
    assert policy_index(f, DEFAULT_PROFILE) is policy_index(f, DEFAULT_PROFILE.model_copy())
    other = DEFAULT_PROFILE.model_copy(update={"name": "other"})
    assert policy_index(f, other) is not policy_index(f)


def test_select_is_fast() -> None:
    """< 50 us per call on a 50-config front (the best of several runs, robust to a busy machine)."""
    f = make_front(depth=12, snr_grid_db=(-5, 0, 5, 10, 15, 20), channels=("awgn", "rayleigh", "rician"),
                   n_configs=50, num_patches=49)
    select(f, 7.0, 10.0)
    per_call = min(timeit.repeat(lambda: select(f, 7.3, 10.0, channel="rayleigh"), number=300, repeat=7)) / 300
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} us per call"


def test_select_leaves_the_artifact_untouched() -> None:
    """The index lives in policy.py's cache, not on the (frozen) artifact: old code added ``_derived`` state."""
    f = make_front(n_configs=6)
    private = dict(f.__pydantic_private__ or {})
    fields = f.model_dump()
    select(f, 5.0, 100.0)
    select(f, 5.0, 100.0, profile=DEFAULT_PROFILE.model_copy(update={"name": "other"}))
    assert dict(f.__pydantic_private__ or {}) == private and f.model_dump() == fields


def test_index_cache_is_bounded_and_never_shared_between_fronts() -> None:
    from paretoctl.service import policy

    f = make_front(n_configs=6, seed=11)
    first = policy_index(f)
    # a copy that kept the checksum but changed its configs gets its own index
    faster = f.model_copy(update={"configs": [c.model_copy(update={"gflops": c.gflops.model_copy(
        update={"edge": 0.0})}) for c in f.configs]})
    assert faster.checksum == f.checksum
    assert policy_index(faster) is not first
    assert policy_index(faster).totals != first.totals
    for seed in range(policy.INDEX_CACHE_SIZE + 5):
        policy_index(make_front(n_configs=2, seed=100 + seed))
    assert len(policy._INDEXES) == policy.INDEX_CACHE_SIZE
    assert policy_index(f) is not first  # evicted (least recently used), rebuilt
    assert policy_index(f) is policy_index(f)


def test_decisions_carry_the_model_identity(front: FrontArtifact) -> None:
    for d in (select(front, 10.0, 20.0), select(front, 10.0, 0.001)):
        assert d.model_identity == front.provenance.model_identity
        assert d.model_dump(mode="json")["model_identity"]["weights_sha256"] == "b" * 64


@pytest.mark.parametrize(("snr", "lat", "param"), [
    (-50.5, 10.0, "snr_db"), (100.01, 10.0, "snr_db"), (5.0, 1e6 + 1, "latency_ms"),
])
def test_query_bounds_are_the_services(front: FrontArtifact, snr: float, lat: float, param: str) -> None:
    from paretoctl.service.policy import LATENCY_MAX_MS, SNR_MAX_DB, SNR_MIN_DB

    assert (SNR_MIN_DB, SNR_MAX_DB, LATENCY_MAX_MS) == (-50.0, 100.0, 1e6)
    with pytest.raises(PolicyError) as info:
        select(front, snr, lat)
    assert info.value.param == param
    assert select(front, SNR_MIN_DB, LATENCY_MAX_MS).extrapolated  # the bounds themselves are accepted
