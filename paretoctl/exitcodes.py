"""The exit codes of every ``paretoctl`` command, and the one way a command reports an error.

The scheme, the same for every command (``docs/cli.md`` repeats it for users):

=====  ================  ===================================================================
code   name              meaning
=====  ================  ===================================================================
0      ``OK``            the command did what was asked
1      ``NEGATIVE``      it ran, and the answer is "no": a check found a mismatch, a policy
                         query has no configuration within the budget
2      ``BAD_INPUT``     nothing was done: bad arguments, an invalid config, front, profile or
                         parameter, a missing file (also Typer's own usage errors)
3      ``FAILED``        the command started and could not finish: I/O error, disk full, an
                         unreachable server, a build directory locked by another build
130    ``INTERRUPTED``   stopped by SIGINT or SIGTERM; a build keeps its state (``--resume``)
=====  ================  ===================================================================

Errors are one line on stderr, ``error: <what is wrong>``, naming the field or file concerned.
"""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import NoReturn

import typer

__all__ = ["ExitCode", "fail"]


class ExitCode(IntEnum):
    """Process exit codes shared by every command (see the module docstring)."""

    OK = 0
    NEGATIVE = 1
    BAD_INPUT = 2
    FAILED = 3
    INTERRUPTED = 130


def fail(code: ExitCode, message: str) -> NoReturn:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    one_line = " ".join(str(message).split())
    print(f"error: {one_line}", file=sys.stderr)
    raise typer.Exit(int(code))
