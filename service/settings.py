"""Service settings, from the environment (prefix ``PARETOCTL_``) or passed to ``create_app``.

Example:
    ``PARETOCTL_FRONT_PATH=/data/front.json PARETOCTL_ADMIN_TOKEN=s3cret paretoctl serve``
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SNR_MIN_DB = -50.0
SNR_MAX_DB = 100.0
LATENCY_MAX_MS = 1e6
"""Query bounds: beyond them a number is a client bug (units, sign), not a link condition."""


class Settings(BaseSettings):
    """Configuration of the policy service.

    Attributes:
        front_path: the front artifact to serve; ``None`` starts the service not ready (``/readyz``
            503) until an admin reload with a path.
        devices_dir: directory of device profile YAML files for the ``device=`` parameter.
        admin_token: bearer token for ``POST /admin/reload``; admin routes are disabled without one.
        reload_dir: if set, ``/admin/reload`` only accepts paths inside this directory, so a leaked
            token cannot be used to make the service read arbitrary files.
        log_level: the service's log level.
        fast_path: answer plainly valid ``GET /policy`` requests without FastAPI's request parsing
            (same answers, several times the throughput; see ``paretoctl.service.fastpath``).
    """

    model_config = SettingsConfigDict(env_prefix="PARETOCTL_", extra="ignore")

    front_path: Path | None = None
    devices_dir: Path = Path("configs/devices")
    admin_token: SecretStr | None = None
    reload_dir: Path | None = None
    log_level: str = Field("info", pattern="^(critical|error|warning|info|debug)$")
    fast_path: bool = True
