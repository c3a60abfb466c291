"""Writing and strictly reading front files.

:func:`dump_front` writes atomically through ``paretoctl.service.fileio`` (mode ``0644`` under the
usual umask, so a container user other than the file's owner can read a bind-mounted front).
:func:`load_front` refuses, with a :class:`FrontLoadError`, a document that is not a regular file,
larger than a cap, malformed, of an unknown schema version or whose checksum does not match.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from paretoctl.service.fileio import atomic_write_bytes
from paretoctl.service.schema.checksum import artifact_document, compute_checksum
from paretoctl.service.schema.errors import FrontLoadError
from paretoctl.service.schema.models import KNOWN_SCHEMA_VERSIONS, FrontArtifact
from paretoctl.service.validation import format_validation_error

_CHUNK = 1 << 20


def dump_front(artifact: FrontArtifact, path: str | os.PathLike[str]) -> FrontArtifact:
    """Write ``artifact`` to ``path`` atomically, computing its checksum.

    A reader (the service reloading, a device syncing) sees either the old file or the new one,
    never half of one.

    Returns:
        The artifact with its ``checksum`` set (as a reader will load it).
    """
    doc = artifact_document(artifact)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
    atomic_write_bytes(target, data)
    return artifact.model_copy(update={"checksum": doc["checksum"]})


def read_front_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The bytes of a front file, refusing what is not a regular file or is over ``max_bytes``.

    The file is opened non-blocking (a FIFO cannot stall the caller) and checked with ``fstat`` on
    the open descriptor (no race with a rename in between); at most ``max_bytes + 1`` bytes are
    read, so a file that grows while being read is still refused. Messages name the path, never
    the content.

    Raises:
        FrontLoadError: reason ``"malformed"``.
    """
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FrontLoadError("malformed", f"cannot read front file {name!r}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrontLoadError("malformed", f"front file {name!r} is not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise FrontLoadError("malformed", f"front file {name!r} is {st.st_size} bytes, over the "
                                 f"limit of {max_bytes} (max_front_bytes)")
        limit = max_bytes + 1 if max_bytes is not None else None
        chunks: list[bytes] = []
        total = 0
        while limit is None or total < limit:
            chunk = os.read(fd, _CHUNK if limit is None else min(_CHUNK, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise FrontLoadError("malformed", f"cannot read front file {name!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if max_bytes is not None and total > max_bytes:
        raise FrontLoadError("malformed", f"front file {name!r} is over the limit of {max_bytes} bytes "
                             "(max_front_bytes)")
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name} (NaN/Infinity are not allowed)")


def parse_front_document(data: bytes | str) -> dict[str, Any]:
    """Parse JSON bytes into a dict, refusing NaN/Infinity and non-object documents.

    Raises:
        FrontLoadError: reason ``"malformed"``.
    """
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrontLoadError("malformed", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FrontLoadError("malformed", f"top level must be a JSON object, got {type(doc).__name__}")
    return doc


def front_from_document(doc: Mapping[str, Any]) -> FrontArtifact:
    """Check version, checksum and schema of a parsed document, in that order.

    The version is checked first (a newer format may checksum differently), then the checksum (so a
    hand-edited value is reported as tampering even if it also breaks an invariant), then the
    structure and invariants.

    Raises:
        FrontLoadError: with the reason and the offending field.
    """
    version = doc.get("schema_version")
    if version is None:
        raise FrontLoadError("malformed", "missing field 'schema_version'")
    if version not in KNOWN_SCHEMA_VERSIONS:
        raise FrontLoadError("version", f"schema_version {version!r} is not supported "
                             f"(this code reads {sorted(KNOWN_SCHEMA_VERSIONS)})")
    recorded = doc.get("checksum")
    if not isinstance(recorded, str) or not recorded:
        raise FrontLoadError("malformed", "missing field 'checksum'")
    try:
        actual = compute_checksum(doc)
    except ValueError as exc:
        raise FrontLoadError("malformed", f"cannot canonicalise document: {exc}") from None
    if recorded != actual:
        raise FrontLoadError("checksum", f"checksum mismatch: recorded {recorded}, content hashes to "
                             f"{actual} (the file was modified or corrupted)")
    try:
        return FrontArtifact.model_validate(doc)
    except ValidationError as exc:
        raise FrontLoadError("malformed", format_validation_error(exc)) from None


def load_front(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
               max_bytes: int | None = None) -> FrontArtifact:
    """Load and verify a front artifact.

    Args:
        source: a path to ``front.json`` (``str`` or ``PathLike``), or the document's bytes.
        max_bytes: refuse a document larger than this (``None``: no cap).

    Raises:
        FrontLoadError: ``reason`` ``"malformed"`` (unreadable or non-regular file, over the cap,
            invalid JSON, missing or invalid field, broken invariant), ``"version"`` or ``"checksum"``.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if max_bytes is not None and len(data) > max_bytes:
            raise FrontLoadError("malformed", f"front document is {len(data)} bytes, over the limit of "
                                 f"{max_bytes} (max_front_bytes)")
    else:
        data = read_front_bytes(source, max_bytes)
    return front_from_document(parse_front_document(data))
