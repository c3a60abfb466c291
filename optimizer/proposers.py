"""Candidate generators: BoTorch's qLogNEHVI and the baselines it must beat, behind one interface.

A proposer turns the history of its own evaluations (unit-cube points and objective vectors) into
the next batch of unit-cube points. Every proposer is a deterministic function of (seed, batch index,
history), so a resumed build asks for the same candidates; the build also stores each planned batch
before evaluating it (``paretoctl.optimizer.archive.PlanStore``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.quasirandom import SobolEngine

from paretoctl.models.schedule import constant_r, decreasing_r
from paretoctl.optimizer.space import SearchSpace


class Proposer(Protocol):
    """Proposes a batch of unit-cube points from the history of this method's evaluations."""

    def batch_size(self, batch: int) -> int:
        """How many candidates batch number ``batch`` holds (before truncation to the budget)."""
        ...

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int) -> list[list[float]]:
        """``n`` new points, given history ``x`` ``[k, L]`` and maximised objectives ``y`` ``[k, 3]``."""
        ...


def sobol_points(n: int, dim: int, seed: int, skip: int = 0) -> torch.Tensor:
    """``n`` scrambled Sobol points in [0, 1]^dim, after skipping the first ``skip``."""
    engine = SobolEngine(dim, scramble=True, seed=seed)
    if skip:
        engine.fast_forward(skip)
    return engine.draw(n, dtype=torch.double)


class SobolProposer:
    """Random search with a scrambled Sobol sequence (the classic space-filling baseline)."""

    def __init__(self, space: SearchSpace, seed: int, q: int) -> None:
        self.space, self.seed, self.q = space, seed, q

    def batch_size(self, batch: int) -> int:
        return self.q

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int) -> list[list[float]]:
        return sobol_points(n, self.space.dim, self.seed, skip=len(x)).tolist()


class UniformProposer:
    """ToMe's own schedules: constant r, and its linearly decreasing schedule, over a sweep of r.

    The candidates are spread evenly over all distinct feasible schedules of both kinds, so any budget
    samples the whole range from no merging to the most aggressive schedule.
    """

    def __init__(self, space: SearchSpace, q: int, budget: int) -> None:
        self.space, self.q, self.budget = space, q, budget
        s = space.shape
        schedules: list[list[int]] = []
        for r in range(0, s.num_patches // 2 + 1):
            for sched in (constant_r(r, s.depth, s.num_patches), decreasing_r(r, s.depth, s.num_patches)):
                if sched not in schedules:
                    schedules.append(sched)
        schedules.sort(key=lambda sch: sum(sch))
        self.schedules = schedules

    def batch_size(self, batch: int) -> int:
        return self.q

    def ordered(self, budget: int) -> list[list[int]]:
        """``budget`` schedules spread evenly from no merging to the most merging."""
        n = len(self.schedules)
        if budget >= n:
            return self.schedules + self.schedules[: budget - n]
        idx = sorted({round(i * (n - 1) / max(1, budget - 1)) for i in range(budget)})
        extra = [i for i in range(n) if i not in idx]
        while len(idx) < budget:
            idx.append(extra.pop(len(extra) // 2))
        return [self.schedules[i] for i in sorted(idx)]

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int) -> list[list[float]]:
        order = self.ordered(self.budget)
        return [self.space.from_r(r) for r in order[len(x) : len(x) + n]]


class BotorchProposer:
    """Multi-objective BO: qLogNEHVI on a GP for grid-mean accuracy, with the known costs exact.

    * Batch 0 is the initial design of ``initial`` points: half are ToMe's uniform schedules spread
      from light to heavy merging (known-good structure, so the GP sees the sensible region from the
      start), half are scrambled Sobol points (space filling, so it also sees irregular schedules).
      They count against the budget like any other evaluation.
    * The GP also sees the unmerged reference evaluation, which every method is given.
    * Then batches of ``q`` points maximise qLogNoisyExpectedHypervolumeImprovement. The GP
      (SingleTaskGP, inputs normalised to the unit cube, outputs standardised, noise inferred, since
      accuracy is measured on a finite sample) models mean accuracy over the (channel, SNR) grid;
      the two cost objectives come from a ``GenericDeterministicModel`` on the relaxed cost formulas,
      so no GP capacity is spent learning what is known exactly.
    * q = 4 by default: sequential greedy q-batches keep the GP refits few (a fit costs seconds on
      two cores) while each evaluation still costs far more than proposing it.
    """

    def __init__(self, space: SearchSpace, seed: int, q: int, initial: int, num_restarts: int = 6,
                 raw_samples: int = 128, mc_samples: int = 32, maxiter: int = 60) -> None:
        self.space, self.seed, self.q, self.initial = space, seed, q, initial
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.maxiter = maxiter

    uses_reference = True

    def batch_size(self, batch: int) -> int:
        return self.initial if batch == 0 else self.q

    def initial_design(self, n: int) -> list[list[float]]:
        """``n // 2`` ToMe schedules (light to heavy, no-merge excluded) then Sobol points."""
        n_tome = n // 2
        tome = UniformProposer(self.space, self.q, n_tome + 1).ordered(n_tome + 1)[1:]
        points = [self.space.from_r(r) for r in tome]
        return points + sobol_points(n - len(points), self.space.dim, self.seed).tolist()

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int) -> list[list[float]]:
        if batch == 0 or len(x) < 2:
            return self.initial_design(n)
        return self._acquire(batch, x, y, ref_point, n).tolist()

    def _acquire(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                 n: int) -> torch.Tensor:
        # GP initialisation and fitting draw from torch's global RNG: seed it for reproducible proposals,
        # inside fork_rng so that the caller's RNG state is the same after the call as before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + batch)
            return self._acquire_seeded(batch, x, y, ref_point, n)

    def _acquire_seeded(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                        n: int) -> torch.Tensor:
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.deterministic import GenericDeterministicModel
        from botorch.models.model import ModelList
        from botorch.models.transforms import Normalize, Standardize
        from botorch.optim import optimize_acqf
        from botorch.sampling.get_sampler import get_sampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        dim = self.space.dim
        x = x.to(torch.double)
        y = y.to(torch.double)
        bounds = torch.stack([torch.zeros(dim, dtype=torch.double), torch.ones(dim, dtype=torch.double)])
        gp = SingleTaskGP(x, y[:, :1], input_transform=Normalize(dim, bounds=bounds),
                          outcome_transform=Standardize(m=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        cost_ref = self._cost_scale(x, y)

        def known_costs(xx: torch.Tensor) -> torch.Tensor:
            return -self.space.relaxed_costs(xx) / cost_ref

        model = ModelList(gp, GenericDeterministicModel(known_costs, num_outputs=2))
        # A list sampler: QMC normal base samples for the GP, none needed for the known costs.
        posterior: Any = model.posterior(x[:1])
        sampler = get_sampler(posterior, torch.Size([self.mc_samples]), seed=self.seed + batch)
        acq = qLogNoisyExpectedHypervolumeImprovement(
            model=model, ref_point=list(ref_point), X_baseline=x, prune_baseline=True, sampler=sampler,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cand, _ = optimize_acqf(
                acq, bounds=bounds, q=n, num_restarts=self.num_restarts, raw_samples=self.raw_samples,
                sequential=True, options={"batch_limit": 8, "maxiter": self.maxiter, "seed": self.seed + batch},
            )
        return cand.detach().clamp(0, 1)

    def _cost_scale(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unmerged (GFLOPs, channel uses), so the relaxed costs share the archive's relative scale."""
        zero = torch.zeros(1, self.space.dim, dtype=torch.double)
        return self.space.relaxed_costs(zero)[0]


class Nsga2Proposer:
    """NSGA-II (pymoo) in ask/tell form on the same three objectives.

    The population is re-derived from the history on every call (replaying ask/tell with pymoo's
    seeded RNG), so the proposer keeps no state across calls and resumes exactly.
    """

    def __init__(self, space: SearchSpace, seed: int, pop_size: int) -> None:
        self.space, self.seed, self.pop_size = space, seed, pop_size

    def batch_size(self, batch: int) -> int:
        return self.pop_size

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int) -> list[list[float]]:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.evaluator import Evaluator as MooEvaluator
        from pymoo.core.problem import Problem
        from pymoo.core.termination import NoTermination
        from pymoo.operators.sampling.lhs import LHS
        from pymoo.problems.static import StaticProblem

        problem = Problem(n_var=self.space.dim, n_obj=3, xl=0.0, xu=1.0)
        algo = NSGA2(pop_size=self.pop_size, sampling=LHS())
        algo.setup(problem, termination=NoTermination(), seed=self.seed, verbose=False)
        xs, ys = x.numpy(), (-y).numpy()  # pymoo minimises
        used = 0
        while True:
            pop = algo.ask()
            k = len(pop)
            if used + k > len(xs):
                break
            # The history holds exactly what was asked before (batch sizes equal pop_size).
            pop.set("X", xs[used : used + k])
            MooEvaluator().eval(StaticProblem(problem, F=ys[used : used + k]), pop)
            algo.tell(infills=pop)
            used += k
        return np.asarray(pop.get("X"))[:n].clip(0, 1).tolist()


def make_proposer(method: str, space: SearchSpace, seed: int, q: int, initial: int, budget: int,
                  num_restarts: int = 6, raw_samples: int = 128, mc_samples: int = 32, maxiter: int = 60) -> Proposer:
    """The proposer for ``method``; baselines use batches of the same size as BoTorch's q."""
    if method == "botorch":
        return BotorchProposer(space, seed, q, initial, num_restarts, raw_samples, mc_samples, maxiter)
    if method == "sobol":
        return SobolProposer(space, seed, q)
    if method == "uniform":
        return UniformProposer(space, q, budget)
    if method == "nsga2":
        return Nsga2Proposer(space, seed, pop_size=max(4, initial))
    raise ValueError(f"unknown search method {method!r}")


def batches_for(proposer: Proposer, budget: int) -> list[int]:
    """The sizes of successive batches that exactly use ``budget`` evaluations."""
    sizes, total, b = [], 0, 0
    while total < budget:
        size = min(proposer.batch_size(b), budget - total)
        sizes.append(size)
        total += size
        b += 1
    return sizes

