"""The schedule figure: tokens left after each transformer block, for the chosen schedules.

Which schedules, and their token counts, come from :mod:`paretoctl.plots.schedules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paretoctl.plots.schedules import MAX_SCHEDULE_LINES, select_schedules, tokens_left
from paretoctl.plots.selection import config_map
from paretoctl.plots.style import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from paretoctl.service.schema import FrontArtifact

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
    fig = new_figure(9.0, 5.0)
    ax = fig.subplots()
    if sel.reference is not None:
        ax.plot(*tokens_left(by_id[sel.reference]), color="black", ls="--", lw=1.6,
                label=f"{sel.reference}: reference, no merging")
    for cid in sel.shown:
        cfg = by_id[cid]
        ax.plot(*tokens_left(cfg), marker="o", ms=3, lw=1.4,
                label=f"{cid}: {cfg.gflops.total:.3g} GFLOPs, {cfg.tokens_sent} tokens sent")
    ax.axvline(split, color="tab:red", ls="--", lw=1.2)
    # The label sits beside the split line, on the side with more room, so it is never clipped.
    right = split <= int(front.provenance.depth) / 2
    ax.annotate(f"split: the edge runs blocks 1-{split} and sends the tokens left;\nthe server runs the rest",
                xy=(split, 0.97), xycoords=ax.get_xaxis_transform(), xytext=(5 if right else -5, 0),
                textcoords="offset points", color="tab:red", va="top", ha="left" if right else "right",
                fontsize="small", bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "tab:red"})
    ax.set_xlabel("Transformer blocks processed")
    ax.set_ylabel(f"Tokens left ({_prefix_words(int(front.provenance.num_prefix_tokens))})")
    ax.set_xlim(0, int(front.provenance.depth))
    drawn = [*sel.shown, *([sel.reference] if sel.reference is not None else [])]
    ax.set_ylim(0, 1.3 * max(tokens_left(by_id[i])[1][0] for i in drawn))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"Per-layer merge schedules: {len(sel.shown)} of the {sel.pareto_count} Pareto-front "
                 "configurations (any channel, any SNR)")
    return fig


def _prefix_words(num_prefix: int) -> str:
    """How the y label says which never-merged tokens the counts include."""
    if num_prefix == 1:
        return "class token included"
    if num_prefix == 0:
        return "patch tokens only"
    return f"{num_prefix} prefix tokens included"
