"""A threshold build end to end: the front mixes both merging kinds, costs are per-image summaries."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from paretoctl.optimizer.archive import JsonlArchive
from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config
from paretoctl.service.schema import load_front
from tests.optimizer.conftest import check_tome_walk

SUMMARIES = ("gflops_total", "gflops_edge", "gflops_server", "tokens_sent", "channel_uses")


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    no_worse = a[0] >= b[0] and all(x <= y for x, y in zip(a[1:], b[1:], strict=True))
    return no_worse and a != b


def test_threshold_build_writes_a_front_of_both_kinds(threshold_build: Path) -> None:
    front = load_front(threshold_build / "front.json")  # every schema check, consistency included
    kinds = Counter(c.merging for c in front.configs)
    # the unmerged model is a fixed schedule; ToMe's marks are there only where they win a place
    assert kinds["thresholds"] >= 1 and kinds["proportions"] >= 1
    arch = list(JsonlArchive(threshold_build / "archive.jsonl"))
    counts = Counter(r["method"] for r in arch)
    assert counts["reference"] == 1 and counts["uniform-thresholds"] == 5 and counts["botorch"] == 8
    assert set(counts) == {"reference", "uniform-marks", "uniform-thresholds", "botorch"}
    check_tome_walk(arch, load_config(threshold_build / "config.yaml"))
    assert all(r["merging"] == "thresholds" for r in arch if r["method"] in ("botorch", "uniform-thresholds"))
    by_id = {f"{r['method']}-{r['eval_id']:04d}": r for r in arch}
    profile = front.device_profile
    assert profile.measurements is not None and profile.measurements.machine.threads == 1  # timing.threads
    timed = {c.config_id: c for c in profile.measurements.configs}
    for cfg in front.configs:
        timing = timed[cfg.id]
        assert list(timing.r) == cfg.r  # the measurement is found by (id, r)
        if cfg.merging != "thresholds":
            assert cfg.thresholds is None and cfg.cost_distribution is None
            continue
        dist = cfg.cost_distribution
        assert dist is not None and cfg.thresholds is not None and len(cfg.thresholds) == 12
        assert dist.n_images == front.provenance.split_sizes.val == 200
        for name in SUMMARIES:
            summary = getattr(dist, name)
            assert summary.p95 >= summary.mean, name
        rec = by_id[cfg.id]
        assert cfg.thresholds == rec["thresholds"] and dist.model_dump() == rec["cost_distribution"]
        assert cfg.gflops.total == pytest.approx(dist.gflops_total.mean, rel=1e-12)  # the exact mean
        assert cfg.channel_uses == round(dist.channel_uses.mean)
        assert abs(cfg.tokens_sent - dist.tokens_sent.mean) <= 1  # rounded-mean schedule
        # Latency derived from costs uses the 95th percentile: the link is modelled from p95 channel uses.
        want = profile.link_overhead_ms + 1000.0 * dist.channel_uses.p95 / profile.symbol_rate_hz
        assert cfg.latency.transmit_ms == pytest.approx(want, rel=1e-12)
        assert cfg.latency.edge_source == "measured" and cfg.latency.edge_ms == timing.edge.p90_ms


def test_threshold_front_is_non_dominated_on_the_means(threshold_build: Path) -> None:
    """Checked from the JSON alone: a threshold configuration's point is its mean GFLOPs and channel uses."""
    doc = json.loads((threshold_build / "front.json").read_text())
    grid = doc["provenance"]["snr_grid_db"]

    def point(c: dict[str, Any], ch: str, i: int) -> tuple[float, float, float]:
        d = c.get("cost_distribution")
        uses = d["channel_uses"]["mean"] if d else c["channel_uses"]
        gflops = d["gflops_total"]["mean"] if d else c["gflops"]["total"]
        return (c["accuracy_val"][ch][i]["mean"], gflops, uses)

    configs = {c["id"]: c for c in doc["configs"]}
    for entry in doc["pareto"]:
        i, ch = grid.index(entry["snr_db"]), entry["channel"]
        for cid in entry["config_ids"]:
            assert not any(_dominates(point(o, ch, i), point(configs[cid], ch, i)) for o in configs.values())
        for cid, c in configs.items():
            if cid not in entry["config_ids"]:
                assert any(_dominates(point(configs[k], ch, i), point(c, ch, i))
                           or point(configs[k], ch, i) == point(c, ch, i) for k in entry["config_ids"])


def test_resuming_a_finished_threshold_build_changes_nothing(threshold_build: Path, tmp_path: Path) -> None:
    copy = tmp_path / "resumed"
    shutil.copytree(threshold_build, copy)
    files = {name: (copy / name).read_bytes() for name in ("archive.jsonl", "test_archive.jsonl", "plan.json")}
    threads = torch.get_num_threads()
    run_build(load_config(copy / "config.yaml"), copy, resume=True)
    assert torch.get_num_threads() == threads  # timing's single thread was handed back
    assert {name: (copy / name).read_bytes() for name in files} == files  # nothing evaluated again
    before, after = (json.loads((d / "front.json").read_text()) for d in (threshold_build, copy))
    strip = lambda doc: [{k: v for k, v in c.items() if k != "latency"} for c in doc["configs"]]  # noqa: E731
    assert strip(after) == strip(before)  # timing is re-measured on resume; nothing else changes
    assert after["pareto"] == before["pareto"]
