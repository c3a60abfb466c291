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


def test_the_eta_holds_when_evaluations_are_minutes_apart() -> None:
    """The ETA averages the whole phase: 60 s per evaluation, 2 of 5 done -> 180 s left."""
    now = [0.0]
    out = io.StringIO()
    with BuildProgress(Console(file=out, force_terminal=False, width=120), clock=lambda: now[0]) as progress:
        progress.update("test split", 0, 5, None)
        for done in (1, 2):
            now[0] += 60.0
            progress.update("test split", done, 5, None)
    last = out.getvalue().splitlines()[2]
    assert last.split("ETA")[1].split() == ["180", "s"], last


def test_a_terminal_gets_live_bars_only() -> None:
    out = io.StringIO()
    with BuildProgress(Console(file=out, force_terminal=True, width=120)) as progress:
        progress.update("botorch", 1, 4, None)
    assert "elapsed" not in out.getvalue()


def test_a_build_ends_with_where_its_time_went(smoke_build_dir) -> None:  # type: ignore[no-untyped-def]
    """The real CLI's last line names every stage with its seconds, and the total is their sum."""
    import json
    import re

    printed = smoke_build_dir.with_name(smoke_build_dir.name + ".stderr").read_text()
    last = " ".join(printed.split("time spent this session:")[-1].split())
    seconds = json.loads((smoke_build_dir / "convergence.json").read_text())["seconds"]
    for stage in ("setup: load", "reference: evaluate", "botorch: propose", "test split: evaluate"):
        assert stage in last, (stage, last)
    total = float(re.match(r"(\d+) s", last).group(1))  # type: ignore[union-attr]
    assert abs(total - sum(seconds.values())) <= 1.0
