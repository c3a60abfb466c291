"""``paretoctl plot``: figures of a front artifact or a build directory.

matplotlib and the plotting code are imported inside the command, so that ``paretoctl --help`` and
the service commands stay fast and work on the base install (without the ``[plot]`` extra).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer


class Split(StrEnum):
    """Which measured accuracy the front and SNR figures show."""

    test = "test"
    val = "val"


def register(app: typer.Typer) -> None:
    """Add the ``plot`` command to the root app."""
    app.command("plot")(plot)


def plot(
    source: Annotated[
        Path,
        typer.Argument(
            help="A front.json artifact, or a build directory (front.json + convergence.json) from "
            "`paretoctl build`; a build directory adds the hypervolume-convergence figure.",
            show_default=False,
            metavar="FRONT_OR_BUILD_DIR",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the PNG and SVG files (created if missing).",
                     show_default=False, metavar="DIR"),
    ],
    split: Annotated[
        Split, typer.Option(help="Accuracy shown in the front and accuracy-vs-SNR figures.")
    ] = Split.test,
) -> None:
    """Plot the Pareto front, accuracy vs SNR, the policy map, merge schedules and convergence.

    Writes each figure as PNG and SVG into --out and prints the files written.
    """
    try:
        from paretoctl.plots import PlotInputError, plot_path
    except ImportError as exc:  # matplotlib is an optional extra
        _fail(f"plotting needs matplotlib: pip install 'paretoctl[plot]' ({exc})")
    from paretoctl.service.schema import FrontLoadError

    try:
        written = plot_path(source, out, split.value)
    except FrontLoadError as exc:
        _fail(f"cannot load the front from {_front_file(source)}: {exc.reason}: {exc.message}")
    except PlotInputError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write figures to {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {len(written)} files to {out}:")
    for path in written:
        typer.echo(f"  {path}")


def _front_file(source: Path) -> Path:
    """The front file a source refers to (for error messages)."""
    return source / "front.json" if source.is_dir() else source


def _fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1 (no traceback)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)
