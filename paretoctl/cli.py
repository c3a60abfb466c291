"""The `paretoctl` command line.

Each feature lives in its own module with a ``register(app)`` function; heavy dependencies (torch,
matplotlib) are imported inside the commands, so the base install's commands start fast.
"""

from __future__ import annotations

import importlib
import signal
import threading
from types import FrameType

import typer

app = typer.Typer(
    help="Pareto-optimal token merging for edge ViTs over noisy wireless links.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

FEATURE_MODULES = ("cli_build", "cli_channel", "cli_service", "cli_plot")


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops a command the way Ctrl-C does, so it cleans up and exits 130
    (``paretoctl.exitcodes.ExitCode.INTERRUPTED``)."""
    raise KeyboardInterrupt


@app.callback()
def _root() -> None:
    """Pareto-optimal token merging for edge ViTs over noisy wireless links.

    Exit codes (every command): 0 ok, 1 negative answer, 2 bad input, 3 failed, 130 interrupted.
    """
    # Typer turns KeyboardInterrupt into exit 130; commands that keep state catch it first to say
    # how to continue. Signal handlers can only be installed from the main thread.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as _v

    typer.echo(_v("paretoctl"))


for _name in FEATURE_MODULES:
    importlib.import_module(f"paretoctl.{_name}").register(app)


if __name__ == "__main__":
    app()
