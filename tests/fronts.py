"""Builders of valid synthetic front artifacts for tests (no torch).

Two levels:

* :func:`make_front` draws a plausible random front (seeded): an unmerged reference plus random
  schedules, with costs from a small analytic ViT cost model and accuracies that fall with merging
  and rise with SNR. Depth, SNR grid, channels, number of configurations and seed are all options.
* :func:`hand_config` + :func:`assemble_front` build a front from configurations whose accuracies
  and costs are given explicitly, for tests whose right answer is computed by hand.

Either can hold input-adaptive (threshold) configurations: ``hand_config(..., thresholds=...,
p95=...)`` or ``make_front(n_thresholds=...)``. Their scalar costs are the means of a
``cost_distribution`` whose 95th percentiles are given (or 1.25x the means), and their stored
latency is modelled from those 95th percentiles, as the build writes it.

Example:
    >>> front = make_front(depth=6, snr_grid_db=(0, 10), channels=("awgn", "rayleigh"), n_configs=5)
    >>> len(front.configs), front.provenance.snr_grid_db
    (5, [0.0, 10.0])
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from paretoctl.service.latency import predict_latency
from paretoctl.service.schema import (
    SCHEMA_VERSION,
    DeviceProfile,
    FrontArtifact,
    artifact_document,
    dump_front,
)

DEFAULT_GRID: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 20.0)
DEFAULT_PROFILE = DeviceProfile(
    name="test", edge_gflops_per_s=20.0, server_gflops_per_s=2000.0, symbol_rate_hz=1e6,
    edge_overhead_ms=1.0, link_overhead_ms=2.0, server_overhead_ms=0.5,
)
SOURCES: tuple[str, ...] = ("uniform", "botorch", "sobol", "nsga2")
P95_FACTOR = 1.25
"""A synthetic threshold configuration's 95th-percentile costs over its means, unless given."""
_CHANNEL_MID_DB = {"ideal": -60.0, "awgn": -2.0, "rician": 1.0, "rayleigh": 4.0}
"""SNR (dB) at which the synthetic accuracy is half-way between chance and clean, per channel."""


def schedule_from_proportions(proportions: Sequence[float], num_patches: int,
                              num_prefix: int = 1) -> tuple[list[int], list[int]]:
    """``(r, tokens_per_layer)`` per the internals' schedule semantics: r_l = round(p_l * floor(u_l/2)).

    Halves round up, as ``paretoctl.models.schedule.resolve_schedule`` does. ``tokens_per_layer`` counts the
    tokens entering each layer, prefix included.
    """
    u = num_patches
    r: list[int] = []
    tokens: list[int] = []
    for p in proportions:
        tokens.append(u + num_prefix)
        r_l = math.floor(p * (u // 2) + 0.5)
        r.append(r_l)
        u -= r_l
    return r, tokens


def tokens_at_split(tokens_per_layer: Sequence[int], r: Sequence[int], split_index: int) -> int:
    """Tokens crossing the link: entering block ``split_index``, or leaving the last block at ``depth``."""
    return tokens_per_layer[split_index] if split_index < len(tokens_per_layer) else tokens_per_layer[-1] - r[-1]


def vit_gflops(tokens_per_layer: Sequence[int], dim: int, split_index: int) -> tuple[float, float]:
    """``(edge, server)`` GFLOPs of a ViT block stack: 24 N d^2 + 4 N^2 d FLOPs per block."""
    per = [(24 * n * dim * dim + 4 * n * n * dim) / 1e9 for n in tokens_per_layer]
    return sum(per[:split_index]), sum(per[split_index:])


def synthetic_accuracy(snr_db: float, channel: str, merged_fraction: float) -> float:
    """Clean accuracy falls with merging, noisy accuracy rises with SNR along a logistic curve."""
    clean = 0.92 - 0.3 * merged_fraction**2
    mid = _CHANNEL_MID_DB.get(channel, 0.0) - 2.0 * merged_fraction
    return 0.1 + (clean - 0.1) / (1.0 + math.exp(-(snr_db - mid) / 2.5))


def accuracy_points(means: Sequence[float], grid: Sequence[float], n_images: int = 1000,
                    n_draws: int = 2, stderr: float | None = None) -> list[dict[str, Any]]:
    """One ``AccuracyAtSnr`` dict per grid SNR; binomial stderr unless ``stderr`` is given."""
    if len(means) != len(grid):
        raise ValueError(f"{len(means)} accuracies for a grid of {len(grid)}")
    out = []
    for m, s in zip(means, grid, strict=True):
        se = stderr if stderr is not None else math.sqrt(max(m * (1 - m), 0.0) / (n_images * n_draws))
        out.append({"snr_db": float(s), "mean": float(m), "stderr": float(se),
                    "n_images": n_images, "n_draws": n_draws})
    return out


def hand_config(
    config_id: str,
    val: Mapping[str, Sequence[float]],
    test: Mapping[str, Sequence[float]] | None = None,
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    depth: int = 4,
    edge_gflops: float = 0.1,
    server_gflops: float = 0.1,
    channel_uses: int = 1000,
    tokens_sent: int | None = None,
    proportions: Sequence[float] | None = None,
    num_patches: int = 16,
    split_index: int | None = None,
    source: str = "uniform",
    profile: DeviceProfile = DEFAULT_PROFILE,
    stderr: float | None = 0.01,
    thresholds: Sequence[float] | None = None,
    p95: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """A config dict with explicit accuracies (channel -> one mean per grid SNR) and costs.

    ``test`` defaults to ``val`` shifted down by 0.01 (clipped at 0), so a test can tell which split a
    figure came from. Latency is computed from ``profile`` (pass the front's profile). ``tokens_sent``
    defaults to what the loader expects at ``split_index`` (default ``depth // 2``, as
    :func:`assemble_front`'s): pass the same split to both.

    With ``thresholds`` (one per block) the config is input-adaptive: ``edge_gflops``,
    ``server_gflops`` and ``channel_uses`` are its per-image means and ``p95`` its 95th-percentile
    ``(edge GFLOPs, server GFLOPs, channel uses)`` (default :data:`P95_FACTOR` x the means); the
    latency is modelled from ``p95``. Its mean tokens per layer are the schedule's counts minus 0.25
    after block 0 (they round to them, as the schema requires).
    """
    props = list(proportions) if proportions is not None else [0.0] * depth
    r, tokens = schedule_from_proportions(props, num_patches)
    split = split_index if split_index is not None else depth // 2
    if test is None:
        test = {k: [max(0.0, v - 0.01) for v in vs] for k, vs in val.items()}
    adaptive = thresholds is not None
    if adaptive and p95 is None:
        p95 = (P95_FACTOR * edge_gflops, P95_FACTOR * server_gflops, P95_FACTOR * channel_uses)
    lat = predict_latency(*(p95 if adaptive and p95 is not None else (edge_gflops, server_gflops, channel_uses)),
                          profile)
    sent = tokens_sent if tokens_sent is not None else tokens_at_split(tokens, r, split)
    extra: dict[str, Any] = {}
    if adaptive and thresholds is not None and p95 is not None:
        if len(thresholds) != depth:
            raise ValueError(f"{len(thresholds)} thresholds for depth {depth}")
        extra = {"merging": "thresholds", "thresholds": [float(t) for t in thresholds],
                 "cost_distribution": cost_distribution(edge_gflops, server_gflops, channel_uses, sent, tokens, p95)}
    return {
        "id": config_id,
        "source": source,
        "proportions": props,
        "r": r,
        "tokens_per_layer": tokens,
        "gflops": {"total": edge_gflops + server_gflops, "edge": edge_gflops, "server": server_gflops},
        "tokens_sent": sent,
        "channel_uses": channel_uses,
        "latency": lat.model_dump(),
        "accuracy_val": {k: accuracy_points(v, grid, stderr=stderr) for k, v in val.items()},
        "accuracy_test": {k: accuracy_points(v, grid, stderr=stderr) for k, v in test.items()},
        **extra,
    }


def cost_distribution(edge: float, server: float, uses: float, tokens_sent: int, tokens_per_layer: Sequence[int],
                      p95: tuple[float, float, float]) -> dict[str, Any]:
    """A ``CostDistribution`` dict whose means are the given costs and whose p95s are ``p95``.

    Tokens sent get the same relative spread as the channel uses; the mean tokens entering each block
    are the schedule's counts, less 0.25 after block 0 (every image enters block 0 whole).
    """
    spread = p95[2] / uses if uses else 1.0
    return {
        "n_images": 200,
        "gflops_total": {"mean": edge + server, "p95": p95[0] + p95[1]},
        "gflops_edge": {"mean": edge, "p95": p95[0]},
        "gflops_server": {"mean": server, "p95": p95[1]},
        "tokens_sent": {"mean": float(tokens_sent), "p95": tokens_sent * spread},
        "channel_uses": {"mean": float(uses), "p95": p95[2]},
        "tokens_per_layer_mean": [float(t) - (0.25 if k else 0.0) for k, t in enumerate(tokens_per_layer)],
    }


def pareto_sets(configs: Sequence[Mapping[str, Any]], grid: Sequence[float],
                channels: Sequence[str]) -> list[dict[str, Any]]:
    """Non-dominated ids per (channel, SNR) on (val accuracy up, GFLOPs down, channel uses down)."""
    out = []
    for ch in channels:
        for k, snr in enumerate(grid):
            pts = [(c["id"], c["accuracy_val"][ch][k]["mean"], c["gflops"]["total"], c["channel_uses"])
                   for c in configs]
            ids = []
            for cid, a, g, u in pts:
                dominated = any(a2 >= a and g2 <= g and u2 <= u and (a2, g2, u2) != (a, g, u)
                                for _, a2, g2, u2 in pts)
                if not dominated:
                    ids.append(cid)
            out.append({"channel": ch, "snr_db": float(snr), "config_ids": ids})
    return out


def assemble_front(
    configs: Sequence[Mapping[str, Any]],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    channels: Sequence[str] = ("awgn",),
    depth: int = 4,
    num_patches: int = 16,
    split_index: int | None = None,
    profile: DeviceProfile = DEFAULT_PROFILE,
    reference_config_id: str | None = None,
    seed: int = 0,
    pareto: Sequence[Mapping[str, Any]] | None = None,
) -> FrontArtifact:
    """A validated :class:`FrontArtifact` from config dicts (checksum set, as if loaded from disk)."""
    configs = [dict(c) for c in configs]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "provenance": {
            "model": "vit_fmnist_patch4_28",
            "model_identity": {"name": "vit_fmnist_patch4_28", "architecture_sha256": "a" * 64,
                               "weights_sha256": "b" * 64},
            "checkpoint_sha256": "0" * 64,
            "dataset": "fashion_mnist",
            "split_sizes": {"val": 1000, "test": 1000},
            "channels": [{"kind": ch, "params": {"k_factor": 4.0} if ch == "rician" else {}}
                         for ch in channels],
            "snr_grid_db": [float(s) for s in grid],
            "seed": seed,
            "split_index": split_index if split_index is not None else depth // 2,
            "depth": depth,
            "num_patches": num_patches,
            "num_prefix_tokens": 1,
            "budget": len(configs),
            "method": "botorch",
            "packages": {"paretoctl": "0.1.0"},
            "built_at": "2025-01-01T00:00:00Z",
            "config": {"synthetic": True},
        },
        "device_profile": profile.model_dump(),
        "reference_config_id": reference_config_id or configs[0]["id"],
        "configs": configs,
        "pareto": list(pareto) if pareto is not None else pareto_sets(configs, grid, channels),
    }
    art = FrontArtifact.model_validate(doc)
    return FrontArtifact.model_validate(artifact_document(art))


def make_front(
    *,
    depth: int = 4,
    snr_grid_db: Sequence[float] = DEFAULT_GRID,
    channels: Sequence[str] = ("awgn",),
    n_configs: int = 8,
    seed: int = 0,
    num_patches: int = 16,
    dim: int = 64,
    split_index: int | None = None,
    profile: DeviceProfile = DEFAULT_PROFILE,
    n_thresholds: int = 0,
) -> FrontArtifact:
    """A random but plausible front: ``"unmerged"`` (the reference) plus ``n_configs - 1`` schedules.

    With ``n_thresholds``, the last ``n_thresholds`` of them are input-adaptive threshold
    configurations (ids ``thr<i>``, source ``botorch``): thresholds drawn in [0.8, 1) from a separate
    generator, so the fixed configurations are those of the same front without them.

    Args:
        depth: blocks (schedule length).
        snr_grid_db: the SNR grid, strictly increasing.
        channels: channel kinds (``ideal``/``awgn``/``rician``/``rayleigh`` get distinct curves).
        n_configs: configurations in total, reference included (>= 1).
        seed: everything random derives from it.
        num_patches: patch tokens entering block 0 (one cls token is added).
        dim: embedding width for the cost model.
        split_index: edge/server split (default ``depth // 2``).
        profile: device profile for the latencies.
        n_thresholds: how many of the non-reference configurations use thresholds (< ``n_configs``).
    """
    if n_configs < 1:
        raise ValueError("n_configs must be >= 1")
    if not 0 <= n_thresholds < n_configs:
        raise ValueError(f"n_thresholds must be in [0, n_configs - 1], got {n_thresholds}")
    rng = random.Random(seed)
    thr_rng = random.Random(seed + 10_007)
    split = split_index if split_index is not None else depth // 2
    grid = [float(s) for s in snr_grid_db]
    configs = []
    for i in range(n_configs):
        props = [0.0] * depth if i == 0 else [round(rng.random(), 4) for _ in range(depth)]
        r, tokens = schedule_from_proportions(props, num_patches)
        merged_fraction = 1.0 - (tokens[-1] - 1 - r[-1]) / num_patches
        edge, server = vit_gflops(tokens, dim, split)
        sent = tokens_at_split(tokens, r, split)
        uses = math.ceil(sent * dim / 2) + sent + 1
        val: dict[str, list[float]] = {}
        test: dict[str, list[float]] = {}
        for ch in channels:
            base = [synthetic_accuracy(s, ch, merged_fraction) for s in grid]
            val[ch] = [min(1.0, max(0.0, a + rng.gauss(0, 0.005))) for a in base]
            test[ch] = [min(1.0, max(0.0, a + rng.gauss(0, 0.005))) for a in base]
        adaptive = i >= n_configs - n_thresholds
        thresholds = [round(thr_rng.uniform(0.8, 1.0), 4) for _ in range(depth)] if adaptive else None
        cfg = hand_config(
            "unmerged" if i == 0 else f"thr{i:03d}" if adaptive else f"cfg{i:03d}", val, test, grid=grid,
            depth=depth, edge_gflops=edge, server_gflops=server, channel_uses=uses, tokens_sent=sent,
            proportions=props, num_patches=num_patches, split_index=split,
            source="reference" if i == 0 else "botorch" if adaptive else SOURCES[(i - 1) % len(SOURCES)],
            profile=profile, stderr=None, thresholds=thresholds,
        )
        configs.append(cfg)
    return assemble_front(configs, grid=grid, channels=channels, depth=depth, num_patches=num_patches,
                          split_index=split, profile=profile, reference_config_id="unmerged", seed=seed)


def front_document(front: FrontArtifact) -> dict[str, Any]:
    """The JSON document (with checksum) that :func:`write_front` would write."""
    return artifact_document(front)


def write_front(path: str | Path, front: FrontArtifact | None = None, **make_kwargs: Any) -> Path:
    """Write ``front`` (or ``make_front(**make_kwargs)``) to ``path`` with :func:`dump_front`."""
    art = front if front is not None else make_front(**make_kwargs)
    dump_front(art, path)
    return Path(path)


def write_document(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write a raw (possibly invalid) document as JSON, for loader tests."""
    Path(path).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return Path(path)
