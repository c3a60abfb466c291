"""The region of interest: reference points, hypervolumes inside it and the front's thinning, by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from paretoctl.optimizer.build import select_front
from paretoctl.optimizer.config import ConfigError, parse_config
from paretoctl.optimizer.pareto import (
    objective_stderr,
    per_snr_hypervolumes,
    reference_point,
    snr_reference,
)
from paretoctl.optimizer.proposers import design_floor


def record(rid: str, accs: list[float], gflops: float, uses: int, stderr: float = 0.01) -> dict[str, Any]:
    """An archive record on a one-channel grid of ``len(accs)`` SNRs (0, 10, 20 dB)."""
    pts = [{"snr_db": 10.0 * i, "mean": a, "stderr": stderr, "n_images": 1000, "n_draws": 1}
           for i, a in enumerate(accs)]
    return {"id": rid, "r": [0], "gflops": {"total": gflops, "edge": 0.0, "server": gflops},
            "channel_uses": uses, "accuracy_val": {"awgn": pts}}


REF = record("unmerged", [0.80, 0.88, 0.90], 1.0, 100)


def test_reference_point_sits_the_stated_drop_below_the_grid_mean() -> None:
    # grid mean 0.86; 3 points -> 0.83; costs 1.05x; None gives the old wide margin of 0.2.
    assert reference_point(REF, 3.0) == pytest.approx([0.83, -1.05, -1.05])
    assert reference_point(REF, 0.5) == pytest.approx([0.855, -1.05, -1.05])
    assert reference_point(REF, None) == pytest.approx([0.66, -1.05, -1.05])
    assert snr_reference(REF, "awgn", 2, 2.0) == pytest.approx([0.88, -1.05, -1.05])


def test_objective_stderr_is_the_correlated_bound() -> None:
    rec = record("a", [0.8, 0.8, 0.8], 1.0, 100)
    for p, e in zip(rec["accuracy_val"]["awgn"], (0.01, 0.02, 0.06), strict=True):
        p["stderr"] = e
    assert objective_stderr(rec) == pytest.approx(0.03)  # (0.01 + 0.02 + 0.06) / 3


def test_per_snr_hypervolume_counts_only_the_region() -> None:
    near = record("near", [0.79, 0.87, 0.89], 0.5, 60)   # loses 1 point everywhere
    far = record("far", [0.65, 0.73, 0.75], 0.1, 10)     # loses 15 points everywhere
    hv = per_snr_hypervolumes([REF, near, far], REF, [0.0, 10.0, 20.0], 3.0)
    # At 20 dB, reference point (0.87, -1.05, -1.05): unmerged box 0.03*0.05*0.05 = 7.5e-5,
    # near's box 0.02*0.55*0.45 = 4.95e-3, their overlap 0.02*0.05*0.05 = 5e-5; far adds nothing.
    assert hv["awgn@20"] == pytest.approx(7.5e-5 + 4.95e-3 - 5e-5)
    wide = per_snr_hypervolumes([REF, near, far], REF, [0.0, 10.0, 20.0], None)
    without_far = per_snr_hypervolumes([REF, near], REF, [0.0, 10.0, 20.0], None)
    assert wide["awgn@20"] > without_far["awgn@20"]  # the loose region credits the 15-point loss


def test_front_thinning_fills_the_region_first() -> None:
    grid = [0.0, 10.0, 20.0]
    inside = [record(f"in{k}", [0.80 - d, 0.88 - d, 0.90 - d], 1.0 - 0.1 * (k + 1), 100 - 5 * (k + 1))
              for k, d in enumerate((0.002, 0.005, 0.01, 0.02))]
    # 10-point losses at a fifth of the cost: worth far more wide-region hypervolume than the light ones.
    cheap = [record(f"cheap{k}", [0.70, 0.78, 0.80 - 0.01 * k], 0.2 - 0.05 * k, 20 - 5 * k) for k in range(3)]
    # The unmerged model is always served and takes no place under the cap.
    chosen = {c["id"] for c in select_front([REF, *inside, *cheap], REF, grid, cap=4, max_accuracy_drop=3.0)}
    assert chosen == {"in0", "in1", "in2", "in3"}
    # With room left, one of the cheap ones joins.
    more = {c["id"] for c in select_front([REF, *inside, *cheap], REF, grid, cap=5, max_accuracy_drop=3.0)}
    assert chosen < more and len(more - chosen) == 1 and (more - chosen) <= {"cheap0", "cheap1", "cheap2"}


def test_design_floor_reaches_the_nearest_known_failure() -> None:
    ref_pt = [0.87, -1.05, -1.05]
    y = torch.tensor([[0.90, -1.0, -1.0], [0.89, -0.6, -0.7], [0.80, -0.45, -0.5], [0.6, -0.2, -0.3]],
                     dtype=torch.double)
    assert design_floor(y, ref_pt) == pytest.approx(0.45)  # cheapest good 0.6, dearest cheaper failure 0.45
    assert design_floor(y[:2], ref_pt) == pytest.approx(0.3)  # no failure: half the cheapest good cost


def test_max_accuracy_drop_is_configurable_and_checked() -> None:
    base = {"channel": {"kinds": [{"kind": "awgn"}], "snr_grid_db": [0, 10]}, "split_index": 3}
    assert parse_config(base).search.max_accuracy_drop == 3.0
    with pytest.raises(ConfigError, match=r"search\.max_accuracy_drop"):
        parse_config({**base, "search": {"max_accuracy_drop": -1}})
