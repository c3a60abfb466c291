"""Evaluations in worker processes and on Ray actors give the archive a local build gives, and resume as exactly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config
from paretoctl.optimizer.evaluator import Evaluator
from paretoctl.optimizer.executor import (
    EvalWorker,
    LocalExecutor,
    PartsRequest,
    ProcessExecutor,
    RayExecutor,
    WorkerLost,
    WorksAhead,
    default_workers,
    load_model,
    local_parts,
    make_evaluator,
    process_workers,
    shareable_state,
)
from paretoctl.optimizer.space import Candidate
from tests.optimizer.conftest import SMOKE, smoke_config_text

KEYS = ("eval_id", "method", "batch", "index", "x", "batch_x", "r", "gflops", "tokens_sent", "channel_uses")


def _records(path: Path, split: str = "val") -> list[dict[str, Any]]:
    return [{k: rec.get(k) for k in (*KEYS, f"accuracy_{split}")}
            for rec in map(json.loads, path.read_text().splitlines())]


def test_default_workers() -> None:
    assert default_workers(cpus=2, cpus_per_worker=1, q=4) == 2
    assert default_workers(cpus=64, cpus_per_worker=4, q=4) == 4  # never more than a batch
    assert default_workers(cpus=2, cpus_per_worker=4, q=4) == 1  # at least one


def test_worker_state_and_local_executor_match_the_driver(tmp_path: Path) -> None:
    """An actor's model, rebuilt from the shared numpy state, measures what the driver's does."""
    path = tmp_path / "smoke.yaml"
    path.write_text(smoke_config_text())
    cfg = load_config(path, {"data.val_limit": 40, "data.batch_size": 16})
    model = load_model(cfg)
    state = shareable_state(model)
    assert all(hasattr(v, "dtype") and not hasattr(v, "requires_grad") for v in state.values())  # numpy arrays
    worker = EvalWorker(cfg, state, threads=1)
    driver = make_evaluator(cfg, "val", model)
    schedules = [[0] * 12, [4] * 6 + [0] * 6]
    local = list(LocalExecutor(lambda split: driver).evaluate("val", schedules))
    for r, ev in zip(schedules, local, strict=True):
        mine = worker.evaluate("val", r)
        assert ev.r == mine.r == r
        assert {k: [p.mean for p in v] for k, v in ev.accuracy.items()} == \
               {k: [p.mean for p in v] for k, v in mine.accuracy.items()}
    assert local[0].accuracy["awgn"][0].n_images == 40


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray instance with 2 CPUs (so 2 one-CPU actors), shut down after the module."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'paretoctl[ray]')")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _ray_config(folder: Path) -> Path:
    path = folder / "smoke_ray.yaml"
    path.write_text(smoke_config_text() + "runtime:\n  executor: ray\n  ray_workers: 2\n")
    return path


@pytest.mark.slow
def test_ray_build_equals_local_build(smoke_build: Path, ray_cluster: Any, tmp_path: Path) -> None:
    cfg = load_config(_ray_config(tmp_path))
    out = tmp_path / "ray"
    run_build(cfg, out)
    assert len(ray_cluster.nodes()) == 1 and ray_cluster.cluster_resources()["CPU"] == 2
    local, remote = _records(smoke_build / "archive.jsonl"), _records(out / "archive.jsonl")
    assert len(remote) >= 13 and remote == local  # same schedules, same order, same accuracies
    assert _records(out / "test_archive.jsonl", "test") == _records(smoke_build / "test_archive.jsonl", "test")
    a, b = (json.loads((d / "front.json").read_text()) for d in (smoke_build, out))
    assert [c["r"] for c in a["configs"]] == [c["r"] for c in b["configs"]]
    assert b["provenance"]["config"]["runtime"]["executor"] == "ray"

    # Resume half-way through a BoTorch batch: only the driver writes, so the archive ends up the same.
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    lines = (resumed / "archive.jsonl").read_text().splitlines(keepends=True)
    (resumed / "archive.jsonl").write_text("".join(lines[:14]))  # ref + 8 marks + 5 of 8 BoTorch
    for name in ("front.json", "test_archive.jsonl", "convergence.json"):
        (resumed / name).unlink()
    run_build(cfg, resumed, resume=True)
    assert _records(resumed / "archive.jsonl") == remote


@pytest.mark.slow
def test_ray_actors_return_the_parts_and_hits_one_process_measures(ray_cluster: Any, tmp_path: Path) -> None:
    """Screening's parts (``evaluate_parts``) from two actors equal the driver's, per-image hits included."""
    cfg = load_config(_ray_config(tmp_path), {"data.val_limit": 400, "data.batch_size": 100})
    model = load_model(cfg)
    driver = make_evaluator(cfg, "val", model)
    requests = [PartsRequest(Candidate(r=(3,) * 12), (0,), 4, per_image=True),
                PartsRequest(Candidate(r=(1,) * 12), (1, 3), 4)]
    executor = RayExecutor(cfg, model)
    try:
        remote = list(executor.evaluate_parts("val", requests))
    finally:
        executor.close()
    local = list(local_parts(driver, requests))
    assert [len(r) for r in remote] == [1, 2]
    for a, b in zip([p for r in remote for p in r], [p for r in local for p in r], strict=True):
        assert torch.equal(a.correct, b.correct) and a.n_images == b.n_images == 100
        assert (a.hits is None) == (b.hits is None)
        if a.hits is not None and b.hits is not None:
            assert torch.equal(a.hits, b.hits)


def test_smoke_config_states_no_runtime() -> None:
    """The smoke build (the local reference above) runs with the default runtime: local, on auto."""
    cfg = load_config(SMOKE)
    assert cfg.runtime.executor == "local" and cfg.runtime.device == "auto"


def test_process_workers_default_to_one_per_cpu_at_most_a_batch() -> None:
    assert process_workers(None, q=4, cpus=2) == 2
    assert process_workers(None, q=4, cpus=64) == 4  # never more than a batch
    assert process_workers(None, q=4, cpus=1) == 1
    assert process_workers(3, q=4, cpus=2) == 3  # as asked


def _process_config(folder: Path, extra: str = "") -> Path:
    path = folder / "smoke_processes.yaml"
    path.write_text(smoke_config_text() + "runtime:\n  executor: processes\n  process_workers: 2\n" + extra)
    return path


@pytest.mark.slow
def test_process_build_equals_local_build(smoke_build: Path, tmp_path: Path) -> None:
    """Two single-threaded worker processes measure what one process measures, in the same order."""
    cfg = load_config(_process_config(tmp_path))
    out = tmp_path / "processes"
    run_build(cfg, out)
    local, parallel = _records(smoke_build / "archive.jsonl"), _records(out / "archive.jsonl")
    assert len(parallel) >= 13 and parallel == local  # reference, >= 4 marks, 8 BoTorch
    assert _records(out / "test_archive.jsonl", "test") == _records(smoke_build / "test_archive.jsonl", "test")
    a, b = (json.loads((d / "front.json").read_text()) for d in (smoke_build, out))
    assert [c["r"] for c in a["configs"]] == [c["r"] for c in b["configs"]]
    assert b["provenance"]["config"]["runtime"]["executor"] == "processes"


def _smoke_executor(tmp_path: Path) -> tuple[ProcessExecutor, Evaluator]:
    """Two workers over 4 batches of 100 validation images, and the driver's own evaluator."""
    cfg = load_config(_process_config(tmp_path), {"data.val_limit": 400, "data.batch_size": 100})
    model = load_model(cfg)
    driver = make_evaluator(cfg, "val", model)
    return ProcessExecutor(cfg, model, lambda _split: driver), driver


def test_workers_share_each_evaluation_and_measure_what_the_driver_measures(tmp_path: Path) -> None:
    """4 batches of 100 dealt to 2 workers: the added parts equal one process's evaluation, for a
    fixed schedule and for thresholds, and come back in plan order."""
    executor, driver = _smoke_executor(tmp_path)
    work = [Candidate(r=(3,) * 12), Candidate(thresholds=(0.9,) * 12), Candidate(r=(0,) * 12)]
    try:
        shared = list(executor.evaluate("val", work))
    finally:
        executor.close()
    for candidate, ev in zip(work, shared, strict=True):
        alone = driver.evaluate_candidate(candidate)
        assert ev.accuracy == alone.accuracy and ev.costs == alone.costs
        assert ev.r == alone.r and ev.distribution == alone.distribution
    assert shared[0].accuracy["awgn"][0].n_images == 400


def test_work_registered_ahead_runs_only_while_idle_and_changes_nothing(tmp_path: Path) -> None:
    """An evaluation registered ahead starts no piece until the caller leaves the workers idle; the
    evaluation that then takes its pieces equals one process's."""
    executor, driver = _smoke_executor(tmp_path)
    ahead, other = Candidate(r=(2,) * 12), Candidate(r=(3,) * 12)
    assert isinstance(executor, WorksAhead)  # what the build checks before registering work ahead
    assert not isinstance(LocalExecutor(lambda split: driver), WorksAhead)
    try:
        executor.evaluate_ahead("val", ahead, parts=4)
        with executor.while_idle(busy=1, after_s=5.0):
            time.sleep(0.5)  # a quick proposal: nothing worth filling
        assert executor.pieces_ahead() == (0, 4)
        deadline = time.monotonic() + 120
        with executor.while_idle(busy=1):  # stands for a proposal: the driver computes, workers would idle
            while executor.pieces_ahead()[0] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        started, registered = executor.pieces_ahead()
        assert 2 <= started <= registered == 4
        got = list(executor.evaluate("val", [other, ahead]))
        assert executor.pieces_ahead() == (0, 0)  # taken by the evaluation
    finally:
        executor.close()
    for candidate, ev in zip([other, ahead], got, strict=True):
        alone = driver.evaluate_candidate(candidate)
        assert ev.accuracy == alone.accuracy and ev.costs == alone.costs
    assert got[1].accuracy["awgn"][0].n_images == 400


def test_a_killed_worker_fails_the_evaluation_with_a_clear_error(tmp_path: Path) -> None:
    executor, _ = _smoke_executor(tmp_path)
    schedules = [[0] * 12] * 4
    try:
        results = executor.evaluate("val", schedules)
        first = next(results)  # the workers are up and have measured one configuration
        assert first.accuracy["awgn"][0].n_images == 400
        victim = next(iter(executor._pool._processes.values()))
        os.kill(victim.pid, signal.SIGKILL)
        with pytest.raises(WorkerLost, match=r"worker process died.*--resume"):
            list(results)
    finally:
        executor.close()


def test_close_ends_the_workers_at_once_even_mid_evaluation(tmp_path: Path) -> None:
    executor, _ = _smoke_executor(tmp_path)
    schedules = [[0] * 12] * 4
    results = executor.evaluate("val", schedules * 4)
    next(results)
    procs = list(executor._pool._processes.values())
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    started = time.perf_counter()
    executor.close()
    assert time.perf_counter() - started < 10
    assert not any(_running(p.pid) for p in procs)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (the pool's own thread may reap it first)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class _FakeAhead:
    """A works-ahead executor whose registered pieces are all started (or not), recording idle spells."""

    def __init__(self, started: int, registered: int) -> None:
        self.counts = (started, registered)
        self.idle_spells = 0

    def evaluate_ahead(self, split: Any, item: Any, parts: int) -> None:
        raise AssertionError("not used")

    def pieces_ahead(self) -> tuple[int, int]:
        return self.counts

    @contextlib.contextmanager
    def while_idle(self, busy: int = 1, after_s: float = 0.5) -> Iterator[None]:
        self.idle_spells += 1
        yield


def _threads_while_proposing(executor: Any) -> int:
    """The torch thread count a proposer sees inside ``BuildContext.proposing`` when the build runs
    on two; checks that the two threads come back afterwards."""
    from types import SimpleNamespace

    from paretoctl.optimizer.build import BuildContext

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with BuildContext.proposing(SimpleNamespace(executor=executor)):  # type: ignore[arg-type]
            inside = torch.get_num_threads()
        assert torch.get_num_threads() == 2
        return inside
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("started", "registered"), [(10, 10), (3, 10)], ids=["nothing left", "work left"])
def test_proposals_run_on_one_thread_whatever_work_is_left(started: int, registered: int) -> None:
    """How much work ahead remains depends on timing; the proposer's thread count must not (a GP fit on
    two threads sums in another order and plans other candidates: two builds diverged that way)."""
    fake = _FakeAhead(started, registered)
    assert isinstance(fake, WorksAhead)
    assert _threads_while_proposing(fake) == 1
    assert fake.idle_spells == (started < registered)


def test_proposals_run_on_one_thread_with_an_executor_that_works_no_ahead() -> None:
    """A local build proposes on one thread too, so it plans what a build with worker processes plans
    (a local build on two threads proposed another first BoTorch batch from the same history)."""
    local = LocalExecutor(lambda _split: None)  # type: ignore[arg-type, return-value]
    assert not isinstance(local, WorksAhead)
    assert _threads_while_proposing(local) == 1
