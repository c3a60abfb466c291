"""Channel conventions: noise variance, fading power, blocks, equalisers, seeding, dtypes, errors.

Statistical tolerances are 5 standard deviations of the estimator, derived per test; under a normal
approximation a correct implementation fails such a check with probability ~6e-7.
"""

from __future__ import annotations

import math

import pytest
import torch

from paretoctl.channel_sim import make_channel
from paretoctl.channel_sim.channels import (
    AWGNChannel,
    Equaliser,
    IdealChannel,
    RayleighChannel,
    RicianChannel,
    noise_variance,
)

KINDS = ["ideal", "awgn", "rayleigh", "rician"]
# Every kind, block and equaliser combination that should be the identity at very high SNR.
CONFIGS = [
    ("ideal", {}),
    ("awgn", {}),
    ("awgn", {"equaliser": "mmse"}),
    *[("rayleigh", {"block": b, "equaliser": e}) for b in ("symbol", "token", "image", 7) for e in ("zf", "mmse")],
    *[("rician", {"k_factor": k, "block": b, "equaliser": e})
      for k, b in ((0.0, "symbol"), (3.0, "token"), (100.0, "image")) for e in ("zf", "mmse")],
    ("rician", {"k_factor": 2.0, "los_phase": "random"}),
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 23.0])
def test_noise_variance_is_n0_split_evenly(snr_db: float) -> None:
    n = 1 << 20  # complex samples (>= 1e6)
    n0 = 10 ** (-snr_db / 10)
    noise = AWGNChannel().transmit_symbols(torch.zeros(4, n // 4, dtype=torch.complex64), snr_db, gen())
    # |n|^2 = (N0/2) chi^2_2 has mean N0 and variance N0^2, so the mean of n samples has std N0/sqrt(n).
    # Each rail: re^2 = (N0/2) chi^2_1 has variance 2 (N0/2)^2, so its mean has std (N0/2) sqrt(2/n).
    # Tolerances: 5 std, i.e. 0.49% on N0 and 0.69% on each rail at n = 2^20.
    assert abs(noise.abs().square().mean().item() / n0 - 1) < 5 / math.sqrt(n)
    for rail in (noise.real, noise.imag):
        assert abs(rail.square().mean().item() / (n0 / 2) - 1) < 5 * math.sqrt(2 / n)
        assert abs(rail.mean().item()) < 5 * math.sqrt(n0 / 2 / n)  # zero mean, std sqrt(N0/2n)
    # Circular: E[re im] = 0; re im has variance (N0/2)^2.
    assert abs((noise.real * noise.imag).mean().item()) < 5 * (n0 / 2) / math.sqrt(n)


def test_noise_variance_helper() -> None:
    torch.testing.assert_close(noise_variance(torch.tensor([0.0, 10.0, -3.0])),
                               torch.tensor([1.0, 0.1, 10 ** 0.3]))


def test_token_snr_is_es_over_n0() -> None:
    # End to end: reals carry energy Es/2 each after normalisation and get noise N0/2 each, so the
    # ratio of token power to error power per sample is Es/N0 exactly in expectation.
    snr_db, n = 7.0, 1 << 20
    x = torch.randn(8, 64, n // 512, generator=gen(3)) * torch.arange(1, 9).reshape(8, 1, 1)
    err = make_channel("awgn")(x, snr_db, generator=gen(4)) - x
    ratio = x.square().mean(dim=(1, 2)) / err.square().mean(dim=(1, 2))
    # Error power per sample: mean of n/8 scaled chi^2_1 -> relative std sqrt(2 / (n / 8)) = 0.39%.
    torch.testing.assert_close(ratio, torch.full((8,), 10 ** (snr_db / 10)), rtol=5 * math.sqrt(16 / n), atol=0)


@pytest.mark.parametrize("k_factor", [0.0, 0.5, 1.0, 4.0, 10.0, 1e3, 1e6, math.inf])
@pytest.mark.parametrize("los_phase", [0.0, 1.0, "random"])
def test_fading_has_unit_mean_power(k_factor: float, los_phase: float | str) -> None:
    n = 1 << 20
    h = RicianChannel(k_factor, los_phase=los_phase).draw_gains(1, n, gen(5))  # type: ignore[arg-type]
    power = h.abs().square()
    # Var|h|^2 = (1 + 2K) / (1 + K)^2 <= 1 for Rician (1 for Rayleigh): 5 std of the mean <= 5/sqrt(n).
    assert abs(power.mean().item() - 1) < 5 / math.sqrt(n)
    los = 1.0 if math.isinf(k_factor) else math.sqrt(k_factor / (k_factor + 1))
    if los_phase == "random" or k_factor == 0:  # mean zero (uniform LOS phase, or no LOS)
        assert h.mean().abs().item() < 5 / math.sqrt(n)
    else:
        expected = los * complex(math.cos(float(los_phase)), math.sin(float(los_phase)))
        torch.testing.assert_close(h.mean(), torch.tensor(expected, dtype=torch.complex64),
                                   atol=5 / math.sqrt(n), rtol=0)
    if k_factor == 0:  # Rayleigh: circular, E h^2 = 0, and |h|^2 ~ Exp(1) so P(|h|^2 < 0.1) = 1 - e^-0.1
        assert (h * h).mean().abs().item() < 5 / math.sqrt(n)
        p = 1 - math.exp(-0.1)
        assert abs((power < 0.1).float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_rayleigh_is_rician_with_k_zero() -> None:
    h_ray = RayleighChannel().draw_gains(2, 100, gen(6))
    h_ric = RicianChannel(0.0).draw_gains(2, 100, gen(6))
    assert torch.equal(h_ray, h_ric)


@pytest.mark.parametrize(
    ("block", "shape", "expected_blocks"),
    [
        ("symbol", (2, 4, 6), 12),
        ("token", (2, 4, 6), 4),  # 3 symbols per token
        ("token", (2, 4, 5), 4),  # odd width: 10 symbols, each to the token of its real part
        ("image", (2, 4, 6), 1),
        (5, (2, 4, 6), 3),  # 12 symbols in blocks of 5: 5 + 5 + 2
    ],
)
def test_gain_is_held_for_a_block(block: object, shape: tuple[int, int, int], expected_blocks: int) -> None:
    channel = RayleighChannel(block=block)  # type: ignore[arg-type]
    num_symbols = math.ceil(shape[1] * shape[2] / 2)
    h = channel.symbol_gains(shape[0], num_symbols, gen(7), reals_per_token=shape[2])
    assert h is not None and h.shape == (shape[0], num_symbols)
    def distinct(values: torch.Tensor) -> int:
        return len(torch.unique(torch.view_as_real(values), dim=0))

    for row in h:
        assert distinct(row) == expected_blocks
    if block == "token":
        token_of_symbol = torch.arange(num_symbols) * 2 // shape[2]
        for t in range(shape[1]):
            assert distinct(h[0, token_of_symbol == t]) == 1
    assert not torch.equal(h[0], h[1])  # independent across transmissions


def test_token_block_needs_token_width() -> None:
    with pytest.raises(ValueError, match="reals_per_token"):
        RayleighChannel(block="token").transmit_symbols(torch.ones(1, 4, dtype=torch.complex64), 10.0)


@pytest.mark.parametrize(("kind", "params"), CONFIGS)
@pytest.mark.parametrize("shape", [(3, 50, 128), (2, 7), (5,), (2, 3, 3, 3)])
def test_very_high_snr_returns_the_input(kind: str, params: dict[str, object], shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=gen(8)) * 3
    y = make_channel(kind, **params)(x, 200.0, generator=gen(9))
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("kind", "params"), CONFIGS[1:])
def test_noise_actually_applied(kind: str, params: dict[str, object]) -> None:
    x = torch.randn(2, 10, 16, generator=gen(8))
    assert (make_channel(kind, **params)(x, 5.0, generator=gen(9)) - x).abs().mean() > 0.1


def test_mmse_beats_zf_and_matches_awgn_formula() -> None:
    x = torch.randn(8, 16384, generator=gen(10)).to(torch.complex64)
    x = x / x.abs().square().mean().sqrt()
    for snr_db in (0.0, 10.0):
        n0 = 10 ** (-snr_db / 10)
        mse = {eq: (RayleighChannel(equaliser=eq).transmit_symbols(x, snr_db, gen(11)) - x).abs().square().mean()
               for eq in ("zf", "mmse")}
        assert mse["mmse"] < mse["zf"]
        # AWGN with MMSE: E|x/(1+N0)(x+n) - x|^2 = N0/(1+N0) for unit-energy x; 5% covers sampling.
        awgn = (AWGNChannel("mmse").transmit_symbols(x, snr_db, gen(12)) - x).abs().square().mean().item()
        assert awgn == pytest.approx(n0 / (1 + n0), rel=0.05)
        zf = (AWGNChannel("zf").transmit_symbols(x, snr_db, gen(12)) - x).abs().square().mean().item()
        assert zf == pytest.approx(n0, rel=0.05)
        # A pure phase rotation (Rician K = inf, |h| = 1) must give the same two numbers after equalising.
        cases: tuple[tuple[Equaliser, float], ...] = (("mmse", n0 / (1 + n0)), ("zf", n0))
        for eq, expected in cases:
            rot = RicianChannel(math.inf, los_phase=0.7, equaliser=eq).transmit_symbols(x, snr_db, gen(12))
            assert (rot - x).abs().square().mean().item() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_different_seed_differs(kind: str) -> None:
    channel = make_channel(kind, **({"los_phase": "random"} if kind == "rician" else {}))
    x = torch.randn(4, 10, 32, generator=gen(13))
    a = channel(x, 5.0, generator=gen(1))
    b = channel(x, 5.0, generator=gen(1))
    assert torch.equal(a, b)
    c = channel(x, 5.0, generator=gen(2))
    if kind == "ideal":
        assert torch.equal(a, c)
    else:
        assert not torch.equal(a, c)


def test_global_generator_used_when_none() -> None:
    x = torch.randn(2, 8)
    torch.manual_seed(123)
    a = make_channel("awgn")(x, 0.0)
    torch.manual_seed(123)
    assert torch.equal(a, make_channel("awgn")(x, 0.0))


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
def test_per_sample_snr_matches_scalar_calls(kind: str) -> None:
    channel = make_channel(kind, equaliser="mmse")
    x = torch.randn(4, 64, 64, generator=gen(14))
    snr = torch.tensor([-5.0, 5.5, 17.0, 30.0])
    batch = channel(x, snr, generator=gen(15))
    for i, s in enumerate(snr.tolist()):
        # Same seed, scalar SNR: the draws are identical, so row i must match exactly.
        torch.testing.assert_close(channel(x, s, generator=gen(15))[i], batch[i], rtol=0, atol=0)
    # A 0-d tensor and a float agree too; per-sample SNR does change the noise level.
    assert torch.equal(channel(x, torch.tensor(3.0), generator=gen(15)), channel(x, 3.0, generator=gen(15)))
    err = (batch - x).square().mean(dim=(1, 2))
    assert err[0] > err[1] > err[2] > err[3]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_dtype_and_shape_are_kept(dtype: torch.dtype, kind: str) -> None:
    x = torch.randn(3, 50, 128, generator=gen(16)).to(dtype)
    y = make_channel(kind)(x, 20.0, generator=gen(17))
    assert y.dtype == dtype and y.shape == x.shape
    if kind != "ideal" and dtype != torch.float64:
        # float32 maths inside: the same draws give the float32 result, rounded to dtype once at the end.
        ref = make_channel(kind)(x.float(), 20.0, generator=gen(17))
        assert torch.equal(y, ref.to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
def test_cuda_matches_cpu_with_cpu_generator(kind: str) -> None:
    channel = make_channel(kind, **({} if kind == "awgn" else {"block": "token"}))
    x = torch.randn(4, 50, 128, generator=gen(18))
    cpu = channel(x, 10.0, generator=gen(19))
    # A CPU generator draws on the CPU, so the GPU result reproduces the CPU one.
    gpu = channel(x.cuda(), torch.full((4,), 10.0, device="cuda"), generator=gen(19))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    on_gpu = channel(x.cuda().bfloat16(), 10.0, generator=torch.Generator("cuda").manual_seed(0))
    assert on_gpu.dtype == torch.bfloat16 and on_gpu.device.type == "cuda" and on_gpu.shape == x.shape


@pytest.mark.parametrize("snr", [math.nan, math.inf, -math.inf, torch.tensor([1.0, math.nan]),
                                 torch.tensor([math.inf, 1.0])])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_snr_rejected(kind: str, snr: object) -> None:
    with pytest.raises(ValueError, match="snr_db must be finite"):
        make_channel(kind)(torch.ones(2, 4), snr)


@pytest.mark.parametrize("snr", [torch.zeros(3), torch.zeros(2, 1), "10", None, 1j, torch.tensor([True, False])])
def test_bad_snr_shape_or_type_rejected(snr: object) -> None:
    with pytest.raises(ValueError, match="snr_db"):
        make_channel("awgn")(torch.ones(2, 4), snr)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_tokens_rejected(kind: str, bad: float) -> None:
    x = torch.ones(2, 3, 4)
    x[1, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        make_channel(kind)(x, 10.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        make_channel(kind)(x.to(torch.bfloat16), 10.0)


@pytest.mark.parametrize("tokens", [torch.ones(2, 3, dtype=torch.int64), torch.ones(0, 3), torch.tensor(1.0)])
def test_bad_token_tensors_rejected(tokens: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="tokens"):
        make_channel("awgn")(tokens, 10.0)


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("awgm", {}, "unknown channel kind 'awgm'"),
        ("Rayleigh", {}, "unknown channel kind"),
        ("rician", {"k_factor": -0.1}, "k_factor must be >= 0"),
        ("rician", {"k_factor": math.nan}, "k_factor"),
        ("rician", {"k_factor": "4"}, "k_factor"),
        ("rayleigh", {"block": "frame"}, "block must be one of"),
        ("rayleigh", {"block": 0}, "block length must be >= 1"),
        ("rician", {"block": True}, "block must be one of"),
        ("rayleigh", {"equaliser": "lmmse"}, "equaliser must be one of"),
        ("awgn", {"equaliser": "ZF"}, "equaliser must be one of"),
        ("awgn", {"block": "token"}, "unknown"),
        ("rayleigh", {"k_factor": 3.0}, "unknown"),
        ("ideal", {"equaliser": "zf"}, "unknown"),
        ("rician", {"los_phase": "uniform"}, "los_phase"),
    ],
)
def test_bad_configuration_rejected(kind: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_channel(kind, **params)


def test_make_channel_builds_the_right_module() -> None:
    assert isinstance(make_channel("ideal"), IdealChannel)
    assert isinstance(make_channel("awgn"), AWGNChannel)
    ray = make_channel("rayleigh", block="image", equaliser="mmse")
    assert isinstance(ray, RayleighChannel) and ray.block == "image" and ray.equaliser == "mmse"
    ric = make_channel("rician", k_factor=10.0, block=4)
    assert isinstance(ric, RicianChannel) and ric.k_factor == 10.0 and ric.block == 4
    assert isinstance(ric, torch.nn.Module) and "k_factor=10.0" in repr(ric)


def test_ideal_returns_input_and_needs_no_snr() -> None:
    x = torch.randn(2, 3)
    assert make_channel("ideal")(x) is x
