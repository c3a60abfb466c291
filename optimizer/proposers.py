"""Candidate generators: BoTorch's qLogNEHVI and the baselines it must beat, behind one interface.

A proposer turns the history of its own evaluations (unit-cube points and objective vectors) into
the next batch of unit-cube points. Every proposer is a deterministic function of (seed, batch index,
history), so a resumed build asks for the same candidates; the build also stores each planned batch
before evaluating it (``paretoctl.optimizer.archive.PlanStore``).

The history a proposer is given is every evaluation the build wants it to learn from: for BoTorch the
unmerged model, the uniform marks and its own evaluations (``paretoctl.optimizer.build.run_method``),
with ``y_var``, the known variance of each accuracy objective.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.quasirandom import SobolEngine

from paretoctl.models.schedule import constant_r, decreasing_r
from paretoctl.optimizer.prior_mean import CostCurveMean, isotonic_increasing
from paretoctl.optimizer.space import AnySpace, SearchSpace, ThresholdSpace

logger = logging.getLogger(__name__)

PriorMeanName = Literal["cost_curve", "constant"]
"""The accuracy GP's prior mean: the isotonic curve of accuracy against relative GFLOPs
(:mod:`paretoctl.optimizer.prior_mean`) or GPyTorch's constant."""

COST_GP_NOISE = 1e-6
"""Fixed noise variance of the cost GPs of a threshold search, in relative-cost units (a standard
deviation of 0.1% of the unmerged model's cost). A threshold configuration's mean cost over the build's
images is deterministic, so the noise only keeps the GP well conditioned; inferring it would let the
fit explain real structure away as noise on a handful of points."""
MARK_THRESHOLDS = (0.99, 0.97, 0.95, 0.92, 0.9)
"""Constant thresholds measured as marks in a threshold build (clipped to the searched range): on the
bundled model they span from nearly unmerged (0.99) to about a third of the tokens kept (0.9)."""


class Proposer(Protocol):
    """Proposes a batch of unit-cube points from the history of this method's evaluations."""

    def batch_size(self, batch: int) -> int:
        """How many candidates batch number ``batch`` holds (before truncation to the budget)."""
        ...

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        """``n`` new points, given history ``x`` ``[k, L]``, maximised objectives ``y`` ``[k, 3]`` and,
        when known, the variance ``y_var`` ``[k]`` of the accuracy objective ``y[:, 0]``."""
        ...


def sobol_points(n: int, dim: int, seed: int, skip: int = 0) -> torch.Tensor:
    """``n`` scrambled Sobol points in [0, 1]^dim, after skipping the first ``skip``."""
    engine = SobolEngine(dim, scramble=True, seed=seed)
    if skip:
        engine.fast_forward(skip)
    return engine.draw(n, dtype=torch.double)


class SobolProposer:
    """Random search with a scrambled Sobol sequence (the classic space-filling baseline)."""

    def __init__(self, space: AnySpace, seed: int, q: int) -> None:
        self.space, self.seed, self.q = space, seed, q

    def batch_size(self, batch: int) -> int:
        return self.q

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        return sobol_points(n, self.space.dim, self.seed, skip=len(x)).tolist()


class FixedProposer:
    """A fixed list of points, in order, ``q`` at a time (the constant-threshold marks)."""

    def __init__(self, points: Sequence[Sequence[float]], q: int) -> None:
        self.points, self.q = [list(map(float, p)) for p in points], q

    def batch_size(self, batch: int) -> int:
        return self.q

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        return self.points[len(x) : len(x) + n]


def threshold_marks(space: ThresholdSpace, levels: Sequence[float] = MARK_THRESHOLDS) -> list[list[float]]:
    """Cube points of the constant thresholds ``[t] * L`` for each level, clipped to the range, distinct."""
    points: list[list[float]] = []
    for t in levels:
        point = space.constant_point(min(space.hi, max(space.lo, t)))
        if all(space.key(point) != space.key(p) for p in points):
            points.append(point)
    return points


def constant_levels(n: int) -> list[float]:
    """``n`` cube levels ``(k + 1) / n``: from just merging to the range's far end (0 is the unmerged origin)."""
    return [(k + 1) / n for k in range(n)]


def tome_schedules(space: SearchSpace) -> list[list[int]]:
    """ToMe's constant and linearly decreasing schedules over every r, distinct, least merging first."""
    s = space.shape
    schedules: list[list[int]] = []
    for r in range(0, s.num_patches // 2 + 1):
        for sched in (constant_r(r, s.depth, s.num_patches), decreasing_r(r, s.depth, s.num_patches)):
            if sched not in schedules:
                schedules.append(sched)
    schedules.sort(key=lambda sch: sum(sch))
    return schedules


class UniformProposer:
    """ToMe's own schedules: constant r, and its linearly decreasing schedule, over a sweep of r.

    The candidates are spread evenly over all distinct feasible schedules of both kinds, so any budget
    samples the whole range from no merging to the most aggressive schedule. In a threshold space the
    uniform configurations are constant thresholds ``[t] * L``, ``budget`` of them evenly spaced over
    the range (:func:`constant_levels`).
    """

    def __init__(self, space: AnySpace, q: int, budget: int) -> None:
        self.space, self.q, self.budget = space, q, budget
        self.schedules = tome_schedules(space) if isinstance(space, SearchSpace) else []

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
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        if not isinstance(self.space, SearchSpace):
            levels = constant_levels(self.budget)[len(x) : len(x) + n]
            return [[level] * self.space.dim for level in levels]
        order = self.ordered(self.budget)
        return [self.space.from_r(r) for r in order[len(x) : len(x) + n]]


def design_floor(y: torch.Tensor, ref_point: Sequence[float]) -> float:
    """The lowest relative GFLOPs the initial design aims at, from what the history already shows.

    The region of interest ends somewhere between the cheapest measured schedule still inside it
    (accuracy above ``ref_point[0]``) and the dearest cheaper one outside it; the design reaches down
    to that known failure. With no failure measured yet it reaches to half the cheapest good cost.

    Args:
        y: maximised objectives ``[k, 3]`` (accuracy, -GFLOPs rel, -channel uses rel).
        ref_point: the hypervolume reference point; ``ref_point[0]`` bounds the region.

    Returns:
        A relative GFLOPs level in (0, 1).
    """
    cost = -y[:, 1]
    inside = y[:, 0] > ref_point[0]
    good = float(cost[inside].min()) if bool(inside.any()) else 1.0
    failed = cost[~inside & (cost < good)]
    floor = float(failed.max()) if failed.numel() else 0.5 * good
    return min(max(floor, 0.05), 0.95)


def design_ceiling(x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float]) -> float:
    """How deep into a threshold cube the initial design reaches, from what the history shows.

    No cost formula exists for thresholds, so depth is the mean coordinate of a point (0: every
    threshold at ``hi``, 1: every one at ``lo``; costs fall as it grows). The design reaches to the
    shallowest measured point deeper than every point inside the region of interest (accuracy above
    ``ref_point[0]``), i.e. to the first known failure; with none, to the whole cube.

    Args:
        x: history points ``[k, L]`` of the threshold cube.
        y: maximised objectives ``[k, 3]``.
        ref_point: the hypervolume reference point.

    Returns:
        A depth in (0, 1].
    """
    depth = x.to(torch.double).mean(dim=-1)
    inside = y[:, 0] > ref_point[0]
    good = float(depth[inside].max()) if bool(inside.any()) else 0.0
    failed = depth[~inside & (depth > good)]
    ceiling = float(failed.min()) if failed.numel() else 1.0
    return min(max(ceiling, 0.05), 1.0)


class BotorchProposer:
    """Multi-objective BO: qLogNEHVI on a GP for grid-mean accuracy, with the known costs exact.

    * The history holds the unmerged model and the uniform marks as well as this method's own
      evaluations; all of them train the GP.
    * Batch 0 is the initial design of ``initial`` points, placed inside the region of interest that
      the history reveals (:func:`design_floor`): a third are ToMe's uniform schedules in that cost
      range (known-good structure), the rest are scrambled Sobol directions each scaled so that its
      relaxed GFLOPs hit one of evenly spaced levels between the floor and no merging (irregular
      schedules at every merge level, dense where the accuracy loss is small). Without a region in the
      history (no reference point given) it falls back to half ToMe schedules, half plain Sobol.
    * Then batches of ``q`` points maximise qLogNoisyExpectedHypervolumeImprovement with the
      reference point at the region's edge. The GP (SingleTaskGP, inputs normalised to the unit cube,
      outputs standardised) models mean accuracy over the (channel, SNR) grid with the *known*
      measurement variance (``train_Yvar`` from the evaluator's standard errors) instead of inferring a
      noise level; the two cost objectives come from a ``GenericDeterministicModel`` on the relaxed
      cost formulas, so no GP capacity is spent learning what is known exactly.
    * No budget goes to a schedule already measured: a candidate whose integer schedule r is in the
      history (or earlier in the batch) is replaced by the best fresh point, by acquisition value, of
      a seeded pool around it.
    * Fit and optimiser warnings are logged (``logging``, this module's logger) and kept in
      ``self.warnings``, never dropped.
    * q = 4 by default: sequential greedy q-batches keep the GP refits few (a fit costs seconds on
      two cores) while each evaluation still costs far more than proposing it.

    In a :class:`~paretoctl.optimizer.space.ThresholdSpace` the costs are not analytic (they depend
    on the images): two more GPs learn the measured mean relative GFLOPs and channel uses (fixed small
    noise, :data:`COST_GP_NOISE`), and the three form a ``ModelListGP`` for qLogNEHVI. Its initial
    design is a third constant thresholds, the rest Sobol directions scaled to evenly spaced depths,
    both up to the first known failure (:func:`design_ceiling`).
    """

    def __init__(self, space: AnySpace, seed: int, q: int, initial: int, num_restarts: int = 6,
                 raw_samples: int = 128, mc_samples: int = 32, maxiter: int = 60,
                 prior_mean: PriorMeanName = "cost_curve") -> None:
        self.space, self.seed, self.q, self.initial = space, seed, q, initial
        self.prior_mean = prior_mean
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.maxiter = maxiter
        self.warnings: list[str] = []

    uses_reference = True

    def batch_size(self, batch: int) -> int:
        return self.initial if batch == 0 else self.q

    def _measured(self, x: torch.Tensor) -> set[tuple[float, ...]]:
        return {self.space.key(p) for p in x.tolist()}

    def initial_design(self, n: int, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                       ref_point: Sequence[float] | None = None) -> list[list[float]]:
        """``n`` fresh points: inside the region the history shows, or spread wide without one."""
        taken = self._measured(x) if x is not None else set()
        if isinstance(self.space, ThresholdSpace):
            known = x is not None and y is not None and ref_point is not None and len(y) > 0
            ceiling = design_ceiling(x, y, ref_point) if known else 1.0  # type: ignore[arg-type]
            return self._threshold_design(n, ceiling, taken)
        space = self._schedule_space()
        if y is None or ref_point is None or len(y) == 0:
            n_tome = n // 2
            tome = UniformProposer(space, self.q, n_tome + 1).ordered(n_tome + 1)[1:]
            spread = [space.from_r(r) for r in tome]
            return spread + sobol_points(n - len(spread), space.dim, self.seed).tolist()
        floor = design_floor(y.to(torch.double), ref_point)
        unmerged = self._unmerged_gflops()
        points: list[list[float]] = []
        # A ToMe schedule beyond max_proportion is measured clipped (from_r), so it is compared by the
        # clipped schedule's key: the marks walk has usually measured it already.
        in_range: dict[tuple[float, ...], list[float]] = {}  # by key: two schedules may clip to one
        for r in tome_schedules(space):
            point = space.from_r(r)
            key = space.key(point)
            if key not in taken and key not in in_range and floor <= self._gflops_rel(point, unmerged) < 1.0:
                in_range[key] = point
        fresh_tome = list(in_range.items())
        n_tome = min(n // 3, len(fresh_tome))
        for k in range(n_tome):  # evenly spread over the range, lightest first; distinct indices, fresh keys
            key, point = fresh_tome[round(k * (len(fresh_tome) - 1) / max(1, n_tome - 1))]
            taken.add(key)
            points.append(point)
        m = n - len(points)
        levels = [1.0 - (1.0 - floor) * (k + 1) / m for k in range(m)]
        directions = sobol_points(8 * m + 8, self.space.dim, self.seed)
        scaled = self.scale_to_levels(directions, levels * 8 + [floor] * 8)
        for point in scaled.tolist():
            if len(points) == n:
                break
            key = self.space.key(point)
            if key not in taken:
                taken.add(key)
                points.append(point)
        return points + sobol_points(n - len(points), self.space.dim, self.seed, skip=8 * m + 8).tolist()

    def _threshold_design(self, n: int, ceiling: float, taken: set[tuple[float, ...]]) -> list[list[float]]:
        """``n`` fresh threshold points at evenly spaced depths up to ``ceiling`` (see the class docstring)."""
        dim = self.space.dim
        n_const = n // 3
        m = n - n_const
        levels = [ceiling * (k + 1) / max(1, n_const) for k in range(n_const)]
        candidates = [[level] * dim for level in levels]
        directions = sobol_points(4 * m + 4, dim, self.seed)
        depths = torch.tensor([ceiling * (k + 1) / m for k in range(m)] * 4 + [ceiling] * 4, dtype=torch.double)
        scaled = directions * (depths / directions.mean(dim=-1).clamp(min=1e-9))[:, None]
        candidates += scaled.clamp(0, 1).tolist()
        points: list[list[float]] = []
        for point in candidates:
            key = self.space.key(point)
            if len(points) < n and key not in taken:
                taken.add(key)
                points.append(point)
        return points + sobol_points(n - len(points), dim, self.seed, skip=4 * m + 4).tolist()

    def _schedule_space(self) -> SearchSpace:
        """The proportions space (the relaxed-cost helpers exist only there)."""
        if not isinstance(self.space, SearchSpace):
            raise TypeError("relaxed costs exist only in the proportions space")
        return self.space

    def _unmerged_gflops(self) -> float:
        space = self._schedule_space()
        return float(space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))[0, 0])

    def _gflops_rel(self, point: Sequence[float], unmerged: float) -> float:
        space = self._schedule_space()
        return float(space.relaxed_costs(torch.tensor([list(point)], dtype=torch.double))[0, 0]) / unmerged

    def scale_to_levels(self, directions: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
        """Each direction ``[k, L]`` times the scale (bisection) whose relaxed GFLOPs hit its level.

        A level out of reach along a direction gives the direction at its largest scale (max entry 1).
        """
        unmerged = self._unmerged_gflops()
        target = torch.tensor(list(levels), dtype=torch.double) * unmerged
        lo = torch.zeros(len(directions), dtype=torch.double)
        hi = 1.0 / directions.max(dim=-1).values.clamp(min=1e-9)
        for _ in range(40):  # relaxed GFLOPs fall as the scale grows
            mid = (lo + hi) / 2
            above = self._schedule_space().relaxed_costs(directions * mid[:, None])[:, 0] > target
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (directions * hi[:, None]).clamp(0, 1)

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
        if batch == 0 or len(x) < 2:
            return self.initial_design(n, x, y, ref_point)
        return self._acquire(batch, x, y, ref_point, n, y_var).tolist()

    def _acquire(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                 n: int, y_var: torch.Tensor | None) -> torch.Tensor:
        # GP initialisation and fitting draw from torch's global RNG: seed it for reproducible proposals,
        # inside fork_rng so that the caller's RNG state is the same after the call as before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + batch)
            return self._acquire_seeded(batch, x, y, ref_point, n, y_var)

    def _log(self, batch: int, stage: str, caught: Sequence[warnings.WarningMessage]) -> None:
        counts = Counter(f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught)
        for text, times in counts.items():
            msg = f"botorch batch {batch}: {stage}: {text}"
            if msg not in self.warnings:
                self.warnings.append(msg)  # whole, for whoever inspects the proposer
                line = msg if len(msg) <= 300 else f"{msg[:300]} ... ({len(msg)} characters)"
                logger.warning(line if times == 1 else f"{line} (x{times})")

    def fit_model(self, batch: int, x: torch.Tensor, y: torch.Tensor, y_var: torch.Tensor | None) -> Any:
        """The accuracy GP, fitted; known noise when ``y_var`` is given.

        The variance is floored at 1e-6 (a standard error of 0.1 points: an accuracy of exactly 0 or 1
        reports a standard error of 0, which no finite sample supports). Warnings raised while the GP
        is built or fitted are logged, not dropped.
        """
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        dim = self.space.dim
        bounds = torch.stack([torch.zeros(dim, dtype=torch.double), torch.ones(dim, dtype=torch.double)])
        yvar = None if y_var is None else y_var.to(torch.double).reshape(-1, 1).clamp(min=1e-6)
        mean = self.cost_curve_mean(x, y, yvar)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            standardise = Standardize(m=1)
            gp = SingleTaskGP(x, y[:, :1], train_Yvar=yvar, input_transform=Normalize(dim, bounds=bounds),
                              outcome_transform=standardise, mean_module=mean)
            if mean is not None:  # the transform has now seen the targets
                mean.standardise_like(standardise.means, standardise.stdvs)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        self._log(batch, "GP fit", caught)
        return gp

    def cost_curve_mean(self, x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor | None) -> CostCurveMean | None:
        """The prior mean for the accuracy GP: :class:`CostCurveMean` fitted to the history in a
        proportions space with ``prior_mean='cost_curve'``; None (GPyTorch's constant mean) otherwise."""
        if self.prior_mean != "cost_curve" or not isinstance(self.space, SearchSpace):
            return None
        space = self.space
        unmerged = space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))[0, 0]

        def relative_gflops(xx: torch.Tensor) -> torch.Tensor:
            return space.relaxed_costs(xx)[..., 0] / unmerged

        weight = None if yvar is None else 1.0 / yvar.reshape(-1)
        knots, values = isotonic_increasing(relative_gflops(x.to(torch.double)).detach(), y[:, 0].to(torch.double),
                                            weight)
        return CostCurveMean(relative_gflops, knots, values, floor=0.0)

    def fit_cost_models(self, batch: int, x: torch.Tensor, y: torch.Tensor) -> list[Any]:
        """GPs of the two measured cost objectives (``y[:, 1]``, ``y[:, 2]``: -relative GFLOPs and
        channel uses, means over the build's images) for a threshold space, fixed small noise
        (:data:`COST_GP_NOISE`); fit warnings are logged as the accuracy GP's are."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        dim = self.space.dim
        bounds = torch.stack([torch.zeros(dim, dtype=torch.double), torch.ones(dim, dtype=torch.double)])
        models = []
        for column, name in ((1, "GFLOPs"), (2, "channel uses")):
            target = y[:, column : column + 1]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                gp = SingleTaskGP(x, target, train_Yvar=torch.full_like(target, COST_GP_NOISE),
                                  input_transform=Normalize(dim, bounds=bounds), outcome_transform=Standardize(m=1))
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            self._log(batch, f"{name} GP fit", caught)
            models.append(gp)
        return models

    def _acquire_seeded(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                        n: int, y_var: torch.Tensor | None) -> torch.Tensor:
        from botorch.generation.gen import gen_candidates_scipy
        from botorch.optim import optimize_acqf

        dim = self.space.dim
        x = x.to(torch.double)
        bounds = torch.stack([torch.zeros(dim, dtype=torch.double), torch.ones(dim, dtype=torch.double)])
        acq = self.acquisition(batch, x, y, ref_point, y_var)
        optimiser: list[warnings.WarningMessage] = []

        def gen_recorded(*args: Any, **kwargs: Any) -> Any:
            # The optimiser's warnings are kept here, so optimize_acqf neither drops them nor retries on them.
            with warnings.catch_warnings(record=True) as inner:
                warnings.simplefilter("always")
                out = gen_candidates_scipy(*args, **kwargs)
            optimiser.extend(inner)
            return out

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # No retry: L-BFGS-B's line search ends early (scipy status 2) whenever the joint posterior
            # of the baseline and a candidate needs Cholesky jitter, which it did in every batch of the
            # default build; a second try from fresh starts met the same end every time and cost a third to
            # a half of the proposal time (docs/architecture.md, "Search"). The first try's candidates are kept.
            cand, _ = optimize_acqf(
                acq, bounds=bounds, q=n, num_restarts=self.num_restarts, raw_samples=self.raw_samples,
                sequential=True, options={"batch_limit": 8, "maxiter": self.maxiter, "seed": self.seed + batch},
                retry_on_optimization_warning=False, gen_candidates=gen_recorded,
            )
        self._log(batch, "acquisition", [*caught, *optimiser])
        return self.dedupe(batch, acq, cand.detach().clamp(0, 1), self._measured(x))

    def acquisition(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                    y_var: torch.Tensor | None) -> Any:
        """qLogNEHVI on the fitted accuracy GP and the costs, reference point ``ref_point``.

        The costs are exact (the relaxed cost model) in the proportions space, and learnt by GPs
        (:meth:`fit_cost_models`, joined with the accuracy GP in a ``ModelListGP``) in a threshold space.
        """
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.models import ModelListGP
        from botorch.models.deterministic import GenericDeterministicModel
        from botorch.models.model import ModelList
        from botorch.sampling.get_sampler import get_sampler

        x = x.to(torch.double)
        y = y.to(torch.double)
        gp = self.fit_model(batch, x, y, y_var)
        model: Any
        if isinstance(self.space, ThresholdSpace):
            model = ModelListGP(gp, *self.fit_cost_models(batch, x, y))
        else:
            space = self.space
            cost_ref = space.relaxed_costs(torch.zeros(1, space.dim, dtype=torch.double))[0]

            def known_costs(xx: torch.Tensor) -> torch.Tensor:
                return -space.relaxed_costs(xx) / cost_ref

            model = ModelList(gp, GenericDeterministicModel(known_costs, num_outputs=2))
        # A list sampler: QMC normal base samples for the GP, none needed for the known costs.
        posterior: Any = model.posterior(x[:1])
        sampler = get_sampler(posterior, torch.Size([self.mc_samples]), seed=self.seed + batch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model=model, ref_point=list(ref_point), X_baseline=x, prune_baseline=True, sampler=sampler,
            )
        self._log(batch, "acquisition", caught)
        return acq

    def dedupe(self, batch: int, acq: Any, cand: torch.Tensor, taken: set[tuple[float, ...]]) -> torch.Tensor:
        """``cand`` with every point whose configuration is measured (or repeats) replaced by a fresh one.

        Configurations are compared by the space's ``key`` (the schedule r, or the rounded thresholds).

        The replacement is the pool point of highest acquisition value (the accepted points pending)
        among fresh schedules; the pool, seeded by (seed, batch, index), holds Gaussian steps of several
        sizes around the duplicate plus Sobol points, so it is a deterministic function of the history.
        """
        accepted: list[torch.Tensor] = []
        for index, point in enumerate(cand):
            r = self.space.key(point.tolist())
            if r in taken:
                point = self._replacement(batch, index, acq, point, taken, accepted)
                r = self.space.key(point.tolist())
                logger.info("botorch batch %d: candidate %d repeated a measured schedule; replaced", batch, index)
            taken.add(r)
            accepted.append(point)
        return torch.stack(accepted)

    def _replacement(self, batch: int, index: int, acq: Any, point: torch.Tensor, taken: set[tuple[float, ...]],
                     accepted: Sequence[torch.Tensor]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + batch * 101 + index)
        dim = self.space.dim
        sigmas = torch.tensor([0.02, 0.05, 0.1, 0.2], dtype=torch.double).repeat_interleave(64)[:, None]
        local = (point + sigmas * torch.randn(len(sigmas), dim, generator=gen, dtype=torch.double)).clamp(0, 1)
        pool = torch.cat([local, sobol_points(64, dim, self.seed + 7919 * (batch + 1) + index)])
        fresh = [p for p in pool if self.space.key(p.tolist()) not in taken]
        if not fresh:
            return pool[-1]  # nothing fresh nearby: a space-filling point (practically never reached)
        cands = torch.stack(fresh)
        acq.set_X_pending(torch.stack(list(accepted)) if accepted else None)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = acq(cands.unsqueeze(1))
        self._log(batch, "replacement", caught)
        acq.set_X_pending(None)
        return cands[int(values.argmax())]


class Nsga2Proposer:
    """NSGA-II (pymoo) in ask/tell form on the same three objectives.

    The population is re-derived from the history on every call (replaying ask/tell with pymoo's
    seeded RNG), so the proposer keeps no state across calls and resumes exactly.
    """

    def __init__(self, space: AnySpace, seed: int, pop_size: int) -> None:
        self.space, self.seed, self.pop_size = space, seed, pop_size

    def batch_size(self, batch: int) -> int:
        return self.pop_size

    def propose(self, batch: int, x: torch.Tensor, y: torch.Tensor, ref_point: Sequence[float],
                n: int, y_var: torch.Tensor | None = None) -> list[list[float]]:
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


def make_proposer(method: str, space: AnySpace, seed: int, q: int, initial: int, budget: int,
                  num_restarts: int = 6, raw_samples: int = 128, mc_samples: int = 32, maxiter: int = 60,
                  prior_mean: PriorMeanName = "cost_curve") -> Proposer:
    """The proposer for ``method``; baselines use batches of the same size as BoTorch's q."""
    if method == "botorch":
        return BotorchProposer(space, seed, q, initial, num_restarts, raw_samples, mc_samples, maxiter, prior_mean)
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

