"""The build directory: lock, config.yaml describing the archive, resume refusals, record checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paretoctl.optimizer.builddir import (
    BuildError,
    BuildLock,
    BuildLockedError,
    check_records,
    config_differences,
    prepare_directory,
)
from paretoctl.optimizer.config import BuildConfig, parse_config
from tests.optimizer.conftest import smoke_config_text


def _cfg(**change: object) -> BuildConfig:
    raw = yaml.safe_load(smoke_config_text())
    for dotted, value in change.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return parse_config(raw)


def test_a_second_lock_on_the_directory_is_refused(tmp_path: Path) -> None:
    with BuildLock(tmp_path), pytest.raises(BuildLockedError, match="another process"):
        BuildLock(tmp_path).__enter__()
    with BuildLock(tmp_path):  # released on exit
        pass


def test_fresh_start_rewrites_config_yaml_and_drops_leftovers(tmp_path: Path) -> None:
    """A start killed before its first record left config.yaml and plan.json for the old grid."""
    prepare_directory(tmp_path, _cfg(channel__snr_grid_db=[0, 10]), n_records=0, resume=False)
    (tmp_path / "plan.json").write_text('{"botorch/0": [[0.5]]}')
    prepare_directory(tmp_path, _cfg(), n_records=0, resume=False)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["channel"]["snr_grid_db"] == [0.0, 10.0, 20.0]
    assert not (tmp_path / "plan.json").exists()


def test_resume_with_another_seed_or_budget_is_refused(tmp_path: Path) -> None:
    prepare_directory(tmp_path, _cfg(), n_records=0, resume=False)
    with pytest.raises(BuildError, match="--resume"):
        prepare_directory(tmp_path, _cfg(), n_records=3, resume=False)
    with pytest.raises(BuildError, match=r"search\.budget: 8 recorded, 4 now; search\.seed: 0 recorded, 1 now"):
        prepare_directory(tmp_path, _cfg(search__seed=1, search__budget=4), n_records=3, resume=True)
    prepare_directory(tmp_path, _cfg(), n_records=3, resume=True)  # the same config resumes
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(BuildError, match=r"no config\.yaml"):
        prepare_directory(tmp_path, _cfg(), n_records=3, resume=True)


def test_records_from_another_grid_are_refused(tmp_path: Path) -> None:
    point = {"mean": 0.5, "stderr": 0.1, "n_images": 10, "n_draws": 1}
    good = {"r": [0] * 12, "accuracy_val": {"awgn": [{**point, "snr_db": s} for s in (0.0, 10.0, 20.0)]}}
    two = {"r": [0] * 12, "accuracy_val": {"awgn": [{**point, "snr_db": s} for s in (0.0, 10.0)]}}
    check_records([good], tmp_path / "a.jsonl", _cfg(), depth=12)
    with pytest.raises(BuildError, match=r"line 2 was measured on awgn at SNRs \[0.0, 10.0\]"):
        check_records([good, two], tmp_path / "a.jsonl", _cfg(), depth=12)
    with pytest.raises(BuildError, match="schedule of 12 layers, the model has 6"):
        check_records([good], tmp_path / "a.jsonl", _cfg(), depth=6)


def test_resume_may_change_where_evaluations_run_but_not_what_they_compute() -> None:
    """Executor, threads and Ray settings are result-neutral; device and precision are not."""
    base = {"runtime": {"device": "cpu", "precision": "fp32", "executor": "local", "threads": None,
                        "loader_workers": 0, "ray_address": None}, "search": {"seed": 0}}
    moved = {"runtime": {**base["runtime"], "executor": "ray", "threads": 2, "loader_workers": 2,
                         "server_chunk": 64, "ray_address": "auto"}, "search": {"seed": 0}}
    assert config_differences(base, moved) == []
    in_processes = {"runtime": {**base["runtime"], "executor": "processes", "process_workers": 2,
                                "process_threads": 1}, "search": {"seed": 0}}  # keys an older build lacks
    assert config_differences(base, in_processes) == []
    changed = {"runtime": {**base["runtime"], "precision": "bf16"}, "search": {"seed": 1}}
    assert config_differences(base, changed) == ["runtime.precision: 'fp32' recorded, 'bf16' now",
                                                  "search.seed: 0 recorded, 1 now"]
