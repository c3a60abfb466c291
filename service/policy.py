"""Policy selection: (front, SNR, latency budget) -> which merge schedule to run.

One pure function, :func:`select`, shared by the service, the CLI and the edge SDK (offline
fallback), so that a device and the server never disagree about what a front means.

Rule:
    1. Latency of every configuration is recomputed from its costs (edge/server GFLOPs, channel
       uses) with the given device profile, or the front's own profile; where that profile carries
       measured edge and server times for the configuration (its p90 by default), those replace
       the modelled ones (``paretoctl.service.latency.config_latency``; each part is labelled). A
       threshold (input-adaptive) configuration's modelled parts use the 95th percentiles of its
       per-image costs (``paretoctl.service.latency.latency_costs``), so its latency covers busy
       images; its accuracy, GFLOPs, tokens and channel uses are reported as its means.
    2. Of the configurations with ``latency <= latency_ms``, choose the one with the highest
       **validation** accuracy at the requested SNR (configurations are chosen on validation data;
       the test split is only reported). Ties go to the lower latency, then to the smaller id.
    3. ``min_accuracy`` (on the same validation figure) is a constraint: if the chosen
       configuration is below it, nothing within the budget meets it, and the decision is
       infeasible.

SNR between and outside grid points (accuracies are only measured at the grid points, and the
decision must never promise more than was measured):
    * at a grid point: that point;
    * strictly between two grid points: the **lower** of the accuracies at the two neighbours, for
      each configuration separately (conservative even where accuracy is not monotone in SNR);
    * above the grid: the top grid point (a better channel than was measured, so conservative);
    * below the grid: the lowest grid point, with ``extrapolated=True`` and a warning, since that
      accuracy was measured at a *better* channel than the one reported and may be optimistic.

The reported (test) accuracy follows the same rule, independently of validation.

Digital links (a channel whose parameters say ``link: digital``, :mod:`paretoctl.service.link`): the
front stores each configuration's bits per such channel, and the transmit time is computed at the
**query SNR itself** from the link's closed form (``bits / R(snr)``, times ``1 / (1 - P_out(snr))``
with retransmission, at the profile's symbol rate), so no grid point is involved and nothing is
interpolated: the time is exact at any SNR, and it grows as the SNR falls, so a weak link leaves
only configurations that put fewer bits on the air within a budget. The accuracy follows the grid
rule above (lower neighbour between points). The decision then reports ``bits``, the link rate
and outage, and ``channel_uses`` = the expected airtime in channel uses, rounded up.

Speed: everything that does not depend on the query (latencies under a profile, the
latency-sorted order, and for every (channel, grid point or pair of neighbouring points) the
conservative accuracies and a running arg-max along latency) is built once per (front, profile) and
kept in a small bounded cache in this module (never on the artifact, which stays a plain immutable
value), so a call is a bisection and a few lookups.

Example:
    >>> from tests.fronts import make_front          # doctest: +SKIP
    >>> d = select(make_front(), snr_db=7.5, latency_ms=5.0)  # doctest: +SKIP
    >>> d.feasible, d.snr_used_db                    # doctest: +SKIP
    (True, [5.0, 10.0])
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paretoctl.service.latency import LatencyBreakdown, config_latency_of
from paretoctl.service.link import DigitalLink, link_from_channel
from paretoctl.service.schema import (
    AccuracyAtSnr,
    DeviceProfile,
    FrontArtifact,
    FrontConfig,
    Gflops,
    LatencySource,
    MergingKind,
    ModelIdentity,
)

SNR_MIN_DB: Final = -50.0
SNR_MAX_DB: Final = 100.0
LATENCY_MAX_MS: Final = 1e6
"""Query bounds, the one copy (the service's parameters, the SDK's offline answers and the build's SNR
grid check use these): beyond them a number is a caller's bug (units, sign), not a link condition."""

_SNR_TOL = 1e-9
INDEX_CACHE_SIZE = 32
"""(front, profile) indexes kept at most: a service holds one front (two while reloading) under a
handful of device profiles; an SDK one front under one or two profiles."""

DecisionSource = Literal["local", "server", "cache"]


class PolicyError(ValueError):
    """A query the policy cannot answer (bad number, unknown channel); the message names the input.

    Attributes:
        param: the offending parameter (``snr_db``, ``latency_ms``, ``channel``, ``min_accuracy``).
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class UnknownChannelError(PolicyError):
    """The requested channel kind is not one the front was built for."""


class AccuracyEstimate(BaseModel):
    """An accuracy figure with its standard error, and the split it was measured on.

    Immutable, so that the policy index can build each one once and share it between decisions.
    """

    model_config = ConfigDict(frozen=True)

    mean: float
    stderr: float
    split: Literal["val", "test"]


class Decision(BaseModel):
    """The policy's answer.

    Attributes:
        feasible: a configuration satisfies the budget (and ``min_accuracy``).
        reason: why not, when infeasible.
        config_id: the chosen configuration (None when infeasible).
        merging: how it merges (None when infeasible): ``proportions``, a fixed schedule (apply
            ``r``), or ``thresholds``, input-adaptive merging (apply ``thresholds``).
        thresholds: a threshold configuration's per-block cosine-similarity thresholds, what the
            device applies (``paretoctl.models.patch.set_thresholds``); None for a fixed schedule.
        proportions: its per-layer merge proportions (a threshold configuration's mean behaviour).
        r: its per-layer merged-token counts, the schedule to apply on the device (for a threshold
            configuration its rounded mean over images, a description only: apply ``thresholds``).
        predicted_accuracy: test-split accuracy at the SNR (SNR rule applied): what to expect.
        validation_accuracy: validation-split accuracy used for the choice.
        latency: predicted latency breakdown under the profile (a threshold configuration's
            modelled parts from its 95th-percentile costs).
        gflops: compute (total, edge, server); a threshold configuration's mean per image.
        tokens_sent: tokens transmitted at the split (threshold configuration: rounded mean).
        channel_uses: complex channel symbols transmitted (threshold configuration: rounded mean).
        channel: channel kind the accuracies refer to.
        snr_db: the SNR asked for.
        snr_used_db: the grid point(s) whose accuracies were used.
        extrapolated: the SNR is below the grid (accuracy may be optimistic).
        warnings: human-readable caveats.
        latency_budget_ms: the budget asked for.
        min_accuracy: the accuracy floor asked for, if any.
        fastest_latency_ms: the lowest latency of any configuration on the front under this profile.
        fastest_latency_meeting_min_accuracy_ms: with ``min_accuracy``, the lowest latency of a
            configuration that meets it at this SNR (None if none does).
        best_accuracy_within_budget: best validation accuracy at this SNR within the budget
            (None if nothing fits).
        device_profile: name of the profile the latencies were computed with.
        front_version: the front's schema version.
        front_checksum: the front's checksum.
        model_identity: the model the front (so this decision) was built for; ``apply_policy``
            refuses to apply the decision to a model with another architecture or other weights.
        source: ``local`` (computed in this process), ``server`` (from the policy service) or
            ``cache`` (an SDK answering from its cached front because the server was unreachable).
        bits: digital links only: bits the configuration puts on the air per image.
        link_rate_bits_per_use: digital links only: the rate R at the query SNR.
        link_outage: digital links only: the per-block outage probability at the query SNR.
    """

    feasible: bool
    reason: str | None = None
    config_id: str | None = None
    merging: MergingKind | None = Field(
        None, description="how the chosen configuration merges: 'proportions' (a fixed schedule: apply r) or "
                          "'thresholds' (input-adaptive: apply thresholds); null when infeasible")
    thresholds: list[float] | None = Field(
        None, description="per-block cosine-similarity thresholds to apply when merging is 'thresholds' "
                          "(r is then the rounded mean schedule over images, for information); null otherwise")
    proportions: list[float] | None = None
    r: list[int] | None = None
    predicted_accuracy: AccuracyEstimate | None = None
    validation_accuracy: AccuracyEstimate | None = None
    latency: LatencyBreakdown | None = None
    gflops: Gflops | None = None
    tokens_sent: int | None = None
    channel_uses: int | None = None
    channel: str
    snr_db: float
    snr_used_db: list[float]
    extrapolated: bool = False
    warnings: list[str] = Field(default_factory=list)
    latency_budget_ms: float
    min_accuracy: float | None = None
    fastest_latency_ms: float
    fastest_latency_meeting_min_accuracy_ms: float | None = None
    best_accuracy_within_budget: float | None = None
    device_profile: str
    front_version: str
    front_checksum: str | None = None
    model_identity: ModelIdentity
    source: DecisionSource = "local"
    bits: int | None = None
    link_rate_bits_per_use: float | None = None
    link_outage: float | None = None

    @model_validator(mode="after")
    def _check_merging(self) -> Decision:
        """A decision read from elsewhere (a server's body) names thresholds exactly for a threshold configuration."""
        if (self.merging == "thresholds") != (self.thresholds is not None):
            raise ValueError(f"thresholds must be given exactly when merging is 'thresholds' (merging "
                             f"{self.merging!r}, thresholds {'set' if self.thresholds is not None else 'null'})")
        return self


def _chosen_fields(cfg: FrontConfig) -> dict[str, Any]:
    """The fields of a feasible decision that say what to apply: id, merging kind, thresholds, schedule."""
    return {"config_id": cfg.id, "merging": cfg.merging,
            "thresholds": None if cfg.thresholds is None else list(cfg.thresholds),
            "proportions": list(cfg.proportions), "r": list(cfg.r)}


@dataclass(frozen=True)
class _SnrView:
    """Per (channel, SNR key): conservative accuracies by latency rank, and the running best.

    ``best[j]`` is the rank (in latency order) of the best configuration among ranks ``0..j``
    (highest validation accuracy; ties to the earlier rank, i.e. lower latency, then smaller id).
    """

    val: tuple[AccuracyEstimate, ...]  # by latency rank
    test: tuple[AccuracyEstimate, ...]
    best: tuple[int, ...]


@dataclass(frozen=True)
class _ProfileIndex:
    """Everything query-independent for one (front, profile)."""

    profile_name: str
    configs: tuple[FrontConfig, ...]  # in latency order (ties by id)
    totals: tuple[float, ...]  # total latency by rank, ascending
    breakdowns: tuple[LatencyBreakdown, ...]
    views: dict[tuple[str, int, int], _SnrView]
    digital: dict[str, _DigitalIndex]


@dataclass(frozen=True)
class _DigitalIndex:
    """One digital channel: per configuration (in id order) its fixed latencies, bits and accuracies.

    The latency order depends on the query SNR, so it is not precomputed; a query costs one pass
    over the (small) front.
    """

    link: DigitalLink
    profile: DeviceProfile
    configs: tuple[FrontConfig, ...]
    edge_server_ms: tuple[tuple[float, float], ...]
    edge_server_sources: tuple[tuple[LatencySource, LatencySource], ...]
    bits: tuple[int, ...]
    val: dict[tuple[int, int], tuple[AccuracyEstimate, ...]]
    test: dict[tuple[int, int], tuple[AccuracyEstimate, ...]]


def _build_index(front: FrontArtifact, profile: DeviceProfile) -> _ProfileIndex:
    """Latency-sort the configurations and precompute every (channel, SNR key) view."""
    rows = []
    for cfg in front.configs:
        lat = config_latency_of(cfg, profile)
        rows.append((lat.total_ms, cfg.id, cfg, lat))
    rows.sort(key=lambda row: (row[0], row[1]))
    configs = tuple(row[2] for row in rows)
    n_grid = len(front.provenance.snr_grid_db)
    keys = [(k, k) for k in range(n_grid)] + [(k, k + 1) for k in range(n_grid - 1)]
    views: dict[tuple[str, int, int], _SnrView] = {}
    digital: dict[str, _DigitalIndex] = {}
    for spec in front.provenance.channels:
        link = link_from_channel(spec.kind, spec.params)
        if link is not None:
            digital[spec.kind] = _build_digital(front, spec.kind, link, profile, keys)
    for kind in front.provenance.channel_kinds:
        if kind in digital:
            continue
        for lo, hi in keys:
            val = tuple(_conservative(c.accuracy_val[kind], lo, hi, "val") for c in configs)
            test = tuple(_conservative(c.accuracy_test[kind], lo, hi, "test") for c in configs)
            best: list[int] = []
            for j, est in enumerate(val):
                if not best or est.mean > val[best[-1]].mean:
                    best.append(j)
                else:
                    best.append(best[-1])
            views[(kind, lo, hi)] = _SnrView(val=val, test=test, best=tuple(best))
    return _ProfileIndex(profile_name=profile.name, configs=configs, totals=tuple(r[0] for r in rows),
                         breakdowns=tuple(r[3] for r in rows), views=views, digital=digital)


def _build_digital(front: FrontArtifact, kind: str, link: DigitalLink, profile: DeviceProfile,
                   keys: list[tuple[int, int]]) -> _DigitalIndex:
    """The query-independent part of a digital channel's index."""
    configs = tuple(sorted(front.configs, key=lambda c: c.id))
    lats = [config_latency_of(c, profile, channel_uses=0.0) for c in configs]
    return _DigitalIndex(
        link=link, profile=profile, configs=configs,
        edge_server_ms=tuple((lat.edge_ms, lat.server_ms) for lat in lats),
        edge_server_sources=tuple((lat.edge_source, lat.server_source) for lat in lats),
        bits=tuple((c.bits or {})[kind] for c in configs),
        val={(lo, hi): tuple(_conservative(c.accuracy_val[kind], lo, hi, "val") for c in configs)
             for lo, hi in keys},
        test={(lo, hi): tuple(_conservative(c.accuracy_test[kind], lo, hi, "test") for c in configs)
              for lo, hi in keys})


def _conservative(points: list[AccuracyAtSnr], lo: int, hi: int, split: Literal["val", "test"]) -> AccuracyEstimate:
    """The lower-accuracy point of ``points[lo]`` and ``points[hi]`` (its mean and stderr)."""
    a, b = points[lo], points[hi]
    p = a if a.mean <= b.mean else b
    return AccuracyEstimate.model_construct(mean=p.mean, stderr=p.stderr, split=split)


class _IndexCache:
    """A bounded LRU of policy indexes keyed by (front object, profile), holding the front strongly.

    Keyed by the front's ``id`` and checked with ``is``: the entry keeps the front alive, so its id
    cannot be reused by another object while the entry exists, and a copy of a front (even one that
    kept the old checksum through ``model_copy(update=...)``) never sees another front's index.
    Thread-safe: the service answers from one event loop, but an SDK may be shared by threads.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, DeviceProfile], tuple[FrontArtifact, _ProfileIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, front: FrontArtifact, profile: DeviceProfile) -> _ProfileIndex:
        key = (id(front), profile)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is front:
                self._entries.move_to_end(key)
                return entry[1]
        idx = _build_index(front, profile)  # outside the lock: two threads may both build; same result
        with self._lock:
            self._entries[key] = (front, idx)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return idx

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every index (and the references to their fronts)."""
        with self._lock:
            self._entries.clear()


_INDEXES = _IndexCache(INDEX_CACHE_SIZE)


def config_latencies(front: FrontArtifact, snr_db: float, channel: str | None = None,
                     profile: DeviceProfile | None = None) -> dict[str, float]:
    """Total latency (ms) of every configuration, by id, as :func:`select` computes it at ``snr_db``.

    Independent of the SNR on an analog channel; on a digital one the transmit time is taken at
    ``snr_db``. Used by the policy map to choose its latency axis.
    """
    idx = policy_index(front, profile)
    kind = front.provenance.channel_kinds[0] if channel is None else channel
    di = idx.digital.get(kind)
    if di is None:
        return {cfg.id: total for cfg, total in zip(idx.configs, idx.totals, strict=True)}
    p = di.profile
    ms_per_bit = 1000.0 * di.link.uses_per_bit(snr_db) / p.symbol_rate_hz
    return {cfg.id: edge + server + p.link_overhead_ms + bits * ms_per_bit
            for cfg, (edge, server), bits in zip(di.configs, di.edge_server_ms, di.bits, strict=True)}


def is_digital_channel(front: FrontArtifact, channel: str) -> bool:
    """Whether ``channel`` (a kind of the front) is a digital link."""
    return any(spec.kind == channel and link_from_channel(spec.kind, spec.params) is not None
               for spec in front.provenance.channels)


def policy_index(front: FrontArtifact, profile: DeviceProfile | None = None) -> _ProfileIndex:
    """The index of ``front`` under ``profile`` (the front's own profile by default), built once.

    Cached in a bounded module-level LRU (:data:`INDEX_CACHE_SIZE` entries), not on the artifact.
    """
    return _INDEXES.get(front, profile if profile is not None else front.device_profile)


def snr_key(grid: list[float], snr_db: float) -> tuple[int, int, bool]:
    """Grid indices ``(lo, hi)`` whose accuracies apply at ``snr_db``, and the extrapolation flag.

    ``lo == hi`` at a grid point, above the grid and below it; ``hi == lo + 1`` strictly between.
    """
    if snr_db < grid[0] - _SNR_TOL:
        return 0, 0, True
    k = bisect_right(grid, snr_db + _SNR_TOL) - 1
    if k >= len(grid) - 1:
        return len(grid) - 1, len(grid) - 1, False
    if abs(grid[k] - snr_db) <= _SNR_TOL:
        return k, k, False
    return k, k + 1, False


def _check_number(param: str, value: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PolicyError(param, f"{param} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise PolicyError(param, f"{param} must be finite, got {value!r}")
    return x


def select(
    front: FrontArtifact,
    snr_db: float,
    latency_ms: float,
    *,
    channel: str | None = None,
    min_accuracy: float | None = None,
    profile: DeviceProfile | None = None,
) -> Decision:
    """Choose the most accurate configuration within a latency budget at an SNR.

    See the module docstring for the full rule; in short: validation accuracy chooses, test accuracy
    is reported, between grid points the lower neighbour's accuracy counts, below the grid the
    lowest point is used and the decision is marked ``extrapolated``.

    Args:
        front: the loaded artifact.
        snr_db: the link's current SNR (Es/N0, dB).
        latency_ms: end-to-end latency budget (ms, in (0, 1e6]).
        channel: channel kind; defaults to the front's first channel.
        min_accuracy: optional floor on the (validation) accuracy, in [0, 1].
        profile: device profile for the latencies; defaults to the front's.

    Returns:
        A :class:`Decision`; ``feasible=False`` (with ``fastest_latency_ms`` and, for
        ``min_accuracy``, ``best_accuracy_within_budget``) when nothing qualifies.

    Raises:
        PolicyError: SNR not finite or outside [:data:`SNR_MIN_DB`, :data:`SNR_MAX_DB`], budget not in
            (0, :data:`LATENCY_MAX_MS`], ``min_accuracy`` outside [0, 1].
        UnknownChannelError: ``channel`` is not on the front.
    """
    snr = _check_number("snr_db", snr_db)
    if not SNR_MIN_DB <= snr <= SNR_MAX_DB:
        raise PolicyError("snr_db", f"snr_db must be in [{SNR_MIN_DB:g}, {SNR_MAX_DB:g}] dB, got {snr_db!r}")
    budget = _check_number("latency_ms", latency_ms)
    if not 0 < budget <= LATENCY_MAX_MS:
        raise PolicyError("latency_ms", f"latency_ms must be in (0, {LATENCY_MAX_MS:g}], got {latency_ms!r}")
    floor = None
    if min_accuracy is not None:
        floor = _check_number("min_accuracy", min_accuracy)
        if not 0.0 <= floor <= 1.0:
            raise PolicyError("min_accuracy", f"min_accuracy must be in [0, 1], got {min_accuracy!r}")
    kinds = front.provenance.channel_kinds
    kind = kinds[0] if channel is None else channel
    if kind not in kinds:
        raise UnknownChannelError("channel", f"unknown channel {channel!r}; this front has {kinds}")

    idx = policy_index(front, profile)
    grid = front.provenance.snr_grid_db
    lo, hi, extrapolated = snr_key(grid, snr)
    used = [grid[lo]] if lo == hi else [grid[lo], grid[hi]]
    warnings = []
    if extrapolated:
        warnings.append(
            f"SNR {snr:g} dB is below the lowest grid point ({grid[0]:g} dB): the accuracy shown was "
            f"measured at {grid[0]:g} dB, a better channel than requested, and may be optimistic")

    common: dict[str, Any] = {  # the fields every decision carries, on either kind of link
        "channel": kind, "snr_db": snr, "snr_used_db": used, "extrapolated": extrapolated,
        "warnings": warnings, "latency_budget_ms": budget, "min_accuracy": floor,
        "device_profile": idx.profile_name, "front_version": front.schema_version,
        "front_checksum": front.checksum, "model_identity": front.provenance.model_identity,
    }
    if kind in idx.digital:
        return _select_digital(front, idx.digital[kind], snr, budget, floor, (lo, hi), common)
    view = idx.views[(kind, lo, hi)]
    n_fit = bisect_right(idx.totals, budget)
    common["fastest_latency_ms"] = idx.totals[0]
    if floor is not None:
        common["fastest_latency_meeting_min_accuracy_ms"] = next(
            (idx.totals[j] for j, est in enumerate(view.val) if est.mean >= floor), None)
    if n_fit == 0:
        return Decision.model_construct(
            feasible=False, reason=(f"no configuration fits {budget:g} ms under profile "
                                    f"{idx.profile_name!r}; the fastest takes {idx.totals[0]:.4g} ms"),
            **common)
    j = view.best[n_fit - 1]
    common["best_accuracy_within_budget"] = view.val[j].mean
    refusal = _below_floor(budget, floor, snr, common)
    if refusal is not None:
        return refusal
    cfg = idx.configs[j]
    return Decision.model_construct(
        feasible=True, reason=None, **_chosen_fields(cfg),
        predicted_accuracy=view.test[j], validation_accuracy=view.val[j],
        latency=idx.breakdowns[j], gflops=cfg.gflops, tokens_sent=cfg.tokens_sent,
        channel_uses=cfg.channel_uses, **common)



def _below_floor(budget: float, floor: float | None, snr: float, common: dict[str, Any]) -> Decision | None:
    """The infeasible decision when the best configuration within the budget misses ``min_accuracy``.

    ``common`` holds the decision's shared fields, ``best_accuracy_within_budget`` and ``channel``
    included; both selection paths (analog and digital) refuse through here, with one message.
    """
    best = common["best_accuracy_within_budget"]
    if floor is None or best >= floor:
        return None
    return Decision.model_construct(
        feasible=False, reason=(f"no configuration within {budget:g} ms reaches accuracy {floor:g} "
                                f"at {snr:g} dB on {common['channel']}; the best is {best:.4g}"),
        **common)


def _select_digital(front: FrontArtifact, di: _DigitalIndex, snr: float, budget: float, floor: float | None,
                    key: tuple[int, int], common: dict[str, Any]) -> Decision:
    """:func:`select` on a digital channel: latencies at the query SNR, then the same rule."""
    p = di.profile
    uses_per_bit = di.link.uses_per_bit(snr)
    ms_per_bit = 1000.0 * uses_per_bit / p.symbol_rate_hz
    val, test = di.val[key], di.test[key]
    rows = []
    for k, (cfg, (edge, server), bits) in enumerate(zip(di.configs, di.edge_server_ms, di.bits, strict=True)):
        transmit = p.link_overhead_ms + bits * ms_per_bit
        rows.append((edge + transmit + server, cfg.id, k, edge, transmit, server))
    rows.sort()
    common = {**common, "fastest_latency_ms": rows[0][0],
              "link_rate_bits_per_use": di.link.rate_bits(snr), "link_outage": di.link.outage(snr)}
    if floor is not None:
        common["fastest_latency_meeting_min_accuracy_ms"] = next(
            (row[0] for row in rows if val[row[2]].mean >= floor), None)
    fitting = [row for row in rows if row[0] <= budget]
    if not fitting:
        return Decision.model_construct(
            feasible=False, reason=(f"no configuration fits {budget:g} ms under profile {p.name!r} at "
                                    f"{snr:g} dB; the fastest takes {rows[0][0]:.4g} ms"), **common)
    best = fitting[0]
    for row in fitting[1:]:  # strictly better only: ties stay with the lower latency, then the smaller id
        if val[row[2]].mean > val[best[2]].mean:
            best = row
    total, _, k, edge, transmit, server = best
    common["best_accuracy_within_budget"] = val[k].mean
    refusal = _below_floor(budget, floor, snr, common)
    if refusal is not None:
        return refusal
    cfg = di.configs[k]
    return Decision.model_construct(
        feasible=True, reason=None, **_chosen_fields(cfg),
        predicted_accuracy=test[k], validation_accuracy=val[k],
        latency=LatencyBreakdown.model_construct(edge_ms=edge, transmit_ms=transmit, server_ms=server,
                                                 total_ms=total, edge_source=di.edge_server_sources[k][0],
                                                 server_source=di.edge_server_sources[k][1]),
        gflops=cfg.gflops, tokens_sent=cfg.tokens_sent, channel_uses=math.ceil(di.bits[k] * uses_per_bit),
        bits=di.bits[k], **common)
