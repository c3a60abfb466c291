"""Schedules: proportions <-> per-layer merge counts, with hand-computed expectations."""

from __future__ import annotations

import math
import random

import pytest

from paretoctl.models.schedule import (
    constant_r,
    decreasing_r,
    mean_schedule,
    proportions_from_r,
    resolve_schedule,
    tokens_after_layers,
    validate_r,
)


def test_resolve_schedule_hand_computed() -> None:
    # u0 = 49 -> floor(49/2) = 24 -> r0 = 24; u1 = 25 -> 12 * 0.5 = 6; u2 = 19 -> 9 * 0 = 0.
    assert resolve_schedule([1.0, 0.5, 0.0], num_patches=49, depth=3) == [24, 6, 0]
    # u0 = 196 -> 98 * 0.1 = 9.8 -> 10; u1 = 186 -> 93 * 0.25 = 23.25 -> 23; u2 = 163 -> 81 * 1 = 81.
    assert resolve_schedule([0.1, 0.25, 1.0], num_patches=196, depth=3) == [10, 23, 81]


def test_resolve_schedule_rounds_half_up() -> None:
    # floor(10/2) = 5, 5 * 0.5 = 2.5 -> 3 (Python's round would give 2); then u = 7 -> 3 * 0.5 = 1.5 -> 2.
    assert resolve_schedule([0.5, 0.5], num_patches=10, depth=2) == [3, 2]


def test_resolve_schedule_p1_exhausts_tokens() -> None:
    # Always taking the maximum halves the unprotected tokens: 16 -> 8 -> 4 -> 2 -> 1 -> 1.
    assert resolve_schedule([1.0] * 5, num_patches=16, depth=5) == [8, 4, 2, 1, 0]
    assert tokens_after_layers([8, 4, 2, 1, 0], num_patches=16, num_prefix=1) == [9, 5, 3, 2, 2]


def test_proportions_from_r_hand_computed() -> None:
    assert proportions_from_r([24, 6, 0], num_patches=49) == [1.0, 0.5, 0.0]
    # u = 2 -> 1 mergeable; then u = 1 -> nothing mergeable -> 0.
    assert proportions_from_r([1, 0], num_patches=2) == [1.0, 0.0]
    assert proportions_from_r([3, 1], num_patches=12) == [0.5, pytest.approx(1 / 4)]


def test_proportions_from_r_is_exact_inverse() -> None:
    rng = random.Random(0)
    for _ in range(300):
        num_patches = rng.randint(0, 300)
        depth = rng.randint(1, 14)
        r: list[int] = []
        u = num_patches
        for _layer in range(depth):
            r_l = rng.randint(0, u // 2)
            r.append(r_l)
            u -= r_l
        p = proportions_from_r(r, num_patches)
        assert all(0.0 <= v <= 1.0 for v in p)
        assert resolve_schedule(p, num_patches, depth) == r


def test_tokens_after_layers_counts_prefix() -> None:
    assert tokens_after_layers([24, 6, 0], num_patches=49, num_prefix=1) == [26, 20, 20]
    assert tokens_after_layers([24, 6, 0], num_patches=49, num_prefix=5) == [30, 24, 24]
    assert tokens_after_layers([], num_patches=49, num_prefix=1) == []


def test_constant_r_clips_to_feasible() -> None:
    # 40 -> (16 of 20) 24 -> (12 of 12) 12 -> (6) 6 -> (3) 3
    assert constant_r(16, depth=4, num_patches=40) == [16, 12, 6, 3]
    assert constant_r(8, depth=12, num_patches=196) == [8] * 12
    assert constant_r(0, depth=3, num_patches=10) == [0, 0, 0]


def test_decreasing_r_is_linear_and_keeps_budget() -> None:
    assert decreasing_r(4, depth=5, num_patches=196) == [8, 6, 4, 2, 0]
    r = decreasing_r(8, depth=12, num_patches=196)
    # 2r (1 - l/11): 16, 14.55, 13.09, 11.64, 10.18, 8.73, 7.27, 5.82, 4.36, 2.91, 1.45, 0
    assert r == [16, 15, 13, 12, 10, 9, 7, 6, 4, 3, 1, 0]
    assert sum(r) == 8 * 12
    assert decreasing_r(5, depth=1, num_patches=196) == [5]


def test_decreasing_r_clips_to_feasible() -> None:
    # wanted 20, 10, 0 but 16 tokens allow 8, then 4 of the remaining 8.
    assert decreasing_r(10, depth=3, num_patches=16) == [8, 4, 0]
    validate_r(decreasing_r(30, depth=12, num_patches=49), num_patches=49, depth=12)


@pytest.mark.parametrize(
    ("proportions", "match"),
    [
        ([0.1, 0.2], "2 entries but the model has 3 layers"),
        ([0.1, math.nan, 0.2], r"layer 1 .*nan"),
        ([0.1, 0.2, math.inf], r"layer 2 .*inf"),
        ([-0.1, 0.2, 0.3], r"layer 0 .*-0\.1"),
        ([0.1, 1.5, 0.3], r"layer 1 .*1\.5"),
        ([0.1, "0.2", 0.3], r"layer 1 .*'0\.2'"),
    ],
)
def test_resolve_schedule_rejects_bad_proportions(proportions: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_schedule(proportions, num_patches=49, depth=3)


@pytest.mark.parametrize(
    ("r", "match"),
    [
        ([1, 2], "2 entries but the model has 3 layers"),
        ([1, 2.5, 0], r"r\[1\] must be an integer, got 2\.5"),
        ([1, True, 0], r"r\[1\] must be an integer"),
        ([1, -2, 0], r"r\[1\] = -2 is negative"),
        # 49 -> 24 merged -> 25 tokens allow 12, not 13
        ([24, 13, 0], r"r\[1\] = 13 is infeasible: layer 1 receives 25 unprotected tokens, so at most 12"),
        ([25, 0, 0], r"r\[0\] = 25 is infeasible: layer 0 receives 49"),
    ],
)
def test_validate_r_rejects_bad_schedules(r: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_r(r, num_patches=49, depth=3)


def test_inverse_and_counts_reject_infeasible_r() -> None:
    with pytest.raises(ValueError, match=r"r\[0\] = 30"):
        proportions_from_r([30], num_patches=49)
    with pytest.raises(ValueError, match=r"r\[1\] = 13"):
        tokens_after_layers([24, 13], num_patches=49, num_prefix=1)


def test_schedule_builders_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="r must be a non-negative integer"):
        constant_r(-1, depth=3, num_patches=10)
    with pytest.raises(ValueError, match="depth"):
        decreasing_r(2, depth=-1, num_patches=10)
    with pytest.raises(ValueError, match="num_patches"):
        resolve_schedule([0.5], num_patches=-3, depth=1)


def test_mean_schedule_rounds_counts_then_differences() -> None:
    # 50 entering (by definition), then 40.4 -> 40, 30.6 -> 31, 30.5 -> 31 (halves up), leaving 20.49 -> 20.
    assert mean_schedule([50.0, 40.4, 30.6, 30.5, 20.49], num_patches=49, num_prefix=1) == [10, 9, 0, 11]
    # Rounding can ask for more than a matching allows: u = 5 entering the last block allows 2, not 3.
    assert mean_schedule([6.0, 5.6, 2.5], num_patches=5, num_prefix=1) == [0, 2]
    with pytest.raises(ValueError, match="depth \\+ 1 >= 2"):
        mean_schedule([50.0], 49, 1)
    with pytest.raises(ValueError, match=r"mean_tokens\[1\] must be a finite number"):
        mean_schedule([50.0, math.nan], 49, 1)


def test_mean_schedule_is_consistent_with_the_front_schema() -> None:
    """Random non-increasing mean counts: r is feasible and its views pass the artifact's consistency check."""
    from types import SimpleNamespace

    from paretoctl.service.schema.consistency import check_schedule, expected_tokens, tokens_crossing

    rng = random.Random(5)
    for _ in range(200):
        depth, prefix = rng.randint(1, 12), rng.choice([0, 1, 2])
        patches = rng.randint(2, 200)
        counts = [float(patches + prefix)]
        for _ in range(depth):
            u = counts[-1] - prefix
            counts.append(counts[-1] - rng.uniform(0, u / 2))
        r = mean_schedule(counts, patches, prefix)
        assert validate_r(r, patches, depth) == r
        tokens = expected_tokens(r, patches, prefix)
        assert all(abs(t - c) <= 1.5 for t, c in zip(tokens, counts, strict=False))  # within rounding (+ a clip)
        split = rng.randint(0, depth)
        cfg = SimpleNamespace(proportions=proportions_from_r(r, patches), r=r, tokens_per_layer=tokens,
                              tokens_sent=tokens_crossing(tokens, r, split))
        prov = SimpleNamespace(num_patches=patches, num_prefix_tokens=prefix, depth=depth, split_index=split)
        check_schedule("cfg", cfg, prov)  # type: ignore[arg-type]
