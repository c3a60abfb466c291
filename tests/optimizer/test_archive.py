"""The archive survives a kill inside a write, and the plan store round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paretoctl.optimizer.archive import ArchiveError, JsonlArchive, PlanStore


def test_append_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    arch = JsonlArchive(path)
    for i in range(3):
        arch.append({"eval_id": i, "method": "m", "batch": i // 2})
    again = JsonlArchive(path)
    assert [r["eval_id"] for r in again] == [0, 1, 2]
    assert [r["eval_id"] for r in again.where(batch=0)] == [0, 1]


def test_torn_tail_is_dropped_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"eval_id": 0}) + "\n" + '{"eval_id": 1, "r": [1, 2')
    arch = JsonlArchive(path)
    assert len(arch) == 1
    assert path.read_text() == json.dumps({"eval_id": 0}) + "\n"
    arch.append({"eval_id": 1})
    assert [r["eval_id"] for r in JsonlArchive(path)] == [0, 1]


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"eval_id": 0}\nnot json\n{"eval_id": 2}\n')
    with pytest.raises(ArchiveError, match="line 2"):
        JsonlArchive(path)


def test_plan_store(tmp_path: Path) -> None:
    plan = PlanStore(tmp_path / "plan.json")
    assert plan.get("botorch", 0) is None
    plan.put("botorch", 0, [[0.1, 0.2]])
    assert PlanStore(tmp_path / "plan.json").get("botorch", 0) == [[0.1, 0.2]]


def test_duplicate_eval_ids_are_refused(tmp_path: Path) -> None:
    """Two builds appending to one archive gave two records per eval id; that archive is now refused."""
    path = tmp_path / "a.jsonl"
    path.write_text('{"eval_id": 0}\n{"eval_id": 1}\n{"eval_id": 1}\n')
    with pytest.raises(ArchiveError, match="line 3 repeats eval_id 1"):
        JsonlArchive(path)


def test_full_disk_keeps_the_archive_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that stores a few bytes and then fails with ENOSPC raises, and leaves no partial line."""
    import errno
    import os

    path = tmp_path / "a.jsonl"
    arch = JsonlArchive(path)
    arch.append({"eval_id": 0, "r": [1]})
    before = path.read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def short_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError, match="No space left"):
        arch.append({"eval_id": 1, "r": [2]})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [r["eval_id"] for r in JsonlArchive(path)] == [0]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"botorch/0": 3}'])
def test_corrupt_plan_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(ArchiveError, match=str(path)):
        PlanStore(path)
