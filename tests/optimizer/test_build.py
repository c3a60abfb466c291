"""The whole build: smoke run, artifact contract, independent Pareto check, kill-and-resume."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.optimizer.config import load_config
from paretoctl.service.schema import FrontLoadError, dump_front, load_front
from tests.optimizer.conftest import ROOT, SMOKE_RNG, check_tome_walk, smoke_config_text

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "paretoctl.cli"]


def test_smoke_build_writes_a_complete_front(smoke_build: Path) -> None:
    front = load_front(smoke_build / "front.json")
    prov = front.provenance
    assert prov.snr_grid_db == [0.0, 10.0, 20.0]
    assert prov.split_sizes.val == 200 and prov.split_sizes.test == 200
    assert prov.checkpoint_sha256 and len(prov.checkpoint_sha256) == 64
    assert {"torch", "botorch", "timm"} <= set(prov.packages)
    ids = {c.id for c in front.configs}
    assert len({tuple(c.r) for c in front.configs}) == len(front.configs)  # one entry per schedule
    assert front.reference_config_id == "unmerged" and "unmerged" in ids
    assert {c.source for c in front.configs} >= {"reference", "botorch"}
    # ToMe's marks compete with the search: exactly the selected ones are on the front and on test.
    from paretoctl.optimizer.build import config_id, select_front

    cfg = load_config(smoke_build / "config.yaml")
    recs = [{**r, "id": config_id(r)} for r in JsonlArchive(smoke_build / "archive.jsonl")]
    chosen = select_front(recs, recs[0], prov.snr_grid_db, cfg.search.max_front_configs, cfg.search.max_accuracy_drop,
                          profile=front.device_profile.model_copy(update={"measurements": None}))
    assert {c["id"] for c in chosen if c["method"] == "uniform-marks"} == {c.id for c in front.configs
                                                                           if c.source == "uniform"}
    tested = [tuple(r["r"]) for r in JsonlArchive(smoke_build / "test_archive.jsonl")]
    assert sorted(tested) == sorted(tuple(c.r) for c in front.configs)  # the front, nothing more, once each
    ref = front.config("unmerged")
    assert all(r == 0 for r in ref.r)
    for cfg in front.configs:
        assert len(cfg.accuracy_val["awgn"]) == 3 and len(cfg.accuracy_test["awgn"]) == 3
        assert cfg.gflops.total == pytest.approx(cfg.gflops.edge + cfg.gflops.server, rel=1e-6)
        assert cfg.gflops.total <= ref.gflops.total + 1e-9
    # The archive holds the reference, ToMe's marks (test below) and exactly the budget of BoTorch evaluations.
    arch = list(JsonlArchive(smoke_build / "archive.jsonl"))
    counts = Counter(r["method"] for r in arch)
    assert counts["reference"] == 1 and counts["botorch"] == 8
    assert set(counts) == {"reference", "uniform-marks", "botorch"}
    conv = json.loads((smoke_build / "convergence.json").read_text())
    curve = conv["methods"]["botorch"]
    assert [p["n_evals"] for p in curve] == list(range(1, 9))
    assert all(b["hypervolume"] >= a["hypervolume"] - 1e-12 for a, b in itertools.pairwise(curve))


def _dominates(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """a dominates b: accuracy >=, GFLOPs <=, channel uses <=, and strictly better in one."""
    no_worse = a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2]
    return no_worse and (a[0] > b[0] or a[1] < b[1] or a[2] < b[2])


def test_front_is_non_dominated_at_each_snr(smoke_build: Path) -> None:
    """Checked from the JSON alone, with a definition written here, not the code that built it."""
    doc = json.loads((smoke_build / "front.json").read_text())
    configs = {c["id"]: c for c in doc["configs"]}
    grid = doc["provenance"]["snr_grid_db"]
    assert len(doc["pareto"]) == len(grid) * len(doc["provenance"]["channels"])
    for entry in doc["pareto"]:
        idx = grid.index(entry["snr_db"])

        def point(c: dict, ch: str = entry["channel"], i: int = idx) -> tuple[float, float, float]:
            return (c["accuracy_val"][ch][i]["mean"], c["gflops"]["total"], c["channel_uses"])

        chosen = set(entry["config_ids"])
        assert chosen
        for cid in chosen:
            assert not any(_dominates(point(o), point(configs[cid])) for o in configs.values())
        for cid, c in configs.items():
            if cid not in chosen:  # everything left out is dominated, or duplicates a chosen point
                assert any(_dominates(point(configs[k]), point(c)) or point(configs[k]) == point(c)
                           for k in chosen)


def test_artifact_round_trip_and_tamper(smoke_build: Path, tmp_path: Path) -> None:
    front = load_front(smoke_build / "front.json")
    copy = tmp_path / "copy.json"
    dump_front(front, copy)
    assert load_front(copy) == front
    doc = json.loads(copy.read_text())
    doc["configs"][0]["accuracy_test"]["awgn"][0]["mean"] = 0.999
    copy.write_text(json.dumps(doc))
    with pytest.raises(FrontLoadError) as err:
        load_front(copy)
    assert err.value.reason == "checksum"


def test_resume_after_sigkill_mid_batch(tmp_path: Path) -> None:
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(smoke_config_text())
    out = tmp_path / "build"
    cmd = [sys.executable, "-m", "paretoctl.cli", "build", "--config", str(cfg), "--out", str(out)]
    env = ENV
    archive = out / "archive.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill inside BoTorch's first batch: after the reference, ToMe's marks and at least 2 of its 4 evaluations.
    deadline = time.time() + 240
    while time.time() < deadline:
        searched = archive.read_text().count('"method":"botorch"') if archive.exists() else 0
        if searched >= 2 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = list(JsonlArchive(archive))
    assert 2 <= sum(r["method"] == "botorch" for r in before) < 8 and not (out / "front.json").exists()

    # Without --resume the directory is refused, untouched.
    refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    after = list(JsonlArchive(archive))
    keys = [(r["method"], r["batch"], r["index"]) for r in after]
    counts = Counter(r["method"] for r in after)
    assert counts["reference"] == 1 and counts["botorch"] == 8
    check_tome_walk(after, load_config(cfg))  # the resumed marks follow the walk's rule
    assert len(keys) == len(set(keys)) == len(after)  # complete, no duplicates
    assert after[: len(before)] == before  # nothing recorded before the kill was lost or rewritten
    assert [r["eval_id"] for r in after] == list(range(len(after)))
    load_front(out / "front.json")


def test_tokens_per_layer_count_tokens_entering_each_block(smoke_build: Path) -> None:
    """Schema /2: tokens entering block l, cls included: 49 patches + 1 cls = 50, then minus r per block."""
    front = load_front(smoke_build / "front.json")
    assert front.provenance.num_prefix_tokens == 1 and front.provenance.num_patches == 49
    for cfg in front.configs:
        expected = [50]
        for r_l in cfg.r[:-1]:
            expected.append(expected[-1] - r_l)
        assert cfg.tokens_per_layer == expected
    assert any(c.tokens_per_layer[1] < 50 for c in front.configs)  # some schedule merges in block 0


def test_build_leaves_the_callers_rng_untouched(smoke_build: Path) -> None:
    assert torch.equal(SMOKE_RNG["before"], SMOKE_RNG["after"])


def _wait_for_records(archive: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if archive.exists() and archive.read_text().count("\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError("the build ended or stalled before it could be interrupted")


def _stderr_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


# Runs the real CLI with os.write failing half-way through the archive record of eval_id 6 (the second
# record of BoTorch's second batch, the first planned by the GP): 7 bytes are stored, then the disk is full.
DISK_FULL = """
import errno, os, sys
real = os.write
def write(fd, data):
    if b'"eval_id":6,' in bytes(data):
        real(fd, bytes(data)[:7])
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(fd, data)
os.write = write
from paretoctl.cli import app
sys.argv[0] = "paretoctl"
app()
"""


def test_disk_full_then_lost_plan_resumes_to_the_same_batch(tmp_path: Path) -> None:
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(smoke_config_text(uniform_marks="false"))
    out = tmp_path / "build"
    args = ["build", "--config", str(cfg), "--out", str(out)]
    full = subprocess.run([sys.executable, "-c", DISK_FULL, *args], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert full.returncode == 3, full.stderr[-2000:]
    line = _stderr_line(full.stderr)
    assert "No space left on device" in line and "--resume" in line
    before = list(JsonlArchive(out / "archive.jsonl"))  # loads: no torn or partial record was kept
    assert [r["eval_id"] for r in before] == list(range(6))
    second = [r for r in before if r["method"] == "botorch" and r["batch"] == 1]
    assert len(second) == 1
    (out / "plan.json").unlink()  # lost half-way through that batch: recovered from the records
    done = subprocess.run([*CLI, *args, "--resume"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    after = list(JsonlArchive(out / "archive.jsonl"))
    assert after[:6] == before and [r["eval_id"] for r in after] == list(range(9))  # reference + 8, none twice
    batch = sorted((r for r in after if r["method"] == "botorch" and r["batch"] == 1), key=lambda r: r["index"])
    assert [r["x"] for r in batch] == second[0]["batch_x"]  # the planned batch, not a new one
    load_front(out / "front.json")


def test_sigterm_exits_130_and_resume_must_keep_the_seed(tmp_path: Path) -> None:
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(smoke_config_text())
    out = tmp_path / "build"
    cmd = [*CLI, "build", "--config", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # A record is visible before its append's fsync returns, and an append the signal interrupts is
    # rolled back (paretoctl.service.fileio.append_bytes): wait for a fourth line, so that the third
    # record's append had returned before the signal (on a loaded machine the race was lost, CI 2026-12-08).
    _wait_for_records(out / "archive.jsonl", 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "--resume" in _stderr_line(stderr)
    kept = list(JsonlArchive(out / "archive.jsonl"))
    assert len(kept) >= 3
    other = subprocess.run([*cmd, "--resume", "--seed", "1"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert other.returncode == 2 and "search.seed: 0 recorded, 1 now" in _stderr_line(other.stderr)
    assert list(JsonlArchive(out / "archive.jsonl")) == kept  # refused before touching anything


def test_a_second_build_on_a_locked_directory_exits_3(tmp_path: Path) -> None:
    from paretoctl.optimizer.builddir import BuildLock

    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(smoke_config_text())
    out = tmp_path / "build"
    out.mkdir()
    with BuildLock(out):  # as a running build holds it
        res = subprocess.run([*CLI, "build", "--config", str(cfg), "--out", str(out)], cwd=ROOT, env=ENV,
                             capture_output=True, text=True)
    assert res.returncode == 3 and "being built by another process" in _stderr_line(res.stderr)
    assert not (out / "archive.jsonl").exists()


def test_unwritable_out_fails_before_any_work(tmp_path: Path) -> None:
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(smoke_config_text())
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    t0 = time.perf_counter()
    res = subprocess.run([*CLI, "build", "--config", str(cfg), "--out", str(blocker / "build")], cwd=ROOT, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 3 and "is not writable" in _stderr_line(res.stderr)
    assert time.perf_counter() - t0 < 30  # no model, data or evaluation was loaded


def test_marks_walk_tome_schedules_until_they_leave_the_region(smoke_build: Path) -> None:
    cfg = load_config(smoke_build / "config.yaml")
    n = check_tome_walk(list(JsonlArchive(smoke_build / "archive.jsonl")), cfg)
    assert n >= cfg.search.q
