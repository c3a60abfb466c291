"""Evaluating one merge schedule: accuracy after the channel at every grid SNR, plus its costs.

The edge part runs once per batch. Its tokens then cross each channel at every SNR of the grid: the
SNR copies are stacked into one batch with a per-sample SNR, so the server part runs once per
(channel, draw) instead of once per SNR. Noise is drawn from generators seeded by (seed, channel,
draw, batch) only, for the *unmerged* token grid (``[SNRs x batch, tokens entering block 0]``,
whatever the schedule), and each sent token meets the draws of its representative source token's
slot (the first patch it holds, from the traced sources): the same image at the same SNR meets the
same noise on every token two schedules both send, so comparisons between schedules use common
random numbers (``paretoctl.channel_sim.channels``, convention 7, says what cannot be common:
merged tokens' symbols and the per-transmission power scale). Digital links draw per transmission.

Uncertainty of an accuracy p measured on n images with d noise draws:
``stderr = sqrt(p (1 - p) / n + s_d^2 / d)``, the binomial term for the finite image sample plus the
draw-to-draw term (s_d the sample standard deviation over draws; 0 when d = 1).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from paretoctl.channel_sim.channels import make_channel
from paretoctl.channel_sim.packing import channel_uses
from paretoctl.models.flops import analytic_cost
from paretoctl.models.patch import apply_merging
from paretoctl.models.split import TokenState, edge_forward, server_forward
from paretoctl.optimizer.config import ChannelSpec
from paretoctl.optimizer.preflight import split_index_error
from paretoctl.optimizer.runtime import Precision, autocast


def noise_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass(frozen=True)
class AccuracyPoint:
    """Top-1 accuracy at one SNR, in [0, 1], with its standard error."""

    snr_db: float
    mean: float
    stderr: float
    n_images: int
    n_draws: int

    def to_json(self) -> dict[str, Any]:
        return {"snr_db": self.snr_db, "mean": self.mean, "stderr": self.stderr,
                "n_images": self.n_images, "n_draws": self.n_draws}


@dataclass(frozen=True)
class Costs:
    """Deterministic costs of a schedule for one image.

    ``tokens_per_layer[l]`` counts the tokens *entering* block ``l``, prefix tokens included (the
    artifact's convention).
    """

    gflops_total: float
    gflops_edge: float
    gflops_server: float
    tokens_sent: int
    channel_uses: int
    tokens_per_layer: list[int]

    def gflops_json(self) -> dict[str, float]:
        return {"total": self.gflops_total, "edge": self.gflops_edge, "server": self.gflops_server}


@dataclass
class Evaluation:
    """What one evaluation measured: per channel label, one AccuracyPoint per grid SNR."""

    r: list[int]
    costs: Costs
    accuracy: dict[str, list[AccuracyPoint]] = field(default_factory=dict)
    wall_s: float = 0.0


def tokens_entering(r: Sequence[int], num_patches: int, num_prefix: int) -> list[int]:
    """Tokens entering each block under schedule ``r``, prefix included: ``[N + P, N + P - r_0, ...]``."""
    counts, n = [], int(num_patches) + int(num_prefix)
    for r_l in r:
        counts.append(n)
        n -= int(r_l)
    return counts


def summarise_draws(correct: torch.Tensor, n_images: int) -> tuple[float, float]:
    """Mean accuracy and stderr from per-draw correct counts ``[draws]`` over ``n_images`` images."""
    acc = correct.double() / n_images
    p = float(acc.mean())
    var_binom = p * (1.0 - p) / n_images
    var_draw = float(acc.var(unbiased=True)) / len(acc) if len(acc) > 1 else 0.0
    return p, math.sqrt(var_binom + var_draw)


class Evaluator:
    """Measures schedules of one model on one data split under a grid of channels and SNRs.

    Args:
        model: a timm ViT; it is patched for merging in place.
        batches: (images, labels) batches of the split, re-iterated for every evaluation: a
            DataLoader (``paretoctl.models.data.make_loader``) streams them; a list also works.
        channels: the channel models of the grid.
        snr_grid_db: SNRs (Es/N0, dB) at which accuracy is measured.
        split: the edge/server split index.
        draws: noise draws per (channel, SNR).
        seed: seeds the channel noise.
        device: where the model, the batches and the channel's tokens live (the noise is drawn
            from CPU generators and moved, so it is the same on every device).
        precision: ``fp32``, or ``bf16``/``fp16`` autocast for the model (the channel runs in float32).
    """

    def __init__(
        self,
        model: Any,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        channels: Sequence[ChannelSpec],
        snr_grid_db: Sequence[float],
        split: int,
        draws: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
        precision: Precision = "fp32",
    ) -> None:
        self.device = torch.device(device)
        self.precision: Precision = precision
        apply_merging(model)
        self.model: Any = model.to(self.device)
        self.depth = len(self.model.blocks)
        problem = split_index_error(split, self.depth)
        if problem:
            raise ValueError(f"split index {problem}")
        self.batches = batches
        self.specs = list(channels)
        self.channels = [make_channel(c.kind, **c.params) for c in self.specs]
        self.snr_grid = [float(s) for s in snr_grid_db]
        self.split, self.draws, self.seed = split, draws, seed
        self.num_patches = int(self.model.patch_embed.num_patches)
        self.num_prefix = int(self.model.num_prefix_tokens)
        self.crn = int(self.model.embed_dim) % 2 == 0 and any(c.supports_positions for c in self.channels)
        """Common random numbers per token slot (needs whole symbols per token, and a channel that can)."""

    def costs(self, r: Sequence[int]) -> Costs:
        """GFLOPs, tokens and channel uses of schedule ``r`` (no data needed)."""
        rep = analytic_cost(self.model, list(r), self.split)
        dim = int(self.model.embed_dim)
        return Costs(
            gflops_total=rep.total_gflops, gflops_edge=rep.edge_gflops, gflops_server=rep.server_gflops,
            tokens_sent=rep.tokens_sent, channel_uses=channel_uses(rep.tokens_sent, dim),
            tokens_per_layer=tokens_entering(r, self.num_patches, self.num_prefix),
        )

    @torch.inference_mode()
    def evaluate(self, r: Sequence[int]) -> Evaluation:
        """Accuracy of schedule ``r`` at every (channel, SNR) of the grid, and its costs."""
        t0 = time.perf_counter()
        apply_merging(self.model, list(r), trace_source=self.crn)  # sources give each token's noise slot
        self.model.eval()
        n_snr = len(self.snr_grid)
        correct = torch.zeros(len(self.channels), self.draws, n_snr, dtype=torch.long, device=self.device)
        grid = torch.tensor(self.snr_grid, device=self.device)
        n_images = 0
        for b, (images, labels) in enumerate(self.batches):
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with autocast(self.device, self.precision):
                state = edge_forward(self.model, images, self.split)
            bsz = images.shape[0]
            n_images += bsz
            tokens = state.tokens.float().repeat(n_snr, 1, 1)  # the channel runs in float32
            size = state.size.repeat(n_snr, 1, 1)
            # CRN: each token meets the noise of its representative (first) source token's slot.
            slots = {} if state.source is None else {
                "positions": state.source.argmax(-1).repeat(n_snr, 1), "grid_tokens": state.source.shape[-1]}
            snr = grid.repeat_interleave(bsz)
            target = labels.repeat(n_snr)
            for ci, channel in enumerate(self.channels):
                for d in range(self.draws):
                    gen = torch.Generator().manual_seed(noise_seed(self.seed, ci, d, b))  # CPU: same on any device
                    noisy = channel(tokens, snr, generator=gen, **(slots if channel.supports_positions else {}))
                    with autocast(self.device, self.precision):
                        logits = server_forward(self.model, TokenState(noisy, size, None), self.split)
                    hits = (logits.argmax(-1) == target).view(n_snr, bsz).sum(-1)
                    correct[ci, d] += hits
        if n_images == 0:
            raise ValueError("the evaluation split holds no images")
        self.n_images = n_images
        correct = correct.cpu()
        accuracy: dict[str, list[AccuracyPoint]] = {}
        for ci, spec in enumerate(self.specs):
            points = []
            for si, snr_db in enumerate(self.snr_grid):
                mean, se = summarise_draws(correct[ci, :, si], n_images)
                points.append(AccuracyPoint(snr_db, mean, se, n_images, self.draws))
            accuracy[spec.label] = points
        return Evaluation(list(r), self.costs(r), accuracy, time.perf_counter() - t0)
