"""What one app instance holds: the loaded front (swapped atomically on reload) and the device profiles."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from paretoctl.service.latency import DeviceProfile, load_profiles
from paretoctl.service.metrics import ServiceMetrics
from paretoctl.service.schema import FrontArtifact, load_front, read_front_bytes
from paretoctl.service.settings import Settings

log = logging.getLogger("paretoctl.service")


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
    """Per-app resources, created by the factory and filled in ``lifespan``.

    ``current`` is replaced by one reference assignment, so a request sees either the old front or
    the new one, never a mix.
    """

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
                               len(loaded.front.configs), loaded.front.provenance.model_identity.name)


def etag_for(checksum: str) -> str:
    """Strong ETag for a front: its checksum, quoted (``"sha256-<hex>"``)."""
    return '"' + checksum.replace(":", "-") + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 ``If-None-Match`` (weak comparison): ``*`` or any listed tag equal to ``etag``."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def wrap_front(body: bytes, path: str | Path) -> LoadedFront:
    """Verify a front's bytes and wrap them for serving (blocking: CPU-bound parsing).

    Raises:
        FrontLoadError: the loader's refusal.
    """
    front = load_front(body)
    assert front.checksum is not None  # load_front always checks and sets it
    return LoadedFront(front=front, body=body, etag=etag_for(front.checksum), path=str(path),
                       loaded_at=datetime.now(UTC))


def read_front(path: str | Path, max_bytes: int | None = None) -> LoadedFront:
    """Read (a regular file, at most ``max_bytes``), verify and wrap a front file (blocking).

    Raises:
        FrontLoadError: the loader's refusal (an unreadable, non-regular or oversized file is ``malformed``).
    """
    return wrap_front(read_front_bytes(path, max_bytes), path)
