"""Which timm ViTs token merging and the analytic cost model support, checked in one place.

Both :mod:`paretoctl.models.patch` and :mod:`paretoctl.models.flops` call :func:`check_patch_embed`,
so a model the cost model cannot price is never patched either (and the reverse).
"""

from __future__ import annotations

from timm.layers import PatchEmbed
from torch import nn

__all__ = ["check_patch_embed", "model_label"]


def model_label(model: nn.Module) -> str:
    """The timm architecture name when timm recorded one, else the class name (for error messages)."""
    cfg = getattr(model, "pretrained_cfg", None)
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    return str(arch) if arch else type(model).__name__


def check_patch_embed(model: nn.Module) -> None:
    """Refuse ViTs whose tokens do not come from one plain patch convolution.

    Hybrid ViTs (timm's ``HybridEmbed``, e.g. ``vit_small_r26_s32_224``: a ResNet stem before the
    transformer) spend most of their compute in a CNN that the analytic cost model does not cover
    (0.22 analytic vs 0.60 counted GFLOPs for that model), so their costs, and every decision made
    from them, would be wrong.

    Raises:
        NotImplementedError: ``model.patch_embed`` is not timm's ``PatchEmbed`` with a ``Conv2d``
            projection; the message names the model and the embedding class.
    """
    embed = getattr(model, "patch_embed", None)
    if type(embed) is not PatchEmbed or not isinstance(embed.proj, nn.Conv2d):
        raise NotImplementedError(
            f"{model_label(model)}: patch embedding {type(embed).__name__} is not supported; token merging "
            "and its cost model need timm's PatchEmbed (one patch convolution), not a hybrid CNN stem"
        )
