"""The accuracy GP's cost-curve prior mean: isotonic fit, the curve, and what it changes in the GP."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch

import paretoctl.models.vit_fmnist  # noqa: F401
from paretoctl.models.schedule import constant_r
from paretoctl.optimizer.prior_mean import CostCurveMean, isotonic_increasing
from paretoctl.optimizer.proposers import BotorchProposer
from paretoctl.optimizer.space import SearchSpace, ViTShape


def _min_max_isotonic(y: list[float], w: list[float]) -> list[float]:
    """The isotonic fit by its closed form, independent of pooling: the value at i is
    ``max_{j <= i} min_{k >= i}`` of the weighted mean of ``y[j..k]`` (Robertson et al., 1988)."""
    def mean(j: int, k: int) -> float:
        return sum(y[t] * w[t] for t in range(j, k + 1)) / sum(w[j : k + 1])
    n = len(y)
    return [max(min(mean(j, k) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_isotonic_fit_matches_the_min_max_formula(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randperm(9, generator=gen).double() / 10  # distinct inputs, shuffled
    y = torch.rand(9, generator=gen, dtype=torch.double)
    w = 0.5 + torch.rand(9, generator=gen, dtype=torch.double)
    knots, values = isotonic_increasing(c, y, w)
    order = torch.argsort(c)
    expected = _min_max_isotonic(y[order].tolist(), w[order].tolist())
    # Each observation's fitted value is its block's value; blocks are runs of equal fitted values.
    fitted = []
    for value, group in itertools.groupby(expected, key=lambda v: round(v, 12)):
        fitted.extend([value] * len(list(group)))
    assert sorted(set(round(v, 12) for v in values.tolist())) == sorted(set(round(v, 12) for v in fitted))
    assert bool((knots[1:] > knots[:-1]).all()) and bool((values[1:] > values[:-1]).all())
    # Each knot is the weighted mean input of the observations fitted to its value.
    for knot, value in zip(knots.tolist(), values.tolist(), strict=True):
        members = [i for i, v in enumerate(expected) if abs(v - value) < 1e-9]
        cs, ws = c[order][members], w[order][members]
        assert knot == pytest.approx(float((cs * ws).sum() / ws.sum()), abs=1e-12)


def test_isotonic_fit_pools_equal_inputs_and_refuses_bad_weights() -> None:
    knots, values = isotonic_increasing(torch.tensor([0.5, 0.5, 1.0]), torch.tensor([0.2, 0.4, 0.9]))
    assert knots.tolist() == [0.5, 1.0] and values.tolist() == pytest.approx([0.3, 0.9])
    with pytest.raises(ValueError, match="positive"):
        isotonic_increasing(torch.tensor([0.1, 0.2]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="at least one"):
        isotonic_increasing(torch.zeros(0), torch.zeros(0))


def test_curve_interpolates_extrapolates_and_floors() -> None:
    mean = CostCurveMean(lambda x: x[..., 0], torch.tensor([0.4, 0.6, 1.0], dtype=torch.double),
                         torch.tensor([0.5, 0.8, 0.9], dtype=torch.double), floor=0.1)
    x = torch.tensor([[0.4], [0.6], [1.0], [0.5], [0.8], [0.3], [0.0]], dtype=torch.double)
    # knots; midpoints; below the first knot the first segment's slope (1.5 per unit) continues, then the floor
    assert mean.curve(x).tolist() == pytest.approx([0.5, 0.8, 0.9, 0.65, 0.85, 0.35, 0.1])
    mean.standardise_like(torch.tensor([[0.7]]), torch.tensor([[0.2]]))
    assert mean(x[:3]).tolist() == pytest.approx([-1.0, 0.5, 1.0])
    point = torch.tensor([[0.5]], dtype=torch.double, requires_grad=True)
    mean.curve(point).sum().backward()
    assert point.grad is not None and point.grad.item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        CostCurveMean(lambda x: x[..., 0], torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.2]))


def _space() -> SearchSpace:
    return SearchSpace(ViTShape.of(timm.create_model("vit_fmnist_patch4_28")), split=3)


def test_gp_expects_heavy_merging_to_cost_accuracy_far_from_its_data() -> None:
    """History: the unmerged model and ToMe's light uniform schedules, accuracy falling with the FLOPs
    saved. Far from them (every block merging its maximum), the constant-mean GP reverts towards the
    average accuracy it saw; the cost-curve GP follows the measured fall."""
    space = _space()
    unmerged = space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))[0, 0]
    light = [constant_r(k, space.dim, 49) for k in (1, 2, 3)]  # ToMe's constant r=1..3 (49 patches)
    x = torch.tensor([space.from_r([0] * space.dim)] + [space.from_r(r) for r in light], dtype=torch.double)
    rel = space.relaxed_costs(x)[:, 0] / unmerged
    acc = 0.9 - 0.5 * (1 - rel)  # 0.9 unmerged, 0.5 points lost per % of FLOPs saved
    y = torch.stack([acc, -rel, -rel], dim=-1)
    y_var = torch.full((len(x),), 1e-5, dtype=torch.double)
    far = torch.ones(1, space.dim, dtype=torch.double)
    far_rel = float(space.relaxed_costs(far)[0, 0] / unmerged)
    assert far_rel < float(rel.min()) - 0.2  # well beyond the data
    predicted = {}
    for prior in ("constant", "cost_curve"):
        torch.manual_seed(0)
        gp = BotorchProposer(space, 0, 4, 8, prior_mean=prior).fit_model(1, x, y, y_var)
        predicted[prior] = float(gp.posterior(far).mean.detach())
    lowest = float(acc.min())
    assert predicted["constant"] > lowest + 0.05  # reverts upwards, towards the mean of what it saw
    # the curve extrapolates the linear fall: the GP's residual is ~0 far away
    assert predicted["cost_curve"] == pytest.approx(0.9 - 0.5 * (1 - far_rel), abs=0.01)
    # at the data both fit the measurements
    torch.manual_seed(0)
    gp = BotorchProposer(space, 0, 4, 8).fit_model(1, x, y, y_var)
    assert gp.posterior(x).mean.flatten().tolist() == pytest.approx(acc.tolist(), abs=0.01)
