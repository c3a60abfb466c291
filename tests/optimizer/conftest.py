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


def grid_mean(rec: dict[str, Any]) -> float:
    """Mean validation accuracy of an archive record over its (channel, SNR) grid, computed here by hand
    (an independent check of ``paretoctl.optimizer.pareto.objective_vector``, not a call to it)."""
    accs = [p["mean"] for points in rec["accuracy_val"].values() for p in points]
    return sum(accs) / len(accs)


def check_tome_walk(arch: list[dict[str, Any]], cfg: Any) -> int:
    """Assert a build's marks follow :func:`~paretoctl.optimizer.build.tome_marks`' rule; returns how many.

    The rule, checked independently of the code: ToMe's schedules from the least merging up (the
    unmerged one left out), ``search.q`` at a time, stopping after the first batch whose grid-mean
    validation accuracies all lie ``search.max_accuracy_drop`` points or more below the unmerged
    model's, or at the cap.
    """
    import timm

    import paretoctl.models.vit_fmnist  # noqa: F401  (registers vit_fmnist_patch4_28)
    from paretoctl.models.flops import ViTShape
    from paretoctl.optimizer.build import MAX_TOME_MARKS
    from paretoctl.optimizer.proposers import tome_schedules
    from paretoctl.optimizer.space import SearchSpace

    q, drop = cfg.search.q, cfg.search.max_accuracy_drop
    space = SearchSpace(ViTShape.of(timm.create_model("vit_fmnist_patch4_28")), cfg.split_index,
                        cfg.search.max_proportion)
    ref = next(r for r in arch if r["method"] == "reference")
    marks = [r for r in arch if r["method"] == "uniform-marks"]
    walk = tome_schedules(space)[1:][:MAX_TOME_MARKS]
    assert [r["r"] for r in marks] == walk[: len(marks)]
    assert [(r["batch"], r["index"]) for r in marks] == [(k // q, k % q) for k in range(len(marks))]
    batches = [marks[k : k + q] for k in range(0, len(marks), q)]
    outside = [all(grid_mean(r) <= grid_mean(ref) - drop / 100 + 1e-12 for r in b) for b in batches]
    assert not any(outside[:-1])  # the walk went on only while a batch reached inside the region
    assert outside[-1] or len(marks) == len(walk)  # and stopped at the first batch wholly outside, or the end
    return len(marks)
