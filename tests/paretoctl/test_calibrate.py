"""``paretoctl profile --front``: re-time a real front, write a profile the policy loads by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def torch_no_grad() -> object:
    import torch

    return torch.no_grad()
