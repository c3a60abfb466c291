"""Running a timm ViT in two halves: the edge device's blocks and the server's.

The edge embeds the image and runs blocks ``[0, split)``; what crosses the link is a
:class:`TokenState` (tokens plus their sizes, which proportional attention and size-weighted pooling
need). The server runs blocks ``[split, L)``, the final norm, pooling and the head. A model patched by
:func:`paretoctl.models.patch.apply_merging` merges tokens on both sides with the schedule stored on the model
(``model.merge_r``); an unpatched model runs unchanged, with all sizes 1.

This module is also the patched model's own forward pass: ``model(images)`` is exactly
``server_forward(model, edge_forward(model, images, split), split)`` for every ``split``.

Example:
    >>> state = edge_forward(model, images, split=4)      # doctest: +SKIP
    >>> logits = server_forward(model, state, split=4)    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from paretoctl.models.merge import init_source
from paretoctl.models.threshold import real_token_counts

__all__ = [
    "SCHEDULE_ATTR",
    "THRESHOLD_ATTR",
    "TRACE_SOURCE_ATTR",
    "TokenState",
    "check_split",
    "edge_forward",
    "embed_tokens",
    "head_forward",
    "head_reads_first_token_only",
    "merge_schedule",
    "merge_thresholds",
    "pool_tokens",
    "run_blocks",
    "server_forward",
]

SCHEDULE_ATTR = "merge_r"
"""Model attribute holding the per-block merge counts of a patched model (a tuple of ints)."""
THRESHOLD_ATTR = "merge_threshold"
"""Model attribute holding a patched model's per-block similarity thresholds (a tuple of floats), or
None for a fixed schedule (:mod:`paretoctl.models.threshold`)."""
TRACE_SOURCE_ATTR = "merge_trace_source"
"""Model attribute saying whether a patched model traces token sources (a bool)."""


@dataclass
class TokenState:
    """The token sequence between two blocks.

    Attributes:
        tokens: ``[B, N, D]`` token features, prefix tokens (cls, dist, registers) first.
        size: ``[B, N, 1]`` float, how many original tokens each token stands for (all 1 before any
            merge); over the patch tokens it sums to the number of patches.
        source: ``[B, N, T]`` 0/1, which of the ``T`` tokens that entered block 0 each token holds
            (for visualisation), or None when not traced.
    """

    tokens: torch.Tensor
    size: torch.Tensor
    source: torch.Tensor | None = None


def merge_schedule(model: nn.Module) -> tuple[int, ...] | None:
    """The per-block merge counts of a patched model, or None for an unpatched one."""
    r = getattr(model, SCHEDULE_ATTR, None)
    return None if r is None else tuple(r)


def merge_thresholds(model: nn.Module) -> tuple[float, ...] | None:
    """The per-block similarity thresholds of a patched model, or None (fixed schedule or unpatched)."""
    t = getattr(model, THRESHOLD_ATTR, None)
    return None if t is None else tuple(t)


def _depth(model: VisionTransformer) -> int:
    return len(model.blocks)


def check_split(model: VisionTransformer, split: int) -> None:
    """Raise ValueError unless ``split`` is an int in ``0..L`` (``L`` blocks)."""
    depth = _depth(model)
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= depth:
        raise ValueError(f"split must be an integer in 0..{depth} (the model has {depth} blocks), got {split!r}")


def embed_tokens(model: VisionTransformer, images: torch.Tensor) -> TokenState:
    """Patch embedding, position embedding (with cls/dist/register tokens), patch dropout, pre-norm.

    Args:
        model: a timm ``VisionTransformer`` (patched or not).
        images: ``[B, C, H, W]``.

    Returns:
        The state entering block 0: ``N = num_prefix + num_patches`` tokens, all of size 1, and an
        identity source matrix when the model traces sources.
    """
    x = model.patch_embed(images)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    x = model.norm_pre(x)
    batch, num_tokens, _ = x.shape
    size = x.new_ones(batch, num_tokens, 1)
    source = init_source(batch, num_tokens, x.device, x.dtype) if getattr(model, TRACE_SOURCE_ATTR, False) else None
    return TokenState(tokens=x, size=size, source=source)


def run_blocks(model: VisionTransformer, state: TokenState, start: int, end: int,
               record: list[torch.Tensor] | None = None, keep_last: int | None = None) -> TokenState:
    """Run blocks ``[start, end)``; a patched model merges ``model.merge_r[i]`` tokens in block ``i``
    (or, with thresholds, whatever ``model.merge_threshold[i]`` lets each image merge).

    ``record``, when given a list, receives one ``[B]`` int64 tensor per block run: the real tokens
    of each image entering it (patched models only).

    Blocks are called as modules, so forward hooks on them fire (a patched block's output is a
    :class:`TokenState`, an unpatched one's a tensor). Until the schedule's first merge every size is
    1, so the proportional-attention bias (``log 1 = 0``) is left out there: same result, less work.

    ``keep_last`` (patched models, ``start < end``): block ``end - 1`` computes only its first
    ``keep_last`` prefix tokens (``MergingBlock.forward``'s ``keep``), and the state returned holds them.
    """
    schedule = merge_schedule(model)
    blocks = model.blocks
    if keep_last is not None and (schedule is None or start >= end):
        raise ValueError("keep_last needs a patched model and at least one block to run")

    def keep(i: int) -> int | None:
        return keep_last if i == end - 1 else None

    if schedule is None:
        x = state.tokens
        for i in range(start, end):
            x = blocks[i](x)
        return TokenState(tokens=x, size=state.size, source=state.source)
    num_prefix = int(model.num_prefix_tokens)
    thresholds = merge_thresholds(model)
    if thresholds is not None:
        # Input-adaptive merging: sizes may be 1 or padding's 0 anywhere after the first active
        # threshold, so the bias stays on from there (a state that arrives padded keeps it on too).
        active = [t < 1.0 for t in thresholds]
        merged = any(active[:start]) or bool((state.size == 0).any())
        for i in range(start, end):
            if record is not None:
                record.append(real_token_counts(state.size))
            state = blocks[i](state, num_prefix=num_prefix, prop_attn=merged, threshold=thresholds[i], keep=keep(i))
            merged = merged or active[i]
        return state
    merged = any(schedule[:start])  # sizes are all 1 until the schedule's first merge
    for i in range(start, end):
        if record is not None:
            record.append(state.size.new_full((state.size.shape[0],), state.size.shape[1], dtype=torch.long))
        state = blocks[i](state, r=schedule[i], num_prefix=num_prefix, prop_attn=merged, keep=keep(i))
        merged = merged or schedule[i] > 0
    return state


def pool_tokens(x: torch.Tensor, size: torch.Tensor, pool_type: str, num_prefix: int,
                include_prefix: bool = False) -> torch.Tensor:
    """timm's global pooling, with averages weighted by token size.

    A merged token of size ``s`` stands for ``s`` patches, so the size-weighted mean over merged tokens
    is the mean over the patches they replace. Max pooling ignores sizes.

    Args:
        x: ``[B, N, D]`` normalised tokens.
        size: ``[B, N, 1]`` token sizes.
        pool_type: ``'token'``, ``'avg'``, ``'avgmax'``, ``'max'`` or ``''`` (no pooling).
        num_prefix: prefix tokens, left out of the reduction unless ``include_prefix``.
        include_prefix: reduce over the prefix tokens too (timm's ``pool_include_prefix``).

    Returns:
        ``[B, D]`` (``[B, N, D]`` for ``''``).
    """
    if not pool_type:
        return x
    if pool_type == "token":
        return x[:, 0]
    if not include_prefix:
        x, size = x[:, num_prefix:], size[:, num_prefix:]
    mean = (x * size).sum(dim=1) / size.sum(dim=1)
    if pool_type == "avg":
        return mean
    peak = x.masked_fill(size == 0, -math.inf).amax(dim=1)  # padding (size 0) never wins
    if pool_type == "max":
        return peak
    if pool_type == "avgmax":
        return 0.5 * (peak + mean)
    raise NotImplementedError(f"global_pool={pool_type!r} is not supported with token merging")


def head_forward(model: VisionTransformer, state: TokenState) -> torch.Tensor:
    """Final norm, pooling and classifier head.

    An unpatched model (or token/no pooling, which never reads merged tokens' sizes) uses timm's
    own ``forward_head``, so the result is bit-identical to ``model(images)``; a patched model with
    average pooling weights the average by token size.
    """
    x = model.norm(state.tokens)
    pool_type = str(getattr(model, "global_pool", "token"))
    if merge_schedule(model) is None or pool_type in ("token", ""):
        return model.forward_head(x)
    pooled = pool_tokens(x, state.size, pool_type, int(model.num_prefix_tokens),
                         include_prefix=bool(getattr(model, "pool_include_prefix", False)))
    return model.head(model.head_drop(model.fc_norm(pooled)))


def edge_forward(model: VisionTransformer, images: torch.Tensor, split: int,
                 record: list[torch.Tensor] | None = None) -> TokenState:
    """The edge device's part: embedding plus blocks ``[0, split)`` with the model's schedule.

    Args:
        model: a timm ``VisionTransformer``, patched or not.
        images: ``[B, C, H, W]``.
        split: blocks run on the edge, ``0..L``.
        record: optional list that receives each block's entering real-token counts (``[B]`` each).

    Returns:
        The state to transmit: ``tokens [B, N_split, D]``, ``size [B, N_split, 1]``, ``source``.

    Raises:
        ValueError: ``split`` is out of range.
    """
    check_split(model, split)
    return run_blocks(model, embed_tokens(model, images), 0, split, record)


def head_reads_first_token_only(model: VisionTransformer) -> bool:
    """Whether the head reads token 0 alone (class-token pooling, no attention pooling), so the last
    block's other outputs are never used. A subclass with its own head (DeiT's distilled one reads
    two tokens) does not count."""
    return (type(model).forward_head is VisionTransformer.forward_head  # type: ignore[comparison-overlap]
            and getattr(model, "attn_pool", None) is None and str(getattr(model, "global_pool", "")) == "token"
            and int(model.num_prefix_tokens) >= 1)


def server_forward(model: VisionTransformer, state: TokenState, split: int,
                   record: list[torch.Tensor] | None = None, head_only: bool = False) -> torch.Tensor:
    """The server's part: blocks ``[split, L)``, final norm, pooling and head.

    Args:
        model: the same model that ran :func:`edge_forward`.
        state: what the edge sent (possibly after a channel).
        split: the edge's split.
        record: optional list that receives each block's entering real-token counts (``[B]`` each).
        head_only: where the head reads the class token alone (:func:`head_reads_first_token_only`)
            and the model is patched, the last block computes that token only: its attention query,
            output projection and MLP for one row instead of ``N`` (about 8% of an unmerged server
            part of the bundled model). The logits are the whole forward's up to float rounding
            (matrix products of other shapes). Ignored where it does not apply; the GFLOPs convention
            (:mod:`paretoctl.models.flops`) counts the whole block either way.

    Returns:
        ``[B, num_classes]`` logits.

    Raises:
        ValueError: ``split`` is out of range.
    """
    check_split(model, split)
    depth = _depth(model)
    short = head_only and split < depth and merge_schedule(model) is not None and head_reads_first_token_only(model)
    return head_forward(model, run_blocks(model, state, split, depth, record, keep_last=1 if short else None))
