"""Prometheus metrics of one app instance, and the ASGI middleware that records them.

Each app gets its own ``CollectorRegistry`` so that several apps in one process (tests, a factory
called twice) never collide on metric names. Requests are labelled by *route template*
(``/policy``), never by raw path, so that a scanner cannot blow up the label cardinality; paths
that match no route are counted under ``<unmatched>``.

With several uvicorn workers each worker exposes its own counters (no multiprocess mode): scrape
them per worker or run one worker per container.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "ServiceMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; the policy answers in well under a millisecond, so the low end is fine-grained."""


class ServiceMetrics:
    """The service's metrics, in a registry of their own.

    Attributes:
        registry: the per-app registry served by ``/metrics``.
        requests: ``paretoctl_http_requests_total{route, method, status}``.
        latency: ``paretoctl_http_request_duration_seconds{route}``.
        front_info: ``paretoctl_front_info{schema_version, checksum, path, model}`` of the loaded front.
        front_loaded: 1 when a front is loaded.
        front_configs: configurations on the loaded front.
        reloads: ``paretoctl_front_reloads_total{result}``, result ``ok`` or the loader's reason.
        decisions: ``paretoctl_policy_decisions_total{feasible, extrapolated}``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("paretoctl_http_requests", "HTTP requests by route template and status",
                                ("route", "method", "status"), registry=r)
        self.latency = Histogram("paretoctl_http_request_duration_seconds",
                                 "Time from request to the end of the response", ("route",),
                                 buckets=_BUCKETS, registry=r)
        self.front_info = Info("paretoctl_front", "The loaded front artifact", registry=r)
        self.front_loaded = Gauge("paretoctl_front_loaded", "1 when a front is loaded", registry=r)
        self.front_configs = Gauge("paretoctl_front_configs", "Configurations on the loaded front",
                                   registry=r)
        self.reloads = Counter("paretoctl_front_reloads", "Front (re)loads by result", ("result",),
                               registry=r)
        self.decisions = Counter("paretoctl_policy_decisions", "Policy decisions served",
                                 ("feasible", "extrapolated"), registry=r)
        self._decision_children: dict[tuple[bool, bool], Any] = {}

    def count_decision(self, feasible: bool, extrapolated: bool) -> None:
        """Count one decision (label children cached: ``labels()`` costs more than ``inc()``)."""
        child = self._decision_children.get((feasible, extrapolated))
        if child is None:
            child = self.decisions.labels(str(feasible).lower(), str(extrapolated).lower())
            self._decision_children[(feasible, extrapolated)] = child
        child.inc()

    def set_front(self, schema_version: str, checksum: str, path: str, n_configs: int, model: str = "") -> None:
        """Record the front now being served (``model``: the model it was built for)."""
        self.front_info.info({"schema_version": schema_version, "checksum": checksum, "path": path, "model": model})
        self.front_loaded.set(1)
        self.front_configs.set(n_configs)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than ``BaseHTTPMiddleware``) counting requests and timing them."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self._observe(template, scope.get("method", ""), status, time.perf_counter() - start)

    def _observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Increment the counters; label children are cached (``labels()`` is the costly part)."""
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metrics.requests.labels(route, method, str(status))
        child.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.metrics.latency.labels(route)
        timer.observe(seconds)
