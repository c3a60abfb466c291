"""Reading, checking and writing weight files (safetensors or torch pickles), for any model.

Model-agnostic on purpose: :mod:`paretoctl.models.vit_fmnist` (the bundled model) and
:mod:`paretoctl.models.loading` (model specs) both build on it, and it imports neither, so the
model modules import each other in one direction only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from paretoctl.service.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "export_safetensors", "file_sha256", "load_state_strict", "read_state_dict"]


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the architecture; the message says which."""


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


def export_safetensors(model: torch.nn.Module, path: Path, facts: dict[str, Any]) -> None:
    """Write weights as safetensors plus ``model_card.json`` and ``MODEL_CARD.md`` beside them.

    Each file is written atomically (temp file, fsync, rename), so an interrupted export leaves the
    previous files whole.
    """
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"paretoctl": json.dumps({"model": facts.get("model")})}))
    card = {**facts, "weights": path.name, "sha256": file_sha256(path)}
    card["command"] = "paretoctl train --config configs/train_fmnist.yaml"
    atomic_write_text(path.parent / "model_card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(
        path.parent / "MODEL_CARD.md",
        f"# {facts.get('model')}\n\n"
        f"- Data: Fashion-MNIST (MIT), {facts.get('val_size')} validation images carved from the 60k "
        f"training set with seed {facts.get('split_seed')}; the official 10k test set for reporting.\n"
        f"- Command: `{card['command']}`\n"
        f"- Epochs: {facts.get('epochs')}, wall time {facts.get('wall_time_s')} s on {facts.get('machine')}\n"
        f"- Validation accuracy: {100 * float(facts.get('val_acc') or 0):.2f}%\n"
        f"- Test accuracy: {100 * float(facts.get('test_acc') or 0):.2f}%\n"
        f"- Weights: `{path.name}` (safetensors), sha256 `{card['sha256']}`\n",
    )
