"""The bundled default model: its architecture (registered with timm) and its shipped weights.

A 12-block ViT for 28x28 grey images. Patch size 4 gives 7x7 = 49 patch tokens plus a cls token.
Depth 12 matches ViT-B/DeiT, so the per-layer merge search has as many knobs as on ImageNet models.
Width is kept small (128, 4 heads of 32, MLP ratio 2) so that training and search fit on two CPU
cores. The weights ship inside the package as safetensors, so a machine with no internet can run
the whole pipeline. Importing this module registers ``vit_fmnist_patch4_28`` with timm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from paretoctl.models.checkpoint import CheckpointError, load_state_strict, read_state_dict

__all__ = [
    "BUNDLED_WEIGHTS",
    "VIT_FMNIST_KWARGS",
    "VIT_FMNIST_NAME",
    "WEIGHTS_DIR",
    "bundled_model_card",
    "load_bundled_weights",
    "vit_fmnist_patch4_28",
]

VIT_FMNIST_NAME = "vit_fmnist_patch4_28"
VIT_FMNIST_KWARGS: dict[str, Any] = dict(
    img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=12, num_heads=4,
    mlp_ratio=2.0,
)
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED_WEIGHTS = WEIGHTS_DIR / f"{VIT_FMNIST_NAME}.safetensors"

# The data config timm's transforms read; mean/std match paretoctl.models.data's normalisation.
PRETRAINED_CFG: dict[str, Any] = dict(
    input_size=(1, 28, 28), mean=(0.2860,), std=(0.3530,), interpolation="bilinear", crop_pct=1.0,
    num_classes=10, license="mit", tag="paretoctl-fmnist",
)


def load_bundled_weights(model: nn.Module) -> None:
    """Load the shipped Fashion-MNIST weights into ``model``.

    Raises:
        CheckpointError: the weights file is missing (says how to train it) or does not fit.
    """
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


@register_model
def vit_fmnist_patch4_28(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for Fashion-MNIST; ``pretrained=True`` loads the checkpoint shipped with paretoctl."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = VisionTransformer(**{**VIT_FMNIST_KWARGS, **kwargs})
    model.pretrained_cfg = dict(PRETRAINED_CFG, architecture=VIT_FMNIST_NAME)  # type: ignore[assignment]
    if pretrained:
        load_bundled_weights(model)
    return model
