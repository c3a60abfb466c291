"""The front artifact's pydantic models and their invariants (no I/O here).

Every model forbids unknown keys and is frozen. :class:`FrontArtifact` checks the cross-field
invariants (unique ids, one accuracy entry per grid SNR and channel, schedule lengths, and through
:mod:`.consistency` that ``r``, ``proportions``, ``tokens_per_layer`` and ``tokens_sent`` agree), so
an artifact that exists in memory is one the service can serve.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paretoctl.service.link import link_from_channel
from paretoctl.service.schema.consistency import check_schedule

SCHEMA_VERSION: Final = "paretoctl.front/2"
"""The schema version this code writes and reads."""

KNOWN_SCHEMA_VERSIONS: frozenset[str] = frozenset({SCHEMA_VERSION})
"""Versions the loader accepts; anything else is refused with reason ``"version"``."""

ConfigSource = Literal["reference", "uniform", "botorch", "sobol", "nsga2"]

_SNR_TOL = 1e-9
"""Tolerance when matching an accuracy entry's ``snr_db`` to the grid (the values are copied, not computed)."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PosFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    """Base of every artifact model: unknown keys are errors and instances are immutable.

    Forbidding extra keys keeps a typo in a writer from silently producing a document that loads
    without the field it meant to set; immutability means a loaded front can be shared between
    requests and threads (and keyed in a cache by identity) without anyone changing it underneath.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelSpec(_Model):
    """A channel the front was evaluated on.

    Attributes:
        kind: ``ideal``, ``awgn``, ``rayleigh``, ``rician`` (see ``paretoctl.channel_sim.channels``).
        params: the parameters given to ``make_channel`` (e.g. ``k_factor``, ``block``); a digital
            link has ``link: digital`` and the parameters of ``paretoctl.service.link.DigitalLink``.
    """

    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class ModelIdentity(_Model):
    """The model a front was built for; the SDK refuses to apply its decisions to any other.

    Attributes:
        name: timm model name.
        architecture_sha256: hex SHA-256 of the state-dict names and shapes
            (``paretoctl.models.identity.architecture_sha256``).
        weights_sha256: hex SHA-256 of the weight values (``paretoctl.models.identity.weights_sha256``).
    """

    name: str = Field(min_length=1)
    architecture_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SplitSizes(_Model):
    """Number of images in the validation and test splits used for the accuracies."""

    val: int = Field(ge=0)
    test: int = Field(ge=0)


class Provenance(_Model):
    """Where the front came from, enough to reproduce it.

    Attributes:
        model: model name (timm name or ``bundled``).
        model_identity: fingerprints of the model's architecture and weights.
        checkpoint_sha256: hex SHA-256 of the weights (``None`` for random init, e.g. smoke tests).
        dataset: data set name.
        split_sizes: validation/test images.
        channels: the channels evaluated; their kinds key the accuracy tables.
        snr_grid_db: the SNR grid (Es/N0, dB), strictly increasing.
        seed: the build's seed.
        split_index: edge/server split: blocks ``[0, split_index)`` run on the edge.
        depth: number of transformer blocks (length of every schedule).
        num_patches: patch tokens entering block 0 (prefix tokens not counted).
        num_prefix_tokens: class, distillation and register tokens (never merged).
        budget: evaluations the search was allowed.
        method: search method (``botorch``, ``sobol``, ...).
        packages: versions of the packages that built the front.
        built_at: build time, ISO 8601 UTC.
        config: the build config as given.
    """

    model: str
    model_identity: ModelIdentity
    checkpoint_sha256: str | None = None
    dataset: str
    split_sizes: SplitSizes
    channels: list[ChannelSpec] = Field(min_length=1)
    snr_grid_db: list[FiniteFloat] = Field(min_length=1)
    seed: int
    split_index: int = Field(ge=0)
    depth: int = Field(ge=1)
    num_patches: int = Field(ge=1)
    num_prefix_tokens: int = Field(ge=0)
    budget: int = Field(ge=0)
    method: str
    packages: dict[str, str] = Field(default_factory=dict)
    built_at: datetime
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Provenance:
        grid = self.snr_grid_db
        for i in range(1, len(grid)):
            if not grid[i] > grid[i - 1]:
                raise ValueError(f"snr_grid_db must be strictly increasing; entry {i} ({grid[i]}) "
                                 f"is not above entry {i - 1} ({grid[i - 1]})")
        kinds = [c.kind for c in self.channels]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"channels: duplicate kind in {kinds}")
        if self.split_index > self.depth:
            raise ValueError(f"split_index ({self.split_index}) exceeds depth ({self.depth})")
        return self

    @property
    def channel_kinds(self) -> list[str]:
        """The channel kinds, in provenance order (the first is the default channel)."""
        return [c.kind for c in self.channels]


LatencySource = Literal["measured", "modelled"]
"""Where a latency figure comes from: timed on a machine, or the analytic profile formula."""

LatencyStatistic = Literal["p50", "p90"]


class PartTiming(_Model):
    """Wall times of one part (edge or server) of one configuration, milliseconds.

    Attributes:
        p50_ms: median.
        p90_ms: 90th percentile.
        runs: timed runs.
        rel_ci: half-width of the median's 95% interval over the median.
        p90_rel_ci: the same for the p90 (1.0 when too few runs bound it; absent in fronts measured
            before it was recorded).
    """

    p50_ms: NonNegFloat
    p90_ms: NonNegFloat
    runs: int = Field(ge=1)
    rel_ci: NonNegFloat
    p90_rel_ci: NonNegFloat | None = None

    def at(self, statistic: LatencyStatistic) -> float:
        """The figure the policy uses under ``statistic``."""
        return self.p90_ms if statistic == "p90" else self.p50_ms


class ConfigTiming(_Model):
    """Measured times of one configuration: the edge at batch 1, the server at the stated batch."""

    config_id: str = Field(min_length=1)
    r: tuple[Annotated[int, Field(ge=0)], ...]
    edge: PartTiming
    server: PartTiming
    thresholds: tuple[FiniteFloat, ...] | None = None
    """The per-block thresholds timed, for a threshold configuration (None: the fixed schedule ``r``)."""
    mode: Literal["eager", "compiled"] = "eager"
    """The forward path timed: eager PyTorch, or ``torch.compile`` of this schedule
    (``paretoctl.models.compiled``; threshold configurations are always eager)."""
    compile_s: NonNegFloat | None = None
    """Compiled: seconds the device spent compiling this schedule's two parts (plus one run of each)."""


class TimingMachine(_Model):
    """What the measurements were taken on.

    Attributes:
        cpu: CPU model string.
        torch: torch version.
        threads: torch intra-op threads.
        host: host name.
        server_batch: images per server forward when timing the server part.
    """

    cpu: str
    torch: str
    threads: int = Field(ge=1)
    host: str = "unknown"
    server_batch: int = Field(1, ge=1)


class Measurements(_Model):
    """Per-configuration times measured by ``paretoctl.models.timing`` (the build, ``paretoctl profile
    --front`` or the SDK's ``calibrate``).

    Attributes:
        statistic: which percentile the policy uses: ``p90`` by default, since a budget is a
            deadline and the median would miss it half the time; edge p90 + server p90 bounds the
            p90 of their sum from above.
        machine: where they were taken.
        measured_at: when (ISO 8601 UTC).
        front_checksum: the front they were measured for, when known.
        configs: one entry per timed configuration.
    """

    statistic: LatencyStatistic = "p90"
    machine: TimingMachine
    measured_at: datetime
    front_checksum: str | None = None
    configs: tuple[ConfigTiming, ...] = ()

    def lookup(self, config_id: str, r: tuple[int, ...],
               thresholds: tuple[float, ...] | None = None) -> tuple[float, float] | None:
        """``(edge_ms, server_ms)`` of the entry with this id, schedule and thresholds, or None."""
        c = self._by_id.get(config_id)
        if c is None or c.r != r or c.thresholds != thresholds:
            return None
        return c.edge.at(self.statistic), c.server.at(self.statistic)

    @cached_property
    def _by_id(self) -> dict[str, ConfigTiming]:
        return {c.config_id: c for c in self.configs}

    @cached_property
    def _hash(self) -> int:
        return hash((self.statistic, self.machine, self.measured_at, self.front_checksum, self.configs))

    def __hash__(self) -> int:
        # Cached: the policy keys its index by the profile on every query, and hashing ~20 nested
        # entries each time would cost more than the query itself.
        return self._hash


class DeviceProfile(_Model):
    """Speeds and fixed costs of an edge device, its radio link and the server.

    Used by ``paretoctl.service.latency.predict_latency``; recorded in the front as the profile the front's
    latencies were computed with. Rates must be positive (a zero rate would mean infinite latency,
    which is a configuration error, not a device).

    Attributes:
        name: profile name (file stem under ``configs/devices/``).
        edge_gflops_per_s: sustained edge compute on this model, GFLOP/s.
        server_gflops_per_s: sustained server compute, GFLOP/s.
        symbol_rate_hz: complex channel symbols per second of the radio link.
        edge_overhead_ms: fixed per-inference edge cost (launch, pre-processing).
        link_overhead_ms: fixed per-transfer link cost (framing, access, propagation).
        server_overhead_ms: fixed per-request server cost.
    """

    name: str = Field(min_length=1)
    edge_gflops_per_s: PosFloat
    server_gflops_per_s: PosFloat
    symbol_rate_hz: PosFloat
    edge_overhead_ms: NonNegFloat = 0.0
    link_overhead_ms: NonNegFloat = 0.0
    server_overhead_ms: NonNegFloat = 0.0
    measurements: Measurements | None = None
    """Measured edge and server times per configuration (``None``: every figure is modelled)."""

    def measured(self, config_id: str, r: list[int] | tuple[int, ...],
                 thresholds: list[float] | tuple[float, ...] | None = None) -> tuple[float, float] | None:
        """``(edge_ms, server_ms)`` measured for this configuration at the profile's statistic, or None.

        A measurement counts only for the same id, schedule *and* thresholds (None for a fixed
        schedule), so a profile measured on one front never lends its figures to another front's
        configuration that happens to share an id, nor a fixed schedule's to a threshold one.
        """
        if self.measurements is None:
            return None
        return self.measurements.lookup(config_id, tuple(r), None if thresholds is None else tuple(thresholds))


class AccuracyAtSnr(_Model):
    """Measured top-1 accuracy at one grid SNR.

    Attributes:
        snr_db: the grid SNR (dB).
        mean: accuracy in [0, 1], averaged over images and channel draws.
        stderr: standard error of ``mean``.
        n_images: images evaluated.
        n_draws: channel noise draws per image.
    """

    snr_db: FiniteFloat
    mean: Fraction
    stderr: NonNegFloat
    n_images: int = Field(ge=1)
    n_draws: int = Field(ge=1)


class Gflops(_Model):
    """Forward-pass GFLOPs (2 x MACs): the whole model, the edge part and the server part."""

    total: NonNegFloat
    edge: NonNegFloat
    server: NonNegFloat


class LatencyRecord(_Model):
    """Latency of a configuration under the front's device profile, in milliseconds.

    Each part says where it comes from: ``measured`` (the profile's measurements, at its statistic)
    or ``modelled`` (``overhead + GFLOPs / rate`` or ``overhead + uses / symbol rate``). A front
    written before the sources existed reads as all ``modelled``, which is what it was.
    """

    edge_ms: NonNegFloat
    transmit_ms: NonNegFloat
    server_ms: NonNegFloat
    total_ms: NonNegFloat
    edge_source: LatencySource = "modelled"
    transmit_source: LatencySource = "modelled"
    server_source: LatencySource = "modelled"


MergingKind = Literal["proportions", "thresholds"]
"""How a configuration merges: a fixed schedule (``r`` per block, the same for every image) or
per-block similarity thresholds (``paretoctl.models.threshold``: the tokens merged vary per image)."""


class CostSummary(_Model):
    """A per-image cost over the evaluated images: its mean and 95th percentile."""

    mean: NonNegFloat
    p95: NonNegFloat


class CostDistribution(_Model):
    """The per-image costs of an input-adaptive (threshold) configuration, over ``n_images`` images.

    The objectives and the front's scalar fields use the means; latency figures derived from costs
    use the 95th percentiles, so a served latency is honest about busy images.

    Attributes:
        n_images: images the distribution was measured on (the validation split of the build).
        gflops_total, gflops_edge, gflops_server: GFLOPs per image (same convention as :class:`Gflops`).
        tokens_sent: tokens sent at the split per image (prefix included).
        channel_uses: complex channel symbols per image (side information included).
        tokens_per_layer_mean: mean tokens entering each block (prefix included), ``depth`` entries.
    """

    n_images: int = Field(ge=1)
    gflops_total: CostSummary
    gflops_edge: CostSummary
    gflops_server: CostSummary
    tokens_sent: CostSummary
    channel_uses: CostSummary
    tokens_per_layer_mean: list[NonNegFloat]


class FrontConfig(_Model):
    """One merge schedule with its costs and measured accuracies.

    A threshold configuration (``merging == "thresholds"``) also carries ``thresholds`` and
    ``cost_distribution``; its ``r``, ``proportions``, ``tokens_per_layer``, ``tokens_sent``,
    ``channel_uses`` and ``gflops`` then describe its *mean* behaviour over the evaluated images
    (token counts rounded to the nearest integer, consistently), and the distribution is the truth.

    Attributes:
        id: unique id (the reference is ``unmerged``).
        source: what proposed it.
        proportions: per-layer merge proportions p_l in [0, 1].
        r: per-layer tokens merged.
        tokens_per_layer: tokens entering each layer, prefix tokens included.
        gflops: compute cost.
        tokens_sent: tokens transmitted at the split.
        channel_uses: complex channel symbols for them (side information included).
        latency: latency under the front's device profile.
        accuracy_val: channel kind -> one entry per grid SNR, validation split (used for selection).
        accuracy_test: the same on the test split (reported as the predicted accuracy).
        bits: digital channel label -> bits one image puts on that link (quantised tokens plus side
            information, ``paretoctl.service.link.payload_bits``); ``None`` on a front without one.
    """

    id: str = Field(min_length=1)
    source: ConfigSource
    proportions: list[Fraction]
    r: list[Annotated[int, Field(ge=0)]]
    tokens_per_layer: list[Annotated[int, Field(ge=1)]]
    gflops: Gflops
    tokens_sent: int = Field(ge=0)
    channel_uses: int = Field(ge=0)
    latency: LatencyRecord
    accuracy_val: dict[str, list[AccuracyAtSnr]]
    accuracy_test: dict[str, list[AccuracyAtSnr]]
    bits: dict[str, Annotated[int, Field(ge=0)]] | None = None
    merging: MergingKind = "proportions"
    thresholds: list[FiniteFloat] | None = None
    cost_distribution: CostDistribution | None = None

    @model_validator(mode="after")
    def _check_merging_kind(self) -> FrontConfig:
        adaptive = self.merging == "thresholds"
        if adaptive != (self.thresholds is not None) or adaptive != (self.cost_distribution is not None):
            raise ValueError("a configuration has thresholds and cost_distribution exactly when merging is "
                             f"'thresholds' (merging {self.merging!r}, thresholds "
                             f"{'set' if self.thresholds is not None else 'missing'}, cost_distribution "
                             f"{'set' if self.cost_distribution is not None else 'missing'})")
        return self


class ParetoSet(_Model):
    """Ids of the non-dominated configurations for one (channel, SNR) of the grid."""

    channel: str
    snr_db: FiniteFloat
    config_ids: list[str]


class FrontArtifact(_Model):
    """The whole front document.

    ``checksum`` is ``None`` on an artifact built in memory; :func:`dump_front` computes it when
    writing, and :func:`load_front` checks it when reading.
    """

    schema_version: Literal["paretoctl.front/2"] = SCHEMA_VERSION
    checksum: str | None = None
    provenance: Provenance
    device_profile: DeviceProfile
    reference_config_id: str
    configs: list[FrontConfig] = Field(min_length=1)
    pareto: list[ParetoSet] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_invariants(self) -> FrontArtifact:
        prov = self.provenance
        grid = prov.snr_grid_db
        kinds = set(prov.channel_kinds)
        ids: set[str] = set()
        for i, cfg in enumerate(self.configs):
            where = f"configs[{i}] (id {cfg.id!r})"
            if cfg.id in ids:
                raise ValueError(f"{where}: duplicate id")
            ids.add(cfg.id)
            lengths = ["proportions", "r", "tokens_per_layer"]
            if cfg.thresholds is not None and cfg.cost_distribution is not None:
                lengths += ["thresholds", "cost_distribution.tokens_per_layer_mean"]
            for name in lengths:
                dist = cfg.cost_distribution
                value = dist.tokens_per_layer_mean if dist is not None and "." in name else getattr(cfg, name)
                n = len(value)
                if n != prov.depth:
                    raise ValueError(f"{where}.{name}: length {n}, expected depth {prov.depth}")
            check_schedule(where, cfg, prov)
            for split in ("accuracy_val", "accuracy_test"):
                table: dict[str, list[AccuracyAtSnr]] = getattr(cfg, split)
                if set(table) != kinds:
                    raise ValueError(f"{where}.{split}: channels {sorted(table)} do not match "
                                     f"provenance.channels {sorted(kinds)}")
                for kind, points in table.items():
                    _check_grid_points(f"{where}.{split}.{kind}", points, grid)
        _check_digital_links(self)
        if self.reference_config_id not in ids:
            raise ValueError(f"reference_config_id {self.reference_config_id!r} is not a config id")
        for j, entry in enumerate(self.pareto):
            where = f"pareto[{j}]"
            if entry.channel not in kinds:
                raise ValueError(f"{where}.channel {entry.channel!r} is not in provenance.channels")
            if not any(abs(entry.snr_db - g) <= _SNR_TOL for g in grid):
                raise ValueError(f"{where}.snr_db {entry.snr_db} is not a grid SNR")
            missing = [cid for cid in entry.config_ids if cid not in ids]
            if missing:
                raise ValueError(f"{where}.config_ids: unknown ids {missing}")
        return self

    def config(self, config_id: str) -> FrontConfig:
        """The configuration with this id (``KeyError`` if absent)."""
        for cfg in self.configs:
            if cfg.id == config_id:
                return cfg
        raise KeyError(config_id)


def _check_grid_points(where: str, points: list[AccuracyAtSnr], grid: list[float]) -> None:
    """Raise unless ``points`` has one entry per grid SNR, in grid order."""
    if len(points) != len(grid):
        raise ValueError(f"{where}: {len(points)} entries, expected one per grid SNR ({len(grid)})")
    for k, (p, g) in enumerate(zip(points, grid, strict=True)):
        if abs(p.snr_db - g) > _SNR_TOL:
            raise ValueError(f"{where}[{k}].snr_db is {p.snr_db}, expected grid SNR {g}")


def _check_digital_links(front: FrontArtifact) -> None:
    """Raise unless every digital channel's parameters are valid and every config has its bits."""
    digital = set()
    for j, spec in enumerate(front.provenance.channels):
        try:
            if link_from_channel(spec.kind, spec.params) is not None:
                digital.add(spec.kind)
        except ValueError as exc:
            raise ValueError(f"provenance.channels[{j}].params: {exc}") from None
    for i, cfg in enumerate(front.configs):
        have = set(cfg.bits or {})
        if have != digital:
            raise ValueError(f"configs[{i}] (id {cfg.id!r}).bits: channels {sorted(have)} do not match the "
                             f"digital channels {sorted(digital)}")
