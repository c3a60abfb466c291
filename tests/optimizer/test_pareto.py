"""Pareto masks and hypervolumes against hand-computed values."""

from __future__ import annotations

import itertools

import pytest
import torch

from paretoctl.optimizer.pareto import hypervolume, pareto_mask


def naive_non_dominated(y: list[list[float]]) -> list[bool]:
    """O(n^2) definition, independent of BoTorch: no other row is >= everywhere and > somewhere."""
    out = []
    for i, a in enumerate(y):
        dominated = any(
            all(bk >= ak for ak, bk in zip(a, b, strict=True)) and any(bk > ak for ak, bk in zip(a, b, strict=True))
            for j, b in enumerate(y)
            if j != i
        )
        out.append(not dominated)
    return out


def test_pareto_mask_matches_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(40, 3, generator=gen)
    assert pareto_mask(y).tolist() == naive_non_dominated(y.tolist())


def test_hypervolume_by_hand() -> None:
    # Two boxes [0,2]x[0,1] and [0,1]x[0,2]: union area 2 + 2 - 1 = 3.
    assert hypervolume(torch.tensor([[2.0, 1.0], [1.0, 2.0]]), [0.0, 0.0]) == pytest.approx(3.0)
    # A dominated point adds nothing, a point below the reference adds nothing.
    y = torch.tensor([[2.0, 1.0], [1.0, 2.0], [0.5, 0.5], [-1.0, 5.0]])
    assert hypervolume(y, [0.0, 0.0]) == pytest.approx(3.0)
    # 3-D unit cubes offset along the diagonal: inclusion-exclusion by hand.
    pts = [[1.0, 2.0, 2.0], [2.0, 1.0, 2.0], [2.0, 2.0, 1.0]]
    # each box volume 4; pairwise intersections 2; triple intersection 1 -> 12 - 6 + 1 = 7
    assert hypervolume(torch.tensor(pts), [0.0, 0.0, 0.0]) == pytest.approx(7.0)
    assert hypervolume(torch.zeros(0, 3), [0.0, 0.0, 0.0]) == 0.0


def test_hypervolume_monotone_in_points() -> None:
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(12, 3, generator=gen)
    hvs = [hypervolume(y[:k], [0.0, 0.0, 0.0]) for k in range(1, 13)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(hvs))
