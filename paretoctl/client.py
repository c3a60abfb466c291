"""Edge-device SDK for the policy service: ask for a schedule, keep working when the link is down.

:class:`PolicyClient` (and its ``asyncio`` twin :class:`AsyncPolicyClient`) asks ``GET /policy``
for a decision. It retries transient failures (connection errors, 429, 5xx) with bounded,
jittered exponential backoff and honours ``Retry-After``. It keeps the last front on disk
(``cache_dir``, written atomically) and revalidates it with its ETag, so an unchanged front costs a
304 and no body. When the server cannot be reached it answers from the cached front with the very
same :func:`paretoctl.service.policy.select` the server runs, and says so: ``decision.source == "cache"``
(``"server"`` otherwise) and a warning is logged. With neither server nor cache it raises
:class:`ServiceUnavailableError`.

Nothing here imports torch except :func:`apply_policy`, which applies a decision to the device's
own model (needs the ``[build]`` extra).

Example:
    >>> with PolicyClient("http://policy.local:8000") as client:  # doctest: +SKIP
    ...     decision = client.get_policy(snr_db=7.5, latency_ms=20)
    ...     apply_policy(model, decision)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from paretoctl.service.policy import Decision, select
from paretoctl.service.schema import DeviceProfile, FrontArtifact, FrontLoadError, atomic_write_bytes, load_front

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "AsyncPolicyClient",
    "FrontCache",
    "PolicyClient",
    "PolicyClientError",
    "PolicyRequestError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "apply_policy",
    "default_cache_dir",
]

log = logging.getLogger("paretoctl.client")


class PolicyClientError(RuntimeError):
    """Base class of the SDK's errors."""


class ServiceUnavailableError(PolicyClientError):
    """The server could not be reached (after retries) and there is no usable cached front."""


class PolicyRequestError(PolicyClientError):
    """The server refused the request itself (4xx other than 409/429): retrying will not help.

    Attributes:
        status: the HTTP status.
        detail: the server's explanation.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/paretoctl`` (``~/.cache/paretoctl``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paretoctl"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before falling back to the cache.

    Attributes:
        attempts: total tries per request (1 = no retry).
        backoff_s: delay before the first retry; doubles each time.
        max_backoff_s: cap on one exponential delay.
        jitter: relative jitter: each delay is multiplied by a uniform factor in [1 - j, 1 + j], so
            many devices that failed together do not retry together.
        max_retry_after_s: cap on a server's ``Retry-After`` (a device cannot wait minutes).
    """

    attempts: int = 4
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    jitter: float = 0.2
    max_retry_after_s: float = 10.0

    def delay(self, attempt: int, response: httpx.Response | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based).

        ``Retry-After`` (seconds or HTTP date) wins when the server sent one, capped at
        ``max_retry_after_s``; otherwise ``backoff_s * 2**attempt`` capped at ``max_backoff_s``, jittered.
        """
        if response is not None:
            after = parse_retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, self.max_retry_after_s)
        base = min(self.backoff_s * (2 ** attempt), self.max_backoff_s)
        u = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return max(0.0, base * u)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class FrontCache:
    """The last front fetched from one server, on disk: ``front-<hash>.json`` plus ``.meta.json``.

    The front file is the server's exact bytes (so its checksum still verifies) and is written
    atomically; the metadata (ETag, URL, fetch time) is written after it. A cached front is
    verified with :func:`load_front` when read, so a corrupted cache is ignored, never trusted.
    """

    def __init__(self, cache_dir: str | Path, base_url: str) -> None:
        self.dir = Path(cache_dir)
        key = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
        self.front_path = self.dir / f"front-{key}.json"
        self.meta_path = self.dir / f"front-{key}.meta.json"
        self.base_url = base_url
        self._memo: tuple[float, FrontArtifact, str | None] | None = None

    def load(self) -> tuple[FrontArtifact, str | None] | None:
        """``(front, etag)`` from disk, or None if there is no valid cache (memoised on mtime)."""
        try:
            mtime = self.front_path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._memo is not None and self._memo[0] == mtime:
            return self._memo[1], self._memo[2]
        try:
            front = load_front(self.front_path)
        except FrontLoadError as exc:
            log.warning("ignoring cached front %s: %s", self.front_path, exc)
            return None
        etag = None
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if meta.get("checksum") == front.checksum:
                etag = meta.get("etag")
        except (OSError, ValueError):
            pass
        self._memo = (mtime, front, etag)
        return front, etag

    def store(self, body: bytes, etag: str | None) -> FrontArtifact:
        """Verify ``body`` and write it (then its metadata) atomically; returns the parsed front.

        Raises:
            FrontLoadError: the server sent a front that does not verify; the cache is untouched.
        """
        front = load_front(body)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.front_path, body)
        meta = {"etag": etag, "checksum": front.checksum, "url": self.base_url,
                "fetched_at": datetime.now(UTC).isoformat()}
        atomic_write_bytes(self.meta_path, json.dumps(meta).encode())
        self._memo = (self.front_path.stat().st_mtime_ns, front, etag)
        return front


class _Unreachable(Exception):
    """Internal: retries exhausted; ``why`` says what the last try got."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _ClientCore:
    """The I/O-free part shared by the sync and async clients: requests, answers, fallback."""

    def __init__(self, base_url: str, cache_dir: str | Path | None, retry: RetryPolicy | None,
                 profiles: Mapping[str, DeviceProfile] | None, seed: int | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache = FrontCache(cache_dir if cache_dir is not None else default_cache_dir(), self.base_url)
        self.retry = retry or RetryPolicy()
        self.profiles = dict(profiles or {})
        self.rng = random.Random(seed)

    @staticmethod
    def policy_params(snr_db: float, latency_ms: float, channel: str | None, min_accuracy: float | None,
                      device: str | None) -> dict[str, str]:
        params = {"snr": repr(float(snr_db)), "latency": repr(float(latency_ms))}
        if channel is not None:
            params["channel"] = channel
        if min_accuracy is not None:
            params["min_accuracy"] = repr(float(min_accuracy))
        if device is not None:
            params["device"] = device
        return params

    @staticmethod
    def retryable(resp: httpx.Response) -> bool:
        """429 and every 5xx are transient from a device's point of view; other answers are final."""
        return resp.status_code == 429 or 500 <= resp.status_code < 600

    @staticmethod
    def describe(resp: httpx.Response) -> str:
        return f"HTTP {resp.status_code} from {resp.request.url}: {_detail(resp)}"

    def decision_from(self, resp: httpx.Response) -> Decision:
        """A server decision from a 200 or 409; other 4xx raise :class:`PolicyRequestError`."""
        if resp.status_code == 200:
            decision = Decision.model_validate_json(resp.content)
        elif resp.status_code == 409:
            decision = Decision.model_validate(resp.json()["decision"])
        else:
            raise PolicyRequestError(resp.status_code, _detail(resp))
        decision.source = "server"
        return decision

    def fallback(self, why: str, snr_db: float, latency_ms: float, channel: str | None,
                 min_accuracy: float | None, device: str | None, profile: DeviceProfile | None) -> Decision:
        """Answer from the cached front with :func:`select`, or raise if there is none."""
        cached = self.cache.load()
        if cached is None:
            raise ServiceUnavailableError(f"policy server {self.base_url} unavailable ({why}) and no "
                                          f"cached front in {self.cache.dir}")
        front = cached[0]
        if profile is None and device is not None:
            profile = self.profiles.get(device)
            if profile is None:
                raise ServiceUnavailableError(
                    f"policy server {self.base_url} unavailable ({why}); device profile {device!r} is "
                    "only known to the server (pass profile= or profiles= to answer offline)")
        log.warning("policy server %s unavailable (%s); answering from cached front %s", self.base_url,
                    why, front.checksum)
        decision = select(front, snr_db, latency_ms, channel=channel, min_accuracy=min_accuracy,
                          profile=profile)
        decision.source = "cache"
        decision.warnings = [*decision.warnings, f"answered from the cached front: server unavailable ({why})"]
        return decision

    def front_headers(self) -> dict[str, str]:
        cached = self.cache.load()
        return {"If-None-Match": cached[1]} if cached is not None and cached[1] else {}

    def front_from(self, resp: httpx.Response) -> FrontArtifact:
        """The front from a 200 (stored) or a 304 (the cache is current)."""
        if resp.status_code == 304:
            cached = self.cache.load()
            if cached is None:  # the cache vanished between the request and now
                raise PolicyClientError("server answered 304 but the cached front is gone")
            return cached[0]
        if resp.status_code != 200:
            raise PolicyRequestError(resp.status_code, _detail(resp))
        try:
            return self.cache.store(resp.content, resp.headers.get("etag"))
        except FrontLoadError as exc:
            raise PolicyClientError(f"server sent an invalid front ({exc.reason}): {exc.message}") from None
        except OSError as exc:  # unwritable cache: the front is still good, offline fallback is not
            log.warning("cannot write the front cache %s: %s", self.cache.front_path, exc)
            return load_front(resp.content)

    def needs_sync(self, decision: Decision) -> bool:
        """True when the server's front differs from the cached one (or there is no cache)."""
        cached = self.cache.load()
        return cached is None or cached[0].checksum != decision.front_checksum


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and "detail" in body:
        d = body["detail"]
        if isinstance(d, list):
            return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in d)
        return str(d)
    return str(body)[:200]


class PolicyClient:
    """Synchronous client of the policy service, with retries, an on-disk front cache and fallback.

    Args:
        base_url: the service, e.g. ``http://10.0.0.2:8000``.
        cache_dir: where the last front is kept (default :func:`default_cache_dir`).
        timeout: per-request timeout in seconds.
        retry: retry/backoff settings.
        profiles: device profiles by name, for answering ``device=`` queries offline.
        auto_sync: after a server decision, refresh the cached front when the server's checksum
            differs from the cache (a 304 revalidation in the steady state costs nothing extra,
            because it only happens when the front changed or was never cached).
        transport: an httpx transport (tests).
        seed: seed of the backoff jitter.
    """

    def __init__(self, base_url: str, cache_dir: str | Path | None = None, timeout: float = 2.0,
                 retry: RetryPolicy | None = None, profiles: Mapping[str, DeviceProfile] | None = None,
                 auto_sync: bool = True, transport: httpx.BaseTransport | None = None,
                 seed: int | None = None) -> None:
        self._core = _ClientCore(base_url, cache_dir, retry, profiles, seed)
        self._http = httpx.Client(base_url=self._core.base_url, timeout=timeout, transport=transport)
        self.auto_sync = auto_sync
        self._sleep: Callable[[float], None] = time.sleep  # replaced in tests

    @property
    def cache(self) -> FrontCache:
        """The on-disk front cache."""
        return self._core.cache

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _request(self, path: str, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
        """GET with retries; returns the first non-retryable response or raises :class:`_Unreachable`."""
        retry = self._core.retry
        why = "no attempt"
        for attempt in range(max(1, retry.attempts)):
            resp: httpx.Response | None = None
            try:
                resp = self._http.get(path, params=params, headers=headers)
            except httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if not self._core.retryable(resp):
                    return resp
                why = self._core.describe(resp)
            if attempt + 1 < retry.attempts:
                delay = retry.delay(attempt, resp, self._core.rng)
                log.info("GET %s failed (%s); retry %d in %.2fs", path, why, attempt + 1, delay)
                self._sleep(delay)
        raise _Unreachable(why)

    def get_policy(self, snr_db: float, latency_ms: float, *, channel: str | None = None,
                   min_accuracy: float | None = None, device: str | None = None,
                   profile: DeviceProfile | None = None) -> Decision:
        """The server's decision, or the cached front's when the server is unreachable.

        Args:
            snr_db: current link SNR (dB).
            latency_ms: latency budget (ms).
            channel: channel kind (default: the front's first).
            min_accuracy: accuracy floor.
            device: server-side device profile name.
            profile: a device profile to use offline (the server is asked by ``device`` name).

        Returns:
            The decision; ``feasible=False`` when nothing fits (the server's 409), ``source`` says
            where it came from.

        Raises:
            PolicyRequestError: the server rejected the query (422 bad number, 404 unknown device).
            ServiceUnavailableError: no server and no cached front.
        """
        params = self._core.policy_params(snr_db, latency_ms, channel, min_accuracy, device)
        try:
            resp = self._request("/policy", params=params)
        except _Unreachable as exc:
            return self._core.fallback(exc.why, snr_db, latency_ms, channel, min_accuracy, device, profile)
        decision = self._core.decision_from(resp)
        if self.auto_sync and self._core.needs_sync(decision):
            try:
                self.fetch_front(allow_cache=False)
            except PolicyClientError as exc:
                log.warning("could not refresh the cached front: %s", exc)
        return decision

    def fetch_front(self, allow_cache: bool = True) -> FrontArtifact:
        """The server's front, revalidating the cached copy with its ETag (304 = cache is current).

        Args:
            allow_cache: when the server is unreachable, return the cached front (with a warning)
                instead of raising.

        Raises:
            ServiceUnavailableError: server unreachable and no cache (or ``allow_cache=False``).
            PolicyClientError: the server sent a front that does not verify.
        """
        try:
            resp = self._request("/front", headers=self._core.front_headers())
        except _Unreachable as exc:
            cached = self._core.cache.load() if allow_cache else None
            if cached is None:
                raise ServiceUnavailableError(f"cannot fetch the front from {self._core.base_url}: {exc.why}") \
                    from None
            log.warning("cannot fetch the front (%s); using the cached one %s", exc.why, cached[0].checksum)
            return cached[0]
        return self._core.front_from(resp)


class AsyncPolicyClient:
    """The ``asyncio`` twin of :class:`PolicyClient` (same arguments, ``await`` the methods)."""

    def __init__(self, base_url: str, cache_dir: str | Path | None = None, timeout: float = 2.0,
                 retry: RetryPolicy | None = None, profiles: Mapping[str, DeviceProfile] | None = None,
                 auto_sync: bool = True, transport: httpx.AsyncBaseTransport | None = None,
                 seed: int | None = None) -> None:
        self._core = _ClientCore(base_url, cache_dir, retry, profiles, seed)
        self._http = httpx.AsyncClient(base_url=self._core.base_url, timeout=timeout, transport=transport)
        self.auto_sync = auto_sync
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaced in tests

    @property
    def cache(self) -> FrontCache:
        """The on-disk front cache."""
        return self._core.cache

    async def __aenter__(self) -> AsyncPolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _request(self, path: str, params: dict[str, str] | None = None,
                       headers: dict[str, str] | None = None) -> httpx.Response:
        retry = self._core.retry
        why = "no attempt"
        for attempt in range(max(1, retry.attempts)):
            resp: httpx.Response | None = None
            try:
                resp = await self._http.get(path, params=params, headers=headers)
            except httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if not self._core.retryable(resp):
                    return resp
                why = self._core.describe(resp)
            if attempt + 1 < retry.attempts:
                delay = retry.delay(attempt, resp, self._core.rng)
                log.info("GET %s failed (%s); retry %d in %.2fs", path, why, attempt + 1, delay)
                await self._sleep(delay)
        raise _Unreachable(why)

    async def get_policy(self, snr_db: float, latency_ms: float, *, channel: str | None = None,
                         min_accuracy: float | None = None, device: str | None = None,
                         profile: DeviceProfile | None = None) -> Decision:
        """See :meth:`PolicyClient.get_policy`."""
        params = self._core.policy_params(snr_db, latency_ms, channel, min_accuracy, device)
        try:
            resp = await self._request("/policy", params=params)
        except _Unreachable as exc:
            return self._core.fallback(exc.why, snr_db, latency_ms, channel, min_accuracy, device, profile)
        decision = self._core.decision_from(resp)
        if self.auto_sync and self._core.needs_sync(decision):
            try:
                await self.fetch_front(allow_cache=False)
            except PolicyClientError as exc:
                log.warning("could not refresh the cached front: %s", exc)
        return decision

    async def fetch_front(self, allow_cache: bool = True) -> FrontArtifact:
        """See :meth:`PolicyClient.fetch_front`."""
        try:
            resp = await self._request("/front", headers=self._core.front_headers())
        except _Unreachable as exc:
            cached = self._core.cache.load() if allow_cache else None
            if cached is None:
                raise ServiceUnavailableError(f"cannot fetch the front from {self._core.base_url}: {exc.why}") \
                    from None
            log.warning("cannot fetch the front (%s); using the cached one %s", exc.why, cached[0].checksum)
            return cached[0]
        return self._core.front_from(resp)


def apply_policy(model: nn.Module, decision: Decision) -> nn.Module:
    """Set the decision's merge schedule (``decision.r``) on the device's own timm ViT.

    The first call patches the model with ``paretoctl.models.patch.apply_merging``; later calls only change the
    schedule with ``set_schedule``, so switching schedules as the link changes is cheap.

    Args:
        model: a timm ViT (patched or not); modified in place.
        decision: a feasible decision.

    Returns:
        The same model.

    Raises:
        ValueError: the decision is infeasible (no schedule to apply), or its schedule does not fit
            the model (length differs from the depth, or more merges than tokens allow).
    """
    if not decision.feasible or decision.r is None:
        raise ValueError(f"cannot apply an infeasible decision: {decision.reason}")
    from paretoctl.models.patch import apply_merging, is_patched, set_schedule  # torch, lazily: [build] extra

    r = list(decision.r)
    if is_patched(model):
        set_schedule(model, r)
    else:
        apply_merging(model, r=r)
    return model
