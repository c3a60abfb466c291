"""The policy service: the FastAPI app built by :func:`create_app`.

Routes (all JSON unless noted; the OpenAPI document at ``/openapi.json`` is the contract), each in
its own module under ``paretoctl.service.routes``:

* ``GET /policy?snr=&latency=[&min_accuracy=&device=&channel=]``: 200 ``Decision``; 409 when
  nothing fits; 404 unknown device or channel; 422 bad numbers; 503 no front loaded.
* ``GET /front``: the artifact exactly as loaded, with a strong ``ETag``; ``If-None-Match`` answers 304.
* ``GET /devices``; ``GET /healthz``, ``GET /readyz``; ``GET /metrics``.
* ``POST /admin/reload``: bearer token, then a front from the reload directory (see
  ``paretoctl.service.reload``); the old front stays if the new one is refused.
* ``GET /``: the dashboard (``paretoctl.service.dashboard``).

Layout (FastAPI full-stack-template habits): :mod:`.settings` (pydantic-settings), :mod:`.state`
(per-app resources, filled in :func:`lifespan`), :mod:`.deps` (``Annotated`` dependencies),
:mod:`.responses` (typed bodies), :mod:`.routes` (one module per job).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from paretoctl.service.deps import get_state
from paretoctl.service.fastpath import PolicyFastPath, PolicyQuery
from paretoctl.service.metrics import MetricsMiddleware, ServiceMetrics
from paretoctl.service.routes import routers
from paretoctl.service.routes.policy import answer_policy
from paretoctl.service.routes.policy import router as policy_router
from paretoctl.service.schema import FrontLoadError
from paretoctl.service.settings import Settings
from paretoctl.service.state import LoadedFront, ServiceState, read_front

__all__ = ["LoadedFront", "ServiceState", "answer_policy", "create_app", "get_state", "lifespan"]

log = logging.getLogger("paretoctl.service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the device profiles and the front at startup; a bad or oversized front leaves the app not ready."""
    state: ServiceState = app.state.paretoctl
    await run_in_threadpool(state.refresh_profiles)
    path = state.settings.front_path
    if path is not None:
        try:
            state.swap(await run_in_threadpool(read_front, path, state.settings.max_front_bytes))
            state.metrics.reloads.labels("ok").inc()
            log.info("serving front %s from %s", state.current.front.checksum if state.current else "", path)
        except FrontLoadError as exc:
            state.load_error = f"front {str(path)!r} refused ({exc.reason}): {exc.message}"
            state.metrics.reloads.labels(exc.reason).inc()
            log.error("%s; /readyz will answer 503", state.load_error)
    yield


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, with each message prefixed by the parameter it concerns.

    The shape stays FastAPI's documented ``HTTPValidationError`` (so the OpenAPI contract holds);
    only ``msg`` gains the name, so a human reading one line knows which parameter is wrong.
    """
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[-1] if loc and loc[0] in ("query", "path", "header") else ".".join(loc[1:]) or "body"
        errors.append({"loc": list(err.get("loc", ())), "msg": f"{name}: {err.get('msg', '')}",
                       "type": err.get("type", "value_error")})
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; default: read from the environment (``PARETOCTL_*``), which is how
            each uvicorn worker process builds its app.

    Example:
        ``uvicorn --factory paretoctl.service.app:create_app``
    """
    from paretoctl.service.dashboard import router as dashboard_router

    settings = settings if settings is not None else Settings()
    metrics_ = ServiceMetrics()
    app = FastAPI(
        title="paretoctl policy service",
        summary="Pareto-optimal token-merging schedules for edge ViTs over noisy links",
        version=_package_version(),
        lifespan=lifespan,
    )
    state = ServiceState(settings=settings, metrics=metrics_)
    app.state.paretoctl = state
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    for router in routers:
        app.include_router(router)
    app.include_router(dashboard_router)
    if settings.fast_path:

        async def fast_answer(query: PolicyQuery) -> tuple[int, bytes] | None:
            loaded = state.current
            return None if loaded is None else answer_policy(state, loaded, query)

        route = next(r for r in policy_router.routes if getattr(r, "path", None) == "/policy")
        app.add_middleware(PolicyFastPath, answer=fast_answer, route=route)
    app.add_middleware(MetricsMiddleware, metrics=metrics_)  # added last: outermost, so it sees both paths
    return app


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paretoctl")
    except PackageNotFoundError:
        return "0+unknown"
