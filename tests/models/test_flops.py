"""Analytic FLOPs: hand-computed on a tiny ViT, equal to torch's FlopCounterMode, and the relaxed form."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import paretoctl.models.vit_fmnist  # noqa: F401  (registers vit_fmnist_patch4_28)
from paretoctl.models.flops import ViTShape, analytic_cost, cost_from_shape, count_flops, relaxed_cost, vit_shape
from paretoctl.models.patch import apply_merging
from paretoctl.models.schedule import constant_r, decreasing_r, resolve_schedule


def tiny_vit() -> VisionTransformer:
    # 8x8 grey image, 4x4 patches -> 4 patches + cls; D = 8, 2 heads of 4, MLP 16, 2 blocks, 3 classes.
    return VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=2,
                             num_heads=2, mlp_ratio=2.0).eval()


def counted_gflops(model: torch.nn.Module, images: torch.Tensor) -> float:
    return count_flops(model, images) / 1e9


def test_tiny_vit_hand_computed() -> None:
    model = tiny_vit()
    report = analytic_cost(model, [1, 0], split=1)
    # patch conv: 2 * 4 patches * (8 * 1 * 4 * 4) = 1024
    # block 0, N = 5 -> 4: qkv 2*5*8*24 = 1920, q k^T + a v 4*25*8 = 800, proj 2*5*8*8 = 640,
    #   matching (u = 4: 2 x 2 tokens, head_dim 4) 2*2*2*4 = 32, MLP 2*4*(8*16 + 16*8) = 2048 -> 5440
    # block 1, N = 4: qkv 1536, attention 4*16*8 = 512, proj 512, MLP 2048 -> 4608
    # head: 2 * 8 * 3 = 48
    assert report.per_layer_gflops == [5440e-9, 4608e-9]
    assert report.edge_gflops == pytest.approx((1024 + 5440) * 1e-9)
    assert report.server_gflops == pytest.approx((4608 + 48) * 1e-9)
    assert report.total_gflops == pytest.approx(11120e-9)
    assert report.tokens_after_layer == [4, 4]
    assert report.tokens_sent == 4
    apply_merging(model, [1, 0])
    assert counted_gflops(model, torch.randn(1, 1, 8, 8)) == pytest.approx(11120e-9, rel=1e-9)


def test_tokens_sent_and_split_bookkeeping() -> None:
    model: Any = timm.create_model("vit_fmnist_patch4_28")
    r = constant_r(2, 12, 49)
    unmerged = analytic_cost(model, None, 0)
    edge = []
    for split in range(13):
        report = analytic_cost(model, r, split)
        assert report.edge_gflops + report.server_gflops == pytest.approx(report.total_gflops)
        assert report.edge_gflops == pytest.approx(2 * 49 * 128 * 16 / 1e9 + sum(report.per_layer_gflops[:split]))
        assert report.tokens_sent == 50 - 2 * split
        assert report.total_gflops < unmerged.total_gflops
        edge.append(report.edge_gflops)
    assert edge == sorted(edge)
    assert analytic_cost(model, r, 0).edge_gflops == pytest.approx(2 * 49 * 128 * 16 / 1e9)  # the patch conv
    assert analytic_cost(model, r, 12).server_gflops == pytest.approx(2 * 128 * 10 / 1e9)  # the head
    apply_merging(model, r)
    assert analytic_cost(model, None, 3) == analytic_cost(model, r, 3)


@pytest.mark.parametrize(
    ("name", "kwargs", "channels", "size"),
    [
        ("deit_tiny_patch16_224", dict(img_size=96), 3, 96),
        ("deit3_small_patch16_224", dict(img_size=64), 3, 64),
        ("vit_small_patch14_reg4_dinov2", dict(img_size=70), 3, 70),
        ("test_vit2", dict(img_size=96), 3, 96),
        ("vit_tiny_patch16_224", dict(img_size=64, qk_norm=True, class_token=False, global_pool="avg"), 3, 64),
        ("deit_tiny_distilled_patch16_224", dict(img_size=64), 3, 64),
        ("vit_fmnist_patch4_28", {}, 1, 28),
    ],
)
def test_analytic_and_relaxed_equal_flop_counter(name: str, kwargs: dict[str, Any], channels: int,
                                                 size: int) -> None:
    """analytic == relaxed at the integer schedule == FlopCounterMode's count, on every model family."""
    model: Any = timm.create_model(name, **kwargs).eval()
    depth, num_patches = len(model.blocks), model.patch_embed.num_patches
    images = torch.randn(1, channels, size, size)
    schedules = [
        [0] * depth,
        constant_r(3, depth, num_patches),
        decreasing_r(4, depth, num_patches),
        resolve_schedule([1.0, 0.0, 0.7] + [0.3] * (depth - 3), num_patches, depth),
    ]
    shape = vit_shape(model)
    for r in schedules:
        apply_merging(model, r)
        counted = counted_gflops(model, images)
        analytic = analytic_cost(model, r, depth // 2)
        relaxed = relaxed_cost(shape, torch.tensor(r, dtype=torch.float64), depth // 2)
        assert analytic.total_gflops == pytest.approx(counted, rel=1e-12), r
        assert float(relaxed.total_gflops) == pytest.approx(analytic.total_gflops, rel=1e-12), r
        assert float(relaxed.edge_gflops) == pytest.approx(analytic.edge_gflops, rel=1e-12), r
        assert float(relaxed.tokens_sent) == analytic.tokens_sent


def test_bad_arguments_raise() -> None:
    model = tiny_vit()
    with pytest.raises(ValueError, match=r"r\[0\] = 3 is infeasible"):
        analytic_cost(model, [3, 0], 1)
    with pytest.raises(ValueError, match="1 entries but the model has 2 layers"):
        analytic_cost(model, [1], 1)
    with pytest.raises(ValueError, match="split"):
        analytic_cost(model, [0, 0], 3)


def test_count_flops_counts_attention() -> None:
    """torch 2.14's FlopCounterMode counts nothing for CPU fused attention; count_flops must."""
    model = tiny_vit()
    images = torch.randn(1, 1, 8, 8)
    # unmerged: patch 1024; per block (N = 5) qkv 1920 + attention 4*25*8 = 800 + proj 640 + MLP 2560; head 48
    assert count_flops(model, images) == 1024 + 2 * (1920 + 800 + 640 + 2560) + 48


def test_relaxed_cost_is_differentiable_and_batched() -> None:
    model: Any = timm.create_model("vit_fmnist_patch4_28")
    shape = ViTShape.of(model)
    assert shape == vit_shape(model)
    r = torch.tensor([[2.0] * 12, [24.0, 12.5] + [0.0] * 10], dtype=torch.float64, requires_grad=True)
    cost = relaxed_cost(shape, r, 3)
    assert cost.total_gflops.shape == (2,)
    exact = analytic_cost(model, [2] * 12, 3).total_gflops
    assert float(cost.total_gflops[0].detach()) == pytest.approx(exact, rel=1e-12)
    cost.total_gflops.sum().backward()
    assert r.grad is not None and bool((r.grad < 0).all())  # merging more always costs less
    with pytest.raises(ValueError, match="11 entries per schedule but the model has 12 layers"):
        relaxed_cost(shape, torch.zeros(11), 3)


def test_hybrid_vit_is_refused() -> None:
    """A ResNet stem is most of a hybrid ViT's compute (0.60 counted vs 0.22 analytic GFLOPs before)."""
    model: Any = timm.create_model("vit_small_r26_s32_224", img_size=64)
    with pytest.raises(NotImplementedError, match=r"vit_small_r26_s32_224: patch embedding HybridEmbed"):
        analytic_cost(model, None, 0)


def _threshold_counts(model: Any, image: torch.Tensor, split: int) -> list[int]:
    """Real tokens entering each block, then leaving the last, for one image (``record`` of both halves)."""
    from paretoctl.models.split import edge_forward, run_blocks
    from paretoctl.models.threshold import real_token_counts

    record: list[torch.Tensor] = []
    with torch.inference_mode():
        state = edge_forward(model, image, split, record=record)
        final = run_blocks(model, state, split, len(model.blocks), record)
    return [int(c[0]) for c in record] + [int(real_token_counts(final.size)[0])]


def test_threshold_cost_counts_the_matching_wherever_a_threshold_is_below_one() -> None:
    """Per image, cost_from_shape(r_b, matched=[t < 1]) equals FlopCounterMode on that image alone.

    The thresholds include blocks below 1 where an image merges nothing (the matching still runs)
    and blocks at 1 (no matching); several images exercise different per-image schedules.
    """
    from paretoctl.models.vit_fmnist import load_bundled_weights

    model: Any = timm.create_model("vit_fmnist_patch4_28").eval()
    load_bundled_weights(model)
    depth = len(model.blocks)
    thresholds = [0.9, 1.0, 0.999999, 0.8, 1.0, 0.95] + [0.9] * (depth - 6)
    apply_merging(model, thresholds=thresholds)
    shape = vit_shape(model)
    matched = [t < 1 for t in thresholds]
    gen = torch.Generator().manual_seed(0)
    coarse = [torch.randn(1, 1, k, k, generator=gen) for k in (2, 3, 4, 7)]
    images = torch.cat([torch.nn.functional.interpolate(c, size=(28, 28), mode="nearest") for c in coarse])
    schedules = []
    for image in images:
        counts = _threshold_counts(model, image[None], split=3)
        r = [a - b for a, b in itertools.pairwise(counts)]
        schedules.append(r)
        assert r[1] == r[4] == 0  # threshold 1 merges nothing
        report = cost_from_shape(shape, r, 3, matched=matched)
        assert report.total_gflops == pytest.approx(counted_gflops(model, image[None]), rel=1e-12), r
        assert report.tokens_sent == counts[3]
        plain = cost_from_shape(shape, r, 3)  # matching only where r > 0: too few FLOPs when some r_l = 0
        assert plain.total_gflops <= report.total_gflops
    assert len({tuple(r) for r in schedules}) > 1, "the images must merge differently"
    assert any(r_l == 0 and m for r in schedules for r_l, m in zip(r, matched, strict=True)), \
        "some image must match in a block without merging there"
    with pytest.raises(ValueError, match="matched has 2 entries"):
        cost_from_shape(shape, [0] * depth, 3, matched=[True, False])
