"""BoTorch's proposer: known noise, logged warnings, no repeated schedules, a design inside the region."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import timm
import torch

import paretoctl.models.vit_fmnist  # noqa: F401
from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.optimizer.proposers import BotorchProposer, UniformProposer, design_floor
from paretoctl.optimizer.space import SearchSpace, ViTShape


def _space(max_proportion: float = 1.0) -> SearchSpace:
    return SearchSpace(ViTShape.of(timm.create_model("vit_fmnist_patch4_28")), split=3, max_proportion=max_proportion)


def _history(space: SearchSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """The unmerged model and 8 uniform marks, with an accuracy that falls as the cube of the saving."""
    marks = UniformProposer(space, 4, 8).ordered(8)
    x = torch.tensor([space.from_r([0] * space.dim)] + [space.from_r(r) for r in marks], dtype=torch.double)
    rel = space.relaxed_costs(x) / space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))
    acc = 0.9 - 0.3 * (1 - rel[:, :1]) ** 3
    return x, torch.cat([acc, -rel], dim=-1)


def test_gp_uses_the_known_noise() -> None:
    space = _space()
    x, y = _history(space)
    y_var = torch.linspace(1e-5, 9e-5, len(x), dtype=torch.double)
    torch.manual_seed(0)
    gp = BotorchProposer(space, 0, 4, 8).fit_model(1, x, y, y_var)
    # Standardize divides the outcomes by their (unbiased) std, so the noise by its square.
    expected = y_var / y[:, 0].std() ** 2
    assert type(gp.likelihood).__name__ == "FixedNoiseGaussianLikelihood"
    assert gp.likelihood.noise.flatten() == pytest.approx(expected, rel=1e-9)


def test_fit_warnings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    space = _space()
    x, y = _history(space)
    y[:, 0] = 0.5  # a constant outcome: BoTorch warns that it cannot standardise it
    proposer = BotorchProposer(space, 0, 4, 8)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="paretoctl.optimizer.proposers"):
        proposer.fit_model(1, x, y, torch.full((len(x),), 4e-5, dtype=torch.double))
    assert proposer.warnings and all(m.startswith("botorch batch 1: GP fit:") for m in proposer.warnings)
    assert any("GP fit" in rec.getMessage() for rec in caplog.records)


def test_optimiser_runs_once_per_candidate_and_its_warnings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optimiser run here ends with an OptimizationWarning (as L-BFGS-B's early line-search end does
    in a real build): BoTorch would retry from fresh starts; the proposer keeps the first try and logs
    the optimiser's warnings instead."""
    import warnings

    import botorch.generation.gen as gen
    from botorch.exceptions.warnings import OptimizationWarning

    calls = []
    real = gen.gen_candidates_scipy

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        out = real(*args, **kwargs)
        warnings.warn("line search ended early (test)", OptimizationWarning, stacklevel=1)
        return out

    monkeypatch.setattr(gen, "gen_candidates_scipy", counted)
    space = _space()
    x, y = _history(space)
    proposer = BotorchProposer(space, 0, 2, 8, num_restarts=2, raw_samples=16, mc_samples=8, maxiter=5)
    points = proposer.propose(1, x, y, [0.8, -1.05, -1.05], 2, y_var=torch.full((len(x),), 4e-5, dtype=torch.double))
    assert len(points) == 2 and len(calls) == 2  # sequential q=2: one optimiser run per candidate, no retry
    assert any("acquisition: OptimizationWarning: line search ended early (test)" in m for m in proposer.warnings)


def test_measured_and_repeated_schedules_are_replaced() -> None:
    space = _space()
    x, y = _history(space)
    proposer = BotorchProposer(space, 0, 4, 8, mc_samples=8)
    def acq_fn() -> object:
        torch.manual_seed(0)
        return proposer.acquisition(1, x, y, [0.87, -1.05, -1.05], torch.full((len(x),), 4e-5, dtype=torch.double))

    acq = acq_fn()
    fresh = torch.full((space.dim,), 0.05, dtype=torch.double)
    cand = torch.stack([x[3], fresh, fresh, x[0]])  # a mark, a new point twice, the unmerged model
    measured = {tuple(space.to_r(p)) for p in x.tolist()}
    out = proposer.dedupe(1, acq, cand, set(measured))
    schedules = [tuple(space.to_r(p)) for p in out.tolist()]
    assert len(set(schedules)) == 4 and not set(schedules) & measured
    assert schedules[1] == tuple(space.to_r(fresh.tolist()))  # a fresh candidate is kept as it is
    again = proposer.dedupe(1, acq_fn(), cand, set(measured))  # the acquisition keeps pending points: a new one
    assert torch.equal(out, again)  # replacements are a deterministic function of the history


@pytest.mark.parametrize("max_proportion", [1.0, 0.5])
def test_initial_design_lies_in_the_region_and_is_fresh(max_proportion: float) -> None:
    # At 0.5 (the default config's cap) some of ToMe's schedules exceed the cap and are measured clipped
    # (constant r = 4 as [4] * 9 + [3, 3, 2]); the design must see those as measured too.
    space = _space(max_proportion)
    x, y = _history(space)
    ref_point = [float(y[0, 0]) - 0.03, -1.05, -1.05]
    floor = design_floor(y, ref_point)
    proposer = BotorchProposer(space, 0, 4, 12)
    design = proposer.initial_design(12, x, y, ref_point)
    assert design == BotorchProposer(space, 0, 4, 12).initial_design(12, x, y, ref_point)
    schedules = [tuple(space.to_r(p)) for p in design]
    measured = {tuple(space.to_r(p)) for p in x.tolist()}
    assert len(set(schedules)) == 12 and not set(schedules) & measured
    unmerged = float(space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))[0, 0])
    rel = [float(space.relaxed_costs(torch.tensor([space.from_r(list(r))], dtype=torch.double))[0, 0]) / unmerged
           for r in schedules]
    # Rounding r moves a point a little off its target level; none lands far below the region's floor.
    assert all(floor - 0.05 <= g < 1.0 for g in rel), (floor, rel)
    assert sum(g >= (1 + floor) / 2 for g in rel) >= 4  # the light half of the range is not left empty


def test_smoke_build_never_repeats_a_schedule(smoke_build: Path) -> None:
    arch = list(JsonlArchive(smoke_build / "archive.jsonl"))
    before = {tuple(r["r"]) for r in arch if r["method"] in ("reference", "uniform-marks")}
    searched = [tuple(r["r"]) for r in arch if r["method"] == "botorch"]
    assert len(set(searched)) == len(searched) and not set(searched) & before
    seconds = json.loads((smoke_build / "convergence.json").read_text())["seconds"]
    assert seconds["botorch/propose"] > 0 and seconds["botorch/evaluate"] > 0
    # every stage of the build is accounted for, not just the search
    assert {"setup/load", "reference/evaluate", "test split/evaluate"} <= set(seconds)
