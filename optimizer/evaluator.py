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

**Threshold configurations** (input-adaptive merging, ``paretoctl.models.threshold``): every image
merges what it can spare, so a batch is padded (padding has size 0) and costs are *per image*. The
channel is told each image's real tokens (``num_tokens``: power over the real tokens, padding on free
common-random-number slots, :func:`paretoctl.channel_sim.channels.padding_positions`). The tokens
entering each block are recorded per image (``record=``): on the edge from the pass that is sent,
on the server from one extra clean pass per batch (no channel), so **server costs are those of the
noiseless tokens** (under noise the server's merges can differ slightly). Each image's GFLOPs come
from its own per-block merges (:func:`paretoctl.models.flops.cost_from_shape`, the matching counted
in every block whose threshold is < 1), its tokens sent and channel uses from its tokens at the
split; the :class:`~paretoctl.service.schema.CostDistribution` holds their mean and 95th percentile.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from paretoctl.channel_sim.channels import make_channel, padding_positions
from paretoctl.channel_sim.packing import channel_uses
from paretoctl.models.flops import CostReport, analytic_cost, cost_from_shape, vit_shape
from paretoctl.models.patch import apply_merging
from paretoctl.models.schedule import mean_schedule
from paretoctl.models.split import TokenState, edge_forward, run_blocks, server_forward
from paretoctl.models.threshold import MERGES_NOTHING, real_token_counts
from paretoctl.optimizer.config import ChannelSpec
from paretoctl.optimizer.preflight import split_index_error
from paretoctl.optimizer.runtime import DEFAULT_SERVER_CHUNK, Precision, autocast
from paretoctl.optimizer.space import Candidate
from paretoctl.service.schema import CostDistribution, CostSummary


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
    """What one evaluation measured: per channel label, one AccuracyPoint per grid SNR.

    For a threshold configuration ``thresholds`` and ``distribution`` are set; ``r`` is then the
    rounded-mean schedule (:func:`paretoctl.models.schedule.mean_schedule`) and ``costs`` its mean
    behaviour: GFLOPs the exact per-image means, ``tokens_sent``/``tokens_per_layer`` the rounded
    schedule's (consistent with ``r``), ``channel_uses`` the mean rounded to an integer.
    """

    r: list[int]
    costs: Costs
    accuracy: dict[str, list[AccuracyPoint]] = field(default_factory=dict)
    wall_s: float = 0.0
    thresholds: list[float] | None = None
    distribution: CostDistribution | None = None
    screened: dict[str, Any] | None = None
    """Set when screening stopped the measurement early (:mod:`paretoctl.optimizer.screening`): the
    accuracies then cover only the screened images."""

    @property
    def merging(self) -> Literal["proportions", "thresholds"]:
        """The artifact's merging kind of what was measured."""
        return "proportions" if self.thresholds is None else "thresholds"


@dataclass
class PartialEvaluation:
    """The raw measurement of one part of an evaluation (:meth:`Evaluator.evaluate_part`).

    Attributes:
        correct: ``[channels, draws, SNRs]`` hits, on the CPU.
        n_images: images in the part.
        token_counts: threshold configurations only: batch index -> ``[B, L + 1]`` real tokens
            entering every block, then leaving the last (empty for a fixed schedule).
        seconds: wall seconds the part took.
        hits: when asked for (``per_image=True``), ``[n_images, channels, draws, SNRs]`` bool, whether
            each image was classified right, in the part's image order (paired comparisons between
            configurations: :mod:`paretoctl.optimizer.screening`); else None.
    """

    correct: torch.Tensor
    n_images: int
    token_counts: dict[int, torch.Tensor]
    seconds: float
    hits: torch.Tensor | None = None


def tokens_entering(r: Sequence[int], num_patches: int, num_prefix: int) -> list[int]:
    """Tokens entering each block under schedule ``r``, prefix included: ``[N + P, N + P - r_0, ...]``."""
    counts, n = [], int(num_patches) + int(num_prefix)
    for r_l in r:
        counts.append(n)
        n -= int(r_l)
    return counts


def cost_summary(values: torch.Tensor) -> CostSummary:
    """Mean and 95th percentile (linear interpolation, numpy's default) of per-image values ``[n]``."""
    v = values.to(torch.double)
    return CostSummary(mean=float(v.mean()), p95=float(torch.quantile(v, 0.95)))


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
        server_chunk: images per server forward (None: the whole stack of SNR copies at once). The
            server part runs on ``SNRs x batch`` rows; in cache-sized pieces it is 1.5-1.8x faster on
            a CPU than in one (``bench/server_chunk.py``). The noise is drawn for the whole stack
            first, so the pieces change nothing but the order of the work.
        head_only: the server's last block computes only the token the head reads
            (``server_forward``'s ``head_only``): the same predictions up to float rounding, 3-15%
            less time per evaluation on the bundled model (``bench/head_only.py``).
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
        server_chunk: int | None = DEFAULT_SERVER_CHUNK,
        head_only: bool = True,
    ) -> None:
        if server_chunk is not None and server_chunk < 1:
            raise ValueError(f"server_chunk must be at least 1 or None, got {server_chunk}")
        self.server_chunk = server_chunk
        self.head_only = head_only
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
        self.shape = vit_shape(self.model)

    def costs(self, r: Sequence[int]) -> Costs:
        """GFLOPs, tokens and channel uses of schedule ``r`` (no data needed)."""
        rep = analytic_cost(self.model, list(r), self.split)
        dim = int(self.model.embed_dim)
        return Costs(
            gflops_total=rep.total_gflops, gflops_edge=rep.edge_gflops, gflops_server=rep.server_gflops,
            tokens_sent=rep.tokens_sent, channel_uses=channel_uses(rep.tokens_sent, dim),
            tokens_per_layer=tokens_entering(r, self.num_patches, self.num_prefix),
        )

    def evaluate(self, r: Sequence[int] | None = None, *, thresholds: Sequence[float] | None = None) -> Evaluation:
        """Accuracy at every (channel, SNR) of the grid, and costs, of schedule ``r`` or of ``thresholds``.

        Args:
            r: tokens merged per block (a fixed schedule).
            thresholds: per-block similarity thresholds instead (input-adaptive merging); costs are
                then per image (module docstring).

        Raises:
            ValueError: neither or both given, or the split holds no images.
        """
        if (r is None) == (thresholds is None):
            raise ValueError("evaluate needs a schedule r or thresholds, exactly one of them")
        candidate = Candidate(r=None, thresholds=tuple(float(t) for t in thresholds)) if thresholds is not None \
            else Candidate(r=tuple(int(v) for v in r or ()), thresholds=None)
        return self.evaluate_candidate(candidate)

    def evaluate_candidate(self, candidate: Candidate | Sequence[int]) -> Evaluation:
        """:meth:`evaluate` of a :class:`paretoctl.optimizer.space.Candidate` (or a plain ``r``)."""
        c = Candidate.of(candidate)
        return self.combine(c, [self.evaluate_part(c)])

    @torch.inference_mode()
    def evaluate_part(self, candidate: Candidate | Sequence[int], part: int = 0, parts: int = 1,
                      per_image: bool = False) -> PartialEvaluation:
        """The hit counts of ``candidate`` on the split's batches ``b`` with ``b % parts == part``.

        Parts of one evaluation can run in different processes: each batch keeps its own noise seed
        (its index ``b`` in the whole split), so :meth:`combine` of all ``parts`` parts gives exactly
        the evaluation of the whole split. A part with no batches returns zero counts. ``per_image``
        also keeps every image's hits (``PartialEvaluation.hits``); the counts are the same.
        """
        if not 0 <= part < parts:
            raise ValueError(f"part must be in [0, {parts}), got {part}")
        c = Candidate.of(candidate)
        t0 = time.perf_counter()
        if c.thresholds is not None:
            apply_merging(self.model, thresholds=list(c.thresholds), trace_source=self.crn)
        else:  # sources give each token's noise slot
            apply_merging(self.model, list(c.r or ()), trace_source=self.crn)
        self.model.eval()
        correct = self._new_counts()
        n_images = 0
        counts: dict[int, torch.Tensor] = {}
        hits: list[torch.Tensor] | None = [] if per_image else None
        for b, (images, labels) in enumerate(self.batches):
            if b % parts != part:
                continue
            images, labels = self._to_device(images, labels)
            n_images += images.shape[0]
            if c.thresholds is None:
                with autocast(self.device, self.precision):
                    state = edge_forward(self.model, images, self.split)
                self._through_channels(b, state, labels, correct, None, hits)
                continue
            entering: list[torch.Tensor] = []
            with autocast(self.device, self.precision):
                state = edge_forward(self.model, images, self.split, record=entering)
            self._through_channels(b, state, labels, correct, real_token_counts(state.size), hits)
            with autocast(self.device, self.precision):  # the clean server pass: server-side token counts
                final = run_blocks(self.model, TokenState(state.tokens, state.size, None), self.split,
                                   self.depth, record=entering)
            counts[b] = torch.stack([*entering, real_token_counts(final.size)], dim=1).cpu()
        per = None if hits is None else (torch.cat(hits) if hits else torch.zeros(0, *correct.shape, dtype=torch.bool))
        return PartialEvaluation(correct.cpu(), n_images, counts, time.perf_counter() - t0, per)

    def combine(self, candidate: Candidate | Sequence[int], parts: Sequence[PartialEvaluation]) -> Evaluation:
        """The :class:`Evaluation` of ``candidate`` from the parts that together cover the split once.

        Its ``wall_s`` is the parts' seconds summed (the work, wherever it ran).
        """
        c = Candidate.of(candidate)
        correct = torch.stack([p.correct for p in parts]).sum(0)
        n_images = sum(p.n_images for p in parts)
        seconds = sum(p.seconds for p in parts)
        accuracy = self._accuracy(correct, n_images)
        if c.thresholds is None:
            r = list(c.r or ())
            return Evaluation(r, self.costs(r), accuracy, seconds)
        thresholds = list(c.thresholds)
        by_batch = {b: t for p in parts for b, t in p.token_counts.items()}
        per_layer = torch.cat([by_batch[b] for b in sorted(by_batch)])
        dist = self.cost_distribution(per_layer, thresholds)
        r = mean_schedule(per_layer.double().mean(dim=0).tolist(), self.num_patches, self.num_prefix)
        rounded = cost_from_shape(self.shape, r, self.split)
        costs = Costs(
            gflops_total=dist.gflops_total.mean, gflops_edge=dist.gflops_edge.mean,
            gflops_server=dist.gflops_server.mean, tokens_sent=rounded.tokens_sent,
            channel_uses=round(dist.channel_uses.mean),
            tokens_per_layer=tokens_entering(r, self.num_patches, self.num_prefix),
        )
        return Evaluation(r, costs, accuracy, seconds, thresholds, dist)

    def image_costs(self, counts: torch.Tensor, thresholds: Sequence[float]) -> dict[str, torch.Tensor]:
        """Per-image costs of a threshold configuration from its per-image token counts.

        Args:
            counts: ``[n, L + 1]`` int, each image's real tokens (prefix included) entering every
                block, then leaving the last.
            thresholds: the configuration's per-block thresholds (the matching runs where < 1).

        Returns:
            ``[n]`` float64 tensors keyed ``gflops_total``, ``gflops_edge``, ``gflops_server``,
            ``tokens_sent``, ``channel_uses``.
        """
        matched = [float(t) < MERGES_NOTHING for t in thresholds]
        cache: dict[tuple[int, ...], CostReport] = {}
        dim = int(self.model.embed_dim)
        rows: dict[str, list[float]] = {k: [] for k in ("gflops_total", "gflops_edge", "gflops_server",
                                                        "tokens_sent", "channel_uses")}
        for row in counts.tolist():
            r = tuple(a - b for a, b in itertools.pairwise(row))
            rep = cache.get(r)
            if rep is None:
                rep = cache[r] = cost_from_shape(self.shape, r, self.split, matched=matched)
            rows["gflops_total"].append(rep.total_gflops)
            rows["gflops_edge"].append(rep.edge_gflops)
            rows["gflops_server"].append(rep.server_gflops)
            rows["tokens_sent"].append(float(rep.tokens_sent))
            rows["channel_uses"].append(float(channel_uses(rep.tokens_sent, dim)))
        return {k: torch.tensor(v, dtype=torch.double) for k, v in rows.items()}

    def cost_distribution(self, counts: torch.Tensor, thresholds: Sequence[float]) -> CostDistribution:
        """The artifact's per-image cost summary from ``counts`` ``[n, L + 1]`` (see :meth:`image_costs`)."""
        costs = self.image_costs(counts, thresholds)
        return CostDistribution(
            n_images=int(counts.shape[0]),
            **{k: cost_summary(v) for k, v in costs.items()},
            tokens_per_layer_mean=counts[:, :-1].double().mean(dim=0).tolist(),
        )

    def _new_counts(self) -> torch.Tensor:
        return torch.zeros(len(self.channels), self.draws, len(self.snr_grid), dtype=torch.long, device=self.device)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _through_channels(self, b: int, state: TokenState, labels: torch.Tensor, correct: torch.Tensor,
                          num_tokens: torch.Tensor | None, per_image: list[torch.Tensor] | None = None) -> None:
        """Send batch ``b``'s edge state over every (channel, draw, SNR), run the server, count hits.

        Args:
            state: the edge's tokens ``[B, N, D]`` (padded when ``num_tokens`` is given).
            correct: ``[channels, draws, SNRs]`` hit counts, updated in place.
            num_tokens: ``[B]`` real tokens per image of a padded batch, or None.
            per_image: if given, the batch's hits ``[B, channels, draws, SNRs]`` (bool, CPU) are appended.
        """
        n_snr, bsz = len(self.snr_grid), labels.shape[0]
        grid = torch.tensor(self.snr_grid, device=self.device)
        tokens = state.tokens.float().repeat(n_snr, 1, 1)  # the channel runs in float32
        size = state.size.repeat(n_snr, 1, 1)
        # CRN: each token meets the noise of its representative (first) source token's slot; padding
        # (a zero source row) takes free slots, so the real tokens' draws are those they meet unpadded.
        slots: dict[str, Any] = {}
        if state.source is not None:
            width = state.source.shape[-1]
            positions = state.source.argmax(-1)
            if num_tokens is not None:
                positions = padding_positions(positions, num_tokens, width)
            slots = {"positions": positions.repeat(n_snr, 1), "grid_tokens": width}
        padded = {} if num_tokens is None else {"num_tokens": num_tokens.repeat(n_snr)}
        snr = grid.repeat_interleave(bsz)
        target = labels.repeat(n_snr)
        batch_hits = torch.zeros(bsz, *correct.shape, dtype=torch.bool) if per_image is not None else None
        for ci, channel in enumerate(self.channels):
            for d in range(self.draws):
                gen = torch.Generator().manual_seed(noise_seed(self.seed, ci, d, b))  # CPU: same on any device
                noisy = channel(tokens, snr, generator=gen, **(slots if channel.supports_positions else {}),
                                **padded)
                predicted = self._server_predictions(noisy, size)
                right = (predicted == target).view(n_snr, bsz)
                correct[ci, d] += right.sum(-1)
                if batch_hits is not None:
                    batch_hits[:, ci, d] = right.t().cpu()
        if per_image is not None and batch_hits is not None:
            per_image.append(batch_hits)

    def _server_predictions(self, tokens: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Top-1 classes ``[M]`` of the server part on ``tokens [M, N, D]`` (sizes ``[M, N, 1]``), in
        pieces of ``server_chunk`` rows."""
        step = max(tokens.shape[0], 1) if self.server_chunk is None else self.server_chunk
        out = []
        for start in range(0, tokens.shape[0], step):
            piece = TokenState(tokens[start:start + step], size[start:start + step], None)
            with autocast(self.device, self.precision):
                out.append(server_forward(self.model, piece, self.split, head_only=self.head_only).argmax(-1))
        return torch.cat(out)

    def _accuracy(self, correct: torch.Tensor, n_images: int) -> dict[str, list[AccuracyPoint]]:
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
        return accuracy
