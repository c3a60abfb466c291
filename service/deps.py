"""FastAPI dependencies as ``Annotated`` aliases (full-stack-template style), and the query parameters.

The dependencies are ``async def`` so that they run on the event loop instead of a thread pool:
none of them blocks.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from paretoctl.service.settings import LATENCY_MAX_MS, SNR_MAX_DB, SNR_MIN_DB
from paretoctl.service.state import LoadedFront, ServiceState


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
    """Bearer-token check: 401 without credentials, 403 with a wrong token or when admin is disabled.

    Reads headers only: a route that depends on it reads its body after the caller is known.
    """
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
