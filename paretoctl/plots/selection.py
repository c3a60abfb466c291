"""Which configurations and numbers a figure shows: pure functions over the front artifact.

No matplotlib here (nor anywhere a data module imports), so what the figures show can be tested, and
reused (reports, the dashboard), on the base install. Accuracies come out in percent, GFLOPs as the
artifact stores them (per image, edge + server).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paretoctl.service.schema import FrontArtifact, FrontConfig

__all__ = [
    "SPLIT_NAMES",
    "Highlights",
    "accuracy_at",
    "accuracy_curve",
    "channel_kinds",
    "config_map",
    "envelope",
    "find_highlights",
    "front_ids",
    "is_adaptive",
    "mean_accuracy",
    "nice_levels",
    "thin_out",
]

SPLIT_NAMES: dict[str, str] = {"test": "test split", "val": "validation split"}
"""The accuracy splits a figure can show, and how titles name them."""


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


def channel_kinds(front: FrontArtifact) -> list[str]:
    """The channel kinds the front was built for, in provenance order."""
    return list(front.provenance.channel_kinds)


def is_adaptive(cfg: FrontConfig) -> bool:
    """Whether ``cfg`` merges by per-block similarity thresholds (input-adaptive) rather than a fixed ``r``."""
    return cfg.merging == "thresholds" and cfg.cost_distribution is not None


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


def nice_levels(max_tokens: float) -> list[float]:
    """Three round token counts up to ``max_tokens`` for the marker-size legend.

    Example:
        >>> nice_levels(50)
        [12.0, 25.0, 50.0]
    """
    return sorted({max(1.0, float(round(max_tokens * f))) for f in (0.25, 0.5, 1.0)})
