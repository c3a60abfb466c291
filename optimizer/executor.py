"""Who runs the evaluations of a build: in this process, in worker processes, or on Ray actors.

A q-batch of candidate schedules is independent work. :class:`LocalExecutor` evaluates it one
schedule after another in this process; :class:`ProcessExecutor` spreads every evaluation's batches
over worker processes on this machine (the default build: one single-threaded worker per core);
:class:`RayExecutor` spreads the candidates over Ray actors, here or on a cluster. Workers load the
model once (the driver's weights, not the checkpoint again) and open the same data splits as the
driver. Every executor yields the evaluations *in submission order*, and only the driver writes the
archive, so a build killed half-way through a batch resumes exactly as a local one does.

Why worker processes on a CPU: a small ViT's operators are too small for two threads to share
well (they wait on each other at every operator), so two single-threaded processes evaluate about
1.3-1.5x as many candidates per hour as one two-threaded process (``bench/executors.py``).

All executors build their evaluators with :func:`make_evaluator` from the same config, so the same
images, batches and noise seeds give the same accuracies wherever they run (the noise is seeded by
(seed, channel, draw, batch) only; see ``paretoctl.optimizer.evaluator``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from paretoctl.optimizer.config import BuildConfig, ConfigError
from paretoctl.optimizer.evaluator import Evaluation, Evaluator, PartialEvaluation
from paretoctl.optimizer.runtime import resolve_device, set_threads
from paretoctl.optimizer.space import Candidate, CandidateKey

Split = Literal["val", "test"]


def load_model(cfg: BuildConfig, weights: bool = True) -> torch.nn.Module:
    """The configured model on CPU, in eval mode. ``weights=False`` skips the checkpoint and the hub
    (the caller loads a state dict into it); errors are ``ConfigError`` naming ``model``."""
    from paretoctl.models.loading import ModelSpec, create_model

    m = cfg.model
    spec = (ModelSpec(m.name, m.checkpoint, m.pretrained, m.kwargs) if weights
            else ModelSpec(m.name, None, False, m.kwargs))
    try:
        return create_model(spec)
    except ValueError as err:  # a checkpoint that does not fit the architecture
        raise ConfigError(f"model: {' '.join(str(err).split())}") from None


def open_split(cfg: BuildConfig, split: Split, model: torch.nn.Module) -> Any:
    """The seeded subset of the validation or test split the config names, read lazily."""
    from paretoctl.models.data import fmnist_eval_splits, image_folder, subset

    d = cfg.data
    if d.kind == "fmnist":
        val, test = fmnist_eval_splits(d.root, d.val_size, d.split_seed)
        ds: Any = val if split == "val" else test
    else:
        ds = image_folder((d.val_root if split == "val" else d.test_root) or "", model)
    return subset(ds, d.val_limit if split == "val" else d.test_limit, seed=d.split_seed)


def make_evaluator(cfg: BuildConfig, split: Split, model: torch.nn.Module, dataset: Any = None) -> Evaluator:
    """An evaluator of ``split`` on the runtime's device, streaming batches through a DataLoader."""
    from paretoctl.models.data import make_loader

    rt, ch = cfg.runtime, cfg.channel
    device = resolve_device(rt.device)
    ds = open_split(cfg, split, model) if dataset is None else dataset
    loader = make_loader(ds, cfg.data.batch_size, rt.loader_workers, pin_memory=device.type == "cuda")
    return Evaluator(model, loader, ch.kinds, ch.snr_grid_db, cfg.split_index, ch.draws, seed=cfg.search.seed,
                     device=device, precision=rt.precision, server_chunk=rt.server_chunk)


Work = Candidate | Sequence[int]
"""What an executor evaluates: a :class:`~paretoctl.optimizer.space.Candidate` (a schedule or
thresholds), or a plain schedule ``r``."""


@dataclass(frozen=True)
class PartsRequest:
    """Some parts of one configuration's evaluation (:meth:`Evaluator.evaluate_part`).

    Attributes:
        item: the configuration.
        parts: which parts, each in ``[0, of)``.
        of: how many parts the split is cut into (batches ``b % of``).
        per_image: also return each image's hits (``PartialEvaluation.hits``).
    """

    item: Candidate
    parts: tuple[int, ...]
    of: int
    per_image: bool = False


class Executor(Protocol):
    """Evaluates batches of configurations; results come back in the order they were given."""

    def evaluate(self, split: Split, schedules: Sequence[Work]) -> Iterator[Evaluation]: ...

    def evaluate_parts(self, split: Split, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
        """The requested parts, one list per request in request order (all submitted at the call)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class WorksAhead(Protocol):
    """An executor that can run evaluations registered ahead while its caller leaves the workers idle
    (:class:`ProcessExecutor`); the build uses it during proposals (``BuildContext.proposing``)."""

    def evaluate_ahead(self, split: Split, item: Work, parts: int) -> None: ...

    def pieces_ahead(self) -> tuple[int, int]: ...

    def while_idle(self, busy: int = 1, after_s: float = 0.5) -> contextlib.AbstractContextManager[None]: ...


class LocalExecutor:
    """One schedule after another in this process (lazily: each result is yielded as it is measured)."""

    def __init__(self, evaluators: Callable[[Split], Evaluator]) -> None:
        self._evaluators = evaluators

    def evaluate(self, split: Split, schedules: Sequence[Work]) -> Iterator[Evaluation]:
        for item in schedules:
            yield self._evaluators(split).evaluate_candidate(item)

    def evaluate_parts(self, split: Split, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
        return local_parts(self._evaluators(split), requests)

    def close(self) -> None:
        """Nothing to release."""


def local_parts(evaluator: Evaluator, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
    """:meth:`Executor.evaluate_parts` in this process, one request after another (lazily)."""
    for req in requests:
        yield [evaluator.evaluate_part(req.item, k, req.of, per_image=req.per_image) for k in req.parts]


class EvalWorker:
    """A Ray actor's state: the model, loaded once from the object store, and one evaluator per split."""

    def __init__(self, cfg: BuildConfig, state: dict[str, Any], threads: int) -> None:
        set_threads(threads)
        self.cfg = cfg
        self.model = load_model(cfg, weights=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # object-store arrays are read-only; loading copies them
            tensors = {k: torch.as_tensor(v) for k, v in state.items()}
        self.model.load_state_dict(tensors, strict=True)
        self._evaluators: dict[str, Evaluator] = {}

    def evaluator(self, split: Split) -> Evaluator:
        """This worker's evaluator of ``split`` (made on first use)."""
        if split not in self._evaluators:
            self._evaluators[split] = make_evaluator(self.cfg, split, self.model)
        return self._evaluators[split]

    def evaluate(self, split: Split, item: Work) -> Evaluation:
        """One configuration (a candidate with thresholds or r, or a plain ``r``) on ``split``."""
        return self.evaluator(split).evaluate_candidate(item)

    def evaluate_part(self, split: Split, item: Work, part: int, parts: int,
                      per_image: bool = False) -> PartialEvaluation:
        """Part ``part`` of ``parts`` of one configuration's evaluation on ``split``."""
        return self.evaluator(split).evaluate_part(item, part, parts, per_image=per_image)

    def ready(self) -> bool:
        return True


def shareable_state(model: torch.nn.Module) -> dict[str, Any]:
    """The model's state dict as CPU numpy arrays (Ray stores those once and maps them zero-copy)."""
    out: dict[str, Any] = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        out[k] = t if t.dtype == torch.bfloat16 else t.numpy()  # numpy has no bfloat16
    return out


def default_workers(cpus: float, cpus_per_worker: int, q: int) -> int:
    """Actors for a cluster of ``cpus`` CPUs: as many as fit, at most ``q`` (a batch's size), at least 1."""
    return max(1, min(q, int(cpus) // cpus_per_worker))


class RayExecutor:
    """Evaluations on Ray actors: a local Ray instance, or an existing cluster (``runtime.ray_address``).

    Args:
        cfg: the build config (its ``runtime`` says how many actors, CPUs and GPUs each).
        model: the driver's loaded model; its weights are put in the object store once.
    """

    def __init__(self, cfg: BuildConfig, model: torch.nn.Module) -> None:
        import ray
        from ray.util import ActorPool

        rt = cfg.runtime
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=rt.ray_address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        n = rt.ray_workers or default_workers(cpus, rt.ray_cpus_per_worker, cfg.search.q)
        state = ray.put(shareable_state(model))
        actor: Any = ray.remote(num_cpus=rt.ray_cpus_per_worker, num_gpus=rt.ray_gpus_per_worker)(EvalWorker)
        self.actors: list[Any] = [actor.remote(cfg, state, rt.ray_cpus_per_worker) for _ in range(n)]
        ray.get([a.ready.remote() for a in self.actors])  # surface load errors here, not mid-batch
        self._pool = ActorPool(self.actors)

    def evaluate(self, split: Split, schedules: Sequence[Work]) -> Iterator[Evaluation]:
        work = [Candidate.of(item) for item in schedules]  # picklable, thresholds included
        yield from self._pool.map(lambda a, c: a.evaluate.remote(split, c), work)

    def evaluate_parts(self, split: Split, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
        pieces = [(req, k) for req in requests for k in req.parts]
        done = self._pool.map(lambda a, p: a.evaluate_part.remote(split, p[0].item, p[1], p[0].of, p[0].per_image),
                              pieces)
        for req in requests:
            yield [next(done) for _ in req.parts]

    def close(self) -> None:
        """Stop the actors, and the Ray instance if this executor started it."""
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self._owns_ray:
            ray.shutdown()


class WorkerLost(RuntimeError):
    """A worker process of a :class:`ProcessExecutor` died mid-evaluation (killed, out of memory)."""


_WORKER: EvalWorker | None = None
"""The model and evaluators of a :class:`ProcessExecutor` worker process (set by its initializer)."""


def _start_worker(cfg: BuildConfig, state: dict[str, Any], threads: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it ends the workers
    _WORKER = EvalWorker(cfg, state, threads)


def _evaluate_part_in_worker(split: Split, item: Candidate, part: int, parts: int,
                             per_image: bool = False) -> PartialEvaluation:
    if _WORKER is None:  # pragma: no cover - the pool's initializer always runs first
        raise RuntimeError("worker process was not initialised")
    return _WORKER.evaluate_part(split, item, part, parts, per_image)


def process_workers(requested: int | None, q: int, cpus: int | None = None) -> int:
    """Worker processes for ``runtime.process_workers``: as asked, else one per CPU, at most ``q``."""
    if requested is not None:
        return requested
    return max(1, min(q, cpus if cpus is not None else (os.cpu_count() or 1)))


@dataclass
class _Ahead:
    """An evaluation started before its turn, one piece (a ``parts``-th of the split) at a time."""

    split: Split
    item: Candidate
    parts: int
    pieces: list[Future[PartialEvaluation]] = field(default_factory=list)


class ProcessExecutor:
    """Evaluations in worker processes on this machine (``runtime.executor: processes``).

    The workers are spawned (not forked: the driver holds OpenMP threads and possibly CUDA), so a
    script that builds must guard its entry point with ``if __name__ == "__main__":`` as usual for
    multiprocessing. Each loads the driver's weights once with ``runtime.process_threads`` torch
    threads. Every evaluation is cut into one part per worker (the split's batches dealt out in
    turn, :meth:`~paretoctl.optimizer.evaluator.Evaluator.evaluate_part`), and the driver adds the
    parts' hit counts: a lone evaluation (the unmerged reference, the last of a batch) keeps every
    core busy, and the accuracies are exactly those of one process. Closing the executor ends the
    workers at once (an interrupted build loses only the evaluations in flight, which a resume
    repeats); a worker that dies (out of memory) fails the build with :class:`WorkerLost` instead of
    hanging it. An evaluation known to be needed later can be registered ahead
    (:meth:`evaluate_ahead`) to fill the time the caller leaves the workers idle (:meth:`while_idle`).

    Args:
        cfg: the build config (``runtime.process_workers``, ``runtime.process_threads``).
        model: the driver's loaded model.
        evaluators: the driver's evaluator per split, which adds the parts up (it runs no model).
    """

    def __init__(self, cfg: BuildConfig, model: torch.nn.Module, evaluators: Callable[[Split], Evaluator]) -> None:
        from concurrent.futures import ProcessPoolExecutor

        rt = cfg.runtime
        self.workers = process_workers(rt.process_workers, cfg.search.q)
        self._evaluators = evaluators
        state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        self._pool: Any = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(cfg, state, rt.process_threads))
        self._ahead: dict[tuple[Split, CandidateKey], _Ahead] = {}
        self._lock = threading.Lock()  # the feeder thread of while_idle and the caller both submit pieces

    def evaluate_ahead(self, split: Split, item: Work, parts: int) -> None:
        """Let ``item``'s evaluation on ``split`` run, in ``parts`` pieces, whenever the caller leaves the
        workers idle (:meth:`while_idle`); :meth:`evaluate` of the same configuration later takes the
        pieces done and runs the rest. The result is the same as without (the parts add up exactly)."""
        c = Candidate.of(item)
        with self._lock:
            self._ahead.setdefault((split, c.key), _Ahead(split, c, parts))

    def pieces_ahead(self) -> tuple[int, int]:
        """(pieces started, pieces registered) of the evaluations registered ahead and not yet taken."""
        with self._lock:
            return sum(len(a.pieces) for a in self._ahead.values()), sum(a.parts for a in self._ahead.values())

    def _start_piece(self) -> Future[PartialEvaluation] | None:
        with self._lock:
            job = next((a for a in self._ahead.values() if len(a.pieces) < a.parts), None)
            if job is None:
                return None
            piece: Future[PartialEvaluation] = self._pool.submit(
                _evaluate_part_in_worker, job.split, job.item, len(job.pieces), job.parts)
            job.pieces.append(piece)
            return piece

    @contextlib.contextmanager
    def while_idle(self, busy: int = 1, after_s: float = 0.5) -> Iterator[None]:
        """While the caller computes (a proposal), keep ``busy`` workers on the evaluations registered
        ahead, one piece at a time, once the caller has computed for ``after_s`` seconds (a quick
        proposal leaves nothing worth filling: a piece started then only delays the next batch).
        Pieces still running at exit finish before later work starts."""
        stop = threading.Event()

        def feed() -> None:
            if stop.wait(after_s):
                return
            running: list[Future[PartialEvaluation]] = []
            while not stop.is_set():
                running = [f for f in running if not f.done()]
                while len(running) < busy and (piece := self._start_piece()) is not None:
                    running.append(piece)
                if not running:
                    return
                wait(running, timeout=0.05, return_when=FIRST_COMPLETED)

        feeder = threading.Thread(target=feed, name="paretoctl-idle-feeder", daemon=True)
        feeder.start()
        try:
            yield
        finally:
            stop.set()
            feeder.join()

    def _pieces(self, split: Split, c: Candidate) -> list[Future[PartialEvaluation]]:
        """Every piece of ``c``'s evaluation, submitted now unless it was started ahead."""
        with self._lock:
            job = self._ahead.pop((split, c.key), None)
            if job is None:
                return [self._pool.submit(_evaluate_part_in_worker, split, c, k, self.workers)
                        for k in range(self.workers)]
            job.pieces += [self._pool.submit(_evaluate_part_in_worker, split, c, k, job.parts)
                           for k in range(len(job.pieces), job.parts)]
            return job.pieces

    def evaluate(self, split: Split, schedules: Sequence[Work]) -> Iterator[Evaluation]:
        work = [Candidate.of(item) for item in schedules]  # picklable, thresholds included
        # In plan order: every worker takes a share of each evaluation, so no order balances the work
        # better, and results (and progress) arrive steadily.
        results = self._results([self._pieces(split, c) for c in work])
        try:
            for item, measured in zip(work, results, strict=True):
                yield self._evaluators(split).combine(item, measured)
        finally:
            results.close()  # cancels what is still queued

    def evaluate_parts(self, split: Split, requests: Sequence[PartsRequest]) -> Iterator[list[PartialEvaluation]]:
        with self._lock:
            futures = [[self._pool.submit(_evaluate_part_in_worker, split, req.item, k, req.of, req.per_image)
                        for k in req.parts] for req in requests]
        return self._results(futures)

    def _results(self, futures: list[list[Future[PartialEvaluation]]]) -> Generator[list[PartialEvaluation]]:
        try:
            for pieces in futures:
                try:
                    yield [f.result() for f in pieces]
                except BrokenProcessPool as err:
                    raise WorkerLost(f"an evaluation worker process died ({err}); the archive keeps every "
                                     "finished evaluation: run the build again with --resume") from None
        finally:  # a consumer that stops early (an error, an interrupt) leaves nothing queued
            for pieces in futures:
                for f in pieces:
                    f.cancel()

    def close(self) -> None:
        """End the workers now: queued evaluations are cancelled, running ones abandoned."""
        procs = list((getattr(self._pool, "_processes", None) or {}).values())  # CPython keeps them there
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)


def make_executor(cfg: BuildConfig, model: torch.nn.Module, evaluators: Callable[[Split], Evaluator]) -> Executor:
    """The executor ``cfg.runtime.executor`` names."""
    if cfg.runtime.executor == "ray":
        return RayExecutor(cfg, model)
    if cfg.runtime.executor == "processes":
        return ProcessExecutor(cfg, model, evaluators)
    return LocalExecutor(evaluators)
