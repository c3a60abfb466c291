"""The search space: the unit cube [0, 1]^L <-> per-layer merge schedules, and their known costs.

A point x of the unit cube scales to proportions p = x * max_proportion, and
``paretoctl.models.schedule.resolve_schedule`` turns those into integer r_l. GFLOPs and channel uses are
deterministic functions of the schedule, so the optimiser does not learn them with a GP: it uses
``relaxed_costs``, the same cost formulas evaluated on *continuous* token counts, which is
differentiable in x (the rounding of r_l would give zero gradients to the acquisition optimiser).
At the integer points the relaxation agrees with ``paretoctl.models.flops.analytic_cost`` (tests check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paretoctl.models.flops import vit_shape
from paretoctl.models.schedule import proportions_from_r, resolve_schedule


@dataclass(frozen=True)
class ViTShape:
    """The few numbers of a ViT that its cost depends on."""

    depth: int
    dim: int
    mlp_hidden: int
    num_patches: int
    num_prefix: int
    patch_flops: float
    head_flops: float

    @classmethod
    def of(cls, model: Any) -> ViTShape:
        """The search's view of ``paretoctl.models.flops.vit_shape`` (one reader of a timm ViT's sizes)."""
        full = vit_shape(model)
        return cls(
            depth=full.depth,
            dim=full.embed_dim,
            mlp_hidden=full.mlp_fc1[1],
            num_patches=full.num_patches,
            num_prefix=full.num_prefix,
            patch_flops=2.0 * full.num_patches * full.patch_macs,
            head_flops=2.0 * full.head_macs,
        )


class SearchSpace:
    """Maps unit-cube points to schedules and gives their relaxed, differentiable costs.

    Args:
        shape: the model's shape.
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

    def relaxed_costs(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous (GFLOPs total, channel uses) for points ``x`` of shape ``[..., depth]``.

        Per block with n tokens in (u unprotected) and r merged: qkv and proj 8 n D^2, attention
        4 n^2 D, bipartite similarity u^2 D / 2 (weighted by min(1, r) so it fades out at r = 0),
        MLP 4 (n - r) D H; FLOPs = 2 x MACs throughout. Channel uses: (N D + N + 1) / 2 at the split.
        """
        s = self.shape
        d, h = float(s.dim), float(s.mlp_hidden)
        u = torch.full(x.shape[:-1], float(s.num_patches), dtype=x.dtype, device=x.device)
        total = torch.full_like(u, s.patch_flops + s.head_flops)
        sent = None
        for layer in range(s.depth):
            if layer == self.split:
                sent = u + s.num_prefix
            n = u + s.num_prefix
            r = x[..., layer].clamp(0, 1) * self.max_proportion * torch.floor(u / 2).clamp(min=0)
            r = torch.minimum(r, (u / 2).clamp(min=0))
            total = total + 8 * n * d * d + 4 * n * n * d + 0.5 * u * u * d * r.clamp(max=1.0)
            total = total + 4 * (n - r) * d * h
            u = u - r
        if sent is None:
            sent = u + s.num_prefix
        uses = (sent * d + sent + 1) / 2
        return torch.stack([total / 1e9, uses], dim=-1)
