"""Proposers: determinism (same seed + same history -> same candidates), and the baselines' shapes."""

from __future__ import annotations

import pytest
import timm
import torch

import paretoctl.models.vit_fmnist  # noqa: F401
from paretoctl.channel_sim.packing import channel_uses
from paretoctl.models.flops import analytic_cost, count_flops
from paretoctl.models.patch import apply_merging, set_schedule
from paretoctl.optimizer.proposers import BotorchProposer, Nsga2Proposer, SobolProposer, UniformProposer, batches_for
from paretoctl.optimizer.space import SearchSpace, ViTShape


def _space() -> SearchSpace:
    return SearchSpace(ViTShape.of(timm.create_model("vit_fmnist_patch4_28")), split=3)


def _history(space: SearchSpace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, space.dim, generator=gen, dtype=torch.double)
    costs = space.relaxed_costs(x) / space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))
    acc = 0.9 - 0.3 * x.mean(-1, keepdim=True) ** 2 + 0.01 * torch.rand(n, 1, generator=gen, dtype=torch.double)
    return x, torch.cat([acc, -costs], dim=-1)


def test_botorch_same_seed_same_history_same_candidates() -> None:
    space = _space()
    x, y = _history(space, 8)
    ref = [0.6, -1.05, -1.05]
    make = lambda: BotorchProposer(space, seed=3, q=2, initial=8, num_restarts=2, raw_samples=16,  # noqa: E731
                                   mc_samples=8, maxiter=5)
    a = make().propose(1, x, y, ref, 2)
    b = make().propose(1, x, y, ref, 2)
    assert a == b and len(a) == 2
    assert all(0.0 <= v <= 1.0 for row in a for v in row)


def test_sobol_and_nsga2_are_deterministic_and_fresh() -> None:
    space = _space()
    s = SobolProposer(space, seed=1, q=4)
    first = s.propose(0, torch.zeros(0, 12), torch.zeros(0, 3), [0, 0, 0], 4)
    second = s.propose(1, torch.tensor(first), torch.zeros(4, 3), [0, 0, 0], 4)
    assert first == SobolProposer(space, seed=1, q=4).propose(0, torch.zeros(0, 12), torch.zeros(0, 3), [0, 0, 0], 4)
    assert not set(map(tuple, first)) & set(map(tuple, second))
    x, y = _history(space, 8)
    n1 = Nsga2Proposer(space, seed=0, pop_size=8).propose(1, x, y, [0, 0, 0], 8)
    n2 = Nsga2Proposer(space, seed=0, pop_size=8).propose(1, x, y, [0, 0, 0], 8)
    assert n1 == n2 and len(n1) == 8


def test_uniform_covers_tome_schedules() -> None:
    space = _space()
    u = UniformProposer(space, q=4, budget=10)
    order = u.ordered(10)
    assert order[0] == [0] * 12  # no merging first
    assert len({tuple(r) for r in order}) == 10
    pts = u.propose(0, torch.zeros(0, 12), torch.zeros(0, 3), [0, 0, 0], 4)
    assert [space.to_r(p) for p in pts] == order[:4]  # the unit-cube points map back exactly


def test_batches_use_the_budget_exactly() -> None:
    space = _space()
    assert batches_for(BotorchProposer(space, 0, q=4, initial=12), 40) == [12] + [4] * 7
    assert batches_for(BotorchProposer(space, 0, q=4, initial=12), 14) == [12, 2]


def test_relaxed_costs_match_analytic_and_counted_at_integer_points() -> None:
    """The BO's differentiable costs use paretoctl.models.flops's one cost model: at real schedules they
    equal analytic_cost and FlopCounterMode exactly (the old separate formula was 0.5-0.6% off)."""
    model = timm.create_model("vit_fmnist_patch4_28").eval()
    space = SearchSpace(ViTShape.of(model), split=3)
    apply_merging(model)
    images = torch.randn(1, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    for x in [torch.zeros(12), torch.ones(12), *torch.rand(5, 12, generator=gen)]:
        r = space.to_r(x.tolist())
        exact = analytic_cost(model, r, 3)
        set_schedule(model, r)
        assert exact.total_gflops == pytest.approx(count_flops(model, images) / 1e9, rel=1e-12)
        # The relaxation at the rounded point (proportions that give exactly r) must match.
        relaxed = space.relaxed_costs(torch.tensor(space.from_r(r), dtype=torch.double))
        assert float(relaxed[0]) == pytest.approx(exact.total_gflops, rel=1e-12)
        sent = exact.tokens_sent
        assert float(relaxed[1]) == pytest.approx((sent * 128 + sent + 1) / 2, rel=1e-12)
        assert abs(float(relaxed[1]) - channel_uses(sent, 128)) <= 1.0


def test_botorch_proposal_leaves_the_global_rng_untouched() -> None:
    space = _space()
    x, y = _history(space, 8)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    BotorchProposer(space, seed=3, q=2, initial=8, num_restarts=2, raw_samples=16, mc_samples=8,
                    maxiter=5).propose(1, x, y, [0.6, -1.05, -1.05], 2)
    assert torch.equal(torch.get_rng_state(), before)
