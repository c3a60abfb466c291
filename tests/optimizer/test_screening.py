"""Screening: the paired drop against hand-computed values, the stopping rule at its edge, and a real
build whose stopped candidates carry exactly what part 0 of the validation split measures."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import ConfigError, load_config
from paretoctl.optimizer.executor import LocalExecutor, PartsRequest, ProcessExecutor, load_model, make_evaluator
from paretoctl.optimizer.screening import PairedDrop, Screen, paired_drop, screen_parts
from paretoctl.optimizer.space import Candidate
from tests.optimizer.conftest import grid_mean, smoke_config_text

REFERENCE = Candidate(r=(0,) * 12)


def test_paired_drop_of_one_point_by_hand() -> None:
    ref = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    cand = torch.tensor([1, 0, 1, 1], dtype=torch.bool)
    got = paired_drop(ref, cand)  # d = [0, 1, 0, -1]: mean 0, sample sd sqrt(2/3)
    assert got.drop == 0.0 and got.n_images == 4
    assert got.stderr == pytest.approx(math.sqrt(2 / 3) / 2)


def test_paired_drop_averages_the_grid_per_image_first() -> None:
    ref = torch.tensor([[1, 1], [1, 0], [0, 0]], dtype=torch.bool)  # [images, SNRs]
    cand = torch.tensor([[1, 0], [0, 0], [0, 0]], dtype=torch.bool)
    got = paired_drop(ref, cand)  # d = [1/2, 1/2, 0]: mean 1/3, sd sqrt(1/12), stderr 1/6
    assert got.drop == pytest.approx(1 / 3)
    assert got.stderr == pytest.approx(1 / 6)


def test_paired_drop_refuses_mismatched_or_empty_hits() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        paired_drop(torch.ones(4, 2, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one image"):
        paired_drop(torch.ones(0, 2, dtype=torch.bool), torch.ones(0, 2, dtype=torch.bool))
    assert paired_drop(torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)).stderr == math.inf


def test_a_candidate_is_stopped_only_beyond_z_stderrs_past_the_edge() -> None:
    screen = Screen(parts=4, max_accuracy_drop=3.125, z=2.0, reference=REFERENCE)  # binary-exact values
    assert not screen.rejects(PairedDrop(drop=0.0625, stderr=0.015625, n_images=500))  # exactly at the edge: kept
    assert screen.rejects(PairedDrop(drop=0.0626, stderr=0.015625, n_images=500))
    assert not screen.rejects(PairedDrop(drop=0.5, stderr=math.inf, n_images=1))  # one image proves nothing
    narrower = Screen(parts=4, max_accuracy_drop=3.0, z=2.0, reference=REFERENCE)
    assert narrower.rejects(PairedDrop(drop=0.0625, stderr=0.015625, n_images=500))


@pytest.mark.parametrize(("n", "batch", "screen", "parts"), [
    (2000, 500, 500, 4), (2000, 500, 1000, 2), (2000, 250, 500, 4), (2000, 500, 1500, 1), (2000, 500, 0, 1),
    (1900, 500, 500, 4),  # a short last batch is a batch
])
def test_screen_parts(n: int, batch: int, screen: int, parts: int) -> None:
    assert screen_parts(n, batch, screen) == parts


@pytest.mark.parametrize(("overrides", "message"), [
    ({"search.screen_images": 150}, "multiple of data.batch_size"),
    ({"search.screen_images": 400}, "smaller than data.val_limit"),
])
def test_a_screen_that_does_not_fit_the_data_is_refused(tmp_path: Path, overrides: dict[str, Any],
                                                         message: str) -> None:
    path = tmp_path / "smoke.yaml"
    path.write_text(smoke_config_text())
    with pytest.raises(ConfigError, match=message):
        load_config(path, {"data.val_limit": 400, "data.batch_size": 100, **overrides})


def _screened_config(folder: Path, extra: str = "") -> Path:
    """The smoke build on 400 validation images in batches of 100, screened on the first 100, with a
    1-point region so that ToMe's heavy marks fall clearly outside it."""
    path = folder / "screened.yaml"
    text = smoke_config_text()
    text = text.replace("  max_front_configs:", "  screen_images: 100\n  max_accuracy_drop: 1\n  max_front_configs:")
    path.write_text(text + extra)
    return path


@pytest.fixture(scope="module")
def screened_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("screened")
    path = _screened_config(folder)
    cfg = load_config(path, {"data.val_limit": 400, "data.batch_size": 100})
    run_build(cfg, folder / "out")
    return path, folder / "out"


def _overrides() -> dict[str, Any]:
    return {"data.val_limit": 400, "data.batch_size": 100}


@pytest.mark.slow
def test_stopped_candidates_hold_what_part_zero_measures(screened_build: tuple[Path, Path]) -> None:
    """Every decision is reproduced from the driver's own per-image hits; a stopped candidate's record
    holds exactly part 0's accuracies, a kept one the whole split's, and measured on every image each
    stopped candidate does lie outside the region."""
    path, out = screened_build
    cfg = load_config(path, _overrides())
    evaluator = make_evaluator(cfg, "val", load_model(cfg))
    records = [json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines()]
    ref_part = evaluator.evaluate_part(REFERENCE, 0, 4, per_image=True)
    assert ref_part.hits is not None and ref_part.hits.shape == (100, 1, 1, 3)
    assert torch.equal(ref_part.hits.sum(0), ref_part.correct)  # the hits are the counts, image by image
    ref_full = evaluator.evaluate_candidate(REFERENCE)
    stopped = 0
    for rec in records[1:]:
        c = Candidate(r=tuple(rec["r"]))
        part = evaluator.evaluate_part(c, 0, 4, per_image=True)
        assert part.hits is not None
        drop = paired_drop(ref_part.hits, part.hits)
        rejects = drop.drop - 3.0 * drop.stderr > 0.01
        assert ("screened" in rec) == rejects, rec["r"]
        whole = evaluator.evaluate_candidate(c)
        if rejects:
            stopped += 1
            assert rec["screened"]["drop"] == pytest.approx(drop.drop) and rec["screened"]["n_images"] == 100
            alone = evaluator.combine(c, [part])
            assert rec["accuracy_val"]["awgn"] == [p.to_json() for p in alone.accuracy["awgn"]]
            lost = [a.mean - b.mean for a, b in zip(ref_full.accuracy["awgn"], whole.accuracy["awgn"], strict=True)]
            assert sum(lost) / len(lost) > 0.01  # truly outside the region on all 400 images
        else:
            assert rec["accuracy_val"]["awgn"] == [p.to_json() for p in whole.accuracy["awgn"]]
    assert 0 < stopped < len(records) - 1  # the heavy marks are stopped, the light ones are not
    conv = json.loads((out / "convergence.json").read_text())
    counted = {tag: sum("screened" in r for r in records if r["method"] == tag) for tag in ("uniform-marks", "botorch")}
    assert conv["screened"] == counted


@pytest.mark.slow
def test_a_screened_build_resumes_to_the_same_archive(screened_build: tuple[Path, Path], tmp_path: Path) -> None:
    """Killed after its screened marks, the build resumes to the archive of one uninterrupted run (the
    reference's part-0 hits are measured again, identically)."""
    path, out = screened_build
    records = (out / "archive.jsonl").read_text().splitlines()
    cut = 1 + next(i for i, line in enumerate(records) if "screened" in json.loads(line))
    again = tmp_path / "again"
    again.mkdir()
    (again / "archive.jsonl").write_text("\n".join(records[:cut]) + "\n")
    for name in ("plan.json", "config.yaml"):
        if (out / name).exists():
            (again / name).write_text((out / name).read_text())
    run_build(load_config(path, _overrides()), again, resume=True)
    resumed = [json.loads(line) for line in (again / "archive.jsonl").read_text().splitlines()]
    keys = ("r", "accuracy_val", "screened", "method", "batch", "index")
    assert [[r.get(k) for k in keys] for r in resumed] == [[json.loads(line).get(k) for k in keys] for line in records]


@pytest.mark.slow
def test_the_screening_benchmark_repeats_the_builds_decisions(screened_build: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/screening.py`` on a real screened build: one line per distinct candidate, a stop exactly
    where the build stopped, the whole-split drop of a kept candidate the archive's own (grid mean,
    computed here by hand), and a summary that counts its lines."""
    from bench.screening import main

    _, out = screened_build
    records = [json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines()]
    threads = torch.get_num_threads()
    try:
        main([str(out)])
    finally:
        torch.set_num_threads(threads)
    line = re.compile(r"^(\S+)\s+(-?\d+\.\d+)p\s+(\d+\.\d+)p\s+(-?\d+\.\d+)p\s+(stop|go on)\s+(.+?)\s+(\[.*\])$")
    printed = capsys.readouterr().out.splitlines()
    rows = [m.groups() for m in map(line.match, printed) if m]

    ref_mean = grid_mean(records[0])
    by_r = {json.dumps(rec["r"]): rec for rec in records[1:]}
    assert sorted(row[6] for row in rows) == sorted(by_r)  # each distinct candidate once
    for method, _, _, whole, decision, outcome, r in rows:
        rec = by_r[r]
        assert method == rec["method"]
        assert (decision == "stop") == ("screened" in rec), r
        if "screened" in rec:
            assert outcome == "stopped"  # measured whole now, outside the 1-point region
        else:
            drop = 100 * (ref_mean - grid_mean(rec))
            assert float(whole) == pytest.approx(drop, abs=0.005)
            assert outcome == ("kept outside" if drop > 1.0 else "kept")
    stopped = sum(row[4] == "stop" for row in rows)
    outside = sum(row[5] == "kept outside" for row in rows)
    assert 0 < stopped < len(rows)
    assert printed[-1].startswith(f"stopped {stopped} of {len(rows)}; false stops 0; kept although outside {outside};")


def test_process_workers_return_the_parts_and_hits_one_process_measures(tmp_path: Path) -> None:
    cfg = load_config(_screened_config(tmp_path, "runtime:\n  executor: processes\n  process_workers: 2\n"),
                      _overrides())
    model = load_model(cfg)
    driver = make_evaluator(cfg, "val", model)
    requests = [PartsRequest(Candidate(r=(3,) * 12), (0,), 4, per_image=True),
                PartsRequest(Candidate(thresholds=(0.9,) * 12), (1, 2, 3), 4)]
    executor = ProcessExecutor(cfg, model, lambda _split: driver)
    try:
        shared = list(executor.evaluate_parts("val", requests))
    finally:
        executor.close()
    local = list(LocalExecutor(lambda _split: driver).evaluate_parts("val", requests))
    assert [len(s) for s in shared] == [1, 3]
    for a, b in zip([p for s in shared for p in s], [p for s in local for p in s], strict=True):
        assert torch.equal(a.correct, b.correct) and a.n_images == b.n_images
        assert (a.hits is None) == (b.hits is None)
        if a.hits is not None and b.hits is not None:
            assert torch.equal(a.hits, b.hits)
