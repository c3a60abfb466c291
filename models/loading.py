"""Loading models: the bundled default, a timm name with hub weights, or a timm name plus a local file.

A ``ModelSpec`` is what a build config names. The bundled default and its shipped weights live in
:mod:`paretoctl.models.vit_fmnist`, the weight-file helpers in :mod:`paretoctl.models.checkpoint`;
both are re-exported here. Imports run one way: checkpoint <- vit_fmnist <- loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# The bundled model (registered with timm on import) and the checkpoint helpers; re-exported here
# because callers load every model through this module.
from paretoctl.models.checkpoint import (
    CheckpointError,
    export_safetensors,
    file_sha256,
    load_state_strict,
    read_state_dict,
)
from paretoctl.models.vit_fmnist import (
    BUNDLED_WEIGHTS,
    VIT_FMNIST_NAME,
    WEIGHTS_DIR,
    bundled_model_card,
    load_bundled_weights,
)

__all__ = [
    "BUNDLED_NAME",
    "BUNDLED_WEIGHTS",
    "WEIGHTS_DIR",
    "CheckpointError",
    "ModelSpec",
    "bundled_model_card",
    "checkpoint_hash",
    "create_model",
    "export_safetensors",
    "file_sha256",
    "load_bundled_weights",
    "load_state_strict",
    "read_state_dict",
]

BUNDLED_NAME = "bundled"


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


def create_model(spec: ModelSpec) -> torch.nn.Module:
    """Build the model ``spec`` names, in eval mode, on CPU."""
    import timm

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
