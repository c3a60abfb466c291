"""An evaluation cut into parts (one per worker process): the parts add up to exactly the whole."""

from __future__ import annotations

import pytest
import torch

from paretoctl.optimizer.config import ChannelSpec
from paretoctl.optimizer.evaluator import Evaluator
from paretoctl.optimizer.space import Candidate
from tests.optimizer.conftest import smoke_model_and_batches

GRID = [0.0, 10.0, 20.0]
WORK = [Candidate(r=(2,) * 12), Candidate(thresholds=(0.9,) * 12)]


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Evaluator:
    """The bundled model on 50 validation images in 5 batches of 10, over AWGN and block fading."""
    model, batches = smoke_model_and_batches(tmp_path_factory.mktemp("cfg"), 50, 10)
    channels = [ChannelSpec(kind="awgn"), ChannelSpec(kind="rayleigh", block="token")]
    return Evaluator(model, batches, channels, GRID, 3, seed=0)


@pytest.mark.parametrize("parts", [2, 3, 7], ids=["2 parts", "3 uneven", "more parts than batches"])
@pytest.mark.parametrize("work", WORK, ids=["schedule", "thresholds"])
def test_parts_add_up_to_the_whole_evaluation(evaluator: Evaluator, work: Candidate, parts: int) -> None:
    whole = evaluator.evaluate_candidate(work)
    pieces = [evaluator.evaluate_part(work, k, parts) for k in reversed(range(parts))]  # any order
    assert sorted(p.n_images for p in pieces)[-1] <= 10 * -(-5 // parts)
    assert sum(p.n_images for p in pieces) == 50
    if parts > 5:
        assert sum(p.n_images == 0 for p in pieces) == parts - 5  # a part with no batch counts nothing
    combined = evaluator.combine(work, pieces)
    assert combined.accuracy == whole.accuracy  # hit for hit: each batch keeps its noise seed
    assert combined.costs == whole.costs and combined.r == whole.r
    assert combined.distribution == whole.distribution


def test_part_counts_are_the_batches_dealt_in_turn(evaluator: Evaluator) -> None:
    """Part k holds batches k, k + parts, ...: its hits are those of exactly these batches."""
    work = WORK[0]
    one_batch = [evaluator.evaluate_part(work, b, 5) for b in range(5)]  # a part per batch
    assert all(p.n_images == 10 for p in one_batch)
    pair = evaluator.evaluate_part(work, 1, 2)  # batches 1 and 3
    assert torch.equal(pair.correct, one_batch[1].correct + one_batch[3].correct)


def test_a_part_outside_the_range_is_refused(evaluator: Evaluator) -> None:
    with pytest.raises(ValueError, match=r"part must be in \[0, 2\)"):
        evaluator.evaluate_part(WORK[0], 2, 2)


def test_evaluate_by_keyword_still_takes_plain_values(evaluator: Evaluator) -> None:
    ev = evaluator.evaluate([1] * 12)
    assert ev.r == [1] * 12 and ev.thresholds is None
    th = evaluator.evaluate(thresholds=[1.0] * 12)  # merges nothing
    assert th.thresholds == [1.0] * 12 and th.r == [0] * 12
