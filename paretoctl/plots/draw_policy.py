"""The policy map: a heat map of what ``GET /policy`` answers over SNR and latency budget.

The cells come from :mod:`paretoctl.plots.policy_grid`; this module only draws them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from paretoctl.plots.policy_grid import choice_boundaries, infeasible_label_y, policy_grid
from paretoctl.plots.selection import channel_kinds
from paretoctl.plots.style import channel_title, new_figure, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from paretoctl.service.schema import FrontArtifact

__all__ = ["policy_map_figure"]


def policy_map_figure(front: FrontArtifact) -> Figure:
    """Heat map of the accuracy the service's policy predicts, over SNR and latency budget.

    Each cell is what ``GET /policy`` would answer, so the figure documents the deployed rule,
    including the region where no configuration meets the budget (hatched grey, labelled) and the
    boundaries where the chosen configuration changes (thin white lines).
    """
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Patch

    kinds = channel_kinds(front)
    fig = new_figure(5.4 * len(kinds) + 1.4, 5.0)
    grids = [policy_grid(front, kind) for kind in kinds]
    # A digital link's latencies depend on the SNR and span decades: its panel gets its own log axis.
    mixed = any(g.log_latency for g in grids)
    axes = subplots(fig, len(kinds), sharey=not mixed)
    finite = [v for g in grids for row in g.accuracy for v in row if not math.isnan(v)]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 100.0)
    mesh = None
    for ax, kind, pg in zip(axes, kinds, grids, strict=True):
        acc = np.ma.masked_invalid(np.array(pg.accuracy, dtype=float))
        ax.set_facecolor("0.85")
        mesh = ax.pcolormesh(pg.snrs, pg.latencies, acc, shading="nearest", cmap="viridis",
                             vmin=vmin, vmax=vmax, rasterized=True)
        infeasible = np.array(pg.choice) < 0
        if infeasible.any():
            ax.contourf(pg.snrs, pg.latencies, infeasible.astype(float), levels=[0.5, 1.5],
                        colors="none", hatches=["//"])
            ax.text(0.5, infeasible_label_y(pg), f"infeasible: no configuration within budget\n"
                    f"(fastest achievable {pg.fastest_ms:.3g} ms)", transform=ax.transAxes,
                    ha="center", va="center", fontsize="small",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.5"})
        ax.add_collection(LineCollection(choice_boundaries(pg), colors="white", linewidths=0.8))
        for snr in front.provenance.snr_grid_db:
            ax.axvline(snr, color="white", lw=0.4, ls=":", alpha=0.7)
        ax.set_title(f"{channel_title(kind)} ({len(pg.ids)} distinct choices)")
        ax.set_xlabel("SNR, Es/N0 (dB)")
        if pg.log_latency:
            ax.set_yscale("log")
        if mixed or ax is axes[0]:
            ax.set_ylabel("Latency budget (ms, end to end" + (", log scale)" if pg.log_latency else ")"))
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="Predicted top-1 accuracy of the chosen configuration (%)")
    fig.legend(handles=[Patch(facecolor="0.85", hatch="//", edgecolor="0.3",
                              label="infeasible: nothing meets the latency budget"),
                        Patch(facecolor="0.55", edgecolor="white", lw=1.5,
                              label="white lines: the chosen configuration changes")],
               loc="outside lower center", ncols=2, fontsize="small")
    fig.suptitle("Policy map: predicted accuracy (test split) of the configuration GET /policy picks "
                 f"with the {front.device_profile.name!r} device profile\n(chosen on the validation split; "
                 "dotted lines: the measured SNR grid, between which the lower neighbour counts)",
                 fontsize="medium")
    return fig
