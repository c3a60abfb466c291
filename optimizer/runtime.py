"""Where a build runs: the ``runtime`` section of a build config and what it resolves to on this machine.

The section is pure schema (no torch at import, like the rest of ``paretoctl.optimizer.config``);
:func:`resolve_device`, :func:`runtime_error` and :func:`autocast` import torch when called. The CUDA
path is the same code as the CPU path with another device string: the model, the batches and the
channel's tokens live on the resolved device, while the channel noise is drawn from CPU generators
and moved (``paretoctl.channel_sim``), so a seed gives the same noise on every device.

Fields that change *where* or *how fast* evaluations run (``executor``, ``process_*``, ``ray_*``, ``threads``,
``loader_workers``, ``server_chunk``) leave the measured accuracies unchanged; ``device`` and ``precision`` change the
arithmetic and may move an accuracy by an image or two.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import torch

DEFAULT_SERVER_CHUNK = 64
"""Images per server forward in an evaluation. One batch's SNR copies make ``SNRs x batch_size`` rows
(2,500 in the default build); in pieces of 48-256 images they fit the caches. On the AMD EPYC VM,
two single-threaded evaluations running at once as in the default build (``bench/server_chunk.py``,
500 images, medians of 4 interleaved rounds, 2026-12-07): 10.0 s at 64 against 10.6 s at 128 and
15.9 s whole, unmerged; 6.4-6.5 s against 6.5-6.6 s and 9.0-10.0 s with r = 3 per block. 48 was
faster unmerged and slower merged. Every piece size measures the same accuracies."""
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
Precision = Literal["fp32", "bf16", "fp16"]
ExecutorName = Literal["local", "processes", "ray"]


class RuntimeSection(BaseModel):
    """Where and how evaluations run. Every field has a default: a config may omit the section.

    Attributes:
        device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``; or ``bf16``/``fp16`` autocast for the model (opt-in; the channel always
            runs in float32). Recorded in the front's provenance with the rest of the config.
        threads: torch intra-op threads in the driver (None: torch's default).
        loader_workers: DataLoader worker processes that decode images (0: in the main process).
        server_chunk: images per server forward (None: a batch's whole stack of SNR copies at once);
            cache-sized pieces are 1.5-1.8x faster on a CPU (``paretoctl.optimizer.evaluator``).
        executor: ``local`` evaluates a batch of candidates one after another in this process;
            ``processes`` in parallel in worker processes on this machine; ``ray`` on Ray actors.
        process_workers: worker processes of ``executor: processes`` (None: one per CPU, at most the
            search's ``q``).
        process_threads: torch threads in each worker process (1: on a CPU, one single-threaded
            process per core beats threads that wait on each other at every small operator).
        ray_address: an existing Ray cluster to join (``ray://host:10001`` or ``host:6379``); None
            starts a local Ray instance.
        ray_workers: actors (None: one per CPU Ray reports, at most the search's ``q``).
        ray_cpus_per_worker: CPUs each actor reserves; its torch threads are set to this number.
        ray_gpus_per_worker: GPUs each actor reserves (e.g. 0.5 to put two actors on one GPU).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "auto"
    precision: Precision = "fp32"
    threads: int | None = Field(None, ge=1)
    loader_workers: int = Field(0, ge=0, le=64)
    server_chunk: int | None = Field(DEFAULT_SERVER_CHUNK, ge=1)
    executor: ExecutorName = "local"
    process_workers: int | None = Field(None, ge=1, le=256)
    process_threads: int = Field(1, ge=1, le=256)
    ray_address: str | None = None
    ray_workers: int | None = Field(None, ge=1)
    ray_cpus_per_worker: int = Field(1, ge=1)
    ray_gpus_per_worker: float = Field(0.0, ge=0)

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not DEVICE_PATTERN.match(device):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
        return device


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine, or None if it can (``auto`` always can)."""
    if device in ("auto", "cpu"):
        return None
    if device == "mps":
        return None if _mps_available() else "mps requested but this machine has no MPS (Apple GPU) backend"
    count = _cuda_count()
    index = int(device.split(":")[1]) if ":" in device else 0
    if count == 0:
        return f"{device} requested but torch sees no CUDA device (torch.cuda.is_available() is False)"
    if index >= count:
        return f"{device} requested but torch sees only {count} CUDA device(s): cuda:0..cuda:{count - 1}"
    return None


def resolve_device(device: str) -> torch.device:
    """The torch device ``device`` names; ``auto`` picks CUDA, then MPS, then CPU.

    Raises:
        ValueError: the device is not available here (the message says why).
    """
    import torch

    problem = device_problem(device)
    if problem:
        raise ValueError(problem)
    if device == "auto":
        if _cuda_count():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    return torch.device(device)


def runtime_error(rt: RuntimeSection) -> tuple[str, str] | None:
    """``(field, message)`` for the first runtime setting this machine cannot honour, else None.

    Checked before any model or data is loaded: an unavailable device, half precision the device
    cannot compute in, or ``executor: ray`` without Ray installed.
    """
    problem = device_problem(rt.device)
    if problem:
        return "runtime.device", problem
    if rt.precision != "fp32":
        import torch

        dev = resolve_device(rt.device)
        if dev.type == "mps" and rt.precision == "bf16":
            return "runtime.precision", "bf16 autocast is not supported on mps; use fp16 or fp32"
        if dev.type == "cuda" and rt.precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "runtime.precision", f"{rt.device} does not support bf16; use fp16 or fp32"
    if rt.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            return "runtime.executor", "ray is not installed; install it with pip install 'paretoctl[ray]'"
    if rt.ray_address is not None and rt.executor != "ray":
        return "runtime.ray_address", "is only used with runtime.executor: ray"
    return None


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for fp32: no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed precision for the model's forward passes on ``device`` (a no-op for fp32)."""
    import torch

    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None leaves torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
