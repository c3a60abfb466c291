"""The policy and the latency model on fronts that hold threshold (input-adaptive) configurations.

Hand-computed with the test profile (tests.fronts.DEFAULT_PROFILE): edge 20 GFLOP/s, server
2000 GFLOP/s, 1e6 symbols/s, overheads edge 1, link 2, server 0.5 ms, so a modelled latency is
3.5 + 50 * edge_gflops + 0.5 * server_gflops + uses / 1000 ms.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paretoctl.service.latency import config_latency_of, latency_costs
from paretoctl.service.policy import Decision, config_latencies, policy_index, select
from paretoctl.service.schema import FrontArtifact, Measurements, artifact_document
from tests.fronts import DEFAULT_PROFILE, assemble_front, hand_config, make_front

GRID = (0.0, 10.0, 20.0)
THRESHOLDS = [0.95, 0.9, 0.85, 1.0]


def cfg(cid: str, val: list[float], edge: float, server: float, uses: int, **kw: object) -> dict:
    return hand_config(cid, {"awgn": val}, grid=GRID, edge_gflops=edge, server_gflops=server,
                       channel_uses=uses, **kw)  # type: ignore[arg-type]


# mid (fixed):   3.5 + 5 + 0.05 + 1 = 9.55 ms
# adapt (thresholds): means as "small" (0.02, 0.02, 200: 4.71 ms), but p95s 0.1, 0.2 GFLOPs and 3000 uses:
#   edge 1 + 50 * 0.1 = 6, link 2 + 3 = 5, server 0.5 + 0.5 * 0.2 = 0.6 -> 11.6 ms
MID = 9.55
ADAPT = 11.6
ADAPT_P95 = (0.1, 0.2, 3000.0)


@pytest.fixture(scope="module")
def front() -> FrontArtifact:
    return assemble_front([
        cfg("mid", [0.60, 0.70, 0.85], 0.1, 0.1, 1000),
        cfg("adapt", [0.70, 0.80, 0.95], 0.02, 0.02, 200, thresholds=THRESHOLDS, p95=ADAPT_P95,
            proportions=[0.5, 0.5, 0.0, 0.0]),
    ], grid=GRID)


def test_latency_costs_are_the_p95s_for_thresholds_and_the_costs_otherwise(front: FrontArtifact) -> None:
    assert latency_costs(front.config("adapt")) == ADAPT_P95
    assert latency_costs(front.config("mid")) == (0.1, 0.1, 1000.0)


def test_threshold_latency_is_modelled_from_the_p95_costs(front: FrontArtifact) -> None:
    lat = config_latency_of(front.config("adapt"), DEFAULT_PROFILE)
    assert lat.edge_ms == pytest.approx(6.0) and lat.transmit_ms == pytest.approx(5.0)
    assert lat.server_ms == pytest.approx(0.6) and lat.total_ms == pytest.approx(ADAPT)
    assert (lat.edge_source, lat.transmit_source, lat.server_source) == ("modelled",) * 3
    # A digital link charges its own transmit time: the compute parts stay the p95 ones.
    assert config_latency_of(front.config("adapt"), DEFAULT_PROFILE, channel_uses=0.0).transmit_ms == \
        pytest.approx(2.0)
    assert config_latency_of(front.config("mid"), DEFAULT_PROFILE).total_ms == pytest.approx(MID)


def test_the_policy_budgets_a_threshold_config_by_its_p95(front: FrontArtifact) -> None:
    idx = policy_index(front)
    assert [c.id for c in idx.configs] == ["mid", "adapt"] and idx.totals == pytest.approx((MID, ADAPT))
    # Its mean costs would take 4.71 ms and fit 10 ms; its p95 does not, so the fixed "mid" is chosen.
    assert select(front, 10.0, 10.0).config_id == "mid"
    d = select(front, 10.0, 12.0)
    assert d.feasible and d.config_id == "adapt"
    assert d.merging == "thresholds" and d.thresholds == THRESHOLDS
    assert d.latency is not None and d.latency.total_ms == pytest.approx(ADAPT)
    # Costs are reported as the means; the schedule is the rounded mean (a description).
    assert d.gflops is not None and d.gflops.edge == pytest.approx(0.02) and d.gflops.total == pytest.approx(0.04)
    assert d.channel_uses == 200 and d.r == front.config("adapt").r == [4, 3, 0, 0]
    assert d.validation_accuracy is not None and d.validation_accuracy.mean == pytest.approx(0.80)


def test_a_fixed_decision_says_so_and_has_no_thresholds(front: FrontArtifact) -> None:
    d = select(front, 10.0, 10.0)
    assert d.merging == "proportions" and d.thresholds is None
    infeasible = select(front, 10.0, 1.0)
    assert not infeasible.feasible and infeasible.merging is None and infeasible.thresholds is None
    assert infeasible.fastest_latency_ms == pytest.approx(MID)


def test_measured_times_replace_the_p95_model(front: FrontArtifact) -> None:
    """A profile that timed the threshold config (over real images) is used as is; the link stays p95."""
    timing = {"p50_ms": 2.0, "p90_ms": 3.0, "runs": 16, "rel_ci": 0.01}
    measurements = Measurements.model_validate({
        "machine": {"cpu": "test", "torch": "0", "threads": 1}, "measured_at": datetime(2025, 1, 1, tzinfo=UTC),
        "configs": [{"config_id": "adapt", "r": front.config("adapt").r, "edge": timing,
                     "server": {**timing, "p90_ms": 0.25}, "thresholds": front.config("adapt").thresholds}]})
    # The same id and r timed as a fixed schedule (no thresholds) is another configuration: not lent.
    as_fixed = measurements.model_copy(update={"configs": tuple(
        c.model_copy(update={"thresholds": None}) for c in measurements.configs)})
    lent = select(front, 10.0, 9.0, profile=DEFAULT_PROFILE.model_copy(update={"name": "fixed",
                                                                               "measurements": as_fixed}))
    assert lent.config_id != "adapt"
    prof = DEFAULT_PROFILE.model_copy(update={"name": "timed", "measurements": measurements})
    d = select(front, 10.0, 9.0, profile=prof)  # 3 + 5 + 0.25 = 8.25 ms now fits 9 ms
    assert d.config_id == "adapt" and d.latency is not None
    assert (d.latency.edge_ms, d.latency.transmit_ms, d.latency.server_ms) == pytest.approx((3.0, 5.0, 0.25))
    assert (d.latency.edge_source, d.latency.transmit_source, d.latency.server_source) == \
        ("measured", "modelled", "measured")


def test_decision_round_trips_through_json_and_refuses_inconsistent_thresholds(front: FrontArtifact) -> None:
    d = select(front, 10.0, 12.0)
    again = Decision.model_validate_json(d.model_dump_json())
    assert again.merging == "thresholds" and again.thresholds == THRESHOLDS
    doc = d.model_dump(mode="json")
    with pytest.raises(ValueError, match="thresholds must be given exactly when merging is 'thresholds'"):
        Decision.model_validate({**doc, "thresholds": None})
    with pytest.raises(ValueError, match="merging 'proportions', thresholds set"):
        Decision.model_validate({**doc, "merging": "proportions"})


def test_make_front_threshold_configs_are_consistent_and_served() -> None:
    front = make_front(depth=6, n_configs=9, n_thresholds=4, seed=2)
    kinds = [c.merging for c in front.configs]
    assert kinds.count("thresholds") == 4 and front.config("unmerged").merging == "proportions"
    for c in front.configs:
        if c.cost_distribution is None:
            continue
        dist = c.cost_distribution
        assert c.gflops.edge == dist.gflops_edge.mean and c.channel_uses == round(dist.channel_uses.mean)
        assert [round(t) for t in dist.tokens_per_layer_mean] == c.tokens_per_layer
        assert c.latency.total_ms == pytest.approx(config_latency_of(c, front.device_profile).total_ms)
        assert c.latency.total_ms > config_latency_of(c.model_copy(update={"cost_distribution": None,
                                                                           "merging": "proportions",
                                                                           "thresholds": None}),
                                                      front.device_profile).total_ms
    totals = config_latencies(front, 10.0)
    for c in front.configs:
        assert totals[c.id] == pytest.approx(c.latency.total_ms)
    chosen = {select(front, snr, lat).config_id for snr in (-5.0, 5.0, 20.0) for lat in sorted(totals.values())}
    assert any(front.config(i).merging == "thresholds" for i in chosen if i is not None)


def digital_front(front: FrontArtifact) -> FrontArtifact:
    """``front`` with its AWGN channel made a digital link (8 bits per real), every config given its bits."""
    doc = artifact_document(front)
    doc["provenance"]["channels"][0]["params"] = {"link": "digital", "bits": 8, "gap_db": 0.0}
    for c in doc["configs"]:
        c["bits"] = {"awgn": 1000 * c["tokens_sent"]}
    return FrontArtifact.model_validate(artifact_document(FrontArtifact.model_validate(doc)))


def test_digital_link_compute_uses_the_p95_too(front: FrontArtifact) -> None:
    dig = digital_front(front)
    d = select(dig, 10.0, 1e6)
    assert d.config_id == "adapt" and d.merging == "thresholds" and d.thresholds == THRESHOLDS
    assert d.latency is not None and d.bits == 1000 * front.config("adapt").tokens_sent
    assert (d.latency.edge_ms, d.latency.server_ms) == pytest.approx((6.0, 0.6))
