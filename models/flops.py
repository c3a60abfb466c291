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
    matching     2 ceil(u/2) floor(u/2) h      (only when r > 0, or for thresholds where t < 1:
                                               A-set x B-set cosine similarities)
    MLP          2 N' (D F1 + F2 D)

plus the patch embedding ``2 P D C k_h k_w`` (``P`` patches) on the edge and the classifier head(s)
``2 D K`` on the server.

This is the only cost model in paretoctl. :func:`analytic_cost` evaluates it on integer schedules;
:func:`relaxed_cost` evaluates the *same* block formula on continuous token counts as torch tensors,
differentiable for the optimiser's acquisition function, where ``ceil(u/2) floor(u/2)`` becomes
``(u^2 - sin^2(pi u / 2)) / 4`` and the ``r > 0`` switch becomes ``min(1, r)`` (both equal at
integers). :func:`count_flops` measures a model with ``FlopCounterMode`` for comparison.

Hybrid ViTs (a CNN stem in ``patch_embed``) are refused, see :mod:`paretoctl.models.support`.

Example:
    >>> report = analytic_cost(model, constant_r(8, 12, 196), split=4)   # doctest: +SKIP
    >>> report.total_gflops, report.tokens_sent                          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import torch
from timm.layers.attention import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from paretoctl.models.schedule import tokens_after_layers, validate_r
from paretoctl.models.split import merge_schedule
from paretoctl.models.support import check_patch_embed

__all__ = [
    "CostReport",
    "RelaxedCost",
    "ViTShape",
    "analytic_cost",
    "cost_from_shape",
    "count_flops",
    "relaxed_cost",
    "vit_shape",
]

Num = TypeVar("Num", int, torch.Tensor)


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

    @classmethod
    def of(cls, model: Any) -> ViTShape:
        """The shape of a timm ``VisionTransformer`` (same as :func:`vit_shape`)."""
        return vit_shape(model)


def _linear_macs(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0  # nn.Identity (num_classes=0)


def vit_shape(model: VisionTransformer) -> ViTShape:
    """Read a timm ``VisionTransformer``'s sizes (from its first block; all blocks are alike).

    Raises:
        NotImplementedError: attention pooling, a hybrid (CNN-stem) patch embedding, or an MLP without
            ``fc1``/``fc2`` linears.
    """
    check_patch_embed(model)
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


def _block_flops(shape: ViTShape, tokens_in: Num, tokens_out: Num, pairs: Num, merging: Num) -> Num:
    """FLOPs of one block, for integer (analytic) or tensor (relaxed) token counts alike.

    Args:
        shape: the model's sizes.
        tokens_in: ``N`` tokens entering the block, prefix included.
        tokens_out: ``N' = N - r`` tokens leaving it (the MLP runs on these).
        pairs: ``Na x Nb``, the size of the A x B similarity matrix, ``ceil(u/2) floor(u/2)``.
        merging: 1 when the block merges (it then computes the similarities), else 0.
    """
    n, d, a = tokens_in, shape.embed_dim, shape.attn_dim
    qkv_proj_gate = (3 * a + a + (a if shape.gated_attn else 0)) * d
    attention = 2 * n * qkv_proj_gate + 4 * n * n * a
    matching = 2 * pairs * shape.head_dim * merging
    mlp = 2 * tokens_out * (shape.mlp_fc1[0] * shape.mlp_fc1[1] + shape.mlp_fc2[0] * shape.mlp_fc2[1])
    return attention + matching + mlp


def _fixed_flops(shape: ViTShape) -> tuple[int, int]:
    """FLOPs of the patch embedding and of the head(s) on one pooled vector."""
    return 2 * shape.num_patches * shape.patch_macs, 2 * shape.head_macs


def cost_from_shape(shape: ViTShape, r: Sequence[int], split: int,
                    matched: Sequence[bool] | None = None) -> CostReport:
    """:func:`analytic_cost` from the sizes alone (no model needed).

    Args:
        shape: the model's sizes.
        r: tokens merged in each block (for threshold merging: what one image merged there).
        split: blocks run on the edge, ``0..L``.
        matched: per block, whether the matching (A x B similarities) runs there. None: where
            ``r_l > 0`` (a fixed schedule). Threshold merging matches in every block whose
            threshold is below 1, even where an image then merges nothing, so its per-image cost
            passes ``[t < 1 for t in thresholds]``.

    Raises:
        ValueError: infeasible ``r``, ``split`` outside ``0..L``, or ``matched`` of the wrong length.
    """
    schedule = validate_r(r, shape.num_patches, shape.depth)
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= shape.depth:
        raise ValueError(f"split must be an integer in 0..{shape.depth}, got {split!r}")
    if matched is not None and len(matched) != shape.depth:
        raise ValueError(f"matched has {len(matched)} entries but the model has {shape.depth} layers")
    matches = [r_l > 0 for r_l in schedule] if matched is None else [bool(m) for m in matched]
    tokens_out = tokens_after_layers(schedule, shape.num_patches, shape.num_prefix)
    tokens_in = [shape.num_patches + shape.num_prefix, *tokens_out[:-1]]
    per_layer = []
    for n, r_l, match in zip(tokens_in, schedule, matches, strict=True):
        u = n - shape.num_prefix
        per_layer.append(_block_flops(shape, n, n - r_l, ((u + 1) // 2) * (u // 2), int(match)))
    patch, head_one = _fixed_flops(shape)
    final_tokens = tokens_out[-1] if tokens_out else shape.num_patches + shape.num_prefix
    head = head_one * (final_tokens if shape.head_per_token else 1)
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


class RelaxedCost(NamedTuple):
    """:func:`relaxed_cost`'s result: tensors of the batch shape of ``r`` (GFLOPs, tokens)."""

    total_gflops: torch.Tensor
    edge_gflops: torch.Tensor
    server_gflops: torch.Tensor
    tokens_sent: torch.Tensor


def relaxed_cost(shape: ViTShape, r: torch.Tensor, split: int) -> RelaxedCost:
    """The analytic cost on continuous merge counts, differentiable in ``r``.

    Equal to :func:`cost_from_shape` (up to float rounding) wherever ``r`` holds a feasible integer
    schedule; between integers it interpolates smoothly enough for gradient-based optimisation.

    Args:
        shape: the model's sizes.
        r: ``[..., L]`` float tokens merged per block, ``0 <= r_l <= u_l / 2``.
        split: blocks run on the edge, ``0..L``.

    Returns:
        GFLOPs (total, edge, server) and tokens sent (prefix included), each of shape ``r.shape[:-1]``.

    Raises:
        ValueError: ``r``'s last dimension is not ``L``, or ``split`` is outside ``0..L``.
    """
    if r.shape[-1] != shape.depth:
        raise ValueError(f"r has {r.shape[-1]} entries per schedule but the model has {shape.depth} layers")
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= shape.depth:
        raise ValueError(f"split must be an integer in 0..{shape.depth}, got {split!r}")
    patch, head_one = _fixed_flops(shape)
    u = torch.full(r.shape[:-1], float(shape.num_patches), dtype=r.dtype, device=r.device)
    edge = torch.full_like(u, float(patch))
    server = torch.zeros_like(u)
    sent = u + shape.num_prefix
    for layer in range(shape.depth):
        if layer == split:
            sent = u + shape.num_prefix
        r_l = r[..., layer]
        n = u + shape.num_prefix
        pairs = (u * u - torch.sin(0.5 * math.pi * u) ** 2) / 4  # ceil(u/2) floor(u/2) at integers
        flops = _block_flops(shape, n, n - r_l, pairs, r_l.clamp(min=0.0, max=1.0))
        if layer < split:
            edge = edge + flops
        else:
            server = server + flops
        u = u - r_l
    final = u + shape.num_prefix
    if split == shape.depth:
        sent = final
    server = server + head_one * (final if shape.head_per_token else 1.0)
    return RelaxedCost(total_gflops=(edge + server) / 1e9, edge_gflops=edge / 1e9, server_gflops=server / 1e9,
                       tokens_sent=sent)


def count_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs of ``model(images)`` as ``torch.utils.flop_counter.FlopCounterMode`` counts them.

    Attention runs under the math backend of ``scaled_dot_product_attention``: on CPU torch's fused
    kernel has no FLOP formula registered in some versions (2.14 counts nothing for it), whereas
    the math backend decomposes into matrix products that every version counts, ``4 N^2 A`` per
    block as in the analytic model.

    Args:
        model: any module; run without gradients.
        images: its input, ``[B, C, H, W]`` (the count covers the whole batch).

    Returns:
        Total FLOPs (2 x MACs).
    """
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images)
    return int(counter.get_total_flops())
