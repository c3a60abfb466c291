"""The Optuna baseline of ``bench/bo_vs_baselines.py``: stateless, seeded, and driven by what it is told."""

from __future__ import annotations

import warnings

import pytest
import torch

from bench.optuna_baseline import OptunaProposer

pytestmark = pytest.mark.filterwarnings("ignore")


def _history(n: int, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points and three maximised objectives with a known optimum near x = 0.3."""
    x = torch.rand(n, dim, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    y = torch.stack([-(x - 0.3).abs().sum(1), -x.mean(1), -x[:, 0]], dim=1)
    return x, y


def test_start_up_points_are_seeded_by_history_length_and_lie_in_the_cube() -> None:
    x, y = _history(5)
    first = OptunaProposer(4, seed=0).propose(0, x, y, [0, -1, -1], 2)
    again = OptunaProposer(4, seed=0).propose(0, x, y, [0, -1, -1], 2)
    other = OptunaProposer(4, seed=1).propose(0, x, y, [0, -1, -1], 2)
    assert first == again  # a resumed run asks exactly what an uninterrupted one would
    assert first != other
    assert len(first) == 2 and all(len(p) == 4 and all(0.0 <= v <= 1.0 for v in p) for p in first)


def test_after_start_up_its_gp_proposal_depends_on_the_objectives_it_was_told() -> None:
    x, y = _history(12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        told = OptunaProposer(4, seed=0).propose(0, x, y, [0, -1, -1], 1)
        same = OptunaProposer(4, seed=0).propose(0, x, y, [0, -1, -1], 1)
        flipped = OptunaProposer(4, seed=0).propose(0, x, -y, [0, -1, -1], 1)
    assert told == same
    assert told != flipped  # the random start-up sampler would ignore the objectives
