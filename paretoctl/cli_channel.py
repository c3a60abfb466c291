"""``paretoctl channel``: the wireless channel simulator's commands.

``paretoctl channel check`` proves the channel conventions (see :mod:`paretoctl.channel_sim.channels`) against
closed-form theory: it simulates BER vs Es/N0 for BPSK/QPSK/16-QAM over AWGN and BPSK/QPSK over
per-symbol Rayleigh fading with zero-forcing, writes one PNG (and the numbers as JSON), prints a
table, and exits 1 if a point strays beyond the statistical tolerance of :mod:`paretoctl.channel_sim.check`.
torch and matplotlib are imported inside the command so that the base CLI starts without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_OUT = Path("runs/channel_check")

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
    """Simulate BER vs SNR over the channels and check it against closed-form theory."""
    import time

    from rich.console import Console

    from paretoctl.channel_sim.check import (
        MIN_EXPECTED_ERRORS,
        Z_MAX,
        plot_points,
        points_as_dicts,
        results_table,
        run_check,
    )

    console = Console()
    start = time.perf_counter()
    points = run_check(samples=samples, seed=seed, device=device)
    png = plot_points(points, out / "ber_check.png")
    (out / "ber_check.json").write_text(json.dumps(
        {"samples": samples, "seed": seed, "device": device, "z_max": Z_MAX,
         "min_expected_errors": MIN_EXPECTED_ERRORS, "points": points_as_dicts(points)}, indent=2) + "\n")
    console.print(results_table(points))
    tested = [p for p in points if p.tested]
    failed = [p for p in tested if not p.ok]
    console.print(f"{len(tested)}/{len(points)} points tested, {len(failed)} outside tolerance; "
                  f"plot: {png} ({time.perf_counter() - start:.1f} s)")
    if not tested:
        console.print(f"[yellow]no point expects >= {MIN_EXPECTED_ERRORS:g} errors; raise --samples[/]")
    if failed:
        console.print("[bold red]channel check FAILED[/]")
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``channel`` sub-app (``channel check``) to the root app."""
    channel_app = typer.Typer(help="Wireless channel simulator: conventions checked against theory.",
                              no_args_is_help=True)
    channel_app.command("check")(check)
    app.add_typer(channel_app, name="channel")
