"""The probe of ``bench/frontier_probe.py``: its ramps and the schedules it measures in a FLOPs window."""

from __future__ import annotations

import timm
import torch

import paretoctl.models.vit_fmnist  # noqa: F401
from bench.frontier_probe import candidates, ramp_directions
from paretoctl.models.flops import cost_from_shape
from paretoctl.models.schedule import constant_r
from paretoctl.optimizer.space import SearchSpace, ViTShape


def test_ramps_run_from_front_loaded_through_flat_to_back_loaded() -> None:
    ramps = ramp_directions(5, depth=4)
    assert ramps.shape == (5, 4)
    torch.testing.assert_close(ramps[0], torch.tensor([1, 2 / 3, 1 / 3, 0], dtype=torch.double))
    torch.testing.assert_close(ramps[2], torch.full((4,), 0.5, dtype=torch.double))
    torch.testing.assert_close(ramps[4], ramps[0].flip(0))


def test_candidates_are_distinct_schedules_inside_the_window() -> None:
    shape = ViTShape.of(timm.create_model("vit_fmnist_patch4_28"))
    space, capped = SearchSpace(shape, split=3), SearchSpace(shape, split=3, max_proportion=0.5)
    unmerged = cost_from_shape(shape, [0] * shape.depth, 3).total_gflops

    def saving(r: list[int]) -> float:
        return 1 - cost_from_shape(shape, r, 3).total_gflops / unmerged

    found = candidates(space, capped, per_family=8, window=(34.0, 48.0), saving=saving, seed=0)
    schedules = [tuple(r) for _, r in found]
    assert len(schedules) == len(set(schedules))
    assert all(34.0 <= 100 * saving(list(r)) <= 48.0 for r in schedules)
    # ToMe's constant r = 3 saves 37.1% on this model, so it is in; r = 1 (12.5%) is not.
    assert tuple(constant_r(3, shape.depth, shape.num_patches)) in schedules
    assert tuple(constant_r(1, shape.depth, shape.num_patches)) not in schedules
    families = {f for f, _ in found}
    assert families == {"tome", "ramp", "sobol-capped", "sobol"}
    # The capped family lies inside its cap: each of its schedules maps back to itself unclipped.
    assert all(capped.to_r(capped.from_r(r)) == r for f, r in found if f == "sobol-capped")
