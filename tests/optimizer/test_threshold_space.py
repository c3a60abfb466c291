"""The threshold search space and its proposers: mapping, keys, marks, the cost GPs and the design."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

import paretoctl.models.vit_fmnist  # noqa: F401
from paretoctl.optimizer.proposers import (
    COST_GP_NOISE,
    BotorchProposer,
    Nsga2Proposer,
    SobolProposer,
    UniformProposer,
    design_ceiling,
    make_proposer,
    threshold_marks,
)
from paretoctl.optimizer.space import Candidate, SearchSpace, ThresholdSpace, ViTShape, record_candidate

SHAPE = ViTShape.of(timm.create_model("vit_fmnist_patch4_28"))


def _space(lo: float = 0.8, hi: float = 1.0) -> ThresholdSpace:
    return ThresholdSpace(SHAPE, 3, lo, hi)


def _history(space: ThresholdSpace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points with costs that fall, and accuracy that falls faster, with depth into the range."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, space.dim, generator=gen, dtype=torch.double)
    depth = x.mean(-1, keepdim=True)
    acc = 0.9 - 0.2 * depth**3 + 0.005 * torch.rand(n, 1, generator=gen, dtype=torch.double)
    return x, torch.cat([acc, -(1 - 0.6 * depth), -(1 - 0.5 * depth ** 0.8)], dim=-1)


def test_cube_maps_to_thresholds_and_back() -> None:
    space = _space(0.8, 1.0)
    assert space.to_thresholds([0.0] * 12) == [1.0] * 12  # the origin merges nothing: the unmerged model
    assert space.to_thresholds([1.0] * 12) == [0.8] * 12
    assert space.to_thresholds([0.5, 2.0, -1.0] + [0.123456] * 9)[:4] == [0.9, 0.8, 1.0, 0.9753]  # clipped, 1e-4
    x = [k / 11 for k in range(12)]
    back = space.from_thresholds(space.to_thresholds(x))
    assert back == pytest.approx(x, abs=1e-4 / 0.2)
    assert space.key(x) == space.key([v + 1e-7 for v in x])  # one configuration at the 1e-4 grid
    assert space.candidate(x) == Candidate(thresholds=tuple(space.to_thresholds(x)))
    with pytest.raises(ValueError, match="-1 <= lo < hi <= 1"):
        ThresholdSpace(SHAPE, 3, 0.9, 0.9)


def test_records_are_placed_in_their_own_space() -> None:
    thresholds, proportions = _space(), SearchSpace(SHAPE, 3)
    unmerged = {"method": "reference", "r": [0] * 12, "x": [0.0] * 12}
    tome = {"method": "uniform-marks", "r": [2] * 12, "x": proportions.from_r([2] * 12)}
    adaptive = {"method": "botorch", "r": [3] * 12, "x": [0.5] * 12, "merging": "thresholds",
                "thresholds": [0.9] * 12}
    assert thresholds.point(unmerged) == [0.0] * 12  # hi = 1: thresholds of 1 are the unmerged model
    assert _space(0.8, 0.99).point(unmerged) is None  # hi < 1: the origin merges, it is not the unmerged model
    assert thresholds.point(tome) is None and thresholds.point(adaptive) == pytest.approx([0.5] * 12)
    assert proportions.point(tome) == tome["x"] and proportions.point(adaptive) is None
    assert record_candidate(adaptive).key == ("thresholds", (0.9,) * 12)
    assert record_candidate(tome).key == ("proportions", (2,) * 12)


def test_threshold_marks_are_clipped_and_distinct() -> None:
    marks = threshold_marks(_space())
    assert [_space().to_thresholds(p)[0] for p in marks] == [0.99, 0.97, 0.95, 0.92, 0.9]
    narrow = _space(0.93, 0.96)
    assert [narrow.to_thresholds(p)[0] for p in threshold_marks(narrow)] == [0.96, 0.95, 0.93]
    assert all(len(set(narrow.to_thresholds(p))) == 1 for p in threshold_marks(narrow))


def test_baselines_work_in_the_threshold_cube() -> None:
    space = _space()
    x, y = _history(space, 8)
    sobol = SobolProposer(space, seed=1, q=4).propose(0, x[:0], y[:0], [0, 0, 0], 4)
    assert len(sobol) == 4 and all(0 <= v <= 1 for p in sobol for v in p)
    nsga = Nsga2Proposer(space, seed=0, pop_size=8).propose(1, x, y, [0, 0, 0], 8)
    assert nsga == Nsga2Proposer(space, seed=0, pop_size=8).propose(1, x, y, [0, 0, 0], 8)
    uniform = UniformProposer(space, q=2, budget=4)
    first = uniform.propose(0, x[:0], y[:0], [0, 0, 0], 2)
    second = uniform.propose(1, torch.tensor(first), y[:2], [0, 0, 0], 2)
    levels = [space.to_thresholds(p)[0] for p in first + second]
    assert levels == [0.95, 0.9, 0.85, 0.8]  # constant thresholds, evenly over the range
    assert isinstance(make_proposer("uniform", space, 0, 2, 4, 4), UniformProposer)


def test_design_ceiling_stops_at_the_first_known_failure() -> None:
    x = torch.tensor([[0.0] * 4, [0.2] * 4, [0.4] * 4, [0.6] * 4, [0.9] * 4], dtype=torch.double)
    y = torch.tensor([[0.90, -1, -1], [0.89, -0.8, -0.8], [0.88, -0.6, -0.6], [0.80, -0.4, -0.4],
                      [0.70, -0.2, -0.2]], dtype=torch.double)
    assert design_ceiling(x, y, [0.87, -1.05, -1.05]) == pytest.approx(0.6)
    assert design_ceiling(x, y, [0.5, -1.05, -1.05]) == 1.0  # nothing failed yet: the whole cube


def test_botorch_models_the_costs_with_gps_and_proposes_fresh_thresholds(caplog: pytest.LogCaptureFixture) -> None:
    space = _space()
    x, y = _history(space, 10)
    ref = [0.85, -1.05, -1.05]
    y_var = torch.full((len(x),), 4e-5, dtype=torch.double)
    make = lambda: BotorchProposer(space, seed=2, q=2, initial=4, num_restarts=2, raw_samples=16,  # noqa: E731
                                   mc_samples=8, maxiter=5)
    proposer = make()
    torch.manual_seed(0)
    costs = proposer.fit_cost_models(1, x, y)
    assert [type(gp.likelihood).__name__ for gp in costs] == ["FixedNoiseGaussianLikelihood"] * 2
    for gp, column in zip(costs, (1, 2), strict=True):  # the fixed noise, through Standardize
        expected = COST_GP_NOISE / y[:, column].std() ** 2
        assert gp.likelihood.noise.flatten() == pytest.approx(expected.expand(len(x)), rel=1e-9)
        gp.eval()
        with torch.no_grad():  # nearly noise-free: the GP interpolates the measured means
            assert gp.posterior(x).mean.flatten() == pytest.approx(y[:, column], abs=5e-3)
    acq = proposer.acquisition(1, x, y, ref, y_var)
    assert type(acq.model).__name__ == "ModelListGP" and acq.model.num_outputs == 3
    with caplog.at_level(logging.WARNING, logger="paretoctl.optimizer.proposers"):
        a = proposer.propose(1, x, y, ref, 2, y_var=y_var)
    assert a == make().propose(1, x, y, ref, 2, y_var=y_var)  # deterministic given the history
    keys = [space.key(p) for p in a]
    assert len(set(keys)) == 2 and not set(keys) & {space.key(p) for p in x.tolist()}
    # A candidate that repeats a measured configuration is replaced by a fresh one.
    out = proposer.dedupe(1, acq, torch.stack([x[0], x[0]]), {space.key(p) for p in x.tolist()})
    fresh = [space.key(p) for p in out.tolist()]
    assert len(set(fresh)) == 2 and not set(fresh) & {space.key(p) for p in x.tolist()}


def test_threshold_initial_design_is_fresh_and_within_the_ceiling() -> None:
    space = _space()
    x = torch.tensor([[0.0] * 12] + [[v] * 12 for v in (0.05, 0.15, 0.25, 0.4, 0.5)], dtype=torch.double)
    y = torch.tensor([[0.9, -1, -1], [0.9, -0.9, -0.9], [0.9, -0.8, -0.8], [0.89, -0.7, -0.7],
                      [0.86, -0.6, -0.6], [0.8, -0.5, -0.5]], dtype=torch.double)
    ref = [0.87, -1.05, -1.05]  # 0.4 fails: the design stays at depths up to 0.4
    proposer = BotorchProposer(space, 0, 4, 6)
    design = proposer.initial_design(6, x, y, ref)
    assert design == BotorchProposer(space, 0, 4, 6).initial_design(6, x, y, ref)
    assert len(design) == 6
    keys = [space.key(p) for p in design]
    assert len(set(keys)) == 6 and not set(keys) & {space.key(p) for p in x.tolist()}
    depths = [sum(p) / len(p) for p in design]
    assert max(depths) <= 0.4 + 1e-9 and min(depths) > 0
    # A third are constant thresholds at depths 0.2 and 0.4; 0.4 was measured, so a scaled direction replaces it.
    assert [p[0] for p in design if len(set(p)) == 1] == pytest.approx([0.2])
