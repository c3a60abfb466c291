"""`paretoctl train` and `paretoctl build`: the offline, torch-dependent commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def train(
    config: Path = typer.Option(Path("configs/train_fmnist.yaml"), help="Training YAML config."),
    resume: bool = typer.Option(False, help="Continue from the last epoch checkpoint."),
    epochs: int | None = typer.Option(None, help="Override the number of epochs."),
) -> None:
    """Train the bundled Fashion-MNIST ViT and export its safetensors weights and model card.

    Exit codes: 0 trained; 2 bad config; 130 interrupted (continue with --resume).
    """
    from paretoctl.exitcodes import ExitCode, fail
    from paretoctl.models.train import TrainConfig
    from paretoctl.models.train import train as run_training

    try:
        cfg = TrainConfig.from_yaml(config)
    except (OSError, ValueError, TypeError) as err:
        fail(ExitCode.BAD_INPUT, f"--config {config}: {err}")
    if epochs is not None:
        cfg.epochs = epochs
    try:
        run_training(cfg, resume=resume)
    except KeyboardInterrupt:
        fail(ExitCode.INTERRUPTED, f"interrupted; continue with `paretoctl train --config {config} --resume`")


def _resume_hint(config: Path, out: Path, budget: int | None, seed: int | None) -> str:
    extra = (f" --budget {budget}" if budget is not None else "") + (f" --seed {seed}" if seed is not None else "")
    return f"paretoctl build --config {config} --out {out}{extra} --resume"


def build(
    config: Path = typer.Option(Path("configs/default.yaml"), help="Build YAML config."),
    out: Path = typer.Option(Path("runs/default"), help="Build directory (archive, front.json, ...)."),
    budget: int | None = typer.Option(None, help="Override search.budget (evaluations)."),
    seed: int | None = typer.Option(None, help="Override search.seed."),
    resume: bool = typer.Option(False, help="Continue a build that was interrupted; nothing is repeated."),
) -> None:
    """Search per-layer merge schedules (or, with ``search.space: thresholds``, per-layer similarity
    thresholds for input-adaptive merging) with BoTorch and write the Pareto front artifact.

    Exit codes: 0 written; 2 bad config or arguments (nothing done); 3 could not finish (I/O error, disk
    full, directory locked by another build, corrupt archive); 130 interrupted (resume with --resume).
    """
    import logging

    from rich.console import Console

    from paretoctl.exitcodes import ExitCode, fail
    from paretoctl.optimizer.config import ConfigError, load_config

    # torch logs "No CUDA runtime is found" when a dependency imports its C++-extension helpers; on a
    # CPU-only machine that is expected, not a warning worth a user's attention.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    console = Console(stderr=True)
    try:
        cfg = load_config(config, {"search.budget": budget, "search.seed": seed})
    except ConfigError as err:
        fail(ExitCode.BAD_INPUT, str(err))
    from paretoctl.optimizer.archive import ArchiveError
    from paretoctl.optimizer.build import run_build
    from paretoctl.optimizer.builddir import BuildError, BuildLockedError
    from paretoctl.optimizer.executor import WorkerLost
    from paretoctl.progress import BuildProgress

    try:
        with BuildProgress(console) as progress:
            path = run_build(cfg, out, resume=resume, progress=progress.update, source=str(config))
    except ConfigError as err:
        fail(ExitCode.BAD_INPUT, str(err))
    except (BuildLockedError, ArchiveError, WorkerLost) as err:
        fail(ExitCode.FAILED, str(err))
    except BuildError as err:
        fail(ExitCode.BAD_INPUT, str(err))
    except OSError as err:
        hint = _resume_hint(config, out, budget, seed)
        fail(ExitCode.FAILED, f"{err}; what was recorded is kept, resume with `{hint}` once the cause is fixed")
    except KeyboardInterrupt:
        fail(ExitCode.INTERRUPTED, f"interrupted; what was recorded is kept, resume with "
                                   f"`{_resume_hint(config, out, budget, seed)}`")
    console.print(f"[green]front written:[/green] {path}")
    _print_summary(console, out)


def _print_summary(console: Any, out: Path) -> None:
    """What the front's cap cost the policy (``convergence.json``'s ``front_regret``), and where this
    session's wall time went, stage by stage (its ``seconds``): loading, each search's proposing (GP fit
    + acquisition) and evaluating, the test split, the timing."""
    import json

    try:
        conv = json.loads((out / "convergence.json").read_text())
    except (OSError, ValueError):
        return
    regret = conv.get("front_regret")
    if regret:
        console.print(f"front vs every evaluation, on validation: policy regret inside the region of interest "
                      f"at most {regret['max_roi_points']:.2f} points, mean {regret['mean_roi_points']:.3f} "
                      f"({regret['queries_roi']} budget x channel x SNR queries); FLOPs saved at each loss level "
                      f"at most {regret.get('level_gap_points', 0.0):.1f} points short of the best evaluated")
    screened: dict[str, int] = conv.get("screened", {})
    if any(screened.values()):
        console.print("screening stopped, after their first validation images, candidates clearly outside the "
                      "region: " + ", ".join(f"{tag} {n}" for tag, n in screened.items()))
    seconds: dict[str, float] = conv.get("seconds", {})
    if not seconds:
        return
    stages: dict[str, list[str]] = {}
    for key, value in seconds.items():
        stage, _, what = key.rpartition("/")
        stages.setdefault(stage or key, []).append(f"{what} {value:.0f}")
    console.print(f"time spent this session: {sum(seconds.values()):.0f} s  (" + "; ".join(
        f"{stage}: {', '.join(parts)}" for stage, parts in stages.items()) + ")")


def register(app: typer.Typer) -> None:
    """Add the offline commands to the root app."""
    app.command()(train)
    app.command()(build)
