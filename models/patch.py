"""Patch a timm ViT in place so that it merges tokens (ToMe, Bolya et al., ICLR 2023).

:func:`apply_merging` swaps the classes of the model, its blocks and their attention modules for
subclasses that differ only in their forward passes (no new parameters, so state dicts and
checkpoints are unchanged), and stores the schedule as an explicit attribute, ``model.merge_r``, a
tuple with one merge count per block. :func:`remove_merging` swaps the original classes back.

Inside each patched block, as in ToMe:

1. attention runs with *proportional attention*: ``log(size)`` of each key token is added to the
   attention logits, through ``scaled_dot_product_attention``'s additive ``attn_mask`` (shape
   ``[B, 1, 1, N]``), so the fused kernel still runs (before the schedule's first merge all sizes
   are 1 and the zero bias is left out);
2. between attention and MLP, ``r`` tokens are merged by bipartite soft matching on the attention
   keys averaged over heads (:mod:`paretoctl.models.merge`), as size-weighted averages;
3. the MLP runs on the shorter sequence.

The A/B split follows ToMe's convention over the whole sequence (the class token is the first A
token; see :mod:`paretoctl.models.merge` for it and for where cls + dist, registers and models with
no class token go beyond ToMe). Prefix tokens (``model.num_prefix_tokens``: cls, dist, registers)
are never merged and stay at the front. Average pooling becomes size-weighted. Attention pooling
(``global_pool='map'``) and hybrid ViTs (a CNN stem in ``patch_embed``) are not supported.

Example:
    >>> model = timm.create_model("deit_small_patch16_224")           # doctest: +SKIP
    >>> apply_merging(model, constant_r(8, 12, 196))                 # doctest: +SKIP
    >>> set_schedule(model, decreasing_r(8, 12, 196))                # doctest: +SKIP
    >>> remove_merging(model)                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from timm.layers.attention import Attention
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from paretoctl.models.merge import bipartite_soft_matching, match_and_merge, merge_source, merge_weighted
from paretoctl.models.schedule import validate_r
from paretoctl.models.split import (
    SCHEDULE_ATTR,
    THRESHOLD_ATTR,
    TRACE_SOURCE_ATTR,
    TokenState,
    embed_tokens,
    head_forward,
    merge_schedule,
    merge_thresholds,
    run_blocks,
)
from paretoctl.models.support import check_patch_embed
from paretoctl.models.threshold import MERGES_NOTHING, threshold_merge

__all__ = [
    "MergingAttention",
    "MergingBlock",
    "MergingVisionTransformer",
    "MergingVisionTransformerDistilled",
    "apply_merging",
    "get_schedule",
    "get_thresholds",
    "is_patched",
    "remove_merging",
    "set_schedule",
    "set_thresholds",
    "validate_thresholds",
]


def _mean_over_heads(k: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, d]`` -> ``[B, N, d]``, the ToMe merge metric.

    timm's ``k`` is a strided view into the fused qkv output; summing its head slices one by one is
    about twice as fast on CPU as ``k.mean(dim=1)``, which reduces across that awkward stride, at
    batch 64; at batch 1 one ``sum`` (the same additions in the same order) beats the ``H + 2``
    operators of the loop.
    """
    if k.shape[0] == 1:
        return k.sum(dim=1).div_(k.shape[1])
    heads = k.unbind(1)
    total = heads[0] + heads[1] if len(heads) > 1 else heads[0].clone()
    for head in heads[2:]:
        total.add_(head)
    return total.div_(len(heads))


_SKIPPED_IN_EVAL = (nn.Dropout, DropPath)


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, except that an ``Identity`` (or a dropout in eval mode) returns ``x`` uncalled.

    Why: at batch 1 a module call costs about a microsecond however little it does, and a timm block
    calls up to ten pass-through modules (q/k norm, LayerScale, drop path, dropouts); the outputs are
    the same objects either way.
    """
    kind = type(module)
    if kind is nn.Identity or (kind in _SKIPPED_IN_EVAL and not module.training):
        return x
    return module(x)


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm ``Mlp.forward`` with pass-through modules skipped (:func:`_run`); other MLPs are called."""
    if type(mlp) is not Mlp:
        return mlp(x)  # type: ignore[no-any-return]
    x = _run(mlp.drop1, mlp.act(mlp.fc1(x)))
    return _run(mlp.drop2, mlp.fc2(_run(mlp.norm, x)))


class MergingAttention(Attention):
    """timm ``Attention`` with proportional attention that also returns the merge metric."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, need_metric: bool = True,
        queries: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention over ``x`` with an additive key bias.

        Follows timm's ``Attention.forward`` (q/k norm, scale norm, optional gate, dropout) but always
        through ``F.scaled_dot_product_attention``.

        Args:
            x: ``[B, N, D]`` normalised tokens.
            attn_bias: ``[B, 1, 1, N]`` added to every query's logits for each key, ``log(size)`` for
                proportional attention; None for none.
            need_metric: compute the merge metric (skipped in blocks that merge nothing).
            queries: attend from the first ``queries`` tokens only (every token stays a key and a
                value); None for all. Each output row is the one the full attention gives it.

        Returns:
            ``out [B, Q, D]`` (``Q = queries or N``) and ``metric [B, N, head_dim]``, the keys (after
            ``k_norm``) averaged over heads, which bipartite matching compares (None unless ``need_metric``).
        """
        batch, num_tokens, _ = x.shape
        gate = getattr(self, "gate", None)
        gate_value = gate(x).sigmoid() if gate is not None else None
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if queries is not None:
            q = q[:, :, :queries]
            if gate_value is not None:
                gate_value = gate_value[:, :queries]
        q, k = _run(self.q_norm, q), _run(self.k_norm, k)
        if attn_bias is not None and attn_bias.dtype != q.dtype:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.attn_drop.p if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(batch, q.shape[2], self.num_heads * self.head_dim)
        out = _run(self.norm, out)
        if gate_value is not None:
            out = out * gate_value
        out = _run(self.proj_drop, self.proj(out))
        return out, (_mean_over_heads(k) if need_metric else None)


class MergingBlock(Block):
    """timm ``Block`` that merges ``r`` tokens between attention and MLP."""

    attn: MergingAttention

    def forward(  # type: ignore[override]
        self, state: TokenState, r: int = 0, num_prefix: int = 0, prop_attn: bool = True,
        threshold: float | None = None, keep: int | None = None,
    ) -> TokenState:
        """One block with proportional attention, then a merge of ``r`` tokens, then the MLP.

        Args:
            state: ``tokens [B, N, D]``, ``size [B, N, 1]``, optional ``source [B, N, T]``.
            r: tokens to merge away in this block, ``0 <= r <= floor((N - num_prefix) / 2)``.
            num_prefix: protected tokens at the start of the sequence.
            prop_attn: add ``log(size)`` to the attention logits. Callers pass False only while all
                sizes are 1 (no merge upstream), where the bias would be zero anyway.
            threshold: merge by similarity threshold instead of ``r`` (``r`` is then ignored):
                :func:`paretoctl.models.threshold.threshold_merge`; padding tokens have size 0.
            keep: compute only the first ``keep`` tokens' outputs (at most ``num_prefix``), for a last
                block whose head reads no other: the merge never moves or changes a protected prefix
                token, so it is skipped, and each kept token's output is the one the whole block gives.

        Returns:
            The state with ``N - r`` tokens (``keep`` tokens, without sources, when ``keep`` is given).
        """
        x, size, source = state.tokens, state.size, state.source
        bias = size.log().reshape(size.shape[0], 1, 1, -1) if prop_attn else None  # [B, 1, 1, N]
        if keep is not None and not 0 < keep <= num_prefix:
            raise ValueError(f"keep must be in [1, num_prefix={num_prefix}], got {keep}")
        wants_metric = keep is None and (r > 0 if threshold is None else threshold < MERGES_NOTHING)
        attn_out, metric = self.attn(self.norm1(x), bias, need_metric=wants_metric, queries=keep)
        if keep is not None:  # no metric, so no merge below
            x, size, source = x[:, :keep], size[:, :keep], None
        x = x + _run(self.drop_path1, _run(self.ls1, attn_out))
        if threshold is not None:
            if metric is not None:
                x, size, source = threshold_merge(x, size, metric, threshold, num_prefix, source)
        elif metric is not None and source is not None:
            plan = bipartite_soft_matching(metric, r, num_prefix)
            x, size = merge_weighted(x, size, plan)
            source = merge_source(source, plan)
        elif metric is not None:
            x, size = match_and_merge(x, size, metric, r, num_prefix)  # same result, fewer operators
        x = x + _run(self.drop_path2, _run(self.ls2, _mlp(self.mlp, self.norm2(x))))
        return TokenState(tokens=x, size=size, source=source)


def _forward_tokens(model: VisionTransformer, x: torch.Tensor, attn_mask: torch.Tensor | None,
                    is_causal: bool) -> TokenState:
    if attn_mask is not None or is_causal:
        raise NotImplementedError("token merging does not support attn_mask or is_causal")
    return run_blocks(model, embed_tokens(model, x), 0, len(model.blocks))


class MergingVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` whose forward merges tokens with the schedule ``self.merge_r``."""

    merge_r: tuple[int, ...]
    merge_trace_source: bool

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """Images ``[B, C, H, W]`` to logits ``[B, num_classes]``, merging as scheduled."""
        return head_forward(self, _forward_tokens(self, x, attn_mask, is_causal))

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                         is_causal: bool = False) -> torch.Tensor:
        """Images to final-normed tokens ``[B, N_L, D]`` (the sizes are dropped; use ``paretoctl.models.split``)."""
        return self.norm(_forward_tokens(self, x, attn_mask, is_causal).tokens)

    def forward_intermediates(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: intermediate token counts differ per layer under merging."""
        raise NotImplementedError("forward_intermediates is not supported on a token-merging model; "
                                  "use paretoctl.models.split.edge_forward to read intermediate tokens")


class MergingVisionTransformerDistilled(MergingVisionTransformer, VisionTransformerDistilled):
    """DeiT's distilled ViT (cls and dist tokens, two heads) with token merging."""


# Fixed mapping from timm's classes to their merging subclasses (constant, never mutated).
_PATCHED: dict[type[nn.Module], type[nn.Module]] = {
    Attention: MergingAttention,
    Block: MergingBlock,
    VisionTransformer: MergingVisionTransformer,
    VisionTransformerDistilled: MergingVisionTransformerDistilled,
}
_ORIGINAL: dict[type[nn.Module], type[nn.Module]] = {v: k for k, v in _PATCHED.items()}


def is_patched(model: nn.Module) -> bool:
    """Whether :func:`apply_merging` has patched ``model``."""
    return type(model) in (MergingVisionTransformer, MergingVisionTransformerDistilled)


def _as_vit(model: nn.Module) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise NotImplementedError(f"token merging supports timm VisionTransformer models, not {type(model).__name__}")
    return model


def _num_patches(model: VisionTransformer) -> int:
    return int(model.patch_embed.num_patches)


def _check_supported(model: VisionTransformer) -> None:
    """Raise before touching anything if some part of ``model`` cannot be patched."""
    if type(model) not in (VisionTransformer, VisionTransformerDistilled):
        raise NotImplementedError(
            f"token merging supports timm VisionTransformer and VisionTransformerDistilled, "
            f"not the subclass {type(model).__name__}"
        )
    check_patch_embed(model)
    if getattr(model, "attn_pool", None) is not None:
        raise NotImplementedError(
            f"global_pool={model.global_pool!r} (attention pooling) is not supported with token merging: "
            "its pooling attention would need token sizes too; use global_pool='token' or 'avg'"
        )
    for i, block in enumerate(model.blocks):
        if type(block) is not Block:
            raise NotImplementedError(f"block {i} is a {type(block).__name__}; token merging needs timm's Block")
        if type(block.attn) is not Attention:
            raise NotImplementedError(
                f"block {i} attention is a {type(block.attn).__name__}; token merging needs timm's Attention"
            )


def _swap_classes(model: nn.Module, mapping: dict[type[nn.Module], type[nn.Module]]) -> None:
    for module in model.modules():
        new_class = mapping.get(type(module))
        if new_class is not None:
            module.__class__ = new_class


def validate_thresholds(thresholds: Sequence[float], depth: int) -> tuple[float, ...]:
    """Per-block similarity thresholds as a tuple of floats, one per block, none NaN.

    ``+inf`` (or anything ``>= 1``) merges nothing in that block; ``-inf`` (or anything ``< -1``)
    merges ToMe's per-layer maximum.

    Raises:
        ValueError: wrong length, a non-number or NaN (the message names the block).
    """
    values = list(thresholds)
    if len(values) != depth:
        raise ValueError(f"thresholds need one value per block ({depth}), got {len(values)}")
    out = []
    for i, t in enumerate(values):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t != t:
            raise ValueError(f"threshold of block {i} must be a number (not NaN), got {t!r}")
        out.append(float(t))
    return tuple(out)


def apply_merging(model: nn.Module, r: Sequence[int] | None = None, trace_source: bool = False,
                  thresholds: Sequence[float] | None = None) -> nn.Module:
    """Patch a timm ViT in place so that ``model(x)`` merges tokens.

    Calling it again on a patched model only changes the schedule and the tracing flag.

    Args:
        model: a timm ``VisionTransformer`` or ``VisionTransformerDistilled`` made of timm ``Block``s.
        r: tokens to merge in each block; None merges nothing (the model then gives the unpatched
            model's outputs).
        trace_source: keep a source matrix so :func:`paretoctl.models.split.edge_forward` can report which
            patches each token holds.
        thresholds: per-block similarity thresholds for input-adaptive merging
            (:mod:`paretoctl.models.threshold`) instead of a fixed schedule; ``r`` must then be None.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: ``r`` is not a feasible schedule for this model.
        NotImplementedError: attention pooling (``global_pool='map'``), a hybrid (CNN-stem) patch
            embedding, or non-timm blocks/attention.
    """
    vit = _as_vit(model)
    depth = len(vit.blocks)
    if thresholds is not None and r is not None:
        raise ValueError("give a fixed schedule r or similarity thresholds, not both")
    schedule = tuple(validate_r([0] * depth if r is None else r, _num_patches(vit), depth))
    limits = None if thresholds is None else validate_thresholds(thresholds, depth)
    if not is_patched(vit):
        _check_supported(vit)
        _swap_classes(model, _PATCHED)
    setattr(model, SCHEDULE_ATTR, schedule)
    setattr(model, THRESHOLD_ATTR, limits)
    setattr(model, TRACE_SOURCE_ATTR, bool(trace_source))
    return model


def set_schedule(model: nn.Module, r: Sequence[int]) -> None:
    """Change a patched model's per-block merge counts.

    Raises:
        TypeError: the model is not patched.
        ValueError: ``r`` is not a feasible schedule (message names the layer and value).
    """
    if not is_patched(model):
        raise TypeError("set_schedule needs a model patched by apply_merging")
    vit = _as_vit(model)
    setattr(model, SCHEDULE_ATTR, tuple(validate_r(r, _num_patches(vit), len(vit.blocks))))
    setattr(model, THRESHOLD_ATTR, None)


def set_thresholds(model: nn.Module, thresholds: Sequence[float]) -> None:
    """Switch a patched model to input-adaptive merging with these per-block thresholds.

    Raises:
        TypeError: the model is not patched.
        ValueError: not one number per block.
    """
    if not is_patched(model):
        raise TypeError("set_thresholds needs a model patched by apply_merging")
    vit = _as_vit(model)
    depth = len(vit.blocks)
    limits = validate_thresholds(thresholds, depth)
    setattr(model, SCHEDULE_ATTR, (0,) * depth)
    setattr(model, THRESHOLD_ATTR, limits)


def get_thresholds(model: nn.Module) -> tuple[float, ...] | None:
    """A patched model's per-block thresholds, or None when it runs a fixed schedule (or is unpatched)."""
    return merge_thresholds(model)


def get_schedule(model: nn.Module) -> tuple[int, ...]:
    """A patched model's per-block merge counts (all zeros for an unpatched model)."""
    schedule = merge_schedule(model)
    return schedule if schedule is not None else (0,) * len(_as_vit(model).blocks)


def remove_merging(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_merging`: original classes back, schedule attributes gone.

    Returns:
        ``model`` itself (a no-op on an unpatched model).
    """
    _swap_classes(model, _ORIGINAL)
    for attr in (SCHEDULE_ATTR, THRESHOLD_ATTR, TRACE_SOURCE_ATTR):
        if attr in model.__dict__:
            delattr(model, attr)
    return model
