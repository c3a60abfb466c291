"""An off-the-shelf multi-objective BO baseline: Optuna's ``BoTorchSampler`` with its default settings.

Why: a specialist search should beat what a user gets from a generic tool in ten lines. This adapter
runs Optuna the way its documentation shows, sequentially (one ``ask`` per evaluation), on the same
three maximised objectives and the same unit-cube space as every other method of
``bench/bo_vs_baselines.py``; nothing is tuned. Like BoTorch, it is told the unmerged model and the
uniform marks first (``uses_reference``), as completed trials.

The proposer keeps no state: each call rebuilds an in-memory study from the history (the previous
proposals included, in order) and seeds the sampler by (seed, history length), so a resumed run asks
exactly what an uninterrupted one would. Needs ``pip install -e '.[bench]'`` (optuna, optuna-integration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class OptunaProposer:
    """Optuna's default multi-objective BO (``optuna_integration.BoTorchSampler``), one point per batch.

    Its defaults at the time of writing: 10 random start-up trials (counting the trials it is told),
    then qEHVI on independent ``SingleTaskGP`` models with inferred noise.
    """

    uses_reference = True

    def __init__(self, dim: int, seed: int) -> None:
        self.dim, self.seed = dim, seed

    def batch_size(self, batch: int) -> int:
        return 1

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        """``n`` points, asked one after another from a study told the history ``x [k, dim]``, ``y [k, 3]``."""
        import optuna
        from optuna.distributions import FloatDistribution
        from optuna_integration import BoTorchSampler

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space: dict[str, Any] = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(self.dim)}
        sampler = BoTorchSampler(seed=self.seed * 100_003 + len(x))
        study = optuna.create_study(directions=["maximize"] * y.shape[1], sampler=sampler)
        for point, values in zip(x.tolist(), y.tolist(), strict=True):
            params = {f"x{i}": min(max(float(v), 0.0), 1.0) for i, v in enumerate(point)}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=space, values=values))
        points = []
        for _ in range(n):
            trial = study.ask(space)
            points.append([float(trial.params[f"x{i}"]) for i in range(self.dim)])
        return points
