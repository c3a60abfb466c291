"""Device profiles and the latency model.

A configuration's latency is edge compute, then transmission of the split tokens over the radio
link, then server compute, each with a fixed overhead (see ``docs/internals.md``)::

    edge_ms     = edge_overhead_ms   + 1000 * gflops_edge   / edge_gflops_per_s
    transmit_ms = link_overhead_ms   + 1000 * channel_uses  / symbol_rate_hz
    server_ms   = server_overhead_ms + 1000 * gflops_server / server_gflops_per_s
    total_ms    = edge_ms + transmit_ms + server_ms

On a digital link (``paretoctl.service.link``) the channel uses are the expected airtime of the
configuration's bits at the SNR: ``channel_uses = bits / R(snr) * E[transmissions]``
(:func:`digital_transmit_ms`), so the transmit time depends on the SNR.

An input-adaptive (threshold) configuration costs a different amount on every image; its modelled
parts use the 95th percentiles of its ``cost_distribution`` (edge GFLOPs, server GFLOPs, channel
uses; :func:`latency_costs`), so a served latency also covers busy images. Measured parts (a
profile's per-configuration timings, taken over real images for a threshold configuration) are used
as they are, for both kinds.

Profiles live as YAML files in ``configs/devices/`` (one per device class; the file stem is the name
the service's ``device=`` parameter takes). They are measured, not guessed, where possible:
``paretoctl profile`` fits ``edge_gflops_per_s`` and ``edge_overhead_ms`` on the local machine.

Example:
    >>> p = DeviceProfile(name="x", edge_gflops_per_s=20, server_gflops_per_s=2000, symbol_rate_hz=1e6)
    >>> predict_latency(0.1, 0.2, 10_000, p).total_ms
    15.1
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from paretoctl.service.link import DigitalLink
from paretoctl.service.schema import CostDistribution, DeviceProfile, FrontConfig, LatencyRecord
from paretoctl.service.validation import format_validation_error

__all__ = [
    "PROFILE_FIELDS",
    "DeviceProfile",
    "DigitalLink",
    "LatencyBreakdown",
    "ProfileError",
    "config_latency",
    "config_latency_of",
    "digital_transmit_ms",
    "fit_overhead_and_rate",
    "latency_costs",
    "latency_parts",
    "list_profiles",
    "load_profile",
    "load_profiles",
    "predict_latency",
    "profile_from_mapping",
    "profile_path",
    "read_document",
]

LatencyBreakdown = LatencyRecord
"""Per-stage latency in milliseconds (``edge_ms``, ``transmit_ms``, ``server_ms``, ``total_ms``)."""

PROFILE_FIELDS: tuple[str, ...] = tuple(DeviceProfile.model_fields)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Profile names: a file stem, so a name from a query string can never walk out of the directory."""


class ProfileError(ValueError):
    """A device profile file is missing or invalid; the message names the file and the field."""


def latency_parts(gflops_edge: float, gflops_server: float, channel_uses: float,
                  profile: DeviceProfile) -> tuple[float, float, float, float]:
    """``(edge_ms, transmit_ms, server_ms, total_ms)`` as plain floats (the policy's hot path)."""
    edge = profile.edge_overhead_ms + 1000.0 * gflops_edge / profile.edge_gflops_per_s
    link = profile.link_overhead_ms + 1000.0 * channel_uses / profile.symbol_rate_hz
    server = profile.server_overhead_ms + 1000.0 * gflops_server / profile.server_gflops_per_s
    return edge, link, server, edge + link + server


def digital_transmit_ms(bits: float, snr_db: float, link: DigitalLink, profile: DeviceProfile) -> float:
    """Expected transmit time of ``bits`` over a digital link at mean SNR ``snr_db`` (Es/N0, dB).

    ``link_overhead_ms + 1000 * link.airtime_uses(bits, snr_db) / symbol_rate_hz``: the airtime in
    channel uses (``bits / R``, times ``1 / (1 - P_out)`` with retransmission) at the profile's
    symbol rate.

    Example:
        >>> p = DeviceProfile(name="x", edge_gflops_per_s=1, server_gflops_per_s=1, symbol_rate_hz=1e6)
        >>> round(digital_transmit_ms(3_000, 4.771212547, DigitalLink("awgn", gap_db=0.0), p), 6)  # R = 2
        1.5
    """
    return profile.link_overhead_ms + 1000.0 * link.airtime_uses(bits, snr_db) / profile.symbol_rate_hz


def predict_latency(gflops_edge: float, gflops_server: float, channel_uses: float,
                    profile: DeviceProfile) -> LatencyBreakdown:
    """Latency of one inference split between edge and server (formula in the module docstring).

    Args:
        gflops_edge: GFLOPs run on the device (blocks before the split).
        gflops_server: GFLOPs run on the server (blocks after the split and the head).
        channel_uses: complex symbols sent over the link.
        profile: the device, link and server speeds.
    """
    edge, link, server, total = latency_parts(gflops_edge, gflops_server, channel_uses, profile)
    return LatencyBreakdown(edge_ms=edge, transmit_ms=link, server_ms=server, total_ms=total)


def config_latency(config_id: str, r: Sequence[int], gflops_edge: float, gflops_server: float,
                   channel_uses: float, profile: DeviceProfile,
                   thresholds: Sequence[float] | None = None) -> LatencyBreakdown:
    """Latency of one front configuration: measured edge and server times where the profile has them.

    ``profile.measurements`` (``paretoctl.models.timing``) hold per-configuration edge (batch 1) and
    server times, keyed by id and schedule; where this configuration is among them, its edge and
    server parts are the measured figures at the measurements' statistic (p90 by default, which
    already include every fixed cost, so no overhead is added) and are labelled ``measured``.
    Otherwise they are modelled by :func:`latency_parts`. Transmission is always modelled (the
    link cannot be timed on the machine that times the model).

    The costs are what the caller passes: for a front configuration use :func:`config_latency_of`,
    which passes a threshold configuration's 95th-percentile costs (:func:`latency_costs`).
    """
    edge, link, server, total = latency_parts(gflops_edge, gflops_server, channel_uses, profile)
    got = profile.measured(config_id, tuple(r), None if thresholds is None else tuple(thresholds))
    if got is None:
        return LatencyBreakdown.model_construct(edge_ms=edge, transmit_ms=link, server_ms=server, total_ms=total)
    edge, server = got
    return LatencyBreakdown.model_construct(
        edge_ms=edge, transmit_ms=link, server_ms=server, total_ms=edge + link + server,
        edge_source="measured", server_source="measured")


def deadline_costs(dist: CostDistribution) -> tuple[float, float, float]:
    """``(edge GFLOPs, server GFLOPs, channel uses)`` of a per-image cost distribution that latency
    is modelled from: the 95th percentiles (a latency budget is a deadline, so busy images count)."""
    return dist.gflops_edge.p95, dist.gflops_server.p95, dist.channel_uses.p95


def latency_costs(cfg: FrontConfig) -> tuple[float, float, float]:
    """``(edge GFLOPs, server GFLOPs, channel uses)`` per image that a configuration's latency is modelled from.

    A fixed schedule costs the same on every image: its ``gflops.edge``, ``gflops.server`` and
    ``channel_uses``. A threshold configuration's scalar costs are its *means*; a latency budget is
    a deadline, so its latency is modelled from the 95th percentiles of ``cost_distribution``
    instead (the build does the same when it writes ``FrontConfig.latency``).
    """
    dist = cfg.cost_distribution
    if cfg.merging == "thresholds" and dist is not None:
        return deadline_costs(dist)
    return cfg.gflops.edge, cfg.gflops.server, float(cfg.channel_uses)


def config_latency_of(cfg: FrontConfig, profile: DeviceProfile,
                      channel_uses: float | None = None) -> LatencyBreakdown:
    """:func:`config_latency` of a front configuration, from :func:`latency_costs`.

    Args:
        cfg: the configuration (either merging kind).
        profile: speeds, overheads and any per-configuration measurements.
        channel_uses: channel uses to charge the link with instead of the configuration's own (a
            digital link's transmit time is computed elsewhere, at the query SNR: pass 0).
    """
    edge, server, uses = latency_costs(cfg)
    return config_latency(cfg.id, cfg.r, edge, server, uses if channel_uses is None else channel_uses, profile,
                          cfg.thresholds)


def read_document(path: str | Path, *, kind: Literal["json", "yaml"], what: str,
                  error: Callable[[str], Exception]) -> Any:
    """Read and parse a small JSON or YAML input file, turning every failure into one clear line.

    Shared by the readers of device profiles and of the plot inputs (``convergence.json``), so that
    an unreadable or unparsable file reads the same everywhere.

    Args:
        path: the file.
        kind: its format; JSON refuses NaN/Infinity as every reader here does.
        what: what the file is, for the message (``"device profile"``).
        error: builds the exception to raise from the message (e.g. ``ProfileError``).

    Returns:
        The parsed document (any JSON/YAML value; the caller checks its shape).

    Raises:
        Exception: ``error(message)``, the message starting with ``{path}:``: ``cannot read {what}:
            {reason}`` or ``{what} is not valid JSON|YAML: {parser message}``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(f"{path}: cannot read {what}: {reason}") from exc
    try:
        return json.loads(text, parse_constant=_refuse_constant) if kind == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise error(f"{path}: {what} is not valid {kind.upper()}: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name} (NaN/Infinity are not allowed)")


def load_profile(path: str | Path) -> DeviceProfile:
    """Read a device profile YAML file.

    The ``name`` defaults to the file stem. Unknown keys are refused (a misspelt
    ``edge_gflops_per_sec`` would otherwise silently fall back to nothing).

    Raises:
        ProfileError: unreadable file, not a mapping, unknown key, missing or non-positive rate.
    """
    path = Path(path)
    raw = read_document(path, kind="yaml", what="device profile", error=ProfileError)
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a device profile must be a YAML mapping of {list(PROFILE_FIELDS)}")
    return profile_from_mapping(raw, source=str(path), default_name=path.stem)


def profile_from_mapping(raw: dict[str, Any], source: str = "<profile>",
                         default_name: str | None = None) -> DeviceProfile:
    """Validate a profile mapping, with errors that name ``source`` and the field."""
    unknown = sorted(set(raw) - set(PROFILE_FIELDS))
    if unknown:
        raise ProfileError(f"{source}: unknown field(s) {unknown}; allowed: {list(PROFILE_FIELDS)}")
    data = dict(raw)
    if default_name is not None:
        data.setdefault("name", default_name)
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {format_validation_error(exc)}") from None


def profile_path(name: str, devices_dir: str | Path) -> Path:
    """Path of the profile called ``name`` in ``devices_dir``.

    Raises:
        ProfileError: ``name`` is not a plain file stem (no separators, no ``..``).
    """
    if not _NAME_RE.match(name):
        raise ProfileError(f"invalid device profile name {name!r}")
    return Path(devices_dir) / f"{name}.yaml"


def list_profiles(devices_dir: str | Path) -> list[str]:
    """Names (file stems) of the ``*.yaml`` profiles in ``devices_dir``, sorted."""
    d = Path(devices_dir)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml") if _NAME_RE.match(p.stem))


def load_profiles(devices_dir: str | Path) -> tuple[dict[str, DeviceProfile], dict[str, str]]:
    """Load every profile in ``devices_dir``.

    A bad file does not stop the others from loading (a service should still start with the good
    ones); its error is returned instead.

    Returns:
        ``(profiles by name, error message by name)``.
    """
    good: dict[str, DeviceProfile] = {}
    bad: dict[str, str] = {}
    for name in list_profiles(devices_dir):
        try:
            good[name] = load_profile(profile_path(name, devices_dir))
        except ProfileError as exc:
            bad[name] = str(exc)
    return good, bad


def fit_overhead_and_rate(gflops: list[float], times_ms: list[float]) -> tuple[float, float]:
    """Least-squares fit of ``time_ms = overhead_ms + 1000 * gflops / rate``.

    This is how a profile is calibrated: time the model at several merge schedules (different
    GFLOPs), then the slope gives the sustained rate and the intercept the fixed overhead.

    Args:
        gflops: GFLOPs of each measured run (at least two distinct values).
        times_ms: its measured time.

    Returns:
        ``(overhead_ms, gflops_per_s)``; the overhead is clipped at 0 (a negative intercept is
        measurement noise, not time travel).

    Raises:
        ProfileError: fewer than two distinct GFLOPs, or time not increasing with GFLOPs.

    Example:
        >>> fit_overhead_and_rate([1.0, 2.0, 3.0], [52.0, 102.0, 152.0])
        (2.0, 20.0)
    """
    n = len(gflops)
    if n != len(times_ms) or n < 2 or len(set(gflops)) < 2:
        raise ProfileError("need timings at two or more distinct GFLOPs to fit a profile")
    mg = sum(gflops) / n
    mt = sum(times_ms) / n
    var = sum((g - mg) ** 2 for g in gflops)
    cov = sum((g - mg) * (t - mt) for g, t in zip(gflops, times_ms, strict=True))
    slope = cov / var  # ms per GFLOP
    if slope <= 0:
        raise ProfileError(f"time does not grow with GFLOPs (slope {slope:.3g} ms/GFLOP): the timings are "
                           "too noisy; use more repeats or a larger batch")
    return max(0.0, mt - slope * mg), 1000.0 / slope
