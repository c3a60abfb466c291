"""The `paretoctl` command line.

Each feature lives in its own module with a ``register(app)`` function; heavy dependencies (torch,
matplotlib) are imported inside the commands, so the base install's commands start fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="Pareto-optimal token merging for edge ViTs over noisy wireless links.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

FEATURE_MODULES = ("cli_build", "cli_channel", "cli_service", "cli_plot")


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as _v

    typer.echo(_v("paretoctl"))


for _name in FEATURE_MODULES:
    importlib.import_module(f"paretoctl.{_name}").register(app)


if __name__ == "__main__":
    app()
