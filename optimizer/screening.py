"""Screening: stop a validation measurement early when the candidate is clearly outside the region.

Why: the search still proposes some schedules that lose far more than a user will give up (the
region of interest, ``search.max_accuracy_drop``); measuring them on every validation image buys
precision nobody uses. With ``search.screen_images`` set, a candidate is first measured on part 0 of
``P`` of the validation split (:meth:`~paretoctl.optimizer.evaluator.Evaluator.evaluate_part`:
batches ``b`` with ``b % P == 0``, about ``screen_images`` images) and only goes on to the other parts
if it may still be inside the region.

The test is paired. The unmerged model is measured on the same images under the same noise (common
random numbers), and for each image ``i`` the difference of hits, averaged over every (channel, draw,
SNR) of the grid, is ``d_i = mean(hit_ref - hit_cand)`` in ``[-1, 1]``. Its mean is the candidate's
drop in grid-mean accuracy on those images, with standard error ``s_d / sqrt(n)`` (``s_d`` the sample
standard deviation of the ``d_i``). The candidate is stopped when ``drop - z * stderr`` exceeds the
region's edge (``max_accuracy_drop / 100``). Pairing matters: two schedules get most images equally
right or wrong, so the paired standard error is several times smaller than that of two independent
accuracies, and fewer images separate a clear loser.

What it costs in bias: a candidate whose true drop is inside the region is stopped only when its
paired mean lies ``z`` standard errors above the edge, with probability at most ``Phi(-z)`` under the
normal approximation (``z = 3``: 0.13%). A stopped candidate is not discarded: its record keeps the
accuracies measured on the screened images (``n_images`` says how many, the stderr is that of the
smaller sample) and ``screened`` (the paired drop, its stderr, ``z`` and the images), the GP sees it
with that known noise, and it can reach the front like any schedule (the front is re-measured on
the whole test split). ``bench/screening.py`` measures stopped candidates on every image to show
the decisions hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from paretoctl.optimizer.space import Candidate


@dataclass(frozen=True)
class PairedDrop:
    """A candidate's drop in grid-mean accuracy against the unmerged model on the same images.

    Attributes:
        drop: mean paired difference of hits, in [-1, 1] (0.03 is 3 points lost).
        stderr: its standard error, ``s_d / sqrt(n)`` (inf below two images).
        n_images: images compared.
    """

    drop: float
    stderr: float
    n_images: int


def paired_drop(reference_hits: torch.Tensor, candidate_hits: torch.Tensor) -> PairedDrop:
    """The paired drop of a candidate against the reference on the same images.

    Args:
        reference_hits: ``[n, ...]`` bool, the unmerged model's hits per image (any trailing grid,
            e.g. ``[n, channels, draws, SNRs]`` from ``PartialEvaluation.hits``).
        candidate_hits: the candidate's, the same shape, the same images in the same order.

    Raises:
        ValueError: the shapes differ or no image is given.
    """
    if reference_hits.shape != candidate_hits.shape:
        raise ValueError(f"hits of different shapes: {tuple(reference_hits.shape)} and {tuple(candidate_hits.shape)}")
    n = int(reference_hits.shape[0]) if reference_hits.dim() else 0
    if n == 0:
        raise ValueError("a paired drop needs at least one image")
    d = (reference_hits.double() - candidate_hits.double()).reshape(n, -1).mean(dim=1)  # [n]
    stderr = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.inf
    return PairedDrop(float(d.mean()), stderr, n)


@dataclass(frozen=True)
class Screen:
    """How a build screens its validation measurements (``search.screen_images``, ``search.screen_z``).

    Attributes:
        parts: ``P``: the screened images are part 0 of ``P`` of the validation split.
        max_accuracy_drop: the region's edge, in points of grid-mean accuracy.
        z: standard errors beyond the edge that stop a candidate.
        reference: the unmerged model's candidate (its part-0 hits are the pairs' other half).
    """

    parts: int
    max_accuracy_drop: float
    z: float
    reference: Candidate

    def rejects(self, measured: PairedDrop) -> bool:
        """True when the candidate lies clearly outside the region (``drop - z stderr > edge``)."""
        return measured.drop - self.z * measured.stderr > self.max_accuracy_drop / 100.0

    def record(self, measured: PairedDrop) -> dict[str, Any]:
        """The archive's ``screened`` entry of a stopped candidate (docs/internals.md)."""
        return {"n_images": measured.n_images, "parts": self.parts, "drop": measured.drop,
                "stderr": measured.stderr, "z": self.z, "max_accuracy_drop": self.max_accuracy_drop}


def screen_parts(n_images: int, batch_size: int, screen_images: int) -> int:
    """``P`` such that part 0 of ``P`` of a split of ``n_images`` holds at least ``screen_images``.

    The split's batches are dealt out in turn (``b % P``), so part 0 holds ``ceil(n_batches / P)``
    batches. Returns 1 (nothing to screen) when screening is off or would not save a batch.

    Example:
        >>> screen_parts(2000, 500, 500), screen_parts(2000, 250, 500), screen_parts(2000, 500, 0)
        (4, 4, 1)
    """
    if screen_images <= 0 or batch_size <= 0 or n_images <= 0:
        return 1
    n_batches = -(-n_images // batch_size)
    per_part = max(1, -(-screen_images // batch_size))
    return max(1, n_batches // per_part)
