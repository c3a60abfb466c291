"""The schedule figure: tokens left after each transformer block, for the chosen schedules.

Which schedules, and their token counts, come from :mod:`paretoctl.plots.schedules`. A threshold
(input-adaptive) configuration is drawn dash-dotted with diamonds, as its mean tokens per block, and
a second panel below shows its per-block similarity thresholds (only when one is drawn, so a front
of fixed schedules gives the same figure as before thresholds existed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paretoctl.plots.schedules import MAX_SCHEDULE_LINES, select_schedules, tokens_left
from paretoctl.plots.selection import config_map, is_adaptive
from paretoctl.plots.style import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from paretoctl.service.schema import FrontArtifact, FrontConfig

__all__ = ["schedule_figure"]


def schedule_figure(front: FrontArtifact, limit: int = MAX_SCHEDULE_LINES) -> Figure:
    """Tokens left after each transformer block for the chosen configurations.

    Shows *where* each schedule merges tokens; the dashed vertical line is the edge/server split,
    where the remaining tokens are sent over the link (so the curve's height there is the
    communication cost).
    """
    by_id = config_map(front)
    sel = select_schedules(front, limit)
    split = int(front.provenance.split_index)
    adaptive = [cid for cid in sel.shown if is_adaptive(by_id[cid])]
    fig = new_figure(12.5, 7.4) if adaptive else new_figure(9.0, 5.0)
    if adaptive:
        ax, ax_thr = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1.0])
    else:
        ax, ax_thr = fig.subplots(), None
    if sel.reference is not None:
        ax.plot(*tokens_left(by_id[sel.reference]), color="black", ls="--", lw=1.6,
                label=f"{sel.reference}: reference, no merging")
    colours = {}
    for cid in sel.shown:
        cfg = by_id[cid]
        style = {"marker": "D", "ls": "-.", "ms": 3.5} if is_adaptive(cfg) else {"marker": "o", "ms": 3}
        (line,) = ax.plot(*tokens_left(cfg), lw=1.4, label=_label(cfg), **style)
        colours[cid] = line.get_color()
    if ax_thr is not None:
        _draw_thresholds(ax_thr, [by_id[cid] for cid in adaptive], colours, split)
    ax.axvline(split, color="tab:red", ls="--", lw=1.2)
    # The label sits beside the split line, on the side with more room, so it is never clipped.
    right = split <= int(front.provenance.depth) / 2
    ax.annotate(f"split: the edge runs blocks 1-{split} and sends the tokens left;\nthe server runs the rest",
                xy=(split, 0.97), xycoords=ax.get_xaxis_transform(), xytext=(5 if right else -5, 0),
                textcoords="offset points", color="tab:red", va="top", ha="left" if right else "right",
                fontsize="small", bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "tab:red"})
    (ax_thr if ax_thr is not None else ax).set_xlabel("Transformer blocks processed")
    ax.set_ylabel(f"Tokens left ({_prefix_words(int(front.provenance.num_prefix_tokens))})"
                  + ("\n(thresholds: mean over images)" if adaptive else ""))
    ax.set_xlim(0, int(front.provenance.depth))
    drawn = [*sel.shown, *([sel.reference] if sel.reference is not None else [])]
    ax.set_ylim(0, 1.3 * max(tokens_left(by_id[i])[1][0] for i in drawn))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"Per-layer merge schedules: {len(sel.shown)} of the {sel.pareto_count} Pareto-front "
                 "configurations (any channel, any SNR)")
    return fig


def _label(cfg: FrontConfig) -> str:
    """A legend entry: the id and costs; a threshold configuration's mean (and p95) per image."""
    dist = cfg.cost_distribution
    if is_adaptive(cfg) and dist is not None:
        return (f"{cfg.id}: thresholds; mean {dist.gflops_total.mean:.3g} GFLOPs (p95 {dist.gflops_total.p95:.3g}), "
                f"{dist.tokens_sent.mean:.3g} tokens sent")
    return f"{cfg.id}: {cfg.gflops.total:.3g} GFLOPs, {cfg.tokens_sent} tokens sent"


def _draw_thresholds(ax: Axes, configs: list[FrontConfig], colours: dict[str, str], split: int) -> None:
    """Each threshold configuration's per-block threshold, a step over the block (block ``l`` spans ``[l, l+1]``).

    A threshold at or above 1 merges nothing in that block; the axis is capped at 1.02 so those read
    as "off" at the top instead of stretching the axis.
    """
    for cfg in configs:
        values = [float(t) for t in cfg.thresholds or []]
        shown = [min(v, 1.02) for v in values]
        ax.step(list(range(len(shown) + 1)), [*shown, shown[-1]], where="post", color=colours[cfg.id], lw=1.4,
                ls="-.", label=cfg.id)
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax.axvline(split, color="tab:red", ls="--", lw=1.2)
    low = min(min(float(t) for t in cfg.thresholds or [1.0]) for cfg in configs)
    ax.set_ylim(max(-1.05, min(low, 0.9) - 0.05), 1.04)
    ax.set_ylabel("Similarity threshold\n(>= 1: no merging)")
    ax.grid(True, alpha=0.3)


def _prefix_words(num_prefix: int) -> str:
    """How the y label says which never-merged tokens the counts include."""
    if num_prefix == 1:
        return "class token included"
    if num_prefix == 0:
        return "patch tokens only"
    return f"{num_prefix} prefix tokens included"
