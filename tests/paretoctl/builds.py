"""Build directories (``archive.jsonl``, ``convergence.json``, ``front.json``) for tests.

Two kinds:

* :func:`run_smoke_build` runs the real ``paretoctl build`` on ``configs/smoke.yaml`` (the bundled
  model and data, a real BoTorch search) in a subprocess, or on :data:`THRESHOLD_CONFIG` (the same
  search over per-layer similarity thresholds, whose front mixes both merging kinds): what consumers
  of a build (plots, reports) must be tested on, so that a change in what the build writes cannot
  slip past them. It takes tens
  of seconds: use it through a session-scoped fixture (``tests/paretoctl/conftest.py``).
* :func:`write_build_dir` writes a synthetic one following docs/internals.md ("Build directory"),
  for what a real build cannot easily produce (several channels, damaged files) and without torch.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from paretoctl.service.schema import FrontArtifact
from tests.fronts import make_front, write_front

ROOT = Path(__file__).resolve().parents[2]
SMOKE_CONFIG = ROOT / "configs" / "smoke.yaml"
THRESHOLD_CONFIG = ROOT / "configs" / "smoke_thresholds.yaml"
"""A smoke build whose search runs over per-layer similarity thresholds (input-adaptive merging)."""
SMOKE_TIMEOUT_S = 600
"""A smoke build takes about half a minute on two shared cores; ten minutes means it is stuck."""

METHODS: tuple[str, ...] = ("botorch", "sobol", "nsga2")
OBJECTIVES: list[str] = ["accuracy_val (max)", "gflops (min)", "channel_uses (min)"]


def archive_rows(front: FrontArtifact, methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    """One archive line per front configuration, the methods taking turns, in batches of 2."""
    rows = []
    for k, cfg in enumerate(front.configs):
        rows.append({
            "eval_id": k,
            "method": methods[k % len(methods)],
            "batch": k // 2,
            "r": list(cfg.r),
            "proportions": list(cfg.proportions),
            "gflops": cfg.gflops.model_dump(),
            "tokens_sent": cfg.tokens_sent,
            "channel_uses": cfg.channel_uses,
            "accuracy_val": {kind: [p.model_dump() for p in pts] for kind, pts in cfg.accuracy_val.items()},
            "wall_s": 1.5,
            "time": f"2025-01-01T00:{k // 60:02d}:{k % 60:02d}Z",
        })
    return rows


def convergence_doc(front: FrontArtifact, methods: tuple[str, ...] = METHODS, n_points: int = 8,
                    seed: int = 0) -> dict[str, Any]:
    """Monotone hypervolume curves per method; BoTorch converges fastest, as it should."""
    rng = random.Random(seed)
    keys = [f"{kind}@{snr:g}" for kind in front.provenance.channel_kinds
            for snr in front.provenance.snr_grid_db]
    out: dict[str, list[dict[str, Any]]] = {}
    for m, name in enumerate(methods):
        rate = 0.35 / (1 + m)
        rows, hv = [], 0.0
        for i in range(1, n_points + 1):
            hv = max(hv, 1.0 - math.exp(-rate * i) + rng.uniform(-0.01, 0.01))
            rows.append({"n_evals": 4 * i, "hypervolume": hv,
                         "hv_per_snr": {key: hv * (0.8 + 0.02 * j) for j, key in enumerate(keys)}})
        out[name] = rows
    return {"objectives": OBJECTIVES, "ref_point": [0.1, 1.0, 5000.0], "methods": out}


def write_build_dir(path: Path, front: FrontArtifact | None = None, **make_kwargs: Any) -> Path:
    """Write a build directory at ``path`` from ``front`` (or ``make_front(**make_kwargs)``)."""
    art = front if front is not None else make_front(**make_kwargs)
    path.mkdir(parents=True, exist_ok=True)
    with (path / "archive.jsonl").open("w", encoding="utf-8") as fh:
        for row in archive_rows(art):
            fh.write(json.dumps(row) + "\n")
    (path / "convergence.json").write_text(json.dumps(convergence_doc(art), indent=2), encoding="utf-8")
    write_front(path / "front.json", art)
    return path


def run_smoke_build(out: Path, config: Path = SMOKE_CONFIG) -> Path:
    """Run the real ``paretoctl build --config CONFIG --out OUT`` in a fresh interpreter; return ``out``.

    The command is the installed CLI's own Typer app (``paretoctl.cli:app``, the console script's
    entry point), so the test sees exactly what a user's build writes.

    Raises:
        RuntimeError: the build exited non-zero; the message carries its exit code and stderr tail.
    """
    cmd = [sys.executable, "-c", "from paretoctl.cli import app; app()",
           "build", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"paretoctl build exited {proc.returncode}: {proc.stderr[-3000:]}")
    out.with_name(out.name + ".stderr").write_text(proc.stderr)  # what the user saw: progress, time spent
    return out
