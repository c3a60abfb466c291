"""The search spaces: the unit cube [0, 1]^L <-> per-layer merge schedules or similarity thresholds.

A point x of the unit cube scales to proportions p = x * max_proportion, and
``paretoctl.models.schedule.resolve_schedule`` turns those into integer r_l. GFLOPs and channel uses are
deterministic functions of the schedule, so the optimiser does not learn them with a GP: it uses
``relaxed_costs``, paretoctl's one cost model (``paretoctl.models.flops``) evaluated on *continuous*
token counts, which is differentiable in x (the rounding of r_l would give zero gradients to the
acquisition optimiser). At the integer points it equals ``paretoctl.models.flops.analytic_cost``.

:class:`ThresholdSpace` maps the cube to per-layer cosine-similarity thresholds (input-adaptive
merging, ``paretoctl.models.threshold``): ``t_l = hi - x_l (hi - lo)``. Their costs depend on the
images, so they are measured, never computed here; the BoTorch proposer learns them with GPs.

Both spaces name what a point means as a :class:`Candidate` (what the evaluator runs) and give a
hashable :meth:`key` for "already measured" checks; :meth:`point` places an archive record in the
space (or says it does not belong there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from paretoctl.models.flops import ViTShape, relaxed_cost
from paretoctl.models.schedule import proportions_from_r, resolve_schedule
from paretoctl.models.threshold import MERGES_NOTHING

__all__ = ["AnySpace", "Candidate", "CandidateKey", "SearchSpace", "ThresholdSpace", "ViTShape", "record_candidate",
           "threshold_key"]  # ViTShape re-exported: ``ViTShape.of(model)`` reads a timm ViT

CandidateKey = tuple[str, tuple[float, ...]]
"""``(merging kind, values)``: what makes two configurations the same measurement."""

THRESHOLD_DECIMALS = 4
"""Thresholds are searched, stored and compared rounded to 1e-4 (a cosine similarity step far below
what changes any merge of the bundled model), so a repeat is recognised as one."""


def threshold_key(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Thresholds rounded to :data:`THRESHOLD_DECIMALS` decimals: the identity of a threshold configuration."""
    return tuple(round(float(t), THRESHOLD_DECIMALS) for t in thresholds)


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure: a fixed schedule ``r`` or per-block similarity ``thresholds``.

    Exactly one is set. Plain ``r`` lists are still accepted wherever a candidate is
    (:meth:`of`), so fixed-schedule callers are unchanged.
    """

    r: tuple[int, ...] | None = None
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.r is None) == (self.thresholds is None):
            raise ValueError("a candidate has either a schedule r or thresholds, exactly one of them")

    @property
    def merging(self) -> Literal["proportions", "thresholds"]:
        """The artifact's merging kind."""
        return "proportions" if self.r is not None else "thresholds"

    @property
    def key(self) -> CandidateKey:
        """Hashable identity: the kind and ``r``, or the kind and the rounded thresholds."""
        if self.r is not None:
            return ("proportions", tuple(self.r))
        return ("thresholds", threshold_key(self.thresholds or ()))

    @classmethod
    def of(cls, item: Candidate | Sequence[int]) -> Candidate:
        """``item`` itself, or a plain ``r`` list made a candidate."""
        return item if isinstance(item, Candidate) else cls(r=tuple(int(v) for v in item))


def record_candidate(rec: Mapping[str, Any]) -> Candidate:
    """The configuration an archive record measured (records without ``merging`` are fixed schedules)."""
    if rec.get("merging", "proportions") == "thresholds":
        return Candidate(thresholds=threshold_key(rec["thresholds"]))
    return Candidate(r=tuple(int(v) for v in rec["r"]))


class SearchSpace:
    """Maps unit-cube points to schedules and gives their relaxed, differentiable costs.

    Args:
        shape: the model's shape, ``ViTShape.of(model)`` (``paretoctl.models.flops.ViTShape``).
        split: edge/server split index.
        max_proportion: the largest per-layer proportion searched (1 = as much as bipartite matching allows).
    """

    merging = "proportions"

    def __init__(self, shape: ViTShape, split: int, max_proportion: float = 1.0) -> None:
        self.shape, self.split, self.max_proportion = shape, split, max_proportion

    @property
    def dim(self) -> int:
        return self.shape.depth

    def candidate(self, x: Sequence[float]) -> Candidate:
        """The fixed schedule the point ``x`` stands for."""
        return Candidate(r=tuple(self.to_r(x)))

    def key(self, x: Sequence[float]) -> tuple[float, ...]:
        """Identity of the point's configuration within this space: its schedule ``r``."""
        return tuple(self.to_r(x))

    def point(self, rec: Mapping[str, Any]) -> list[float] | None:
        """The cube point of an archive record: its own ``x`` for a fixed schedule, None for thresholds."""
        if rec.get("merging", "proportions") != "proportions":
            return None
        x = rec.get("x")
        return [float(v) for v in x] if x is not None else self.from_r(rec["r"])

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


class ThresholdSpace:
    """Maps unit-cube points to per-layer similarity thresholds, ``t_l = hi - x_l (hi - lo)``.

    ``x = 0`` is ``hi`` everywhere (with ``hi = 1``, the unmerged model: a similarity never exceeds
    1), ``x = 1`` is ``lo``; larger x merges more, as in :class:`SearchSpace`. Thresholds are rounded to
    1e-4 (:func:`threshold_key`). No cost formula exists: what a threshold merges depends on the image.

    Args:
        shape: the model's shape (its depth is the cube's dimension).
        split: edge/server split index.
        lo, hi: the cosine similarities searched, ``-1 <= lo < hi <= 1``.
    """

    merging = "thresholds"

    def __init__(self, shape: ViTShape, split: int, lo: float, hi: float) -> None:
        if not -1.0 <= lo < hi <= 1.0:
            raise ValueError(f"threshold range must satisfy -1 <= lo < hi <= 1, got [{lo}, {hi}]")
        self.shape, self.split, self.lo, self.hi = shape, split, float(lo), float(hi)

    @property
    def dim(self) -> int:
        return self.shape.depth

    def to_thresholds(self, x: Sequence[float]) -> list[float]:
        """Per-layer thresholds of the point ``x`` (clipped to the cube, rounded to 1e-4)."""
        if len(x) != self.dim:
            raise ValueError(f"a point has {len(x)} coordinates, the model has {self.dim} layers")
        span = self.hi - self.lo
        return list(threshold_key([self.hi - min(1.0, max(0.0, float(v))) * span for v in x]))

    def from_thresholds(self, thresholds: Sequence[float]) -> list[float]:
        """The cube point of ``thresholds`` (values outside ``[lo, hi]`` clipped to the cube's faces)."""
        span = self.hi - self.lo
        return [min(1.0, max(0.0, (self.hi - float(t)) / span)) for t in thresholds]

    def candidate(self, x: Sequence[float]) -> Candidate:
        """The threshold configuration the point ``x`` stands for."""
        return Candidate(thresholds=tuple(self.to_thresholds(x)))

    def key(self, x: Sequence[float]) -> tuple[float, ...]:
        """Identity of the point's configuration within this space: its thresholds (rounded to 1e-4)."""
        return tuple(self.to_thresholds(x))

    def point(self, rec: Mapping[str, Any]) -> list[float] | None:
        """The cube point of an archive record, or None when it does not live in this cube.

        A threshold record maps through :meth:`from_thresholds`. The unmerged model is the origin
        when ``hi >= 1`` (thresholds of ``hi`` merge nothing, bit for bit the unmerged model); any
        other fixed schedule has no place here.
        """
        if rec.get("merging", "proportions") == "thresholds":
            return self.from_thresholds(rec["thresholds"])
        if self.hi >= MERGES_NOTHING and not any(rec["r"]):
            return [0.0] * self.dim
        return None

    def constant_point(self, threshold: float) -> list[float]:
        """The point of ``[threshold] * L`` (clipped to the range)."""
        return self.from_thresholds([threshold] * self.dim)


AnySpace = SearchSpace | ThresholdSpace
"""Either search space: both give ``dim``, ``candidate``, ``key`` and ``point``."""
