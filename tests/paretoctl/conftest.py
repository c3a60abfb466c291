"""Fixtures of the tests of the CLI's consumers of a build (plots); the threshold build is in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paretoctl.builds import run_smoke_build


@pytest.fixture(scope="session")
def smoke_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build directory from the real ``paretoctl build`` on configs/smoke.yaml, made once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("botorch")
    return run_smoke_build(tmp_path_factory.mktemp("smoke") / "build")
