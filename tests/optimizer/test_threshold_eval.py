"""Evaluating threshold configurations: per-image costs against an independent count, and their summary.

The independent count runs each image alone (batch 1, so no padding) through ``edge_forward`` and
``server_forward`` with ``record``, reads the tokens leaving the last block from a forward hook, and
counts FLOPs with torch's ``FlopCounterMode`` (math attention kernel), not with the cost model.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from paretoctl.models.patch import apply_merging
from paretoctl.models.schedule import mean_schedule, proportions_from_r
from paretoctl.models.split import edge_forward, server_forward
from paretoctl.optimizer.config import ChannelSpec
from paretoctl.optimizer.evaluator import Evaluator
from paretoctl.optimizer.executor import LocalExecutor
from paretoctl.optimizer.space import Candidate
from paretoctl.service.schema.consistency import check_schedule, expected_tokens
from tests.optimizer.conftest import smoke_model_and_batches

SPLIT = 3
THRESHOLDS = [0.9, 0.97, 1.0, 0.95, 0.9, 1.0, 0.93, 0.9, 0.95, 0.92, 0.9, 0.9]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The bundled model and 24 validation images in batches of 10, 10 and 4 (padded batches)."""
    model, batches = smoke_model_and_batches(tmp_path_factory.mktemp("cfg"), 24, 10)
    channels = [ChannelSpec(kind="awgn"), ChannelSpec(kind="ideal")]
    evaluator = Evaluator(model, batches, channels, [0.0, 20.0], SPLIT, seed=0, device="cpu")
    return SimpleNamespace(model=model, batches=batches, evaluator=evaluator)


def _flops(fn: Any) -> tuple[Any, int]:
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = fn()
    return out, int(counter.get_total_flops())


def _alone(model: Any, image: torch.Tensor) -> dict[str, Any]:
    """One image by itself: tokens entering each block and leaving the last, FLOPs of each half, logits."""
    entering: list[torch.Tensor] = []
    leaving: list[int] = []
    hook = model.blocks[-1].register_forward_hook(lambda _m, _i, out: leaving.append(out.tokens.shape[1]))
    state, edge = _flops(lambda: edge_forward(model, image[None], SPLIT, record=entering))
    logits, server = _flops(lambda: server_forward(model, state, SPLIT, record=entering))
    hook.remove()
    counts = [int(c.item()) for c in entering] + leaving
    return {"counts": counts, "edge": edge / 1e9, "server": server / 1e9, "logits": logits[0]}


def _uses(n: int, width: int) -> int:
    return math.ceil(n * width / 2) + math.ceil((n + 1) / 2)


def test_infinite_thresholds_measure_exactly_the_unmerged_model(setup: SimpleNamespace) -> None:
    depth = len(setup.model.blocks)
    unmerged = setup.evaluator.evaluate([0] * depth)
    never = setup.evaluator.evaluate(thresholds=[math.inf] * depth)
    assert never.accuracy == unmerged.accuracy  # every accuracy point, bit for bit
    assert never.r == [0] * depth and never.merging == "thresholds" and unmerged.merging == "proportions"
    assert never.costs.gflops_total == pytest.approx(unmerged.costs.gflops_total, rel=1e-12)
    assert never.costs.tokens_per_layer == unmerged.costs.tokens_per_layer
    dist = never.distribution
    assert dist is not None and dist.n_images == 24
    assert dist.tokens_sent.mean == dist.tokens_sent.p95 == 50
    assert dist.channel_uses.mean == dist.channel_uses.p95 == unmerged.costs.channel_uses


def test_per_image_costs_match_an_independent_count(setup: SimpleNamespace) -> None:
    model, depth, width = setup.model, len(setup.model.blocks), int(setup.model.embed_dim)
    ev = setup.evaluator.evaluate(thresholds=THRESHOLDS)
    apply_merging(model, thresholds=THRESHOLDS)  # the evaluator traced sources; alone runs untraced
    alone, labels = [], []
    for images, y in setup.batches:
        alone += [_alone(model, image) for image in images]
        labels += y.tolist()
    counts = np.array([a["counts"] for a in alone])  # [24, L + 1]
    assert len({tuple(c) for c in counts.tolist()}) > 3, "the images must merge differently"
    edge = np.array([a["edge"] for a in alone])
    server = np.array([a["server"] for a in alone])
    sent = counts[:, SPLIT]
    per_image = {"gflops_total": edge + server, "gflops_edge": edge, "gflops_server": server,
                 "tokens_sent": sent.astype(float), "channel_uses": np.array([_uses(int(n), width) for n in sent])}
    dist = ev.distribution
    assert dist is not None and dist.n_images == len(alone)
    for name, values in per_image.items():
        summary = getattr(dist, name)
        assert summary.mean == pytest.approx(values.mean(), rel=1e-12), name
        assert summary.p95 == pytest.approx(np.percentile(values, 95), rel=1e-12), name  # numpy's linear rule
        assert summary.p95 >= summary.mean
    assert dist.tokens_per_layer_mean == pytest.approx(counts[:, :-1].mean(axis=0).tolist(), rel=1e-12)
    # Accuracy on the ideal channel: the padded batches classify every image as it is classified alone.
    hits = sum(int(a["logits"].argmax()) == y for a, y in zip(alone, labels, strict=True))
    assert [p.mean for p in ev.accuracy["ideal"]] == [hits / len(alone)] * 2
    # The scalar views: exact mean GFLOPs; r, tokens and tokens sent from the rounded means, consistent.
    assert ev.costs.gflops_total == pytest.approx(per_image["gflops_total"].mean(), rel=1e-12)
    assert ev.costs.channel_uses == round(per_image["channel_uses"].mean())
    assert ev.r == mean_schedule(counts.mean(axis=0).tolist(), 49, 1)
    assert ev.costs.tokens_per_layer == expected_tokens(ev.r, 49, 1)
    front_view = SimpleNamespace(proportions=proportions_from_r(ev.r, 49), r=ev.r,
                                 tokens_per_layer=ev.costs.tokens_per_layer, tokens_sent=ev.costs.tokens_sent)
    prov = SimpleNamespace(num_patches=49, num_prefix_tokens=1, depth=depth, split_index=SPLIT)
    check_schedule("threshold config", front_view, prov)  # type: ignore[arg-type]
    assert ev.thresholds == THRESHOLDS


def test_candidates_run_through_the_executor_as_directly(setup: SimpleNamespace) -> None:
    depth = len(setup.model.blocks)
    items = [Candidate(thresholds=tuple(THRESHOLDS)), [2] * depth]
    via = list(LocalExecutor(lambda _split: setup.evaluator).evaluate("val", items))
    direct = [setup.evaluator.evaluate(thresholds=THRESHOLDS), setup.evaluator.evaluate([2] * depth)]
    for a, b in zip(via, direct, strict=True):
        assert a.accuracy == b.accuracy and a.r == b.r and a.distribution == b.distribution
    assert via[0].merging == "thresholds" and via[1].merging == "proportions"
    with pytest.raises(ValueError, match="exactly one"):
        setup.evaluator.evaluate([0] * depth, thresholds=THRESHOLDS)


def test_candidate_keys_never_mix_kinds() -> None:
    assert Candidate(r=(0, 1)).key != Candidate(thresholds=(0.0, 1.0)).key
    assert Candidate(thresholds=(0.91234, 1.0)).key == Candidate(thresholds=(0.912349, 1.0)).key  # 1e-4
    assert Candidate.of([1, 2]) == Candidate(r=(1, 2))
    with pytest.raises(ValueError, match="exactly one"):
        Candidate()
