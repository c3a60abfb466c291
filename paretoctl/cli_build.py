"""`paretoctl train` and `paretoctl build`: the offline, torch-dependent commands."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    config: Path = typer.Option(Path("configs/train_fmnist.yaml"), help="Training YAML config."),
    resume: bool = typer.Option(False, help="Continue from the last epoch checkpoint."),
    epochs: int | None = typer.Option(None, help="Override the number of epochs."),
) -> None:
    """Train the bundled Fashion-MNIST ViT and export its safetensors weights and model card."""
    from paretoctl.models.train import TrainConfig
    from paretoctl.models.train import train as run_training

    try:
        cfg = TrainConfig.from_yaml(config)
    except (OSError, ValueError, TypeError) as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err
    if epochs is not None:
        cfg.epochs = epochs
    run_training(cfg, resume=resume)




def build(
    config: Path = typer.Option(Path("configs/default.yaml"), help="Build YAML config."),
    out: Path = typer.Option(Path("runs/default"), help="Build directory (archive, front.json, ...)."),
    budget: int | None = typer.Option(None, help="Override search.budget (evaluations)."),
    seed: int | None = typer.Option(None, help="Override search.seed."),
    resume: bool = typer.Option(False, help="Continue a build that was interrupted; nothing is repeated."),
) -> None:
    """Search per-layer merge schedules with BoTorch and write the Pareto front artifact."""
    import logging

    from rich.console import Console

    from paretoctl.optimizer.config import ConfigError, load_config

    # torch logs "No CUDA runtime is found" when a dependency imports its C++-extension helpers; on a
    # CPU-only machine that is expected, not a warning worth a user's attention.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    console = Console(stderr=True)
    try:
        cfg = load_config(config, {"search.budget": budget, "search.seed": seed})
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    from paretoctl.optimizer.build import BuildError, run_build
    from paretoctl.progress import BuildProgress

    try:
        with BuildProgress(console) as progress:
            path = run_build(cfg, out, resume=resume, progress=progress.update,
                             config_text=config.read_text())
    except (BuildError, FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"[green]front written:[/green] {path}")


def register(app: typer.Typer) -> None:
    """Add the offline commands to the root app."""
    app.command()(train)
    app.command()(build)
