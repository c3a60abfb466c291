"""Digital links, torch-free: bits on the air, the rate the SNR sustains, outage and airtime.

The analog links of :mod:`paretoctl.channel_sim.channels` send token features as complex symbols: the
number of channel uses is fixed by the tokens and only accuracy depends on the SNR. A *digital* link
quantises the features to bits and sends them at a rate the SNR sustains, so its **airtime** depends
on the SNR too. This module is the one statement of that airtime; the simulator
(:mod:`paretoctl.channel_sim.digital`), the build (bits per configuration), the policy and the
service all use it.

Conventions (each checked against a closed form or a Monte Carlo run in ``tests/service/test_link.py``
and ``tests/channel_sim/test_digital.py``):

* **SNR** is the same Es/N0 per complex channel use as for the analog links (mean received SNR;
  fading has ``E|h|^2 = 1``), written ``s = 10 ** (snr_db / 10)``.
* **Bits on the air** (:func:`payload_bits`): ``n * D * b`` for ``n`` tokens of width ``D`` quantised
  to ``b`` bits, plus side information: each token's size (``1 .. max_size``, sent as ``size - 1``
  in ``ceil(log2(max_size))`` bits; ``max_size`` is the number of patches, the most a merged token
  can hold) and :data:`HEADER_BITS` = 64 for the quantiser (its lower clip edge and step, two
  float32). Token positions are not sent: the server's blocks do not use them (the position
  embedding was added on the edge). Side information is assumed to arrive intact (as for the
  analog links), but it counts in the airtime at the same rate as the payload.
* **Rate** ``R`` in bits per channel use, with an SNR gap ``G = 10 ** (gap_db / 10)`` (the distance
  of a practical code from capacity; 0 dB is capacity). A block of ``block_uses`` channel uses at
  rate ``R`` decodes iff its instantaneous capacity with the gap is at least ``R``:
  ``log2(1 + |h|^2 s / G) >= R``, i.e. ``|h|^2 >= (2 ** R - 1) G / s``.

  - AWGN (``h = 1``): the link runs at ``R = log2(1 + s / G)`` and never loses a block.
  - Fading, ``rate="adaptive"`` (the default): the transmitter knows the mean SNR ``s`` (the one
    the device reports), not ``h``, and picks the rate whose outage is ``outage_target`` = eps:
    ``R = log2(1 + F^-1(eps) s / G)``, ``F`` the CDF of ``|h|^2``. Rayleigh: ``F^-1(eps) =
    -ln(1 - eps)``.
  - Fading, a fixed ``rate`` R: the outage varies with the SNR.
* **Outage** ``P_out = F((2 ** R - 1) G / s)`` per block, blocks independent. Rayleigh:
  ``P_out = 1 - exp(-(2 ** R - 1) G / s)``; Rician with factor ``K``: ``F`` is the non-central
  chi-square CDF (:func:`fading_cdf`, a Poisson mixture of Erlang CDFs).
* **A lost block** is either retransmitted (``on_loss="retransmit"``: nothing is lost, the expected
  number of transmissions of a block is ``1 / (1 - P_out)``) or its tokens are replaced at the
  server (``"zeros"``: zero vectors; ``"mean"``: the mean of the tokens of that image that did
  arrive) and the airtime is a single transmission.
* **Airtime** (:meth:`DigitalLink.airtime_uses`): ``bits / R`` channel uses, times
  ``1 / (1 - P_out)`` with retransmission (the last block's padding is not counted, so airtime is
  proportional to bits). The transmit time is ``link_overhead_ms + 1000 * airtime / symbol_rate_hz``
  with the symbol rate from the device profile (:func:`paretoctl.service.latency.digital_transmit_ms`).

Example:
    >>> link = DigitalLink(fading="rayleigh", gap_db=0.0, rate=1.0)
    >>> round(link.outage(0.0), 6)  # 1 - exp(-(2 - 1) / 1)
    0.632121
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "DIGITAL_FADINGS",
    "HEADER_BITS",
    "LINK_PARAMS",
    "LOSS_MODES",
    "DigitalLink",
    "fading_cdf",
    "fading_quantile",
    "is_digital",
    "link_from_channel",
    "payload_bits",
    "size_bits",
]

HEADER_BITS: Final = 64
"""Quantiser side information per transmission: lower clip edge and step, two float32."""

DIGITAL_FADINGS: Final = ("awgn", "rayleigh", "rician")
LOSS_MODES: Final = ("retransmit", "zeros", "mean")
LINK_PARAMS: Final = ("link", "bits", "clip_sigma", "gap_db", "rate", "outage_target", "block_uses",
                      "on_loss", "k_factor")
"""Channel parameters of a digital link (``k_factor`` only for Rician)."""

_MAX_TRANSMISSIONS: Final = 1e12
"""Expected transmissions are capped here (P_out rounding to 1 at absurd SNRs): huge, but finite."""

Fading = Literal["awgn", "rayleigh", "rician"]
LossMode = Literal["retransmit", "zeros", "mean"]


def size_bits(max_size: int) -> int:
    """Bits per token size: sizes ``1 .. max_size`` sent as ``size - 1``, i.e. ``ceil(log2(max_size))``."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
    return (max_size - 1).bit_length()


def payload_bits(num_tokens: int, dim: int, bits: int, max_size: int) -> int:
    """Bits one image puts on the air: quantised tokens plus side information.

    Args:
        num_tokens: tokens sent at the split (prefix tokens included).
        dim: reals per token (the embedding width ``D``).
        bits: quantiser bits per real ``b``.
        max_size: the largest possible token size (the number of patches).

    Returns:
        ``num_tokens * (dim * bits + size_bits(max_size)) + HEADER_BITS``.

    Example:
        >>> payload_bits(50, 128, 8, 49)  # 50 * (1024 + 6) + 64
        51564
    """
    for name, value in (("num_tokens", num_tokens), ("dim", dim), ("bits", bits)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if num_tokens < 0 or dim < 1 or bits < 1:
        raise ValueError(f"need num_tokens >= 0, dim >= 1, bits >= 1; got {num_tokens}, {dim}, {bits}")
    return num_tokens * (dim * bits + size_bits(max_size)) + HEADER_BITS


def fading_cdf(x: float, k_factor: float = 0.0) -> float:
    """``P(|h|^2 < x)`` for Rician fading with factor ``K`` and ``E|h|^2 = 1`` (``K = 0``: Rayleigh).

    ``2 (K + 1) |h|^2`` is non-central chi-square with 2 degrees of freedom and non-centrality
    ``2K``; with ``z = (K + 1) x`` its CDF is the Poisson(K) mixture
    ``sum_n e^-K K^n / n! * (1 - e^-z sum_{k <= n} z^k / k!)``. ``K = inf`` is ``|h|^2 = 1``.
    """
    if x <= 0.0:
        return 0.0
    if math.isinf(k_factor):
        return 1.0 if x > 1.0 else 0.0
    z = (k_factor + 1.0) * x
    if k_factor == 0.0:
        return -math.expm1(-z)
    log_k, log_z = math.log(k_factor), math.log(z)
    n_max = int(k_factor + 12.0 * math.sqrt(k_factor) + 40.0)
    total, upper_terms = 0.0, 0.0  # upper_terms = e^-z sum_{k <= n} z^k / k!  (Erlang tail)
    for n in range(n_max + 1):
        upper_terms += math.exp(-z + n * log_z - math.lgamma(n + 1))
        weight = math.exp(-k_factor + n * log_k - math.lgamma(n + 1))
        total += weight * max(0.0, 1.0 - upper_terms)
    return min(1.0, total)


def fading_quantile(eps: float, k_factor: float = 0.0) -> float:
    """``x`` with ``P(|h|^2 < x) = eps`` (bisection on :func:`fading_cdf`; closed form for Rayleigh)."""
    if not 0.0 < eps < 1.0:
        raise ValueError(f"outage probability must be in (0, 1), got {eps!r}")
    if k_factor == 0.0:
        return -math.log1p(-eps)
    if math.isinf(k_factor):
        return 1.0
    lo, hi = 0.0, 1.0
    while fading_cdf(hi, k_factor) < eps:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fading_cdf(mid, k_factor) < eps else (lo, mid)
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class DigitalLink:
    """A digital link's parameters, and its rate, outage and airtime at an SNR (module docstring).

    Attributes:
        fading: ``awgn``, ``rayleigh`` or ``rician``.
        bits: quantiser bits per real, 1..16.
        clip_sigma: the quantiser clips each image's tensor at mean +- ``clip_sigma`` standard
            deviations (of that tensor's reals).
        gap_db: SNR gap to capacity in dB (>= 0).
        rate: ``"adaptive"`` or a fixed rate in bits per channel use (fading only).
        outage_target: eps, the per-block outage the adaptive rate aims at (fading only).
        block_uses: channel uses per coding block = per fading block.
        on_loss: ``retransmit``, ``zeros`` or ``mean``.
        k_factor: Rician ``K`` (linear); 0 for Rayleigh and AWGN.
    """

    fading: Fading
    bits: int = 8
    clip_sigma: float = 8.0
    gap_db: float = 3.0
    rate: float | Literal["adaptive"] = "adaptive"
    outage_target: float = 0.1
    block_uses: int = 256
    on_loss: LossMode = "retransmit"
    k_factor: float = 0.0

    def __post_init__(self) -> None:
        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"{field}: {msg}")

        if self.fading not in DIGITAL_FADINGS:
            raise bad("kind", f"a digital link needs one of {DIGITAL_FADINGS}, got {self.fading!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise bad("bits", f"must be an int in [1, 16], got {self.bits!r}")
        if not _finite(self.clip_sigma) or self.clip_sigma <= 0:
            raise bad("clip_sigma", f"must be a positive number, got {self.clip_sigma!r}")
        if not _finite(self.gap_db) or self.gap_db < 0:
            raise bad("gap_db", f"must be a number >= 0 (dB), got {self.gap_db!r}")
        if self.rate != "adaptive":
            if not _finite(self.rate) or float(self.rate) <= 0:
                raise bad("rate", f"must be 'adaptive' or a positive number of bits per channel use, "
                          f"got {self.rate!r}")
            if self.fading == "awgn":
                raise bad("rate", "a fixed rate needs a fading channel; on AWGN the link runs at "
                          "log2(1 + SNR / gap) ('adaptive')")
        if not _finite(self.outage_target) or not 0 < self.outage_target < 1:
            raise bad("outage_target", f"must be in (0, 1), got {self.outage_target!r}")
        if isinstance(self.block_uses, bool) or not isinstance(self.block_uses, int) or self.block_uses < 1:
            raise bad("block_uses", f"must be an int >= 1, got {self.block_uses!r}")
        if self.on_loss not in LOSS_MODES:
            raise bad("on_loss", f"must be one of {LOSS_MODES}, got {self.on_loss!r}")
        k = self.k_factor
        if isinstance(k, bool) or not isinstance(k, int | float) or math.isnan(k) or k < 0:
            raise bad("k_factor", f"must be a number >= 0, got {k!r}")
        if k and self.fading != "rician":
            raise bad("k_factor", f"only Rician fading takes k_factor, not {self.fading!r}")

    @property
    def gap(self) -> float:
        """The SNR gap ``G`` as a linear power ratio."""
        return 10.0 ** (self.gap_db / 10.0)

    def rate_bits(self, snr_db: float) -> float:
        """``R``, bits per channel use at mean SNR ``snr_db`` (Es/N0, dB)."""
        s = 10.0 ** (snr_db / 10.0)
        if self.fading == "awgn":
            return math.log2(1.0 + s / self.gap)
        if self.rate != "adaptive":
            return float(self.rate)
        return math.log2(1.0 + fading_quantile(self.outage_target, self.k_factor) * s / self.gap)

    def outage(self, snr_db: float) -> float:
        """Per-block outage probability at mean SNR ``snr_db``: ``F((2 ** R - 1) G / s)``."""
        if self.fading == "awgn":
            return 0.0
        s = 10.0 ** (snr_db / 10.0)
        threshold = math.expm1(self.rate_bits(snr_db) * math.log(2.0)) * self.gap / s
        return fading_cdf(threshold, self.k_factor)

    def expected_transmissions(self, snr_db: float) -> float:
        """Expected transmissions of one block: ``1 / (1 - P_out)`` with retransmission, else 1."""
        if self.on_loss != "retransmit":
            return 1.0
        p = self.outage(snr_db)
        return _MAX_TRANSMISSIONS if p >= 1.0 else min(1.0 / (1.0 - p), _MAX_TRANSMISSIONS)

    def goodput(self, snr_db: float) -> float:
        """Bits delivered per channel use on average: ``R (1 - P_out)`` (``R`` without retransmission,
        where lost bits are replaced rather than delivered late)."""
        return self.rate_bits(snr_db) / self.expected_transmissions(snr_db)

    def airtime_uses(self, bits: float, snr_db: float) -> float:
        """Expected channel uses to deliver ``bits``: ``bits / R`` times the expected transmissions."""
        return bits / self.rate_bits(snr_db) * self.expected_transmissions(snr_db)

    def uses_per_bit(self, snr_db: float) -> float:
        """``airtime_uses(1, snr_db)``: what the policy multiplies each configuration's bits by."""
        return self.airtime_uses(1.0, snr_db)


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def is_digital(params: Mapping[str, Any]) -> bool:
    """Whether a channel's parameters describe a digital link (``link: digital``)."""
    return params.get("link", "analog") == "digital"


def link_from_channel(kind: str, params: Mapping[str, Any]) -> DigitalLink | None:
    """The digital link of a channel spec, or ``None`` for an analog one.

    Args:
        kind: the channel kind, or a front's channel label (``rayleigh-digital``, ``rician-k4-digital``):
            the fading is the part before the first ``-``.
        params: the channel's parameters (``link: digital`` plus :data:`LINK_PARAMS`).

    Raises:
        ValueError: ``link`` is neither ``analog`` nor ``digital``, a parameter is unknown for a
            digital link, or a value is invalid; the message names the parameter.
    """
    link = params.get("link", "analog")
    if link not in ("analog", "digital"):
        raise ValueError(f"link: must be 'analog' or 'digital', got {link!r}")
    if link == "analog":
        return None
    unknown = sorted(set(params) - set(LINK_PARAMS))
    if unknown:
        raise ValueError(f"a digital link takes parameters {list(LINK_PARAMS)}, got unknown {unknown}")
    fading = kind.split("-", 1)[0]
    values = {k: v for k, v in params.items() if k != "link"}
    if fading == "rician":
        values.setdefault("k_factor", 4.0)  # as the analog Rician channel
    return DigitalLink(fading=fading, **values)  # type: ignore[arg-type]
