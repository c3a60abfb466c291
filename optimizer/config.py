"""Build configuration: one YAML file says which model, data, channels, SNR grid and search to run.

Everything is validated before any work starts, and an error names the offending field
(``search.budget``, ``channel.snr_grid_db``, ...), so a typo never costs a 15-minute build.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ChannelKind = Literal["ideal", "awgn", "rayleigh", "rician"]
MethodName = Literal["botorch", "sobol", "uniform", "nsga2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    """Which ViT to optimise. ``name: bundled`` is the shipped Fashion-MNIST model."""

    name: str = "bundled"
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


class ChannelSpec(_Strict):
    """One channel model of the grid; parameters follow ``paretoctl.channel_sim.make_channel``."""

    kind: ChannelKind
    k_factor: float | None = Field(None, ge=0)
    block: str | int | None = None  # "symbol" | "token" | "image" | symbols per block
    equaliser: str | None = None

    def params(self) -> dict[str, Any]:
        """Keyword arguments for ``make_channel`` (only the ones that were set)."""
        return {k: v for k, v in self.model_dump().items() if k != "kind" and v is not None}

    @property
    def label(self) -> str:
        """Key used in artifacts: the kind, plus K for Rician."""
        return self.kind if self.k_factor is None else f"{self.kind}-k{self.k_factor:g}"


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
        if any(not -50.0 <= s <= 100.0 for s in grid):
            raise ValueError(f"SNRs must lie in [-50, 100] dB, got {grid}")
        return grid

    @field_validator("kinds")
    @classmethod
    def _unique(cls, kinds: list[ChannelSpec]) -> list[ChannelSpec]:
        labels = [k.label for k in kinds]
        if len(set(labels)) != len(labels):
            raise ValueError(f"channel kinds must be distinct, got {labels}")
        return kinds


class SearchSection(_Strict):
    """The multi-objective search. ``budget`` counts evaluations of the chosen ``method``."""

    method: MethodName = "botorch"
    budget: int = Field(40, ge=1)
    initial: int = Field(12, ge=1)
    q: int = Field(4, ge=1, le=16)
    seed: int = 0
    max_proportion: float = Field(1.0, gt=0, le=1)
    uniform_marks: bool = True
    baselines: list[MethodName] = Field(default_factory=list)
    max_front_configs: int = Field(16, ge=1)
    num_restarts: int = Field(6, ge=1)
    raw_samples: int = Field(128, ge=1)
    mc_samples: int = Field(32, ge=1)
    maxiter: int = Field(60, ge=1)


class BuildConfig(_Strict):
    """A whole build: ``paretoctl build --config FILE``."""

    model: ModelSection = Field(default_factory=lambda: ModelSection())
    data: DataSection = Field(default_factory=lambda: DataSection())
    channel: ChannelSection
    split_index: int = Field(ge=0)
    device: str = "configs/devices/default.yaml"
    search: SearchSection = Field(default_factory=lambda: SearchSection())

    @model_validator(mode="after")
    def _initial_within_budget(self) -> BuildConfig:
        if self.search.initial > self.search.budget:
            raise ValueError(
                f"search.initial ({self.search.initial}) must not exceed search.budget ({self.search.budget})"
            )
        return self


class ConfigError(ValueError):
    """A build config is unreadable or invalid; the message names the field."""


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {field}: {msg}")
    return f"invalid build config {source}:\n" + "\n".join(lines)


def parse_config(raw: Any, source: str = "<config>") -> BuildConfig:
    """Validate a parsed YAML mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid build config {source}: expected a mapping at the top level")
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read and validate a YAML build config; ``overrides`` are dotted keys, e.g. ``search.budget``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read build config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"build config {path} is not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_config(raw, str(path))
