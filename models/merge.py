"""Token merging maths (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023), as pure functions.

Notation used in every docstring:

- ``B`` batch, ``N`` tokens in the sequence, ``C`` channels of whatever is being merged.
- ``P`` protected prefix tokens at the start of the sequence (cls, dist, registers): never merged
  away and never merged into, so merging cannot change them.
- Bipartite soft matching splits the *whole* sequence alternately, as ToMe does: set A holds
  positions 0, 2, 4, ..., set B positions 1, 3, 5, .... A protected token in A is never a source
  (ToMe sets its row of scores to -inf), a protected token in B never a destination (ToMe sets its
  column to -inf); here the protected rows and columns are simply left out of the score matrix,
  which ranks the same edges. With one class token it is the first A token and patch 0 the first B
  token; with cls + dist tokens the dist token is the first B token, exactly as in ToMe.
- ``U = N - P`` unprotected tokens; ``Na`` / ``Nb`` of them fall in A / B (``Na + Nb = U``). Every
  unprotected A token draws an edge to its most similar unprotected B token; the ``r`` A tokens
  with the most similar edges are merged into their B partners, so
  ``r <= floor(U / 2) <= Na`` (ToMe's limit with ``P`` protected tokens).
- After a merge the sequence is ``[prefix (P, unchanged), A tokens kept (Na - r, in their original
  order), B tokens (Nb)]``: ``N - r`` tokens. For a model with one class token (or none) this is
  ToMe's ``cat([unmerged A, B])`` with the class token first.

Where this goes beyond ToMe (its reference covers one class token, optionally a dist token):

- **Distillation token**: ToMe's concatenation would move the dist token (the first B token) behind
  the kept A tokens, where timm's distilled head (which reads token 1) no longer finds it; here
  every protected token stays at its position at the front.
- **Register tokens** (``P`` > number of cls/dist tokens): they are protected like cls/dist, by the
  same rule (their A rows / B columns take no part); ToMe would let them merge.
- **No class token** (``P = 0``, e.g. average pooling): nothing is protected; ToMe sorts the kept A
  tokens back into position order only when there is a class token and otherwise leaves them in
  score order, while here they are always in position order (deterministic and spatially
  interleaved for the next layer's split).
- Average pooling is size-weighted (:mod:`paretoctl.models.split`), so that pooling over merged
  tokens equals pooling over the patches they stand for.

Token *sizes* (how many original patches each token stands for) let merged tokens be size-weighted
averages and feed proportional attention; *sources* trace which original tokens each token holds.

There is no module state: a :class:`MergePlan` carries the indices from the matching to the merges.
Rows are moved with ``index_select``/``index_add_`` on the ``[B * N, C]`` view, which copies whole
rows and is several times faster on CPU than ``gather``/``scatter`` with an expanded index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "MergePlan",
    "bipartite_soft_matching",
    "init_source",
    "match_and_merge",
    "merge_rows",
    "merge_source",
    "merge_tokens",
    "merge_weighted",
    "split_sets",
]

Reduce = Literal["sum", "mean", "amax", "amin", "prod"]


@dataclass(frozen=True)
class MergePlan:
    """Which tokens merge where, for one bipartite soft matching.

    The first three index tensors say it in terms of the sets A and B; the last three are the same
    plan as row numbers of the flattened ``[B * N, C]`` input and ``[B * (N - r), C]`` output, which
    is what the merges use (computed once per plan, so each merge is a handful of row copies). Build
    one with :func:`bipartite_soft_matching` or :meth:`from_sets`.

    Attributes:
        num_prefix: ``P``, protected tokens at the start of the sequence, passed through unchanged.
        unm_idx: ``[B, Na - r]`` int64 positions in set A of the tokens that stay, ascending.
        src_idx: ``[B, r]`` int64 positions in set A of the tokens merged away.
        dst_idx: ``[B, r]`` int64 positions in set B that each ``src_idx`` token merges into.
        keep_rows: ``[B * (N - r)]`` input rows of the output tokens, in output order.
        src_rows: ``[B * r]`` input rows of the tokens merged away.
        dst_rows: ``[B * r]`` output rows of their destinations.
    """

    num_prefix: int
    unm_idx: torch.Tensor
    src_idx: torch.Tensor
    dst_idx: torch.Tensor
    keep_rows: torch.Tensor
    src_rows: torch.Tensor
    dst_rows: torch.Tensor

    @classmethod
    def from_sets(cls, num_prefix: int, num_tokens: int, unm_idx: torch.Tensor, src_idx: torch.Tensor,
                  dst_idx: torch.Tensor) -> MergePlan:
        """A plan from set-A/set-B indices (``[B, *]``, over the unprotected tokens of each set)."""
        batch, r = src_idx.shape
        templates = _row_templates.__wrapped__ if torch.compiler.is_compiling() else _row_templates
        prefix_rows, a_rows, b_rows, b_out = templates(batch, num_tokens, num_prefix, r, src_idx.device)
        keep_rows = torch.cat([prefix_rows, a_rows.gather(1, unm_idx), b_rows], dim=1)
        return cls(
            num_prefix=num_prefix, unm_idx=unm_idx, src_idx=src_idx, dst_idx=dst_idx,
            keep_rows=keep_rows.view(-1),
            src_rows=a_rows.gather(1, src_idx).view(-1),
            dst_rows=(b_out + dst_idx).view(-1),
        )

    @property
    def r(self) -> int:
        """Tokens this plan removes."""
        return int(self.src_idx.shape[1])


@functools.lru_cache(maxsize=256)
def _row_templates(batch: int, num_tokens: int, num_prefix: int, r: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row numbers that depend only on the shapes, computed once per shape (read-only, never mutated).

    Returns:
        ``[B, P]`` input rows of the prefix, ``[B, Na]`` of unprotected A, ``[B, Nb]`` of unprotected
        B, and ``[B, 1]`` the output row of each image's first B token. Built outside inference mode,
        so a plan made later with autograd on can still save them for backward.
    """
    with torch.inference_mode(False):
        rows = torch.arange(batch * num_tokens, device=device).view(batch, num_tokens)
        prefix, a_rows, b_rows = split_sets(rows.unsqueeze(-1), num_prefix)
        num_out = num_tokens - r
        b_out = torch.arange(num_out - b_rows.shape[1], batch * num_out, num_out, device=device).unsqueeze(1)
        return (prefix.squeeze(-1).contiguous(), a_rows.squeeze(-1).contiguous(),
                b_rows.squeeze(-1).contiguous(), b_out)


def split_sets(x: torch.Tensor, num_prefix: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a sequence into the protected prefix and the unprotected tokens of sets A and B (views).

    A holds the even positions of the whole sequence, B the odd ones (ToMe's alternation, the prefix
    included); the prefix's own A and B tokens are protected and left out of both returned sets.

    Args:
        x: ``[B, N, C]``.
        num_prefix: ``P``.

    Returns:
        ``prefix [B, P, C]``, ``a [B, Na, C]`` (even positions ``>= P``), ``b [B, Nb, C]`` (odd
        positions ``>= P``).

    Example:
        >>> prefix, a, b = split_sets(torch.arange(7.0).view(1, 7, 1), num_prefix=1)  # cls = position 0
        >>> a.flatten().tolist(), b.flatten().tolist()
        ([2.0, 4.0, 6.0], [1.0, 3.0, 5.0])
    """
    first_a = num_prefix + num_prefix % 2  # the first even position >= P
    first_b = num_prefix + 1 - num_prefix % 2  # the first odd position >= P
    return x[:, :num_prefix], x[:, first_a::2], x[:, first_b::2]


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_prefix: int) -> MergePlan:
    """Pick the ``r`` most similar A -> B edges by cosine similarity of ``metric``.

    Each unprotected A token keeps only its best unprotected B partner (a max, not a sort, over B);
    the A tokens are then ranked by that best similarity and the top ``r`` become sources (see the
    module docstring for the A/B convention, ToMe's). Ranking uses a stable sort so
    that ties (e.g. identical background patches) resolve the same way on every run.

    Args:
        metric: ``[B, N, c]`` features to compare, e.g. attention keys averaged over heads.
        r: tokens to remove, ``0 <= r <= floor((N - P) / 2)``.
        num_prefix: ``P``, tokens never merged.

    Returns:
        The plan; apply it with :func:`merge_weighted`, :func:`merge_tokens` or :func:`merge_source`.

    Raises:
        ValueError: ``r`` is negative or larger than the matching allows.
    """
    num_tokens = metric.shape[1]
    unprotected = num_tokens - num_prefix
    if r < 0 or r > max(unprotected, 0) // 2:
        raise ValueError(
            f"cannot merge r={r} tokens: {unprotected} unprotected tokens allow at most {max(unprotected, 0) // 2}"
        )
    with torch.no_grad():
        metric = F.normalize(metric, dim=-1)
        _, a, b = split_sets(metric, num_prefix)
        scores = a @ b.transpose(-1, -2)  # [B, Na, Nb] cosine similarities
        best, best_dst = scores.max(dim=-1)  # [B, Na]
        order = torch.sort(best, dim=-1, descending=True, stable=True).indices  # [B, Na]
        src_idx = order[:, :r]
        unm_idx = order[:, r:].sort(dim=-1).values
        dst_idx = best_dst.gather(1, src_idx)
        return MergePlan.from_sets(num_prefix, num_tokens, unm_idx, src_idx, dst_idx)


def match_and_merge(x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int,
                    num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`bipartite_soft_matching` then :func:`merge_weighted`, in fewer operators; equal bit for bit.

    Why: at batch 1 on a CPU each operator costs microseconds whatever its size, and a patched block
    merges in every layer. This path builds no :class:`MergePlan` (no set indices, no dataclass),
    normalises without ``F.normalize``'s extra ``expand``, maps the ranking to row numbers with one
    gather (row numbers of A grow with the A position, so sorting the kept rows sorts the kept
    positions), and reuses the shape-only row templates. Use the plan API when the plan is needed
    (source tracing, other reductions).

    Args:
        x: ``[B, N, C]`` tokens.
        size: ``[B, N, 1]`` float token sizes.
        metric: ``[B, N, c]`` matching features (keys averaged over heads).
        r: tokens to remove, ``0 <= r <= floor((N - P) / 2)``.
        num_prefix: ``P``, tokens never merged.

    Returns:
        ``x [B, N - r, C]`` and ``size [B, N - r, 1]``, exactly as the plan path gives them.

    Raises:
        ValueError: ``r`` is negative or larger than the matching allows.
    """
    batch, num_tokens, channels = x.shape
    unprotected = num_tokens - num_prefix
    if r < 0 or r > max(unprotected, 0) // 2:
        raise ValueError(
            f"cannot merge r={r} tokens: {unprotected} unprotected tokens allow at most {max(unprotected, 0) // 2}"
        )
    if r == 0:
        return x, size
    templates = _row_templates.__wrapped__ if torch.compiler.is_compiling() else _row_templates
    prefix_rows, a_rows, b_rows, b_out = templates(batch, num_tokens, num_prefix, r, x.device)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's values
        _, a, b = split_sets(metric, num_prefix)
        best, best_dst = (a @ b.transpose(-1, -2)).max(dim=-1)  # [B, Na]
        order = torch.sort(best, dim=-1, descending=True, stable=True).indices  # [B, Na]
        ranked_rows = a_rows.gather(1, order)  # input rows of A, best match first
        src_rows = ranked_rows[:, :r].reshape(-1)
        keep_rows = torch.cat([prefix_rows, ranked_rows[:, r:].sort(dim=-1).values, b_rows], dim=1).view(-1)
        dst_rows = (best_dst.gather(1, order[:, :r]) + b_out).view(-1)
    out_x, out_size = merge_rows(x, size, keep_rows, src_rows, dst_rows)
    return out_x.view(batch, -1, channels), out_size.view(batch, -1, 1)


def merge_rows(x: torch.Tensor, size: torch.Tensor, keep_rows: torch.Tensor, src_rows: torch.Tensor,
               dst_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The size-weighted merge on row numbers, shared by the fixed and the threshold paths.

    Args:
        x: ``[B, N, C]`` tokens; size: ``[B, N, 1]`` sizes (viewed as ``[B * N, *]`` rows).
        keep_rows: ``[K]`` input rows of the output tokens, in output order.
        src_rows: ``[S]`` input rows merged away, in the order their updates are applied.
        dst_rows: ``[S]`` output rows of their destinations.

    Returns:
        ``x [K, C]`` and ``size [K, 1]``: each destination the size-weighted mean of itself and its
        sources (see :func:`merge_weighted`), sizes added.
    """
    flat_x, flat_size = x.reshape(-1, x.shape[-1]), size.reshape(-1, 1)
    out_x, out_size = flat_x.index_select(0, keep_rows), flat_size.index_select(0, keep_rows)
    src_x, src_size = flat_x.index_select(0, src_rows), flat_size.index_select(0, src_rows)
    out_size.index_add_(0, dst_rows, src_size)  # destinations' new sizes S_d
    weight = src_size / out_size.index_select(0, dst_rows)  # size_s / S_d
    out_x.index_add_(0, dst_rows, weight * (src_x - out_x.index_select(0, dst_rows)))
    return out_x, out_size


def _rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of ``x [B, N, C]`` viewed as ``[B * N, C]``: ``[B * K]`` row numbers -> ``[B, K, C]``."""
    batch, num_tokens, channels = x.shape
    return x.reshape(batch * num_tokens, channels).index_select(0, rows).view(batch, -1, channels)


def merge_tokens(x: torch.Tensor, plan: MergePlan, reduce: Reduce = "sum") -> torch.Tensor:
    """Apply a plan: each source token is reduced into its destination in set B.

    Args:
        x: ``[B, N, C]``, the sequence the plan was made for (any channel count).
        plan: from :func:`bipartite_soft_matching`.
        reduce: how a destination combines with its sources (``torch.scatter_reduce`` modes,
            destination included).

    Returns:
        ``[B, N - r, C]``: prefix, kept A tokens, then B tokens with the sources reduced in;
        ``x`` itself when ``r == 0``.
    """
    if plan.r == 0:
        return x  # nothing merges: keep the original order rather than regrouping into A and B
    channels = x.shape[-1]
    out = _rows(x, plan.keep_rows)
    index = plan.dst_rows.unsqueeze(-1).expand(-1, channels)
    out.view(-1, channels).scatter_reduce_(0, index, _rows(x, plan.src_rows).view(-1, channels), reduce=reduce)
    return out


def merge_weighted(
    x: torch.Tensor, size: torch.Tensor, plan: MergePlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge tokens into size-weighted means; sizes add.

    A destination ``d`` that absorbs sources ``S`` becomes
    ``(size_d x_d + sum_{s in S} size_s x_s) / (size_d + sum_{s in S} size_s)`` with size
    ``size_d + sum_{s in S} size_s``, so a token always equals the mean of the original patch
    tokens it stands for (as far as the block's updates are linear) and the sizes keep summing to
    the original token count.

    For speed the update touches only the ``r`` source rows: with ``S_d`` the destination's new
    size, ``x_d + sum_s size_s (x_s - x_d) / S_d`` is the same weighted mean, so apart from the one
    row copy that drops the sources, no pass over all ``N x C`` values is needed.

    Args:
        x: ``[B, N, C]`` tokens.
        size: ``[B, N, 1]`` float token sizes (1 for an unmerged token).
        plan: from :func:`bipartite_soft_matching`.

    Returns:
        ``x [B, N - r, C]`` and ``size [B, N - r, 1]``.

    Example:
        >>> x = torch.tensor([[[9.0], [1.0], [2.0], [4.0]]])  # cls, then B=(1, 4), A=(2,)
        >>> size = torch.tensor([[[1.0], [3.0], [1.0], [1.0]]])
        >>> plan = MergePlan.from_sets(1, 4, torch.zeros(1, 0, dtype=torch.long), torch.tensor([[0]]),
        ...                            torch.tensor([[0]]))  # A token 2 merges into B token 1
        >>> x2, size2 = merge_weighted(x, size, plan)
        >>> x2[0, :, 0].tolist(), size2[0, :, 0].tolist()
        ([9.0, 1.25, 4.0], [1.0, 4.0, 1.0])
    """
    if plan.r == 0:
        return x, size
    channels = x.shape[-1]
    out_x = _rows(x, plan.keep_rows)  # [B, N - r, C]
    out_size = _rows(size, plan.keep_rows)  # [B, N - r, 1]
    src_x = x.reshape(-1, channels).index_select(0, plan.src_rows)  # [B * r, C]
    src_size = size.reshape(-1, 1).index_select(0, plan.src_rows)  # [B * r, 1]
    flat_x, flat_size = out_x.view(-1, channels), out_size.view(-1, 1)
    flat_size.index_add_(0, plan.dst_rows, src_size)  # destinations' new sizes S_d
    dst_x = flat_x.index_select(0, plan.dst_rows)  # x_d before the update
    weight = src_size / flat_size.index_select(0, plan.dst_rows)  # size_s / S_d
    flat_x.index_add_(0, plan.dst_rows, weight * (src_x - dst_x))
    return out_x, out_size


def init_source(batch: int, num_tokens: int, device: torch.device | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The source matrix before any merge: every token holds exactly itself.

    Returns:
        ``[batch, num_tokens, num_tokens]`` identity matrices.
    """
    eye = torch.eye(num_tokens, device=device, dtype=dtype)
    return eye.unsqueeze(0).expand(batch, -1, -1).contiguous()


def merge_source(source: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """Trace a merge: a merged token holds the union of its parts' original tokens.

    Args:
        source: ``[B, N, T]`` 0/1, ``source[b, i, t] = 1`` when token ``i`` holds original token ``t``
            (``T`` tokens entered the first block, prefix included).
        plan: from :func:`bipartite_soft_matching`.

    Returns:
        ``[B, N - r, T]`` 0/1.
    """
    return merge_tokens(source, plan, reduce="amax")
