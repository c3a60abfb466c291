"""Figures of a Pareto front artifact and of a build directory.

The figures are for people who have never seen the project (README, RESULTS.md, reviews of a
build), so every axis carries its unit and every title says what is shown and on which split.

matplotlib is an optional dependency (the ``[plot]`` extra): it is imported inside the drawing
functions, never at module import, so the base install (service, SDK) does not need it. Figures are
built with ``matplotlib.figure.Figure`` directly rather than through ``pyplot``, so no global state
or interactive backend is involved and the functions are safe to call from tests and servers.

Example:
    >>> from paretoctl.plots import plot_path
    >>> written = plot_path("runs/default/front.json", "figures")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from paretoctl.service.schema import FrontArtifact, FrontConfig

FORMATS: tuple[str, ...] = ("png", "svg")
"""File formats written for every figure: PNG for the README, SVG for print."""

SPLIT_NAMES: dict[str, str] = {"test": "test split", "val": "validation split"}

CHANNEL_NAMES: dict[str, str] = {
    "ideal": "ideal (noiseless) link",
    "awgn": "AWGN channel",
    "rayleigh": "Rayleigh block fading",
    "rician": "Rician block fading",
}

MAX_SCHEDULE_LINES = 10
"""The schedule figure stays readable only with a handful of lines; the rest are thinned out."""


class PlotInputError(Exception):
    """An input to the plots (path, build directory, convergence file) is unusable.

    Raised instead of a bare ``OSError``/``KeyError`` so the CLI can print one clear line.
    """


@dataclass(frozen=True)
class Highlights:
    """Configurations worth naming in a figure, for one channel.

    Attributes:
        most_accurate: id with the highest mean accuracy over the SNR grid.
        cheapest: id with the fewest total GFLOPs.
        knee: id furthest above the chord from ``cheapest`` to ``most_accurate`` in normalised
            (GFLOPs, accuracy) space, i.e. the best trade-off; ``None`` when the front has no
            interior point.
    """

    most_accurate: str
    cheapest: str
    knee: str | None

    def items(self) -> list[tuple[str, str]]:
        """(label, config id) pairs, without duplicates, in the order they should be drawn."""
        pairs = [("most accurate", self.most_accurate), ("knee", self.knee), ("cheapest", self.cheapest)]
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for label, cid in pairs:
            if cid is not None and cid not in seen:
                seen.add(cid)
                out.append((label, cid))
        return out


# --------------------------------------------------------------------------------------------------
# Pure helpers over the artifact (no matplotlib)
# --------------------------------------------------------------------------------------------------


def channel_kinds(front: FrontArtifact) -> list[str]:
    """The channel kinds the front was built for, in provenance order."""
    return list(front.provenance.channel_kinds)


def config_map(front: FrontArtifact) -> dict[str, FrontConfig]:
    """Configurations by id."""
    return {cfg.id: cfg for cfg in front.configs}


def front_ids(front: FrontArtifact, channel: str, snr_db: float | None = None) -> list[str]:
    """Ids on the Pareto front for a channel (at one SNR, or at any SNR), cheapest first.

    Args:
        front: the artifact.
        channel: channel kind.
        snr_db: a grid SNR; ``None`` takes the union over the whole grid.
    """
    ids: set[str] = set()
    for entry in front.pareto:
        if entry.channel != channel:
            continue
        if snr_db is None or math.isclose(entry.snr_db, snr_db, abs_tol=1e-9):
            ids.update(entry.config_ids)
    by_id = config_map(front)
    return sorted((i for i in ids if i in by_id), key=lambda i: (by_id[i].gflops.total, i))


def accuracy_curve(cfg: FrontConfig, channel: str, split: str) -> tuple[list[float], list[float], list[float]]:
    """(SNRs in dB, mean accuracy in %, stderr in %) of one configuration on one channel and split."""
    points = sorted(getattr(cfg, f"accuracy_{split}")[channel], key=lambda p: p.snr_db)
    return (
        [p.snr_db for p in points],
        [100.0 * p.mean for p in points],
        [100.0 * p.stderr for p in points],
    )


def accuracy_at(cfg: FrontConfig, channel: str, split: str, snr_db: float) -> float:
    """Mean accuracy in % at a grid SNR.

    Raises:
        KeyError: the SNR is not on the configuration's grid.
    """
    for point in getattr(cfg, f"accuracy_{split}")[channel]:
        if math.isclose(point.snr_db, snr_db, abs_tol=1e-9):
            return 100.0 * float(point.mean)
    raise KeyError(f"config {cfg.id!r} has no {split} accuracy at {snr_db} dB on {channel!r}")


def mean_accuracy(cfg: FrontConfig, channel: str, split: str) -> float:
    """Accuracy in % averaged over the SNR grid: one number to rank configurations by."""
    _, means, _ = accuracy_curve(cfg, channel, split)
    return sum(means) / len(means)


def find_highlights(configs: Sequence[FrontConfig], channel: str, split: str) -> Highlights:
    """Pick the most accurate, the cheapest and the knee configuration.

    The knee is the point with the largest distance above the chord joining the cheapest and the
    most accurate point, after scaling GFLOPs and accuracy to [0, 1] so that units do not decide.

    Args:
        configs: the candidates (usually the Pareto set of the channel); at least one.
        channel: channel kind.
        split: ``"val"`` or ``"test"``.
    """
    if not configs:
        raise ValueError("find_highlights needs at least one configuration")
    pts = [(cfg.id, float(cfg.gflops.total), mean_accuracy(cfg, channel, split)) for cfg in configs]
    best = max(pts, key=lambda p: (p[2], -p[1]))
    cheap = min(pts, key=lambda p: (p[1], -p[2]))
    return Highlights(most_accurate=best[0], cheapest=cheap[0], knee=_knee(pts, cheap, best))


def _knee(
    pts: Sequence[tuple[str, float, float]],
    cheap: tuple[str, float, float],
    best: tuple[str, float, float],
) -> str | None:
    """Id of the point furthest above the chord cheap -> best in normalised space, if any."""
    xs = [p[1] for p in pts]
    ys = [p[2] for p in pts]
    dx = (max(xs) - min(xs)) or 1.0
    dy = (max(ys) - min(ys)) or 1.0

    def norm(p: tuple[str, float, float]) -> tuple[float, float]:
        return (p[1] - min(xs)) / dx, (p[2] - min(ys)) / dy

    (x0, y0), (x1, y1) = norm(cheap), norm(best)
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0.0:
        return None
    best_id, best_dist = None, 1e-9
    for p in pts:
        if p[0] in (cheap[0], best[0]):
            continue
        x, y = norm(p)
        # Signed distance, positive above the chord (more accurate than the straight trade-off).
        dist = ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) / length
        if dist > best_dist:
            best_id, best_dist = p[0], dist
    return best_id


def thin_out(ids: Sequence[str], keep: Iterable[str], limit: int) -> list[str]:
    """At most ``limit`` of ``ids`` (sorted), always including ``keep``, the rest spread evenly.

    Example:
        >>> thin_out(["a", "b", "c", "d", "e"], keep=["b"], limit=3)
        ['a', 'b', 'e']
    """
    must = {i for i in keep if i in set(ids)}
    if len(ids) <= limit:
        return list(ids)
    others = [i for i in ids if i not in must]
    need = max(limit - len(must), 0)
    picked = set(must)
    if need == 1:
        picked.add(others[0])
    elif need > 1:
        step = (len(others) - 1) / (need - 1)
        picked.update(others[round(k * step)] for k in range(need))
    return [i for i in ids if i in picked]


@dataclass(frozen=True)
class Convergence:
    """The contents of a build's ``convergence.json``.

    Attributes:
        methods: {method: [(n_evals, hypervolume), ...]} sorted by n_evals.
        objectives: the objectives' names, for the subtitle.
        ref_point: the hypervolume reference point.
    """

    methods: dict[str, list[tuple[int, float]]]
    objectives: list[str]
    ref_point: list[float]


def load_convergence(path: Path) -> Convergence:
    """Read and check ``convergence.json`` (layout in docs/internals.md).

    Raises:
        PlotInputError: the file is missing, not JSON, or not shaped as documented.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlotInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise PlotInputError(f"{path} is not valid JSON: {exc}") from exc
    methods = doc.get("methods") if isinstance(doc, dict) else None
    if not isinstance(methods, dict) or not methods:
        raise PlotInputError(f"{path}: expected an object with a non-empty 'methods' mapping")
    out: dict[str, list[tuple[int, float]]] = {}
    for name, rows in methods.items():
        try:
            out[str(name)] = sorted((int(r["n_evals"]), float(r["hypervolume"])) for r in rows)
        except (TypeError, KeyError, ValueError) as exc:
            raise PlotInputError(
                f"{path}: method {name!r} needs a list of {{n_evals, hypervolume}} rows ({exc!r})"
            ) from exc
    try:
        objectives = [str(o) for o in doc.get("objectives", [])]
        ref_point = [float(v) for v in doc.get("ref_point", [])]
    except (TypeError, ValueError) as exc:
        raise PlotInputError(f"{path}: 'objectives' must be names and 'ref_point' numbers ({exc!r})") from exc
    return Convergence(out, objectives, ref_point)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with constrained layout (room for outside legends)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _snr_colours(grid: Sequence[float]) -> dict[float, Any]:
    """One colour per grid SNR, dark (low SNR) to bright (high SNR)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(grid) - 1, 1)
    return {snr: cmap(0.05 + 0.85 * k / n) for k, snr in enumerate(grid)}


def _channel_title(kind: str) -> str:
    return f"Channel: {CHANNEL_NAMES.get(kind, kind)}"


def _subplots(fig: Figure, n: int, *, sharey: bool = True) -> list[Axes]:
    axes = fig.subplots(1, n, sharey=sharey, squeeze=False)
    return list(axes[0])


def front_figure(front: FrontArtifact, split: str = "test") -> Figure:
    """Accuracy against GFLOPs of the Pareto front, one series per SNR, one panel per channel.

    Marker area is proportional to the tokens sent over the link (the communication cost), so all
    three objectives are visible at once. The unmerged model and ToMe's uniform schedules are drawn
    as reference points to show what the search gained.
    """
    from matplotlib.lines import Line2D

    kinds = channel_kinds(front)
    grid = list(front.provenance.snr_grid_db)
    colours = _snr_colours(grid)
    by_id = config_map(front)
    max_tokens = max(cfg.tokens_sent for cfg in front.configs) or 1

    def area(tokens: float) -> float:
        return 10.0 + 190.0 * tokens / max_tokens

    fig = _new_figure(5.2 * len(kinds) + 2.6, 5.0)
    axes = _subplots(fig, len(kinds))
    for ax, kind in zip(axes, kinds, strict=True):
        for snr in grid:
            _draw_front_series(ax, [by_id[i] for i in front_ids(front, kind, snr)], kind, split, snr,
                               colours[snr], area)
        _draw_comparisons(ax, front, kind, split, grid, colours, area)
        ax.set_title(_channel_title(kind))
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
    fig.legend(handles=kind_handles, title="Configuration", loc="outside right center", fontsize="small")
    size_handles = [
        Line2D([], [], ls="", marker="o", color="0.6", markersize=math.sqrt(area(t)), label=f"{t:g}")
        for t in _nice_levels(max_tokens)
    ]
    fig.legend(handles=size_handles, title="Tokens sent\n(marker area)", loc="outside right lower",
               fontsize="small", labelspacing=1.2)
    fig.suptitle(
        f"Pareto front: accuracy vs compute at each SNR ({SPLIT_NAMES[split]}; "
        "front selected on the validation split)"
    )
    return fig


def _nice_levels(max_tokens: float) -> list[float]:
    """Three round token counts up to ``max_tokens`` for the marker-size legend."""
    levels = sorted({max(1.0, float(round(max_tokens * f))) for f in (0.25, 0.5, 1.0)})
    return levels


def _draw_front_series(
    ax: Axes,
    configs: Sequence[FrontConfig],
    kind: str,
    split: str,
    snr: float,
    colour: Any,
    area: Callable[[float], float],
) -> None:
    """One SNR's front on one panel: sized markers plus the accuracy-vs-GFLOPs staircase."""
    if not configs:
        return
    xs = [float(c.gflops.total) for c in configs]
    ys = [accuracy_at(c, kind, split, snr) for c in configs]
    ex, ey = envelope(list(zip(xs, ys, strict=True)))
    ax.step(ex, ey, where="post", color=colour, lw=1.2, alpha=0.8, zorder=2)
    ax.scatter(xs, ys, s=[area(c.tokens_sent) for c in configs], color=colour, edgecolors="white",
               linewidths=0.6, zorder=3)


def envelope(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The upper-left staircase of (GFLOPs, accuracy) points: the best accuracy for the compute.

    The front is non-dominated in three objectives (accuracy, GFLOPs, channel uses), so joining all
    its points in GFLOPs order zig-zags; the line shows the two plotted objectives only, and the
    markers still show every front point.

    Example:
        >>> envelope([(1.0, 50.0), (2.0, 40.0), (3.0, 70.0)])
        ([1.0, 3.0], [50.0, 70.0])
    """
    xs: list[float] = []
    ys: list[float] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not ys or y > ys[-1]:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _draw_comparisons(
    ax: Axes,
    front: FrontArtifact,
    kind: str,
    split: str,
    grid: Sequence[float],
    colours: dict[float, Any],
    area: Callable[[float], float],
) -> None:
    """Mark the unmerged reference (star) and ToMe's uniform schedules (X) at every SNR."""
    for cfg in front.configs:
        marker = {"reference": "*", "uniform": "X"}.get(cfg.source)
        if marker is None:
            continue
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
    fig = _new_figure(5.4 * len(kinds) + 0.6, 5.0)
    axes = _subplots(fig, len(kinds))
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
                ax.errorbar(snrs, means, yerr=errs, color=palette[label], lw=2.0, marker="o", ms=4,
                            capsize=3, zorder=3,
                            label=f"{label}: {cid} ({cfg.gflops.total:.3g} GFLOPs, {cfg.tokens_sent} tokens)")
        ax.plot([], [], color="0.75", label=f"other Pareto configurations ({len(ids)} in all)")
        ax.set_title(_channel_title(kind))
        ax.set_xlabel("SNR, Es/N0 (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    axes[0].set_ylabel(f"Top-1 accuracy on the {SPLIT_NAMES[split]} (%)")
    fig.suptitle(f"Accuracy vs SNR of the Pareto-front configurations ({SPLIT_NAMES[split]}, ±1 stderr)")
    return fig


@dataclass(frozen=True)
class PolicyGrid:
    """The policy evaluated on an SNR x latency grid for one channel.

    Attributes:
        snrs: SNR axis (dB), length W.
        latencies: latency-budget axis (ms), length H.
        accuracy: H x W predicted accuracy in %, NaN where nothing fits the budget.
        choice: H x W index into ``ids`` of the chosen configuration, -1 where infeasible.
        ids: configuration ids that were chosen somewhere, cheapest first.
        fastest_ms: fastest achievable latency reported by the policy.
    """

    snrs: list[float]
    latencies: list[float]
    accuracy: list[list[float]]
    choice: list[list[int]]
    ids: list[str]
    fastest_ms: float


def policy_grid(front: FrontArtifact, channel: str, *, width: int = 61, height: int = 61) -> PolicyGrid:
    """Ask ``paretoctl.service.policy.select`` for every cell of an SNR x latency grid.

    The SNR axis spans the grid with 10 % padding on each side, so the figure also shows how the
    policy treats SNRs outside the measured grid; the latency axis runs from half the fastest to
    beyond the slowest configuration, so both the infeasible region and saturation are visible.
    """
    from paretoctl.service.policy import select

    grid = list(front.provenance.snr_grid_db)
    pad = 0.1 * ((grid[-1] - grid[0]) or 10.0)
    snrs = _linspace(grid[0] - pad, grid[-1] + pad, width)
    totals = [float(cfg.latency.total_ms) for cfg in front.configs]
    latencies = _linspace(0.5 * min(totals), 1.15 * max(totals), height)
    by_id = config_map(front)
    accuracy: list[list[float]] = []
    chosen: list[list[str | None]] = []
    fastest = min(totals)
    for lat in latencies:
        acc_row: list[float] = []
        id_row: list[str | None] = []
        for snr in snrs:
            decision = select(front, snr, lat, channel=channel)
            fastest = float(decision.fastest_latency_ms)
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
    return PolicyGrid(snrs, latencies, accuracy, choice, ids, fastest)


def _linspace(lo: float, hi: float, n: int) -> list[float]:
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def policy_map_figure(front: FrontArtifact) -> Figure:
    """Heat map of the accuracy the service's policy predicts, over SNR and latency budget.

    Each cell is what ``GET /policy`` would answer, so the figure documents the deployed rule,
    including the region where no configuration meets the budget (hatched grey, labelled) and the
    boundaries where the chosen configuration changes (thin white lines).
    """
    import numpy as np
    from matplotlib.patches import Patch

    kinds = channel_kinds(front)
    fig = _new_figure(5.4 * len(kinds) + 1.4, 5.0)
    axes = _subplots(fig, len(kinds))
    grids = [policy_grid(front, kind) for kind in kinds]
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
            ax.text(0.5, _infeasible_label_y(pg), f"infeasible: no configuration within budget\n"
                    f"(fastest achievable {pg.fastest_ms:.3g} ms)", transform=ax.transAxes,
                    ha="center", va="center", fontsize="small",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.5"})
        ax.add_collection(_choice_boundaries(pg))
        for snr in front.provenance.snr_grid_db:
            ax.axvline(snr, color="white", lw=0.4, ls=":", alpha=0.7)
        ax.set_title(f"{_channel_title(kind)} ({len(pg.ids)} distinct choices)")
        ax.set_xlabel("SNR, Es/N0 (dB)")
    axes[0].set_ylabel("Latency budget (ms, end to end)")
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


def _choice_boundaries(pg: PolicyGrid) -> Any:
    """White segments along cell edges where the chosen configuration changes.

    Drawn from the cell grid itself rather than with ``contour`` on the choice index, because the
    index is categorical: contouring it would draw one line per skipped level at a single boundary.
    """
    from matplotlib.collections import LineCollection

    xs, ys, ch = pg.snrs, pg.latencies, pg.choice
    segments: list[list[tuple[float, float]]] = []
    for i in range(len(ys)):
        y0, y1 = _cell_edges(ys, i)
        for j in range(len(xs)):
            x0, x1 = _cell_edges(xs, j)
            if j + 1 < len(xs) and ch[i][j] != ch[i][j + 1] and min(ch[i][j], ch[i][j + 1]) >= 0:
                segments.append([(x1, y0), (x1, y1)])
            if i + 1 < len(ys) and ch[i][j] != ch[i + 1][j] and min(ch[i][j], ch[i + 1][j]) >= 0:
                segments.append([(x0, y1), (x1, y1)])
    return LineCollection(segments, colors="white", linewidths=0.8)


def _cell_edges(centres: Sequence[float], k: int) -> tuple[float, float]:
    """Lower and upper edge of cell ``k`` of an evenly spaced axis of cell centres."""
    half = 0.5 * (centres[1] - centres[0]) if len(centres) > 1 else 0.5
    return centres[k] - half, centres[k] + half


def _infeasible_label_y(pg: PolicyGrid) -> float:
    """Vertical position (axes fraction) in the middle of the infeasible band at the bottom."""
    lo, hi = pg.latencies[0], pg.latencies[-1]
    top = min(max(pg.fastest_ms, lo), hi)
    return max(0.5 * (top - lo) / ((hi - lo) or 1.0), 0.06)


def convergence_figure(methods: dict[str, list[tuple[int, float]]], subtitle: str = "") -> Figure:
    """Hypervolume against the number of evaluations, one line per search method.

    A higher curve reaches a better front with fewer (expensive) evaluations; BoTorch is drawn
    boldest because it is the method the project ships.
    """
    fig = _new_figure(7.6, 4.8)
    ax = fig.subplots()
    for name in sorted(methods, key=lambda n: (n != "botorch", n)):
        rows = methods[name]
        ax.step([r[0] for r in rows], [r[1] for r in rows], where="post", marker="o", ms=3,
                lw=2.4 if name == "botorch" else 1.4, label=_method_label(name))
    ax.set_xlabel("Number of evaluations (schedules scored)")
    ax.set_ylabel("Dominated hypervolume (higher is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="Search method", loc="lower right")
    title = "Search convergence: hypervolume of the front found so far (validation split)"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize="medium")
    return fig


def _method_label(name: str) -> str:
    return {
        "botorch": "BoTorch qLogNEHVI",
        "sobol": "Sobol random search",
        "nsga2": "NSGA-II",
        "random": "random search",
        "uniform": "ToMe uniform schedules",
    }.get(name, name)


def schedule_figure(front: FrontArtifact, limit: int = MAX_SCHEDULE_LINES) -> Figure:
    """Tokens left after each transformer block for the chosen configurations.

    Shows *where* each schedule merges tokens; the dashed vertical line is the edge/server split,
    where the remaining tokens are sent over the link (so the curve's height there is the
    communication cost).
    """
    by_id = config_map(front)
    kinds = channel_kinds(front)
    union = sorted({i for k in kinds for i in front_ids(front, k)} - {front.reference_config_id},
                   key=lambda i: (by_id[i].gflops.total, i))
    keep = [h for k in kinds if union for _, h in find_highlights([by_id[i] for i in union], k, "val").items()]
    shown = thin_out(union, keep, limit)
    split = int(front.provenance.split_index)
    fig = _new_figure(9.0, 5.0)
    ax = fig.subplots()
    ref = by_id.get(front.reference_config_id)
    if ref is not None:
        ax.plot(*_schedule_xy(ref), color="black", ls="--", lw=1.6, label=f"{ref.id}: reference, no merging")
    for cid in shown:
        cfg = by_id[cid]
        ax.plot(*_schedule_xy(cfg), marker="o", ms=3, lw=1.4,
                label=f"{cid}: {cfg.gflops.total:.3g} GFLOPs, {cfg.tokens_sent} tokens sent")
    ax.axvline(split, color="tab:red", ls="--", lw=1.2)
    ax.text(split, 0.97, f"split: the edge runs blocks 1-{split} and sends the tokens left;\n"
            "the server runs the rest", transform=ax.get_xaxis_transform(), color="tab:red", va="top",
            ha="center", fontsize="small", bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "tab:red"})
    ax.set_xlabel("Transformer blocks processed")
    ax.set_ylabel("Tokens left (class token included)")
    ax.set_xlim(0, int(front.provenance.depth))
    ax.set_ylim(0, 1.15 * max(_schedule_xy(by_id[i])[1][0] for i in [*shown, front.reference_config_id]))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"Per-layer merge schedules: {len(shown)} of the {len(union)} Pareto-front configurations "
                 "(any channel, any SNR)")
    return fig


def _schedule_xy(cfg: FrontConfig) -> tuple[list[int], list[int]]:
    """(blocks processed, tokens left) from 0 blocks (the input) to all of them.

    ``tokens_per_layer`` counts the tokens *entering* each block; block l merges ``r[l]`` of them.
    """
    entering = [int(t) for t in cfg.tokens_per_layer]
    after = [n - int(r) for n, r in zip(entering, cfg.r, strict=True)]
    return list(range(len(entering) + 1)), [entering[0], *after]


# --------------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------------


def save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<fmt>`` for each format and return the paths.

    Files are byte-for-byte reproducible (no date, fixed SVG id salt), so regenerated figures in
    the repository only show up in a diff when they really changed.
    """
    from matplotlib import rc_context

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with rc_context({"svg.hashsalt": "paretoctl"}):
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, metadata=_metadata(fmt))
            paths.append(path)
    return paths


def _metadata(fmt: str) -> dict[str, Any]:
    """Drop the date (SVG) and the software version (PNG) from the files' metadata."""
    return {"Date": None} if fmt == "svg" else {"Software": None}


def plot_front(front: FrontArtifact, out_dir: Path | str, split: str = "test") -> list[Path]:
    """Write every figure that needs only the front artifact; return the paths written.

    Args:
        front: a loaded artifact.
        out_dir: folder to write into (created if missing).
        split: ``"test"`` or ``"val"``, the accuracy shown in the front and SNR figures.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {sorted(SPLIT_NAMES)}, not {split!r}")
    out = Path(out_dir)
    written: list[Path] = []
    written += save(front_figure(front, split), out, "front")
    written += save(accuracy_snr_figure(front, split), out, "accuracy_vs_snr")
    written += save(policy_map_figure(front), out, "policy_map")
    written += save(schedule_figure(front), out, "schedules")
    return written


def plot_path(path: Path | str, out_dir: Path | str, split: str = "test") -> list[Path]:
    """Plot a front file or a build directory (which adds the convergence figure).

    Raises:
        PlotInputError: the path is missing, or the build directory lacks ``front.json`` or has a
            malformed ``convergence.json``.
        paretoctl.service.schema.FrontLoadError: the front is malformed, of the wrong version or has a bad
            checksum (its ``.reason`` says which).
    """
    from paretoctl.service.schema import load_front

    src = Path(path)
    if src.is_dir():
        front_path = src / "front.json"
        if not front_path.is_file():
            raise PlotInputError(f"{src} is a directory but has no front.json (is it a build directory?)")
    elif src.is_file():
        front_path = src
    else:
        raise PlotInputError(f"{src} does not exist")
    front = load_front(front_path)
    conv = src / "convergence.json" if src.is_dir() else None
    # Read everything before drawing, so that a bad input fails fast and leaves no partial output.
    convergence = load_convergence(conv) if conv is not None and conv.is_file() else None
    written = plot_front(front, out_dir, split)
    if convergence is not None:
        subtitle = _convergence_subtitle(convergence.objectives, convergence.ref_point)
        written += save(convergence_figure(convergence.methods, subtitle), Path(out_dir), "convergence")
    return written


def _convergence_subtitle(objectives: Sequence[str], ref_point: Sequence[float]) -> str:
    if not objectives:
        return ""
    text = "objectives: " + ", ".join(objectives)
    if ref_point:
        text += "; reference point: (" + ", ".join(f"{v:g}" for v in ref_point) + ")"
    return text
