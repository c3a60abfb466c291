"""The evaluation archive: every evaluation, one JSON record a line, appended so that a kill loses nothing.

Each record is appended with ``paretoctl.service.fileio.append_bytes`` (all bytes written and fsynced,
or ``OSError`` with the file rolled back to its old length: a full disk never leaves half a record).
A kill inside the write can still leave a torn tail without its newline; loading drops it and truncates
the file back to the last whole line, so a resumed build re-runs exactly the evaluations that were not
recorded, and none twice. Two records with one ``eval_id`` (two builds writing one directory) make
the archive unreadable rather than silently doubled.

The plan file records the candidates of a batch before they are evaluated: on resume, the unfinished
batch is taken from the plan rather than re-generated, so no model fit has to be repeated bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoctl.service.fileio import append_bytes, atomic_write_text


class ArchiveError(RuntimeError):
    """The archive or plan is unreadable for a reason other than a torn last line; the message names the file."""


class JsonlArchive:
    """An append-only JSON-lines file of records.

    Example:
        >>> arch = JsonlArchive(Path("build/archive.jsonl"))
        >>> arch.append({"eval_id": 0, "r": [0, 0]})
        >>> [rec["eval_id"] for rec in arch]
        [0]
    """

    def __init__(self, path: Path, unique: str | None = "eval_id") -> None:
        self.path = path
        self.unique = unique
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
        if self.unique is not None:
            seen: set[Any] = set()
            for n, rec in enumerate(records, start=1):
                key = rec.get(self.unique)
                if key in seen:
                    raise ArchiveError(
                        f"{self.path}: line {n} repeats {self.unique} {key!r}; two builds wrote this "
                        "directory at once, or the archive was edited"
                    )
                seen.add(key)
        if good_end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Durably append one record (``OSError`` if it could not be written whole; nothing is kept then)."""
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        append_bytes(self.path, line)
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
        self._plans: dict[str, list[list[float]]] = self._load() if path.exists() else {}

    def _load(self) -> dict[str, list[list[float]]]:
        try:
            plans = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as err:
            raise ArchiveError(f"{self.path}: unreadable plan ({err}); delete it to re-plan from the archive") from None
        ok = isinstance(plans, dict) and all(
            isinstance(v, list) and all(isinstance(row, list) and all(isinstance(a, int | float) for a in row)
                                        for row in v)
            for v in plans.values()
        )
        if not ok:
            raise ArchiveError(f"{self.path}: not a plan (a mapping of 'method/batch' to lists of points); "
                               "delete it to re-plan from the archive")
        return plans

    def get(self, method: str, batch: int) -> list[list[float]] | None:
        """The planned proportion vectors of ``batch``, if it was planned before."""
        return self._plans.get(f"{method}/{batch}")

    def put(self, method: str, batch: int, candidates: list[list[float]]) -> None:
        """Record a batch's candidates durably before any of them is evaluated."""
        plans = {**self._plans, f"{method}/{batch}": candidates}
        atomic_write_text(self.path, json.dumps(plans))
        self._plans = plans
