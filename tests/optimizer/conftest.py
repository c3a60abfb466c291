"""A smoke build shared by the optimiser tests (built once per session: it runs the real pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
SMOKE_THRESHOLDS = ROOT / "configs" / "smoke_thresholds.yaml"
SMOKE_RNG: dict[str, torch.Tensor] = {}
"""The caller's torch RNG state just before and just after the session's smoke build."""


def smoke_config_text(config: Path = SMOKE, **search: object) -> str:
    """The smoke config (or ``config``) with the device profile path made absolute, so the file may
    live anywhere.

    ``search`` keys replace lines of its ``search:`` section (``budget=4``).
    """
    text = config.read_text().replace("device: devices/", f"device: {ROOT}/configs/devices/")
    for key, value in search.items():
        lines = [f"  {key}: {value}" if ln.strip().startswith(f"{key}:") else ln for ln in text.splitlines()]
        text = "\n".join(lines) + "\n"
    return text


def smoke_model_and_batches(folder: Path, val_limit: int, batch_size: int) -> tuple[torch.nn.Module, list[Any]]:
    """The bundled model and the smoke config's first ``val_limit`` validation images in batches,
    decoded once (the config file is written to ``folder``)."""
    from paretoctl.models.data import make_loader
    from paretoctl.optimizer.executor import load_model, open_split

    path = folder / "smoke.yaml"
    path.write_text(smoke_config_text())
    cfg = load_config(path, {"data.val_limit": val_limit})
    model = load_model(cfg)
    return model, list(make_loader(open_split(cfg, "val", model), batch_size))


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run configs/smoke.yaml end to end on the bundled model and data; returns the build directory."""
    out = tmp_path_factory.mktemp("smoke_build")
    cfg_path = out.parent / "smoke.yaml"
    cfg_path.write_text(smoke_config_text())
    torch.manual_seed(1234)
    SMOKE_RNG["before"] = torch.get_rng_state()
    run_build(load_config(cfg_path), out)
    SMOKE_RNG["after"] = torch.get_rng_state()
    return out


@pytest.fixture(scope="session")
def threshold_build(threshold_build_dir: Path) -> Path:
    """configs/smoke_thresholds.yaml built end to end (the session's one threshold build, tests/conftest.py)."""
    return threshold_build_dir
