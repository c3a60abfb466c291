"""Crash-safe file writing, shared by every writer of an artifact, archive, plan, checkpoint or cache.

One rule for all of them: the bytes go to a temporary file in the target's directory, are written in
full (a short write is an error, never a silently truncated file), flushed and fsynced, then
``os.replace``-d over the target, and the directory itself is fsynced so the rename survives a power
cut. A reader sees the old file or the new one, never half of one. On any failure the temporary file
is removed and the target is left as it was.

Permissions: the file gets ``0o666 & ~umask`` (``0644`` under the usual umask), as ``open()`` would
give it. ``tempfile.mkstemp`` would make it ``0600``, which a container user other than the owner
cannot read (a front mounted into the service image, for instance).

Nothing here imports torch: the SDK's cache and the service use it too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["append_bytes", "atomic_write_bytes", "atomic_write_text", "ensure_writable_dir", "fsync_dir"]


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter before Python 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; a write that stores nothing raises ``OSError``."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(f"short write: {len(view)} bytes could not be written")
        view = view[n:]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename or a new file inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` atomically (see the module docstring).

    Args:
        target: the file to create or replace; its directory must exist.
        data: the whole new content.
        mode: permission bits; default ``0o666 & ~umask``.

    Raises:
        OSError: the write failed (disk full, read-only directory, ...). ``target`` is unchanged.
    """
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    perm = (0o666 & ~_umask()) if mode is None else mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, perm)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, perm)  # O_CREAT applies the umask again; an explicit mode must win
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(target: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(target, text.encode("utf-8"), mode=mode)


def append_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Append ``data`` to ``target`` durably: all of it written and fsynced, or ``OSError``.

    A failed append is rolled back (the file is truncated to its old length), so an append-only log
    never keeps a partial record behind an error.
    """
    path = Path(target)
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)
    if not existed:
        fsync_dir(path.parent)


def ensure_writable_dir(directory: str | os.PathLike[str]) -> Path:
    """Create ``directory`` if needed and prove it is writable by writing and removing a probe file.

    Called before any expensive work, so that a read-only or full output directory fails in the first
    second rather than after an evaluation has been computed.

    Raises:
        OSError: with a message naming the directory.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{secrets.token_hex(4)}"
        atomic_write_bytes(probe, b"probe\n")
        probe.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"output directory {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path
