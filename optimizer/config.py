"""Build configuration: one YAML file says which model, data, channels, SNR grid and search to run.

The schema is checked here (no model, no data, no torch beyond the channel constructors); the checks
that need the file system or timm (profile, checkpoint, data folders, split index against the model's
depth, leakage) are in ``paretoctl.optimizer.preflight``. Every error is one line that names the
field (``search.budget: ...``), so a typo never costs a 15-minute build.

Relative paths in the file (``device``, ``model.checkpoint``, ``data.root``, ``data.val_root``,
``data.test_root``) are resolved against the config file's own directory, so a config means the
same thing whatever directory ``paretoctl build`` is started from.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paretoctl.optimizer.runtime import RuntimeSection
from paretoctl.service.policy import SNR_MAX_DB, SNR_MIN_DB
from paretoctl.service.schema import ChannelSpec as ArtifactChannelSpec
from paretoctl.service.validation import format_validation_error

if TYPE_CHECKING:
    from paretoctl.models.timing import TimingSettings

ChannelKind = Literal["ideal", "awgn", "rayleigh", "rician"]
MethodName = Literal["botorch", "sobol", "uniform", "nsga2"]
SpaceName = Literal["proportions", "thresholds"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEVICE = REPO_ROOT / "configs" / "devices" / "default.yaml"
"""The device profile used when a config names none."""

PATH_FIELDS = ("device", "model.checkpoint", "data.root", "data.val_root", "data.test_root")
"""Dotted keys holding file-system paths, resolved against the config file's directory."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    """Which ViT to optimise. ``name: bundled`` is the shipped Fashion-MNIST model."""

    name: str = Field("bundled", min_length=1)
    checkpoint: str | None = None
    pretrained: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DataSection(_Strict):
    """Where images come from. Configurations are chosen on ``val`` and reported on ``test``."""

    kind: Literal["fmnist", "image_folder"] = "fmnist"
    root: str | None = None
    val_root: str | None = None
    test_root: str | None = None
    val_size: int = Field(5000, ge=1)
    split_seed: int = 0
    val_limit: int | None = Field(2000, ge=1)
    test_limit: int | None = Field(None, ge=1)
    batch_size: int = Field(500, ge=1)

    @model_validator(mode="after")
    def _folders_given(self) -> DataSection:
        if self.kind == "image_folder" and not (self.val_root and self.test_root):
            raise ValueError("data.kind=image_folder needs data.val_root and data.test_root")
        return self


class ChannelSpec(ArtifactChannelSpec):
    """One channel of the grid: the artifact's ``{kind, params}``, with its parameters checked.

    The YAML may give the parameters flat (``{kind: rician, k_factor: 4, block: token}``) or under
    ``params``; either way they must be ones ``paretoctl.channel_sim.make_channel`` accepts for that
    kind, with valid values (checked by constructing the channel, which is cheap).
    """

    kind: ChannelKind

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_params(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        flat = {k: v for k, v in raw.items() if k not in ("kind", "params")}
        if not flat:
            return raw
        nested = raw.get("params") or {}
        if not isinstance(nested, dict):
            return raw  # the field validator reports it
        both = sorted(set(flat) & set(nested))
        if both:
            raise ValueError(f"{both} given both flat and under params")
        return {"kind": raw.get("kind"), "params": {**nested, **flat}}

    @model_validator(mode="after")
    def _params_fit_kind(self) -> ChannelSpec:
        from paretoctl.channel_sim.channels import make_channel

        try:
            make_channel(self.kind, **self.params)
        except (ValueError, TypeError) as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def label(self) -> str:
        """Key used in artifacts: the kind, plus K for Rician, plus ``-digital`` for a digital link."""
        k = self.params.get("k_factor")
        label = self.kind if k is None else f"{self.kind}-k{float(k):g}"
        return f"{label}-digital" if self.params.get("link") == "digital" else label


class ChannelSection(_Strict):
    """The channels and the SNR grid (Es/N0 in dB) every configuration is measured at."""

    kinds: list[ChannelSpec] = Field(min_length=1)
    snr_grid_db: list[float] = Field(min_length=1)
    draws: int = Field(1, ge=1, le=64)

    @field_validator("snr_grid_db")
    @classmethod
    def _increasing(cls, grid: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(grid)):
            raise ValueError(f"must be strictly increasing, got {grid}")
        if any(not SNR_MIN_DB <= s <= SNR_MAX_DB for s in grid):
            raise ValueError(f"SNRs must lie in [{SNR_MIN_DB:g}, {SNR_MAX_DB:g}] dB, got {grid}")
        return grid

    @field_validator("kinds")
    @classmethod
    def _unique(cls, kinds: list[ChannelSpec]) -> list[ChannelSpec]:
        labels = [k.label for k in kinds]
        if len(set(labels)) != len(labels):
            raise ValueError(f"channel kinds must be distinct, got {labels}")
        return kinds


class TimingSection(_Strict):
    """Timing the front's configurations on the build machine (``paretoctl.models.timing``).

    The front's latencies then come from these measurements (edge at batch 1, server at
    ``server_batch``; the policy uses ``statistic``) instead of the device profile's rates.
    ``enabled: false`` keeps every latency modelled. Timing never changes the archive.
    """

    enabled: bool = True
    server_batch: int = Field(1, ge=1, le=1024)
    warmup: int = Field(3, ge=0)
    min_runs: int = Field(15, ge=5)
    max_runs: int = Field(200, ge=5)
    rel_ci: float = Field(0.03, gt=0, le=1)
    """Stop timing a configuration once the 95% interval of ``statistic`` (the figure served) is within this
    fraction of it. A p90's interval needs 35 runs to exist, so p90 timing takes 35-200 runs."""
    max_seconds: float = Field(60.0, gt=0)
    """Bound on the whole timing phase, seconds (every configuration still gets ``min_runs``)."""
    statistic: Literal["p50", "p90"] = "p90"
    threads: int = Field(1, ge=1)
    """Torch intra-op threads while timing (the previous value is restored afterwards). One, because
    edge devices run small batches single-threaded, and because on two shared cores timing at batch 1
    with 2 threads was unstable (unmerged p90 4.65 vs 7.68 ms in two processes) and 2x slower than
    with 1. Recorded with the measurements (``machine.threads``)."""

    @model_validator(mode="after")
    def _runs(self) -> TimingSection:
        if self.max_runs < self.min_runs:
            raise ValueError(f"max_runs ({self.max_runs}) must be >= min_runs ({self.min_runs})")
        return self

    def settings(self) -> TimingSettings:
        """The repeats and stopping rule a build times with, as ``paretoctl.models.timing`` takes them."""
        from paretoctl.models.timing import TimingSettings

        return TimingSettings(server_batch=self.server_batch, warmup=self.warmup, min_runs=self.min_runs,
                              max_runs=self.max_runs, rel_ci=self.rel_ci, max_seconds=self.max_seconds,
                              statistic=self.statistic)


class SearchSection(_Strict):
    """The multi-objective search. ``budget`` counts evaluations of the chosen ``method``."""

    space: SpaceName = "proportions"
    """What the search varies: per-layer merge ``proportions`` (a fixed schedule r, the same for every
    image) or per-layer cosine-similarity ``thresholds`` (input-adaptive merging,
    ``paretoctl.models.threshold``: each image merges what it can spare). A threshold build also
    measures ToMe's uniform schedules, so its front may hold both kinds."""
    threshold_range: tuple[float, float] = (0.8, 1.0)
    """``[lo, hi]``, the cosine similarities searched (``-1 <= lo < hi <= 1``); the unit cube maps
    to ``t_l = hi - x_l (hi - lo)``, so with ``hi = 1`` the cube's origin is the unmerged model in
    both spaces. Why 0.8: on the bundled model constant thresholds 0.99/0.95/0.9/0.8 leave on average
    46/28/17/9 of its 50 tokens after the last block, so below 0.8 only heavy accuracy losses live."""
    method: MethodName = "botorch"
    budget: int = Field(40, ge=1)
    initial: int = Field(12, ge=1)
    q: int = Field(4, ge=1, le=16)
    seed: int = 0
    max_proportion: float = Field(1.0, gt=0, le=1)
    uniform_marks: bool = True
    baselines: list[MethodName] = Field(default_factory=list)
    max_front_configs: int = Field(16, ge=1)
    max_accuracy_drop: float = Field(3.0, gt=0, le=50)
    """Region of interest: points of grid-mean validation accuracy a user gives up at most. The
    hypervolume reference point sits this far below the unmerged model, so the search spends its
    budget where users go. 3 points: policy users ask for 0.25-2 points; the extra point leaves the
    GP room to see the edge of the region (``paretoctl.optimizer.pareto``)."""
    screen_images: int = Field(0, ge=0)
    """Validation images a candidate is first measured on; it is measured on the rest only if it may
    still lie inside the region (``max_accuracy_drop``), by a paired test against the unmerged model on
    the same images (``paretoctl.optimizer.screening``). 0 measures every image. A multiple of
    ``data.batch_size``, and fewer than ``data.val_limit``."""
    screen_z: float = Field(3.0, gt=0, le=10)
    """Standard errors of the paired drop beyond the region's edge that stop a candidate (3: a
    candidate inside the region is stopped with probability at most 0.13%)."""
    num_restarts: int = Field(6, ge=1)
    raw_samples: int = Field(128, ge=1)
    mc_samples: int = Field(32, ge=1)
    maxiter: int = Field(60, ge=1)
    prior_mean: Literal["cost_curve", "constant"] = "cost_curve"
    """The BoTorch accuracy GP's prior mean. ``cost_curve``: accuracy as a non-decreasing curve of the
    relative GFLOPs, fitted to the history (``paretoctl.optimizer.prior_mean``), so that far from the
    data the GP expects heavy merging to cost accuracy as every measurement so far did; ``constant``:
    GPyTorch's constant mean, which expects the average accuracy seen. Proportions space only (a
    threshold search's costs are not known before measuring)."""

    @field_validator("threshold_range")
    @classmethod
    def _range(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        lo, hi = bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and -1.0 <= lo < hi <= 1.0):
            raise ValueError(f"must be [lo, hi] cosine similarities with -1 <= lo < hi <= 1, got {[lo, hi]}")
        return bounds


class BuildConfig(_Strict):
    """A whole build: ``paretoctl build --config FILE``."""

    model: ModelSection = Field(default_factory=lambda: ModelSection())
    data: DataSection = Field(default_factory=lambda: DataSection())
    channel: ChannelSection
    split_index: int = Field(ge=0)
    device: str = str(DEFAULT_DEVICE)
    search: SearchSection = Field(default_factory=lambda: SearchSection())
    runtime: RuntimeSection = Field(default_factory=lambda: RuntimeSection())
    timing: TimingSection = Field(default_factory=lambda: TimingSection())

    @model_validator(mode="after")
    def _initial_within_budget(self) -> BuildConfig:
        if self.search.initial > self.search.budget:
            raise ValueError(
                f"search.initial ({self.search.initial}) must not exceed search.budget ({self.search.budget})"
            )
        return self

    @model_validator(mode="after")
    def _screen_fits_data(self) -> BuildConfig:
        n, batch, limit = self.search.screen_images, self.data.batch_size, self.data.val_limit
        if n and n % batch:
            raise ValueError(f"search.screen_images ({n}) must be a multiple of data.batch_size ({batch})")
        if n and limit is not None and n >= limit:
            raise ValueError(f"search.screen_images ({n}) must be smaller than data.val_limit ({limit}), "
                             "or 0 to measure every image")
        return self

    def canonical(self) -> dict[str, Any]:
        """The JSON-able form every default filled in: what ``config.yaml`` records and resume compares."""
        return self.model_dump(mode="json")


class ConfigError(ValueError):
    """A build config is unreadable or invalid; the message is one line naming the file and field."""


def parse_config(raw: Any, source: str = "<config>", base_dir: Path | None = None) -> BuildConfig:
    """Validate a parsed YAML mapping; relative paths are resolved against ``base_dir`` when given."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid build config {source}: expected a mapping at the top level")
    if base_dir is not None:
        raw = _resolve_paths(raw, base_dir)
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"invalid build config {source}: {format_validation_error(err)}") from None


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A copy of ``raw`` with the relative paths of ``PATH_FIELDS`` made absolute under ``base_dir``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted in PATH_FIELDS:
        *parents, leaf = dotted.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str):
            path = Path(node[leaf]).expanduser()
            node[leaf] = str(path if path.is_absolute() else (base_dir / path).resolve())
    return out


def apply_overrides(raw: Any, overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """Set dotted keys (``search.budget``) in a parsed YAML mapping; ``None`` values are skipped."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid build config {source}: expected a mapping at the top level")
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, p in enumerate(parents):
            child = node.setdefault(p, {})
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                field = ".".join(parents[: depth + 1])
                raise ConfigError(f"invalid build config {source}: {field}: expected a mapping")
            node = child
        node[leaf] = value
    return raw


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read and validate a YAML build config; ``overrides`` are dotted keys, e.g. ``search.budget``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read build config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"build config {path} is not valid YAML: {' '.join(str(err).split())}") from None
    raw = apply_overrides(raw, overrides or {}, str(path))
    return parse_config(raw, str(path), base_dir=path.resolve().parent)
