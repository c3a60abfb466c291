"""The search space: the unit cube [0, 1]^L <-> per-layer merge schedules, and their known costs.

A point x of the unit cube scales to proportions p = x * max_proportion, and
``paretoctl.models.schedule.resolve_schedule`` turns those into integer r_l. GFLOPs and channel uses are
deterministic functions of the schedule, so the optimiser does not learn them with a GP: it uses
``relaxed_costs``, paretoctl's one cost model (``paretoctl.models.flops``) evaluated on *continuous*
token counts, which is differentiable in x (the rounding of r_l would give zero gradients to the
acquisition optimiser). At the integer points it equals ``paretoctl.models.flops.analytic_cost``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paretoctl.models.flops import ViTShape, relaxed_cost
from paretoctl.models.schedule import proportions_from_r, resolve_schedule

__all__ = ["SearchSpace", "ViTShape"]  # ViTShape re-exported: ``ViTShape.of(model)`` reads a timm ViT


class SearchSpace:
    """Maps unit-cube points to schedules and gives their relaxed, differentiable costs.

    Args:
        shape: the model's shape, ``ViTShape.of(model)`` (``paretoctl.models.flops.ViTShape``).
        split: edge/server split index.
        max_proportion: the largest per-layer proportion searched (1 = as much as bipartite matching allows).
    """

    def __init__(self, shape: ViTShape, split: int, max_proportion: float = 1.0) -> None:
        self.shape, self.split, self.max_proportion = shape, split, max_proportion

    @property
    def dim(self) -> int:
        return self.shape.depth

    def to_r(self, x: Sequence[float]) -> list[int]:
        """Integer tokens merged per layer for the unit-cube point ``x``."""
        props = [min(1.0, max(0.0, float(v))) * self.max_proportion for v in x]
        return resolve_schedule(props, self.shape.num_patches, self.shape.depth)

    def from_r(self, r: Sequence[int]) -> list[float]:
        """A unit-cube point that maps back to ``r`` (clipped to the cube when r exceeds max_proportion)."""
        props = proportions_from_r(list(r), self.shape.num_patches)
        return [min(1.0, p / self.max_proportion) for p in props]

    def relaxed_r(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous tokens merged per layer, ``[..., depth]``: ``r_l = x_l p_max floor(u_l / 2)``.

        The floor keeps ``r_l`` exactly equal to :meth:`to_r`'s integers at the points :meth:`from_r`
        returns; it is piecewise constant in earlier layers' r, so gradients flow through ``x_l``.
        """
        u = torch.full(x.shape[:-1], float(self.shape.num_patches), dtype=x.dtype, device=x.device)
        rs = []
        for layer in range(self.shape.depth):
            r = x[..., layer].clamp(0, 1) * self.max_proportion * torch.floor(u / 2).clamp(min=0)
            r = torch.minimum(r, (u / 2).clamp(min=0))
            rs.append(r)
            u = u - r
        return torch.stack(rs, dim=-1)

    def relaxed_costs(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous (GFLOPs total, channel uses) for points ``x`` of shape ``[..., depth]``.

        GFLOPs come from ``paretoctl.models.flops.relaxed_cost``; channel uses are
        ``(N D + N + 1) / 2`` for the ``N`` tokens sent (``paretoctl.channel_sim.packing.channel_uses``
        without its rounding up, so within one symbol of it).

        Returns:
            ``[..., 2]``.
        """
        cost = relaxed_cost(self.shape, self.relaxed_r(x), self.split)
        sent = cost.tokens_sent
        uses = (sent * self.shape.embed_dim + sent + 1) / 2
        return torch.stack([cost.total_gflops, uses], dim=-1)
