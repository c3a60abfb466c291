"""The policy on a front built (by the real build) with a digital link beside an analog one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config
from paretoctl.service.policy import config_latencies, select
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


def test_digital_decisions_say_where_their_compute_times_come_from(front: FrontArtifact) -> None:
    """The build timed every config, so edge and server are the measured p90s, labelled; the link is modelled."""
    m = front.device_profile.measurements
    assert m is not None
    d = select(front, 10.0, 1e6, channel=LABEL)
    assert d.latency is not None and d.config_id is not None
    timing = next(c for c in m.configs if c.config_id == d.config_id)
    assert (d.latency.edge_ms, d.latency.server_ms) == (timing.edge.p90_ms, timing.server.p90_ms)
    assert (d.latency.edge_source, d.latency.transmit_source, d.latency.server_source) == \
        ("measured", "modelled", "measured")


def test_weaker_link_within_the_same_budget_sends_fewer_bits(front: FrontArtifact) -> None:
    """Budget: what the best configuration takes at 20 dB. Lower the SNR until its (SNR-dependent)
    latency no longer fits; the policy then picks a configuration that sends fewer bits.

    Under the modelled profile (compute from GFLOPs): with the build's measured times a lightly
    merged schedule can take longer to compute than the unmerged one, and the policy may then
    rightly fall back to a configuration that sends more bits but computes faster.
    """
    profile = front.device_profile.model_copy(update={"measurements": None})
    everything = select(front, 20.0, 1e6, channel=LABEL, profile=profile)
    assert everything.latency is not None and everything.bits is not None
    old = everything.config_id or ""
    budget = everything.latency.total_ms  # the best configuration just fits at 20 dB
    assert select(front, 20.0, budget, channel=LABEL, profile=profile).config_id == old
    snr = 20.0
    while config_latencies(front, snr, LABEL, profile)[old] <= budget:
        snr -= 0.25
        assert snr > -30.0, "the 20 dB choice fits the budget at every SNR"
    # Checked independently: the old choice's compute plus its transmit time at this SNR is over budget.
    assert everything.latency.edge_ms + everything.latency.server_ms + _expected_transmit_ms(
        front, everything.bits, snr) > budget
    low = select(front, snr, budget, channel=LABEL, profile=profile)
    assert low.feasible, low.reason
    assert low.config_id != old and low.bits is not None and low.bits < everything.bits
    assert low.latency is not None and low.latency.total_ms <= budget


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


def test_policy_map_of_the_digital_channel(front: FrontArtifact) -> None:
    from paretoctl.plots.policy_grid import cell_edges, policy_grid

    pg = policy_grid(front, LABEL, width=7, height=7)
    assert pg.log_latency and not policy_grid(front, "awgn", width=3, height=3).log_latency
    ratios = [b / a for a, b in zip(pg.latencies, pg.latencies[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)  # geometric axis
    lo, hi = cell_edges(pg.latencies, 2, log=True)
    assert lo * hi == pytest.approx(pg.latencies[2] ** 2) and hi / lo == pytest.approx(ratios[0])
    for i, lat in enumerate(pg.latencies):
        for j, snr in enumerate(pg.snrs):
            d = select(front, snr, lat, channel=LABEL)
            assert (pg.choice[i][j] < 0) == (not d.feasible)
            if d.feasible:
                assert pg.ids[pg.choice[i][j]] == d.config_id
