"""``GET /policy``: the decision for an SNR and a latency budget.

:func:`answer_policy` is shared with ``paretoctl.service.fastpath``, which answers plainly valid
requests without FastAPI's parameter parsing; this route is the contract (what ``/openapi.json``
describes) and handles everything else.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from paretoctl.service.deps import (
    ChannelQuery,
    DeviceQuery,
    FrontDep,
    LatencyQuery,
    MinAccuracyQuery,
    SnrQuery,
    StateDep,
)
from paretoctl.service.fastpath import PolicyQuery
from paretoctl.service.policy import Decision, UnknownChannelError, select
from paretoctl.service.responses import ErrorResponse, InfeasibleResponse
from paretoctl.service.state import LoadedFront, ServiceState

JSON = "application/json"

router = APIRouter()

ERR_503: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "no front loaded"}}


@router.get(
    "/policy",
    response_model=Decision,
    summary="Choose a merging configuration (a fixed schedule or per-block thresholds) for an SNR and a "
            "latency budget",
    responses={
        404: {"model": ErrorResponse, "description": "unknown device profile or channel"},
        409: {"model": InfeasibleResponse,
              "description": "no configuration fits the budget (or min_accuracy); names the fastest latency"},
        **ERR_503,
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

    ``merging`` says what the device applies: ``proportions``, the fixed schedule ``r``, or
    ``thresholds``, the per-block similarity thresholds in ``thresholds`` (input-adaptive merging; its
    latency is modelled from its 95th-percentile per-image costs, its costs reported as means).
    Every decision carries ``front_checksum``: a client that sees it change knows the front was reloaded.
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
