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

from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.service.schema import FrontLoadError, dump_front, load_front
from tests.optimizer.conftest import ROOT, smoke_config_text


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
    assert {c.source for c in front.configs} >= {"reference", "uniform", "botorch"}
    ref = front.config("unmerged")
    assert all(r == 0 for r in ref.r)
    for cfg in front.configs:
        assert len(cfg.accuracy_val["awgn"]) == 3 and len(cfg.accuracy_test["awgn"]) == 3
        assert cfg.gflops.total == pytest.approx(cfg.gflops.edge + cfg.gflops.server, rel=1e-6)
        assert cfg.gflops.total <= ref.gflops.total + 1e-9
    # The archive holds the reference, 8 uniform marks and exactly the budget of BoTorch evaluations.
    arch = list(JsonlArchive(smoke_build / "archive.jsonl"))
    assert Counter(r["method"] for r in arch) == {"reference": 1, "uniform-marks": 8, "botorch": 8}
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    archive = out / "archive.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill inside BoTorch's first batch: reference (1) + uniform marks (8) + at least 2 of its 4 evaluations.
    deadline = time.time() + 240
    while time.time() < deadline:
        lines = archive.read_text().count("\n") if archive.exists() else 0
        if lines >= 11 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = list(JsonlArchive(archive))
    assert 11 <= len(before) < 17 and not (out / "front.json").exists()

    # Without --resume the directory is refused, untouched.
    refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    after = list(JsonlArchive(archive))
    keys = [(r["method"], r["batch"], r["index"]) for r in after]
    assert len(keys) == len(set(keys)) == 17  # complete, no duplicates
    assert after[: len(before)] == before  # nothing recorded before the kill was lost or rewritten
    assert [r["eval_id"] for r in after] == list(range(17))
    load_front(out / "front.json")
