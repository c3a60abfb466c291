"""``paretoctl channel``: the wireless channel simulator's commands.

``paretoctl channel check`` proves the channel conventions (see :mod:`paretoctl.channel_sim.channels`) against
closed-form theory: it simulates BER vs Es/N0 for BPSK/QPSK/16-QAM over AWGN and BPSK/QPSK over
per-symbol Rayleigh fading with zero-forcing, writes one PNG (and the numbers as JSON), prints a
table, and judges every point with the statistical tolerance of :mod:`paretoctl.channel_sim.check`.

Exit codes (``paretoctl.exitcodes``): 0 every point tested and within tolerance; 1 a point is outside
tolerance, or a point had too few bits to be judged (an untested point proves nothing); 2 refused
before running (``--samples`` too small to test any point, an unusable ``--device``); 3 the output
folder cannot be written. torch and matplotlib are imported inside the command so that the base CLI
starts without them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from paretoctl.channel_sim.check import BerPoint, CheckSummary

DEFAULT_OUT = Path("runs/channel_check")
MAX_NAMED_POINTS = 4
"""An error line names at most this many points, then says how many more."""

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for ber_check.png and ber_check.json.")]
SamplesOpt = Annotated[int, typer.Option("--samples", min=1, help="Bits simulated per SNR point.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bit and channel draws.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device for the channel, e.g. cpu or cuda.")]


def check(
    out: OutOpt = DEFAULT_OUT,
    samples: SamplesOpt = 4_000_000,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Simulate BER vs SNR over the channels and check it against closed-form theory.

    Exit codes: 0 every point tested and within tolerance; 1 a point outside tolerance or too few
    samples to judge one; 2 refused before running (--samples can test no point, bad --device);
    3 cannot write --out.
    """
    import time

    from rich.console import Console

    from paretoctl.channel_sim.check import (
        DEFAULT_CURVES,
        MIN_EXPECTED_ERRORS,
        Z_MAX,
        plot_points,
        points_as_dicts,
        results_table,
        run_check,
        samples_needed,
        summarise,
    )
    from paretoctl.exitcodes import ExitCode, fail
    from paretoctl.service.fileio import atomic_write_text, ensure_writable_dir

    n_points = sum(len(c.snr_db) for c in DEFAULT_CURVES)
    any_from, all_from = samples_needed(DEFAULT_CURVES)
    if any_from is None or samples < any_from:
        fail(ExitCode.BAD_INPUT, f"--samples {samples} can test none of the {n_points} points: theory expects "
             f"fewer than {MIN_EXPECTED_ERRORS:g} bit errors at each; {_samples_hint(all_from)}")
    _check_device(device)
    try:
        ensure_writable_dir(out)
    except OSError as exc:
        fail(ExitCode.FAILED, f"--out: {exc.strerror or exc}")

    console = Console()
    start = time.perf_counter()
    points = run_check(samples=samples, seed=seed, device=device)
    summary = summarise(points)
    try:
        png = plot_points(points, out / "ber_check.png")
        atomic_write_text(out / "ber_check.json", json.dumps(
            {"samples": samples, "seed": seed, "device": device, "z_max": Z_MAX,
             "min_expected_errors": MIN_EXPECTED_ERRORS, "passed": summary.passed,
             "points_tested": len(summary.tested), "points_failed": len(summary.failed),
             "points": points_as_dicts(points)}, indent=2) + "\n")
    except OSError as exc:
        fail(ExitCode.FAILED, f"cannot write the results to {out}: {exc.strerror or exc}")
    console.print(results_table(points))
    console.print(f"{len(summary.tested)}/{len(points)} points tested, {len(summary.failed)} outside tolerance; "
                  f"plot: {png} ({time.perf_counter() - start:.1f} s)")
    if not summary.passed:
        console.print("[bold red]channel check FAILED[/]")
        fail(ExitCode.NEGATIVE, _failure_line(summary, all_from))


def _failure_line(summary: CheckSummary, all_from: int | None) -> str:
    """One line saying why a run did not pass: points outside tolerance first, then untested ones."""
    parts = []
    if summary.failed:
        parts.append(f"channel check failed: {len(summary.failed)} of {len(summary.tested)} tested points "
                     f"outside tolerance: {_name_points(summary.failed, with_z=True)}")
    if summary.untested:
        parts.append(f"{len(summary.untested)} of {len(summary.points)} points had too few samples to judge "
                     f"({_name_points(summary.untested)}); {_samples_hint(all_from)}")
        if not summary.failed:
            parts[-1] = "channel check incomplete: " + parts[-1]
    return "; ".join(parts)


def _name_points(points: Sequence[BerPoint], *, with_z: bool = False) -> str:
    named = [f"{p.channel}/{p.modulation} at {p.snr_db:g} dB" + (f" (z={p.z:+.1f})" if with_z else "")
             for p in points[:MAX_NAMED_POINTS]]
    more = len(points) - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _samples_hint(all_from: int | None) -> str:
    if all_from is None:
        return "some points can never be tested (their theoretical BER is 0)"
    return f"use --samples >= {all_from} to test every point"


def _check_device(device: str) -> None:
    """Refuse a device torch cannot parse, or CUDA where there is none, before simulating anything."""
    import torch

    from paretoctl.exitcodes import ExitCode, fail

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        fail(ExitCode.BAD_INPUT, f"--device {device!r}: {exc}")
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        fail(ExitCode.BAD_INPUT, f"--device {device!r}: no such CUDA device on this machine")


def register(app: typer.Typer) -> None:
    """Add the ``channel`` sub-app (``channel check``) to the root app."""
    channel_app = typer.Typer(help="Wireless channel simulator: conventions checked against theory.",
                              no_args_is_help=True)
    channel_app.command("check")(check)
    app.add_typer(channel_app, name="channel")
