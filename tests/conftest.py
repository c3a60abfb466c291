"""Shared test setup: deterministic, and gentle on a 2-core machine."""

from __future__ import annotations

import os

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
