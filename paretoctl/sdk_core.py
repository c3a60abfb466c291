"""The edge SDK's core, without network I/O: what to request, when to retry, what an answer means.

The sync and async clients (:mod:`paretoctl.client`) are thin shells over the *operations* here.
An operation is a generator that yields :class:`HttpGet` or :class:`Sleep` actions and is sent back
each action's outcome (an ``httpx.Response``, the ``httpx.TransportError`` the request raised, or
None after a sleep); it returns the call's result. So every decision (retry or not, how long to
back off, whether the deadline allows another try, how to parse a decision, when to fall back to
the cached front) is written once, and the shells only perform actions: ``client.get`` or
``await client.get``, ``time.sleep`` or ``await asyncio.sleep``.

Every call has one overall deadline (``deadline_s``): each try's timeout is what is left of it, a
backoff that would reach past it is not slept, and the call then answers from the cached front. A
device with a 100 ms budget gets the cached answer within about 100 ms, whatever the server does.

Torch-free and FastAPI-free; the front cache's small file reads and writes are the only I/O.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeAlias, TypeVar

import httpx
from pydantic import ValidationError

from paretoctl.sdk_cache import FrontCache, default_cache_dir
from paretoctl.service.policy import Decision, PolicyError, UnknownChannelError, select
from paretoctl.service.schema import DeviceProfile, FrontArtifact, FrontLoadError
from paretoctl.service.validation import format_validation_error

__all__ = [
    "ClientCore",
    "ForeignModelError",
    "HttpGet",
    "MalformedResponseError",
    "Operation",
    "PolicyClientError",
    "PolicyRequestError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "Sleep",
    "parse_retry_after",
]

log = logging.getLogger("paretoctl.client")

T = TypeVar("T")

DEFAULT_DEADLINE_S = 2.0
"""Default overall time for one call, retries and backoff included, before the cached answer."""


# ------------------------------------------------------------------------------------------ errors


class PolicyClientError(RuntimeError):
    """Base class of the SDK's errors."""


class ServiceUnavailableError(PolicyClientError):
    """The server could not be reached (within the deadline) and there is no usable cached front."""


class PolicyRequestError(PolicyClientError):
    """The query itself was refused (4xx other than 409/429): retrying will not help.

    Offline, the cached front refuses the same queries with the status the server would give
    (422 bad number, 404 unknown channel or device).

    Attributes:
        status: the HTTP status.
        detail: the explanation.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class MalformedResponseError(PolicyClientError):
    """The server answered 200 or 409 with a body that is not a decision (names the field)."""


class ForeignModelError(PolicyClientError):
    """A decision was made for another model (architecture or weights) than the one it is applied to.

    Attributes:
        expected: the decision's model identity (``name``, ``architecture_sha256``, ``weights_sha256``).
        found: the device model's fingerprints.
    """

    def __init__(self, message: str, expected: Mapping[str, str], found: Mapping[str, str]) -> None:
        super().__init__(message)
        self.expected = dict(expected)
        self.found = dict(found)


class _Unreachable(Exception):
    """Internal: tries exhausted or deadline reached; ``why`` says what the last try got."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# ------------------------------------------------------------------------------------ retries


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try, within the call's deadline, before falling back to the cache.

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


# ------------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class HttpGet:
    """Perform ``GET path`` within ``timeout_s`` seconds; send back the response or the TransportError."""

    path: str
    params: dict[str, str] | None
    headers: dict[str, str] | None
    timeout_s: float


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``; send back None."""

    seconds: float


Action: TypeAlias = HttpGet | Sleep
Outcome: TypeAlias = httpx.Response | httpx.TransportError | None
Operation: TypeAlias = Generator[Action, Outcome, T]
"""A call in progress: yields actions, is sent their outcomes, returns the result."""


@dataclass(frozen=True)
class _Deadline:
    """The end of one call on the core's monotonic clock (seconds)."""

    end: float
    total_s: float
    clock: Callable[[], float]

    def remaining(self) -> float:
        return self.end - self.clock()


@dataclass(frozen=True)
class _Query:
    snr_db: float
    latency_ms: float
    channel: str | None
    min_accuracy: float | None
    device: str | None
    profile: DeviceProfile | None

    def params(self) -> dict[str, str]:
        params = {"snr": repr(float(self.snr_db)), "latency": repr(float(self.latency_ms))}
        optional = {"channel": self.channel, "device": self.device,
                    "min_accuracy": None if self.min_accuracy is None else repr(float(self.min_accuracy))}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


# --------------------------------------------------------------------------------------- core


class ClientCore:
    """Everything the sync and async clients share; they only perform the actions it yields.

    Args:
        base_url: the service.
        cache_dir: where the last front is kept (default :func:`default_cache_dir`).
        retry: retry/backoff settings.
        profiles: device profiles by name, for answering ``device=`` queries offline.
        deadline_s: default overall time for one call (retries, backoff and an automatic front
            refresh included), after which the cached front answers.
        timeout_s: cap on one try (default: whatever is left of the deadline).
        auto_sync: refresh the cached front after a server decision made on another front.
        seed: seed of the backoff jitter.
        clock: monotonic clock in seconds (tests).
    """

    def __init__(self, base_url: str, cache_dir: str | Path | None, retry: RetryPolicy | None,
                 profiles: Mapping[str, DeviceProfile] | None, deadline_s: float, timeout_s: float | None,
                 auto_sync: bool, seed: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s!r}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout must be > 0, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.cache = FrontCache(cache_dir if cache_dir is not None else default_cache_dir(), self.base_url)
        self.retry = retry or RetryPolicy()
        self.profiles = dict(profiles or {})
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self.auto_sync = auto_sync
        self.rng = random.Random(seed)
        self.clock = clock

    def _deadline(self, deadline_s: float | None) -> _Deadline:
        total = self.deadline_s if deadline_s is None else deadline_s
        if not total > 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s!r}")
        return _Deadline(self.clock() + total, total, self.clock)

    # ------------------------------------------------------------------------------ operations

    def get_policy(self, snr_db: float, latency_ms: float, channel: str | None, min_accuracy: float | None,
                   device: str | None, profile: DeviceProfile | None,
                   deadline_s: float | None) -> Operation[Decision]:
        """The server's decision, or the cached front's when the server is unreachable in time."""
        query = _Query(snr_db, latency_ms, channel, min_accuracy, device, profile)
        deadline = self._deadline(deadline_s)
        try:
            resp = yield from self._request("/policy", query.params(), None, deadline)
        except _Unreachable as exc:
            return self.fallback(exc.why, query)
        decision = decision_from(resp)
        if self.auto_sync and self.needs_sync(decision) and deadline.remaining() > 0:
            try:
                yield from self.fetch_front(False, deadline)
            except PolicyClientError as exc:
                log.warning("could not refresh the cached front: %s", exc)
        return decision

    def fetch_front(self, allow_cache: bool, deadline: _Deadline | float | None) -> Operation[FrontArtifact]:
        """The server's front, revalidated with the cached ETag; the cached one if allowed and offline."""
        if not isinstance(deadline, _Deadline):
            deadline = self._deadline(deadline)
        cached = self.cache.load()
        headers = {"If-None-Match": cached[1]} if cached is not None and cached[1] else {}
        try:
            resp = yield from self._request("/front", None, headers, deadline)
        except _Unreachable as exc:
            cached = self.cache.load() if allow_cache else None
            if cached is None:
                raise ServiceUnavailableError(f"cannot fetch the front from {self.base_url}: {exc.why}") from None
            log.warning("cannot fetch the front (%s); using the cached one %s", exc.why, cached[0].checksum)
            return cached[0]
        return self.front_from(resp)

    def _request(self, path: str, params: dict[str, str] | None, headers: dict[str, str] | None,
                 deadline: _Deadline) -> Operation[httpx.Response]:
        """GET with retries inside the deadline; the first final response, or raises :class:`_Unreachable`."""
        why = "no attempt"
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            left = deadline.remaining()
            if left <= 0:
                why = f"{why}; deadline of {deadline.total_s:g} s reached"
                break
            timeout = left if self.timeout_s is None else min(left, self.timeout_s)
            outcome = yield HttpGet(path, params, headers, timeout)
            resp = outcome if isinstance(outcome, httpx.Response) else None
            if resp is not None and not retryable(resp):
                return resp
            why = describe(resp) if resp is not None else f"{type(outcome).__name__}: {outcome}"
            if attempt + 1 == attempts:
                break
            delay = self.retry.delay(attempt, resp, self.rng)
            if delay >= deadline.remaining():
                why = f"{why}; a retry in {delay:.2f} s would pass the {deadline.total_s:g} s deadline"
                break
            log.info("GET %s failed (%s); retry %d in %.2fs", path, why, attempt + 1, delay)
            yield Sleep(delay)
        raise _Unreachable(why)

    # ------------------------------------------------------------------------------ answers

    def fallback(self, why: str, query: _Query) -> Decision:
        """Answer from the cached front with :func:`select`, as the server would, or raise."""
        cached = self.cache.load()
        if cached is None:
            raise ServiceUnavailableError(f"policy server {self.base_url} unavailable ({why}) and no "
                                          f"cached front in {self.cache.dir}")
        front = cached[0]
        profile = query.profile
        if profile is None and query.device is None:
            profile = self.cache.calibration(front.checksum)  # this device's own timings, if calibrated
        if profile is None and query.device is not None:
            profile = self.profiles.get(query.device)
            if profile is None:
                raise ServiceUnavailableError(
                    f"policy server {self.base_url} unavailable ({why}); device profile {query.device!r} is "
                    "only known to the server (pass profile= or profiles= to answer offline)")
        try:
            decision = select(front, query.snr_db, query.latency_ms, channel=query.channel,
                              min_accuracy=query.min_accuracy, profile=profile)
        except UnknownChannelError as exc:
            raise PolicyRequestError(404, str(exc)) from None
        except PolicyError as exc:
            raise PolicyRequestError(422, str(exc)) from None
        log.warning("policy server %s unavailable (%s); answering from cached front %s", self.base_url,
                    why, front.checksum)
        decision.source = "cache"
        decision.warnings = [*decision.warnings, f"answered from the cached front: server unavailable ({why})"]
        return decision

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
            raise MalformedResponseError(f"server sent an invalid front ({exc.reason}): {exc.message}") from None

    def needs_sync(self, decision: Decision) -> bool:
        """True when the server's front differs from the cached one (or there is no cache)."""
        cached = self.cache.load()
        return cached is None or cached[0].checksum != decision.front_checksum


def retryable(resp: httpx.Response) -> bool:
    """429 and every 5xx are transient from a device's point of view; other answers are final."""
    return resp.status_code == 429 or 500 <= resp.status_code < 600


def describe(resp: httpx.Response) -> str:
    return f"HTTP {resp.status_code} from {resp.request.url}: {_detail(resp)}"


def decision_from(resp: httpx.Response) -> Decision:
    """A server decision from a 200 or a 409 (``{"decision": ...}``); other statuses are request errors.

    Raises:
        PolicyRequestError: any other status (422 bad number, 404 unknown device or channel).
        MalformedResponseError: the body is not JSON, or not a decision (the message names the field).
    """
    status = resp.status_code
    if status not in (200, 409):
        raise PolicyRequestError(status, _detail(resp))
    where = f"HTTP {status} answer from {resp.request.url}"
    try:
        doc = json.loads(resp.content)
    except ValueError as exc:  # also UnicodeDecodeError
        raise MalformedResponseError(f"{where} is not JSON: {exc}") from None
    if status == 409:
        if not isinstance(doc, dict) or "decision" not in doc:
            raise MalformedResponseError(f"{where}: decision: missing field")
        doc = doc["decision"]
    try:
        decision = Decision.model_validate(doc)
    except ValidationError as exc:
        raise MalformedResponseError(f"{where} is not a decision: {format_validation_error(exc)}") from None
    decision.source = "server"
    return decision


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
