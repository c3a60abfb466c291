"""Patching timm ViTs: exactness with no merging, agreement with a naive ToMe, schedules, restore."""

from __future__ import annotations

import math
from typing import Any

import pytest
import timm
import torch
from torch import nn

from paretoctl.models.patch import apply_merging, get_schedule, is_patched, remove_merging, set_schedule
from paretoctl.models.schedule import constant_r, decreasing_r, resolve_schedule, tokens_after_layers
from paretoctl.models.split import TokenState, edge_forward
from tests.models.vit_cases import CASE_IDS, MODEL_CASES, make_images, make_model


def some_schedule(model: Any) -> list[int]:
    depth, num_patches = len(model.blocks), model.patch_embed.num_patches
    return resolve_schedule([0.6, 0.0, 1.0] + [0.5] * (depth - 3), num_patches, depth)


# ----------------------------------------------------------------------------------------------
# A naive ToMe written from the paper's description, one image at a time, with an explicit softmax
# and Python loops for the matching. It shares only the model's weights with the code under test.
# ToMe's published convention: the WHOLE sequence alternates, A = even positions (the class token is
# A's first), B = odd positions (a distillation token is B's first); cosine similarity of the
# head-averaged keys; every A token's best B match; the r A tokens with the best matches merge
# (size-weighted average) into them; protected tokens are never merged (a protected A row and a
# protected B column take no part, as ToMe's -inf scores do); proportional attention adds log(size)
# to the attention logits. The merged sequence is ToMe's cat([unmerged A in position order, B]),
# with protected tokens kept in front (for one class token that is exactly ToMe's order).


def _naive_merge(x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int,
                 num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = metric / metric.norm(dim=-1, keepdim=True)
    n = x.shape[0]
    a_pos, b_pos = list(range(0, n, 2)), list(range(1, n, 2))
    scores = m[a_pos] @ m[b_pos].T
    for ia, i in enumerate(a_pos):
        for jb, j in enumerate(b_pos):
            if i < num_prefix or j < num_prefix:
                scores[ia, jb] = -math.inf
    edges = [(float(scores[ia].max()), i, b_pos[int(scores[ia].argmax())]) for ia, i in enumerate(a_pos)]
    edges.sort(key=lambda e: -e[0])
    chosen = edges[:r]
    assert all(i >= num_prefix and j >= num_prefix for _, i, j in chosen)
    groups: dict[int, list[int]] = {j: [j] for j in b_pos}
    for _, i, j in chosen:
        groups[j].append(i)
    merged_away = {i for _, i, _ in chosen}
    protected = list(range(num_prefix))
    kept_a = [i for i in a_pos if i >= num_prefix and i not in merged_away]
    rows = [x[i] for i in protected + kept_a]
    sizes = [size[i] for i in protected + kept_a]
    for j in b_pos:
        if j >= num_prefix:
            g = groups[j]
            rows.append((x[g] * size[g, None]).sum(0) / size[g].sum())
            sizes.append(size[g].sum())
    return torch.stack(rows), torch.stack(sizes)


def naive_tome_logits(model: Any, images: torch.Tensor, r: list[int]) -> torch.Tensor:
    num_prefix = model.num_prefix_tokens
    out = []
    for image in images:
        x = model.norm_pre(model._pos_embed(model.patch_embed(image[None])))[0]
        size = torch.ones(x.shape[0])
        for block, r_l in zip(model.blocks, r, strict=True):
            attn = block.attn
            n, heads, hd = x.shape[0], attn.num_heads, attn.head_dim
            qkv = attn.qkv(block.norm1(x)).view(n, 3, heads, hd).permute(1, 2, 0, 3)  # [3, H, N, hd]
            q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]
            logits = q @ k.transpose(-1, -2) * hd**-0.5 + size.log()[None, None, :]
            o = (logits.softmax(dim=-1) @ v).transpose(0, 1).reshape(n, heads * hd)
            x = x + block.ls1(attn.proj(attn.norm(o)))
            if r_l:
                x, size = _naive_merge(x, size, k.mean(0), r_l, num_prefix)
            x = x + block.ls2(block.mlp(block.norm2(x)))
        x = model.norm(x)
        if hasattr(model, "head_dist"):
            out.append((model.head(x[0]) + model.head_dist(x[1])) / 2)
        elif model.global_pool == "token":
            out.append(model.head(model.fc_norm(x[0])))
        else:
            patches, w = x[num_prefix:], size[num_prefix:, None]
            out.append(model.head(model.fc_norm((patches * w).sum(0) / w.sum())))
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
def test_zero_schedule_equals_unpatched_and_remove_restores(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model)
    classes = {k: type(m) for k, m in model.named_modules()}
    with torch.no_grad():
        reference = model(images)
        apply_merging(model)
        assert is_patched(model)
        assert get_schedule(model) == (0,) * len(model.blocks)
        torch.testing.assert_close(model(images), reference, atol=1e-5, rtol=0)
        set_schedule(model, some_schedule(model))
        assert not torch.allclose(model(images), reference, atol=1e-3)  # merging does change the outputs
        remove_merging(model)
        restored = model(images)
    assert torch.equal(restored, reference)
    assert {k: type(m) for k, m in model.named_modules()} == classes
    assert not is_patched(model)
    assert not hasattr(model, "merge_r") and not hasattr(model, "merge_trace_source")


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
def test_patched_model_matches_naive_tome(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model)
    r = some_schedule(model)
    with torch.no_grad():
        expected = naive_tome_logits(model, images, r)
        got = apply_merging(model, r)(images)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("name", "kwargs"), MODEL_CASES, ids=CASE_IDS)
def test_token_counts_and_sizes_follow_schedule(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model)
    depth, num_patches, num_prefix = len(model.blocks), model.patch_embed.num_patches, model.num_prefix_tokens
    seen: list[TokenState] = []
    for block in model.blocks:
        block.register_forward_hook(lambda _module, _inputs, output: seen.append(output))
    for r in (constant_r(3, depth, num_patches), decreasing_r(4, depth, num_patches), some_schedule(model)):
        apply_merging(model, r)
        seen.clear()
        with torch.no_grad():
            model(images)
        assert [s.tokens.shape[1] for s in seen] == tokens_after_layers(r, num_patches, num_prefix)
        for state in seen:
            assert state.size.shape == (*state.tokens.shape[:2], 1)
            assert torch.equal(state.size[:, :num_prefix], torch.ones(len(images), num_prefix, 1))
            torch.testing.assert_close(state.size[:, num_prefix:].sum(dim=(1, 2)),
                                       torch.full((len(images),), float(num_patches)))


@pytest.mark.parametrize(("name", "kwargs"), [MODEL_CASES[4], MODEL_CASES[8], MODEL_CASES[9]])
def test_source_tracing_protects_prefix(name: str, kwargs: dict[str, Any]) -> None:
    model = make_model(name, kwargs)
    images = make_images(model)
    num_prefix, num_tokens = model.num_prefix_tokens, model.patch_embed.num_patches + model.num_prefix_tokens
    apply_merging(model, some_schedule(model), trace_source=True)
    with torch.no_grad():
        state = edge_forward(model, images, len(model.blocks))
    assert state.source is not None
    assert state.source.shape == (len(images), state.tokens.shape[1], num_tokens)
    eye = torch.eye(num_tokens)[:num_prefix].expand(len(images), -1, -1)
    assert torch.equal(state.source[:, :num_prefix], eye)  # prefix tokens hold only themselves
    torch.testing.assert_close(state.source.sum(-1, keepdim=True), state.size)
    assert torch.equal(state.source.sum(1), torch.ones(len(images), num_tokens))


def test_training_mode_runs_with_drop_path_and_backprops() -> None:
    model: Any = timm.create_model("deit3_small_patch16_224", img_size=64, drop_path_rate=0.2, init_values=0.5)
    apply_merging(model, constant_r(2, 12, 16)).train()
    logits = model(make_images(model))
    logits.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert model.patch_embed.proj.weight.grad is not None


def test_attention_pooling_is_refused() -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, global_pool="map")
    with pytest.raises(NotImplementedError, match="global_pool='map'"):
        apply_merging(model)
    assert type(model).__name__ == "VisionTransformer"


def test_unsupported_block_is_refused_before_patching() -> None:
    model: Any = timm.create_model("test_vit", img_size=32)
    original = type(model.blocks[0])
    model.blocks[2] = nn.Identity()
    with pytest.raises(NotImplementedError, match="block 2 is a Identity"):
        apply_merging(model)
    assert type(model.blocks[0]) is original


@pytest.mark.parametrize(
    ("r", "match"),
    [
        ([1] * 5, "5 entries but the model has 6 layers"),
        ([1, 1, 1, 1, 1, 2.5], r"r\[5\] must be an integer"),
        ([9, 0, 0, 0, 0, 0], r"r\[0\] = 9 is infeasible: layer 0 receives 16"),
        ([8, 4, 2, 1, 1, 0], r"r\[4\] = 1 is infeasible"),
    ],
)
def test_bad_schedules_raise_value_error(r: list[Any], match: str) -> None:
    model = timm.create_model("test_vit", img_size=64)  # 16 patches, 6 blocks
    with pytest.raises(ValueError, match=match):
        apply_merging(model, r)
    assert not is_patched(model)  # a failed apply leaves the model untouched
    apply_merging(model, [1] * 6)
    with pytest.raises(ValueError, match=match):
        set_schedule(model, r)
    assert get_schedule(model) == (1,) * 6  # and a failed set keeps the old schedule


def test_set_schedule_needs_a_patched_model() -> None:
    with pytest.raises(TypeError, match="apply_merging"):
        set_schedule(timm.create_model("test_vit", img_size=32), [0] * 6)


def test_apply_twice_only_updates_schedule() -> None:
    model = make_model("test_vit", dict(img_size=64))
    images = make_images(model)
    apply_merging(model, [2] * 6)
    with torch.no_grad():
        first = model(images)
        apply_merging(model, [2] * 6)
        assert torch.equal(model(images), first)
        remove_merging(model)
        assert type(model.blocks[0]).__name__ == "Block"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("test_vit", dict(img_size=96)),  # one class token
        ("deit_tiny_patch16_224", dict(img_size=96)),  # DeiT-T shape, one class token
        ("vit_small_patch16_224", dict(img_size=64)),  # ViT-S shape, one class token
        ("deit_tiny_distilled_patch16_224", dict(img_size=96)),  # class + distillation tokens
    ],
)
def test_class_token_models_follow_tome_convention(name: str, kwargs: dict[str, Any]) -> None:
    """ToMe's A/B alternation over the whole sequence, at the most merging every layer allows.

    Before the fix (prefix tokens left out of the alternation) models with one class token had A
    and B swapped and their logits differed from this reference by 0.05-0.37.
    """
    model = make_model(name, kwargs)
    images = make_images(model)
    depth, num_patches = len(model.blocks), model.patch_embed.num_patches
    for r in (resolve_schedule([1.0] * depth, num_patches, depth), constant_r(3, depth, num_patches)):
        with torch.no_grad():
            expected = naive_tome_logits(model, images, r)
            got = apply_merging(model, r)(images)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_hybrid_vit_is_refused_before_patching() -> None:
    model: Any = timm.create_model("vit_small_r26_s32_224", img_size=64)
    with pytest.raises(NotImplementedError, match=r"vit_small_r26_s32_224: patch embedding HybridEmbed"):
        apply_merging(model)
    assert type(model).__name__ == "VisionTransformer" and not is_patched(model)


def test_inference_mode_then_training_share_cached_plans() -> None:
    """Per-shape row templates are cached; one made under inference_mode must not break backward later."""
    model = make_model("test_vit", dict(img_size=64))
    images = make_images(model)
    apply_merging(model, [2] * 6)
    with torch.inference_mode():
        first = model(images)
    model.train()
    out = model(images)
    out.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), first)  # the cached templates give the same plan again


def test_eval_forward_skips_pass_through_modules() -> None:
    """At batch 1 every module call costs time: in eval mode Identity and dropout modules are not called."""
    model: Any = timm.create_model("deit3_small_patch16_224", img_size=64, drop_rate=0.1, drop_path_rate=0.2,
                                   init_values=0.5).eval()
    images = make_images(model)
    called: list[str] = []
    for name, module in model.blocks.named_modules():
        if isinstance(module, (nn.Identity, nn.Dropout)) or type(module).__name__ == "DropPath":
            module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    with torch.no_grad():
        reference = model(images)
        assert called  # timm's own forward does call them
        called.clear()
        got = apply_merging(model)(images)
    assert called == []
    assert torch.equal(got, reference)


def test_training_forward_still_applies_dropout_and_drop_path_in_timm_order() -> None:
    """Skipping pass-through modules must not skip a dropout that is active: same seed, same outputs."""
    model: Any = timm.create_model("deit3_small_patch16_224", img_size=64, proj_drop_rate=0.3,
                                   drop_path_rate=0.3, init_values=0.5).train()
    images = make_images(model, batch=4)
    torch.manual_seed(5)
    reference = model(images)
    apply_merging(model)
    torch.manual_seed(5)
    got = model(images)
    torch.manual_seed(6)
    assert not torch.allclose(model(images), got, atol=1e-3)  # dropout is on
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["vit_fmnist_patch4_28", "test_vit", "deit_tiny_distilled_patch16_224"])
def test_batch_one_matches_naive_tome_and_the_batched_forward(name: str) -> None:
    """Batch 1 takes its own shortcuts (one sum for the merge metric); they must not change a token."""
    case = next(kwargs for n, kwargs in MODEL_CASES if n == name)
    model = make_model(name, case)
    images = make_images(model, batch=3)
    depth, num_patches = len(model.blocks), model.patch_embed.num_patches
    for r in (resolve_schedule([0.8] * depth, num_patches, depth), decreasing_r(2, depth, num_patches)):
        apply_merging(model, r)
        with torch.no_grad():
            batched = model(images)
            for i in range(3):
                single = model(images[i:i + 1])
                torch.testing.assert_close(single, batched[i:i + 1], atol=1e-5, rtol=0)
                torch.testing.assert_close(single, naive_tome_logits(model, images[i:i + 1], r), atol=1e-4, rtol=0)
