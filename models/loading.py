"""Loading models: the bundled default, a timm name with hub weights, or a timm name plus a local file.

A ``ModelSpec`` is what a build config names. The bundled default ships inside the package as
safetensors so that a machine with no internet can run the whole pipeline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

BUNDLED_NAME = "bundled"
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED_WEIGHTS = WEIGHTS_DIR / "vit_fmnist_patch4_28.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the architecture; the message says which."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load.

    Attributes:
        name: a timm model name, or ``"bundled"`` for the shipped Fashion-MNIST ViT.
        checkpoint: a local ``.safetensors``/``.pt``/``.pth`` file with the weights, or None.
        pretrained: download timm's pretrained weights (needs internet); ignored with a checkpoint.
        kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``num_classes``).
    """

    name: str = BUNDLED_NAME
    checkpoint: str | None = None
    pretrained: bool = False
    kwargs: dict[str, Any] | None = None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch pickle (nested under 'model'/'state_dict' is fine)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: does not hold a state dict")
    return obj


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped tensor is an error naming it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}")
        raise CheckpointError(f"{source} does not fit the architecture: " + "; ".join(parts))
    model.load_state_dict(state)


def load_bundled_weights(model: torch.nn.Module) -> None:
    """Load the shipped Fashion-MNIST weights into ``model``."""
    if not BUNDLED_WEIGHTS.is_file():
        raise CheckpointError(
            f"bundled weights not found at {BUNDLED_WEIGHTS}; train them with "
            "`paretoctl train --config configs/train_fmnist.yaml`"
        )
    load_state_strict(model, read_state_dict(BUNDLED_WEIGHTS), str(BUNDLED_WEIGHTS))


def bundled_model_card() -> dict[str, Any]:
    """The facts recorded when the bundled weights were trained (accuracies, command, wall time)."""
    path = WEIGHTS_DIR / "model_card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def export_safetensors(model: torch.nn.Module, path: Path, facts: dict[str, Any]) -> None:
    """Write weights as safetensors plus ``model_card.json`` and ``MODEL_CARD.md`` beside them."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"paretoctl": json.dumps({"model": facts.get("model")})})
    card = {**facts, "weights": path.name, "sha256": file_sha256(path)}
    card["command"] = "paretoctl train --config configs/train_fmnist.yaml"
    (path.parent / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (path.parent / "MODEL_CARD.md").write_text(
        f"# {facts.get('model')}\n\n"
        f"- Data: Fashion-MNIST (MIT), {facts.get('val_size')} validation images carved from the 60k "
        f"training set with seed {facts.get('split_seed')}; the official 10k test set for reporting.\n"
        f"- Command: `{card['command']}`\n"
        f"- Epochs: {facts.get('epochs')}, wall time {facts.get('wall_time_s')} s on {facts.get('machine')}\n"
        f"- Validation accuracy: {100 * float(facts.get('val_acc') or 0):.2f}%\n"
        f"- Test accuracy: {100 * float(facts.get('test_acc') or 0):.2f}%\n"
        f"- Weights: `{path.name}` (safetensors), sha256 `{card['sha256']}`\n"
    )


def create_model(spec: ModelSpec) -> torch.nn.Module:
    """Build the model ``spec`` names, in eval mode, on CPU."""
    import timm

    import paretoctl.models.vit_fmnist  # noqa: F401  (registers the bundled architecture)
    from paretoctl.models.vit_fmnist import VIT_FMNIST_NAME

    kwargs = dict(spec.kwargs or {})
    if spec.name == BUNDLED_NAME:
        model = timm.create_model(VIT_FMNIST_NAME, pretrained=False, **kwargs)
        if spec.checkpoint:
            load_state_strict(model, read_state_dict(Path(spec.checkpoint)), spec.checkpoint)
        else:
            load_bundled_weights(model)
    else:
        use_hub = spec.pretrained and not spec.checkpoint
        try:
            model = timm.create_model(spec.name, pretrained=use_hub, **kwargs)
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise ValueError(f"unknown timm model name {spec.name!r}") from err
            raise
        if spec.checkpoint:
            load_state_strict(model, read_state_dict(Path(spec.checkpoint)), spec.checkpoint)
    return model.eval()


def checkpoint_hash(spec: ModelSpec) -> str | None:
    """SHA-256 of the weights file the spec loads, for provenance (None for hub weights)."""
    if spec.checkpoint:
        return file_sha256(Path(spec.checkpoint))
    if spec.name == BUNDLED_NAME and BUNDLED_WEIGHTS.is_file():
        return file_sha256(BUNDLED_WEIGHTS)
    return None
