"""The distribution installs every package under the ``paretoctl`` namespace and nothing else.

A researcher's own ``models/`` or ``service/`` folder must never be shadowed by ours, nor ours by
theirs. These tests look at what an install really provides: the wheel's file list, and imports made
from a directory outside the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "channel_sim", "optimizer", "service")


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in this venv's interpreter from ``cwd``, with no PYTHONPATH help."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("name", PACKAGES)
def test_top_level_names_are_not_importable_outside_the_checkout(tmp_path: Path, name: str) -> None:
    proc = run_python(f"import {name}", tmp_path)
    assert proc.returncode != 0 and f"No module named '{name}'" in proc.stderr


def test_namespaced_packages_import_from_outside_the_checkout(tmp_path: Path) -> None:
    code = "import paretoctl.models, paretoctl.service, paretoctl.optimizer, paretoctl.channel_sim\n" \
           "print(paretoctl.models.__name__, paretoctl.service.__name__)"
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["paretoctl.models", "paretoctl.service"]


def test_a_users_own_models_package_is_not_shadowed(tmp_path: Path) -> None:
    """A project with its own ``models`` package gets its own, and ours still imports beside it."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("MINE = True\n")
    code = "import models, paretoctl.models.schedule as s\nprint(models.MINE, s.__name__)"
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "paretoctl.models.schedule"]


@pytest.mark.slow
def test_wheel_holds_only_the_paretoctl_namespace(tmp_path: Path) -> None:
    """The built wheel has real files under ``paretoctl/<pkg>/`` (links followed) and no other top level."""
    had_build_dir = (REPO / "build").exists()
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                               "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    finally:
        if not had_build_dir:  # setuptools builds in the tree; leave the checkout as it was
            shutil.rmtree(REPO / "build", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("paretoctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"paretoctl"}
    for pkg in PACKAGES:
        assert f"paretoctl/{pkg}/__init__.py" in names
    assert "paretoctl/models/weights/vit_fmnist_patch4_28.safetensors" in names
    assert "paretoctl/service/static/dashboard.html" in names
