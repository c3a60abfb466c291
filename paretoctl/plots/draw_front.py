"""Figures of accuracy: the Pareto front (accuracy vs GFLOPs) and accuracy vs SNR.

What is drawn is chosen in :mod:`paretoctl.plots.selection`; this module only draws it. Threshold
(input-adaptive) configurations are drawn as diamonds at their mean GFLOPs and mean tokens sent,
and the constant-threshold marks of a threshold build as plus signs beside ToMe's X; a front with
no threshold configuration is drawn exactly as before they existed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from paretoctl.plots.selection import (
    SPLIT_NAMES,
    accuracy_at,
    accuracy_curve,
    channel_kinds,
    config_map,
    envelope,
    find_highlights,
    front_ids,
    is_adaptive,
    nice_levels,
)
from paretoctl.plots.style import channel_title, new_figure, snr_colours, subplots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from paretoctl.service.schema import FrontArtifact, FrontConfig

__all__ = ["accuracy_snr_figure", "front_figure"]

MARKERS: dict[str, str] = {"fixed": "o", "thresholds": "D", "reference": "*", "uniform": "X",
                           "uniform-thresholds": "P"}
"""Marker of each kind of point: front configurations by merging kind, and the comparison marks."""


def _mark_kind(cfg: FrontConfig) -> str | None:
    """Which comparison mark ``cfg`` is drawn as (None: only as a front point)."""
    if cfg.source == "reference":
        return "reference"
    if cfg.source == "uniform":
        return "uniform-thresholds" if is_adaptive(cfg) else "uniform"
    return None


def front_figure(front: FrontArtifact, split: str = "test") -> Figure:
    """Accuracy against GFLOPs of the Pareto front, one series per SNR, one panel per channel.

    Marker area is proportional to the tokens sent over the link (the communication cost), so all
    three objectives are visible at once. The unmerged model and ToMe's uniform schedules are drawn
    as reference points to show what the search gained. Threshold configurations are diamonds (at
    their mean GFLOPs and mean tokens sent), and a threshold build's constant-threshold marks plus signs.
    """
    from matplotlib.lines import Line2D

    kinds = channel_kinds(front)
    grid = list(front.provenance.snr_grid_db)
    colours = snr_colours(grid)
    by_id = config_map(front)
    max_tokens = max(cfg.tokens_sent for cfg in front.configs) or 1

    def area(tokens: float) -> float:
        return 10.0 + 190.0 * tokens / max_tokens

    fig = new_figure(5.2 * len(kinds) + 2.6, 5.0)
    axes = subplots(fig, len(kinds))
    for ax, kind in zip(axes, kinds, strict=True):
        for snr in grid:
            _draw_front_series(ax, [by_id[i] for i in front_ids(front, kind, snr)], kind, split, snr,
                               colours[snr], area)
        _draw_comparisons(ax, front, kind, split, grid, colours, area)
        ax.set_title(channel_title(kind))
        ax.set_xlabel("Compute (GFLOPs per image, edge + server)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"Top-1 accuracy on the {SPLIT_NAMES[split]} (%)")

    snr_handles = [Line2D([], [], color=colours[s], marker="o", label=f"{s:g} dB") for s in grid]
    fig.legend(handles=snr_handles, title="SNR (Es/N0)", loc="outside right upper", fontsize="small")
    kind_handles = [
        Line2D([], [], ls="", marker="o", color="0.4", label="Pareto-optimal schedule\n(accuracy, GFLOPs, tokens)"),
        Line2D([], [], color="0.4", drawstyle="steps-post", label="best accuracy for the compute"),
        Line2D([], [], ls="", marker="*", markersize=12, color="0.4", markeredgecolor="black",
               label="unmerged model (reference)"),
        Line2D([], [], ls="", marker="X", markersize=8, color="0.4", markeredgecolor="black",
               label="ToMe uniform schedule"),
    ]
    if any(is_adaptive(cfg) for cfg in front.configs):
        kind_handles.insert(1, Line2D([], [], ls="", marker=MARKERS["thresholds"], color="0.4",
                                      label="Pareto-optimal, input-adaptive\n(thresholds; mean costs)"))
    if any(_mark_kind(cfg) == "uniform-thresholds" for cfg in front.configs):
        kind_handles.append(Line2D([], [], ls="", marker=MARKERS["uniform-thresholds"], markersize=9, color="0.4",
                                   markeredgecolor="black", label="constant threshold (all blocks)"))
    fig.legend(handles=kind_handles, title="Configuration", loc="outside right center", fontsize="small")
    size_handles = [
        Line2D([], [], ls="", marker="o", color="0.6", markersize=math.sqrt(area(t)), label=f"{t:g}")
        for t in nice_levels(max_tokens)
    ]
    fig.legend(handles=size_handles, title="Tokens sent\n(marker area)", loc="outside right lower",
               fontsize="small", labelspacing=1.2)
    fig.suptitle(
        f"Pareto front: accuracy vs compute at each SNR ({SPLIT_NAMES[split]}; "
        "front selected on the validation split)"
    )
    return fig


def _draw_front_series(
    ax: Axes,
    configs: Sequence[FrontConfig],
    kind: str,
    split: str,
    snr: float,
    colour: Any,
    area: Callable[[float], float],
) -> None:
    """One SNR's front on one panel: sized markers (circles, diamonds for thresholds) plus the staircase."""
    if not configs:
        return
    xs = [float(c.gflops.total) for c in configs]
    ys = [accuracy_at(c, kind, split, snr) for c in configs]
    ex, ey = envelope(list(zip(xs, ys, strict=True)))
    ax.step(ex, ey, where="post", color=colour, lw=1.2, alpha=0.8, zorder=2)
    for marker, adaptive in ((MARKERS["fixed"], False), (MARKERS["thresholds"], True)):
        pick = [k for k, c in enumerate(configs) if is_adaptive(c) == adaptive]
        if pick:
            ax.scatter([xs[k] for k in pick], [ys[k] for k in pick], s=[area(configs[k].tokens_sent) for k in pick],
                       marker=marker, color=colour, edgecolors="white", linewidths=0.6, zorder=3)


def _draw_comparisons(
    ax: Axes,
    front: FrontArtifact,
    kind: str,
    split: str,
    grid: Sequence[float],
    colours: dict[float, Any],
    area: Callable[[float], float],
) -> None:
    """Mark the unmerged reference (star), ToMe's uniform schedules (X) and constant thresholds (P) at every SNR."""
    for cfg in front.configs:
        mark = _mark_kind(cfg)
        if mark is None:
            continue
        marker = MARKERS[mark]
        size = area(cfg.tokens_sent) * (2.2 if marker == "*" else 1.0)
        for snr in grid:
            ax.scatter([cfg.gflops.total], [accuracy_at(cfg, kind, split, snr)], s=size, marker=marker,
                       color=colours[snr], edgecolors="black", linewidths=0.7, zorder=4)


def accuracy_snr_figure(front: FrontArtifact, split: str = "test") -> Figure:
    """Accuracy against SNR for each front configuration, with standard-error bars.

    All Pareto configurations of a channel are drawn in grey so the spread is visible; the most
    accurate, the knee and the cheapest are coloured and named, and the unmerged model is dashed,
    because those are the choices a reader is likely to compare.
    """
    kinds = channel_kinds(front)
    by_id = config_map(front)
    fig = new_figure(5.4 * len(kinds) + 0.6, 5.0)
    axes = subplots(fig, len(kinds))
    palette = {"most accurate": "tab:blue", "knee": "tab:orange", "cheapest": "tab:red"}
    for ax, kind in zip(axes, kinds, strict=True):
        ids = front_ids(front, kind)
        for cid in ids:
            snrs, means, errs = accuracy_curve(by_id[cid], kind, split)
            ax.errorbar(snrs, means, yerr=errs, color="0.75", lw=0.8, capsize=1.5, zorder=1)
        ref = by_id.get(front.reference_config_id)
        if ref is not None:
            snrs, means, errs = accuracy_curve(ref, kind, split)
            ax.errorbar(snrs, means, yerr=errs, color="black", ls="--", lw=1.4, capsize=2.5, zorder=2,
                        label=f"unmerged model ({ref.gflops.total:.3g} GFLOPs)")
        if ids:
            for label, cid in find_highlights([by_id[i] for i in ids], kind, split).items():
                cfg = by_id[cid]
                snrs, means, errs = accuracy_curve(cfg, kind, split)
                costs = (f"thresholds, {cfg.gflops.total:.3g} GFLOPs mean" if is_adaptive(cfg)
                         else f"{cfg.gflops.total:.3g} GFLOPs, {cfg.tokens_sent} tokens")
                ax.errorbar(snrs, means, yerr=errs, color=palette[label], lw=2.0,
                            marker=MARKERS["thresholds"] if is_adaptive(cfg) else "o", ms=4, capsize=3, zorder=3,
                            label=f"{label}: {cid} ({costs})")
        ax.plot([], [], color="0.75", label=f"other Pareto configurations ({len(ids)} in all)")
        ax.set_title(channel_title(kind))
        ax.set_xlabel("SNR, Es/N0 (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    axes[0].set_ylabel(f"Top-1 accuracy on the {SPLIT_NAMES[split]} (%)")
    fig.suptitle(f"Accuracy vs SNR of the Pareto-front configurations ({SPLIT_NAMES[split]}, ±1 stderr)")
    return fig
