"""The bundled default model: a 12-block ViT for 28x28 grey images, registered with timm.

Patch size 4 gives 7x7 = 49 patch tokens plus a cls token. Depth 12 matches ViT-B/DeiT, so the
per-layer merge search has as many knobs as on ImageNet models. Width is kept small (128, 4 heads of 32,
MLP ratio 2) so that training and search fit on two CPU cores.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

VIT_FMNIST_NAME = "vit_fmnist_patch4_28"
VIT_FMNIST_KWARGS: dict[str, Any] = dict(
    img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=12, num_heads=4,
    mlp_ratio=2.0,
)

# The data config timm's transforms read; mean/std match paretoctl.models.data's normalisation.
PRETRAINED_CFG: dict[str, Any] = dict(
    input_size=(1, 28, 28), mean=(0.2860,), std=(0.3530,), interpolation="bilinear", crop_pct=1.0,
    num_classes=10, license="mit", tag="paretoctl-fmnist",
)


@register_model
def vit_fmnist_patch4_28(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for Fashion-MNIST; ``pretrained=True`` loads the checkpoint shipped with paretoctl."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = VisionTransformer(**{**VIT_FMNIST_KWARGS, **kwargs})
    model.pretrained_cfg = dict(PRETRAINED_CFG)  # type: ignore[assignment]
    if pretrained:
        from paretoctl.models.loading import load_bundled_weights

        load_bundled_weights(model)
    return model
