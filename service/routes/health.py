"""``GET /healthz`` (liveness), ``GET /readyz`` (a front is loaded) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from paretoctl.service.deps import StateDep
from paretoctl.service.metrics import CONTENT_TYPE_LATEST
from paretoctl.service.responses import HealthResponse, ReadyResponse
from paretoctl.service.routes.policy import JSON

router = APIRouter()


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process serves requests, front or not."""
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness",
            responses={503: {"model": ReadyResponse, "description": "no front loaded"}})
async def readyz(state: StateDep) -> Response:
    """200 when a front is loaded (ready to answer /policy), else 503 with the reason.

    The body names the front (checksum) and the model it was built for; the dashboard polls it to
    notice a reload or an outage.
    """
    current = state.current
    if current is None:
        body = ReadyResponse(status="not ready", detail=state.load_error or "no front path configured")
        return Response(body.model_dump_json(), status_code=503, media_type=JSON)
    front = current.front
    body = ReadyResponse(status="ready", schema_version=front.schema_version, front_checksum=front.checksum,
                         model_identity=front.provenance.model_identity, n_configs=len(front.configs),
                         loaded_at=current.loaded_at)
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition"}})
async def metrics(state: StateDep) -> Response:
    """Request counts by route and status, latency histogram, and the loaded front's identity."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
