"""Commands of this feature; see docs/internals.md. Being written."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the root app (none yet)."""
