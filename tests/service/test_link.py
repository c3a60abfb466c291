"""The digital link's rate, outage and airtime against closed forms and a torch-free Monte Carlo."""

from __future__ import annotations

import math
import random

import pytest

from paretoctl.service.latency import digital_transmit_ms
from paretoctl.service.link import (
    HEADER_BITS,
    DigitalLink,
    fading_cdf,
    fading_quantile,
    link_from_channel,
    payload_bits,
    size_bits,
)
from paretoctl.service.schema import DeviceProfile


def _db(x: float) -> float:
    return 10.0 * math.log10(x)


def test_rayleigh_outage_closed_form() -> None:
    # P_out = 1 - exp(-(2^R - 1) G / s): R = 1, s = 1 (0 dB), G = 1 gives 1 - 1/e.
    assert DigitalLink("rayleigh", gap_db=0.0, rate=1.0).outage(0.0) == pytest.approx(1 - math.exp(-1), rel=1e-12)
    # R = 2, s = 10 (10 dB), G = 2 (3.0103 dB): 1 - exp(-3 * 2 / 10).
    link = DigitalLink("rayleigh", gap_db=_db(2.0), rate=2.0)
    assert link.outage(10.0) == pytest.approx(1 - math.exp(-0.6), rel=1e-12)
    assert link.expected_transmissions(10.0) == pytest.approx(math.exp(0.6), rel=1e-12)
    assert link.goodput(10.0) == pytest.approx(2.0 * math.exp(-0.6), rel=1e-12)


def test_awgn_rate_is_shannon_with_gap_and_never_lost() -> None:
    link = DigitalLink("awgn", gap_db=_db(3.0))
    assert link.rate_bits(_db(21.0)) == pytest.approx(math.log2(1 + 7.0), rel=1e-12)  # log2(1 + 21/3) = 3
    assert link.outage(-10.0) == 0.0 and link.expected_transmissions(0.0) == 1.0
    assert link.airtime_uses(3000, _db(21.0)) == pytest.approx(1000.0, rel=1e-12)


@pytest.mark.parametrize("k", [0.0, 1.0, 4.0, 10.0])
def test_adaptive_rate_hits_the_outage_target(k: float) -> None:
    fading = "rayleigh" if k == 0 else "rician"
    link = DigitalLink(fading, k_factor=k, outage_target=0.05, gap_db=2.0)  # type: ignore[arg-type]
    for snr in (-5.0, 3.0, 20.0):
        assert link.outage(snr) == pytest.approx(0.05, abs=1e-9)
    if k == 0:  # R = log2(1 + (-ln(1 - eps)) s / G) in closed form
        s, g = 10 ** 0.3, 10 ** 0.2
        assert link.rate_bits(3.0) == pytest.approx(math.log2(1 - math.log(0.95) * s / g), rel=1e-12)


@pytest.mark.parametrize("k", [0.0, 2.0, 6.0])
def test_fading_cdf_against_monte_carlo(k: float) -> None:
    """|h|^2 with h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1), drawn with the standard library."""
    rng = random.Random(1)
    n = 200_000
    los, sd = math.sqrt(k / (k + 1)), math.sqrt(0.5 / (k + 1))
    power = [(los + rng.gauss(0, sd)) ** 2 + rng.gauss(0, sd) ** 2 for _ in range(n)]
    for x in (0.05, 0.3, 1.0, 2.0):
        p = fading_cdf(x, k)
        freq = sum(v < x for v in power) / n
        assert abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-4, (x, freq, p)


def test_fading_cdf_limits_and_quantile() -> None:
    assert fading_cdf(0.7, 0.0) == pytest.approx(1 - math.exp(-0.7), rel=1e-12)
    assert fading_cdf(0.0, 3.0) == 0.0 and fading_cdf(0.99, math.inf) == 0.0 and fading_cdf(1.01, math.inf) == 1.0
    for k in (0.0, 0.5, 5.0, 50.0):
        assert fading_cdf(fading_quantile(0.2, k), k) == pytest.approx(0.2, abs=1e-10)


def test_outage_monte_carlo_fixed_rate() -> None:
    """Per-block outage and delivered rate (R (1 - P_out)) from simulated Rayleigh blocks."""
    rng = random.Random(7)
    link = DigitalLink("rayleigh", gap_db=3.0, rate=2.5)
    snr = 12.0
    threshold = (2 ** 2.5 - 1) * 10 ** 0.3 / 10 ** 1.2
    n = 100_000
    lost = sum(rng.expovariate(1.0) < threshold for _ in range(n))
    p = link.outage(snr)
    assert abs(lost / n - p) <= 4 * math.sqrt(p * (1 - p) / n)
    assert 2.5 * (n - lost) / n == pytest.approx(link.goodput(snr), abs=4 * 2.5 * math.sqrt(p * (1 - p) / n))


def test_payload_bits_hand_counted() -> None:
    assert size_bits(49) == 6 and size_bits(1) == 0 and size_bits(64) == 6 and size_bits(65) == 7
    # 50 tokens of 128 reals at 8 bits, sizes in 6 bits, 64 header bits.
    assert payload_bits(50, 128, 8, 49) == 50 * 1024 + 50 * 6 + HEADER_BITS == 51564
    assert payload_bits(0, 128, 8, 49) == HEADER_BITS


def test_transmit_ms_uses_profile_symbol_rate() -> None:
    profile = DeviceProfile(name="p", edge_gflops_per_s=1, server_gflops_per_s=1, symbol_rate_hz=2e6,
                            link_overhead_ms=5.0)
    link = DigitalLink("rayleigh", gap_db=0.0, rate=1.0)
    # 1e6 bits at R = 1: 1e6 uses, times e (P_out = 1 - 1/e at 0 dB), at 2e6 symbols/s.
    assert digital_transmit_ms(1e6, 0.0, link, profile) == pytest.approx(5.0 + 500.0 * math.e, rel=1e-12)
    # Lost blocks replaced, not resent: one transmission.
    subst = DigitalLink("rayleigh", gap_db=0.0, rate=1.0, on_loss="zeros")
    assert digital_transmit_ms(1e6, 0.0, subst, profile) == pytest.approx(505.0, rel=1e-12)


def test_link_from_channel() -> None:
    assert link_from_channel("rayleigh", {"block": "token"}) is None
    assert link_from_channel("awgn", {"link": "analog"}) is None
    link = link_from_channel("rician-k4-digital", {"link": "digital", "bits": 4})
    assert link is not None and link.fading == "rician" and link.k_factor == 4.0 and link.bits == 4
    with pytest.raises(ValueError, match="bits: must be an int in"):
        link_from_channel("awgn-digital", {"link": "digital", "bits": 0})
    with pytest.raises(ValueError, match="unknown \\['block'\\]"):
        link_from_channel("rayleigh-digital", {"link": "digital", "block": "token"})
    with pytest.raises(ValueError, match="link: must be"):
        link_from_channel("awgn", {"link": "optical"})
    with pytest.raises(ValueError, match="rate: a fixed rate needs a fading channel"):
        DigitalLink("awgn", rate=2.0)
    with pytest.raises(ValueError, match="kind: a digital link needs"):
        link_from_channel("ideal-digital", {"link": "digital"})
