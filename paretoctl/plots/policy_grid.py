"""The policy map's data: what ``GET /policy`` answers on an SNR x latency-budget grid (no matplotlib).

Every cell is a real call of :func:`paretoctl.service.policy.select`, so the map documents the deployed
rule rather than a re-implementation of it. On a digital link latency depends on the SNR and spans
decades across the axis, so its latency axis is logarithmic (``PolicyGrid.log_latency``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paretoctl.plots.selection import config_map

if TYPE_CHECKING:
    from paretoctl.service.schema import FrontArtifact

__all__ = ["PolicyGrid", "Segment", "cell_edges", "choice_boundaries", "geomspace", "infeasible_label_y",
           "linspace", "policy_grid"]

Segment = list[tuple[float, float]]
"""A line segment ``[(x0, y0), (x1, y1)]`` in data coordinates (SNR in dB, latency in ms)."""


@dataclass(frozen=True)
class PolicyGrid:
    """The policy evaluated on an SNR x latency grid for one channel.

    Attributes:
        snrs: SNR axis (dB), length W.
        latencies: latency-budget axis (ms), length H.
        accuracy: H x W predicted accuracy in %, NaN where nothing fits the budget.
        choice: H x W index into ``ids`` of the chosen configuration, -1 where infeasible.
        ids: configuration ids that were chosen somewhere, cheapest first.
        fastest_ms: fastest achievable latency reported by the policy (at the highest SNR shown).
        log_latency: the latency axis is geometric (digital links), else evenly spaced.
    """

    snrs: list[float]
    latencies: list[float]
    accuracy: list[list[float]]
    choice: list[list[int]]
    ids: list[str]
    fastest_ms: float
    log_latency: bool = False


def policy_grid(front: FrontArtifact, channel: str, *, width: int = 61, height: int = 61) -> PolicyGrid:
    """Ask ``paretoctl.service.policy.select`` for every cell of an SNR x latency grid.

    The SNR axis spans the grid with 10 % padding on each side, so the figure also shows how the
    policy treats SNRs outside the measured grid; the latency axis runs from half the fastest to
    beyond the slowest configuration, so both the infeasible region and saturation are visible.

    Args:
        front: the artifact (with its own device profile).
        channel: channel kind.
        width: SNR cells (>= 2).
        height: latency cells (>= 2).
    """
    from paretoctl.service.policy import config_latencies, is_digital_channel, select

    grid = list(front.provenance.snr_grid_db)
    pad = 0.1 * ((grid[-1] - grid[0]) or 10.0)
    snrs = linspace(grid[0] - pad, grid[-1] + pad, width)
    digital = is_digital_channel(front, channel)
    if digital:  # the fastest configuration at the best SNR shown, the slowest at the worst
        fast = min(config_latencies(front, snrs[-1], channel).values())
        slow = max(config_latencies(front, snrs[0], channel).values())
        latencies = geomspace(0.5 * fast, 1.15 * slow, height)
    else:
        totals = [float(cfg.latency.total_ms) for cfg in front.configs]
        latencies = linspace(0.5 * min(totals), 1.15 * max(totals), height)
    by_id = config_map(front)
    accuracy: list[list[float]] = []
    chosen: list[list[str | None]] = []
    fastest = math.inf
    for lat in latencies:
        acc_row: list[float] = []
        id_row: list[str | None] = []
        for snr in snrs:
            decision = select(front, snr, lat, channel=channel)
            fastest = min(fastest, float(decision.fastest_latency_ms))
            if decision.feasible and decision.predicted_accuracy is not None:
                acc_row.append(100.0 * float(decision.predicted_accuracy.mean))
                id_row.append(decision.config_id)
            else:
                acc_row.append(math.nan)
                id_row.append(None)
        accuracy.append(acc_row)
        chosen.append(id_row)
    ids = sorted({i for row in chosen for i in row if i is not None},
                 key=lambda i: (by_id[i].gflops.total, i))
    index = {cid: k for k, cid in enumerate(ids)}
    choice = [[-1 if i is None else index[i] for i in row] for row in chosen]
    return PolicyGrid(snrs, latencies, accuracy, choice, ids, fastest, digital)


def linspace(lo: float, hi: float, n: int) -> list[float]:
    """``n >= 2`` evenly spaced values from ``lo`` to ``hi`` inclusive (numpy-free)."""
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def geomspace(lo: float, hi: float, n: int) -> list[float]:
    """``n >= 2`` geometrically spaced values from ``lo > 0`` to ``hi`` inclusive (numpy-free)."""
    return [lo * (hi / lo) ** (k / (n - 1)) for k in range(n)]


def choice_boundaries(pg: PolicyGrid) -> list[Segment]:
    """Cell edges where the chosen configuration changes between two feasible neighbours.

    Drawn from the cell grid itself rather than with ``contour`` on the choice index, because the
    index is categorical: contouring it would draw one line per skipped level at a single boundary.
    """
    xs, ys, ch = pg.snrs, pg.latencies, pg.choice
    segments: list[Segment] = []
    for i in range(len(ys)):
        y0, y1 = cell_edges(ys, i, log=pg.log_latency)
        for j in range(len(xs)):
            x0, x1 = cell_edges(xs, j)
            if j + 1 < len(xs) and ch[i][j] != ch[i][j + 1] and min(ch[i][j], ch[i][j + 1]) >= 0:
                segments.append([(x1, y0), (x1, y1)])
            if i + 1 < len(ys) and ch[i][j] != ch[i + 1][j] and min(ch[i][j], ch[i + 1][j]) >= 0:
                segments.append([(x0, y1), (x1, y1)])
    return segments


def cell_edges(centres: Sequence[float], k: int, *, log: bool = False) -> tuple[float, float]:
    """Lower and upper edge of cell ``k`` of an evenly (``log``: geometrically) spaced axis of cell centres."""
    if log and len(centres) > 1:
        ratio = math.sqrt(centres[1] / centres[0])
        return centres[k] / ratio, centres[k] * ratio
    half = 0.5 * (centres[1] - centres[0]) if len(centres) > 1 else 0.5
    return centres[k] - half, centres[k] + half


def infeasible_label_y(pg: PolicyGrid) -> float:
    """Vertical position (axes fraction) in the middle of the infeasible band at the bottom."""
    lo, hi = pg.latencies[0], pg.latencies[-1]
    top = min(max(pg.fastest_ms, lo), hi)
    if pg.log_latency:
        lo, hi, top = math.log(lo), math.log(hi), math.log(top)
    return max(0.5 * (top - lo) / ((hi - lo) or 1.0), 0.06)
