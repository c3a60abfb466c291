"""The policy on a front built (by the real build) with a digital link beside an analog one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, load_front

ROOT = Path(__file__).resolve().parents[2]
DIGITAL = {"kind": "rayleigh", "link": "digital", "bits": 8, "gap_db": 3.0, "outage_target": 0.1,
           "block_uses": 256, "on_loss": "retransmit"}
LABEL = "rayleigh-digital"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> FrontArtifact:
    """configs/smoke.yaml with an analog AWGN and a digital Rayleigh channel, 100 images per split."""
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "channel.kinds": [{"kind": "awgn"}, DIGITAL], "search.budget": 4, "search.initial": 4,
        "data.val_limit": 100, "data.test_limit": 100, "data.batch_size": 100})
    out = tmp_path_factory.mktemp("digital_build")
    return load_front(run_build(cfg, out))


def _expected_transmit_ms(front: FrontArtifact, bits: int, snr_db: float) -> float:
    """Independently: R = log2(1 + (-ln(1 - eps)) s / G) (Rayleigh eps-outage rate), 1 / (1 - eps) sends."""
    p = front.device_profile
    s, g = 10 ** (snr_db / 10), 10 ** 0.3
    rate = math.log2(1 - math.log(0.9) * s / g)
    return p.link_overhead_ms + 1000.0 * bits / (p.symbol_rate_hz * rate) / 0.9


def test_front_records_bits_and_link(front: FrontArtifact) -> None:
    specs = {c.kind: c.params for c in front.provenance.channels}
    assert set(specs) == {"awgn", LABEL} and specs[LABEL]["link"] == "digital" and specs[LABEL]["bits"] == 8
    for cfg in front.configs:  # tokens x (128 reals x 8 bits + 6 bits of size) + 64 header bits
        assert cfg.bits == {LABEL: cfg.tokens_sent * (128 * 8 + 6) + 64}


def test_transmit_time_follows_the_rate_at_the_reported_snr(front: FrontArtifact) -> None:
    for snr in (20.0, 13.7, 5.0, 0.0, -3.0):  # on, between, and below the grid (0, 10, 20)
        d = select(front, snr, 1e6, channel=LABEL)
        assert d.feasible and d.bits is not None and d.latency is not None
        assert d.latency.transmit_ms == pytest.approx(_expected_transmit_ms(front, d.bits, snr), rel=1e-9)
        assert d.link_outage == pytest.approx(0.1, abs=1e-9)
        cfg = front.config(d.config_id or "")
        assert d.latency.total_ms == pytest.approx(d.latency.edge_ms + d.latency.transmit_ms + d.latency.server_ms)
        assert d.latency.edge_ms == pytest.approx(cfg.latency.edge_ms)  # compute is the recorded one
    assert select(front, -3.0, 1e6, channel=LABEL).extrapolated


def test_weaker_link_within_the_same_budget_sends_fewer_bits(front: FrontArtifact) -> None:
    everything = select(front, 20.0, 1e6, channel=LABEL)
    assert everything.latency is not None and everything.bits is not None
    budget = everything.latency.total_ms  # the best configuration just fits at 20 dB
    high = select(front, 20.0, budget, channel=LABEL)
    assert high.config_id == everything.config_id
    snr = 20.0
    while snr > -10.0:
        snr -= 0.25
        low = select(front, snr, budget, channel=LABEL)
        if low.config_id != high.config_id:
            break
    else:
        pytest.fail("the 20 dB choice fits the budget at every SNR")
    assert low.feasible, low.reason
    assert low.bits is not None and low.bits < everything.bits
    assert low.latency is not None and low.latency.total_ms <= budget
    # The old choice no longer fits: its latency at this SNR is over the budget.
    old = front.config(everything.config_id or "")
    assert everything.latency.edge_ms + everything.latency.server_ms + _expected_transmit_ms(
        front, (old.bits or {})[LABEL], snr) > budget


def test_analog_channel_on_the_same_front_is_unchanged(front: FrontArtifact) -> None:
    for snr in (0.0, 10.0, 20.0):
        d = select(front, snr, 1e6, channel="awgn")
        assert d.bits is None and d.link_rate_bits_per_use is None and d.latency is not None
        assert d.latency == front.config(d.config_id or "").latency  # fixed, whatever the SNR


def test_nothing_fits_a_weak_link(front: FrontArtifact) -> None:
    fastest_high = select(front, 20.0, 1e6, channel=LABEL).fastest_latency_ms
    d = select(front, -10.0, fastest_high, channel=LABEL)
    assert not d.feasible and d.fastest_latency_ms > fastest_high and "at -10 dB" in (d.reason or "")


def test_a_digital_front_without_bits_is_refused(front: FrontArtifact) -> None:
    doc = front.model_dump(mode="json")
    doc["configs"][0]["bits"] = None
    with pytest.raises(ValueError, match=r"configs\[0\] .*\.bits: channels \[\] do not match"):
        FrontArtifact.model_validate(doc)
    doc = front.model_dump(mode="json")
    doc["provenance"]["channels"][1]["params"]["bits"] = 40
    with pytest.raises(ValueError, match=r"provenance.channels\[1\].params: bits: must be an int in \[1, 16\]"):
        FrontArtifact.model_validate(doc)
