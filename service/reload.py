"""The rules of ``POST /admin/reload``: which paths may be read, how much body is read, and with what limits.

A token holder must not be able to make the service open arbitrary files (their error messages
would reveal existence and JSON values; a FIFO would block a worker; ``/dev/zero`` would exhaust
memory). So a reload:

* reads only inside ``Settings.reload_dir``: the requested path (relative paths are taken relative
  to it) is resolved, symlinks included, and refused unless it lies inside the resolved directory;
  the check is made before the file is touched, so a refusal says nothing about files outside;
* reads only regular files of at most ``max_front_bytes`` (``schema.read_front_bytes``), within
  ``reload_timeout_s``;
* answers with the loader's *reason* and a fixed sentence, never the loader's message, which can
  quote values from the file (the service log has the full message).
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request

from paretoctl.service.responses import ReloadReason

MAX_BODY_BYTES = 16 * 1024
"""The reload body is ``{"path": "..."}``; anything longer is refused unread (413)."""

REASON_TEXT: dict[str, str] = {
    "malformed": "the file is not a valid front artifact (JSON, a field or an invariant); the service log "
                 "names the problem",
    "version": "the file's schema version is not one this service reads",
    "checksum": "the file's checksum does not match its content (modified or corrupted)",
}


class ReloadRefused(Exception):
    """A reload refused before the file was parsed; ``detail`` names the path, never content."""

    def __init__(self, reason: ReloadReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: ReloadReason = reason
        self.detail = detail


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES`."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read in chunks and abandoned as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def confine(requested: str, reload_dir: Path | None) -> Path:
    """The real path of ``requested`` if it lies inside ``reload_dir`` (symlinks resolved), else refuse.

    Args:
        requested: the path from the request; relative paths are relative to ``reload_dir``.
        reload_dir: the only directory reloads may read from (``None``: every path is refused).

    Raises:
        ReloadRefused: reason ``path``.
    """
    if reload_dir is None:
        raise ReloadRefused("path", "no reload directory is configured (PARETOCTL_RELOAD_DIR)")
    if "\x00" in requested:
        raise ReloadRefused("path", "path contains a NUL byte")
    base = Path(os.path.realpath(reload_dir))
    candidate = Path(requested)
    if not candidate.is_absolute():
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))
    if real == base or not real.is_relative_to(base):
        raise ReloadRefused("path", f"path {requested!r} is outside the reload directory {str(reload_dir)!r}")
    return real
