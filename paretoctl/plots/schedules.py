"""The schedule figure's data: tokens left after each block, and which schedules to draw (no matplotlib).

Per the ``paretoctl.front/2`` schema, ``FrontConfig.tokens_per_layer[l]`` counts the tokens *entering*
block ``l`` (prefix tokens included) and block ``l`` merges ``r[l]`` of them, so the tokens left after
``b`` blocks are ``tokens_per_layer[b]`` for ``b < depth`` and ``tokens_per_layer[-1] - r[-1]`` after
the last block. A schedule only ever removes tokens, so every series is non-increasing.

A threshold (input-adaptive) configuration merges a different number of tokens in every image; its
series is the **mean** tokens entering each block over the evaluated images
(``cost_distribution.tokens_per_layer_mean``, exact, not the rounded ``tokens_per_layer``), so it has
``depth`` points: the artifact records no mean of the tokens leaving the last block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from paretoctl.plots.selection import channel_kinds, config_map, find_highlights, front_ids, is_adaptive, thin_out

if TYPE_CHECKING:
    from paretoctl.service.schema import FrontArtifact, FrontConfig

__all__ = ["MAX_SCHEDULE_LINES", "ScheduleSelection", "select_schedules", "tokens_left"]

MAX_SCHEDULE_LINES = 10
"""The schedule figure stays readable only with a handful of lines; the rest are thinned out."""


def tokens_left(cfg: FrontConfig) -> tuple[list[int], list[float]]:
    """(blocks processed, tokens left) from 0 blocks (the input) to all ``L`` of them.

    Returns:
        For a fixed schedule, two lists of length ``L + 1``: ``[0, 1, ..., L]`` and the token
        counts, prefix tokens included; the first count is ``num_patches + num_prefix_tokens``, the
        last the tokens leaving the final block (``tokens_per_layer[-1] - r[-1]``). For a threshold
        configuration, ``L`` entries: ``[0, ..., L - 1]`` and the mean tokens entering each block
        (``cost_distribution.tokens_per_layer_mean``).
    """
    if is_adaptive(cfg) and cfg.cost_distribution is not None:
        means = [float(t) for t in cfg.cost_distribution.tokens_per_layer_mean]
        return list(range(len(means))), means
    entering = [int(t) for t in cfg.tokens_per_layer]
    after_last = entering[-1] - int(cfg.r[-1])
    return list(range(len(entering) + 1)), [*entering, after_last]


@dataclass(frozen=True)
class ScheduleSelection:
    """Which schedules the figure draws.

    Attributes:
        shown: ids drawn as solid lines, cheapest first (at most the limit; highlights always kept).
        pareto_count: Pareto-front configurations (any channel, any SNR) other than the reference.
        reference: the unmerged reference's id (drawn dashed), ``None`` if the front lacks it.
    """

    shown: list[str]
    pareto_count: int
    reference: str | None


def select_schedules(front: FrontArtifact, limit: int = MAX_SCHEDULE_LINES) -> ScheduleSelection:
    """The Pareto configurations of every channel, thinned to ``limit``, keeping the highlights.

    Highlights (most accurate, knee, cheapest on validation accuracy) are those of each channel,
    picked among the union of all channels' fronts, so the lines a reader compares are always there.
    """
    by_id = config_map(front)
    kinds = channel_kinds(front)
    union = sorted({i for k in kinds for i in front_ids(front, k)} - {front.reference_config_id},
                   key=lambda i: (by_id[i].gflops.total, i))
    keep = [h for k in kinds if union for _, h in find_highlights([by_id[i] for i in union], k, "val").items()]
    ref = front.reference_config_id if front.reference_config_id in by_id else None
    return ScheduleSelection(thin_out(union, keep, limit), len(union), ref)
