"""Input-adaptive merging by similarity thresholds: batched equals per-image, limits, independent counts."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from paretoctl.models.patch import apply_merging, get_thresholds, set_schedule, set_thresholds
from paretoctl.models.schedule import max_merge
from paretoctl.models.split import edge_forward, pool_tokens, server_forward
from paretoctl.models.threshold import real_token_counts, threshold_merge
from tests.models.test_patch import _naive_merge
from tests.models.vit_cases import CASE_IDS, MODEL_CASES, make_images, make_model


def _similar_images(model: Any, batch: int) -> torch.Tensor:
    """Images with local redundancy that differs per image (smooth blobs of varying size)."""
    gen = torch.Generator().manual_seed(3)
    channels = model.patch_embed.proj.in_channels
    height, width = model.patch_embed.img_size
    coarse = [torch.randn(1, channels, 2 + i % 5, 2 + i % 5, generator=gen) for i in range(batch)]
    smooth = torch.cat([torch.nn.functional.interpolate(c, size=(height, width), mode="nearest") for c in coarse])
    return smooth + 0.05 * torch.randn(batch, channels, height, width, generator=gen)


def _naive_threshold_run(model: Any, image: torch.Tensor, thresholds: list[float]) -> tuple[torch.Tensor, list[int]]:
    """One image alone, from the paper's rule, with the naive ToMe of ``test_patch`` doing the merge.

    Per block: count the unprotected A tokens whose best cosine similarity to an unprotected B token
    exceeds the threshold, cap at floor(u / 2), merge that many with the naive ToMe. Returns the
    logits and the tokens entering each block.
    """
    num_prefix = model.num_prefix_tokens
    x = model.norm_pre(model._pos_embed(model.patch_embed(image[None])))[0]
    size = torch.ones(x.shape[0])
    counts = []
    for block, t in zip(model.blocks, thresholds, strict=True):
        counts.append(x.shape[0])
        attn = block.attn
        n, heads, hd = x.shape[0], attn.num_heads, attn.head_dim
        qkv = attn.qkv(block.norm1(x)).view(n, 3, heads, hd).permute(1, 2, 0, 3)
        q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]
        logits = q @ k.transpose(-1, -2) * hd**-0.5 + size.log()[None, None, :]
        o = (logits.softmax(dim=-1) @ v).transpose(0, 1).reshape(n, heads * hd)
        x = x + block.ls1(attn.proj(attn.norm(o)))
        metric = k.mean(0)
        m = metric / metric.norm(dim=-1, keepdim=True)
        qualifying = 0
        for i in range(num_prefix + num_prefix % 2, n, 2):  # unprotected A positions
            best = max((float(m[i] @ m[j]) for j in range(1, n, 2) if j >= num_prefix), default=-math.inf)
            qualifying += best > t
        r = min(qualifying, (n - num_prefix) // 2)
        if r:
            x, size = _naive_merge(x, size, metric, r, num_prefix)
        x = x + block.ls2(block.mlp(block.norm2(x)))
    x = model.norm(x)
    if hasattr(model, "head_dist"):
        return (model.head(x[0]) + model.head_dist(x[1])) / 2, counts
    if model.global_pool == "token":
        return model.head(model.fc_norm(x[0])), counts
    patches, w = x[num_prefix:], size[num_prefix:, None]
    return model.head(model.fc_norm((patches * w).sum(0) / w.sum())), counts


def _batched(model: Any, images: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    record: list[torch.Tensor] = []
    logits = server_forward(model, edge_forward(model, images, split, record), split, record)
    return logits, torch.stack(record, dim=1)  # [B, L] tokens entering each block


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
@torch.inference_mode()
def test_batched_equals_per_image_and_an_independent_count(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = _similar_images(model, 6)
    depth = len(model.blocks)
    apply_merging(model, thresholds=[0.6, 1.0, 0.3] + [0.5] * (depth - 3))
    split = depth // 2
    logits, counts = _batched(model, images, split)
    for b in range(images.shape[0]):
        alone, alone_counts = _batched(model, images[b:b + 1], split)
        naive, naive_counts = _naive_threshold_run(model, images[b], list(get_thresholds(model) or ()))
        assert counts[b].tolist() == alone_counts[0].tolist() == naive_counts
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[b], naive, atol=1e-4, rtol=1e-4)
    assert counts[:, 1].tolist() == counts[:, 2].tolist()  # threshold 1.0 merges nothing


@torch.inference_mode()
def test_bundled_model_counts_vary_per_image_and_padding_is_invisible() -> None:
    model = make_model("vit_fmnist_patch4_28", {})
    from paretoctl.models.vit_fmnist import load_bundled_weights

    load_bundled_weights(model)
    images = _similar_images(model, 8)
    apply_merging(model, thresholds=[0.9] * len(model.blocks))
    logits, counts = _batched(model, images, 6)
    assert len(set(counts[:, -1].tolist())) > 1, "the case must exercise different token counts per image"
    for b in range(images.shape[0]):
        alone, alone_counts = _batched(model, images[b:b + 1], 6)
        assert counts[b].tolist() == alone_counts[0].tolist()
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=1e-5)
        assert int(logits[b].argmax()) == int(alone[0].argmax())


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
@torch.inference_mode()
def test_infinite_thresholds_equal_the_unmerged_model(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model, batch=3)
    expected = model(images)
    apply_merging(model, thresholds=[math.inf] * len(model.blocks))
    torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
@torch.inference_mode()
def test_thresholds_below_minus_one_equal_tomes_maximal_schedule(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model, batch=3)
    depth = len(model.blocks)
    r, n = [], int(model.patch_embed.num_patches) + int(model.num_prefix_tokens) - int(model.num_prefix_tokens)
    for _ in range(depth):
        r.append(max_merge(n))
        n -= r[-1]
    apply_merging(model, r)
    expected = model(images)
    set_thresholds(model, [-math.inf] * depth)
    assert torch.equal(model(images), expected)  # the same merges in the same order: bit for bit
    set_schedule(model, r)
    assert get_thresholds(model) is None


def test_threshold_merge_keeps_padding_zero_and_sizes_summing() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 4, generator=gen)
    size = torch.ones(2, 9, 1)
    size[1, 6:] = 0  # the second image has 6 real tokens, 3 padding
    x[1, 6:] = 0
    metric = x.clone()
    metric[0, 2] = metric[0, 1]  # an exact duplicate pair in image 0: similarity 1
    out, out_size, _ = threshold_merge(x, size, metric, threshold=0.999, num_prefix=1)
    counts = real_token_counts(out_size)
    assert counts.tolist() == [8, 6]
    assert out.shape[1] == 8
    assert out_size.sum(dim=(1, 2)).tolist() == [9.0, 6.0]  # sizes still add up to the real tokens
    assert torch.equal(out[1, 6:], torch.zeros(2, 4)) and torch.equal(out_size[1, 6:], torch.zeros(2, 1))


def test_max_pooling_ignores_padding() -> None:
    x = torch.tensor([[[1.0], [5.0], [99.0]]])
    size = torch.tensor([[[1.0], [1.0], [0.0]]])
    assert pool_tokens(x, size, "max", num_prefix=0).item() == 5.0
    assert pool_tokens(x, size, "avg", num_prefix=0).item() == 3.0


@pytest.mark.parametrize(("value", "match"), [([0.5], "one value per block"), ([math.nan] * 12, "block 0"),
                                              (["x"] * 12, "must be a number")])
def test_bad_thresholds_are_refused(value: list[Any], match: str) -> None:
    model = make_model("vit_fmnist_patch4_28", {})
    with pytest.raises(ValueError, match=match):
        apply_merging(model, thresholds=value)
    with pytest.raises(ValueError, match="not both"):
        apply_merging(model, [0] * 12, thresholds=[1.0] * 12)
