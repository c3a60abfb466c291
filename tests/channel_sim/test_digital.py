"""The digital link simulator: quantiser bounds, block outage and retransmissions against closed forms,
and the bundled model's accuracy through a fine quantiser at high SNR."""

from __future__ import annotations

import math

import pytest
import torch

from paretoctl.channel_sim import DigitalChannel, make_channel
from paretoctl.channel_sim.digital import dequantise, quantise, simulate_transmissions
from paretoctl.service.link import DigitalLink


def test_quantiser_error_bound_and_mse() -> None:
    x = torch.randn(4, 100_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    codes, lo, step = quantise(x, bits=8, clip_sigma=4.0)
    sigma = x.std(dim=1, unbiased=False)
    assert torch.allclose(step, 8.0 * sigma / 256)  # (hi - lo) / 2^b = 2 c sigma / 2^b
    xq = dequantise(codes, lo, step, torch.float64)
    inside = (x >= lo[:, None]) & (x <= lo[:, None] + 256 * step[:, None])
    err = (xq - x)[inside].view(-1)
    assert bool(((xq - x).abs() <= step[:, None] / 2 + 1e-12)[inside].all())
    mse = float(err.square().mean())
    assert mse == pytest.approx(float(step.square().mean()) / 12, rel=0.02)  # uniform error on a fine grid


def test_quantiser_clips_and_rebuilds_constants() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0]])
    codes, lo, step = quantise(x, bits=2, clip_sigma=1.0)
    xq = dequantise(codes, lo, step, torch.float32)
    assert int(codes.max()) == 3 and float(xq[0, -1]) == pytest.approx(float(lo + 3.5 * step))  # top cell
    const = torch.full((2, 10), 3.25)
    c, lo, step = quantise(const, bits=4, clip_sigma=4.0)
    assert torch.equal(dequantise(c, lo, step, torch.float32), const)


def test_token_loss_matches_independent_blocks() -> None:
    """Aligned blocks: D = 4 reals x 8 bits = 32 bits per token; R = 2 x 4 uses = 8 bits per block, so a
    token spans exactly 4 blocks and is lost with probability 1 - (1 - P_out)^4."""
    ch = DigitalChannel("rayleigh", bits=8, rate=2.0, block_uses=4, gap_db=0.0, on_loss="zeros")
    snr = 10.0
    p = 1 - math.exp(-3 / 10)
    lost = ch.lost_tokens(500, 4, [snr] * 200, torch.Generator().manual_seed(3))
    q = 1 - (1 - p) ** 4
    n = lost.numel()
    assert abs(float(lost.float().mean()) - q) <= 4 * math.sqrt(q * (1 - q) / n)
    # Tokens 2t and 2t + 1 share no block, so their losses are independent: P(both) = q^2.
    both = float((lost[:, 0::2] & lost[:, 1::2]).float().mean())
    assert abs(both - q * q) <= 4 * math.sqrt(q * q * (1 - q * q) / (n / 2))


def test_straddling_token_lost_with_either_block() -> None:
    """Blocks of 12 bits over tokens of 8 bits (D = 1, b = 8): token 1 holds bits 8..15 and so lies in
    blocks 0 and 1. With P_out = p, P(token 1 lost) = 1 - (1 - p)^2 and P(token 0 lost) = p."""
    ch = DigitalChannel("rayleigh", bits=8, rate=3.0, block_uses=4, gap_db=0.0, on_loss="zeros")
    p = ch.link.outage(15.0)
    lost = ch.lost_tokens(3, 1, [15.0] * 100_000, torch.Generator().manual_seed(5)).float().mean(dim=0)
    tol = 4 * math.sqrt(0.25 / 100_000)
    assert abs(float(lost[0]) - p) <= tol and abs(float(lost[1]) - (1 - (1 - p) ** 2)) <= tol


@pytest.mark.parametrize(("fading", "k"), [("rayleigh", 0.0), ("rician", 4.0)])
def test_retransmissions_and_average_rate(fading: str, k: float) -> None:
    link = DigitalLink(fading, k_factor=k, gap_db=3.0, rate=3.0)  # type: ignore[arg-type]
    snr = 15.0
    counts = simulate_transmissions(link, snr, 200_000, torch.Generator().manual_seed(1)).double()
    p = link.outage(snr)
    mean, sd = 1 / (1 - p), math.sqrt(p) / (1 - p)  # geometric
    assert abs(float(counts.mean()) - mean) <= 4 * sd / math.sqrt(counts.numel())
    delivered = 3.0 * counts.numel() / float(counts.sum())  # bits per channel use actually achieved
    assert delivered == pytest.approx(link.goodput(snr), rel=4 * sd / mean / math.sqrt(counts.numel()) + 1e-3)
    assert link.goodput(snr) == pytest.approx(3.0 * (1 - p), rel=1e-12)


def test_make_channel_routes_digital_links() -> None:
    ch = make_channel("rician", link="digital", bits=4, on_loss="mean")
    assert isinstance(ch, DigitalChannel) and ch.link.k_factor == 4.0 and ch.link.bits == 4
    assert not isinstance(make_channel("awgn", link="analog"), DigitalChannel)
    with pytest.raises(ValueError, match="digital link needs kind"):
        make_channel("ideal", link="digital")
    with pytest.raises(ValueError, match=r"unknown \['equaliser'\]"):
        make_channel("awgn", link="digital", equaliser="mmse")
    with pytest.raises(ValueError, match="link must be"):
        make_channel("awgn", link="optical")
    with pytest.raises(ValueError, match="on_loss"):
        make_channel("rayleigh", link="digital", on_loss="ignore")


def test_forward_keeps_shape_dtype_and_is_seeded() -> None:
    ch = make_channel("rayleigh", link="digital", bits=3, on_loss="mean", block_uses=16)
    x = torch.randn(6, 20, 8, dtype=torch.bfloat16)
    snr = torch.tensor([0.0, 0.0, 5.0, 5.0, 20.0, 20.0])
    a = ch(x, snr, generator=torch.Generator().manual_seed(2))
    b = ch(x, snr, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    # Over AWGN nothing is lost: the result is the quantised tensor itself.
    awgn = make_channel("awgn", link="digital", bits=3)
    codes, lo, step = quantise(x.float().reshape(6, -1), 3, 8.0)  # the default clip, +- 8 sigma
    expected = dequantise(codes, lo, step, torch.float32).view_as(x).to(x.dtype)
    assert torch.equal(awgn(x, -5.0), expected)


def test_zero_and_mean_substitutes() -> None:
    x = torch.randn(3, 40, 4, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(9)
    # 64 bits per token, 64 bits per block at R = 1: one token per block, P_out = 1 - exp(-10^-0.5) ~ 0.27.
    zeros = DigitalChannel("rayleigh", bits=16, rate=1.0, block_uses=64, gap_db=0.0, on_loss="zeros")
    lost = zeros.lost_tokens(40, 4, [5.0] * 3, torch.Generator().manual_seed(9))
    out = zeros(x, 5.0, generator=gen)
    assert bool(lost.any()) and bool((~lost).any())
    assert torch.equal(out[lost], torch.zeros_like(out[lost]))
    assert torch.allclose(out[~lost], x[~lost], atol=1e-3)  # 16-bit quantiser
    mean = DigitalChannel("rayleigh", bits=16, rate=1.0, block_uses=64, gap_db=0.0, on_loss="mean")
    out = mean(x, 5.0, generator=torch.Generator().manual_seed(9))
    for i in range(3):
        arrived = out[i][~lost[i]]
        assert torch.allclose(out[i][lost[i]], arrived.mean(dim=0).expand(int(lost[i].sum()), 4), atol=1e-6)


def test_high_snr_fine_quantiser_keeps_the_bundled_models_accuracy() -> None:
    """300 Fashion-MNIST test images through the bundled model split at block 3: a 12-bit digital link at
    40 dB (clipped at the default +- 8 sigma; lost blocks resent) gives the same predictions as no
    channel at all."""
    from paretoctl.models.data import load_fmnist
    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.patch import apply_merging
    from paretoctl.models.split import TokenState, edge_forward, server_forward

    model = apply_merging(create_model(ModelSpec()))
    test = load_fmnist().test
    images, labels = test.tensors[0][:300], test.tensors[1][:300]
    ch = make_channel("rayleigh", link="digital", bits=12)  # lost blocks are resent: nothing is lost
    with torch.inference_mode():
        state = edge_forward(model, images, 3)
        clean = server_forward(model, state, 3).argmax(-1)
        sent = ch(state.tokens, 40.0, generator=torch.Generator().manual_seed(0))
        digital = server_forward(model, TokenState(sent, state.size, None), 3).argmax(-1)
        coarse = ch.__class__("awgn", bits=1)(state.tokens, 40.0)
        worse = server_forward(model, TokenState(coarse, state.size, None), 3).argmax(-1)
    acc_clean = float((clean == labels).float().mean())
    assert acc_clean > 0.8
    assert float((digital == labels).float().mean()) == acc_clean and torch.equal(digital, clean)
    assert float((worse == labels).float().mean()) < acc_clean  # a 1-bit quantiser does cost accuracy
