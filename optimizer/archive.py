"""The evaluation archive: every evaluation, one JSON record a line, appended so that a kill loses nothing.

Each record is written with a single ``write`` on an ``O_APPEND`` descriptor and then ``fsync``-ed, so a
line is either whole or (if the process died inside the write) a torn tail without its newline.
Loading drops such a torn tail and truncates the file back to the last whole line, so a resumed build
re-runs exactly the evaluations that were not recorded, and none twice.

The plan file records the candidates of a batch before they are evaluated: on resume, the unfinished
batch is taken from the plan rather than re-generated, so no model fit has to be repeated bit for bit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ArchiveError(RuntimeError):
    """The archive is unreadable for a reason other than a torn last line."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class JsonlArchive:
    """An append-only JSON-lines file of records.

    Example:
        >>> arch = JsonlArchive(Path("build/archive.jsonl"))
        >>> arch.append({"eval_id": 0, "r": [0, 0]})
        >>> [rec["eval_id"] for rec in arch]
        [0]
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: list[dict[str, Any]] = self._load()

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        good_end = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn tail from a kill inside write(): dropped below
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ArchiveError(
                    f"{self.path}: line {len(records) + 1} is not valid JSON ({err.msg}); "
                    "the archive was edited or corrupted"
                ) from None
            if not isinstance(rec, dict):
                raise ArchiveError(f"{self.path}: line {len(records) + 1} is not a JSON object")
            records.append(rec)
            good_end += len(line)
        if good_end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Durably append one record."""
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._records.append(record)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def where(self, **match: Any) -> list[dict[str, Any]]:
        """Records whose fields equal every ``match`` item."""
        return [r for r in self._records if all(r.get(k) == v for k, v in match.items())]


class PlanStore:
    """The candidates planned per (method, batch), so an interrupted batch resumes identically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._plans: dict[str, list[list[float]]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def get(self, method: str, batch: int) -> list[list[float]] | None:
        """The planned proportion vectors of ``batch``, if it was planned before."""
        return self._plans.get(f"{method}/{batch}")

    def put(self, method: str, batch: int, candidates: list[list[float]]) -> None:
        """Record a batch's candidates durably before any of them is evaluated."""
        self._plans[f"{method}/{batch}"] = candidates
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self._plans))
