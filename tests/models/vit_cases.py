"""The timm ViT cases shared by the merging and split tests, and how to build them."""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.layers import LayerScale

import paretoctl.models.vit_fmnist  # noqa: F401  (registers vit_fmnist_patch4_28)

# (timm name, create_model overrides); small image sizes keep every case fast on CPU.
MODEL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("test_vit", dict(img_size=96)),
    ("test_vit2", dict(img_size=96)),  # no cls, 1 register, avg pool, LayerScale
    ("deit_tiny_patch16_224", dict(img_size=96)),
    ("deit3_small_patch16_224", dict(img_size=64)),  # LayerScale, no_embed_class
    ("vit_small_patch14_reg4_dinov2", dict(img_size=56)),  # cls + 4 registers, LayerScale
    ("vit_little_patch16_reg4_gap_256", dict(img_size=64)),  # 4 registers, no cls, avg pool
    ("vit_tiny_patch16_224", dict(img_size=64, qk_norm=True, scale_attn_norm=True)),
    ("vit_tiny_patch16_224", dict(img_size=64, class_token=False, global_pool="avg", no_embed_class=True)),
    ("deit_tiny_distilled_patch16_224", dict(img_size=64)),  # cls + dist, two heads
    ("vit_fmnist_patch4_28", {}),
]
CASE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(MODEL_CASES)]


def make_model(name: str, kwargs: dict[str, Any]) -> Any:
    """Random-init model in eval mode, LayerScale gammas raised so that merging visibly matters."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LayerScale):
                module.gamma.uniform_(0.2, 1.0)
    return model


def make_images(model: Any, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """Random images of the model's input size."""
    gen = torch.Generator().manual_seed(seed)
    height, width = model.patch_embed.img_size
    return torch.randn(batch, model.patch_embed.proj.in_channels, height, width, generator=gen)
