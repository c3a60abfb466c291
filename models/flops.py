"""Analytic compute cost of a (token-merging) ViT, per layer and per side of the edge/server split.

Convention: **FLOPs = 2 x MACs** of the matrix products and the patch convolution, exactly what
``torch.utils.flop_counter.FlopCounterMode`` counts. Like it, we leave out element-wise work (norms,
GELU, softmax, residual adds, biases, the size-weighted merge's gathers and scatters), which is a few
percent at most. For one image, with ``N`` tokens entering a block (prefix included), ``N' = N - r``
leaving it, ``D`` the embedding width, ``A`` the attention width (heads x head_dim), ``h`` the head
dimension, ``F1``/``F2`` the MLP's hidden widths (fc1 out, fc2 in) and ``u`` the unprotected tokens::

    qkv          2 N D 3A
    gate         2 N D A            (gated attention only)
    q k^T, a v   2 x 2 N^2 A        (fused in scaled_dot_product_attention)
    proj         2 N A D
    matching     2 ceil(u/2) floor(u/2) h      (only when r > 0: A-set x B-set cosine similarities)
    MLP          2 N' (D F1 + F2 D)

plus the patch embedding ``2 P D C k_h k_w`` (``P`` patches) on the edge and the classifier head(s)
``2 D K`` on the server.

Example:
    >>> report = analytic_cost(model, constant_r(8, 12, 196), split=4)   # doctest: +SKIP
    >>> report.total_gflops, report.tokens_sent                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from timm.layers.attention import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from paretoctl.models.schedule import tokens_after_layers, validate_r
from paretoctl.models.split import merge_schedule

__all__ = ["CostReport", "ViTShape", "analytic_cost", "cost_from_shape", "vit_shape"]


@dataclass(frozen=True)
class CostReport:
    """Compute and communication cost of one image.

    Attributes:
        per_layer_gflops: GFLOPs of each block (attention, merge matching, MLP).
        total_gflops: patch embedding + all blocks + head.
        edge_gflops: patch embedding + blocks ``[0, split)``.
        server_gflops: blocks ``[split, L)`` + head.
        tokens_after_layer: tokens (prefix included) leaving each block.
        tokens_sent: tokens (prefix included) entering block ``split``, i.e. crossing the link.
    """

    per_layer_gflops: list[float]
    total_gflops: float
    edge_gflops: float
    server_gflops: float
    tokens_after_layer: list[int]
    tokens_sent: int


@dataclass(frozen=True)
class ViTShape:
    """The sizes of a ViT that its FLOPs depend on.

    Attributes:
        embed_dim: ``D``.
        attn_dim: ``A``, query/key/value width (heads x head_dim).
        head_dim: ``h``.
        mlp_fc1: ``(D, F1)`` in/out of the first MLP linear.
        mlp_fc2: ``(F2, D)`` in/out of the second MLP linear.
        depth: number of blocks ``L``.
        num_patches: patch tokens.
        num_prefix: cls/dist/register tokens.
        patch_macs: multiply-accumulates of the patch embedding per patch (``D C k_h k_w``).
        head_macs: multiply-accumulates of the classifier head(s) per pooled vector.
        gated_attn: whether attention has a gate linear.
        head_per_token: whether the head runs on every token (``global_pool=''``).
    """

    embed_dim: int
    attn_dim: int
    head_dim: int
    mlp_fc1: tuple[int, int]
    mlp_fc2: tuple[int, int]
    depth: int
    num_patches: int
    num_prefix: int
    patch_macs: int
    head_macs: int
    gated_attn: bool = False
    head_per_token: bool = False


def _linear_macs(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0  # nn.Identity (num_classes=0)


def vit_shape(model: VisionTransformer) -> ViTShape:
    """Read a timm ``VisionTransformer``'s sizes (from its first block; all blocks are alike).

    Raises:
        NotImplementedError: attention pooling, or an MLP without ``fc1``/``fc2`` linears.
    """
    if getattr(model, "attn_pool", None) is not None:
        raise NotImplementedError("analytic cost does not cover attention pooling (global_pool='map')")
    block = model.blocks[0]
    attn, mlp = block.attn, block.mlp
    if not isinstance(attn, Attention):
        raise NotImplementedError(f"analytic cost needs timm's Attention, got {type(attn).__name__}")
    fc1, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)
    if not isinstance(fc1, nn.Linear) or not isinstance(fc2, nn.Linear):
        raise NotImplementedError(f"analytic cost needs an MLP with fc1/fc2 linears, got {type(mlp).__name__}")
    conv = model.patch_embed.proj
    patch_macs = int(conv.weight.numel()) if isinstance(conv, nn.Conv2d) else 0
    head_macs = _linear_macs(model.head)
    head_dist = getattr(model, "head_dist", None)
    if head_dist is not None:
        head_macs += _linear_macs(head_dist)
    return ViTShape(
        embed_dim=int(model.embed_dim),
        attn_dim=attn.qkv.out_features // 3,
        head_dim=attn.head_dim,
        mlp_fc1=(fc1.in_features, fc1.out_features),
        mlp_fc2=(fc2.in_features, fc2.out_features),
        depth=len(model.blocks),
        num_patches=int(model.patch_embed.num_patches),
        num_prefix=int(model.num_prefix_tokens),
        patch_macs=patch_macs,
        head_macs=head_macs,
        gated_attn=getattr(attn, "gate", None) is not None,
        head_per_token=not getattr(model, "global_pool", "token"),
    )


def _block_flops(shape: ViTShape, tokens_in: int, r: int) -> int:
    """FLOPs of one block that receives ``tokens_in`` tokens and merges ``r`` of them."""
    n, d, a = tokens_in, shape.embed_dim, shape.attn_dim
    attention = 2 * n * d * 3 * a + 4 * n * n * a + 2 * n * a * d
    if shape.gated_attn:
        attention += 2 * n * d * a
    matching = 0
    if r > 0:
        unprotected = n - shape.num_prefix
        matching = 2 * ((unprotected + 1) // 2) * (unprotected // 2) * shape.head_dim
    n_out = n - r
    mlp = 2 * n_out * (shape.mlp_fc1[0] * shape.mlp_fc1[1] + shape.mlp_fc2[0] * shape.mlp_fc2[1])
    return attention + matching + mlp


def cost_from_shape(shape: ViTShape, r: Sequence[int], split: int) -> CostReport:
    """:func:`analytic_cost` from the sizes alone (no model needed).

    Raises:
        ValueError: infeasible ``r`` or ``split`` outside ``0..L``.
    """
    schedule = validate_r(r, shape.num_patches, shape.depth)
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= shape.depth:
        raise ValueError(f"split must be an integer in 0..{shape.depth}, got {split!r}")
    tokens_out = tokens_after_layers(schedule, shape.num_patches, shape.num_prefix)
    tokens_in = [shape.num_patches + shape.num_prefix, *tokens_out[:-1]]
    per_layer = [_block_flops(shape, n, r_l) for n, r_l in zip(tokens_in, schedule, strict=True)]
    patch = 2 * shape.num_patches * shape.patch_macs
    final_tokens = tokens_out[-1] if tokens_out else shape.num_patches + shape.num_prefix
    head = 2 * shape.head_macs * (final_tokens if shape.head_per_token else 1)
    edge = patch + sum(per_layer[:split])
    server = sum(per_layer[split:]) + head
    sent = tokens_in[split] if split < shape.depth else final_tokens
    return CostReport(
        per_layer_gflops=[f / 1e9 for f in per_layer],
        total_gflops=(edge + server) / 1e9,
        edge_gflops=edge / 1e9,
        server_gflops=server / 1e9,
        tokens_after_layer=tokens_out,
        tokens_sent=sent,
    )


def analytic_cost(model: VisionTransformer, r: Sequence[int] | None, split: int) -> CostReport:
    """Per-image GFLOPs (FLOPs = 2 x MACs, as ``FlopCounterMode`` counts) and tokens sent.

    Args:
        model: a timm ``VisionTransformer`` (patched or not; only its sizes are read).
        r: tokens merged in each block; None takes the model's own schedule (zeros if unpatched).
        split: blocks run on the edge, ``0..L``.

    Returns:
        The :class:`CostReport` for one image.

    Raises:
        ValueError: infeasible ``r`` or ``split`` outside ``0..L``.
    """
    shape = vit_shape(model)
    if r is None:
        r = merge_schedule(model) or (0,) * shape.depth
    return cost_from_shape(shape, r, split)
