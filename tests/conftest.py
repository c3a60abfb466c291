"""Shared test setup: deterministic, and gentle on a 2-core machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# Idle OpenMP threads sleep instead of spinning: on 2 cores, spinning threads of parallel processes
# (test servers, subprocess builds) slow each other down several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config: object) -> None:
    try:
        import torch
    except ImportError:  # the base install (service, SDK) has no torch
        return
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("PARETOCTL_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def threshold_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build directory from the real ``paretoctl build`` on configs/smoke_thresholds.yaml (a BoTorch
    search over per-layer similarity thresholds), made once per session for every test folder. Its
    front holds both merging kinds: ``proportions`` (the unmerged model, ToMe's uniform marks) and
    ``thresholds``."""
    pytest.importorskip("torch")
    pytest.importorskip("botorch")
    from tests.paretoctl.builds import THRESHOLD_CONFIG, run_smoke_build

    return run_smoke_build(tmp_path_factory.mktemp("thresholds") / "build", THRESHOLD_CONFIG)
