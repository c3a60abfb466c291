"""The edge SDK's front cache: the last front fetched from one server, on disk and in memory.

On disk: ``front-<hash of the server URL>.json`` (the server's exact bytes, so the checksum still
verifies) and ``.meta.json`` beside it (ETag, checksum, URL, fetch time), each written atomically
with :func:`paretoctl.service.fileio.atomic_write_bytes`, the front first. A cached front is verified
with :func:`load_front` when read, so a corrupted file is ignored, never trusted.

In memory: the last front this process received, with its ETag. When the cache directory cannot
be written (read-only file system, a file where the directory should be) the in-memory copy still
answers offline queries and still revalidates with its ETag, so an unwritable cache costs a
warning (once per cache) instead of a full download on every call.

Torch-free; blocking file I/O (small files), shared as is by the sync and async clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from paretoctl.service.fileio import atomic_write_bytes
from paretoctl.service.schema import DeviceProfile, FrontArtifact, FrontLoadError, load_front

__all__ = ["FrontCache", "default_cache_dir"]

log = logging.getLogger("paretoctl.client")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/paretoctl`` (``~/.cache/paretoctl``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paretoctl"


@dataclass(frozen=True)
class _Held:
    """The front in memory; ``mtime_ns`` of the disk copy it mirrors, None when it is only in memory."""

    front: FrontArtifact
    etag: str | None
    mtime_ns: int | None


class FrontCache:
    """The last front fetched from one server (see the module docstring).

    Args:
        cache_dir: the directory (created on the first store).
        base_url: the server; the file names hash it, so one directory serves several servers.
    """

    def __init__(self, cache_dir: str | Path, base_url: str) -> None:
        self.dir = Path(cache_dir).expanduser()
        key = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
        self.front_path = self.dir / f"front-{key}.json"
        self.meta_path = self.dir / f"front-{key}.meta.json"
        self.calibration_path = self.dir / f"front-{key}.calibration.json"
        self.base_url = base_url
        self._calibration: DeviceProfile | None = None
        self._held: _Held | None = None
        self._write_failed = False

    @property
    def memory_only(self) -> bool:
        """True when the last store could not be written to disk (the front lives in memory only)."""
        return self._held is not None and self._held.mtime_ns is None

    def load(self) -> tuple[FrontArtifact, str | None] | None:
        """``(front, etag)``, or None if there is no valid cache.

        A front held only in memory (its disk write failed) wins over the disk, which may hold an
        older one. Otherwise the disk copy is read, and memoised on its mtime.
        """
        held = self._held
        if held is not None and held.mtime_ns is None:
            return held.front, held.etag
        try:
            mtime = self.front_path.stat().st_mtime_ns
        except OSError:
            return None
        if held is not None and held.mtime_ns == mtime:
            return held.front, held.etag
        try:
            front = load_front(self.front_path)
        except FrontLoadError as exc:
            log.warning("ignoring cached front %s: %s", self.front_path, exc)
            return None
        self._held = _Held(front, self._etag_on_disk(front), mtime)
        return front, self._held.etag

    def _etag_on_disk(self, front: FrontArtifact) -> str | None:
        """The ETag recorded beside the front, if the record belongs to this very front."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(meta, dict) and meta.get("checksum") == front.checksum:
            etag = meta.get("etag")
            return etag if isinstance(etag, str) else None
        return None

    def store(self, body: bytes, etag: str | None) -> FrontArtifact:
        """Verify ``body``, keep it in memory and write it (then its metadata) to disk.

        A failed disk write is logged (a warning the first time, then at debug level) and leaves
        the front in memory only.

        Raises:
            FrontLoadError: the body does not verify; the cache is untouched.
        """
        front = load_front(body)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.front_path, body)
            meta = {"etag": etag, "checksum": front.checksum, "url": self.base_url,
                    "fetched_at": datetime.now(UTC).isoformat()}
            atomic_write_bytes(self.meta_path, json.dumps(meta).encode())
            mtime: int | None = self.front_path.stat().st_mtime_ns
        except OSError as exc:
            level = logging.DEBUG if self._write_failed else logging.WARNING
            log.log(level, "cannot write the front cache in %s (%s); keeping the front in memory only",
                    self.dir, exc)
            self._write_failed = True
            mtime = None
        self._held = _Held(front, etag, mtime)
        return front

    def store_calibration(self, profile: DeviceProfile) -> None:
        """Keep the device's own timings (a profile with ``measurements``) in memory and, if possible, on disk."""
        self._calibration = profile
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.calibration_path, profile.model_dump_json(indent=1).encode())
        except OSError as exc:
            log.warning("cannot write the calibration in %s (%s); keeping it in memory only", self.dir, exc)

    def calibration(self, front_checksum: str | None) -> DeviceProfile | None:
        """The device's own profile measured on the front with this checksum, or None.

        Timings of another front (an older one, before a sync) are not used: its config ids may
        name other schedules.
        """
        prof = self._calibration
        if prof is None:
            try:
                prof = DeviceProfile.model_validate_json(self.calibration_path.read_bytes())
            except (OSError, ValueError):
                return None
            self._calibration = prof
        if prof.measurements is None or prof.measurements.front_checksum != front_checksum:
            return None
        return prof
