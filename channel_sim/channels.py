"""Wireless channels for token tensors: ideal, AWGN, Rayleigh and Rician block fading.

Conventions (each is tested against closed-form theory in ``tests/channel_sim``):

1. **Packing.** A real tensor ``[B, ...]`` is sent one sample per transmission. Each sample is
   flattened (C order) to ``M`` reals, padded with one zero if ``M`` is odd, and packed into
   ``S = ceil(M / 2)`` complex symbols, two reals per channel use: ``s_i = x_{2i} + j x_{2i+1}``.
2. **Power.** Each transmission is normalised to unit average energy per complex symbol,
   ``Es = sum_i |s_i|^2 / S = 1`` (energy is the *square* of the magnitude, and the pad counts as a
   symbol). The receiver multiplies the scale back. The scale and the token sizes are side
   information, assumed to arrive reliably over a digital control channel but counted by
   :func:`paretoctl.channel_sim.packing.channel_uses`.
3. **SNR** is ``Es/N0`` in dB, so ``N0 = 10 ** (-snr_db / 10)``. AWGN is ``n ~ CN(0, N0)``: real and
   imaginary parts are independent ``N(0, N0 / 2)``. For a modulation with ``k`` bits per symbol,
   ``Eb/N0 = Es/N0 / k``. The SNR must be finite (a ``ValueError`` otherwise): a noiseless link is
   the ``"ideal"`` channel. It is a float or a ``[B]`` tensor, one value per transmission.
4. **Fading.** ``y = h x + n``. Rayleigh: ``h ~ CN(0, 1)``. Rician with factor ``K``:
   ``h = sqrt(K / (K + 1)) e^{j theta} + sqrt(1 / (K + 1)) CN(0, 1)``, so ``E|h|^2 = 1`` for every
   ``K`` (``K = 0`` is Rayleigh, ``K = inf`` is a pure phase rotation). ``theta`` is fixed
   (``los_phase``, default 0) or drawn uniformly on ``[0, 2 pi)`` per block (``"random"``).
   ``h`` is held for a block: ``"symbol"`` (fast fading, the default: one draw per symbol),
   ``"token"`` (one draw per token of ``D`` reals, the last dimension of the tensor; a symbol that
   straddles two tokens, which only happens for odd ``D``, belongs to the token of its real part),
   ``"image"`` (one draw per sample, quasi-static) or an integer number of symbols. Blocks are
   independent, across blocks and across the samples of a batch.
5. **Receiver.** Perfect channel knowledge; equalisation is zero-forcing ``y / h`` (``"zf"``, the
   default: unbiased, noise enhanced in deep fades) or MMSE ``conj(h) y / (|h|^2 + N0)``
   (``"mmse"``: biased toward 0 in deep fades, lower mean squared error). AWGN accepts the same
   option with ``h = 1``.
6. **Numerics.** Inputs may live on any device in float32, bfloat16, float16 or float64; the channel
   computes in float32 (float64 for float64 input) and returns the input shape and dtype.
   Randomness comes from the ``generator`` argument; draws are made on the generator's device and
   moved to the tensor's, so a CPU generator reproduces the same numbers on any device. Draw order
   per call: fading gains, then line-of-sight phases (if random), then noise.
7. **Common random numbers.** With ``positions`` (``[B, N]``, each token's slot in a grid of
   ``grid_tokens`` slots, e.g. the index of its representative source token in the unmerged
   sequence), gains and noise are drawn for the whole grid, always of the same shape, and each
   token meets the draws of its slot: the same sample with the same seed meets the same noise and
   fading on a slot whatever else is sent, so two schedules that send a token from the same slot
   see identical channel draws on it (in every block mode; blocks are laid over the grid). What
   stays different: a *merged* token carries other symbols than the unmerged one on its slot, and
   power normalisation divides each transmission by its own RMS, so the same normalised noise
   reaches the tokens scaled by that transmission's scale (correlation 1, amplitudes in the ratio
   of the scales). Measured on the bundled model at split 3 over 200 validation images, merged /
   unmerged scale: median 0.975 (5-95%: 0.92-1.03) at proportion 0.5, 0.876 (0.79-0.97) at 1.0.

Example:
    >>> ch = make_channel("rayleigh", block="token", equaliser="mmse")
    >>> rx = ch(torch.randn(8, 50, 128), snr_db=10.0, generator=torch.Generator().manual_seed(0))
    >>> rx.shape
    torch.Size([8, 50, 128])
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from paretoctl.channel_sim.packing import pack, unpack

__all__ = [
    "BLOCKS",
    "CHANNEL_KINDS",
    "EQUALISERS",
    "AWGNChannel",
    "Channel",
    "IdealChannel",
    "RayleighChannel",
    "RicianChannel",
    "make_channel",
    "noise_variance",
    "padding_positions",
]

Block = Literal["symbol", "token", "image"] | int
Equaliser = Literal["zf", "mmse"]
SnrDb = float | torch.Tensor

BLOCKS = ("symbol", "token", "image")
EQUALISERS = ("zf", "mmse")


def noise_variance(snr_db: torch.Tensor) -> torch.Tensor:
    """``N0`` for unit symbol energy: ``10 ** (-snr_db / 10)``, elementwise."""
    return torch.pow(10.0, -snr_db / 10.0)


def _check_tokens(tokens: torch.Tensor) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise ValueError(f"tokens must be a real floating tensor, got dtype {tokens.dtype}")
    if tokens.ndim < 1 or tokens.shape[0] == 0:
        raise ValueError(f"tokens must be batch first [B, ...] with B >= 1, got shape {tuple(tokens.shape)}")
    # A sum is a fast reduction and is non-finite whenever an element is; only then (or on overflow of a
    # huge but finite sum) is the exact, slower elementwise test needed.
    if not bool(torch.isfinite(tokens.sum())) and not bool(torch.isfinite(tokens).all()):
        raise ValueError("tokens contain NaN or infinite values")


def _snr_per_sample(snr_db: SnrDb, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Validate ``snr_db`` (a number, a 0-d tensor or a ``[B]`` tensor) and return it as ``[B]``."""
    if isinstance(snr_db, torch.Tensor):
        if snr_db.is_complex() or snr_db.dtype == torch.bool:
            raise ValueError(f"snr_db must be real, got dtype {snr_db.dtype}")
        if snr_db.ndim > 1 or (snr_db.ndim == 1 and snr_db.shape[0] != batch):
            raise ValueError(
                f"snr_db must be a number or a [B] tensor with B = {batch}, got shape {tuple(snr_db.shape)}"
            )
        snr = snr_db.detach().to(device=device, dtype=dtype)
    elif isinstance(snr_db, int | float) and not isinstance(snr_db, bool):
        snr = torch.tensor(float(snr_db), device=device, dtype=dtype)
    else:
        raise ValueError(f"snr_db must be a float or a [B] tensor, got {type(snr_db).__name__}")
    if not bool(torch.isfinite(snr).all()):
        raise ValueError(f"snr_db must be finite (Es/N0 in dB), got {snr_db!r}")
    return snr.expand(batch)


def _randn_pairs(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
                 real_dtype: torch.dtype) -> torch.Tensor:
    """``[*shape, 2]`` standard normal reals, drawn on the generator's device and moved to ``device``."""
    draw_device = generator.device if generator is not None else device
    return torch.randn((*shape, 2), generator=generator, device=draw_device, dtype=real_dtype).to(device)


def _grid_index(tokens: torch.Tensor, positions: torch.Tensor, grid_tokens: int | None) -> torch.Tensor:
    """``[B, N * D / 2]`` grid symbol of each sent symbol: slot ``p`` holds symbols ``[p D/2, (p+1) D/2)``."""
    if tokens.ndim != 3 or tokens.shape[-1] % 2:
        raise ValueError(f"positions need [B, N, D] tokens with an even D, got shape {tuple(tokens.shape)}")
    batch, n, width = tokens.shape
    if not isinstance(positions, torch.Tensor) or positions.shape != (batch, n) or positions.is_floating_point():
        raise ValueError(f"positions must be an integer [B, N] = [{batch}, {n}] tensor, got "
                         f"{getattr(positions, 'shape', type(positions).__name__)}")
    if isinstance(grid_tokens, bool) or not isinstance(grid_tokens, int) or grid_tokens < n:
        raise ValueError(f"grid_tokens must be an int >= the {n} tokens sent, got {grid_tokens!r}")
    pos = positions.to(device=tokens.device, dtype=torch.long)
    if n:
        ordered = pos.sort(dim=1).values
        if bool(ordered[:, 0].lt(0).any()) or bool(ordered[:, -1].ge(grid_tokens).any()):
            raise ValueError(f"positions must lie in [0, {grid_tokens})")
        if n > 1 and bool(ordered.diff(dim=1).eq(0).any()):
            raise ValueError("positions must be distinct within each sample (one token per grid slot)")
    half = width // 2
    offsets = torch.arange(half, device=tokens.device)
    return (pos[:, :, None] * half + offsets).reshape(batch, n * half)


def _real_token_mask(tokens: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """``[B, N, 1]`` 1 for each sample's first ``num_tokens[b]`` tokens, 0 for its padding."""
    if tokens.ndim != 3:
        raise ValueError(f"num_tokens needs [B, N, D] tokens, got shape {tuple(tokens.shape)}")
    batch, n, _ = tokens.shape
    if (not isinstance(num_tokens, torch.Tensor) or num_tokens.shape != (batch,)
            or num_tokens.is_floating_point()):
        raise ValueError(f"num_tokens must be an integer [B] = [{batch}] tensor, got "
                         f"{getattr(num_tokens, 'shape', type(num_tokens).__name__)}")
    counts = num_tokens.to(tokens.device)
    if bool(counts.lt(0).any()) or bool(counts.gt(n).any()):
        raise ValueError(f"num_tokens must lie in [0, {n}]")
    return (torch.arange(n, device=tokens.device) < counts[:, None]).unsqueeze(-1).to(tokens.dtype)


def padding_positions(positions: torch.Tensor, num_tokens: torch.Tensor, grid_tokens: int) -> torch.Tensor:
    """Grid slots for a padded batch: real tokens keep theirs, padding takes the free slots in order.

    Args:
        positions: ``[B, N]`` int slots; only each row's first ``num_tokens[b]`` entries are read.
        num_tokens: ``[B]`` real tokens per row.
        grid_tokens: slots in the grid (``>= N``).

    Returns:
        ``[B, N]`` int64, distinct within each row, so the common-random-number draws of the real
        tokens are exactly those they would meet unpadded.
    """
    batch, n = positions.shape
    pos = positions.to(torch.long)
    real = torch.arange(n, device=pos.device) < num_tokens.to(pos.device)[:, None]
    used = torch.zeros(batch, grid_tokens + 1, dtype=torch.bool, device=pos.device)  # last column: padding
    used.scatter_(1, torch.where(real, pos, grid_tokens), True)
    free = (~used[:, :grid_tokens]).to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :n]
    rank = (~real).cumsum(dim=1) - 1  # k-th padding token of the row takes its k-th free slot
    return torch.where(real, pos, free.gather(1, rank.clamp_min(0)))


def _validate_block(block: Any) -> Block:
    if isinstance(block, bool) or not (block in BLOCKS or isinstance(block, int)):
        raise ValueError(f"block must be one of {BLOCKS} or a positive int of symbols, got {block!r}")
    if isinstance(block, int) and block < 1:
        raise ValueError(f"block length must be >= 1 symbol, got {block}")
    return block  # type: ignore[no-any-return]


def _validate_equaliser(equaliser: Any) -> Equaliser:
    if equaliser not in EQUALISERS:
        raise ValueError(f"equaliser must be one of {EQUALISERS}, got {equaliser!r}")
    return equaliser  # type: ignore[no-any-return]


class Channel(nn.Module):
    """Base class: pack real tokens into unit-energy symbols, send them, unpack (module docstring).

    Subclasses implement :meth:`transmit_symbols`, the complex-symbol core that BER checks call
    directly with modulated symbols.
    """

    kind: str = "base"
    supports_positions: bool = False
    """Whether :meth:`forward` takes ``positions``/``grid_tokens`` (common random numbers)."""

    def forward(self, tokens: torch.Tensor, snr_db: SnrDb, generator: torch.Generator | None = None, *,
                positions: torch.Tensor | None = None, grid_tokens: int | None = None,
                num_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Send a batch of real token tensors through the channel.

        Args:
            tokens: ``[B, ...]`` real tensor (typically ``[B, N, D]`` tokens); one transmission per
                sample. The last dimension is the token width for ``block="token"``.
            snr_db: Es/N0 in dB, a float or a ``[B]`` tensor (one value per sample).
            generator: Seeds the channel draws; ``None`` uses torch's global generator.
            positions: ``[B, N]`` int, each token's slot in a fixed grid of ``grid_tokens`` slots
                (e.g. the index of its representative source token): gains and noise are drawn for
                the whole grid and each token meets its slot's (common random numbers, see the
                module docstring). Needs ``[B, N, D]`` tokens with ``D`` even and distinct slots.
            grid_tokens: the grid's size in tokens (with ``positions``).
            num_tokens: optional ``[B]`` int, the real tokens of each ``[B, N, D]`` sample; the rest
                of its row is padding (input-adaptive merging). Padding is not sent: the power is
                normalised over the real tokens only (as if the sample were sent alone) and the
                padding comes back as zeros. With ``positions``, give padding any slots that keep
                each row's slots distinct (:func:`padding_positions`).

        Returns:
            The received, equalised and rescaled tokens, same shape and dtype as ``tokens``.

        Raises:
            ValueError: On non-finite tokens or SNR, an SNR tensor of the wrong shape, or bad positions.
        """
        _check_tokens(tokens)
        keep = None if num_tokens is None else _real_token_mask(tokens, num_tokens)
        if keep is not None:
            tokens = tokens * keep
        width = tokens.shape[-1] if tokens.ndim >= 2 else 1
        sent = None if num_tokens is None else (num_tokens.to(tokens.device) * width + 1) // 2  # ceil(n D / 2)
        packed = pack(tokens, sent)
        if positions is None:
            received = self.transmit_symbols(packed.symbols, snr_db, generator, reals_per_token=width)
        else:
            index = _grid_index(tokens, positions, grid_tokens)
            grid = packed.symbols.new_zeros(tokens.shape[0], int(grid_tokens or 0) * (width // 2))
            grid.scatter_(1, index, packed.symbols)
            received = self.transmit_symbols(grid, snr_db, generator, reals_per_token=width).gather(1, index)
        out = unpack(received, packed, tokens.dtype)
        return out if keep is None else out * keep

    def transmit_symbols(self, symbols: torch.Tensor, snr_db: SnrDb, generator: torch.Generator | None = None,
                         *, reals_per_token: int | None = None) -> torch.Tensor:
        """The complex core: ``[B, S]`` symbols of unit average energy in, equalised symbols out.

        Args:
            symbols: ``[B, S]`` complex symbols; SNR is defined relative to ``Es = 1``, which the
                caller guarantees (token packing normalises; the modulations are unit energy).
            snr_db: Es/N0 in dB, a float or a ``[B]`` tensor.
            generator: Seeds the draws.
            reals_per_token: Token width in reals, needed only by ``block="token"``.

        Returns:
            ``[B, S]`` complex equalised symbols ``x_hat``.
        """
        raise NotImplementedError


class IdealChannel(Channel):
    """No noise, no fading: returns its input (the tensor itself; a given SNR is validated, then ignored)."""

    kind = "ideal"
    supports_positions = True

    def forward(self, tokens: torch.Tensor, snr_db: SnrDb | None = None,
                generator: torch.Generator | None = None, *, positions: torch.Tensor | None = None,
                grid_tokens: int | None = None, num_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``tokens`` unchanged (the SNR may be omitted; positions are checked, then ignored;
        padding beyond ``num_tokens`` comes back as zeros, as on every channel)."""
        _check_tokens(tokens)
        if num_tokens is not None:
            tokens = tokens * _real_token_mask(tokens, num_tokens)
        if positions is not None:
            _grid_index(tokens, positions, grid_tokens)
        if snr_db is not None:
            _snr_per_sample(snr_db, tokens.shape[0], tokens.device, torch.float32)
        return tokens

    def transmit_symbols(self, symbols: torch.Tensor, snr_db: SnrDb | None = None,
                         generator: torch.Generator | None = None, *, reals_per_token: int | None = None
                         ) -> torch.Tensor:
        """Return ``symbols`` unchanged."""
        return symbols


class _NoisyChannel(Channel):
    """Shared receiver: ``y = h x + n``, then zero-forcing or MMSE equalisation with perfect CSI.

    Gains are handled as ``[B, num_blocks, 1]`` against symbols viewed as ``[B, num_blocks, L]``
    whenever blocks have a common length ``L`` dividing ``S`` (so ``h`` is never copied per symbol);
    otherwise they are spread to ``[B, S, 1]`` by an index. The arithmetic runs on real views where
    torch's complex kernels are slow (scaling a complex tensor by a real one).
    """

    supports_positions = True

    def __init__(self, equaliser: Equaliser = "zf") -> None:
        super().__init__()
        self.equaliser: Equaliser = _validate_equaliser(equaliser)

    def _block_gains(self, batch: int, num_symbols: int, generator: torch.Generator | None,
                     device: torch.device, real_dtype: torch.dtype, reals_per_token: int | None
                     ) -> torch.Tensor | None:
        """Gains as ``[B, num_blocks, 1]`` complex (blocks of ``S // num_blocks`` symbols), or ``None``."""
        return None

    def symbol_gains(self, batch: int, num_symbols: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", real_dtype: torch.dtype = torch.float32,
                     reals_per_token: int | None = None) -> torch.Tensor | None:
        """The gain ``h`` seen by each symbol, ``[B, S]``, or ``None`` for ``h = 1`` (for inspection).

        Args:
            batch: Transmissions ``B``.
            num_symbols: Symbols per transmission ``S``.
            generator: Seeds the draws (the same draws :meth:`transmit_symbols` makes first).
            device: Where the gains are returned.
            real_dtype: float32 or float64, the working precision.
            reals_per_token: Token width in reals, for ``block="token"``.
        """
        h = self._block_gains(batch, num_symbols, generator, torch.device(device), real_dtype, reals_per_token)
        if h is None:
            return None
        return h.expand(batch, h.shape[1], num_symbols // h.shape[1]).reshape(batch, num_symbols)

    def transmit_symbols(self, symbols: torch.Tensor, snr_db: SnrDb, generator: torch.Generator | None = None,
                         *, reals_per_token: int | None = None) -> torch.Tensor:
        if not symbols.is_complex() or symbols.ndim != 2:
            raise ValueError(
                f"symbols must be a complex [B, S] tensor, got {symbols.dtype} {tuple(symbols.shape)}"
            )
        symbols = symbols.resolve_conj()
        batch, num_symbols = symbols.shape
        device = symbols.device
        real_dtype = torch.float64 if symbols.dtype == torch.complex128 else torch.float32
        n0 = noise_variance(_snr_per_sample(snr_db, batch, device, real_dtype))[:, None, None]
        if num_symbols == 0:
            return symbols.clone()
        h = self._block_gains(batch, num_symbols, generator, device, real_dtype, reals_per_token)
        # n ~ CN(0, N0): each rail N(0, N0 / 2).
        received = _randn_pairs((batch, num_symbols), generator, device, real_dtype).mul_((n0 / 2).sqrt())
        if h is None:  # AWGN: h = 1, ZF is the identity, MMSE a shrinkage by 1 / (1 + N0).
            received.add_(torch.view_as_real(symbols))
            if self.equaliser == "mmse":
                received.mul_(1 / (1 + n0))
            return torch.view_as_complex(received)
        shape = (batch, h.shape[1], num_symbols // h.shape[1])
        y = torch.view_as_complex(received).view(shape).add_(h * symbols.reshape(shape))  # y = h x + n
        h_pairs = torch.view_as_real(h)  # [B, num_blocks, 1, 2]
        power = torch.addcmul(h_pairs[..., 0].square(), h_pairs[..., 1], h_pairs[..., 1])  # |h|^2
        denom = power.clamp_min(torch.finfo(real_dtype).tiny) if self.equaliser == "zf" else power + n0
        # x_hat = w y with w = conj(h) / denom: ZF gives y / h, MMSE conj(h) y / (|h|^2 + N0).
        conj_sign = torch.tensor([1.0, -1.0], dtype=real_dtype, device=device)
        w = (h_pairs * conj_sign).mul_(denom.reciprocal_().unsqueeze(-1))
        return y.mul_(torch.view_as_complex(w)).view(batch, num_symbols)

    def extra_repr(self) -> str:
        return f"equaliser={self.equaliser!r}"


class AWGNChannel(_NoisyChannel):
    """Additive white Gaussian noise ``CN(0, N0)`` on unit-energy symbols; ``h = 1``."""

    kind = "awgn"


class RicianChannel(_NoisyChannel):
    """Rician block fading with factor ``K`` (line-of-sight to scatter power), ``E|h|^2 = 1``.

    Args:
        k_factor: ``K >= 0`` (linear, not dB); 0 gives Rayleigh, ``math.inf`` a pure phase rotation.
        block: How long ``h`` is held: ``"symbol"``, ``"token"``, ``"image"`` or a number of symbols.
        equaliser: ``"zf"`` or ``"mmse"``.
        los_phase: Line-of-sight phase ``theta`` in radians, or ``"random"`` for uniform per block.
    """

    kind = "rician"

    def __init__(self, k_factor: float = 4.0, block: Block = "symbol", equaliser: Equaliser = "zf",
                 los_phase: float | Literal["random"] = 0.0) -> None:
        super().__init__(equaliser)
        if isinstance(k_factor, bool) or not isinstance(k_factor, int | float) or math.isnan(k_factor):
            raise ValueError(f"k_factor must be a number, got {k_factor!r}")
        if k_factor < 0:
            raise ValueError(f"k_factor must be >= 0 (linear power ratio), got {k_factor}")
        finite_angle = (not isinstance(los_phase, bool) and isinstance(los_phase, int | float)
                        and math.isfinite(los_phase))
        if los_phase != "random" and not finite_angle:
            raise ValueError(f"los_phase must be a finite angle in radians or 'random', got {los_phase!r}")
        self.k_factor = float(k_factor)
        self.block: Block = _validate_block(block)
        self.los_phase = los_phase
        if math.isinf(self.k_factor):
            self._los_amp, self._scatter_amp = 1.0, 0.0
        else:
            self._los_amp = math.sqrt(self.k_factor / (self.k_factor + 1))
            self._scatter_amp = math.sqrt(1 / (self.k_factor + 1))

    def block_layout(self, num_symbols: int, reals_per_token: int | None, device: torch.device | str = "cpu"
                     ) -> tuple[int, torch.Tensor | None]:
        """Independent blocks per transmission, and how symbols map to them.

        Args:
            num_symbols: Symbols per transmission ``S``.
            reals_per_token: Token width in reals (for ``block="token"``).
            device: Where to build the index.

        Returns:
            ``(num_blocks, index)``. ``index`` is ``None`` when blocks are consecutive runs of
            ``S // num_blocks`` symbols; otherwise ``index[i]`` is the block of symbol ``i``.
        """
        if self.block == "symbol":
            return num_symbols, None
        if self.block == "image":
            return 1, None
        if self.block == "token":
            if reals_per_token is None or reals_per_token < 1:
                raise ValueError("block='token' needs reals_per_token (the token width in reals)")
            if reals_per_token % 2 == 0 and num_symbols % (reals_per_token // 2) == 0:
                return num_symbols // (reals_per_token // 2), None
            # Odd width: symbol i carries reals 2i and 2i + 1 and belongs to the token of real 2i.
            index = torch.arange(num_symbols, device=device) * 2 // reals_per_token
            return 2 * (num_symbols - 1) // reals_per_token + 1, index
        length = int(self.block)
        if num_symbols % length == 0:
            return num_symbols // length, None
        return (num_symbols - 1) // length + 1, torch.arange(num_symbols, device=device) // length

    def draw_gains(self, batch: int, num_blocks: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu", real_dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
        """Draw ``[batch, num_blocks]`` independent gains ``h`` (one per block), ``E|h|^2 = 1``.

        Draw order: the scatter ``CN(0, 1)`` part, then the line-of-sight phases if random.
        """
        device = torch.device(device)
        # Scatter sqrt(1 / (K + 1)) CN(0, 1): each rail N(0, 1 / (2 (K + 1))).
        h = _randn_pairs((batch, num_blocks), generator, device, real_dtype).mul_(self._scatter_amp * math.sqrt(0.5))
        if self._los_amp:
            if self.los_phase == "random":
                draw_device = generator.device if generator is not None else device
                theta = torch.rand((batch, num_blocks), generator=generator, device=draw_device,
                                   dtype=real_dtype).to(device).mul_(2 * math.pi)
                h[..., 0].add_(theta.cos().mul_(self._los_amp))
                h[..., 1].add_(theta.sin().mul_(self._los_amp))
            else:
                h[..., 0].add_(self._los_amp * math.cos(self.los_phase))
                h[..., 1].add_(self._los_amp * math.sin(self.los_phase))
        return torch.view_as_complex(h)

    def _block_gains(self, batch: int, num_symbols: int, generator: torch.Generator | None,
                     device: torch.device, real_dtype: torch.dtype, reals_per_token: int | None
                     ) -> torch.Tensor:
        num_blocks, index = self.block_layout(num_symbols, reals_per_token, device)
        h = self.draw_gains(batch, num_blocks, generator, device, real_dtype)
        return (h if index is None else h.index_select(1, index)).unsqueeze(-1)

    def extra_repr(self) -> str:
        return (f"k_factor={self.k_factor}, block={self.block!r}, equaliser={self.equaliser!r}, "
                f"los_phase={self.los_phase!r}")


class RayleighChannel(RicianChannel):
    """Rayleigh block fading, ``h ~ CN(0, 1)``: a Rician channel with ``K = 0``.

    Args:
        block: How long ``h`` is held: ``"symbol"``, ``"token"``, ``"image"`` or a number of symbols.
        equaliser: ``"zf"`` or ``"mmse"``.
    """

    kind = "rayleigh"

    def __init__(self, block: Block = "symbol", equaliser: Equaliser = "zf") -> None:
        super().__init__(k_factor=0.0, block=block, equaliser=equaliser)

    def extra_repr(self) -> str:
        return f"block={self.block!r}, equaliser={self.equaliser!r}"


CHANNEL_KINDS: dict[str, type[Channel]] = {
    "ideal": IdealChannel,
    "awgn": AWGNChannel,
    "rayleigh": RayleighChannel,
    "rician": RicianChannel,
}

_PARAMS: dict[str, tuple[str, ...]] = {
    "ideal": (),
    "awgn": ("equaliser",),
    "rayleigh": ("block", "equaliser"),
    "rician": ("k_factor", "block", "equaliser", "los_phase"),
    "digital": ("bits", "clip_sigma", "gap_db", "rate", "outage_target", "block_uses", "on_loss"),
}
DIGITAL_KINDS = ("awgn", "rayleigh", "rician")
"""Kinds a digital link (``link="digital"``, :mod:`paretoctl.channel_sim.digital`) runs over."""


def make_channel(kind: str, **params: Any) -> Channel:
    """Build a channel by name.

    Args:
        kind: ``"ideal"``, ``"awgn"``, ``"rayleigh"`` or ``"rician"``.
        **params: ``equaliser`` (awgn, rayleigh, rician), ``block`` (rayleigh, rician), ``k_factor``
            and ``los_phase`` (rician; ``k_factor`` defaults to 4, i.e. 6 dB). ``link="digital"``
            (default ``"analog"``) builds a :class:`paretoctl.channel_sim.digital.DigitalChannel` over
            awgn, rayleigh or rician instead, with ``bits``, ``clip_sigma``, ``gap_db``, ``rate``,
            ``outage_target``, ``block_uses``, ``on_loss`` (and ``k_factor`` for rician).

    Returns:
        The channel module.

    Raises:
        ValueError: On an unknown kind, an unknown parameter for that kind, or a bad value.

    Example:
        >>> make_channel("rician", k_factor=10.0, block="image")
        RicianChannel(k_factor=10.0, block='image', equaliser='zf', los_phase=0.0)
    """
    if kind not in CHANNEL_KINDS:
        raise ValueError(f"unknown channel kind {kind!r}; expected one of {tuple(CHANNEL_KINDS)}")
    link = params.pop("link", "analog")
    if link == "digital":
        from paretoctl.channel_sim.digital import DigitalChannel  # imports this module

        if kind not in DIGITAL_KINDS:
            raise ValueError(f"a digital link needs kind one of {DIGITAL_KINDS}, got {kind!r}")
        unknown = sorted(set(params) - set(_PARAMS["digital"]) - ({"k_factor"} if kind == "rician" else set()))
        if unknown:
            raise ValueError(f"digital {kind!r} link takes parameters {_PARAMS['digital']}, got unknown {unknown}")
        return DigitalChannel(kind, **params)
    if link != "analog":
        raise ValueError(f"link must be 'analog' or 'digital', got {link!r}")
    unknown = sorted(set(params) - set(_PARAMS[kind]))
    if unknown:
        raise ValueError(f"channel {kind!r} takes parameters {_PARAMS[kind]}, got unknown {unknown}")
    return CHANNEL_KINDS[kind](**params)
