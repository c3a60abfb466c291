"""Padded batches on the channel: padding is never sent, so real tokens meet what they would alone."""

from __future__ import annotations

import pytest
import torch

from paretoctl.channel_sim.channels import make_channel, padding_positions
from paretoctl.channel_sim.packing import pack


def _padded_batch(extra: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two samples of 5 and 3 real tokens (D = 4) padded to 5 + extra tokens, and their grid slots."""
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(2, 5, 4, generator=gen)
    tokens = torch.zeros(2, 5 + extra, 4)
    tokens[0, :5], tokens[1, :3] = real[0], real[1, :3]
    counts = torch.tensor([5, 3])
    slots = torch.tensor([[0, 2, 4, 6, 8], [0, 3, 7, 0, 0]])
    slots = torch.nn.functional.pad(slots, (0, extra))
    return tokens, counts, padding_positions(slots, counts, grid_tokens=10)


@pytest.mark.parametrize("kind,params", [("awgn", {}), ("rayleigh", {"block": "token"}),
                                         ("rayleigh", {"block": "symbol"}), ("rician", {"block": 3})])
def test_real_tokens_do_not_depend_on_how_much_padding_follows(kind: str, params: dict[str, object]) -> None:
    channel = make_channel(kind, **params)
    outs = []
    for extra in (0, 3):
        tokens, counts, slots = _padded_batch(extra)
        gen = torch.Generator().manual_seed(7)
        outs.append(channel(tokens, 5.0, gen, positions=slots, grid_tokens=10, num_tokens=counts))
    assert torch.equal(outs[0][0, :5], outs[1][0, :5]) and torch.equal(outs[0][1, :3], outs[1][1, :3])
    assert not torch.equal(outs[0][1, :3], _padded_batch(0)[0][1, :3])  # noise did reach the real tokens
    assert torch.equal(outs[1][1, 3:], torch.zeros(5, 4)) and torch.equal(outs[0][1, 3:], torch.zeros(2, 4))


def test_padding_slots_are_free_and_distinct() -> None:
    _, _, slots = _padded_batch(3)
    assert slots[1, :3].tolist() == [0, 3, 7]
    assert slots[1, 3:].tolist() == [1, 2, 4, 5, 6]  # the free slots of the grid, in order
    assert all(len(set(row.tolist())) == row.numel() for row in slots)


def test_power_is_normalised_over_the_real_tokens_only() -> None:
    tokens, counts, _ = _padded_batch(3)
    padded = pack(tokens, (counts * 4 + 1) // 2)
    alone = pack(tokens[1:, :3])
    torch.testing.assert_close(padded.scale[1], alone.scale[0], rtol=1e-6, atol=0)
    assert float(pack(tokens).scale[1]) < float(alone.scale[0])  # without the count, padding dilutes it


def test_full_count_equals_no_count_bit_for_bit() -> None:
    tokens = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    channel = make_channel("rayleigh", block="token")
    a = channel(tokens, 3.0, torch.Generator().manual_seed(2))
    b = channel(tokens, 3.0, torch.Generator().manual_seed(2), num_tokens=torch.tensor([6, 6, 6]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("counts,match", [(torch.tensor([7, 1]), r"\[0, 6\]"), (torch.tensor([1.0, 2.0]), "integer"),
                                          (torch.tensor([1]), r"\[B\] = \[2\]")])
def test_bad_counts_are_refused(counts: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_channel("awgn")(torch.randn(2, 6, 4), 3.0, num_tokens=counts)
