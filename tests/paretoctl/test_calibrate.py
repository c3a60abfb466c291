"""``paretoctl profile --front``: re-time a real front, write a profile the policy loads by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paretoctl.service.latency import load_profile, predict_latency
from paretoctl.service.policy import select
from paretoctl.service.schema import load_front


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from paretoctl.cli import app; app()", *args],
                          capture_output=True, text=True, timeout=600)


def test_profile_front_writes_measured_figures_the_policy_uses(smoke_build_dir: Path, tmp_path: Path) -> None:
    front_path = smoke_build_dir / "front.json"
    out = tmp_path / "devices" / "here.yaml"
    proc = _cli("profile", "--front", str(front_path), "--out", str(out), "--max-seconds", "5",
                "--symbol-rate", "2e6", "--link-overhead-ms", "1.5")
    assert proc.returncode == 0, proc.stderr
    prof = load_profile(out)
    front = load_front(front_path)
    m = prof.measurements
    assert prof.name == "here" and m is not None and m.front_checksum == front.checksum
    assert {c.config_id for c in m.configs} == {c.id for c in front.configs}
    assert prof.symbol_rate_hz == 2e6 and prof.link_overhead_ms == 1.5  # the link stays an explicit option
    d = select(front, front.provenance.snr_grid_db[-1], 1e5, profile=prof)
    assert d.latency is not None and d.config_id is not None
    timing = next(c for c in m.configs if c.config_id == d.config_id)
    cfg = front.config(d.config_id)
    assert (d.latency.edge_ms, d.latency.server_ms) == (timing.edge.p90_ms, timing.server.p90_ms)
    assert d.latency.edge_source == d.latency.server_source == "measured"
    assert d.latency.transmit_ms == pytest.approx(1.5 + 1000 * cfg.channel_uses / 2e6)
    # Under a profile without measurements the same front is modelled, labelled as such.
    plain = prof.model_copy(update={"measurements": None})
    d2 = select(front, front.provenance.snr_grid_db[-1], 1e5, profile=plain)
    assert d2.latency is not None and d2.latency.edge_source == "modelled"
    c2 = front.config(str(d2.config_id))
    assert d2.latency.total_ms == pytest.approx(
        predict_latency(c2.gflops.edge, c2.gflops.server, c2.channel_uses, plain).total_ms)


def test_profile_front_compiled_times_the_compiled_forward_and_records_its_cost(
        smoke_build_dir: Path, tmp_path: Path) -> None:
    """``--compiled``: every fixed schedule is compiled once and timed compiled; the profile says so and
    the policy serves its figures as measured."""
    front_path = smoke_build_dir / "front.json"
    out = tmp_path / "compiled.yaml"
    proc = _cli("profile", "--front", str(front_path), "--out", str(out), "--max-seconds", "2", "--warmup", "1",
                "--compiled")
    assert proc.returncode == 0, proc.stderr
    front = load_front(front_path)
    prof = load_profile(out)
    m = prof.measurements
    assert m is not None and out.read_text().startswith(f"# Measured by `paretoctl profile --front {front_path} "
                                                        "--compiled`")
    assert all(c.mode == "compiled" and c.compile_s is not None and c.compile_s > 0 for c in m.configs)
    assert f"{len(front.configs)} compiled in" in proc.stdout
    d = select(front, front.provenance.snr_grid_db[-1], 1e5, profile=prof)
    assert d.latency is not None and d.latency.edge_source == "measured"


def test_profile_front_refuses_a_missing_front(tmp_path: Path) -> None:
    proc = _cli("profile", "--front", str(tmp_path / "nope.json"), "--out", str(tmp_path / "p.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "nope.json" in proc.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_sdk_calibrate_times_the_front_on_the_device_model_and_answers_offline_with_it(
        smoke_build_dir: Path, tmp_path: Path) -> None:
    """``client.calibrate(model)``: the device's own p90s back the cached answers and a loadable profile."""
    from paretoctl.client import ForeignModelError, PolicyClient
    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.timing import TimingSettings

    front_path = smoke_build_dir / "front.json"
    front = load_front(front_path)
    light = TimingSettings(warmup=1, min_runs=5, max_runs=5, max_seconds=10)
    client = PolicyClient("http://127.0.0.1:9", cache_dir=tmp_path / "cache", deadline_s=0.5)  # nothing listens
    with pytest.raises(Exception, match="no cached front"):
        client.calibrate(create_model(ModelSpec()), settings=light)
    client.cache.store(front_path.read_bytes(), None)
    foreign = create_model(ModelSpec())
    with torch_no_grad():
        next(foreign.parameters()).add_(1.0)  # the same architecture with other weights
    with pytest.raises(ForeignModelError, match="weights"):
        client.calibrate(foreign, settings=light)

    out = tmp_path / "devices" / "my-phone.yaml"
    prof = client.calibrate(create_model(ModelSpec()), settings=light, profile_path=out)
    assert prof.measurements is not None and prof.measurements.front_checksum == front.checksum
    assert {c.config_id for c in prof.measurements.configs} == {c.id for c in front.configs}
    assert load_profile(out) == prof and prof.name == "my-phone"  # loadable by the service as device=my-phone

    d = client.get_policy(front.provenance.snr_grid_db[-1], 1e5)  # the server is down: the cache answers
    assert d.source == "cache" and d.config_id is not None and d.latency is not None
    timing = next(c for c in prof.measurements.configs if c.config_id == d.config_id)
    assert (d.latency.edge_ms, d.latency.server_ms) == (timing.edge.p90_ms, timing.server.p90_ms)
    assert d.latency.edge_source == "measured"
    # A fresh client on the same cache directory finds the calibration on disk.
    again = PolicyClient("http://127.0.0.1:9", cache_dir=tmp_path / "cache", deadline_s=0.5)
    d2 = again.get_policy(front.provenance.snr_grid_db[-1], 1e5)
    assert d2.latency == d.latency


def test_sdk_calibrate_compiled_times_the_compiled_path_and_the_cache_answers_with_it(
        smoke_build_dir: Path, tmp_path: Path) -> None:
    """``client.calibrate(model, compiled=True)``: each fixed schedule is compiled once, timed compiled,
    and the cached answers serve those figures (the same front as the CLI test above: Inductor's cache
    is warm by then, so this costs seconds, not minutes)."""
    from paretoctl.client import PolicyClient
    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.timing import TimingSettings

    front_path = smoke_build_dir / "front.json"
    front = load_front(front_path)
    client = PolicyClient("http://127.0.0.1:9", cache_dir=tmp_path / "cache", deadline_s=0.5)
    client.cache.store(front_path.read_bytes(), None)
    prof = client.calibrate(create_model(ModelSpec()), compiled=True,
                            settings=TimingSettings(warmup=1, min_runs=5, max_runs=5, max_seconds=10))
    m = prof.measurements
    assert m is not None and {c.config_id for c in m.configs} == {c.id for c in front.configs}
    assert all(c.mode == "compiled" and c.compile_s is not None and c.compile_s > 0 for c in m.configs)
    d = client.get_policy(front.provenance.snr_grid_db[-1], 1e5)
    assert d.source == "cache" and d.latency is not None and d.latency.edge_source == "measured"
    timing = next(c for c in m.configs if c.config_id == d.config_id)
    assert (d.latency.edge_ms, d.latency.server_ms) == (timing.edge.p90_ms, timing.server.p90_ms)


def torch_no_grad() -> object:
    import torch

    return torch.no_grad()


# ------------------------------------------------------------------------- threshold configurations


def validation_images(front_path: Path, n: int) -> Any:
    """``n`` validation images ``[n, C, H, W]`` of the build that wrote ``front_path``."""
    import torch

    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.optimizer.config import parse_config
    from paretoctl.optimizer.executor import open_split

    cfg = parse_config(load_front(front_path).provenance.config)
    ds = open_split(cfg, "val", create_model(ModelSpec()))
    return torch.stack([torch.as_tensor(ds[i][0]) for i in range(n)])


def test_sdk_calibrate_times_threshold_configs_on_real_images(threshold_build_dir: Path, tmp_path: Path) -> None:
    """Threshold configurations are timed over the given images at batch 1; without images, refused."""
    import torch

    from paretoctl.client import ForeignModelError, PolicyClient
    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.timing import TimingSettings

    front_path = threshold_build_dir / "front.json"
    front = load_front(front_path)
    n_thr = sum(c.merging == "thresholds" for c in front.configs)
    assert 0 < n_thr < len(front.configs)
    light = TimingSettings(warmup=1, min_runs=5, max_runs=10, max_seconds=10)
    client = PolicyClient("http://127.0.0.1:9", cache_dir=tmp_path / "cache", deadline_s=0.5)  # nothing listens
    client.cache.store(front_path.read_bytes(), None)
    model = create_model(ModelSpec())
    with pytest.raises(ValueError, match=rf"^the front has {n_thr} threshold configuration\(s\).*pass images="):
        client.calibrate(model, settings=light)
    with pytest.raises(ValueError, match=r"images must be \[B, 1, 28, 28\] for this model, got \[2, 3, 28, 28\]"):
        client.calibrate(model, settings=light, images=torch.zeros(2, 3, 28, 28))
    foreign = create_model(ModelSpec())
    with torch.no_grad():
        next(foreign.parameters()).add_(1.0)
    images = validation_images(front_path, 8)
    with pytest.raises(ForeignModelError, match="weights"):
        client.calibrate(foreign, settings=light, images=images)

    prof = client.calibrate(model, settings=light, images=images)
    m = prof.measurements
    assert m is not None and {c.config_id for c in m.configs} == {c.id for c in front.configs}
    for timing in m.configs:
        cfg = front.config(timing.config_id)
        assert timing.r == tuple(cfg.r)
        if cfg.merging == "thresholds":  # one run per image at least: the spread across images is in the p90
            assert timing.edge.runs >= 8  # max(min_runs 5, min(8 images, max_runs 10))
    d = client.get_policy(front.provenance.snr_grid_db[-1], 1e5)  # answered offline with the calibration
    assert d.source == "cache" and d.latency is not None and d.config_id is not None
    timing = next(c for c in m.configs if c.config_id == d.config_id)
    assert (d.latency.edge_ms, d.latency.server_ms) == (timing.edge.p90_ms, timing.server.p90_ms)


def test_apply_a_real_threshold_decision_to_the_bundled_model(threshold_build_dir: Path) -> None:
    """A threshold decision of the real build, applied to the bundled model: its accuracy on the
    build's own validation images is in line with what the front says (same images, no channel)."""
    import torch

    from paretoctl.client import apply_policy
    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.patch import get_schedule, get_thresholds
    from paretoctl.optimizer.config import parse_config
    from paretoctl.optimizer.executor import open_split

    front_path = threshold_build_dir / "front.json"
    front = load_front(front_path)
    top = front.provenance.snr_grid_db[-1]
    d = next(d for d in (select(front, top, c.latency.total_ms) for c in front.configs) if d.merging == "thresholds")
    assert d.thresholds is not None and d.config_id is not None
    model = create_model(ModelSpec())
    apply_policy(model, d)
    assert get_thresholds(model) == tuple(d.thresholds)
    fixed = next(d for d in (select(front, top, c.latency.total_ms) for c in front.configs)
                 if d.merging == "proportions")
    apply_policy(model, fixed)
    assert get_thresholds(model) is None and list(get_schedule(model)) == fixed.r
    apply_policy(model, d)
    cfg = parse_config(front.provenance.config)
    ds = open_split(cfg, "val", model)
    images = torch.stack([torch.as_tensor(ds[i][0]) for i in range(len(ds))])
    labels = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
    with torch.inference_mode():
        hits = (model(images).argmax(-1) == labels).float().mean().item()
    # The front's validation accuracy at the top SNR (a nearly clean AWGN link) within 4 of its
    # stderrs plus 3 points for the link noise the clean forward pass does not have.
    want = front.config(d.config_id).accuracy_val["awgn"][-1]
    assert abs(hits - want.mean) <= 4 * want.stderr + 0.03, (hits, want)


def test_profile_front_times_threshold_configs_on_the_builds_images(threshold_build_dir: Path,
                                                                   tmp_path: Path) -> None:
    front_path = threshold_build_dir / "front.json"
    out = tmp_path / "devices" / "here.yaml"
    proc = _cli("profile", "--front", str(front_path), "--out", str(out), "--max-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    front = load_front(front_path)
    n_thr = sum(c.merging == "thresholds" for c in front.configs)
    assert f"; {n_thr} threshold configurations over 16 validation images" in proc.stdout
    prof = load_profile(out)
    assert prof.measurements is not None
    for timing in prof.measurements.configs:
        if front.config(timing.config_id).merging == "thresholds":
            assert timing.edge.runs >= 16  # every timing image at least once
    d = select(front, front.provenance.snr_grid_db[-1], 1e5, profile=prof)
    assert d.latency is not None and d.latency.edge_source == "measured"
