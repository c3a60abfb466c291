"""Input-adaptive token merging by per-layer similarity thresholds (Erak et al., arXiv 2509.09955).

With a fixed schedule every image loses ``r_l`` tokens in layer ``l``. With a threshold ``t_l`` an
image loses as many as it can spare: ToMe's bipartite split and matching are unchanged (see
:mod:`paretoctl.models.merge` for the A/B convention), and every unprotected A token whose best
cosine similarity to an unprotected B token *exceeds* ``t_l`` merges into that B token, at most
ToMe's per-layer maximum ``floor(u / 2)`` of them (``u`` the image's unprotected tokens; when more
qualify, the most similar edges win, ranked exactly as ToMe ranks them). So:

- ``t_l >= 1`` merges nothing (a cosine similarity never exceeds 1; the layer skips the matching);
- ``t_l < -1`` merges ToMe's maximum in every image, which is ToMe's maximal fixed schedule;
- in between, the number merged varies per image.

**Batches of images with different token counts** are padded: every image keeps its real tokens
first, in exactly the order it would have alone (``[prefix, kept A, B]``), followed by padding up
to the longest image of the batch. A padding token has **size 0**, which is the whole mask:

- proportional attention adds ``log(size)`` to each key's logits, so padding keys get ``-inf`` and
  no query attends to them (every image keeps at least its prefix or one real token as a key);
- size-weighted average pooling gives padding weight 0 (:func:`paretoctl.models.split.pool_tokens`
  masks max pooling by size as well);
- the matching leaves padding out of both sets (its scores are ``-inf``), and the per-image cap
  counts only real tokens.

Padding rows compute throw-away values (finite: they attend to real keys) and are re-zeroed after
every merge. The per-image result therefore equals evaluating the image alone up to floating-point
reassociation in the batched kernels (same merge decisions and token counts; logits within about
1e-6, tested). Run a single image (batch 1) and there is no padding at all.

Example:
    >>> x, size = threshold_merge(x, size, metric, threshold=0.9, num_prefix=1)   # doctest: +SKIP
    >>> (size[..., 0] > 0).sum(1)   # real tokens left in each image                # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch

from paretoctl.models.merge import merge_rows, split_sets

__all__ = ["MERGES_NOTHING", "real_token_counts", "threshold_merge"]

MERGES_NOTHING = 1.0
"""A threshold at or above this merges nothing: cosine similarities never exceed 1."""


def real_token_counts(size: torch.Tensor) -> torch.Tensor:
    """Real (non-padding) tokens of each image: ``size [B, N, 1]`` -> ``[B]`` int64."""
    return (size[..., 0] > 0).sum(dim=1)


def threshold_merge(
    x: torch.Tensor,
    size: torch.Tensor,
    metric: torch.Tensor,
    threshold: float,
    num_prefix: int,
    source: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Merge every A token more similar than ``threshold`` to its best B partner (capped per image).

    The update is :func:`paretoctl.models.merge.match_and_merge`'s size-weighted mean with the
    sources applied in the same (ranked) order, so with ``threshold < -1`` the result is bit for bit
    ToMe's maximal merge.

    Args:
        x: ``[B, N, C]`` tokens, each image's real tokens first, then padding (size 0).
        size: ``[B, N, 1]`` float token sizes, 0 for padding.
        metric: ``[B, N, c]`` matching features (keys averaged over heads).
        threshold: cosine similarity an edge must exceed to merge (``>= 1``: merge nothing).
        num_prefix: ``P`` protected tokens at the front of every image.
        source: optional ``[B, N, T]`` 0/1 source matrix, merged by union like the tokens.

    Returns:
        ``x [B, N', C]``, ``size [B, N', 1]`` and ``source`` (or None), ``N'`` the longest image's
        real tokens after the merge; padding rows are zero with size 0. An image that merges
        nothing keeps its token order (ToMe's ``r = 0``); one that merges is laid out as
        ``[prefix, kept A, B]``.
    """
    if math.isnan(threshold):
        raise ValueError("a merge threshold must not be NaN")
    if threshold >= MERGES_NOTHING or x.shape[1] - num_prefix < 2:
        return x, size, source  # nothing may merge, or no A-B pair is left
    batch, num_tokens, channels = x.shape
    device = x.device
    valid = size[..., 0] > 0  # [B, N]
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's values
        _, a, b = split_sets(metric, num_prefix)
        _, valid_a, valid_b = split_sets(valid.unsqueeze(-1), num_prefix)
        valid_a, valid_b = valid_a[..., 0], valid_b[..., 0]  # [B, Na], [B, Nb]
        scores = (a @ b.transpose(-1, -2)).masked_fill_(~valid_b[:, None, :], -math.inf)  # [B, Na, Nb]
        best, best_dst = scores.max(dim=-1)  # [B, Na]
        best = best.masked_fill(~valid_a, -math.inf)
        order = torch.sort(best, dim=-1, descending=True, stable=True).indices  # ToMe's ranking
        cap = (valid.sum(dim=1) - num_prefix).clamp_min(0) // 2  # [B] ToMe's per-image maximum
        num_a = best.shape[1]
        ranked_best = best.gather(1, order)
        chosen = (ranked_best > threshold) & valid_a.gather(1, order)
        chosen &= torch.arange(num_a, device=device) < cap[:, None]  # [B, Na] in ranked order
        merged = chosen.sum(dim=1)  # [B]
        # Output order per image: prefix, kept A (position order), B, then what is dropped.
        first_a = num_prefix + num_prefix % 2
        first_b = num_prefix + 1 - num_prefix % 2
        pos = torch.arange(num_tokens, device=device)
        key = pos.expand(batch, num_tokens).clone()
        a_pos, b_pos = pos[first_a::2], pos[first_b::2]
        is_src = torch.zeros(batch, num_a, dtype=torch.bool, device=device).scatter_(1, order, chosen)
        key[:, a_pos] = torch.where(is_src, 4 * num_tokens, num_tokens + a_pos)
        key[:, b_pos] = 2 * num_tokens + b_pos
        # An image that merges nothing keeps its order, as ToMe's r = 0 does (no regrouping into A, B).
        key = torch.where(merged[:, None] > 0, key, pos).masked_fill_(~valid, 4 * num_tokens)
        layout = key.argsort(dim=1, stable=True)  # [B, N] input position of each output slot
        num_out = int((valid.sum(dim=1) - merged).max()) if batch else 0
        keep = layout[:, :num_out]
        out_pos = layout.argsort(dim=1)  # [B, N] output slot of each input position
        row0 = (torch.arange(batch, device=device) * num_tokens)[:, None]
        out0 = (torch.arange(batch, device=device) * num_out)[:, None]
        keep_rows = (keep + row0).reshape(-1)
        ranked_rows = a_pos[order] + row0  # [B, Na] input rows of A, best match first
        src_rows = ranked_rows[chosen]  # image-major, ranked within an image: match_and_merge's order
        dst_pos = b_pos[best_dst.gather(1, order)]  # [B, Na] input position of each ranked token's partner
        dst_rows = (out_pos.gather(1, dst_pos) + out0)[chosen]
        real_out = torch.arange(num_out, device=device) < (valid.sum(dim=1) - merged)[:, None]  # [B, N']
    out_x, out_size = merge_rows(x, size, keep_rows, src_rows, dst_rows)
    mask = real_out.reshape(-1, 1)
    out_x = out_x.mul_(mask).view(batch, num_out, channels)
    out_size = out_size.mul_(mask).view(batch, num_out, 1)
    if source is not None:
        width = source.shape[-1]
        flat_src = source.reshape(-1, width)
        out_src = flat_src.index_select(0, keep_rows)
        index = dst_rows.unsqueeze(-1).expand(-1, width)
        out_src.scatter_reduce_(0, index, flat_src.index_select(0, src_rows), reduce="amax")
        source = out_src.mul_(mask).view(batch, num_out, width)
    return out_x, out_size, source
