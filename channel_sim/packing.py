"""Real token tensors <-> unit-energy complex symbols, and the channel-use count.

Conventions (the full statement lives in :mod:`paretoctl.channel_sim.channels`):

* **Packing.** Each sample of a batch ``[B, ...]`` is flattened in C order to ``M`` reals, padded
  with one zero when ``M`` is odd, and read as ``S = ceil(M / 2)`` complex symbols
  ``s_i = x_{2i} + j x_{2i+1}``: two reals per channel use.
* **Power normalisation.** Each sample (one transmission) is divided by
  ``sqrt(sum_i |s_i|^2 / S)`` so that its average energy per complex symbol is exactly 1; the pad
  counts as a symbol. The receiver multiplies the scale back. The scale is side information: it is
  assumed to reach the receiver reliably (a digital control channel) but it is counted in
  :func:`channel_uses`. An all-zero sample has no energy to normalise; it is sent as zeros with
  scale 1.
* **Channel uses.** ``ceil(num_tokens * dim / 2)`` symbols for the tokens plus
  ``ceil((num_tokens + 1) / 2)`` for the side information: the ``num_tokens`` token sizes (needed by
  the server for proportional attention after merging) and the one power scale, sent as reals, two
  per channel use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PackedSymbols", "channel_uses", "num_symbols", "pack", "unpack"]


def num_symbols(num_reals: int) -> int:
    """Complex symbols needed for ``num_reals`` reals at two reals per channel use."""
    return (num_reals + 1) // 2


def channel_uses(num_tokens: int, dim: int) -> int:
    """Channel uses needed to send ``num_tokens`` tokens of width ``dim``, side information included.

    Args:
        num_tokens: Tokens sent at the split (prefix tokens included).
        dim: Reals per token (the embedding width).

    Returns:
        ``ceil(num_tokens * dim / 2) + ceil((num_tokens + 1) / 2)``: the token payload, then the
        token sizes and the power scale as reals, two per channel use.

    Raises:
        ValueError: If an argument is not an integer, ``num_tokens < 0`` or ``dim < 1``.

    Example:
        >>> channel_uses(50, 128)  # 3200 payload symbols + 26 for 50 sizes and one scale
        3226
    """
    for name, value in (("num_tokens", num_tokens), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return num_symbols(num_tokens * dim) + num_symbols(num_tokens + 1)


@dataclass(frozen=True)
class PackedSymbols:
    """One batch packed for the channel.

    Attributes:
        symbols: ``[B, S]`` complex, unit average energy per symbol in each row (zero rows stay zero).
        scale: ``[B]`` real, the per-sample RMS symbol amplitude the receiver multiplies back.
        shape: Shape of the real tensor that was packed.
        num_reals: Reals per sample before padding.
    """

    symbols: torch.Tensor
    scale: torch.Tensor
    shape: torch.Size
    num_reals: int


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    """Working precision: float64 stays float64, every other float type computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def pack(tokens: torch.Tensor, sent_symbols: torch.Tensor | None = None) -> PackedSymbols:
    """Pack a real ``[B, ...]`` tensor into power-normalised complex symbols, one row per sample.

    Args:
        tokens: Real floating tensor with a batch dimension first; any trailing shape.
        sent_symbols: optional ``[B]`` int, the symbols each sample really sends when the tail of its
            row is zero padding (a batch of images with different token counts): the power is then
            normalised over those symbols only, exactly as if the sample were sent alone.

    Returns:
        The packed batch; see :class:`PackedSymbols`.
    """
    batch = tokens.shape[0]
    flat = tokens.reshape(batch, -1).to(_real_dtype(tokens.dtype))
    num_reals = flat.shape[1]
    if num_reals % 2:
        flat = torch.nn.functional.pad(flat, (0, 1))
    num_syms = flat.shape[1] // 2
    per_sample = (max(num_syms, 1) if sent_symbols is None
                  else sent_symbols.to(device=flat.device, dtype=flat.dtype).clamp_min(1))
    # Energy per complex symbol: ||x||^2 / S, the *square* of the L2 norm (one fused reduction).
    energy = torch.linalg.vector_norm(flat, dim=1).square_() / per_sample
    scale = torch.where(energy > 0, energy.sqrt(), torch.ones_like(energy))
    symbols = torch.view_as_complex((flat * scale.reciprocal()[:, None]).view(batch, num_syms, 2))
    return PackedSymbols(symbols=symbols, scale=scale, shape=tokens.shape, num_reals=num_reals)


def unpack(symbols: torch.Tensor, packed: PackedSymbols, dtype: torch.dtype) -> torch.Tensor:
    """Undo :func:`pack` on received symbols: rescale, drop the pad, restore shape and dtype.

    Args:
        symbols: ``[B, S]`` complex symbols as equalised by the receiver.
        packed: What :func:`pack` returned for the transmitted batch (shape and scale).
        dtype: The dtype to return (the input token dtype).

    Returns:
        A real tensor of ``packed.shape`` and ``dtype``.
    """
    reals = torch.view_as_real(symbols) * packed.scale[:, None, None]
    reals = reals.reshape(symbols.shape[0], -1)[:, : packed.num_reals]
    return reals.reshape(packed.shape).to(dtype)
