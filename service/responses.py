"""Typed response bodies of the policy service, so that ``/openapi.json`` documents every status code."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from paretoctl.service.latency import DeviceProfile
from paretoctl.service.policy import Decision
from paretoctl.service.schema import ModelIdentity

ReloadReason = Literal["malformed", "version", "checksum", "path", "size", "timeout", "workers"]


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
    """Readiness: a front is loaded (200) or not (503, with why); names the model the front is for."""

    status: Literal["ready", "not ready"]
    schema_version: str | None = None
    front_checksum: str | None = None
    model_identity: ModelIdentity | None = None
    n_configs: int | None = None
    loaded_at: datetime | None = None
    detail: str | None = None


class DevicesResponse(BaseModel):
    """Device profiles known to the service."""

    front_profile: str | None = Field(None, description="the loaded front's own profile (the default)")
    devices: dict[str, DeviceProfile]
    invalid: dict[str, str] = Field(default_factory=dict, description="profile files that failed to load")


class ReloadRequest(BaseModel):
    """Optional body of ``POST /admin/reload``: a front path inside the reload directory.

    A relative path is taken relative to the reload directory; without a path the configured front
    path is read again.
    """

    model_config = {"extra": "forbid"}

    path: str | None = Field(None, min_length=1, max_length=4096)


class ReloadResponse(BaseModel):
    """A successful reload."""

    status: Literal["reloaded"] = "reloaded"
    path: str
    checksum: str
    previous_checksum: str | None
    n_configs: int
    model_identity: ModelIdentity


class ReloadError(BaseModel):
    """A refused reload; the previous front is still being served.

    Attributes:
        detail: what is wrong; names the path or the kind of problem, never the file's content
            (the service log has the loader's full message).
        reason: the loader's reason (``malformed``, ``version``, ``checksum``), or ``path`` (outside
            the reload directory, missing, not a regular file), ``size`` (over ``max_front_bytes``),
            ``timeout`` (over ``reload_timeout_s``), ``workers`` (409: several workers).
    """

    detail: str
    reason: ReloadReason
