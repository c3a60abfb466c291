"""The policy service: a FastAPI app built by :func:`create_app`.

Routes (all JSON unless noted; the OpenAPI document at ``/openapi.json`` is the contract):

* ``GET /policy?snr=&latency=[&min_accuracy=&device=&channel=]``: 200 :class:`Decision`; 409 when
  nothing fits (body names the fastest achievable latency); 404 unknown device or channel; 422 bad
  numbers; 503 no front loaded.
* ``GET /front``: the artifact exactly as loaded, with a strong ``ETag`` derived from its checksum;
  ``If-None-Match`` answers 304.
* ``GET /devices``: the device profiles the ``device=`` parameter accepts.
* ``GET /healthz`` (process up), ``GET /readyz`` (200 only with a front loaded, else 503).
* ``GET /metrics``: Prometheus text.
* ``POST /admin/reload``: bearer-token protected; validates the new front before swapping it in,
  and keeps serving the old one if the new one is refused.

The loaded front is held in one immutable :class:`LoadedFront` that a reload replaces with a single
assignment, so a request sees either the old front or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from paretoctl.service.fastpath import PolicyFastPath, PolicyQuery
from paretoctl.service.latency import DeviceProfile, load_profiles
from paretoctl.service.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, ServiceMetrics
from paretoctl.service.policy import Decision, UnknownChannelError, select
from paretoctl.service.schema import FrontArtifact, FrontLoadError, load_front
from paretoctl.service.settings import LATENCY_MAX_MS, SNR_MAX_DB, SNR_MIN_DB, Settings

log = logging.getLogger("paretoctl.service")

JSON = "application/json"


# ---------------------------------------------------------------------------------------------
# Response models: typed so that /openapi.json documents every status code a client can get.


class ErrorResponse(BaseModel):
    """A 4xx/5xx answer with a human-readable ``detail``."""

    detail: str


class InfeasibleResponse(BaseModel):
    """409: no configuration satisfies the request.

    Attributes:
        detail: what did not fit.
        fastest_latency_ms: the lowest latency any configuration achieves under the profile; a
            budget at or above it is feasible (absent ``min_accuracy``).
        best_accuracy_within_budget: best validation accuracy within the budget (None if nothing fits).
        decision: the full infeasible decision.
    """

    detail: str
    fastest_latency_ms: float
    best_accuracy_within_budget: float | None = None
    decision: Decision


class HealthResponse(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Readiness: a front is loaded (200) or not (503, with why)."""

    status: Literal["ready", "not ready"]
    schema_version: str | None = None
    front_checksum: str | None = None
    n_configs: int | None = None
    loaded_at: datetime | None = None
    detail: str | None = None


class DevicesResponse(BaseModel):
    """Device profiles known to the service."""

    front_profile: str | None = Field(None, description="the loaded front's own profile (the default)")
    devices: dict[str, DeviceProfile]
    invalid: dict[str, str] = Field(default_factory=dict, description="profile files that failed to load")


class ReloadRequest(BaseModel):
    """Optional body of ``POST /admin/reload``: a new front path (default: the current path)."""

    path: str | None = Field(None, max_length=4096)


class ReloadResponse(BaseModel):
    """A successful reload."""

    status: Literal["reloaded"] = "reloaded"
    path: str
    checksum: str
    previous_checksum: str | None
    n_configs: int


class ReloadError(BaseModel):
    """A refused reload; the previous front is still being served.

    Attributes:
        detail: what is wrong with the new front.
        reason: the loader's reason, or ``path`` when no usable path was given.
    """

    detail: str
    reason: Literal["malformed", "version", "checksum", "path"]


# ---------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class LoadedFront:
    """A front as served: the parsed artifact, the exact bytes and the ETag derived from its checksum."""

    front: FrontArtifact
    body: bytes
    etag: str
    path: str
    loaded_at: datetime


@dataclass
class ServiceState:
    """Per-app resources, created by the factory and filled in ``lifespan``."""

    settings: Settings
    metrics: ServiceMetrics
    current: LoadedFront | None = None
    load_error: str | None = None
    profiles: dict[str, DeviceProfile] = field(default_factory=dict)
    profile_errors: dict[str, str] = field(default_factory=dict)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def refresh_profiles(self) -> None:
        """(Re)read the device profiles; bad files are reported, not fatal."""
        self.profiles, self.profile_errors = load_profiles(self.settings.devices_dir)
        for name, err in self.profile_errors.items():
            log.warning("device profile %s ignored: %s", name, err)

    def swap(self, loaded: LoadedFront) -> None:
        """Serve ``loaded`` from now on (one reference assignment: atomic for readers)."""
        self.current = loaded
        self.load_error = None
        self.metrics.set_front(loaded.front.schema_version, loaded.front.checksum or "", loaded.path,
                               len(loaded.front.configs))


def etag_for(checksum: str) -> str:
    """Strong ETag for a front: its checksum, quoted (``"sha256-<hex>"``)."""
    return '"' + checksum.replace(":", "-") + '"'


def read_front(path: str | Path) -> LoadedFront:
    """Read, verify and wrap a front file (blocking; run it in a thread from async code).

    Raises:
        FrontLoadError: the loader's refusal (an unreadable file is ``malformed``).
    """
    p = Path(path)
    try:
        body = p.read_bytes()
    except OSError as exc:
        raise FrontLoadError("malformed", f"cannot read front file {str(p)!r}: {exc.strerror or exc}") from None
    front = load_front(body)
    assert front.checksum is not None  # load_front always checks and sets it
    return LoadedFront(front=front, body=body, etag=etag_for(front.checksum), path=str(p),
                       loaded_at=datetime.now(UTC))


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 ``If-None-Match`` (weak comparison): ``*`` or any listed tag equal to ``etag``."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Dependencies (Annotated aliases, FastAPI full-stack-template style). ``async def`` so that they
# run on the event loop instead of a thread pool: none of them blocks.


async def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    state: ServiceState = request.app.state.paretoctl
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_loaded_front(state: StateDep) -> LoadedFront:
    """The front being served, or 503 when none is loaded."""
    current = state.current
    if current is None:
        raise HTTPException(503, detail=f"no front loaded: {state.load_error or 'no front path configured'}")
    return current


FrontDep = Annotated[LoadedFront, Depends(get_loaded_front)]

_bearer = HTTPBearer(auto_error=False, description="the service's admin token (PARETOCTL_ADMIN_TOKEN)")


async def require_admin(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer-token check: 401 without credentials, 403 with a wrong token or when admin is disabled."""
    token = state.settings.admin_token
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        raise HTTPException(403, detail="admin endpoints are disabled (no admin token configured)")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(403, detail="invalid admin token")


AdminDep = Annotated[None, Depends(require_admin)]

SnrQuery = Annotated[float, Query(
    ge=SNR_MIN_DB, le=SNR_MAX_DB, allow_inf_nan=False,
    description=f"link SNR (Es/N0) in dB, in [{SNR_MIN_DB:g}, {SNR_MAX_DB:g}]")]
LatencyQuery = Annotated[float, Query(
    gt=0, le=LATENCY_MAX_MS, allow_inf_nan=False,
    description=f"end-to-end latency budget in ms, in (0, {LATENCY_MAX_MS:g}]")]
MinAccuracyQuery = Annotated[float | None, Query(
    ge=0, le=1, allow_inf_nan=False, description="minimum (validation) accuracy in [0, 1]")]
DeviceQuery = Annotated[str | None, Query(
    min_length=1, max_length=64, description="device profile name (see GET /devices); default: the front's")]
ChannelQuery = Annotated[str | None, Query(
    min_length=1, max_length=32, description="channel kind; default: the front's first channel")]


# ---------------------------------------------------------------------------------------------
# Routes

router = APIRouter()

_ERR_503: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "no front loaded"}}


@router.get(
    "/policy",
    response_model=Decision,
    summary="Choose a merge schedule for an SNR and a latency budget",
    responses={
        404: {"model": ErrorResponse, "description": "unknown device profile or channel"},
        409: {"model": InfeasibleResponse,
              "description": "no configuration fits the budget (or min_accuracy); names the fastest latency"},
        **_ERR_503,
    },
)
async def get_policy(
    state: StateDep,
    loaded: FrontDep,
    snr: SnrQuery,
    latency: LatencyQuery,
    min_accuracy: MinAccuracyQuery = None,
    device: DeviceQuery = None,
    channel: ChannelQuery = None,
) -> Response:
    """The most accurate configuration within ``latency`` ms at ``snr`` dB (see ``paretoctl.service.policy``).

    Plainly valid requests are usually answered by :class:`paretoctl.service.fastpath.PolicyFastPath` with the
    same :func:`answer_policy`; this route is the contract and handles everything else.
    """
    query = PolicyQuery(snr=snr, latency=latency, min_accuracy=min_accuracy, device=device, channel=channel)
    status, body = answer_policy(state, loaded, query)
    return Response(body, status_code=status, media_type=JSON)


def answer_policy(state: ServiceState, loaded: LoadedFront, query: PolicyQuery) -> tuple[int, bytes]:
    """``(status, JSON body)`` of ``GET /policy`` for validated parameters (shared by both paths)."""
    profile = None
    if query.device is not None:
        profile = state.profiles.get(query.device)
        if profile is None:
            why = state.profile_errors.get(query.device)
            msg = (f"device profile {query.device!r} is invalid: {why}" if why else
                   f"unknown device {query.device!r}; known: {sorted(state.profiles)}")
            return 404, ErrorResponse(detail=msg).model_dump_json().encode()
    try:
        decision = select(loaded.front, query.snr, query.latency, channel=query.channel,
                          min_accuracy=query.min_accuracy, profile=profile)
    except UnknownChannelError as exc:
        return 404, ErrorResponse(detail=str(exc)).model_dump_json().encode()
    decision.source = "server"
    state.metrics.count_decision(decision.feasible, decision.extrapolated)
    if not decision.feasible:
        body = InfeasibleResponse.model_construct(
            detail=decision.reason or "infeasible", fastest_latency_ms=decision.fastest_latency_ms,
            best_accuracy_within_budget=decision.best_accuracy_within_budget, decision=decision)
        return 409, body.model_dump_json().encode()
    return 200, decision.model_dump_json().encode()


@router.get(
    "/front",
    summary="The front artifact (revalidate with If-None-Match)",
    response_model=FrontArtifact,
    responses={304: {"description": "the client's copy (If-None-Match) is current"}, **_ERR_503},
)
async def get_front(request: Request, loaded: FrontDep) -> Response:
    """The artifact's exact bytes, with a strong ETag; 304 when ``If-None-Match`` matches."""
    headers = {"ETag": loaded.etag, "Cache-Control": "no-cache"}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag_matches(inm, loaded.etag):
        return Response(status_code=304, headers=headers)
    return Response(loaded.body, media_type=JSON, headers=headers)


@router.get("/devices", response_model=DevicesResponse, summary="Device profiles for the device= parameter")
async def get_devices(state: StateDep) -> DevicesResponse:
    """Profiles loaded from ``devices_dir``, plus the loaded front's own profile name."""
    current = state.current
    return DevicesResponse(front_profile=current.front.device_profile.name if current else None,
                           devices=state.profiles, invalid=state.profile_errors)


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process serves requests, front or not."""
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness",
            responses={503: {"model": ReadyResponse, "description": "no front loaded"}})
async def readyz(state: StateDep) -> Response:
    """200 when a front is loaded (ready to answer /policy), else 503 with the reason."""
    current = state.current
    if current is None:
        body = ReadyResponse(status="not ready", detail=state.load_error or "no front path configured")
        return Response(body.model_dump_json(), status_code=503, media_type=JSON)
    body = ReadyResponse(status="ready", schema_version=current.front.schema_version,
                         front_checksum=current.front.checksum, n_configs=len(current.front.configs),
                         loaded_at=current.loaded_at)
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition"}})
async def metrics(state: StateDep) -> Response:
    """Request counts by route and status, latency histogram, and the loaded front's identity."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Validate a front and swap it in (bearer token)",
    responses={
        400: {"model": ReloadError | ErrorResponse,
              "description": "the new front was refused (ReloadError: the old one is still served), or the "
                             "request body could not be read (ErrorResponse)"},
        401: {"model": ErrorResponse, "description": "missing bearer token"},
        403: {"model": ErrorResponse, "description": "wrong token, or admin disabled (no token configured)"},
    },
)
async def admin_reload(
    state: StateDep, _admin: AdminDep, body: Annotated[ReloadRequest | None, Body()] = None
) -> Response:
    """Load ``body.path`` (or the current path), verify it, then serve it; on refusal keep the old front."""
    requested = body.path if body is not None else None
    async with state.reload_lock:
        path = requested or (state.current.path if state.current else None) or (
            str(state.settings.front_path) if state.settings.front_path else None)
        if path is None:
            return _reload_error("path", "no path given and no front path configured")
        allowed = state.settings.reload_dir
        if allowed is not None and not Path(path).resolve().is_relative_to(allowed.resolve()):
            return _reload_error("path", f"path {path!r} is outside the allowed reload directory")
        try:
            loaded = await run_in_threadpool(read_front, path)
        except FrontLoadError as exc:
            state.metrics.reloads.labels(exc.reason).inc()
            log.warning("reload of %s refused (%s): %s; still serving %s", path, exc.reason, exc.message,
                        state.current.front.checksum if state.current else "nothing")
            return _reload_error(exc.reason, exc.message)
        previous = state.current.front.checksum if state.current else None
        state.swap(loaded)
        await run_in_threadpool(state.refresh_profiles)
        state.metrics.reloads.labels("ok").inc()
        log.info("reloaded front %s from %s (was %s)", loaded.front.checksum, path, previous)
        resp = ReloadResponse(path=path, checksum=loaded.front.checksum or "", previous_checksum=previous,
                              n_configs=len(loaded.front.configs))
        return Response(resp.model_dump_json(), media_type=JSON)


def _reload_error(reason: Literal["malformed", "version", "checksum", "path"], detail: str) -> Response:
    return Response(ReloadError(detail=detail, reason=reason).model_dump_json(), status_code=400,
                    media_type=JSON)


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


# ---------------------------------------------------------------------------------------------
# Factory


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the device profiles and the front at startup; a bad front leaves the app not ready."""
    state: ServiceState = app.state.paretoctl
    await run_in_threadpool(state.refresh_profiles)
    path = state.settings.front_path
    if path is not None:
        try:
            state.swap(await run_in_threadpool(read_front, path))
            state.metrics.reloads.labels("ok").inc()
            log.info("serving front %s from %s", state.current.front.checksum if state.current else "", path)
        except FrontLoadError as exc:
            state.load_error = f"front {str(path)!r} refused ({exc.reason}): {exc.message}"
            state.metrics.reloads.labels(exc.reason).inc()
            log.error("%s; /readyz will answer 503", state.load_error)
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; default: read from the environment (``PARETOCTL_*``).

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
    app.include_router(router)
    app.include_router(dashboard_router)
    if settings.fast_path:

        async def fast_answer(query: PolicyQuery) -> tuple[int, bytes] | None:
            loaded = state.current
            return None if loaded is None else answer_policy(state, loaded, query)

        route = next(r for r in router.routes if getattr(r, "path", None) == "/policy")
        app.add_middleware(PolicyFastPath, answer=fast_answer, route=route)
    app.add_middleware(MetricsMiddleware, metrics=metrics_)  # added last: outermost, so it sees both paths
    return app


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paretoctl")
    except PackageNotFoundError:
        return "0+unknown"
