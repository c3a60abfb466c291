"""Shared matplotlib look of every figure: pyplot-free figures, SNR colours, panel titles.

matplotlib is imported inside the functions, never at module import, so importing
:mod:`paretoctl.plots` costs nothing on the base install (service, SDK).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CHANNEL_NAMES", "channel_title", "new_figure", "snr_colours", "subplots"]

CHANNEL_NAMES: dict[str, str] = {
    "ideal": "ideal (noiseless) link",
    "awgn": "AWGN channel",
    "rayleigh": "Rayleigh block fading",
    "rician": "Rician block fading",
}


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (inches, 110 dpi) with constrained layout (room for outside legends).

    Built with ``matplotlib.figure.Figure`` directly, so no global state or interactive backend is
    involved and drawing is safe from tests and servers.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def snr_colours(grid: Sequence[float]) -> dict[float, Any]:
    """One colour per grid SNR, dark (low SNR) to bright (high SNR)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(grid) - 1, 1)
    return {snr: cmap(0.05 + 0.85 * k / n) for k, snr in enumerate(grid)}


def channel_title(kind: str) -> str:
    """Panel title naming a channel label in words (``rayleigh-digital`` -> "Rayleigh block fading, digital link")."""
    base, digital = kind.removesuffix("-digital"), kind.endswith("-digital")
    name = CHANNEL_NAMES.get(base, base)
    return f"Channel: {name}, digital link" if digital else f"Channel: {name}"


def subplots(fig: Figure, n: int, *, sharey: bool = True) -> list[Axes]:
    """``n`` panels side by side (one per channel)."""
    axes = fig.subplots(1, n, sharey=sharey, squeeze=False)
    return list(axes[0])
