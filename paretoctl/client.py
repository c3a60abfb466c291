"""Edge-device SDK for the policy service: ask for a schedule, keep working when the link is down.

:class:`PolicyClient` (and its ``asyncio`` twin :class:`AsyncPolicyClient`) asks ``GET /policy``
for a decision. Both are thin shells over :class:`paretoctl.sdk_core.ClientCore`, which decides
everything without doing network I/O: retries of transient failures (connection errors, 429, 5xx)
with bounded, jittered exponential backoff that honours ``Retry-After``; one overall deadline per
call (``deadline_s``); the front cache (:class:`paretoctl.sdk_cache.FrontCache`, on disk and in
memory, revalidated with its ETag); and the fallback to the cached front, answered with the very
same :func:`paretoctl.service.policy.select` the server runs. An offline answer says so:
``decision.source == "cache"`` (``"server"`` otherwise) and a warning is logged. With neither
server nor cache it raises :class:`ServiceUnavailableError`.

Nothing here imports torch or FastAPI. :func:`apply_policy` applies a decision to the device's own
model, importing torch lazily (needs the ``[build]`` extra), and refuses a decision made for another
model (:class:`ForeignModelError`).

Example:
    >>> with PolicyClient("http://policy.local:8000", deadline_s=0.1) as client:  # doctest: +SKIP
    ...     decision = client.get_policy(snr_db=7.5, latency_ms=20)
    ...     apply_policy(model, decision)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from paretoctl.sdk_cache import FrontCache, default_cache_dir
from paretoctl.sdk_core import (
    DEFAULT_DEADLINE_S,
    Action,
    ClientCore,
    ForeignModelError,
    MalformedResponseError,
    Operation,
    Outcome,
    PolicyClientError,
    PolicyRequestError,
    RetryPolicy,
    ServiceUnavailableError,
    Sleep,
    parse_retry_after,
)
from paretoctl.service.fileio import atomic_write_text
from paretoctl.service.policy import Decision
from paretoctl.service.schema import DeviceProfile, FrontArtifact, ModelIdentity

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "AsyncPolicyClient",
    "ForeignModelError",
    "FrontCache",
    "MalformedResponseError",
    "PolicyClient",
    "PolicyClientError",
    "PolicyRequestError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "apply_policy",
    "default_cache_dir",
    "parse_retry_after",
]

T = TypeVar("T")


@dataclass(frozen=True)
class _Done(Generic[T]):
    value: T


def _advance(op: Operation[T], outcome: Outcome) -> Action | _Done[T]:
    """Send ``outcome`` into ``op``: its next action, or its result wrapped in :class:`_Done`."""
    try:
        return op.send(outcome)
    except StopIteration as stop:
        return _Done(stop.value)


class _ClientBase:
    """What both shells share: the core, its arguments and the cache.

    Args:
        base_url: the service, e.g. ``http://10.0.0.2:8000``.
        cache_dir: where the last front is kept (default :func:`default_cache_dir`).
        timeout: cap on one try in seconds (default: whatever is left of the call's deadline).
        retry: retry/backoff settings.
        profiles: device profiles by name, for answering ``device=`` queries offline.
        auto_sync: after a server decision, refresh the cached front when the server's checksum
            differs from the cache's (a steady state costs nothing extra).
        transport: an httpx transport (sync or async, matching the client).
        seed: seed of the backoff jitter.
        deadline_s: overall time for one call, retries included, after which the cached front
            answers (each call may pass its own ``deadline_s``).
    """

    def __init__(self, base_url: str, cache_dir: str | Path | None = None, timeout: float | None = None,
                 retry: RetryPolicy | None = None, profiles: Mapping[str, DeviceProfile] | None = None,
                 auto_sync: bool = True, transport: Any = None, seed: int | None = None,
                 deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self._core = ClientCore(base_url, cache_dir, retry, profiles, deadline_s=deadline_s, timeout_s=timeout,
                                auto_sync=auto_sync, seed=seed)
        self._open(transport)

    def _open(self, transport: Any) -> None:
        raise NotImplementedError

    @property
    def cache(self) -> FrontCache:
        """The front cache."""
        return self._core.cache

    def calibrate(self, model: nn.Module, *, images: torch.Tensor | None = None, settings: Any = None,
                  statistic: str = "p90", profile_path: str | Path | None = None,
                  compiled: bool = False) -> DeviceProfile:
        """Time the cached front's configurations on this device's own model and use them offline.

        Edge and server parts are timed on ``model`` as the build times them
        (:func:`paretoctl.models.timing.front_measurements`: edge at batch 1, warm-up, interleaved
        rounds, p50/p90). A fixed schedule does the same work on every image and is timed on one;
        a threshold configuration merges what each image can spare, so it is timed on the real
        ``images``, cycling over them at batch 1 (at least one run per image, up to the settings'
        ``max_runs``), and its p50/p90 include the spread across images. The result is the front's
        device profile with these ``measurements``; it is kept with the cached front, and decisions
        answered from the cache use it (until the front changes). ``profile_path`` also writes it as
        a device-profile YAML: copy it into the service's devices directory and query with
        ``device=<name>`` to get answers computed with this device's own numbers.

        Args:
            model: the device's model; it must be the model the front was built for.
            images: ``[B, C, H, W]`` real inputs of the model (what the device will see), required
                when the front holds threshold configurations; ignored by fixed schedules.
            settings: a :class:`paretoctl.models.timing.TimingSettings` (default: the build's).
            statistic: the percentile decisions use, ``p90`` (a budget is a deadline) or ``p50``.
            profile_path: where to write the profile YAML (its stem is the profile's name).
            compiled: time the fixed schedules as a device that runs them through ``torch.compile``
                does (:class:`paretoctl.models.compiled.CompiledMerging`; each schedule compiles once
                first, tens of seconds on a small CPU, recorded per configuration as ``compile_s``).

        Raises:
            ServiceUnavailableError: there is no cached front (fetch one first).
            ForeignModelError: the front was built for another model.
            ValueError: the front has threshold configurations and ``images`` is missing or not a
                ``[B, C, H, W]`` batch of the model's input size.
        """
        import yaml

        from paretoctl.models.timing import front_measurements  # torch, lazily: the [build] extra
        from paretoctl.service.schema import Measurements

        cached = self.cache.load()
        if cached is None:
            raise ServiceUnavailableError("no cached front to calibrate: call fetch_front() first")
        front = cached[0]
        _check_identity(model, front.provenance.model_identity, "the front")
        thresholds = {c.id: list(c.thresholds) for c in front.configs if c.thresholds is not None}
        if thresholds:
            _check_images(model, images, len(thresholds))
        doc = front_measurements(model, [(c.id, c.r) for c in front.configs], front.provenance.split_index,
                                 settings, statistic=statistic, front_checksum=front.checksum,
                                 thresholds=thresholds or None, images=images if thresholds else None,
                                 compiled=compiled)
        name = Path(profile_path).stem if profile_path is not None else f"{front.device_profile.name}-calibrated"
        profile = front.device_profile.model_copy(
            update={"name": name, "measurements": Measurements.model_validate(doc)})
        self.cache.store_calibration(profile)
        if profile_path is not None:
            Path(profile_path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(profile_path, yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
        return profile

    @property
    def auto_sync(self) -> bool:
        """Refresh the cached front after a decision made on another front."""
        return self._core.auto_sync

    @auto_sync.setter
    def auto_sync(self, value: bool) -> None:
        self._core.auto_sync = value


class PolicyClient(_ClientBase):
    """Synchronous client of the policy service (arguments: see :class:`_ClientBase`)."""

    def _open(self, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(base_url=self._core.base_url, transport=transport)
        self._sleep: Callable[[float], None] = time.sleep  # replaced in tests

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _run(self, op: Operation[T]) -> T:
        step = _advance(op, None)
        while not isinstance(step, _Done):
            step = _advance(op, self._perform(step))
        return step.value

    def _perform(self, action: Action) -> Outcome:
        if isinstance(action, Sleep):
            return self._sleep(action.seconds)
        try:
            return self._http.get(action.path, params=action.params, headers=action.headers,
                                  timeout=action.timeout_s)
        except httpx.TransportError as exc:
            return exc

    def get_policy(self, snr_db: float, latency_ms: float, *, channel: str | None = None,
                   min_accuracy: float | None = None, device: str | None = None,
                   profile: DeviceProfile | None = None, deadline_s: float | None = None) -> Decision:
        """The server's decision, or the cached front's when the server does not answer in time.

        Args:
            snr_db: current link SNR (dB).
            latency_ms: latency budget (ms).
            channel: channel kind (default: the front's first).
            min_accuracy: accuracy floor.
            device: server-side device profile name.
            profile: a device profile to use offline (the server is asked by ``device`` name).
            deadline_s: overall time for this call (default: the client's ``deadline_s``).

        Returns:
            The decision; ``feasible=False`` when nothing fits (the server's 409), ``source`` says
            where it came from, ``model_identity`` which model it is for.

        Raises:
            PolicyRequestError: the query was refused (422 bad number, 404 unknown device/channel).
            MalformedResponseError: the server answered 200/409 with something that is not a decision.
            ServiceUnavailableError: no server in time and no cached front.
        """
        return self._run(self._core.get_policy(snr_db, latency_ms, channel, min_accuracy, device, profile,
                                               deadline_s))

    def fetch_front(self, allow_cache: bool = True, deadline_s: float | None = None) -> FrontArtifact:
        """The server's front, revalidating the cached copy with its ETag (304 = cache is current).

        Args:
            allow_cache: when the server is unreachable, return the cached front (with a warning)
                instead of raising.
            deadline_s: overall time for this call (default: the client's ``deadline_s``).

        Raises:
            ServiceUnavailableError: server unreachable and no cache (or ``allow_cache=False``).
            MalformedResponseError: the server sent a front that does not verify.
        """
        return self._run(self._core.fetch_front(allow_cache, deadline_s))


class AsyncPolicyClient(_ClientBase):
    """The ``asyncio`` twin of :class:`PolicyClient`: same arguments, ``await`` the methods.

    The deadline is enforced with ``asyncio.wait_for`` around each try, so it holds even against
    a server that sends its answer a byte at a time.
    """

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(base_url=self._core.base_url, transport=transport)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaced in tests

    async def __aenter__(self) -> AsyncPolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _run(self, op: Operation[T]) -> T:
        step = _advance(op, None)
        while not isinstance(step, _Done):
            step = _advance(op, await self._perform(step))
        return step.value

    async def _perform(self, action: Action) -> Outcome:
        if isinstance(action, Sleep):
            await self._sleep(action.seconds)
            return None
        get = self._http.get(action.path, params=action.params, headers=action.headers, timeout=action.timeout_s)
        try:
            return await asyncio.wait_for(get, action.timeout_s)
        except TimeoutError:
            return httpx.TimeoutException(f"no answer within {action.timeout_s:.3g} s")
        except httpx.TransportError as exc:
            return exc

    async def get_policy(self, snr_db: float, latency_ms: float, *, channel: str | None = None,
                         min_accuracy: float | None = None, device: str | None = None,
                         profile: DeviceProfile | None = None, deadline_s: float | None = None) -> Decision:
        """See :meth:`PolicyClient.get_policy`."""
        op = self._core.get_policy(snr_db, latency_ms, channel, min_accuracy, device, profile, deadline_s)
        return await self._run(op)

    async def fetch_front(self, allow_cache: bool = True, deadline_s: float | None = None) -> FrontArtifact:
        """See :meth:`PolicyClient.fetch_front`."""
        return await self._run(self._core.fetch_front(allow_cache, deadline_s))


def apply_policy(model: nn.Module, decision: Decision) -> nn.Module:
    """Set the decision's merging on the device's own timm ViT: its thresholds, or its schedule ``r``.

    The decision must have been made for this very model: its ``model_identity`` (from the front's
    provenance) is compared with the fingerprints of ``model``'s architecture and weights
    (:mod:`paretoctl.models.identity`; the weights hash is cached on the model, so repeated calls
    cost a hash only after the weights change). A threshold decision (``merging == "thresholds"``)
    sets its per-block similarity thresholds (input-adaptive merging, ``set_thresholds``); any other
    sets the fixed schedule ``decision.r`` (``set_schedule``). The first call patches the model with
    ``paretoctl.models.patch.apply_merging``; later calls only switch the merging, so following the
    link as it changes is cheap, between both kinds alike.

    Args:
        model: a timm ViT (patched or not); modified in place.
        decision: a feasible decision.

    Returns:
        The same model.

    Raises:
        ValueError: the decision is infeasible (nothing to apply), or what it applies does not fit
            the model (a schedule or thresholds whose length differs from the depth, more merges
            than tokens allow).
        ForeignModelError: the decision was made for another architecture or other weights.
    """
    if not decision.feasible or (decision.r is None and decision.thresholds is None):
        raise ValueError(f"cannot apply an infeasible decision: {decision.reason}")
    from paretoctl.models.patch import (  # torch, lazily: [build]
        apply_merging,
        is_patched,
        set_schedule,
        set_thresholds,
    )

    _check_identity(model, decision.model_identity, f"decision {decision.config_id!r}")
    if decision.thresholds is not None:
        thresholds = list(decision.thresholds)
        if is_patched(model):
            set_thresholds(model, thresholds)
        else:
            apply_merging(model, thresholds=thresholds)
        return model
    r = list(decision.r or ())
    if is_patched(model):
        set_schedule(model, r)
    else:
        apply_merging(model, r=r)
    return model


def _check_images(model: nn.Module, images: torch.Tensor | None, n_threshold: int) -> None:
    """Raise ``ValueError`` (naming ``images``) unless ``images`` is a ``[B, C, H, W]`` batch of ``model``'s inputs."""
    import torch

    if images is None:
        raise ValueError(f"the front has {n_threshold} threshold configuration(s), whose work depends on the "
                         "input: pass images=, a [B, C, H, W] tensor of real inputs, to time them on")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] < 1:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a [B, C, H, W] tensor with B >= 1, got {shape}")
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    proj = getattr(pe, "proj", None)
    if size is not None and proj is not None and hasattr(proj, "in_channels"):
        hw = tuple(size) if isinstance(size, tuple | list) else (size, size)
        want = (int(proj.in_channels), int(hw[0]), int(hw[1]))
        if tuple(images.shape[1:]) != want:
            raise ValueError(f"images must be [B, {want[0]}, {want[1]}, {want[2]}] for this model, got "
                             f"{list(images.shape)}")


def _check_identity(model: nn.Module, expected: ModelIdentity, what: str) -> None:
    """Raise :class:`ForeignModelError` unless ``model`` has ``expected``'s architecture and weights."""
    from paretoctl.models.identity import architecture_sha256, weights_sha256  # torch, lazily

    found = {"architecture_sha256": architecture_sha256(model)}
    if found["architecture_sha256"] == expected.architecture_sha256:
        found["weights_sha256"] = weights_sha256(model)  # only hashed when the architecture matches
        if found["weights_sha256"] == expected.weights_sha256:
            return
    part = "weights" if "weights_sha256" in found else "architecture"
    want = getattr(expected, f"{part}_sha256")
    raise ForeignModelError(
        f"{what} was made for model {expected.name!r} with {part} {want[:12]}..., but this "
        f"{type(model).__name__} has {part} {found[f'{part}_sha256'][:12]}...: the front's schedules and "
        "accuracies do not apply to it (fetch the front built for this model)",
        expected=expected.model_dump(), found=found)
