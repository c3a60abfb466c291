"""Merge maths on hand-built tensors, with expected values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from paretoctl.models.merge import (
    MergePlan,
    bipartite_soft_matching,
    init_source,
    merge_source,
    merge_tokens,
    merge_weighted,
    split_sets,
)

# Case 1: one prefix token, five patch tokens. A = tokens 1, 3, 5; B = tokens 2, 4.
# The prefix's metric equals token 1's exactly: if the prefix took part it would be the best match.
METRIC_1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 2.0], [1.0, 0.9]]])
# Cosine similarities A x B:  a0=t1: (0.707, 0.0)   a1=t3: (0.707, 1.0)   a2=t5: (0.9985, 0.669)
# Best edges: a1 -> b1 (1.0), a2 -> b0 (0.9985), a0 -> b0 (0.707).
X_1 = torch.tensor([[[10.0, -10.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0], [5.0, -5.0]]])
SIZE_1 = torch.tensor([[[1.0], [1.0], [2.0], [1.0], [3.0], [2.0]]])


def test_split_sets_alternates_after_prefix() -> None:
    x = torch.arange(8.0).view(1, 8, 1)
    prefix, a, b = split_sets(x, num_prefix=3)
    assert prefix.flatten().tolist() == [0.0, 1.0, 2.0]
    assert a.flatten().tolist() == [3.0, 5.0, 7.0]
    assert b.flatten().tolist() == [4.0, 6.0]


def test_matching_hand_built_r1() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=1, num_prefix=1)
    assert plan.r == 1
    assert plan.src_idx.tolist() == [[1]]
    assert plan.dst_idx.tolist() == [[1]]
    assert plan.unm_idx.tolist() == [[0, 2]]  # kept tokens in their original order


def test_matching_hand_built_r2() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    assert plan.src_idx.tolist() == [[1, 2]]
    assert plan.dst_idx.tolist() == [[1, 0]]
    assert plan.unm_idx.tolist() == [[0]]
    # The same plan as sequence rows: keep 0 (prefix), 1 (a0), 2 and 4 (B); tokens 3 and 5 go into
    # output rows 3 (token 4) and 2 (token 2).
    assert plan.keep_rows.tolist() == [0, 1, 2, 4]
    assert plan.src_rows.tolist() == [3, 5]
    assert plan.dst_rows.tolist() == [3, 2]


def test_plan_rows_offset_by_batch() -> None:
    plan = bipartite_soft_matching(METRIC_1.repeat(2, 1, 1), r=2, num_prefix=1)
    # batch 1's rows are batch 0's plus 6 input rows (keep, src) or 4 output rows (dst)
    assert plan.keep_rows.tolist() == [0, 1, 2, 4, 6, 7, 8, 10]
    assert plan.src_rows.tolist() == [3, 5, 9, 11]
    assert plan.dst_rows.tolist() == [3, 2, 7, 6]
    x, size = merge_weighted(X_1.repeat(2, 1, 1), SIZE_1.repeat(2, 1, 1), plan)
    torch.testing.assert_close(x[1], x[0])
    assert size[:, :, 0].tolist() == [[1.0, 1.0, 4.0, 4.0]] * 2
    torch.testing.assert_close(x[0, :, 0], torch.tensor([10.0, 1.0, 3.5, 3.75]))


def test_merge_weighted_hand_computed() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    x, size = merge_weighted(X_1, SIZE_1, plan)
    # prefix 10 (size 1); kept a0 = token 1 (size 1);
    # b0 = tokens 2 and 5: (2*2 + 2*5) / 4 = 3.5, size 4;  b1 = tokens 4 and 3: (3*4 + 1*3) / 4 = 3.75, size 4.
    expected = torch.tensor([[[10.0, -10.0], [1.0, -1.0], [3.5, -3.5], [3.75, -3.75]]])
    torch.testing.assert_close(x, expected)
    assert size.flatten().tolist() == [1.0, 1.0, 4.0, 4.0]


def test_merge_source_hand_computed() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=2, num_prefix=1)
    source = merge_source(init_source(1, 6), plan)
    expected = torch.tensor(
        [[[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 0]]], dtype=torch.float32
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
    x = torch.tensor([[[9.0], [1.0], [2.0], [4.0]]])  # prefix 9; A = (1, 4); B = (2,)
    plan = MergePlan.from_sets(1, 4, unm_idx=torch.tensor([[1]]), src_idx=torch.tensor([[0]]),
                               dst_idx=torch.tensor([[0]]))
    assert plan.keep_rows.tolist() == [0, 3, 2] and plan.src_rows.tolist() == [1]
    assert plan.dst_rows.tolist() == [2]
    assert merge_tokens(x, plan, "sum").flatten().tolist() == [9.0, 4.0, 3.0]
    assert merge_tokens(x, plan, "amax").flatten().tolist() == [9.0, 4.0, 2.0]
    assert merge_tokens(x, plan, "mean").flatten().tolist() == [9.0, 4.0, 1.5]


def test_r_zero_is_identity() -> None:
    plan = bipartite_soft_matching(METRIC_1, r=0, num_prefix=1)
    x, size = merge_weighted(X_1, SIZE_1, plan)
    assert x is X_1 and size is SIZE_1


@pytest.mark.parametrize("r", [-1, 3])
def test_matching_rejects_infeasible_r(r: int) -> None:
    with pytest.raises(ValueError, match=f"r={r}"):
        bipartite_soft_matching(METRIC_1, r=r, num_prefix=1)


def _brute_force_plan(metric: torch.Tensor, r: int, num_prefix: int) -> list[tuple[int, int]]:
    """(source, destination) sequence positions of the r best edges, by explicit loops."""
    m = metric / metric.norm(dim=-1, keepdim=True)
    n = metric.shape[0]
    a_pos = list(range(num_prefix, n, 2))
    b_pos = list(range(num_prefix + 1, n, 2))
    edges = []
    for i in a_pos:
        sims = [float(m[i] @ m[j]) for j in b_pos]
        best = max(range(len(b_pos)), key=lambda k: sims[k])
        edges.append((sims[best], i, b_pos[best]))
    edges.sort(key=lambda e: -e[0])
    return sorted((i, j) for _, i, j in edges[:r])


@pytest.mark.parametrize(("num_prefix", "num_tokens", "r"), [(0, 10, 5), (1, 12, 3), (5, 14, 4), (2, 9, 1)])
def test_matching_agrees_with_brute_force(num_prefix: int, num_tokens: int, r: int) -> None:
    gen = torch.Generator().manual_seed(num_tokens)
    metric = torch.randn(3, num_tokens, 6, generator=gen)
    plan = bipartite_soft_matching(metric, r=r, num_prefix=num_prefix)
    for b in range(3):
        got = sorted(
            (num_prefix + 2 * int(s), num_prefix + 1 + 2 * int(d))
            for s, d in zip(plan.src_idx[b], plan.dst_idx[b], strict=True)
        )
        assert got == _brute_force_plan(metric[b], r, num_prefix)
        kept = set(plan.unm_idx[b].tolist()) | set(plan.src_idx[b].tolist())
        assert kept == set(range((num_tokens - num_prefix + 1) // 2))


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
