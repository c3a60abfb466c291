"""`paretoctl build`: search, pick the front on validation, re-measure it on test, write front.json.

Phases, each resumable from the build directory:

1. the unmerged model ("reference") and, optionally, ToMe's uniform schedules as marks (in a
   threshold build, ``search.space: thresholds``, also constant thresholds ``[t] * L``);
2. the search method (BoTorch by default) up to its budget, then any configured baselines, each
   batch planned durably before it is evaluated;
3. the front: every evaluated schedule (search and marks alike) non-dominated at some (channel, SNR)
   on the validation split in the policy's objectives, capped at ``max_front_configs`` by what users
   would lose, per budget and per loss level (:func:`select_front`);
4. the test split: the unmerged model and every front configuration re-measured on held-out images
   (with worker processes, the unmerged model's pieces are measured ahead, while proposals run:
   :meth:`BuildContext.proposing`);
5. ``front.json`` (atomic), ``convergence.json`` and a copy of the config.

Before any of it, the config is checked against the machine (``paretoctl.optimizer.preflight``), the
output directory is proved writable, and the directory is locked and checked against the config
(``paretoctl.optimizer.builddir``). Every file is written through ``paretoctl.service.fileio``, so a
full disk ends the build with an ``OSError`` and leaves the archive resumable. The caller's torch RNG
is left as it was (the build seeds its own inside ``torch.random.fork_rng``).
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from paretoctl.models.identity import model_identity
from paretoctl.models.schedule import proportions_from_r
from paretoctl.optimizer.archive import JsonlArchive, PlanStore
from paretoctl.optimizer.builddir import BuildError, BuildLock, check_records, prepare_directory
from paretoctl.optimizer.config import BuildConfig
from paretoctl.optimizer.evaluator import Evaluation, Evaluator, PartialEvaluation, tokens_entering
from paretoctl.optimizer.executor import (
    Executor,
    PartsRequest,
    Split,
    WorksAhead,
    load_model,
    local_parts,
    make_evaluator,
    make_executor,
    open_split,
)
from paretoctl.optimizer.pareto import (
    DEFAULT_MAX_ACCURACY_DROP,
    OBJECTIVES,
    hypervolume,
    margin,
    mean_channel_uses,
    objective_stderr,
    objective_vector,
    pareto_mask,
    per_snr_hypervolumes,
    per_snr_pareto_ids,
    reference_point,
)
from paretoctl.optimizer.preflight import Preflight, preflight
from paretoctl.optimizer.proposers import (
    FixedProposer,
    Proposer,
    batches_for,
    make_proposer,
    threshold_marks,
    tome_schedules,
)
from paretoctl.optimizer.runtime import set_threads
from paretoctl.optimizer.screening import Screen, paired_drop, screen_parts
from paretoctl.optimizer.space import (
    AnySpace,
    Candidate,
    CandidateKey,
    SearchSpace,
    ThresholdSpace,
    ViTShape,
    record_candidate,
)
from paretoctl.service.fileio import atomic_write_text, ensure_writable_dir

ProgressFn = Callable[[str, int, int, float | None], None]
MARKS_TAG = "uniform-marks"
"""Archive tag of ToMe's uniform schedules measured before the search (``search.uniform_marks``)."""
THRESHOLD_MARKS_TAG = "uniform-thresholds"
"""Archive tag of the constant-threshold marks of a threshold build (``search.uniform_marks``)."""
"""Validation images a threshold configuration is timed on, in turn (its work depends on the image)."""


def evaluation_record(ev: Evaluation, eval_id: int, method: str, batch: int, index: int,
                      x: Sequence[float] | None, split: str = "val",
                      batch_x: Sequence[Sequence[float]] | None = None) -> dict[str, Any]:
    """The archive line of one evaluation (layout in docs/internals.md).

    ``batch_x`` is the whole planned batch the evaluation belongs to, so that a batch interrupted
    after its first record can be finished from the archive alone if ``plan.json`` is lost.
    """
    return {
        "eval_id": eval_id, "method": method, "batch": batch, "index": index,
        "x": list(x) if x is not None else None,
        "batch_x": [list(p) for p in batch_x] if batch_x is not None else None, "r": ev.r,
        "merging": ev.merging, "thresholds": ev.thresholds,
        "cost_distribution": ev.distribution.model_dump() if ev.distribution is not None else None,
        "gflops": ev.costs.gflops_json(), "tokens_sent": ev.costs.tokens_sent,
        "channel_uses": ev.costs.channel_uses, "tokens_per_layer": ev.costs.tokens_per_layer,
        f"accuracy_{split}": {k: [p.to_json() for p in v] for k, v in ev.accuracy.items()},
        "wall_s": round(ev.wall_s, 3), "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"screened": ev.screened} if ev.screened is not None else {}),
    }


@dataclass
class BuildContext:
    """Everything a build phase needs: config, evaluators, archives and the search space."""

    cfg: BuildConfig
    out: Path
    val: Evaluator
    test_factory: Callable[[], Evaluator]
    space: SearchSpace
    archive: JsonlArchive
    test_archive: JsonlArchive
    plan: PlanStore
    progress: ProgressFn
    sizes: dict[str, int]
    profile: Any
    executor: Executor | None = None
    """Runs batches of evaluations (``runtime.executor``); None evaluates in this process."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds spent in this session, keyed ``"<stage>/<what>"``: ``setup/load``,
    ``reference/evaluate``, ``<tag>/propose`` and ``<tag>/evaluate`` per search, ``test split/evaluate``,
    ``timing/measure`` (:meth:`spend`)."""
    search_space: AnySpace | None = None
    """The space the search method explores (``search.space``); None: ``space``, the proportions."""
    val_dataset: Any = None
    """The validation images (a dataset of ``(image, label)``): threshold configurations are timed on them."""
    screen: Screen | None = None
    """Validation measurements are screened (``search.screen_images``); None measures every image."""

    def __post_init__(self) -> None:
        self._cache: dict[CandidateKey, Evaluation] = {}
        self._reference_hits: torch.Tensor | None = None
        self._test: Evaluator | None = None
        if self.search_space is None:
            self.search_space = self.space
        for rec in self.archive:
            self._cache.setdefault(record_candidate(rec).key, _evaluation_from_record(rec, self.space.shape))

    @property
    def searched(self) -> AnySpace:
        """The search method's space (``search_space``, filled in at construction)."""
        return self.search_space if self.search_space is not None else self.space

    def evaluate_val(self, candidate: Candidate | Sequence[int]) -> Evaluation:
        """Validation evaluation of a candidate (or ``r``), reusing an earlier identical measurement."""
        return next(self.evaluate_val_many([candidate]))

    def evaluate_val_many(self, candidates: Sequence[Candidate | Sequence[int]]) -> Iterator[Evaluation]:
        """Validation evaluations of ``candidates``, in order; the new ones go to the executor together.

        Identity is the merging kind and its values (``Candidate.key``), so thresholds never collide
        with a fixed schedule.
        """
        wanted = [Candidate.of(c) for c in candidates]
        fresh = list({c.key: c for c in wanted if c.key not in self._cache}.values())  # first appearance order
        results = self._screened(self.screen, fresh) if self.screen is not None and fresh \
            else self.evaluate_many("val", fresh)
        for c in wanted:
            if c.key not in self._cache:  # the next fresh configuration, in first-appearance order
                self._cache[c.key] = next(results)
            yield self._cache[c.key]

    def evaluate_many(self, split: Split, candidates: Sequence[Candidate | Sequence[int]]) -> Iterator[Evaluation]:
        """Evaluations of ``candidates`` on ``split`` by the executor, yielded in order as they finish."""
        if self.executor is not None:
            return self.executor.evaluate(split, candidates)
        evaluator = self._evaluator(split)
        return (evaluator.evaluate_candidate(c) for c in candidates)

    def evaluate_parts(self, split: Split, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
        """Some parts of evaluations on ``split``, by the executor (``Executor.evaluate_parts``)."""
        if self.executor is not None:
            return self.executor.evaluate_parts(split, requests)
        return local_parts(self._evaluator(split), requests)

    def _evaluator(self, split: Split) -> Evaluator:
        return self.val if split == "val" else self.test

    def _screened(self, screen: Screen, fresh: Sequence[Candidate]) -> Iterator[Evaluation]:
        """Validation evaluations of ``fresh``, each first on the screened images and then, unless it is
        clearly outside the region of interest, on the rest (``paretoctl.optimizer.screening``). The
        unmerged model's part 0 is measured once, in the first call's batch of part-0 pieces."""
        first = [PartsRequest(c, (0,), screen.parts, per_image=True) for c in fresh]
        reference_hits = self._reference_hits
        if reference_hits is None:
            first.insert(0, PartsRequest(screen.reference, (0,), screen.parts, per_image=True))
        measured = list(self.evaluate_parts("val", first))
        if reference_hits is None:
            reference_hits = self._reference_hits = _hits(measured.pop(0)[0])
        drops = [paired_drop(reference_hits, _hits(m[0])) for m in measured]
        stopped = [screen.rejects(d) for d in drops]
        rest = self.evaluate_parts("val", [PartsRequest(c, tuple(range(1, screen.parts)), screen.parts)
                                           for c, stop in zip(fresh, stopped, strict=True) if not stop])
        for c, parts, drop, stop in zip(fresh, measured, drops, stopped, strict=True):
            if stop:
                ev = self.val.combine(c, parts)
                ev.screened = screen.record(drop)
                yield ev
            else:
                yield self.val.combine(c, parts + next(rest))

    def evaluate_ahead(self, split: Split, candidate: Candidate, batch_size: int) -> None:
        """Let the executor measure ``candidate`` on ``split`` in batch-sized pieces while its workers would
        idle (:meth:`proposing`), if it can; the measurement is the same either way."""
        if isinstance(self.executor, WorksAhead):
            self.executor.evaluate_ahead(split, candidate, max(1, -(-self.sizes[split] // batch_size)))

    @contextlib.contextmanager
    def proposing(self) -> Iterator[None]:
        """Around a proposer's call: the proposer always runs on one thread, whatever the executor, and
        with an executor that works ahead, one worker takes the evaluations registered ahead while any
        remain, so a proposal does not leave the cores idle.

        Why one thread always: a different thread count changes the GP fit's floating-point sums, hence
        the plan. Two builds of one config diverged that way on 2026-12-06 (how much work remained
        ahead depended on timing), and on 2026-12-07 a local build (two threads) and a build with
        worker processes proposed different first BoTorch batches from the same history. The small GP
        operations run about as fast on one thread as on two (``bench/RESULTS.md``), so every
        executor and machine now proposes the same plan from the same history.
        """
        executor = self.executor
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if not isinstance(executor, WorksAhead):
                yield
                return
            started, registered = executor.pieces_ahead()
            if started >= registered:
                yield
            else:
                with executor.while_idle(busy=1):
                    yield
        finally:
            torch.set_num_threads(threads)

    def spend(self, key: str, started: float) -> None:
        """Add the wall seconds since ``started`` (``time.perf_counter()``) to ``seconds[key]``."""
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started

    def close(self) -> None:
        """Release the executor's workers."""
        if self.executor is not None:
            self.executor.close()

    @property
    def test(self) -> Evaluator:
        if self._test is None:
            self._test = self.test_factory()
        return self._test

    def next_id(self) -> int:
        return len(self.archive)


def _hits(part: PartialEvaluation) -> torch.Tensor:
    """The per-image hits of a part measured with ``per_image=True``."""
    if part.hits is None:
        raise RuntimeError("a screening part came back without its per-image hits")
    return part.hits


def _evaluation_from_record(rec: Mapping[str, Any], shape: ViTShape) -> Evaluation:
    from paretoctl.optimizer.evaluator import AccuracyPoint, Costs
    from paretoctl.service.schema import CostDistribution

    g = rec["gflops"]
    costs = Costs(g["total"], g["edge"], g["server"], rec["tokens_sent"], rec["channel_uses"],
                  tokens_entering(rec["r"], shape.num_patches, shape.num_prefix))
    acc = {k: [AccuracyPoint(**p) for p in v] for k, v in rec["accuracy_val"].items()}
    screened = rec.get("screened")
    if rec.get("merging", "proportions") != "thresholds":
        return Evaluation(list(rec["r"]), costs, acc, 0.0, screened=screened)
    dist = CostDistribution.model_validate(rec["cost_distribution"])
    return Evaluation(list(rec["r"]), costs, acc, 0.0, [float(t) for t in rec["thresholds"]], dist, screened)


def reference_record(ctx: BuildContext) -> dict[str, Any]:
    """The unmerged model's record (evaluated first; it anchors objectives and reference points)."""
    found = ctx.archive.where(method="reference")
    if found:
        return found[0]
    r0 = [0] * ctx.space.dim
    ctx.progress("reference", 0, 1, None)
    started = time.perf_counter()
    rec = evaluation_record(ctx.evaluate_val(r0), ctx.next_id(), "reference", 0, 0, ctx.space.from_r(r0))
    ctx.spend("reference/evaluate", started)
    ctx.archive.append(rec)
    ctx.progress("reference", 1, 1, None)
    return rec


def run_method(ctx: BuildContext, method: str, budget: int, seed: int, ref: Mapping[str, Any],
               tag: str | None = None, *, space: AnySpace | None = None,
               proposer: Proposer | None = None) -> list[dict[str, Any]]:
    """Evaluate ``budget`` candidates of ``method``; skips what the archive already holds.

    Args:
        space: where the method searches (default: the build's ``search.space``).
        proposer: a ready proposer instead of ``method``'s (the constant-threshold marks).
    """
    tag = tag or method
    s = ctx.cfg.search
    space = space or ctx.searched
    proposer = proposer or make_proposer(method, space, seed, s.q, s.initial, budget, s.num_restarts,
                                         s.raw_samples, s.mc_samples, s.maxiter, s.prior_mean)
    ref_point = reference_point(ref, s.max_accuracy_drop)
    sizes = batches_for(proposer, budget)
    for batch, size in enumerate(sizes):
        done = {rec["index"]: rec for rec in ctx.archive.where(method=tag, batch=batch)}
        if len(done) == size:
            continue
        planned = ctx.plan.get(tag, batch)
        if planned is None and done:
            planned = _plan_from_records(ctx, tag, batch, done)
        if planned is None:
            hist = ctx.archive.where(method=tag)
            if getattr(proposer, "uses_reference", False):
                # The model-based proposer sees every evaluation made before it started (the unmerged
                # model and the uniform marks) plus its own; other methods' searches are left out, so
                # a benchmark stays at equal budget and the history does not depend on run order.
                # Only what lives in its space counts (a threshold search skips ToMe's fixed marks).
                marks = [*ctx.archive.where(method=MARKS_TAG), *ctx.archive.where(method=THRESHOLD_MARKS_TAG)]
                hist = [h for h in (dict(ref), *marks) if space.point(h) is not None] + hist
            points = [h["x"] if h["method"] == tag else space.point(h) for h in hist]
            x = torch.tensor(points, dtype=torch.double).reshape(-1, space.dim)
            y = torch.tensor([objective_vector(h, ref) for h in hist], dtype=torch.double).reshape(-1, len(OBJECTIVES))
            y_var = torch.tensor([objective_stderr(h) ** 2 for h in hist], dtype=torch.double)
            started = time.perf_counter()
            with ctx.proposing():
                planned = proposer.propose(batch, x, y, ref_point, size, y_var=y_var)
            ctx.spend(f"{tag}/propose", started)
            ctx.plan.put(tag, batch, planned)
        _check_plan(ctx, tag, batch, planned, size, done)
        todo = [(index, x_point) for index, x_point in enumerate(planned) if index not in done]
        started = time.perf_counter()
        evaluations = ctx.evaluate_val_many([space.candidate(x_point) for _, x_point in todo])
        for (index, x_point), ev in zip(todo, evaluations, strict=True):  # in plan order: resume stays exact
            rec = evaluation_record(ev, ctx.next_id(), tag, batch, index, x_point, batch_x=planned)
            ctx.archive.append(rec)
            mine = ctx.archive.where(method=tag)
            hv = hypervolume(torch.tensor([objective_vector(m, ref) for m in mine]), ref_point)
            ctx.progress(tag, len(mine), budget, hv)
        ctx.spend(f"{tag}/evaluate", started)
    return ctx.archive.where(method=tag)


MAX_TOME_MARKS = 16
"""The most of ToMe's uniform schedules a build measures as marks (:func:`tome_marks`)."""


def tome_marks(ctx: BuildContext, ref: Mapping[str, Any], limit: int = MAX_TOME_MARKS) -> list[dict[str, Any]]:
    """ToMe's uniform schedules from the least merging up, until they leave the region of interest.

    Why: these are the schedules a user would otherwise pick by hand (``bench/headline.py`` compares
    the front with them), so every one inside the region is measured and competes for the front; one
    spread over the whole range from no merging to the most would spend most marks far outside it.
    :func:`~paretoctl.optimizer.proposers.tome_schedules` (constant and decreasing r, least merging
    first, the unmerged one left out: it is the reference; a schedule beyond ``search.max_proportion``
    is measured clipped to it, as any point of the space) is walked ``search.q`` at a time; the walk
    stops after the first batch lying wholly outside the region (grid-mean validation accuracy at or
    below the reference point's, screened estimates included) or at ``limit`` schedules. Each batch
    is planned and archived as any search batch, so an interrupted walk resumes where it stopped.
    """
    s = ctx.cfg.search
    points = [ctx.space.from_r(r) for r in tome_schedules(ctx.space)[1:]][:limit]
    edge = reference_point(ref, s.max_accuracy_drop)[0]
    recs: list[dict[str, Any]] = []
    n = 0
    while n < len(points):
        n = min(n + s.q, len(points))
        recs = run_method(ctx, "uniform", n, s.seed, ref, tag=MARKS_TAG, space=ctx.space,
                          proposer=FixedProposer(points[:n], s.q))
        newest = recs[(n - 1) // s.q * s.q :]  # the batch just measured
        if all(objective_vector(rec, ref)[0] <= edge for rec in newest):
            break
    return recs


def _plan_from_records(ctx: BuildContext, tag: str, batch: int,
                       done: Mapping[int, Mapping[str, Any]]) -> list[list[float]]:
    """The candidates of a started batch whose plan was lost, recovered from its records' ``batch_x``."""
    plans = {json.dumps(rec.get("batch_x")) for rec in done.values()}
    planned = next(iter(done.values())).get("batch_x")
    if planned is None or len(plans) != 1:
        raise BuildError(
            f"{ctx.plan.path} has no plan for batch {batch} of {tag}, which is half evaluated, and the archive's "
            "records do not carry it; re-planning would change the front, so resume is refused (use another --out)"
        )
    ctx.plan.put(tag, batch, planned)
    return [list(map(float, p)) for p in planned]


def _check_plan(ctx: BuildContext, tag: str, batch: int, planned: Sequence[Sequence[float]], size: int,
                done: Mapping[int, Mapping[str, Any]]) -> None:
    """Refuse a plan that does not fit the batch or disagrees with what the archive already evaluated."""
    where = f"{ctx.plan.path}: batch {batch} of {tag}"
    if len(planned) != size or any(len(p) != ctx.space.dim for p in planned):
        raise BuildError(f"{where} holds {len(planned)} points of sizes {sorted({len(p) for p in planned})}, "
                         f"expected {size} of {ctx.space.dim}; delete the file to recover the plan from the archive")
    for index, rec in done.items():
        if index >= size or rec.get("x") != list(planned[index]):
            raise BuildError(f"{where} does not match the archive's record {rec.get('eval_id')}; "
                             "delete the file to recover the plan from the archive")


def convergence(records_by_method: Mapping[str, Sequence[Mapping[str, Any]]], ref: Mapping[str, Any],
                snr_grid: Sequence[float], max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP) -> dict[str, Any]:
    """Hypervolume inside the region of interest after each evaluation, overall and per (channel, SNR)."""
    ref_point = reference_point(ref, max_accuracy_drop)
    methods: dict[str, list[dict[str, Any]]] = {}
    for name, recs in records_by_method.items():
        curve = []
        for n in range(1, len(recs) + 1):
            y = torch.tensor([objective_vector(r, ref) for r in recs[:n]])
            curve.append({"n_evals": n, "hypervolume": hypervolume(y, ref_point),
                          "hv_per_snr": per_snr_hypervolumes(recs[:n], ref, snr_grid, max_accuracy_drop)})
        methods[name] = curve
    return {"objectives": list(OBJECTIVES), "ref_point": ref_point, "max_accuracy_drop": max_accuracy_drop,
            "methods": methods}


def policy_objectives(record: Mapping[str, Any], channel: str, idx: int) -> list[float]:
    """(accuracy, -edge GFLOPs, -server GFLOPs, -channel uses) at one grid point: the policy's space.

    Every latency the policy can compute (measured or modelled, any device profile, any link) grows
    with the edge work, the server work and the symbols sent; so a schedule dominated here can never
    be the policy's answer, and one non-dominated here might be.
    """
    return [record["accuracy_val"][channel][idx]["mean"], -record["gflops"]["edge"], -record["gflops"]["server"],
            -mean_channel_uses(record)]


def policy_complete_ids(candidates: Sequence[Mapping[str, Any]], channels: Sequence[str],
                        n_grid: int) -> set[str]:
    """Ids of the candidates non-dominated in :func:`policy_objectives` at some (channel, grid SNR)."""
    keep: set[str] = set()
    for ch in channels:
        for i in range(n_grid):
            y = torch.tensor([policy_objectives(c, ch, i) for c in candidates], dtype=torch.double)
            keep |= {str(c["id"]) for c, k in zip(candidates, pareto_mask(y).tolist(), strict=True) if k}
    return keep


def latency_costs(rec: Mapping[str, Any]) -> tuple[float, float, float]:
    """(edge GFLOPs, server GFLOPs, channel uses) that latency is derived from: a threshold
    configuration's 95th percentiles over images (``paretoctl.service.latency.deadline_costs``, as the
    service models a front configuration), else the costs."""
    from paretoctl.service.latency import deadline_costs
    from paretoctl.service.schema import CostDistribution

    dist = rec.get("cost_distribution")
    if dist is not None:
        return deadline_costs(CostDistribution.model_validate(dist))
    return rec["gflops"]["edge"], rec["gflops"]["server"], float(rec["channel_uses"])


def _regret_latency(rec: Mapping[str, Any], profile: Any) -> float:
    """Latency ranking a candidate while capping: the profile's model, else 1 ms per GFLOP and per 1000 uses."""
    edge, server, uses = latency_costs(rec)
    if profile is None:
        return float(edge + server + uses / 1000.0)
    from paretoctl.service.latency import latency_parts

    return latency_parts(edge, server, uses, profile)[3]


LOSS_LEVELS = (0.25, 0.5, 1.0, 2.0)
"""Accuracy losses (points below the unmerged model) users ask for: the front keeps its cheapest
configuration at each, per (channel, grid SNR), as far as the cap allows (:func:`select_front`)."""


@dataclass(frozen=True)
class RegretTable:
    """The policy's decisions over a pool of configurations in two views, as the cap sees them.

    Row 0 is the unmerged model, which every front serves; rows ``1..`` are the pool. Keys are every
    (channel, grid SNR).

    Attributes:
        rows: the records, the unmerged model first.
        value: ``[rows, budgets, keys]`` validation accuracy of each configuration where it fits the
            budget, -1 where it does not (budgets: every configuration's latency).
        best: ``[budgets, keys]`` the pool's answer, the best accuracy within each budget.
        roi: ``[budgets, keys]`` True where that answer is within ``max_accuracy_drop`` points of the
            unmerged model (the queries users make).
        cost: ``[rows, keys x levels]`` GFLOPs relative to the unmerged model where a configuration is
            within the loss level of the unmerged model at that key, +inf where it is not.
        n_grid: grid SNRs per channel.
        levels: the loss levels of ``cost``, in points.
    """

    rows: list[Mapping[str, Any]]
    value: torch.Tensor
    best: torch.Tensor
    roi: torch.Tensor
    cost: torch.Tensor
    n_grid: int
    levels: tuple[float, ...]

    @classmethod
    def of(cls, pool: Sequence[Mapping[str, Any]], ref: Mapping[str, Any], n_grid: int,
           max_accuracy_drop: float | None, profile: Any, levels: Sequence[float] = LOSS_LEVELS) -> RegretTable:
        rows = [ref, *(c for c in pool if str(c["id"]) != str(ref["id"]))]
        channels = list(ref["accuracy_val"])
        lat = torch.tensor([_regret_latency(c, profile) for c in rows], dtype=torch.double)
        budgets = torch.unique(lat)  # the decision only changes at a configuration's latency
        fits = lat[:, None] <= budgets[None, :]  # [rows, budgets]
        acc = torch.tensor([[c["accuracy_val"][ch][i]["mean"] for ch in channels for i in range(n_grid)]
                            for c in rows], dtype=torch.double)  # [rows, keys]
        value = torch.where(fits[:, :, None], acc[:, None, :], torch.tensor(-1.0, dtype=torch.double))
        best = value.max(dim=0).values
        floor = acc[0] - margin(max_accuracy_drop)
        drops = torch.tensor(levels, dtype=torch.double) / 100.0
        within = acc[:, :, None] >= acc[0][None, :, None] - drops[None, None, :] - 1e-12  # [rows, keys, levels]
        gflops = torch.tensor([c["gflops"]["total"] / ref["gflops"]["total"] for c in rows], dtype=torch.double)
        cost = torch.where(within, gflops[:, None, None], torch.tensor(math.inf, dtype=torch.double))
        return cls(rows, value, best, best >= floor[None, :], cost.flatten(1), n_grid, tuple(levels))

    def regret(self, chosen: Sequence[int]) -> torch.Tensor:
        """``[budgets, keys]`` accuracy lost by answering from rows ``chosen`` and the unmerged model; a
        query that nothing chosen fits scores its whole answer plus 1, so the greedy cap covers queries first."""
        reached = self.value[[0, *chosen]].max(dim=0).values
        return self.best - reached

    def level_gap(self, chosen: Sequence[int]) -> torch.Tensor:
        """``[keys x levels]`` FLOPs saved (fraction of the unmerged model's) that the cheapest of rows
        ``chosen`` and the unmerged model falls short of the pool's cheapest at each loss level."""
        return self.cost[[0, *chosen]].min(dim=0).values - self.cost.min(dim=0).values

    def summary(self, chosen: Sequence[int]) -> dict[str, Any]:
        """What answering from rows ``chosen`` (and the unmerged model) costs, in points: by budget, the
        worst and mean accuracy regret inside the region and the worst anywhere, with the number of
        queries (budget x channel x SNR) in each; by loss level, the worst shortfall in FLOPs saved
        (``level_gap_points``) and where (``level_gap_at``: channel, grid SNR index, level)."""
        regret = torch.minimum(self.regret(chosen), self.best) * 100.0  # an unanswered query loses its answer
        inside = regret[self.roi]
        gap = self.level_gap(chosen) * 100.0
        worst = int(gap.argmax()) if gap.numel() else 0
        key, level = divmod(worst, len(self.levels))
        at = ({"channel": list(self.rows[0]["accuracy_val"])[key // self.n_grid], "snr_index": key % self.n_grid,
               "level": self.levels[level]} if gap.numel() and float(gap[worst]) > 0 else None)
        return {"max_roi_points": float(inside.max()) if inside.numel() else 0.0,
                "mean_roi_points": float(inside.mean()) if inside.numel() else 0.0,
                "max_points": float(regret.max()) if regret.numel() else 0.0,
                "queries_roi": int(inside.numel()), "queries": int(regret.numel()),
                "level_gap_points": float(gap.max()) if gap.numel() else 0.0, "level_gap_at": at}


def select_front(candidates: Sequence[dict[str, Any]], ref: Mapping[str, Any], snr_grid: Sequence[float],
                 cap: int, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                 profile: Any = None) -> list[dict[str, Any]]:
    """The configurations the policy could pick: complete in (accuracy, edge, server, uses), capped by regret.

    1. The pool: every candidate non-dominated in :func:`policy_objectives` at some (channel, grid
       SNR) on validation. No latency that grows with edge GFLOPs, server GFLOPs and channel uses
       (the policy's, under any profile, measured or modelled) prefers a schedule left out, so while
       the pool fits ``cap`` the front's decisions equal the best over the whole archive.
    2. Over the cap, the front is grown greedily from the unmerged model (always served, not counted)
       by what users would lose (:class:`RegretTable`), in two views of the same trade-off, each a
       fraction: by budget, the accuracy regret of every (channel, grid SNR, budget at each pool
       latency under ``profile``) query inside the region of interest (the best answer within
       ``max_accuracy_drop`` points of the unmerged model); by loss level, the FLOPs saving missed at
       each of :data:`LOSS_LEVELS` per (channel, grid SNR). Their sum counts first, the regret
       everywhere second, so the front stays close to exact where users go and keeps cheap
       configurations as far as the cap leaves room. Ties go to fewer GFLOPs, then the id.
       :func:`front_regret` reports what the cap left.

    Returns:
        The chosen records, by total GFLOPs (the unmerged model among them only while the pool fits).
    """
    pool = policy_pool(candidates, ref, len(snr_grid))
    if len(pool) <= cap:
        return sorted(pool, key=lambda c: c["gflops"]["total"])
    table = RegretTable.of(pool, ref, len(snr_grid), max_accuracy_drop, profile)
    chosen: list[int] = []

    def score(k: int) -> tuple[float, float, float, str]:
        regret = table.regret([*chosen, k])
        missed = table.level_gap([*chosen, k]).clamp(max=1.0)  # a level nothing chosen meets misses all of it
        row = table.rows[k]
        return (float(regret[table.roi].sum() + missed.sum()), float(regret.sum()), row["gflops"]["total"],
                str(row["id"]))

    while len(chosen) < cap:  # the pool (every row but the unmerged model, at least) exceeds the cap
        chosen.append(min((k for k in range(1, len(table.rows)) if k not in chosen), key=score))
    return sorted((dict(table.rows[k]) for k in chosen), key=lambda c: c["gflops"]["total"])


def policy_pool(candidates: Sequence[dict[str, Any]], ref: Mapping[str, Any], n_grid: int) -> list[dict[str, Any]]:
    """The candidates the policy could ever prefer (:func:`policy_complete_ids`), in the given order."""
    on_front = policy_complete_ids(candidates, list(ref["accuracy_val"]), n_grid)
    return [c for c in candidates if c["id"] in on_front]


def front_regret(candidates: Sequence[dict[str, Any]], front: Sequence[Mapping[str, Any]], ref: Mapping[str, Any],
                 n_grid: int, max_accuracy_drop: float | None, profile: Any = None) -> dict[str, Any]:
    """What answering from ``front`` (and the unmerged model, always served) instead of every
    candidate costs, on validation (:meth:`RegretTable.summary`); all zeros when the front holds the
    whole policy pool. Two views of the same trade-off: by budget, the policy's accuracy regret; by
    loss level, the largest shortfall in FLOPs saved (points of the unmerged model's GFLOPs) between
    the front's cheapest and the pool's cheapest configuration within each of :data:`LOSS_LEVELS`.
    """
    table = RegretTable.of(policy_pool(candidates, ref, n_grid), ref, n_grid, max_accuracy_drop, profile)
    kept = {str(c["id"]) for c in front}
    return table.summary([k for k in range(1, len(table.rows)) if str(table.rows[k]["id"]) in kept])


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("paretoctl", "torch", "timm", "botorch", "gpytorch", "pymoo", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _config_entry(rec: Mapping[str, Any], test_rec: Mapping[str, Any], space: SearchSpace,
                  profile: Any, channels: Sequence[Any] = ()) -> dict[str, Any]:
    from paretoctl.service.latency import config_latency
    from paretoctl.service.link import link_from_channel, payload_bits

    lat = config_latency(rec["id"], rec["r"], *latency_costs(rec), profile, rec.get("thresholds"))
    adaptive = rec.get("merging", "proportions") == "thresholds"
    props = ([round(p, 6) for p in proportions_from_r(rec["r"], space.shape.num_patches)] if adaptive
             else [round(p * space.max_proportion, 6) for p in space.from_r(rec["r"])])
    links = {c.label: link_from_channel(c.kind, c.params) for c in channels}
    bits = {label: payload_bits(rec["tokens_sent"], space.shape.embed_dim, link.bits, space.shape.num_patches)
            for label, link in links.items() if link is not None}
    return {
        **({"bits": bits} if bits else {}),
        "id": rec["id"], "source": rec["method"].split("-")[0],
        "proportions": props, "r": rec["r"],
        "tokens_per_layer": tokens_entering(rec["r"], space.shape.num_patches, space.shape.num_prefix),
        "gflops": rec["gflops"], "tokens_sent": rec["tokens_sent"], "channel_uses": rec["channel_uses"],
        "latency": lat.model_dump(),
        "accuracy_val": rec["accuracy_val"], "accuracy_test": test_rec["accuracy_test"],
        **({"merging": "thresholds", "thresholds": rec["thresholds"], "cost_distribution": rec["cost_distribution"]}
           if adaptive else {}),
    }


def config_id(rec: Mapping[str, Any]) -> str:
    """Stable, readable id of an archive record, e.g. ``botorch-0017``."""
    return "unmerged" if rec["method"] == "reference" else f"{rec['method']}-{rec['eval_id']:04d}"


def measure_on_test(ctx: BuildContext, recs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Test-split measurements of ``recs``, resumable through ``test_archive.jsonl`` (keyed by the merging
    kind and its values, so a threshold configuration never takes a fixed schedule's measurement)."""
    done = {record_candidate(t).key: t for t in ctx.test_archive}
    first = {record_candidate(rec).key: k for k, rec in reversed(list(enumerate(recs)))}
    pending = [key for key in first if key not in done]
    pending.sort(key=first.__getitem__)
    ctx.progress("test split", len(recs) - len(pending), len(recs), None)
    todo = [record_candidate(recs[first[key]]) for key in pending]
    for n, (key, ev) in enumerate(zip(pending, ctx.evaluate_many("test", todo), strict=True)):
        k = first[key]
        done[key] = evaluation_record(ev, len(ctx.test_archive), recs[k]["method"], 0, k, None, split="test")
        ctx.test_archive.append(done[key])
        ctx.progress("test split", len(recs) - len(pending) + n + 1, len(recs), None)
    return {rec["id"]: done[record_candidate(rec).key] for rec in recs}


def measured_profile(ctx: BuildContext, recs: Sequence[Mapping[str, Any]]) -> Any:
    """The build's device profile with the front's configurations timed on this machine.

    Edge at batch 1, server at ``timing.server_batch``, interleaved until the served statistic's 95%
    interval is within ``timing.rel_ci`` (``paretoctl.models.timing``; a p90 takes 35-200 runs): about
    25 s for 15 configurations of the bundled ViT. Run
    again on resume (it is not archived), so the figures always describe the machine that wrote
    the front. Timed in float32 on the evaluator's device, with ``timing.threads`` torch threads
    (the build's own thread count is restored afterwards; the measurements record the one timed with).

    A threshold configuration's work depends on the image, so it is timed on real validation images
    (``paretoctl.models.timing.TIMING_IMAGES`` of them, a fixed seeded choice, in turn), and its p50/p90 include the
    spread across images; fixed schedules keep a single image.
    """
    from paretoctl.models.timing import machine_info, time_schedules, torch_threads
    from paretoctl.service.schema import Measurements

    t = ctx.cfg.timing
    settings = t.settings()
    thresholds = [rec["thresholds"] if rec.get("merging") == "thresholds" else None for rec in recs]
    images = _timing_images(ctx) if any(th is not None for th in thresholds) else None
    ctx.progress("timing", 0, len(recs), None)
    with torch_threads(t.threads):
        timings = time_schedules(ctx.val.model, [list(rec["r"]) for rec in recs], ctx.cfg.split_index, settings,
                                 seed=ctx.cfg.search.seed, thresholds=thresholds, images=images)
        machine = machine_info(t.server_batch)
    ctx.progress("timing", len(recs), len(recs), None)
    measurements = Measurements.model_validate({
        "statistic": t.statistic, "machine": machine,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "configs": [{"config_id": rec["id"], "r": list(tm.r), "edge": tm.edge.to_json(), "server": tm.server.to_json(),
                     "thresholds": th} for rec, tm, th in zip(recs, timings, thresholds, strict=True)]})
    return ctx.profile.model_copy(update={"measurements": measurements})


def _timing_images(ctx: BuildContext) -> torch.Tensor:
    """The validation images threshold configurations are timed on (``paretoctl.models.timing.timing_images``)."""
    if ctx.val_dataset is None:
        raise ValueError("the build context holds no validation dataset to time threshold configurations on")
    from paretoctl.models.timing import timing_images

    return timing_images(ctx.val_dataset, ctx.cfg.search.seed)


def write_artifact(ctx: BuildContext, ref: dict[str, Any], front_recs: list[dict[str, Any]],
                   test: Mapping[str, dict[str, Any]], provenance: dict[str, Any]) -> Path:
    """Assemble, validate and atomically write ``front.json``."""
    from paretoctl.service.schema import FrontArtifact, dump_front

    profile = ctx.profile
    grid = ctx.cfg.channel.snr_grid_db
    entries = [_config_entry(r, test[r["id"]], ctx.space, profile, ctx.cfg.channel.kinds) for r in front_recs]
    pareto = per_snr_pareto_ids(front_recs, ref, grid)
    doc = {
        "schema_version": FrontArtifact.model_fields["schema_version"].default,
        "checksum": "",
        "provenance": provenance,
        "device_profile": profile.model_dump(),
        "reference_config_id": config_id(ref),
        "configs": entries,
        "pareto": pareto,
    }
    artifact = FrontArtifact.model_validate(doc)
    path = ctx.out / "front.json"
    dump_front(artifact, path)
    return path


def open_context(cfg: BuildConfig, out: Path, resume: bool, progress: ProgressFn,
                 checked: Preflight | None = None) -> BuildContext:
    """Check the build directory against the config, then load the model and data and open the archives.

    ``checked`` is the result of :func:`paretoctl.optimizer.preflight.preflight` (run here when None).
    The caller holds the directory's lock (:class:`paretoctl.optimizer.builddir.BuildLock`).
    """
    checked = checked or preflight(cfg)
    archive = JsonlArchive(out / "archive.jsonl")
    prepare_directory(out, cfg, len(archive), resume)
    test_archive = JsonlArchive(out / "test_archive.jsonl")
    check_records(archive, archive.path, cfg, checked.depth)
    check_records(test_archive, test_archive.path, cfg, checked.depth, split="accuracy_test")
    plan = PlanStore(out / "plan.json")
    model = load_model(cfg)
    val_ds, test_ds = open_split(cfg, "val", model), open_split(cfg, "test", model)  # lazy: file lists only
    val = make_evaluator(cfg, "val", model, val_ds)
    space = SearchSpace(ViTShape.of(model), cfg.split_index, cfg.search.max_proportion)
    searched: AnySpace = space
    if cfg.search.space == "thresholds":
        searched = ThresholdSpace(space.shape, cfg.split_index, *cfg.search.threshold_range)
    ctx = BuildContext(cfg, out, val, lambda: make_evaluator(cfg, "test", model, test_ds), space, archive,
                       test_archive, plan, progress, sizes={"val": len(val_ds), "test": len(test_ds)},
                       profile=checked.profile, search_space=searched, val_dataset=val_ds)
    if cfg.runtime.executor != "local":
        ctx.executor = make_executor(cfg, model, lambda split: ctx.val if split == "val" else ctx.test)
    return ctx


def run_build(cfg: BuildConfig, out: Path, *, resume: bool = False, progress: ProgressFn | None = None,
              source: str = "<config>") -> Path:
    """Run (or resume) a whole build and return the path of ``front.json``.

    Raises:
        ConfigError: the config does not fit this machine (nothing was loaded or written).
        OSError: ``out`` is not writable, or a write failed (disk full); the archive stays resumable.
        BuildError: the directory is locked, holds another build, or its files contradict the config.
        ArchiveError: an archive or plan file is corrupt.
    """
    progress = progress or (lambda *_: None)
    checked = preflight(cfg, source)  # nothing is loaded or written before this passes
    ensure_writable_dir(out)
    with BuildLock(out), torch.random.fork_rng(devices=[]), contextlib.ExitStack() as cleanup:
        torch.manual_seed(cfg.search.seed)  # timm's weight init before loading; the evaluations seed their own
        cleanup.callback(torch.set_num_threads, torch.get_num_threads())  # the caller's threads, restored
        set_threads(cfg.runtime.threads)
        return _run_locked(cfg, out, resume, progress, checked, cleanup)


def _run_locked(cfg: BuildConfig, out: Path, resume: bool, progress: ProgressFn, checked: Preflight,
                cleanup: contextlib.ExitStack) -> Path:
    started = time.perf_counter()
    ctx = open_context(cfg, out, resume, progress, checked)
    ctx.spend("setup/load", started)
    cleanup.callback(ctx.close)  # stops Ray actors (and a Ray instance the build started), even on errors
    s, grid = cfg.search, cfg.channel.snr_grid_db
    ref = reference_record(ctx)
    parts = screen_parts(ctx.sizes["val"], cfg.data.batch_size, s.screen_images)
    if parts > 1:
        ctx.screen = Screen(parts, s.max_accuracy_drop, s.screen_z, record_candidate(ref))
    if not any(t["method"] == "reference" for t in ctx.test_archive):
        # Always re-measured on test: its pieces fill the cores the proposals leave idle.
        ctx.evaluate_ahead("test", record_candidate(ref), cfg.data.batch_size)
    by_method: dict[str, list[dict[str, Any]]] = {}
    marks = tome_marks(ctx, ref) if s.uniform_marks else []
    if s.uniform_marks and isinstance(ctx.searched, ThresholdSpace):
        points = threshold_marks(ctx.searched)
        marks += run_method(ctx, "uniform", len(points), s.seed, ref, tag=THRESHOLD_MARKS_TAG, space=ctx.searched,
                            proposer=FixedProposer(points, s.q))
    by_method[s.method] = run_method(ctx, s.method, s.budget, s.seed, ref)
    for base in s.baselines:
        if base != s.method:
            by_method[base] = run_method(ctx, base, s.budget, s.seed, ref)
    conv = {**convergence(by_method, ref, grid, s.max_accuracy_drop), "seconds": dict(ctx.seconds)}
    screened: dict[str, int] = {}
    for rec in [*marks, *(r for recs in by_method.values() for r in recs)]:  # per archive tag, zeros included
        screened[rec["method"]] = screened.get(rec["method"], 0) + ("screened" in rec)
    conv["screened"] = screened
    atomic_write_text(out / "convergence.json", json.dumps(conv))

    def with_id(rec: dict[str, Any]) -> dict[str, Any]:
        return {**rec, "id": config_id(rec)}

    # ToMe's marks compete with the search for the front like any evaluated schedule: the front is what
    # the policy may serve, and a mark no user would be served costs a test measurement for nothing
    # (bench/headline.py compares with every uniform schedule on the same images instead).
    searched = [with_id(r) for r in marks] + [with_id(r) for recs in by_method.values() for r in recs]
    front = select_front([with_id(ref), *searched], with_id(ref), grid, s.max_front_configs, s.max_accuracy_drop,
                         profile=ctx.profile)
    conv["front_regret"] = front_regret([with_id(ref), *searched], front, with_id(ref), len(grid),
                                        s.max_accuracy_drop, ctx.profile)
    candidates = [with_id(ref)] + [c for c in front if c["id"] != config_id(ref)]
    final, seen = [], set()
    for c in candidates:  # one entry per configuration: the reference first, then the front by GFLOPs
        key = record_candidate(c).key
        if key not in seen:
            seen.add(key)
            final.append(c)
    started = time.perf_counter()
    test = measure_on_test(ctx, final)
    ctx.spend("test split/evaluate", started)
    if cfg.timing.enabled:
        started = time.perf_counter()
        ctx.profile = measured_profile(ctx, final)
        ctx.spend("timing/measure", started)
    conv["seconds"] = dict(ctx.seconds)  # now with the test split and the timing
    atomic_write_text(out / "convergence.json", json.dumps(conv))
    provenance = {
        "model": cfg.model.name if cfg.model.name != "bundled" else "bundled:vit_fmnist_patch4_28",
        "model_identity": model_identity(ctx.val.model, _timm_name(cfg)),
        "checkpoint_sha256": _checkpoint_hash(cfg),
        "dataset": cfg.data.kind if cfg.data.kind != "fmnist" else "fashion-mnist",
        "split_sizes": ctx.sizes,
        "channels": [{"kind": c.label, "params": c.params} for c in cfg.channel.kinds],
        "snr_grid_db": grid, "seed": s.seed, "split_index": cfg.split_index, "depth": ctx.space.dim,
        "num_patches": ctx.space.shape.num_patches, "num_prefix_tokens": ctx.space.shape.num_prefix,
        "budget": s.budget, "method": s.method,
        "packages": _package_versions(), "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
    }
    return write_artifact(ctx, with_id(ref), final, test, provenance)


def _timm_name(cfg: BuildConfig) -> str:
    return "vit_fmnist_patch4_28" if cfg.model.name == "bundled" else cfg.model.name


def _checkpoint_hash(cfg: BuildConfig) -> str | None:
    from paretoctl.models.loading import ModelSpec, checkpoint_hash

    return checkpoint_hash(ModelSpec(cfg.model.name, cfg.model.checkpoint, cfg.model.pretrained))
