"""Service settings: from the environment (prefix ``PARETOCTL_``) or built and passed to ``create_app``.

Every field can be set as ``PARETOCTL_<FIELD>`` (``PARETOCTL_FRONT_PATH``, ``PARETOCTL_RELOAD_DIR``,
...); ``docs/service.md`` has the table. ``paretoctl serve`` builds a :class:`Settings` from its
options and passes it on; it never writes the process environment.

Example:
    ``PARETOCTL_FRONT_PATH=/data/front.json PARETOCTL_RELOAD_DIR=/data PARETOCTL_ADMIN_TOKEN=s3cret paretoctl serve``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The one copy of the query bounds lives with the policy (the SDK has no pydantic-settings); re-exported.
from paretoctl.service.policy import LATENCY_MAX_MS as LATENCY_MAX_MS
from paretoctl.service.policy import SNR_MAX_DB as SNR_MAX_DB
from paretoctl.service.policy import SNR_MIN_DB as SNR_MIN_DB

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug", "trace")

DEFAULT_MAX_FRONT_BYTES = 64 * 1024 * 1024
"""64 MiB: a front of a thousand configurations on a fine grid is a few MB; a file far beyond is not a front."""


class Settings(BaseSettings):
    """Configuration of the policy service.

    Attributes:
        front_path: the front artifact to serve; ``None`` starts the service not ready (``/readyz``
            503) until an admin reload with a path.
        devices_dir: directory of device profile YAML files for the ``device=`` parameter.
        admin_token: bearer token for ``POST /admin/reload``; admin routes are disabled without one.
        reload_dir: the only directory ``/admin/reload`` reads from (symlinks resolved); required
            when ``admin_token`` is set, so a leaked token cannot make the service open other files.
        max_front_bytes: fronts larger than this are refused, at startup and on reload.
        reload_timeout_s: a reload that takes longer to read and verify the file is refused.
        workers: uvicorn worker processes serving this app. With more than one, each holds its own
            front, so ``/admin/reload`` is refused (409) rather than switching one worker only.
        log_level: the service's log level (any case on input; stored lower case).
        fast_path: answer plainly valid ``GET /policy`` requests without FastAPI's request parsing
            (same answers, several times the throughput; see ``paretoctl.service.fastpath``).
    """

    model_config = SettingsConfigDict(env_prefix="PARETOCTL_", extra="ignore")

    front_path: Path | None = None
    devices_dir: Path = Path("configs/devices")
    admin_token: SecretStr | None = None
    reload_dir: Path | None = None
    max_front_bytes: int = Field(DEFAULT_MAX_FRONT_BYTES, ge=1)
    reload_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    workers: int = Field(1, ge=1)
    log_level: LogLevel = "info"
    fast_path: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        """``INFO``, ``Info`` and ``info`` are the same level."""
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _reload_needs_a_directory(self) -> Settings:
        token = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        if token and self.reload_dir is None:
            raise ValueError("reload_dir: required when admin_token is set (the only directory "
                             "/admin/reload may read fronts from; PARETOCTL_RELOAD_DIR)")
        return self

    @property
    def admin_enabled(self) -> bool:
        """A non-empty admin token is configured."""
        return self.admin_token is not None and bool(self.admin_token.get_secret_value())

    def environment(self) -> dict[str, str]:
        """These settings as ``PARETOCTL_*`` variables, for worker processes that build their own app.

        ``Settings()`` in a process given exactly this environment equals ``self``.
        """
        env = {
            "PARETOCTL_DEVICES_DIR": str(self.devices_dir),
            "PARETOCTL_MAX_FRONT_BYTES": str(self.max_front_bytes),
            "PARETOCTL_RELOAD_TIMEOUT_S": repr(self.reload_timeout_s),
            "PARETOCTL_WORKERS": str(self.workers),
            "PARETOCTL_LOG_LEVEL": self.log_level,
            "PARETOCTL_FAST_PATH": "true" if self.fast_path else "false",
        }
        if self.front_path is not None:
            env["PARETOCTL_FRONT_PATH"] = str(self.front_path)
        if self.reload_dir is not None:
            env["PARETOCTL_RELOAD_DIR"] = str(self.reload_dir)
        if self.admin_token is not None:
            env["PARETOCTL_ADMIN_TOKEN"] = self.admin_token.get_secret_value()
        return env
