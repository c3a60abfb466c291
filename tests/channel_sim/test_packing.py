"""Packing, power normalisation and the channel-use count."""

from __future__ import annotations

import math

import pytest
import torch

from paretoctl.channel_sim import make_channel
from paretoctl.channel_sim.packing import channel_uses, pack, unpack

SHAPES = [(3,), (2, 5), (4, 1), (2, 3, 5), (4, 50, 128), (2, 1, 1, 7), (1, 9, 2, 3)]


@pytest.mark.parametrize(
    ("num_tokens", "dim", "expected"),
    [
        (50, 128, 3200 + 26),  # bundled model, no merging: 6400 reals; 50 sizes + 1 scale = 51 reals
        (1, 1, 1 + 1),
        (3, 3, 5 + 2),  # 9 reals -> 5 symbols (one pad); 4 side reals -> 2
        (17, 7, 60 + 9),  # 119 reals -> 60; 18 side reals -> 9
        (26, 128, 1664 + 14),  # 27 side reals -> 14
        (0, 128, 0 + 1),  # nothing but the scale
    ],
)
def test_channel_uses_hand_computed(num_tokens: int, dim: int, expected: int) -> None:
    assert channel_uses(num_tokens, dim) == expected


@pytest.mark.parametrize(("num_tokens", "dim"), [(-1, 4), (4, 0), (2.0, 4), (True, 4), (4, "8")])
def test_channel_uses_rejects_bad_arguments(num_tokens: object, dim: object) -> None:
    with pytest.raises(ValueError):
        channel_uses(num_tokens, dim)  # type: ignore[arg-type]


def test_pack_hand_computed_energy_is_the_square() -> None:
    # (3 + 4j, 0): energy per symbol (|3 + 4j|^2 + 0) / 2 = 12.5. An L2-norm "power" would give 2.5.
    packed = pack(torch.tensor([[3.0, 4.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.0]]))
    torch.testing.assert_close(packed.scale, torch.tensor([math.sqrt(12.5), math.sqrt(7.0)]))
    expected = torch.tensor([[3 + 4j, 0j], [1 + 2j, 3 + 0j]], dtype=torch.complex64)
    torch.testing.assert_close(packed.symbols, expected / packed.scale[:, None])


def test_pack_pads_odd_length_with_one_zero() -> None:
    # [1, 2, 3] -> (1 + 2j, 3 + 0j): Es = (5 + 9) / 2 = 7, the pad counted as a symbol.
    packed = pack(torch.tensor([[1.0, 2.0, 3.0]]))
    assert packed.symbols.shape == (1, 2)
    torch.testing.assert_close(packed.scale, torch.tensor([math.sqrt(7.0)]))
    assert packed.symbols[0, 1].imag == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("amplitude", [1e-3, 1.0, 1e3])
def test_unit_energy_per_sample_and_exact_round_trip(shape: tuple[int, ...], amplitude: float) -> None:
    g = torch.Generator().manual_seed(1)
    # Different scale per sample, so a batch-wide normalisation would fail.
    per_sample = torch.logspace(-1, 1, shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
    x = torch.randn(shape, generator=g) * amplitude * per_sample
    packed = pack(x)
    assert packed.symbols.shape == (shape[0], math.ceil(math.prod(shape[1:]) / 2))
    energy = packed.symbols.abs().square().mean(dim=1)
    torch.testing.assert_close(energy, torch.ones(shape[0]), rtol=1e-5, atol=0)
    torch.testing.assert_close(unpack(packed.symbols, packed, x.dtype), x, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
@pytest.mark.parametrize("shape", SHAPES)
def test_channel_transmits_unit_energy_and_restores_scale(kind: str, shape: tuple[int, ...]) -> None:
    channel = make_channel(kind)
    seen: list[torch.Tensor] = []
    core = channel.transmit_symbols

    def spy(symbols: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(symbols)
        return core(symbols, *args, **kwargs)  # type: ignore[arg-type]

    channel.transmit_symbols = spy  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g) * torch.logspace(-2, 2, shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
    y = channel(x, 200.0, generator=g)
    (symbols,) = seen
    torch.testing.assert_close(symbols.abs().square().mean(dim=1), torch.ones(shape[0]), rtol=1e-5, atol=0)
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6 * float(x.abs().max()))


def test_all_zero_sample_stays_zero_without_nan() -> None:
    x = torch.zeros(2, 4, 6)
    x[1] = 1.0
    y = make_channel("rayleigh", equaliser="mmse")(x, 10.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all()
    # The zero sample gets noise at unit-energy scale (scale 1), never NaN; the other is restored closely.
    assert y[0].abs().max() < 10
