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
    from models.train import TrainConfig
    from models.train import train as run_training

    try:
        cfg = TrainConfig.from_yaml(config)
    except (OSError, ValueError, TypeError) as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err
    if epochs is not None:
        cfg.epochs = epochs
    run_training(cfg, resume=resume)


def register(app: typer.Typer) -> None:
    """Add the offline commands to the root app."""
    app.command()(train)
