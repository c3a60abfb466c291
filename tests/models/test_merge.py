"""Merge maths on hand-built tensors, with expected values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from paretoctl.models.merge import (
    MergePlan,
    bipartite_soft_matching,
    init_source,
    match_and_merge,
    merge_source,
    merge_tokens,
    merge_weighted,
    split_sets,
)

# Case 1: one class token, five patch tokens. ToMe's alternation runs over the whole sequence:
# A = positions 0 (cls, protected), 2, 4; B = positions 1, 3, 5.
# The cls metric equals token 1's exactly: if cls took part, its edge (1.0) would be the best of all.
METRIC_1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.1, 2.0], [1.0, 0.9]]])
# Cosine similarities, unprotected A x B (t1, t3, t5):
#   a0 = t2: (0.7071, 0.7071, 0.9983)    a1 = t4: (0.0499, 0.9988, 0.7053)
# Best edges: a1 -> b1 (t4 -> t3, 0.9988), a0 -> b2 (t2 -> t5, 0.9983).
X_1 = torch.tensor([[[10.0, -10.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0], [5.0, -5.0]]])
SIZE_1 = torch.tensor([[[1.0], [1.0], [2.0], [1.0], [3.0], [2.0]]])


@pytest.mark.parametrize(
    ("num_prefix", "a", "b"),
    [
        (0, [0, 2, 4, 6], [1, 3, 5, 7]),
        (1, [2, 4, 6], [1, 3, 5, 7]),  # cls is A's first token (protected), patch 0 is B's first
        (2, [2, 4, 6], [3, 5, 7]),  # cls + dist: dist is B's first token (protected)
        (3, [4, 6], [3, 5, 7]),
    ],
)
def test_split_sets_alternate_over_the_whole_sequence(num_prefix: int, a: list[int], b: list[int]) -> None:
    x = torch.arange(8.0).view(1, 8, 1)
    prefix, got_a, got_b = split_sets(x, num_prefix)
    assert prefix.flatten().tolist() == list(range(num_prefix))
    assert got_a.flatten().tolist() == a
    assert got_b.flatten().tolist() == b


def test_matching_hand_built_r1() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=1, num_prefix=1)
    assert plan.r == 1
    assert plan.src_idx.tolist() == [[1]]
    assert plan.dst_idx.tolist() == [[1]]
    assert plan.unm_idx.tolist() == [[0]]
    assert plan.keep_rows.tolist() == [0, 2, 1, 3, 5]  # cls, kept A (t2), then B (t1, t3, t5)


def test_matching_hand_built_r2() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    assert plan.src_idx.tolist() == [[1, 0]]
    assert plan.dst_idx.tolist() == [[1, 2]]
    assert plan.unm_idx.tolist() == [[]]
    # The same plan as sequence rows: keep 0 (cls), then B = 1, 3, 5; tokens 4 and 2 go into
    # output rows 2 (token 3) and 3 (token 5).
    assert plan.keep_rows.tolist() == [0, 1, 3, 5]
    assert plan.src_rows.tolist() == [4, 2]
    assert plan.dst_rows.tolist() == [2, 3]


def test_protected_dist_token_is_never_a_destination() -> None:
    # cls + dist; the dist token (position 1, B's first) is every A token's closest match.
    metric = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.5], [1.0, 0.2], [0.5, 1.0]]])
    plan = bipartite_soft_matching(metric, r=1, num_prefix=2)
    # unprotected A = t2, t4; unprotected B = t3, t5. t2 -> t3: cos 0.9345; t4 -> t3: 0.9648
    # (unprotected, both would pick dist instead: 0.995 and 0.981).
    assert plan.src_rows.tolist() == [4] and plan.keep_rows.tolist() == [0, 1, 2, 3, 5]
    assert plan.dst_rows.tolist() == [3]


def test_plan_rows_offset_by_batch() -> None:
    plan = bipartite_soft_matching(METRIC_1.repeat(2, 1, 1), r=2, num_prefix=1)
    # batch 1's rows are batch 0's plus 6 input rows (keep, src) or 4 output rows (dst)
    assert plan.keep_rows.tolist() == [0, 1, 3, 5, 6, 7, 9, 11]
    assert plan.src_rows.tolist() == [4, 2, 10, 8]
    assert plan.dst_rows.tolist() == [2, 3, 6, 7]
    x, size = merge_weighted(X_1.repeat(2, 1, 1), SIZE_1.repeat(2, 1, 1), plan)
    torch.testing.assert_close(x[1], x[0])
    assert size[:, :, 0].tolist() == [[1.0, 1.0, 4.0, 4.0]] * 2
    torch.testing.assert_close(x[0, :, 0], torch.tensor([10.0, 1.0, 3.75, 3.5]))


def test_merge_weighted_hand_computed() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    x, size = merge_weighted(X_1, SIZE_1, plan)
    # cls 10 (size 1); b0 = token 1 (size 1) unchanged;
    # b1 = tokens 3 and 4: (1*3 + 3*4) / 4 = 3.75, size 4;  b2 = tokens 5 and 2: (2*5 + 2*2) / 4 = 3.5, size 4.
    expected = torch.tensor([[[10.0, -10.0], [1.0, -1.0], [3.75, -3.75], [3.5, -3.5]]])
    torch.testing.assert_close(x, expected)
    assert size.flatten().tolist() == [1.0, 1.0, 4.0, 4.0]


def test_merge_source_hand_computed() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    source = merge_source(init_source(1, 6), plan)
    expected = torch.tensor(
        [[[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1]]], dtype=torch.float32
    )
    torch.testing.assert_close(source, expected)


def test_two_sources_into_one_destination_without_prefix() -> None:
    # No prefix: A = t0, t2; B = t1, t3. Both A tokens are closest to t1.
    metric = torch.tensor([[[1.0, 0.1], [1.0, 0.0], [1.0, -0.1], [0.0, 1.0]]])
    x = torch.tensor([[[2.0], [4.0], [6.0], [8.0]]])
    size = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    plan = bipartite_soft_matching(metric, r=2, num_prefix=0)
    assert plan.dst_idx.tolist() == [[0, 0]]
    merged, merged_size = merge_weighted(x, size, plan)
    # (2*1 + 4*2 + 6*3) / 6 = 28/6, size 6; t3 unchanged.
    torch.testing.assert_close(merged, torch.tensor([[[28.0 / 6.0], [8.0]]]))
    assert merged_size.flatten().tolist() == [6.0, 4.0]


def test_merge_tokens_reduce_modes() -> None:
    x = torch.tensor([[[9.0], [1.0], [2.0], [4.0]]])  # cls 9; unprotected A = (2,); B = (1, 4)
    plan = MergePlan.from_sets(1, 4, unm_idx=torch.zeros(1, 0, dtype=torch.long), src_idx=torch.tensor([[0]]),
                               dst_idx=torch.tensor([[0]]))
    assert plan.keep_rows.tolist() == [0, 1, 3] and plan.src_rows.tolist() == [2]
    assert plan.dst_rows.tolist() == [1]
    assert merge_tokens(x, plan, "sum").flatten().tolist() == [9.0, 3.0, 4.0]
    assert merge_tokens(x, plan, "amax").flatten().tolist() == [9.0, 2.0, 4.0]
    assert merge_tokens(x, plan, "mean").flatten().tolist() == [9.0, 1.5, 4.0]


def test_r_zero_is_identity() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=0, num_prefix=1)
    x, size = merge_weighted(X_1, SIZE_1, plan)
    assert x is X_1 and size is SIZE_1


@pytest.mark.parametrize("r", [-1, 3])
def test_matching_rejects_infeasible_r(r: int) -> None:
    with pytest.raises(ValueError, match=f"r={r}"):
        bipartite_soft_matching(METRIC_1, r=r, num_prefix=1)


def _brute_force_plan(metric: torch.Tensor, r: int, num_prefix: int) -> list[tuple[int, int]]:
    """(source, destination) sequence positions of the r best edges, by explicit loops.

    ToMe's convention: A = even, B = odd positions of the whole sequence; protected prefix tokens
    are never sources (A) or destinations (B).
    """
    m = metric / metric.norm(dim=-1, keepdim=True)
    n = metric.shape[0]
    a_pos = [i for i in range(num_prefix, n) if i % 2 == 0]
    b_pos = [i for i in range(num_prefix, n) if i % 2 == 1]
    edges = []
    for i in a_pos:
        sims = [float(m[i] @ m[j]) for j in b_pos]
        best = max(range(len(b_pos)), key=lambda k: sims[k])
        edges.append((sims[best], i, b_pos[best]))
    edges.sort(key=lambda e: -e[0])
    return sorted((i, j) for _, i, j in edges[:r])


@pytest.mark.parametrize(("num_prefix", "num_tokens", "r"),
                         [(0, 10, 5), (1, 12, 3), (1, 13, 6), (5, 14, 4), (2, 9, 1), (2, 12, 5)])
def test_matching_agrees_with_brute_force(num_prefix: int, num_tokens: int, r: int) -> None:
    gen = torch.Generator().manual_seed(num_tokens)
    metric = torch.randn(3, num_tokens, 6, generator=gen)
    plan = bipartite_soft_matching(metric, r=r, num_prefix=num_prefix)
    first_a, first_b = num_prefix + num_prefix % 2, num_prefix + 1 - num_prefix % 2
    for b in range(3):
        got = sorted(
            (first_a + 2 * int(s), first_b + 2 * int(d))
            for s, d in zip(plan.src_idx[b], plan.dst_idx[b], strict=True)
        )
        assert got == _brute_force_plan(metric[b], r, num_prefix)
        kept = set(plan.unm_idx[b].tolist()) | set(plan.src_idx[b].tolist())
        assert kept == set(range(len(range(first_a, num_tokens, 2))))


@pytest.mark.parametrize("num_prefix", [0, 1, 5])
def test_merges_conserve_mass_size_and_prefix(num_prefix: int) -> None:
    gen = torch.Generator().manual_seed(1)
    batch, n, c = 4, 37, 8
    x = torch.randn(batch, n, c, generator=gen, dtype=torch.float64)
    size = torch.ones(batch, n, 1, dtype=torch.float64)
    source = init_source(batch, n, dtype=torch.float64)
    patches = n - num_prefix
    for r in (10, 7, 5, 3):
        metric = torch.randn(batch, x.shape[1], 4, generator=gen, dtype=torch.float64)
        plan = bipartite_soft_matching(metric, r, num_prefix)
        mass_before = (x * size).sum(dim=1)
        new_x, new_size = merge_weighted(x, size, plan)
        source = merge_source(source, plan)
        assert new_x.shape == (batch, x.shape[1] - r, c)
        torch.testing.assert_close((new_x * new_size).sum(dim=1), mass_before)  # sum of size * x is invariant
        torch.testing.assert_close(new_size[:, num_prefix:].sum(dim=(1, 2)),
                                   torch.full((batch,), float(patches), dtype=torch.float64))
        assert torch.equal(new_x[:, :num_prefix], x[:, :num_prefix])
        assert torch.equal(new_size[:, :num_prefix], torch.ones(batch, num_prefix, 1, dtype=torch.float64))
        # Every token's size is the number of original tokens it holds; each original token is held once.
        torch.testing.assert_close(source.sum(dim=-1, keepdim=True), new_size)
        assert torch.equal(source.sum(dim=1), torch.ones(batch, n, dtype=torch.float64))
        x, size = new_x, new_size


def test_merge_weighted_gradients() -> None:
    """The in-place row updates must keep autograd right (ToMe also trains with merging)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    size = (torch.rand(2, 9, 1, generator=gen, dtype=torch.float64) + 0.5).requires_grad_(True)
    plan = bipartite_soft_matching(torch.randn(2, 9, 4, generator=gen), r=3, num_prefix=2)
    assert torch.autograd.gradcheck(lambda x_, s_: merge_weighted(x_, s_, plan), (x, size))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("num_prefix", "num_tokens", "r"),
                         [(0, 10, 5), (1, 50, 6), (1, 13, 6), (5, 14, 4), (2, 9, 1), (1, 12, 0)])
def test_match_and_merge_equals_the_plan_path_bit_for_bit(batch: int, num_prefix: int, num_tokens: int,
                                                          r: int) -> None:
    """The fused path the patched blocks use must give exactly the plan path's tokens and sizes,
    ties included (the metric repeats rows, so several A tokens share their best similarity)."""
    gen = torch.Generator().manual_seed(num_tokens + r)
    metric = torch.randn(batch, num_tokens, 6, generator=gen)
    metric[:, 4::3] = metric[:, 2:3]  # identical tokens: tied edges, resolved by the stable sort
    x = torch.randn(batch, num_tokens, 8, generator=gen)
    size = torch.randint(1, 4, (batch, num_tokens, 1), generator=gen).float()
    want_x, want_size = merge_weighted(x, size, bipartite_soft_matching(metric, r, num_prefix))
    got_x, got_size = match_and_merge(x, size, metric, r, num_prefix)
    assert torch.equal(got_x, want_x)
    assert torch.equal(got_size, want_size)


def test_match_and_merge_rejects_infeasible_r_and_keeps_gradients() -> None:
    with pytest.raises(ValueError, match="cannot merge r=3 tokens: 5 unprotected tokens allow at most 2"):
        match_and_merge(X_1, SIZE_1, METRIC_1, r=3, num_prefix=1)
    x = X_1.double().requires_grad_(True)
    size = SIZE_1.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x_, s_: match_and_merge(x_, s_, METRIC_1, 2, 1), (x, size))
    merged, merged_size = match_and_merge(X_1, SIZE_1, METRIC_1, r=2, num_prefix=1)
    # hand-worked in the module's case 1: t4 -> t3 ((3 + 3 * 4) / 4 = 3.75), t2 -> t5 ((2 * 5 + 2 * 2) / 4)
    assert merged[0, :, 0].tolist() == [10.0, 1.0, 3.75, 3.5]
    assert merged_size[0, :, 0].tolist() == [1.0, 1.0, 4.0, 4.0]
