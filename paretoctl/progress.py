"""Rich progress for long builds: evaluations done, current hypervolume and ETA per phase.

On a terminal, one live bar per phase. Elsewhere (a log file, CI, ``nohup``) rich draws nothing until
the end, so each update is also printed as one plain line: a long build is never silent in a log.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class BuildProgress:
    """A context manager whose ``update(phase, done, total, hypervolume)`` drives one bar per phase."""

    def __init__(self, console: Console | None = None, clock: Callable[[], float] | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("HV {task.fields[hv]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
            # the ETA averages the whole phase: evaluations can be a minute apart, longer than
            # rich's default 30 s window, which then has too few samples and shows no ETA at all
            speed_estimate_period=24 * 3600.0, get_time=clock,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> BuildProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def update(self, phase: str, done: int, total: int, hv: float | None) -> None:
        """Report that ``done`` of ``total`` evaluations of ``phase`` are finished."""
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total, completed=0, hv="-")
        task = self._tasks[phase]
        if hv is None:
            self._progress.update(task, total=total, completed=done)
        else:
            self._progress.update(task, total=total, completed=done, hv=f"{hv:.4f}")
        console = self._progress.console
        if not console.is_terminal:
            state = self._progress.tasks[self._tasks[phase]]
            eta = state.time_remaining
            console.print(f"{phase:<16} {done:>4}/{total:<4} HV {state.fields.get('hv', '-'):<8} "
                          f"elapsed {state.elapsed or 0.0:7.0f} s  ETA {'-' if eta is None else f'{eta:.0f} s'}",
                          highlight=False, soft_wrap=True)
