"""A digital link on token tensors: uniform quantisation, then coded blocks that fade and may be lost.

The link's rate, outage and airtime, and what counts as overhead, are stated once, torch-free, in
:mod:`paretoctl.service.link`; this module simulates what arrives. Conventions (tested in
``tests/channel_sim/test_digital.py``):

1. **Quantiser.** Each transmission (one image's ``[N, D]`` tokens) is quantised on its own. With
   ``mu`` and ``sigma`` the mean and (population) standard deviation of its ``N * D`` reals, values
   are clipped to ``[lo, hi] = [mu - c sigma, mu + c sigma]`` (``c = clip_sigma``) and mapped to
   ``2 ** b`` uniform cells of width ``step = (hi - lo) / 2 ** b``; a value is rebuilt as the centre
   of its cell, ``lo + (q + 1/2) step``. Inside ``[lo, hi]`` the error is at most ``step / 2`` (its
   mean square is about ``step ** 2 / 12``); outside, the value is clipped. A constant tensor
   (``sigma = 0``) is rebuilt exactly. ``lo`` and ``step`` are the 64 header bits.
2. **Bit stream.** Token ``t`` occupies bits ``[t D b, (t + 1) D b)`` of the payload, in token order.
   Coded blocks of ``block_uses`` channel uses carry ``R * block_uses`` bits each (``R`` from the
   SNR, :meth:`paretoctl.service.link.DigitalLink.rate_bits`), from the start of the payload; the
   side information (header, token sizes) follows and is assumed to arrive.
3. **Blocks.** Each block sees one fading gain ``h`` (drawn by
   :meth:`paretoctl.channel_sim.channels.RicianChannel.draw_gains`, so the statistics are the analog
   channels' own: ``E|h|^2 = 1``) and is lost iff ``|h|^2 < (2 ** R - 1) G / s``. Gains are
   independent across blocks and images. AWGN loses nothing.
4. **Loss.** ``retransmit``: lost blocks are sent again until they arrive, so the tokens arrive
   quantised and only the airtime grows (see :func:`simulate_transmissions`). ``zeros`` / ``mean``:
   every token with a bit in a lost block is replaced by zeros, or by the mean of the tokens of
   that image that did arrive (zeros if none did).
5. **SNR** is Es/N0 in dB, a float or a ``[B]`` tensor (one value per transmission), as for the
   analog channels. Randomness comes from ``generator`` (draws made on its device).

Example:
    >>> ch = DigitalChannel("rayleigh", bits=8, on_loss="mean")
    >>> rx = ch(torch.randn(4, 50, 128), snr_db=10.0, generator=torch.Generator().manual_seed(0))
    >>> rx.shape
    torch.Size([4, 50, 128])
"""

from __future__ import annotations

import math
from typing import Any

import torch

from paretoctl.channel_sim.channels import Channel, RicianChannel, SnrDb, _check_tokens, _snr_per_sample
from paretoctl.service.link import DigitalLink

__all__ = ["DigitalChannel", "dequantise", "quantise", "simulate_transmissions"]

_MAX_DRAWS = 1 << 22
"""Fading draws per chunk of images (bounds memory when a low SNR makes blocks tiny)."""


def quantise(x: torch.Tensor, bits: int, clip_sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform ``bits``-bit quantisation of each row, clipped at mean +- ``clip_sigma`` std.

    Args:
        x: ``[B, M]`` real values, one transmission per row.
        bits: bits per value ``b``.
        clip_sigma: clip half-width ``c`` in standard deviations of the row.

    Returns:
        ``(codes [B, M] int64 in [0, 2 ** b), lo [B], step [B])``; ``step`` is 0 for a constant row.
    """
    mu = x.mean(dim=1)
    sigma = x.std(dim=1, unbiased=False)
    lo = mu - clip_sigma * sigma
    step = 2.0 * clip_sigma * sigma / (1 << bits)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.floor((x - lo[:, None]) / safe[:, None]).clamp_(0, (1 << bits) - 1).to(torch.int64)
    return codes, lo, step


def dequantise(codes: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cell centres ``lo + (q + 1/2) step`` (exactly ``lo`` = the mean for a constant row)."""
    return (lo[:, None] + (codes.to(lo.dtype) + 0.5) * step[:, None]).to(dtype)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def simulate_transmissions(link: DigitalLink, snr_db: float, num_blocks: int,
                           generator: torch.Generator | None = None, max_rounds: int = 10_000) -> torch.Tensor:
    """Transmissions each of ``num_blocks`` blocks needs until it arrives (retransmitting lost ones).

    Every round draws a fresh, independent gain for each block still pending, so the count is
    geometric with mean ``1 / (1 - P_out)``. Used to check the airtime formula by Monte Carlo.

    Returns:
        ``[num_blocks]`` int64 counts (>= 1).
    """
    fader = RicianChannel(k_factor=link.k_factor) if link.fading != "awgn" else None
    counts = torch.ones(num_blocks, dtype=torch.int64)
    if fader is None:
        return counts
    threshold = _threshold(link, snr_db)
    pending = torch.arange(num_blocks)
    for _ in range(max_rounds):
        if pending.numel() == 0:
            break
        power = fader.draw_gains(1, pending.numel(), generator, real_dtype=torch.float64).abs().square()[0]
        lost = power < threshold
        pending = pending[lost]
        counts[pending] += 1
    return counts


def _threshold(link: DigitalLink, snr_db: float) -> float:
    """``(2 ** R - 1) G / s``: the least ``|h|^2`` at which a block decodes."""
    return math.expm1(link.rate_bits(snr_db) * math.log(2.0)) * link.gap / 10.0 ** (snr_db / 10.0)


class DigitalChannel(Channel):
    """Quantise tokens, send them in coded fading blocks, replace or resend what is lost.

    Args:
        fading: ``awgn``, ``rayleigh`` or ``rician``.
        **params: the :class:`paretoctl.service.link.DigitalLink` fields (``bits``, ``clip_sigma``,
            ``gap_db``, ``rate``, ``outage_target``, ``block_uses``, ``on_loss``, ``k_factor``).
    """

    kind = "digital"

    def __init__(self, fading: str, **params: Any) -> None:
        super().__init__()
        if fading == "rician":
            params.setdefault("k_factor", 4.0)
        self.link = DigitalLink(fading=fading, **params)  # type: ignore[arg-type]
        self._fader = RicianChannel(k_factor=self.link.k_factor) if self.link.fading != "awgn" else None

    def forward(self, tokens: torch.Tensor, snr_db: SnrDb, generator: torch.Generator | None = None, *,
                positions: torch.Tensor | None = None, grid_tokens: int | None = None,
                num_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Send ``[B, N, D]`` tokens (or any ``[B, ..., D]``) and return what the server rebuilds.

        ``positions``/``grid_tokens`` (the analog channels' common random numbers) are not supported
        (``supports_positions`` is False) and refused when given; so are padded batches
        (``num_tokens``, input-adaptive merging), whose quantiser range and airtime would differ per
        image: a build refuses threshold merging over a digital link before it starts.

        Returns:
            The dequantised tokens, lost ones replaced (``zeros``/``mean``); same shape and dtype.
        """
        if positions is not None or grid_tokens is not None:
            raise ValueError("a digital link takes no positions/grid_tokens (supports_positions is False)")
        if num_tokens is not None:
            raise ValueError("a digital link does not take padded batches (num_tokens): threshold merging "
                             "is supported on analog links only")
        _check_tokens(tokens)
        if tokens.ndim < 2:
            raise ValueError(f"tokens must be [B, ..., D] with a token width D, got shape {tuple(tokens.shape)}")
        batch, width = tokens.shape[0], tokens.shape[-1]
        snr = _snr_per_sample(snr_db, batch, torch.device("cpu"), torch.float64)
        work = tokens.reshape(batch, -1).to(_work_dtype(tokens.dtype))
        codes, lo, step = quantise(work, self.link.bits, self.link.clip_sigma)
        rebuilt = dequantise(codes, lo, step, work.dtype).view(batch, -1, width)
        if self._fader is not None and self.link.on_loss != "retransmit":
            lost = self.lost_tokens(rebuilt.shape[1], width, snr.tolist(), generator).to(rebuilt.device)
            rebuilt = self._substitute(rebuilt, lost)
        return rebuilt.reshape(tokens.shape).to(tokens.dtype)

    def _substitute(self, tokens: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        """Replace the ``lost [B, N]`` tokens of ``tokens [B, N, D]`` by zeros or the arrived mean."""
        keep = (~lost).unsqueeze(-1).to(tokens.dtype)
        if self.link.on_loss == "zeros":
            return tokens * keep
        arrived = keep.sum(dim=1).clamp_min(1.0)
        mean = (tokens * keep).sum(dim=1) / arrived  # [B, D]; zeros when nothing arrived
        return tokens * keep + mean[:, None, :] * (1.0 - keep)

    def lost_tokens(self, num_tokens: int, width: int, snr_db: list[float],
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Which tokens have a bit in a lost block, ``[B, num_tokens]`` bool, one row per SNR given.

        Block ``j`` of image ``i`` carries payload bits ``[j R_i L, (j + 1) R_i L)``; token ``t`` is
        lost iff one of the blocks holding its bits ``[t D b, (t + 1) D b)`` is.
        """
        if self._fader is None:
            return torch.zeros(len(snr_db), num_tokens, dtype=torch.bool)
        token_bits = width * self.link.bits
        total_bits = num_tokens * token_bits
        rate = {s: self.link.rate_bits(s) for s in set(snr_db)}
        block_bits = torch.tensor([rate[s] * self.link.block_uses for s in snr_db], dtype=torch.float64)
        threshold = torch.tensor([_threshold(self.link, s) for s in snr_db], dtype=torch.float64)
        blocks = torch.ceil(total_bits / block_bits).to(torch.int64)  # [B]
        t = torch.arange(num_tokens, dtype=torch.float64)
        first = torch.floor(t[None] * token_bits / block_bits[:, None]).to(torch.int64)
        last = torch.floor(((t[None] + 1) * token_bits - 1) / block_bits[:, None]).to(torch.int64)
        out = torch.empty(len(snr_db), num_tokens, dtype=torch.bool)
        start = 0
        while start < len(snr_db):
            width_blocks = int(blocks[start])
            stop = start + 1
            while stop < len(snr_db) and (stop - start + 1) * max(width_blocks, int(blocks[stop])) <= _MAX_DRAWS:
                width_blocks = max(width_blocks, int(blocks[stop]))
                stop += 1
            h = self._fader.draw_gains(stop - start, width_blocks, generator, real_dtype=torch.float64)
            lost = (h.abs().square() < threshold[start:stop, None]).to(torch.int64)
            seen = torch.nn.functional.pad(lost.cumsum(dim=1), (1, 0))  # lost blocks before j
            hits = seen.gather(1, last[start:stop] + 1) - seen.gather(1, first[start:stop])
            out[start:stop] = hits > 0
            start = stop
        return out

    def transmit_symbols(self, symbols: torch.Tensor, snr_db: SnrDb, generator: torch.Generator | None = None,
                         *, reals_per_token: int | None = None) -> torch.Tensor:
        """Not defined: a digital link sends bits, not the caller's symbols."""
        raise NotImplementedError("a digital link quantises tokens; call it on tokens, not symbols")

    def extra_repr(self) -> str:
        ln = self.link
        return (f"fading={ln.fading!r}, bits={ln.bits}, clip_sigma={ln.clip_sigma}, gap_db={ln.gap_db}, "
                f"rate={ln.rate!r}, outage_target={ln.outage_target}, block_uses={ln.block_uses}, "
                f"on_loss={ln.on_loss!r}, k_factor={ln.k_factor}")
