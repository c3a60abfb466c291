"""Rendering figures to bytes and writing them, and the two entry points ``plot_front`` / ``plot_path``.

Files are byte-for-byte reproducible (no date, no software version, fixed SVG id salt), so
regenerated figures in the repository only show up in a diff when they really changed. Every figure
is rendered in memory before the first file is written, and each file is replaced atomically, so a
failure half-way never leaves a truncated figure behind.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretoctl.plots.inputs import convergence_subtitle, read_plot_input
from paretoctl.plots.selection import SPLIT_NAMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from paretoctl.plots.inputs import Convergence
    from paretoctl.service.schema import FrontArtifact

__all__ = ["FORMATS", "plot_front", "plot_path", "render", "save"]

FORMATS: tuple[str, ...] = ("png", "svg")
"""File formats written for every figure: PNG for the README, SVG for print."""

Rendered = list[tuple[str, dict[str, bytes]]]
"""(file stem, {format: file bytes}) for each figure, in drawing order."""


def render(fig: Figure, formats: Sequence[str] = FORMATS) -> dict[str, bytes]:
    """The bytes of ``fig`` in each format, reproducible from run to run."""
    from matplotlib import rc_context

    out: dict[str, bytes] = {}
    with rc_context({"svg.hashsalt": "paretoctl"}):
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=_metadata(fmt))
            out[fmt] = buf.getvalue()
    return out


def _metadata(fmt: str) -> dict[str, Any]:
    """Drop the date (SVG) and the software version (PNG) from the files' metadata."""
    return {"Date": None} if fmt == "svg" else {"Software": None}


def _write(rendered: Rendered, out_dir: Path) -> list[Path]:
    """Write ``out_dir/<stem>.<fmt>`` atomically for every rendered file; the paths, in order.

    Raises:
        OSError: the folder or a file cannot be written; the message names it. Files written
            before the failure are whole, the failing one keeps its old content.
    """
    from paretoctl.service.fileio import atomic_write_bytes, ensure_writable_dir

    ensure_writable_dir(out_dir)
    paths: list[Path] = []
    for stem, files in rendered:
        for fmt, data in files.items():
            path = out_dir / f"{stem}.{fmt}"
            try:
                atomic_write_bytes(path, data)
            except OSError as exc:
                raise OSError(exc.errno, f"{path}: {exc.strerror or exc}") from exc
            paths.append(path)
    return paths


def save(fig: Figure, out_dir: Path | str, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<fmt>`` for each format (folder created) and return the paths.

    Raises:
        OSError: the folder cannot be created or written; its message names the folder.
    """
    return _write([(stem, render(fig, formats))], Path(out_dir))


def _check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {sorted(SPLIT_NAMES)}, not {split!r}")


def _render_front(front: FrontArtifact, split: str) -> Rendered:
    """The four figures that need only the front artifact, rendered."""
    from paretoctl.plots.draw_front import accuracy_snr_figure, front_figure
    from paretoctl.plots.draw_policy import policy_map_figure
    from paretoctl.plots.draw_schedule import schedule_figure

    return [
        ("front", render(front_figure(front, split))),
        ("accuracy_vs_snr", render(accuracy_snr_figure(front, split))),
        ("policy_map", render(policy_map_figure(front))),
        ("schedules", render(schedule_figure(front))),
    ]


def _render_convergence(convergence: Convergence) -> Rendered:
    from paretoctl.plots.draw_convergence import convergence_figure

    subtitle = convergence_subtitle(convergence.objectives, convergence.ref_point)
    return [("convergence", render(convergence_figure(convergence.methods, subtitle)))]


def plot_front(front: FrontArtifact, out_dir: Path | str, split: str = "test") -> list[Path]:
    """Write every figure that needs only the front artifact; return the paths written.

    Args:
        front: a loaded artifact.
        out_dir: folder to write into (created if missing).
        split: ``"test"`` or ``"val"``, the accuracy shown in the front and SNR figures.

    Raises:
        ValueError: unknown ``split``.
        OSError: ``out_dir`` cannot be created or written (message names it).
    """
    _check_split(split)
    return _write(_render_front(front, split), Path(out_dir))


def plot_path(path: Path | str, out_dir: Path | str, split: str = "test") -> list[Path]:
    """Plot a front file or a build directory (which adds the convergence figure).

    Everything is read and checked first, then ``out_dir`` is proven writable, then every figure is
    drawn, and only then are files written.

    Raises:
        ValueError: unknown ``split``.
        paretoctl.plots.PlotInputError: the path is missing, or the build directory lacks ``front.json``
            or has a malformed ``convergence.json``.
        paretoctl.service.schema.FrontLoadError: the front is malformed, of the wrong version or has a bad
            checksum (its ``.reason`` says which).
        OSError: ``out_dir`` cannot be created or written (message names it).
    """
    from paretoctl.service.fileio import ensure_writable_dir

    _check_split(split)
    source = read_plot_input(path)
    out = ensure_writable_dir(out_dir)
    rendered = _render_front(source.front, split)
    if source.convergence is not None:
        rendered += _render_convergence(source.convergence)
    return _write(rendered, out)
