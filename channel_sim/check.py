"""The BER-vs-theory experiment behind ``paretoctl channel check``.

Each curve sends random Gray-coded bits through a channel's complex core
(:meth:`paretoctl.channel_sim.channels.Channel.transmit_symbols`), counts bit errors after hard decisions and
compares them with :mod:`paretoctl.channel_sim.theory`. A wrong convention (noise variance N0 instead of N0/2
per rail, an L2 norm taken for a power, a real Gaussian "fading" gain, no equalisation) moves a
curve by decibels, far outside the tolerance below.

Tolerance. Symbols are independent, but the ``k`` bits of one symbol need not be (16-QAM bits share
a rail's noise; QPSK bits share a fading gain). With ``X_s`` the errors in symbol ``s``,
``Var X_s <= E[X_s^2] <= k E[X_s] = k^2 p``, so over ``n`` bits (``n / k`` symbols)
``Var(errors) <= k n p``. A point passes when ``|errors - n p| <= Z_MAX sqrt(k n p)``, with
``Z_MAX = 5``: under the normal approximation a correct channel fails one point with probability
below 6e-7 (bound included, at most ~3e-5 for a whole run of ~40 points). The normal approximation
needs enough errors, so a point is only *tested* when theory expects at least
``MIN_EXPECTED_ERRORS = 100`` errors. An untested point proves nothing, so a run passes only when
every point was tested and within tolerance (:class:`CheckSummary`); :func:`samples_needed` says,
before anything is simulated, how many bits per point test at least one point and how many test them
all (whether a point is tested depends only on its bit count and theory, never on the draws). At 1e6
bits a 0.5 dB error in the SNR convention already moves a BER of 1e-3 by about 6 bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich import box
from rich.table import Table

from paretoctl.channel_sim.channels import Channel, make_channel
from paretoctl.channel_sim.modulation import demodulate, modulate
from paretoctl.channel_sim.theory import BITS_PER_SYMBOL, ber_16qam_awgn, theory_ber

__all__ = [
    "DEFAULT_CURVES",
    "MIN_EXPECTED_ERRORS",
    "Z_MAX",
    "BerPoint",
    "CheckSummary",
    "Curve",
    "bits_sent",
    "count_bit_errors",
    "is_tested",
    "plot_points",
    "points_as_dicts",
    "results_table",
    "run_check",
    "samples_needed",
    "samples_to_test",
    "summarise",
]

Z_MAX = 5.0
MIN_EXPECTED_ERRORS = 100.0
_CHUNK_SYMBOLS = 1 << 20


@dataclass(frozen=True)
class Curve:
    """One simulated curve: a modulation over a channel (per-symbol fading, zero-forcing)."""

    modulation: str
    channel: str
    snr_db: tuple[float, ...]


# Grids end where BER >= 1e-4, so that 1e6 bits per point (the default is 4e6) still tests every point.
DEFAULT_CURVES: tuple[Curve, ...] = (
    Curve("bpsk", "awgn", (0.0, 2.0, 4.0, 6.0, 8.0)),
    Curve("qpsk", "awgn", (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)),
    Curve("16qam", "awgn", (0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0)),
    Curve("bpsk", "rayleigh", (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)),
    Curve("qpsk", "rayleigh", (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)),
)


@dataclass(frozen=True)
class BerPoint:
    """One simulated point and its verdict.

    Attributes:
        modulation: ``"bpsk"``, ``"qpsk"`` or ``"16qam"``.
        channel: ``"awgn"`` or ``"rayleigh"``.
        snr_db: Es/N0 in dB.
        bits: Bits simulated.
        errors: Bit errors counted.
        theory: Closed-form BER.
        z: ``(errors - bits * theory) / sqrt(k * bits * theory)``, the deviation in bound units.
        tested: Whether theory expects at least ``MIN_EXPECTED_ERRORS`` errors.
        ok: ``|z| <= Z_MAX`` for a tested point; ``True`` for an untested one.
    """

    modulation: str
    channel: str
    snr_db: float
    bits: int
    errors: int
    theory: float
    z: float
    tested: bool
    ok: bool

    @property
    def ber(self) -> float:
        """Simulated bit-error rate."""
        return self.errors / self.bits


def bits_sent(samples: int, modulation: str) -> int:
    """Bits actually sent for ``samples`` requested: rounded up to whole symbols."""
    k = BITS_PER_SYMBOL[modulation]
    return -(-samples // k) * k


def is_tested(bits: int, theory: float) -> bool:
    """Whether a point is judged: theory expects at least ``MIN_EXPECTED_ERRORS`` errors in ``bits``."""
    return bits * theory >= MIN_EXPECTED_ERRORS


def samples_to_test(modulation: str, channel: str, snr_db: float) -> int | None:
    """The smallest ``samples`` (bits per point) for which this point is tested.

    Returns:
        The bit count, or ``None`` when theory's BER is 0 (the point can never be tested).
    """
    p = theory_ber(modulation, channel, snr_db)
    if p <= 0.0:
        return None
    k = BITS_PER_SYMBOL[modulation]
    symbols = max(1, math.ceil(MIN_EXPECTED_ERRORS / (k * p)))
    # Settle float rounding with the very test run_check applies.
    while not is_tested(symbols * k, p):
        symbols += 1
    while symbols > 1 and is_tested((symbols - 1) * k, p):
        symbols -= 1
    return (symbols - 1) * k + 1


def samples_needed(curves: Sequence[Curve] = DEFAULT_CURVES) -> tuple[int | None, int | None]:
    """``(samples testing at least one point, samples testing every point)`` of ``curves``.

    Either is ``None`` when no sample count achieves it (some point's theoretical BER is 0).
    """
    need = [samples_to_test(c.modulation, c.channel, snr) for c in curves for snr in c.snr_db]
    known = [n for n in need if n is not None]
    return (min(known) if known else None), (None if None in need or not need else max(known))


def count_bit_errors(channel: Channel, modulation: str, snr_db: float, num_bits: int,
                     generator: torch.Generator, device: torch.device | str = "cpu") -> tuple[int, int]:
    """Send about ``num_bits`` random bits through ``channel`` and count errors.

    Args:
        channel: Any channel; only its complex core is used (no token packing or power scale).
        modulation: ``"bpsk"``, ``"qpsk"`` or ``"16qam"``.
        snr_db: Es/N0 in dB.
        num_bits: Bits to send; rounded up to whole symbols.
        generator: Seeds bits and channel; its device is where draws happen.
        device: Where the symbols are processed.

    Returns:
        ``(bits_sent, bit_errors)``.
    """
    k = BITS_PER_SYMBOL[modulation]
    remaining = -(-num_bits // k)
    sent = errors = 0
    while remaining > 0:
        n = min(remaining, _CHUNK_SYMBOLS)
        bits = torch.randint(0, 2, (1, n * k), generator=generator, device=generator.device).to(device)
        received = channel.transmit_symbols(modulate(bits, modulation), snr_db, generator)
        errors += int((demodulate(received, modulation) != bits).sum().item())
        sent += n * k
        remaining -= n
    return sent, errors


def run_check(samples: int = 4_000_000, seed: int = 0, device: torch.device | str = "cpu",
              curves: Sequence[Curve] = DEFAULT_CURVES) -> list[BerPoint]:
    """Simulate every curve point and judge it against theory (tolerance in the module docstring).

    Args:
        samples: Bits per point.
        seed: Seeds one CPU generator used for all points in order, so runs reproduce on any device.
        device: Where the channel runs.
        curves: What to simulate.

    Returns:
        One :class:`BerPoint` per curve and SNR.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    generator = torch.Generator().manual_seed(seed)
    points = []
    for curve in curves:
        channel = make_channel(curve.channel, **({"block": "symbol", "equaliser": "zf"}
                                                 if curve.channel == "rayleigh" else {}))
        k = BITS_PER_SYMBOL[curve.modulation]
        for snr in curve.snr_db:
            bits, errors = count_bit_errors(channel, curve.modulation, snr, samples, generator, device)
            p = theory_ber(curve.modulation, curve.channel, snr)
            expected = bits * p
            # If theory underflows to 0, any error at all is infinitely unlikely.
            z = (errors - expected) / math.sqrt(k * expected) if expected > 0 else math.inf if errors else 0.0
            tested = is_tested(bits, p)
            points.append(BerPoint(curve.modulation, curve.channel, snr, bits, errors, p, z, tested,
                                   ok=not tested or abs(z) <= Z_MAX))
    return points


@dataclass(frozen=True)
class CheckSummary:
    """The verdict of a run: it passes only if every point was tested and within tolerance.

    Attributes:
        points: every simulated point.
        tested: the points theory expects enough errors at to judge them.
        failed: tested points outside tolerance (``|z| > Z_MAX``).
        untested: points with too few bits to judge.
    """

    points: tuple[BerPoint, ...]
    tested: tuple[BerPoint, ...]
    failed: tuple[BerPoint, ...]
    untested: tuple[BerPoint, ...]

    @property
    def passed(self) -> bool:
        """Every point tested, none outside tolerance (so an empty run never passes)."""
        return bool(self.points) and not self.failed and not self.untested


def summarise(points: Sequence[BerPoint]) -> CheckSummary:
    """Sort the points into tested, failed and untested."""
    tested = tuple(p for p in points if p.tested)
    return CheckSummary(tuple(points), tested, tuple(p for p in tested if not p.ok),
                        tuple(p for p in points if not p.tested))


def points_as_dicts(points: Sequence[BerPoint]) -> list[dict[str, object]]:
    """JSON-ready rows, with the simulated BER added."""
    return [{**asdict(p), "ber": p.ber} for p in points]


def results_table(points: Sequence[BerPoint]) -> Table:
    """A rich table of the points, one row each, with the verdict."""
    table = Table(title=f"Simulated BER vs theory (ok: |z| <= {Z_MAX:g}; skip: theory expects < "
                        f"{MIN_EXPECTED_ERRORS:g} errors)",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name, justify in (("channel", "left"), ("mod", "left"), ("Es/N0", "right"), ("bits", "right"),
                          ("errors", "right"), ("BER sim", "right"), ("theory", "right"), ("z", "right"),
                          ("verdict", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for p in points:
        verdict = ("[green]ok[/]" if p.ok else "[bold red]FAIL[/]") if p.tested else "[dim]skip[/]"
        table.add_row(p.channel, p.modulation, f"{p.snr_db:g}", str(p.bits), str(p.errors),
                      f"{p.ber:.2e}", f"{p.theory:.2e}", f"{p.z:+.2f}", verdict)
    return table


def plot_points(points: Sequence[BerPoint], path: Path) -> Path:
    """Plot simulated BER (markers) over theory (lines), one panel per channel, log-scale BER.

    Args:
        points: From :func:`run_check`.
        path: PNG to write, replaced atomically; parent folders are created.

    Returns:
        ``path``.
    """
    import io

    from matplotlib.figure import Figure

    from paretoctl.service.fileio import atomic_write_bytes

    channels = list(dict.fromkeys(p.channel for p in points))
    fig = Figure(figsize=(6.0 * len(channels), 5.2))
    axes = fig.subplots(1, len(channels), squeeze=False)
    colours = {"bpsk": "tab:blue", "qpsk": "tab:orange", "16qam": "tab:green"}
    labels = {"bpsk": "BPSK", "qpsk": "QPSK", "16qam": "16-QAM"}
    for ax, channel in zip(axes[0], channels, strict=True):
        floor = 1.0
        for modulation in dict.fromkeys(p.modulation for p in points if p.channel == channel):
            pts = [p for p in points if p.channel == channel and p.modulation == modulation]
            lo, hi = min(p.snr_db for p in pts), max(p.snr_db for p in pts)
            grid = [lo - 1 + i * (hi - lo + 2) / 200 for i in range(201)]
            colour, label = colours.get(modulation, "black"), labels.get(modulation, modulation)
            ax.plot(grid, [theory_ber(modulation, channel, s) for s in grid], color=colour, marker="o",
                    markevery=[], markerfacecolor="none", label=label)
            if modulation == "16qam" and channel == "awgn":
                ax.plot(grid, [ber_16qam_awgn(s) for s in grid], color=colour, linestyle=":",
                        label=f"{label} (3/4)Q approx.")
            shown = [p for p in pts if p.errors > 0]
            ax.plot([p.snr_db for p in shown], [p.ber for p in shown], linestyle="none", marker="o",
                    markerfacecolor="none", color=colour)
            bad = [p for p in shown if not p.ok]
            if bad:
                ax.plot([p.snr_db for p in bad], [p.ber for p in bad], linestyle="none", marker="x",
                        markersize=10, color="red", label=f"{label}: outside tolerance")
            floor = min([floor, *(p.theory for p in pts), *(p.ber for p in shown)])
        ax.set_yscale("log")
        ax.set_ylim(max(floor / 3, 1e-9), 1.0)
        ax.set_xlabel("Es/N0 (dB)")
        ax.set_ylabel("bit-error rate")
        title = "AWGN" if channel == "awgn" else "Rayleigh fading, per-symbol, ZF" if channel == "rayleigh" \
            else channel
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="lower left", title="lines: theory, o: simulated", title_fontsize=9)
    bits = max(p.bits for p in points)
    fig.suptitle(f"Channel check: simulated vs closed-form BER ({bits:,} bits per point)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
