"""``GET /front`` (the artifact, revalidated by ETag) and ``GET /devices`` (the profiles ``device=`` accepts)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from paretoctl.service.deps import FrontDep, StateDep
from paretoctl.service.responses import DevicesResponse
from paretoctl.service.routes.policy import ERR_503, JSON
from paretoctl.service.schema import FrontArtifact
from paretoctl.service.state import LoadedFront, etag_matches

router = APIRouter()


def front_headers(loaded: LoadedFront) -> dict[str, str]:
    """ETag, cache policy, and the model the front was built for (so a client can refuse a foreign front
    without parsing it)."""
    ident = loaded.front.provenance.model_identity
    return {"ETag": loaded.etag, "Cache-Control": "no-cache", "X-Paretoctl-Model": ident.name,
            "X-Paretoctl-Model-Architecture": ident.architecture_sha256,
            "X-Paretoctl-Model-Weights": ident.weights_sha256}


@router.get(
    "/front",
    summary="The front artifact (revalidate with If-None-Match)",
    response_model=FrontArtifact,
    responses={304: {"description": "the client's copy (If-None-Match) is current"}, **ERR_503},
)
async def get_front(request: Request, loaded: FrontDep) -> Response:
    """The artifact's exact bytes, with a strong ETag; 304 when ``If-None-Match`` matches.

    ``provenance.model_identity`` (also in the ``X-Paretoctl-Model*`` headers) names the model the
    front is for.
    """
    headers = front_headers(loaded)
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
