"""``paretoctl plot``: figures of a front artifact or a build directory.

matplotlib and the plotting code are imported inside the command, so that ``paretoctl --help`` and
the service commands stay fast and work on the base install (without the ``[plot]`` extra).

Exit codes (``paretoctl.exitcodes``): 0 written; 2 bad input, nothing written (missing path, a build
directory without ``front.json``, a malformed, wrong-version or tampered front, a malformed
``convergence.json``, matplotlib missing); 3 the figures could not be written (folder not writable,
disk full).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

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
    Exit codes: 0 written; 2 bad input (nothing written); 3 cannot write the figures.
    """
    from paretoctl.exitcodes import ExitCode, fail

    try:
        import matplotlib  # noqa: F401  (an optional extra: say so before reading anything)
    except ImportError as exc:
        fail(ExitCode.BAD_INPUT, f"plotting needs matplotlib: pip install 'paretoctl[plot]' ({exc})")
    from paretoctl.plots import PlotInputError, front_file, plot_path
    from paretoctl.service.schema import FrontLoadError

    try:
        written = plot_path(source, out, split.value)
    except FrontLoadError as exc:
        fail(ExitCode.BAD_INPUT, f"cannot load the front from {front_file(source)}: {exc.reason}: {exc.message}")
    except PlotInputError as exc:
        fail(ExitCode.BAD_INPUT, str(exc))
    except OSError as exc:
        fail(ExitCode.FAILED, f"cannot write figures to {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {len(written)} files to {out}:")
    for path in written:
        typer.echo(f"  {path}")
