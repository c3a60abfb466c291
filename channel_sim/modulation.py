"""Gray-coded BPSK, QPSK and 16-QAM with unit average symbol energy and hard-decision demodulation.

These exist to check the channels against :mod:`paretoctl.channel_sim.theory`: bits -> symbols ->
``channel.transmit_symbols`` -> bits. Conventions:

* Bits are 0/1 integers (or bools) in a tensor ``[..., n * k]``; symbols are ``[..., n]`` complex64.
* BPSK: ``0 -> +1``, ``1 -> -1`` (real axis). QPSK: ``(b0, b1) -> ((1 - 2 b0) + j (1 - 2 b1)) / sqrt 2``.
* 16-QAM: ``(b0, b1)`` pick the real rail and ``(b2, b3)`` the imaginary rail of Gray 4-PAM,
  level ``(1 - 2 b_sign)(3 - 2 b_inner)`` in ``{+3, +1, -1, -3}`` for ``00, 01, 11, 10``, scaled by
  ``1 / sqrt(10)`` so that ``E|s|^2 = 1`` over uniform bits.
* Demodulation is the nearest-point decision for these constellations given an unbiased estimate of
  the symbol (AWGN, or fading followed by zero-forcing). MMSE shrinks the amplitude, which does not
  affect BPSK/QPSK sign decisions but does move 16-QAM's inner/outer threshold.

Example:
    >>> bits = torch.tensor([0, 1, 1, 0])
    >>> torch.equal(demodulate(modulate(bits, "16qam"), "16qam"), bits)
    True
"""

from __future__ import annotations

import math

import torch

from paretoctl.channel_sim.theory import BITS_PER_SYMBOL

__all__ = ["BITS_PER_SYMBOL", "MODULATIONS", "demodulate", "modulate"]

MODULATIONS = tuple(BITS_PER_SYMBOL)
_QAM16_SCALE = 1.0 / math.sqrt(10.0)


def _check_scheme(scheme: str) -> int:
    if scheme not in BITS_PER_SYMBOL:
        raise ValueError(f"unknown modulation {scheme!r}; expected one of {MODULATIONS}")
    return BITS_PER_SYMBOL[scheme]


def modulate(bits: torch.Tensor, scheme: str) -> torch.Tensor:
    """Map bits to unit-energy complex symbols.

    Args:
        bits: ``[..., n * k]`` tensor of 0/1 values, ``k`` the bits per symbol of ``scheme``.
        scheme: ``"bpsk"``, ``"qpsk"`` or ``"16qam"``.

    Returns:
        ``[..., n]`` complex64 symbols.

    Raises:
        ValueError: On an unknown scheme or a last dimension not divisible by ``k``.
    """
    k = _check_scheme(scheme)
    if bits.ndim == 0 or bits.shape[-1] % k:
        raise ValueError(f"{scheme} needs the last dimension divisible by {k}, got shape {tuple(bits.shape)}")
    b = bits.to(torch.float32).reshape(*bits.shape[:-1], -1, k)
    sign = 1.0 - 2.0 * b  # 0 -> +1, 1 -> -1
    if scheme == "bpsk":
        re, im = sign[..., 0], torch.zeros_like(sign[..., 0])
    elif scheme == "qpsk":
        re, im = sign[..., 0] * math.sqrt(0.5), sign[..., 1] * math.sqrt(0.5)
    else:
        re = sign[..., 0] * (3.0 - 2.0 * b[..., 1]) * _QAM16_SCALE
        im = sign[..., 2] * (3.0 - 2.0 * b[..., 3]) * _QAM16_SCALE
    return torch.complex(re, im)


def demodulate(symbols: torch.Tensor, scheme: str) -> torch.Tensor:
    """Hard-decision demapping, the inverse of :func:`modulate` on noiseless symbols.

    Args:
        symbols: ``[..., n]`` complex symbols (equalised, unbiased amplitude).
        scheme: ``"bpsk"``, ``"qpsk"`` or ``"16qam"``.

    Returns:
        ``[..., n * k]`` int64 bits.
    """
    _check_scheme(scheme)
    re, im = symbols.real, symbols.imag
    if scheme == "bpsk":
        parts = [re < 0]
    elif scheme == "qpsk":
        parts = [re < 0, im < 0]
    else:
        threshold = 2.0 * _QAM16_SCALE  # midway between the inner (1) and outer (3) levels
        parts = [re < 0, re.abs() < threshold, im < 0, im.abs() < threshold]
    return torch.stack(parts, dim=-1).reshape(*symbols.shape[:-1], -1).to(torch.int64)
