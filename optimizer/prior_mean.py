"""A GP prior mean that knows accuracy falls with the FLOPs a schedule saves.

Why: with a constant prior mean the accuracy GP reverts, away from its data, to about the average
accuracy it has seen, so in a 12-dimensional cube it believes that heavy merging far from every
measurement is nearly as accurate as light merging. qLogNEHVI then spends the first batches on
schedules saving 65-75% of the FLOPs that lose 5-12 points, far outside the region of interest
(bench/RESULTS.md, 2026-12-07). Every measurement says the opposite: along any direction, more
merging costs accuracy, slowly at first and then steeply.

:class:`CostCurveMean` puts that knowledge in the prior: the mean at a point is a non-decreasing
curve of its relative GFLOPs (GFLOPs / the unmerged model's, in (0, 1]), fitted to the history by
isotonic regression (:func:`isotonic_increasing`, weighted by the inverse measurement variance) and
interpolated linearly between its knots; below the cheapest knot it continues the lowest segment's
slope, floored at ``floor``. The GP models what the curve leaves: how one schedule of a given cost
differs from the typical one. The curve is a function of the relaxed cost, so the mean stays
differentiable in the unit-cube point, which the acquisition optimiser needs.
"""

from __future__ import annotations

from collections.abc import Callable

import gpytorch
import torch

__all__ = ["CostCurveMean", "isotonic_increasing"]


def isotonic_increasing(c: torch.Tensor, y: torch.Tensor,
                        weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least-squares non-decreasing fit of ``y`` against ``c`` (pool adjacent violators).

    Args:
        c: ``[n]`` inputs (relative GFLOPs).
        y: ``[n]`` observations (accuracy).
        weight: ``[n]`` positive weights (inverse variances); all 1 when None.

    Returns:
        ``knots [k]`` and ``values [k]``, both ascending, ``k <= n``: each pooled block's weighted mean
        input and its fitted value. Blocks whose mean inputs coincide are pooled too, so the knots are
        strictly increasing and the curve is a function.

    Example:
        >>> k, v = isotonic_increasing(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 2.0]))
        >>> k.tolist(), v.tolist()
        ([0.0, 1.5], [1.0, 2.5])
    """
    if c.numel() == 0:
        raise ValueError("isotonic regression needs at least one observation")
    order = torch.argsort(c, stable=True)
    w = torch.ones_like(y) if weight is None else weight
    if bool((w[order] <= 0).any()):
        raise ValueError("isotonic regression weights must be positive")
    blocks: list[list[float]] = []  # [sum w y, sum w, sum w c]
    for ci, yi, wi in zip(c[order].tolist(), y[order].tolist(), w[order].tolist(), strict=True):
        blocks.append([wi * yi, wi, wi * ci])
        while len(blocks) > 1 and (
            blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]
            or blocks[-2][2] / blocks[-2][1] >= blocks[-1][2] / blocks[-1][1]
        ):
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    knots = torch.tensor([b[2] / b[1] for b in blocks], dtype=torch.double)
    values = torch.tensor([b[0] / b[1] for b in blocks], dtype=torch.double)
    return knots, values


class CostCurveMean(gpytorch.means.Mean):  # type: ignore[misc]
    """Prior mean ``(curve(cost(x)) - shift) / scale``: the isotonic accuracy curve of a point's cost.

    Args:
        cost: maps points ``[..., n, d]`` to relative GFLOPs ``[..., n]`` (differentiably).
        knots: ``[k]`` strictly increasing relative GFLOPs; values: ``[k]`` the curve there (accuracy).
        floor: the curve's lower bound (accuracy), reached only by extrapolation below the first knot.

    ``shift`` and ``scale`` put the curve in the GP's standardised output units; set them from the
    model's ``Standardize`` outcome transform once it has seen the training targets
    (:meth:`standardise_like`). They are plain attributes, not hyperparameters: the fit never moves
    the curve.
    """

    def __init__(self, cost: Callable[[torch.Tensor], torch.Tensor], knots: torch.Tensor, values: torch.Tensor,
                 floor: float = 0.0) -> None:
        super().__init__()
        if knots.ndim != 1 or knots.shape != values.shape or knots.numel() == 0:
            raise ValueError("knots and values must be equal-length non-empty 1-d tensors")
        if knots.numel() > 1 and not bool((knots[1:] > knots[:-1]).all()):
            raise ValueError("knots must be strictly increasing")
        self.cost, self.knots, self.values, self.floor = cost, knots, values, floor
        self.shift, self.scale = 0.0, 1.0

    def standardise_like(self, means: torch.Tensor, stdvs: torch.Tensor) -> None:
        """Use a ``Standardize`` transform's statistics (one output) to express the curve in its units."""
        self.shift, self.scale = float(means.reshape(-1)[0]), float(stdvs.reshape(-1)[0])

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """The curve at points ``[..., n, d]`` in accuracy units: ``[..., n]``."""
        c = self.cost(x)
        knots, values = self.knots.to(c), self.values.to(c)
        if knots.numel() == 1:
            return values[0].expand(c.shape).clamp_min(self.floor)
        hi = torch.searchsorted(knots, c.detach().contiguous()).clamp(1, knots.numel() - 1)
        lo = hi - 1
        t = (c - knots[lo]) / (knots[hi] - knots[lo])
        return (values[lo] + t * (values[hi] - values[lo])).clamp_min(self.floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The prior mean in the GP's standardised units, ``[..., n]``."""
        return (self.curve(x) - self.shift) / self.scale
