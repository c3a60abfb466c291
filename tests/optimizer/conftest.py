"""A smoke build shared by the optimiser tests (built once per session: it runs the real pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke_config_text() -> str:
    """The smoke config with the device profile path made absolute (tests run from any directory)."""
    return SMOKE.read_text().replace("configs/devices/", f"{ROOT}/configs/devices/")


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run configs/smoke.yaml end to end on the bundled model and data; returns the build directory."""
    out = tmp_path_factory.mktemp("smoke_build")
    cfg_path = out.parent / "smoke.yaml"
    cfg_path.write_text(smoke_config_text())
    run_build(load_config(cfg_path), out, config_text=cfg_path.read_text())
    return out
