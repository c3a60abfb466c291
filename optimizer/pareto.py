"""Objectives, Pareto sets and hypervolumes, all in the "maximise every column" convention.

The search maximises three objectives, each on a scale where the unmerged model is a natural anchor:

* ``acc_mean``: accuracy averaged over every (channel, SNR) of the grid, each grid point weighted
  equally, so a schedule that is good at one SNR and poor at the others scores poorly;
* ``-gflops_rel``: total GFLOPs relative to the unmerged model;
* ``-uses_rel``: channel uses relative to the unmerged model (what the radio link pays).

A fourth objective (worst accuracy over the grid) was tried and dropped: qLogNEHVI's box
decompositions made each acquisition 3-12x slower on two cores (measured: 23-95 s vs 8 s to build the
acquisition function), while the mean already carries every SNR; the per-SNR fronts are checked
separately (``per_snr_hypervolumes``, bench/bo_vs_baselines.py).

Region of interest. Users of the policy trade a few points of accuracy for compute, not fifteen: the
build states how much it will give up, ``search.max_accuracy_drop`` (points, default
``DEFAULT_MAX_ACCURACY_DROP``), and every hypervolume the search sees is measured inside that region.
The reference point is (unmerged accuracy - drop, -1.05, -1.05): a schedule that loses more than the
drop earns no hypervolume, so qLogNEHVI spends its budget where users will go; costs sit at 1.05x
unmerged so that the unmerged model itself contributes. The drop applies to the objective it bounds:
grid-mean accuracy for the search (``reference_point``), the accuracy at that (channel, SNR) for the
per-SNR fronts (``snr_reference``). ``WIDE_MARGIN`` (0.2) is the old, loose region; it stays available
for looking at the whole trade-off (the front's thinning ranks by the region first, then by it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

with warnings.catch_warnings():
    # linear_operator (imported by botorch through gpytorch) decorates helpers with torch.jit.script at
    # import time, which current torch deprecates with a FutureWarning on every build. The code is not
    # ours and works; only that one warning, only during this import, is silenced.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

DEFAULT_MAX_ACCURACY_DROP = 3.0
"""Points of accuracy a user gives up at most (see ``paretoctl.optimizer.config.SearchSection``)."""
WIDE_MARGIN = 0.2
"""Accuracy (fraction) below the unmerged model that bounds the whole-trade-off hypervolume."""
COST_REF = 1.05
OBJECTIVES = ("acc_mean", "neg_gflops_rel", "neg_channel_uses_rel")


def grid_accuracies(record: Mapping[str, Any], split: str = "accuracy_val") -> list[float]:
    """All accuracies of a record over the (channel, SNR) grid, channels in stored order."""
    return [p["mean"] for points in record[split].values() for p in points]


def mean_gflops(record: Mapping[str, Any]) -> float:
    """Total GFLOPs per image: a threshold configuration's mean over images, else the schedule's."""
    dist = record.get("cost_distribution")
    return float(dist["gflops_total"]["mean"] if dist is not None else record["gflops"]["total"])


def mean_channel_uses(record: Mapping[str, Any]) -> float:
    """Channel uses per image: a threshold configuration's exact mean (its ``channel_uses`` is rounded)."""
    dist = record.get("cost_distribution")
    return float(dist["channel_uses"]["mean"] if dist is not None else record["channel_uses"])


def objective_vector(record: Mapping[str, Any], ref_record: Mapping[str, Any]) -> list[float]:
    """The three maximised objectives of an archive record, relative to the unmerged ``ref_record``.

    Costs are per image; for a threshold configuration (a record with ``cost_distribution``) they are
    the exact means over the images (:func:`mean_gflops`, :func:`mean_channel_uses`).
    """
    accs = grid_accuracies(record)
    return [
        sum(accs) / len(accs),
        -mean_gflops(record) / mean_gflops(ref_record),
        -mean_channel_uses(record) / mean_channel_uses(ref_record),
    ]


def objective_stderr(record: Mapping[str, Any]) -> float:
    """Standard error of ``acc_mean``, the grid-mean accuracy (a fraction).

    Every grid point is measured on the same images, so their errors are strongly positively
    correlated; the mean of the per-point standard errors is the perfectly correlated case, an upper
    bound that never claims more certainty than the measurement has.
    """
    errs = [p["stderr"] for points in record["accuracy_val"].values() for p in points]
    return sum(errs) / len(errs)


def margin(max_accuracy_drop: float | None) -> float:
    """Accuracy margin (a fraction) of the reference point for a drop in points (None: the wide one)."""
    return WIDE_MARGIN if max_accuracy_drop is None else max_accuracy_drop / 100


def reference_point(ref_record: Mapping[str, Any],
                    max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP) -> list[float]:
    """Hypervolume reference point for the three objectives (see the module docstring).

    Args:
        ref_record: the unmerged model's archive record.
        max_accuracy_drop: points of grid-mean accuracy given up at most; None for ``WIDE_MARGIN``.
    """
    ref = objective_vector(ref_record, ref_record)
    return [ref[0] - margin(max_accuracy_drop), -COST_REF, -COST_REF]


def pareto_mask(y: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the non-dominated rows of ``y`` ``[n, m]`` (maximisation; duplicates kept once)."""
    if y.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    return is_non_dominated(y, deduplicate=True)


def hypervolume(y: torch.Tensor, ref: Sequence[float]) -> float:
    """Hypervolume dominated by the rows of ``y`` above ``ref`` (rows not above ref contribute 0).

    Example:
        >>> hypervolume(torch.tensor([[1.0, 1.0]]), [0.0, 0.0])
        1.0
    """
    ref_t = torch.as_tensor(ref, dtype=torch.double)
    y = y.to(torch.double)
    y = y[(y > ref_t).all(dim=-1)]
    if y.shape[0] == 0:
        return 0.0
    return float(Hypervolume(ref_t).compute(y[pareto_mask(y)]))


def snr_objectives(record: Mapping[str, Any], ref_record: Mapping[str, Any], channel: str, idx: int,
                   split: str = "accuracy_val") -> list[float]:
    """(accuracy at one grid point, -GFLOPs rel, -channel uses rel): the space of a per-SNR front."""
    return [
        record[split][channel][idx]["mean"],
        -mean_gflops(record) / mean_gflops(ref_record),
        -mean_channel_uses(record) / mean_channel_uses(ref_record),
    ]


def snr_reference(ref_record: Mapping[str, Any], channel: str, idx: int,
                  max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP) -> list[float]:
    """Reference point of a per-SNR front: the drop below the unmerged accuracy there, costs 1.05x."""
    acc = ref_record["accuracy_val"][channel][idx]["mean"]
    return [acc - margin(max_accuracy_drop), -COST_REF, -COST_REF]


def per_snr_hypervolumes(records: Sequence[Mapping[str, Any]], ref_record: Mapping[str, Any],
                         snr_grid: Sequence[float],
                         max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP) -> dict[str, float]:
    """Hypervolume of ``records`` inside the region at each (channel, SNR), keyed ``"<channel>@<snr>"``."""
    out: dict[str, float] = {}
    for channel in ref_record["accuracy_val"]:
        for idx, snr in enumerate(snr_grid):
            y = torch.tensor([snr_objectives(r, ref_record, channel, idx) for r in records])
            out[f"{channel}@{snr:g}"] = hypervolume(y, snr_reference(ref_record, channel, idx, max_accuracy_drop))
    return out


def per_snr_pareto_ids(records: Sequence[Mapping[str, Any]], ref_record: Mapping[str, Any],
                       snr_grid: Sequence[float], split: str = "accuracy_val") -> list[dict[str, Any]]:
    """For each (channel, SNR), the ids of the records that are non-dominated there."""
    out = []
    for channel in ref_record[split]:
        for idx, snr in enumerate(snr_grid):
            y = torch.tensor([snr_objectives(r, ref_record, channel, idx, split) for r in records],
                             dtype=torch.double)
            mask = pareto_mask(y)
            ids = [str(r["id"]) for r, keep in zip(records, mask.tolist(), strict=True) if keep]
            out.append({"channel": channel, "snr_db": float(snr), "config_ids": ids})
    return out
