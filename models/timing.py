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
biasing one). A schedule stops being timed once the distribution-free 95% confidence interval of its
median is within ``rel_ci`` of the median (both parts) and it has ``min_runs`` runs, or at
``max_runs``; the whole measurement also stops after ``max_seconds``. p50 and p90 are recorded with
the number of runs, and :func:`machine_info` names the CPU, torch version and thread count.

Example:
    >>> timings = time_schedules(model, [[0] * 12, [4] * 12], split=3)  # doctest: +SKIP
    >>> timings[1].edge.p50_ms < timings[0].edge.p50_ms                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paretoctl.models.patch import apply_merging, get_schedule, is_patched, set_schedule
from paretoctl.models.split import TRACE_SOURCE_ATTR, TokenState, edge_forward, server_forward

__all__ = ["PartStats", "ScheduleTiming", "TimingSettings", "front_measurements", "machine_info", "median_ci",
           "quantile", "summarise", "time_schedules"]

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
        rel_ci: stop a schedule once its median's 95% interval half-width is at most this
            fraction of the median, for edge and server alike.
        max_seconds: wall-clock bound on the whole measurement (warm-up included); every schedule
            still gets ``min_runs`` runs.
    """

    server_batch: int = 1
    warmup: int = 3
    min_runs: int = 15
    max_runs: int = 200
    rel_ci: float = 0.03
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.server_batch < 1 or self.warmup < 0 or self.min_runs < 5 or self.max_runs < self.min_runs:
            raise ValueError(f"invalid timing settings {self}: need server_batch >= 1, warmup >= 0, "
                             "5 <= min_runs <= max_runs")
        if not self.rel_ci > 0 or not self.max_seconds > 0:
            raise ValueError(f"invalid timing settings {self}: rel_ci and max_seconds must be positive")


@dataclass(frozen=True)
class PartStats:
    """Summary of one part's wall times, milliseconds."""

    p50_ms: float
    p90_ms: float
    runs: int
    rel_ci: float
    """Half-width of the median's 95% interval over the median (``inf`` with too few runs)."""

    def to_json(self) -> dict[str, Any]:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "runs": self.runs,
                "rel_ci": self.rel_ci if math.isfinite(self.rel_ci) else 1.0}


@dataclass(frozen=True)
class ScheduleTiming:
    """Measured edge (batch 1) and server (``server_batch``) times of one schedule."""

    r: tuple[int, ...]
    edge: PartStats
    server: PartStats


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


def summarise(samples_ms: Sequence[float]) -> PartStats:
    """p50, p90, run count and relative median interval of ``samples_ms``."""
    s = sorted(samples_ms)
    med = quantile(s, 0.5)
    if len(s) < 5 or med <= 0:
        rel = math.inf
    else:
        lo, hi = median_ci(s)
        rel = (hi - lo) / 2 / med
    return PartStats(p50_ms=med, p90_ms=quantile(s, 0.9), runs=len(s), rel_ci=rel)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(server_batch: int = 1) -> dict[str, Any]:
    """What the timings were taken on: CPU model, torch version, intra-op threads, host, batch."""
    return {"cpu": _cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "host": platform.node() or "unknown", "server_batch": server_batch}


@dataclass
class _Samples:
    edge: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)

    def done(self, s: TimingSettings) -> bool:
        n = len(self.edge)
        if n >= s.max_runs:
            return True
        if n < s.min_runs:
            return False
        return summarise(self.edge).rel_ci <= s.rel_ci and summarise(self.server).rel_ci <= s.rel_ci


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


@torch.inference_mode()
def time_schedules(model: Any, schedules: Sequence[Sequence[int]], split: int,
                   settings: TimingSettings | None = None, image: torch.Tensor | None = None,
                   seed: int = 0) -> list[ScheduleTiming]:
    """Time the edge and server parts of ``model`` under each schedule (see the module docstring).

    Args:
        model: a timm ViT; patched for merging in place if it is not already. Source tracing is off
            while timing; its schedule and tracing flag are restored afterwards.
        schedules: per-layer ``r`` lists, each of the model's depth.
        split: edge/server split index.
        settings: repeats and stopping rule.
        image: ``[1, C, H, W]`` input (a seeded random image of the model's size by default).
        seed: seeds the per-round order.

    Returns:
        One :class:`ScheduleTiming` per schedule, in the order given.
    """
    s = settings or TimingSettings()
    if not is_patched(model):
        apply_merging(model)
    before = get_schedule(model)
    traced = bool(getattr(model, TRACE_SOURCE_ATTR, False))
    apply_merging(model, before, trace_source=False)  # time what a device runs: no source tracing
    model.eval()
    img = image if image is not None else _input_image(model)
    batch = img.expand(s.server_batch, *img.shape[1:]).contiguous()
    device = img.device
    states: list[TokenState] = []
    for r in schedules:  # the server's input for each schedule: the edge's own tokens, at the server batch
        set_schedule(model, list(r))
        st = edge_forward(model, batch, split)
        states.append(TokenState(st.tokens.clone(), st.size.clone(), None))
    samples = [_Samples() for _ in schedules]
    started = time.perf_counter()
    for _ in range(s.warmup):
        for k, r in enumerate(schedules):
            set_schedule(model, list(r))
            edge_forward(model, img, split)
            server_forward(model, states[k], split)
    rng = random.Random(seed)
    order = list(range(len(schedules)))
    while True:
        todo = [k for k in order if not samples[k].done(s)]
        out_of_time = time.perf_counter() - started > s.max_seconds
        if out_of_time:
            todo = [k for k in todo if len(samples[k].edge) < s.min_runs]
        if not todo:
            break
        rng.shuffle(todo)
        for k in todo:
            set_schedule(model, list(schedules[k]))
            _sync(device)
            t0 = time.perf_counter_ns()
            edge_forward(model, img, split)
            _sync(device)
            t1 = time.perf_counter_ns()
            server_forward(model, states[k], split)
            _sync(device)
            t2 = time.perf_counter_ns()
            samples[k].edge.append((t1 - t0) / 1e6)
            samples[k].server.append((t2 - t1) / 1e6)
    apply_merging(model, before, trace_source=traced)
    return [ScheduleTiming(tuple(int(x) for x in r), summarise(smp.edge), summarise(smp.server))
            for r, smp in zip(schedules, samples, strict=True)]


def front_measurements(model: Any, configs: Sequence[tuple[str, Sequence[int]]], split: int,
                       settings: TimingSettings | None = None, statistic: str = "p90",
                       front_checksum: str | None = None) -> dict[str, Any]:
    """Time a front's configurations on ``model`` and return the artifact's ``measurements`` document.

    Args:
        model: the model the front was built for (the device's own copy).
        configs: ``(config id, r)`` pairs.
        split: the front's split index.
        settings: repeats and stopping rule.
        statistic: the percentile the policy will use (``p90`` or ``p50``).
        front_checksum: the front's checksum, recorded with the figures.

    Returns:
        A mapping that validates as ``paretoctl.service.schema.models.Measurements``.
    """
    from datetime import UTC, datetime

    s = settings or TimingSettings()
    timings = time_schedules(model, [list(r) for _, r in configs], split, s)
    return {"statistic": statistic, "machine": machine_info(s.server_batch),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "front_checksum": front_checksum,
            "configs": [{"config_id": cid, "r": list(t.r), "edge": t.edge.to_json(), "server": t.server.to_json()}
                        for (cid, _), t in zip(configs, timings, strict=True)]}
