"""Per-layer token-merging schedules: proportions <-> integer merge counts.

A schedule says how many tokens each transformer block merges away. The search works with
proportions ``p_l`` in [0, 1] (a box that does not depend on earlier layers), the model with integer
counts ``r_l``. Bipartite soft matching splits the ``u_l`` unprotected tokens entering layer ``l`` into
two alternating sets and merges at most one token of the smaller side into each destination, so at
most ``floor(u_l / 2)`` tokens can go at layer ``l``. The mapping used throughout paretoctl is::

    u_0 = num_patches
    r_l = round(p_l * floor(u_l / 2))          (round half up)
    u_{l+1} = u_l - r_l

Prefix tokens (cls, dist, registers) are never merged, so they only enter token counts, never the
schedule maths.

Example:
    >>> resolve_schedule([1.0, 0.5, 0.0], num_patches=49, depth=3)
    [24, 6, 0]
    >>> proportions_from_r([24, 6, 0], num_patches=49)
    [1.0, 0.5, 0.0]
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

__all__ = [
    "constant_r",
    "decreasing_r",
    "max_merge",
    "mean_schedule",
    "proportions_from_r",
    "resolve_schedule",
    "tokens_after_layers",
    "validate_r",
]


def max_merge(unprotected: int) -> int:
    """The most tokens one bipartite matching can merge away from ``unprotected`` tokens."""
    return max(unprotected, 0) // 2


def _round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even)."""
    return math.floor(value + 0.5)


def _check_depth(values: Sequence[object], depth: int | None, what: str) -> None:
    if depth is not None and len(values) != depth:
        raise ValueError(f"{what} has {len(values)} entries but the model has {depth} layers")


def _check_num_patches(num_patches: int) -> None:
    if isinstance(num_patches, bool) or not isinstance(num_patches, numbers.Integral) or num_patches < 0:
        raise ValueError(f"num_patches must be a non-negative integer, got {num_patches!r}")


def resolve_schedule(proportions: Sequence[float], num_patches: int, depth: int) -> list[int]:
    """Turn per-layer merge proportions into per-layer merge counts.

    Args:
        proportions: ``p_l`` in [0, 1] for each of the ``depth`` layers; 1 merges the most a bipartite
            matching allows at that layer, 0 merges nothing.
        num_patches: unprotected (patch) tokens entering the first block.
        depth: number of transformer blocks.

    Returns:
        ``r_l = round(p_l * floor(u_l / 2))`` for each layer, ``u_l`` the unprotected tokens entering it.

    Raises:
        ValueError: wrong length, or a proportion that is not a finite number in [0, 1]; the message
            names the layer and the value.
    """
    _check_num_patches(num_patches)
    _check_depth(proportions, depth, "proportions")
    r: list[int] = []
    unprotected = int(num_patches)
    for layer, p in enumerate(proportions):
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise ValueError(f"proportion for layer {layer} must be a real number, got {p!r}")
        value = float(p)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"proportion for layer {layer} must be finite and in [0, 1], got {value!r}")
        r_l = _round_half_up(value * max_merge(unprotected))
        r.append(r_l)
        unprotected -= r_l
    return r


def validate_r(r: Sequence[int], num_patches: int, depth: int | None = None) -> list[int]:
    """Check that a per-layer merge-count schedule is feasible, and return it as plain ints.

    Args:
        r: tokens to merge away at each layer.
        num_patches: unprotected (patch) tokens entering the first block.
        depth: number of layers ``r`` must have; None skips the length check.

    Returns:
        ``r`` as a list of Python ints.

    Raises:
        ValueError: wrong length, an entry that is not a non-negative integer, or one above
            ``floor(u_l / 2)``; the message names the layer and the value.
    """
    _check_num_patches(num_patches)
    _check_depth(r, depth, "r")
    out: list[int] = []
    unprotected = int(num_patches)
    for layer, value in enumerate(r):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"r[{layer}] must be an integer, got {value!r}")
        r_l = int(value)
        if r_l < 0:
            raise ValueError(f"r[{layer}] = {r_l} is negative")
        limit = max_merge(unprotected)
        if r_l > limit:
            raise ValueError(
                f"r[{layer}] = {r_l} is infeasible: layer {layer} receives {unprotected} unprotected tokens, "
                f"so at most {limit} can be merged there"
            )
        out.append(r_l)
        unprotected -= r_l
    return out


def proportions_from_r(r: Sequence[int], num_patches: int) -> list[float]:
    """Inverse of :func:`resolve_schedule`: ``p_l = r_l / floor(u_l / 2)`` (0 where ``u_l < 2``).

    ``resolve_schedule(proportions_from_r(r, n), n, len(r)) == r`` for every feasible ``r``.

    Raises:
        ValueError: ``r`` is not a feasible schedule (see :func:`validate_r`).
    """
    r = validate_r(r, num_patches)
    proportions: list[float] = []
    unprotected = int(num_patches)
    for r_l in r:
        limit = max_merge(unprotected)
        proportions.append(r_l / limit if limit > 0 else 0.0)
        unprotected -= r_l
    return proportions


def tokens_after_layers(r: Sequence[int], num_patches: int, num_prefix: int) -> list[int]:
    """Tokens (prefix included) leaving each layer under schedule ``r``.

    Raises:
        ValueError: ``r`` is not a feasible schedule, or ``num_prefix`` is negative.
    """
    if num_prefix < 0:
        raise ValueError(f"num_prefix must be >= 0, got {num_prefix}")
    counts: list[int] = []
    unprotected = int(num_patches)
    for r_l in validate_r(r, num_patches):
        unprotected -= r_l
        counts.append(unprotected + num_prefix)
    return counts


def mean_schedule(mean_tokens: Sequence[float], num_patches: int, num_prefix: int) -> list[int]:
    """The fixed schedule that describes an input-adaptive configuration's mean behaviour.

    Threshold merging (``paretoctl.models.threshold``) merges a different number of tokens in every
    image; a front still records ``r``, ``proportions`` and token counts for it, and they must agree
    (``paretoctl.service.schema.consistency``). The mean tokens are rounded (halves up), ``r_l`` is
    the difference of consecutive rounded counts, and each layer is capped at what bipartite
    matching allows there (rounding can overshoot ``floor(u_l / 2)`` by one), so the result is always
    a feasible schedule: ``tokens_after_layers`` and ``proportions_from_r`` then give the other views.

    Args:
        mean_tokens: ``depth + 1`` mean token counts, prefix included: entering each block, then
            leaving the last one. The first is ``num_patches + num_prefix`` by definition (every
            image enters block 0 whole) and is taken as that.
        num_patches: patch tokens entering block 0.
        num_prefix: prefix tokens (never merged).

    Returns:
        ``r``, ``depth`` non-negative ints.

    Raises:
        ValueError: fewer than two counts, or a count that is not a finite number.

    Example:
        >>> mean_schedule([50.0, 40.4, 30.6, 30.2], num_patches=49, num_prefix=1)
        [10, 9, 1]
    """
    _check_num_patches(num_patches)
    counts = list(mean_tokens)
    if len(counts) < 2:
        raise ValueError(f"mean_tokens needs depth + 1 >= 2 counts, got {len(counts)}")
    for k, value in enumerate(counts):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ValueError(f"mean_tokens[{k}] must be a finite number, got {value!r}")
    rounded = [int(num_patches) + int(num_prefix)] + [_round_half_up(float(v)) for v in counts[1:]]
    return _clip_to_feasible([a - b for a, b in itertools.pairwise(rounded)], num_patches)


def _clip_to_feasible(wanted: Sequence[int], num_patches: int) -> list[int]:
    """Greedily cap each layer's wish at what the tokens left at that layer allow."""
    out: list[int] = []
    unprotected = int(num_patches)
    for w in wanted:
        r_l = min(max(int(w), 0), max_merge(unprotected))
        out.append(r_l)
        unprotected -= r_l
    return out


def _check_r_arg(r: int, depth: int, num_patches: int) -> None:
    _check_num_patches(num_patches)
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 0:
        raise ValueError(f"r must be a non-negative integer, got {r!r}")
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")


def constant_r(r: int, depth: int, num_patches: int) -> list[int]:
    """ToMe's constant schedule: merge ``r`` tokens in every layer, capped at what is feasible.

    Example:
        >>> constant_r(16, depth=4, num_patches=40)
        [16, 12, 6, 3]
    """
    _check_r_arg(r, depth, num_patches)
    return _clip_to_feasible([r] * depth, num_patches)


def decreasing_r(r: int, depth: int, num_patches: int) -> list[int]:
    """ToMe's decreasing schedule: linear from ``2r`` at the first layer to 0 at the last.

    ``r_l = round(2 r (1 - l / (L - 1)))`` sums to ``r L`` before rounding, the same budget as the
    constant schedule but spent early, where tokens are most redundant. Each layer is then capped
    at what is feasible given the tokens left. One layer gets ``r``.

    Example:
        >>> decreasing_r(4, depth=5, num_patches=196)
        [8, 6, 4, 2, 0]
    """
    _check_r_arg(r, depth, num_patches)
    if depth == 1:
        return _clip_to_feasible([r], num_patches)
    wanted = [_round_half_up(2 * r * (1 - layer / (depth - 1))) for layer in range(depth)]
    return _clip_to_feasible(wanted, num_patches)
