"""Timing the real patched model, per merge schedule: the measured side of the latency model.

The analytic model (``time = overhead + GFLOPs / rate``) misjudges merged schedules: merging costs
matching and gathers that GFLOPs do not count, so at batch 1 a schedule at half the FLOPs can take
longer than half the time. The policy therefore uses measured times where they exist, and this module
measures them on the machine that runs it:

* the **edge** part (embedding and blocks ``[0, split)``) at batch 1, the device's case;
* the **server** part (blocks ``[split, L)``, norm, pooling, head) at a stated batch (1 by default),
  fed the edge's own tokens for that schedule.

Every schedule is warmed up first; then the schedules are timed in interleaved rounds (a shuffled
order per round, so drift in clock speed or a neighbour's load spreads over all of them instead of
biasing one). A schedule stops being timed once the distribution-free 95% confidence interval of the
*statistic the policy serves* (``TimingSettings.statistic``: the median, or the 90th percentile) is
within ``rel_ci`` of it (both parts) and it has ``min_runs`` runs, or at ``max_runs``; the whole
measurement also stops after ``max_seconds``. A p90 needs 35 runs before its interval exists at all
(its upper rank must fall inside the sample), so a served p90 is never the second-largest of 15 runs.
p50 and p90 are recorded with the number of runs and both intervals, and :func:`machine_info` names
the CPU, torch version and thread count.

A **threshold configuration** (input-adaptive merging, ``paretoctl.models.threshold``) does work
that depends on the image, so it is timed on real images, cycling through the ones given: run ``j``
feeds image ``j mod K`` to the edge and the edge's own tokens of images ``j .. j + server_batch - 1``
(a padded batch) to the server, and it gets at least ``min(K, max_runs)`` runs, so its p50/p90
include the spread across images. :func:`torch_threads` sets the thread count to time with.

**Compiled timing** (``compiled=True``): a device that deploys with ``torch.compile`` runs other code
than eager PyTorch, and at batch 1 on a CPU the two differ most for merged schedules (eager pays a
few microseconds of dispatch for each of a merge's small operators; Inductor fuses them). Each fixed
schedule's edge and server parts then run through :class:`paretoctl.models.compiled.CompiledMerging`:
a compile pass first (one call of each part per schedule; its wall time, compilation plus one run,
is recorded per configuration as ``compile_s``, a one-off cost the device pays per schedule), then
the warm-up and the timed rounds as above, with ``max_seconds`` counted from after the compile pass.
Threshold configurations have image-dependent shapes, so they stay eager; each configuration's
``mode`` says which path its figures are of.

Example:
    >>> timings = time_schedules(model, [[0] * 12, [4] * 12], split=3)  # doctest: +SKIP
    >>> timings[1].edge.p50_ms < timings[0].edge.p50_ms                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import platform
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paretoctl.models.patch import apply_merging, get_schedule, get_thresholds, is_patched, set_schedule, set_thresholds
from paretoctl.models.split import TRACE_SOURCE_ATTR, TokenState, edge_forward, server_forward

__all__ = ["PartStats", "ScheduleTiming", "TimingSettings", "front_measurements", "machine_info", "median_ci",
           "quantile", "quantile_ci", "summarise", "time_schedules", "torch_threads"]

_Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for the order-statistic interval of the median."""


@dataclass(frozen=True)
class TimingSettings:
    """How hard to measure.

    Attributes:
        server_batch: images per server forward (the edge always runs at batch 1).
        warmup: untimed runs per schedule before timing (allocator, caches, index plans).
        min_runs: timed runs per schedule before the stopping rule is consulted (>= 5).
        max_runs: timed runs per schedule at most.
        rel_ci: stop a schedule once the 95% interval half-width of ``statistic`` is at most this
            fraction of it, for edge and server alike.
        max_seconds: wall-clock bound on the whole measurement (warm-up included); every schedule
            still gets ``min_runs`` runs.
        statistic: the figure the policy will serve (``p90``: a budget is a deadline; or ``p50``),
            whose interval the stopping rule judges.
    """

    server_batch: int = 1
    warmup: int = 3
    min_runs: int = 15
    max_runs: int = 200
    rel_ci: float = 0.03
    max_seconds: float = 60.0
    statistic: str = "p90"

    def __post_init__(self) -> None:
        if self.server_batch < 1 or self.warmup < 0 or self.min_runs < 5 or self.max_runs < self.min_runs:
            raise ValueError(f"invalid timing settings {self}: need server_batch >= 1, warmup >= 0, "
                             "5 <= min_runs <= max_runs")
        if not self.rel_ci > 0 or not self.max_seconds > 0:
            raise ValueError(f"invalid timing settings {self}: rel_ci and max_seconds must be positive")
        if self.statistic not in ("p50", "p90"):
            raise ValueError(f"invalid timing settings {self}: statistic must be 'p50' or 'p90'")


@dataclass(frozen=True)
class PartStats:
    """Summary of one part's wall times, milliseconds."""

    p50_ms: float
    p90_ms: float
    runs: int
    rel_ci: float
    """Half-width of the median's 95% interval over the median (``inf`` with too few runs)."""
    p90_rel_ci: float = math.inf
    """The same for the 90th percentile (``inf`` until the sample holds its interval's ranks: 35 runs)."""

    def rel_ci_of(self, statistic: str) -> float:
        """The relative interval half-width of ``statistic`` (``p50`` or ``p90``)."""
        return self.p90_rel_ci if statistic == "p90" else self.rel_ci

    def to_json(self) -> dict[str, Any]:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "runs": self.runs,
                "rel_ci": _capped(self.rel_ci), "p90_rel_ci": _capped(self.p90_rel_ci)}


def _capped(rel: float) -> float:
    """An interval's relative half-width for JSON: 1.0 (100%) stands for "too few runs to say"."""
    return rel if math.isfinite(rel) else 1.0


@dataclass(frozen=True)
class ScheduleTiming:
    """Measured edge (batch 1) and server (``server_batch``) times of one schedule."""

    r: tuple[int, ...]
    edge: PartStats
    server: PartStats
    thresholds: tuple[float, ...] | None = None
    """The per-block thresholds of a threshold configuration (``r`` is then only its label)."""
    mode: str = "eager"
    """``eager`` or ``compiled``: which forward path was timed."""
    compile_s: float | None = None
    """Compiled: wall seconds of the first edge and server calls together (compilation plus one run)."""


def quantile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an ascending sequence.

    Example:
        >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5), quantile([1.0, 2.0, 3.0, 4.0], 0.9)
        (2.5, 3.7)
    """
    if not sorted_ms:
        raise ValueError("quantile of no samples")
    pos = q * (len(sorted_ms) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return round(sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo), 12)


def median_ci(sorted_ms: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95% interval of the median from order statistics (normal approximation).

    The ranks are ``n/2 -+ 1.96 sqrt(n)/2`` (rounded outward), clipped to the sample.
    """
    n = len(sorted_ms)
    half = _Z95 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return sorted_ms[lo], sorted_ms[hi]


def quantile_ci(sorted_ms: Sequence[float], q: float) -> tuple[float, float] | None:
    """Distribution-free 95% interval of the ``q``-quantile from order statistics, or None.

    The ranks are ``n q -+ 1.96 sqrt(n q (1 - q))`` (rounded outward, 1-based): the binomial count of
    samples below the quantile, in its normal approximation. Unlike :func:`median_ci` nothing is
    clipped: when a rank falls outside the sample (a p90 from fewer than 35 runs) the sample
    cannot bound the quantile, and the answer is None.

    Example:
        >>> quantile_ci([float(i) for i in range(1, 101)], 0.9)  # ranks 90 -+ 5.9 -> 84th and 96th
        (84.0, 96.0)
        >>> quantile_ci([float(i) for i in range(1, 16)], 0.9) is None
        True
    """
    n = len(sorted_ms)
    half = _Z95 * math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(n * q - half), math.ceil(n * q + half)
    if lo < 1 or hi > n:
        return None
    return sorted_ms[lo - 1], sorted_ms[hi - 1]


def summarise(samples_ms: Sequence[float]) -> PartStats:
    """p50, p90, run count and the relative intervals of the median and the p90 of ``samples_ms``."""
    s = sorted(samples_ms)
    med, p90 = quantile(s, 0.5), quantile(s, 0.9)
    if len(s) < 5 or med <= 0:
        rel = math.inf
    else:
        lo, hi = median_ci(s)
        rel = (hi - lo) / 2 / med
    bounds = quantile_ci(s, 0.9) if p90 > 0 else None
    rel90 = math.inf if bounds is None else (bounds[1] - bounds[0]) / 2 / p90
    return PartStats(p50_ms=med, p90_ms=p90, runs=len(s), rel_ci=rel, p90_rel_ci=rel90)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; else what platform reports), for benchmark and timing records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(server_batch: int = 1) -> dict[str, Any]:
    """What the timings were taken on: CPU model, torch version, intra-op threads, host, batch."""
    return {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "host": platform.node() or "unknown", "server_batch": server_batch}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: unchanged), restoring the old count."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Samples:
    min_runs: int
    edge: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)

    def done(self, s: TimingSettings) -> bool:
        n = len(self.edge)
        if n >= s.max_runs:
            return True
        if n < self.min_runs:
            return False
        return all(summarise(part).rel_ci_of(s.statistic) <= s.rel_ci for part in (self.edge, self.server))


def _input_image(model: nn.Module) -> torch.Tensor:
    """One image of the model's input size (content does not change the work done)."""
    pe: Any = model.patch_embed
    size = pe.img_size if isinstance(pe.img_size, tuple | list) else (pe.img_size, pe.img_size)
    chans = int(pe.proj.in_channels)
    param = next(model.parameters())
    return torch.randn(1, chans, int(size[0]), int(size[1]), generator=torch.Generator().manual_seed(0)).to(
        device=param.device, dtype=param.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _configure(model: Any, r: Sequence[int], thresholds: Sequence[float] | None) -> None:
    if thresholds is None:
        set_schedule(model, list(r))
    else:
        set_thresholds(model, list(thresholds))


def _server_inputs(model: Any, batch: torch.Tensor, images: torch.Tensor | None, split: int,
                   adaptive: bool) -> list[TokenState]:
    """The server's inputs for one configuration (set on the model): the edge's own tokens.

    A fixed schedule gets one state at the server batch (``batch``); a threshold configuration one
    padded state per image offset ``i``, of images ``i .. i + server_batch - 1`` (cyclically).
    """
    if not adaptive or images is None:
        st = edge_forward(model, batch, split)
        return [TokenState(st.tokens.clone(), st.size.clone(), None)]
    k = images.shape[0]
    states = []
    for i in range(k):
        idx = torch.tensor([(i + m) % k for m in range(batch.shape[0])], device=images.device)
        st = edge_forward(model, images.index_select(0, idx), split)
        states.append(TokenState(st.tokens.clone(), st.size.clone(), None))
    return states


@torch.inference_mode()
def time_schedules(model: Any, schedules: Sequence[Sequence[int]], split: int,
                   settings: TimingSettings | None = None, image: torch.Tensor | None = None,
                   seed: int = 0, *, thresholds: Sequence[Sequence[float] | None] | None = None,
                   images: torch.Tensor | None = None, compiled: bool = False) -> list[ScheduleTiming]:
    """Time the edge and server parts of ``model`` under each configuration (see the module docstring).

    Args:
        model: a timm ViT; patched for merging in place if it is not already. Source tracing is off
            while timing; its schedule (or thresholds) and tracing flag are restored afterwards.
        schedules: per-layer ``r`` lists, each of the model's depth (for a threshold configuration,
            the label recorded with its timing).
        split: edge/server split index.
        settings: repeats and stopping rule.
        image: ``[1, C, H, W]`` input of the fixed schedules (a seeded random image of the model's
            size by default).
        seed: seeds the per-round order.
        thresholds: per configuration, its per-block thresholds, or None for a fixed schedule.
        images: ``[K, C, H, W]`` real images the threshold configurations cycle through (required
            when any is given).
        compiled: time the fixed schedules' compiled forward passes (threshold configurations stay
            eager); see the module docstring.

    Returns:
        One :class:`ScheduleTiming` per configuration, in the order given.

    Raises:
        ValueError: ``thresholds`` of the wrong length, or threshold configurations without ``images``.
    """
    s = settings or TimingSettings()
    limits = list(thresholds) if thresholds is not None else [None] * len(schedules)
    if len(limits) != len(schedules):
        raise ValueError(f"thresholds has {len(limits)} entries for {len(schedules)} schedules")
    if any(t is not None for t in limits) and (images is None or images.shape[0] == 0):
        raise ValueError("threshold configurations are timed on real images: pass images [K, C, H, W]")
    if not is_patched(model):
        apply_merging(model)
    before, before_t = get_schedule(model), get_thresholds(model)
    traced = bool(getattr(model, TRACE_SOURCE_ATTR, False))
    # time what a device runs: no source tracing
    apply_merging(model, None if before_t else before, trace_source=False, thresholds=before_t)
    model.eval()
    img = image if image is not None else _input_image(model)
    batch = img.expand(s.server_batch, *img.shape[1:]).contiguous()
    device = img.device
    real = None if images is None else images.to(device=device, dtype=img.dtype)
    inputs: list[list[TokenState]] = []
    for r, t in zip(schedules, limits, strict=True):
        _configure(model, r, t)
        inputs.append(_server_inputs(model, batch, real, split, t is not None))
    n_real = 0 if real is None else real.shape[0]
    fast = _compiled_paths(model, sum(t is None for t in limits)) if compiled else None
    paths = [fast if fast is not None and t is None else None for t in limits]
    samples = [_Samples(s.min_runs if t is None else max(s.min_runs, min(n_real, s.max_runs))) for t in limits]

    eager_halves = (functools.partial(edge_forward, model), functools.partial(server_forward, model))

    def run(k: int, j: int) -> tuple[float, float]:
        """Configuration ``k``'s ``j``-th run: (edge ms, server ms)."""
        _configure(model, schedules[k], limits[k])
        edge_in = img if limits[k] is None or real is None else real[j % n_real : j % n_real + 1]
        server_in = inputs[k][j % len(inputs[k])]
        path = paths[k]
        edge, server = eager_halves if path is None else (path.edge_forward, path.server_forward)
        _sync(device)
        t0 = time.perf_counter_ns()
        edge(edge_in, split)
        _sync(device)
        t1 = time.perf_counter_ns()
        server(server_in, split)
        _sync(device)
        t2 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, (t2 - t1) / 1e6

    compile_s: list[float | None] = [None] * len(schedules)
    for k, path in enumerate(paths):
        if path is not None:  # the first call of each part compiles it
            start = time.perf_counter()
            run(k, 0)
            compile_s[k] = time.perf_counter() - start
    started = time.perf_counter()
    for w in range(s.warmup):
        for k in range(len(schedules)):
            run(k, w)
    rng = random.Random(seed)
    order = list(range(len(schedules)))
    while True:
        todo = [k for k in order if not samples[k].done(s)]
        out_of_time = time.perf_counter() - started > s.max_seconds
        if out_of_time:
            todo = [k for k in todo if len(samples[k].edge) < samples[k].min_runs]
        if not todo:
            break
        rng.shuffle(todo)
        for k in todo:
            edge_ms, server_ms = run(k, len(samples[k].edge))
            samples[k].edge.append(edge_ms)
            samples[k].server.append(server_ms)
    apply_merging(model, None if before_t else before, trace_source=traced, thresholds=before_t)
    return [ScheduleTiming(tuple(int(x) for x in r), summarise(smp.edge), summarise(smp.server),
                           None if t is None else tuple(float(v) for v in t),
                           "eager" if path is None else "compiled", comp)
            for r, t, smp, path, comp in zip(schedules, limits, samples, paths, compile_s, strict=True)]


def _compiled_paths(model: Any, schedules: int) -> Any:
    """A :class:`~paretoctl.models.compiled.CompiledMerging` holding an edge and a server function per
    fixed schedule, or None when there is none to compile (imported lazily: Inductor is heavy)."""
    if schedules == 0:
        return None
    from paretoctl.models.compiled import CompiledMerging

    return CompiledMerging(model, max_entries=2 * schedules)


def front_measurements(model: Any, configs: Sequence[tuple[str, Sequence[int]]], split: int,
                       settings: TimingSettings | None = None, statistic: str = "p90",
                       front_checksum: str | None = None, *,
                       thresholds: Mapping[str, Sequence[float]] | None = None,
                       images: torch.Tensor | None = None, compiled: bool = False) -> dict[str, Any]:
    """Time a front's configurations on ``model`` and return the artifact's ``measurements`` document.

    Args:
        model: the model the front was built for (the device's own copy).
        configs: ``(config id, r)`` pairs.
        split: the front's split index.
        settings: repeats and stopping rule.
        statistic: the percentile the policy will use (``p90`` or ``p50``).
        front_checksum: the front's checksum, recorded with the figures.
        thresholds: config id -> per-block thresholds, for the front's threshold configurations.
        images: ``[K, C, H, W]`` real images to time those on (required with ``thresholds``).
        compiled: time the fixed schedules compiled (each entry's ``mode`` and ``compile_s`` say so).

    Returns:
        A mapping that validates as ``paretoctl.service.schema.models.Measurements``.
    """
    from datetime import UTC, datetime

    s = dataclasses.replace(settings or TimingSettings(), statistic=statistic)  # judge what is served
    limits = [None if thresholds is None else thresholds.get(cid) for cid, _ in configs]
    timings = time_schedules(model, [list(r) for _, r in configs], split, s, thresholds=limits, images=images,
                             compiled=compiled)
    return {"statistic": statistic, "machine": machine_info(s.server_batch),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "front_checksum": front_checksum,
            "configs": [{"config_id": cid, "r": list(t.r), "edge": t.edge.to_json(), "server": t.server.to_json(),
                         "thresholds": None if th is None else list(th),
                         **({} if t.mode == "eager" else {"mode": t.mode, "compile_s": round(t.compile_s or 0.0, 3)})}
                        for (cid, _), t, th in zip(configs, timings, limits, strict=True)]}


TIMING_IMAGES = 16
"""Images a threshold configuration is timed on (in turn, at batch 1): its p50/p90 include their spread."""


def timing_images(dataset: Any, seed: int, n: int = TIMING_IMAGES) -> torch.Tensor:
    """``[K, C, H, W]`` the images a threshold configuration is timed on, ``K = min(n, len(dataset))``.

    A permutation seeded by ``seed`` (the build's ``search.seed``), so a build and a later
    ``paretoctl profile --front`` of its front time the same images.
    """
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in order[: min(n, len(dataset))]])
