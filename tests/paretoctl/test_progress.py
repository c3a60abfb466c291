"""Build progress stays visible where rich cannot draw live bars (logs, CI, nohup)."""

from __future__ import annotations

import io

from rich.console import Console

from paretoctl.progress import BuildProgress


def test_every_update_is_a_plain_line_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    with BuildProgress(Console(file=out, force_terminal=False, width=120)) as progress:
        progress.update("botorch", 1, 4, None)
        progress.update("botorch", 2, 4, 0.0123)
        progress.update("test split", 1, 3, None)
    lines = [line.split() for line in out.getvalue().splitlines()[:3]]
    assert [line[:4] for line in lines] == [["botorch", "1/4", "HV", "-"], ["botorch", "2/4", "HV", "0.0123"],
                                            ["test", "split", "1/3", "HV"]]
    assert all("ETA" in line for line in lines)


def test_a_terminal_gets_live_bars_only() -> None:
    out = io.StringIO()
    with BuildProgress(Console(file=out, force_terminal=True, width=120)) as progress:
        progress.update("botorch", 1, 4, None)
    assert "elapsed" not in out.getvalue()
