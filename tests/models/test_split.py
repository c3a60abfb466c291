"""Edge/server split: the two halves together are the whole model, for every split point."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from paretoctl.models.patch import apply_merging
from paretoctl.models.schedule import resolve_schedule, tokens_after_layers
from paretoctl.models.split import (
    TokenState,
    edge_forward,
    head_reads_first_token_only,
    pool_tokens,
    run_blocks,
    server_forward,
)
from tests.models.vit_cases import CASE_IDS, MODEL_CASES, make_images, make_model


@pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "patched"])
@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
def test_edge_then_server_equals_model(name: str, kwargs: dict[str, Any], patched: bool) -> None:
    model = make_model(name, kwargs)
    images = make_images(model)
    depth, num_patches, num_prefix = len(model.blocks), model.patch_embed.num_patches, model.num_prefix_tokens
    r = resolve_schedule([0.5, 1.0] + [0.4] * (depth - 2), num_patches, depth) if patched else [0] * depth
    if patched:
        apply_merging(model, r)
    entering = [num_patches + num_prefix, *tokens_after_layers(r, num_patches, num_prefix)]
    with torch.no_grad():
        full = model(images)
        for split in range(depth + 1):
            state = edge_forward(model, images, split)
            assert state.tokens.shape == (len(images), entering[split], model.embed_dim)
            assert state.size.shape == (len(images), entering[split], 1)
            torch.testing.assert_close(state.size.sum(dim=(1, 2)),
                                       torch.full((len(images),), float(num_patches + num_prefix)))
            torch.testing.assert_close(server_forward(model, state, split), full, atol=1e-6, rtol=0)


@pytest.mark.parametrize("thresholds", [False, True], ids=["schedule", "thresholds"])
@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
def test_head_only_server_gives_the_whole_forwards_logits(name: str, kwargs: dict[str, Any], thresholds: bool) -> None:
    """The last block computing only the class token changes no logit beyond float rounding, where it
    applies (class-token pooling), and nothing at all where it does not (avg pooling, no cls)."""
    model = make_model(name, kwargs)
    images = make_images(model, batch=3)
    depth, num_patches = len(model.blocks), model.patch_embed.num_patches
    if thresholds:
        apply_merging(model, thresholds=[0.2] * depth)  # merges at every block, the last included
    else:
        apply_merging(model, resolve_schedule([0.5, 1.0] + [0.4] * (depth - 2), num_patches, depth))
    with torch.no_grad():
        for split in (0, depth // 2, depth - 1):
            state = edge_forward(model, images, split)
            whole = server_forward(model, state, split)
            short = server_forward(model, state, split, head_only=True)
            torch.testing.assert_close(short, whole, atol=2e-6, rtol=1e-5)
            if not head_reads_first_token_only(model):
                assert torch.equal(short, whole)


def test_head_only_last_block_keeps_one_token_and_only_its_rows() -> None:
    """``keep_last`` returns the first token only, equal to that row of the whole last block."""
    model = make_model("vit_fmnist_patch4_28", {})
    apply_merging(model, [2] * 12)
    assert head_reads_first_token_only(model)
    with torch.no_grad():
        state = edge_forward(model, make_images(model), 11)
        whole = run_blocks(model, state, 11, 12)
        short = run_blocks(model, state, 11, 12, keep_last=1)
    assert whole.tokens.shape[1] == state.tokens.shape[1] - 2 and short.tokens.shape[1] == 1
    torch.testing.assert_close(short.tokens[:, 0], whole.tokens[:, 0], atol=2e-6, rtol=1e-5)
    assert short.size.shape == (2, 1, 1) and short.source is None
    with pytest.raises(ValueError, match="keep must be in"):
        run_blocks(model, state, 11, 12, keep_last=2)
    with pytest.raises(ValueError, match="keep_last needs"):
        run_blocks(model, state, 12, 12, keep_last=1)


def test_unpatched_edge_state_is_timm_blocks_output() -> None:
    model = make_model("deit_tiny_patch16_224", dict(img_size=64))
    images = make_images(model)
    with torch.no_grad():
        state = edge_forward(model, images, 5)
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        expected = model.blocks[:5](x)
    assert torch.equal(state.tokens, expected)
    assert torch.equal(state.size, torch.ones(2, 17, 1))
    assert state.source is None


def test_server_uses_the_sizes_it_receives() -> None:
    """With average pooling, doubling a token's size on the link changes the pooled mean exactly so."""
    model = make_model("test_vit2", dict(img_size=64))
    apply_merging(model, [4, 2, 1, 0, 0, 0, 0, 0])
    images = make_images(model)
    with torch.no_grad():
        state = edge_forward(model, images, 8)
        size = state.size.clone()
        size[:, 3] *= 2
        changed = server_forward(model, TokenState(state.tokens, size, None), 8)
        x = model.norm(state.tokens)
        expected = model.head(model.fc_norm(((x * size)[:, 1:]).sum(1) / size[:, 1:].sum(1)))
    torch.testing.assert_close(changed, expected)


def test_pool_tokens_hand_computed() -> None:
    x = torch.tensor([[[100.0], [1.0], [4.0], [-2.0]]])  # one prefix token, then patches
    size = torch.tensor([[[1.0], [1.0], [2.0], [1.0]]])
    # (1*1 + 4*2 - 2*1) / 4 = 1.75
    assert pool_tokens(x, size, "avg", num_prefix=1).tolist() == [[1.75]]
    assert pool_tokens(x, size, "max", num_prefix=1).tolist() == [[4.0]]
    assert pool_tokens(x, size, "avgmax", num_prefix=1).tolist() == [[0.5 * (4.0 + 1.75)]]
    assert pool_tokens(x, size, "token", num_prefix=1).tolist() == [[100.0]]
    # prefix included: (100 + 1 + 8 - 2) / 5 = 21.4
    torch.testing.assert_close(pool_tokens(x, size, "avg", 1, include_prefix=True), torch.tensor([[21.4]]))


@pytest.mark.parametrize("split", [-1, 7, True])
def test_bad_split_raises(split: int) -> None:
    model = make_model("test_vit", dict(img_size=32))
    images = make_images(model)
    with pytest.raises(ValueError, match=r"split must be an integer in 0\.\.6"):
        edge_forward(model, images, split)
    state = edge_forward(model, images, 0)
    with pytest.raises(ValueError, match=r"split must be an integer in 0\.\.6"):
        server_forward(model, state, split)
