"""Closed-form BER, the modulations, and simulated BER through the channels' complex core."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from paretoctl.channel_sim import make_channel
from paretoctl.channel_sim.channels import AWGNChannel
from paretoctl.channel_sim.check import MIN_EXPECTED_ERRORS, Z_MAX, Curve, count_bit_errors, run_check
from paretoctl.channel_sim.modulation import BITS_PER_SYMBOL, demodulate, modulate
from paretoctl.channel_sim.theory import (
    ber_16qam_awgn,
    ber_16qam_awgn_exact,
    ber_bpsk_awgn,
    ber_bpsk_rayleigh,
    ber_qpsk_awgn,
    ber_qpsk_rayleigh,
    ebn0_db,
    theory_ber,
)

# -- closed forms, against hand-computed values ------------------------------------------------------


def test_theory_hand_computed_values() -> None:
    assert ber_bpsk_awgn(0.0) == pytest.approx(0.5 * math.erfc(1.0))  # 0.0786496
    assert ber_bpsk_awgn(0.0) == pytest.approx(0.0786496, abs=1e-7)
    assert ber_bpsk_awgn(9.5879) == pytest.approx(1.0e-5, rel=1e-3)  # the textbook point
    # QPSK at Es/N0 = BPSK at Es/N0 - 3.01 dB (Eb = Es / 2).
    assert ber_qpsk_awgn(10 * math.log10(2)) == pytest.approx(ber_bpsk_awgn(0.0))
    assert ber_bpsk_rayleigh(0.0) == pytest.approx(0.5 * (1 - math.sqrt(0.5)))  # 0.1464466
    assert ber_bpsk_rayleigh(30.0) == pytest.approx(1 / (4 * 1000), rel=2e-3)  # high-SNR 1 / (4 gamma)
    assert ber_qpsk_rayleigh(10 * math.log10(2)) == pytest.approx(ber_bpsk_rayleigh(0.0))
    # 16-QAM: a = sqrt(Es / 5N0) = 1 at Es/N0 = 10 log10 5; approx (3/4) Q(1) = 0.118997.
    q = lambda x: 0.5 * math.erfc(x / math.sqrt(2))  # noqa: E731
    assert ber_16qam_awgn(10 * math.log10(5)) == pytest.approx(0.75 * q(1.0))
    assert ber_16qam_awgn_exact(10 * math.log10(5)) == pytest.approx((3 * q(1) + 2 * q(3) - q(5)) / 4)
    assert ber_16qam_awgn(0.0) < ber_16qam_awgn_exact(0.0)  # the approximation drops far errors
    assert ber_16qam_awgn(14.0) == pytest.approx(ber_16qam_awgn_exact(14.0), rel=1e-4)
    assert ebn0_db(10.0, 4) == pytest.approx(10 - 6.0206, abs=1e-4)


def test_theory_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        ber_bpsk_awgn(math.nan)
    with pytest.raises(ValueError, match="no closed-form"):
        theory_ber("16qam", "rayleigh", 10.0)


# -- modulations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bpsk", "qpsk", "16qam"])
def test_constellation_gray_unit_energy_round_trip(scheme: str) -> None:
    k = BITS_PER_SYMBOL[scheme]
    bits = torch.tensor(list(itertools.product([0, 1], repeat=k))).reshape(-1)  # every symbol once
    points = modulate(bits, scheme)
    assert points.shape == (2**k,) and points.dtype == torch.complex64
    assert len(torch.unique(torch.view_as_real(points), dim=0)) == 2**k
    assert points.abs().square().mean().item() == pytest.approx(1.0)  # unit energy over uniform bits
    assert torch.equal(demodulate(points, scheme), bits)
    # Gray: nearest neighbours differ in exactly one bit.
    labels = bits.reshape(-1, k)
    dist = (points[:, None] - points[None, :]).abs()
    dist.fill_diagonal_(math.inf)
    for i in range(2**k):
        for j in torch.nonzero(dist[i] < dist[i].min() + 1e-6).flatten():
            assert int((labels[i] != labels[j]).sum()) == 1


def test_16qam_hand_mapping() -> None:
    s = 1 / math.sqrt(10)
    got = modulate(torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0]), "16qam")
    torch.testing.assert_close(got, torch.tensor([3 * s + 3j * s, 1 * s - 1j * s, -1 * s - 3j * s],
                                                 dtype=torch.complex64))


def test_modulation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown modulation"):
        modulate(torch.zeros(4), "8psk")
    with pytest.raises(ValueError, match="divisible by 4"):
        modulate(torch.zeros(6), "16qam")


# -- simulated BER against theory ----------------------------------------------------------------------
# Tolerance (see paretoctl.channel_sim.check): |errors - n p| <= 5 sqrt(k n p), where k n p bounds the variance of
# the error count even when the k bits of a symbol are dependent; a point is judged only when theory
# expects >= 100 errors, so the normal approximation holds. False-failure probability < 6e-7 a point.

CASES = [
    ("bpsk", "awgn", {}, [0.0, 4.0, 7.0]),
    ("qpsk", "awgn", {}, [0.0, 5.0, 9.0]),
    ("16qam", "awgn", {}, [2.0, 10.0, 15.0]),
    ("bpsk", "rayleigh", {}, [0.0, 10.0, 20.0]),
    ("qpsk", "rayleigh", {}, [5.0, 15.0, 25.0]),
    # Block length does not change the per-bit average, only the correlation between errors.
    ("qpsk", "rayleigh", {"block": 4}, [5.0, 15.0]),
    ("bpsk", "rayleigh", {"equaliser": "mmse"}, [3.0, 12.0]),  # sign decisions ignore MMSE's shrinkage
]


@pytest.mark.parametrize(("modulation", "kind", "params", "snrs"), CASES)
def test_simulated_ber_matches_theory(modulation: str, kind: str, params: dict[str, object],
                                      snrs: list[float]) -> None:
    channel = make_channel(kind, **params)
    k = BITS_PER_SYMBOL[modulation]
    g = torch.Generator().manual_seed(0)
    for snr in snrs:
        bits, errors = count_bit_errors(channel, modulation, snr, 400_000, g)
        p = theory_ber(modulation, kind, snr)
        assert bits * p >= MIN_EXPECTED_ERRORS, "test point too far down the curve to judge"
        z = (errors - bits * p) / math.sqrt(k * bits * p)
        assert abs(z) <= Z_MAX, f"{modulation}/{kind} at {snr} dB: BER {errors / bits:.3e} vs {p:.3e}"


@pytest.mark.parametrize("snr", [2.0, 6.0])
def test_rician_spans_awgn_to_rayleigh(snr: float) -> None:
    g = torch.Generator().manual_seed(3)
    for k_factor, reference in ((1e9, ber_bpsk_awgn), (0.0, ber_bpsk_rayleigh)):
        bits, errors = count_bit_errors(make_channel("rician", k_factor=k_factor, los_phase="random"),
                                        "bpsk", snr, 400_000, g)
        p = reference(snr)
        assert abs(errors - bits * p) <= Z_MAX * math.sqrt(bits * p)
    # In between, BER falls strictly between the two.
    bits, errors = count_bit_errors(make_channel("rician", k_factor=4.0), "bpsk", snr, 400_000, g)
    assert ber_bpsk_awgn(snr) < errors / bits < ber_bpsk_rayleigh(snr)


class _WrongNoiseChannel(AWGNChannel):
    """The classic bug: noise variance N0 on each rail (2 N0 in total), i.e. a 3 dB SNR error."""

    def transmit_symbols(self, symbols, snr_db, generator=None, *, reals_per_token=None):  # type: ignore[no-untyped-def]
        return super().transmit_symbols(symbols, snr_db - 10 * math.log10(2), generator)


class _NoEqualiserChannel(AWGNChannel):
    """Rayleigh without equalisation: y = h x + n handed to the detector as is."""

    def transmit_symbols(self, symbols, snr_db, generator=None, *, reals_per_token=None):  # type: ignore[no-untyped-def]
        from paretoctl.channel_sim.channels import RayleighChannel

        h = RayleighChannel().draw_gains(symbols.shape[0], symbols.shape[1], generator)
        return super().transmit_symbols(h * symbols, snr_db, generator)


@pytest.mark.parametrize(("bad", "channel_name"), [(_WrongNoiseChannel, "awgn"),
                                                   (_NoEqualiserChannel, "rayleigh")])
def test_check_catches_wrong_conventions(monkeypatch: pytest.MonkeyPatch, bad: type, channel_name: str) -> None:
    # The check must be able to fail: the same run with a broken channel flags points.
    import paretoctl.channel_sim.check as check

    monkeypatch.setattr(check, "make_channel", lambda kind, **params: bad())
    points = run_check(samples=100_000, seed=0, curves=[Curve("qpsk", channel_name, (0.0, 4.0, 8.0))])
    assert any(p.tested and not p.ok for p in points)


def test_run_check_passes_and_reports_untested_points() -> None:
    points = run_check(samples=50_000, seed=1, curves=[Curve("bpsk", "awgn", (0.0, 9.0)),
                                                     Curve("qpsk", "rayleigh", (10.0,))])
    assert [p.tested for p in points] == [True, False, True]  # 9 dB: 50k * 3.4e-5 < 100 errors
    assert all(p.ok for p in points)
    assert run_check(samples=50_000, seed=1, curves=[Curve("bpsk", "awgn", (3.0,))]) == \
        run_check(samples=50_000, seed=1, curves=[Curve("bpsk", "awgn", (3.0,))])
