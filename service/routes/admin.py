"""``POST /admin/reload``: validate a front inside the reload directory, then serve it.

Order matters: the bearer token is checked (a dependency that reads headers only) before the body
is read, so an anonymous caller learns nothing from body errors and cannot make the service buffer
a large body. The rules on paths, sizes and time are in :mod:`paretoctl.service.reload`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.requests import Request

from paretoctl.service.deps import AdminDep, StateDep
from paretoctl.service.reload import REASON_TEXT, BodyTooLarge, ReloadRefused, confine, read_body
from paretoctl.service.responses import ErrorResponse, ReloadError, ReloadReason, ReloadRequest, ReloadResponse
from paretoctl.service.routes.policy import JSON
from paretoctl.service.schema import FrontLoadError, read_front_bytes
from paretoctl.service.state import LoadedFront, ServiceState, wrap_front
from paretoctl.service.validation import format_validation_error

log = logging.getLogger("paretoctl.service")

router = APIRouter()

_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {JSON: {"schema": ReloadRequest.model_json_schema()}},
    }
}


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Validate a front from the reload directory and swap it in (bearer token)",
    openapi_extra=_BODY_SCHEMA,
    responses={
        400: {"model": ReloadError | ErrorResponse,
              "description": "the new front was refused (ReloadError: the old one is still served), or the "
                             "request body is invalid (ErrorResponse)"},
        401: {"model": ErrorResponse, "description": "missing bearer token"},
        403: {"model": ErrorResponse, "description": "wrong token, or admin disabled (no token configured)"},
        409: {"model": ReloadError, "description": "refused: several workers each hold their own front"},
        413: {"model": ErrorResponse, "description": "request body too large"},
    },
)
async def admin_reload(request: Request, state: StateDep, _admin: AdminDep) -> Response:
    """Load ``path`` (inside the reload directory; default: the configured front), verify it, then serve it.

    On any refusal the previous front keeps being served.
    """
    workers = state.settings.workers
    if workers > 1:
        return reload_error("workers", f"reload is refused with {workers} workers: each worker holds its own "
                            "front and a reload would switch only one; restart the service instead", 409)
    try:
        raw = await read_body(request)
    except BodyTooLarge:
        return Response(ErrorResponse(detail="request body too large").model_dump_json(), status_code=413,
                        media_type=JSON)
    try:
        body = ReloadRequest.model_validate_json(raw) if raw.strip() else ReloadRequest()
    except ValidationError as exc:
        return Response(ErrorResponse(detail=f"body: {format_validation_error(exc)}").model_dump_json(),
                        status_code=400, media_type=JSON)
    async with state.reload_lock:
        try:
            loaded = await _load(state, body.path)
        except ReloadRefused as exc:
            state.metrics.reloads.labels(exc.reason).inc()
            log.warning("reload refused (%s): %s; still serving %s", exc.reason, exc.detail, _serving(state))
            return reload_error(exc.reason, exc.detail)
        except FrontLoadError as exc:
            state.metrics.reloads.labels(exc.reason).inc()
            log.warning("reload refused (%s): %s; still serving %s", exc.reason, exc.message, _serving(state))
            return reload_error(exc.reason, REASON_TEXT[exc.reason])
        previous = state.current.front.checksum if state.current else None
        state.swap(loaded)
        await run_in_threadpool(state.refresh_profiles)
        state.metrics.reloads.labels("ok").inc()
        log.info("reloaded front %s from %s (was %s)", loaded.front.checksum, loaded.path, previous)
        resp = ReloadResponse(path=loaded.path, checksum=loaded.front.checksum or "", previous_checksum=previous,
                              n_configs=len(loaded.front.configs),
                              model_identity=loaded.front.provenance.model_identity)
        return Response(resp.model_dump_json(), media_type=JSON)


async def _load(state: ServiceState, requested: str | None) -> LoadedFront:
    """Resolve, read (regular file, size cap) and verify the front, within ``reload_timeout_s``.

    Raises:
        ReloadRefused: path, size or time refused (the message names the path only).
        FrontLoadError: the loader refused the content.
    """
    settings = state.settings
    if requested is not None:
        path = confine(requested, settings.reload_dir)
    elif state.current is not None:  # the front being served: the configured path or an earlier confined one
        path = Path(state.current.path)
    elif settings.front_path is not None:  # chosen by the operator, so read without confinement
        path = settings.front_path
    else:
        raise ReloadRefused("path", "no path given and no front path configured")

    def work() -> LoadedFront:
        try:
            data = read_front_bytes(path, settings.max_front_bytes)
        except FrontLoadError as exc:  # messages name the path, never content
            reason: ReloadReason = "size" if "max_front_bytes" in exc.message else "path"
            raise ReloadRefused(reason, exc.message) from None
        return wrap_front(data, path)

    try:
        return await asyncio.wait_for(run_in_threadpool(work), timeout=settings.reload_timeout_s)
    except TimeoutError:
        raise ReloadRefused("timeout", f"reading and verifying {str(path)!r} took longer than "
                            f"{settings.reload_timeout_s:g} s (reload_timeout_s)") from None


def _serving(state: ServiceState) -> str:
    return (state.current.front.checksum or "?") if state.current else "nothing"


def reload_error(reason: ReloadReason, detail: str, status: int = 400) -> Response:
    """A :class:`ReloadError` response."""
    return Response(ReloadError(detail=detail, reason=reason).model_dump_json(), status_code=status,
                    media_type=JSON)
