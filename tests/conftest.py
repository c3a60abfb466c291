"""Shared test setup: deterministic, and gentle on a 2-core machine."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_configure(config: object) -> None:
    try:
        import torch
    except ImportError:  # the base install (service, SDK) has no torch
        return
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("PARETOCTL_TEST_THREADS", "2")))
