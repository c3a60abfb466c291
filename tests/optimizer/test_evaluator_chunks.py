"""The server part in pieces (``server_chunk``): the same accuracies as one piece, in pieces of the stated size."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from paretoctl.optimizer import evaluator as evaluator_module
from paretoctl.optimizer.config import ChannelSpec, ConfigError, load_config
from paretoctl.optimizer.evaluator import Evaluator
from tests.optimizer.conftest import smoke_config_text, smoke_model_and_batches

GRID = [0.0, 10.0, 20.0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The bundled model and 30 validation images in batches of 20 and 10, over AWGN and block fading."""
    model, batches = smoke_model_and_batches(tmp_path_factory.mktemp("cfg"), 30, 20)
    channels = [ChannelSpec(kind="awgn"), ChannelSpec(kind="rayleigh", block="token")]
    return SimpleNamespace(model=model, batches=batches, channels=channels)


def _evaluator(setup: SimpleNamespace, chunk: int | None) -> Evaluator:
    return Evaluator(setup.model, setup.batches, setup.channels, GRID, 3, seed=0, server_chunk=chunk)


@pytest.mark.parametrize("work", [{"r": [2] * 12}, {"thresholds": [0.9] * 12}], ids=["schedule", "thresholds"])
def test_pieces_measure_what_one_piece_measures(setup: SimpleNamespace, work: dict[str, list[float]]) -> None:
    whole = _evaluator(setup, None).evaluate(**work)  # type: ignore[arg-type]
    pieces = _evaluator(setup, 7).evaluate(**work)  # type: ignore[arg-type]
    assert pieces.accuracy == whole.accuracy  # every (channel, SNR) point, image for image
    assert pieces.costs == whole.costs


@pytest.mark.parametrize("work", [{"r": [2] * 12}, {"thresholds": [0.9] * 12}], ids=["schedule", "thresholds"])
def test_head_only_server_measures_what_the_whole_forward_measures(setup: SimpleNamespace,
                                                                   work: dict[str, list[float]]) -> None:
    """The default head-only last block gives the same hits at every (channel, SNR) as the whole one."""
    fast = _evaluator(setup, 7)
    slow = _evaluator(setup, 7)
    slow.head_only = False
    assert fast.head_only
    assert fast.evaluate(**work).accuracy == slow.evaluate(**work).accuracy  # type: ignore[arg-type]


def test_the_server_runs_in_pieces_of_the_stated_size(setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[int] = []
    real = evaluator_module.server_forward

    def spy(model, state, split, **kwargs):  # type: ignore[no-untyped-def]
        rows.append(int(state.tokens.shape[0]))
        return real(model, state, split, **kwargs)

    monkeypatch.setattr(evaluator_module, "server_forward", spy)
    _evaluator(setup, 16).evaluate([1] * 12)
    stack_20, stack_10 = 20 * len(GRID), 10 * len(GRID)  # one batch's SNR copies: 60 and 30 rows
    per_channel = [16, 16, 16, 12, 16, 14]  # 60 = 3 x 16 + 12, then 30 = 16 + 14
    assert sum(rows) == 2 * (stack_20 + stack_10)
    assert rows == per_channel[:4] * 2 + per_channel[4:] * 2


def test_a_chunk_below_one_is_refused(setup: SimpleNamespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="server_chunk must be at least 1"):
        _evaluator(setup, 0)
    path = tmp_path / "c.yaml"
    path.write_text(smoke_config_text() + "\nruntime:\n  server_chunk: 0\n")
    with pytest.raises(ConfigError, match="server_chunk"):
        load_config(path)
