"""The compiled path (torch.compile per schedule) gives the eager path's tokens, sizes and logits."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from paretoctl.models.compiled import CompiledMerging
from paretoctl.models.patch import apply_merging, set_schedule
from paretoctl.models.schedule import constant_r, resolve_schedule
from paretoctl.models.split import edge_forward, server_forward
from tests.models.vit_cases import make_images, make_model

# (name, create_model overrides, batch): the bundled model, test_vit and a deit_tiny-shaped model (fewer
# blocks: compilation time grows with depth), at batch 1 (the edge device) and above. Every graph
# compiles in seconds, so each case compiles three: edge and server at one schedule, the whole
# forward at another.
CASES: list[tuple[str, dict[str, Any], int]] = [
    ("vit_fmnist_patch4_28", {}, 1),
    ("test_vit", dict(img_size=64), 3),
    ("deit_tiny_patch16_224", dict(img_size=64, depth=3), 1),
]


@pytest.mark.parametrize(("name", "kwargs", "batch"), CASES, ids=[c[0] for c in CASES])
def test_compiled_equals_eager(name: str, kwargs: dict[str, Any], batch: int) -> None:
    model = make_model(name, kwargs)
    images = make_images(model, batch=batch)
    depth, patches = len(model.blocks), int(model.patch_embed.num_patches)
    apply_merging(model)
    fast = CompiledMerging(model)
    split = depth // 2
    with torch.inference_mode():
        set_schedule(model, resolve_schedule([0.8] * depth, patches, depth))
        eager_state = edge_forward(model, images, split)
        eager_logits = server_forward(model, eager_state, split)
        state = fast.edge_forward(images, split)
        torch.testing.assert_close(state.tokens, eager_state.tokens, atol=1e-5, rtol=0)
        assert torch.equal(state.size, eager_state.size)  # the same tokens merged: sizes are integers
        torch.testing.assert_close(fast.server_forward(state, split), eager_logits, atol=1e-5, rtol=0)
        set_schedule(model, constant_r(max(1, patches // 12), depth, patches))
        torch.testing.assert_close(fast(images), model(images), atol=1e-5, rtol=0)
        assert not torch.allclose(fast(images), eager_logits, atol=1e-3)  # the new schedule was used
    assert fast.cached == 3  # one function per (kind, schedule)
    assert all(seconds > 0 for seconds in fast.compile_seconds.values())


def test_cache_is_bounded_and_reuses_compiled_functions() -> None:
    model = apply_merging(make_model("test_vit", dict(img_size=32, depth=2)))
    images = make_images(model, batch=1)
    fast = CompiledMerging(model, max_entries=2)
    with torch.inference_mode():
        for r in ([1, 1], [2, 0], [1, 1], [0, 0]):
            set_schedule(model, r)
            torch.testing.assert_close(fast(images), model(images), atol=1e-5, rtol=0)
    # [1, 1] was compiled once (reused on its second use), [0, 0] pushed [2, 0] out
    assert len(fast.compile_seconds) == 3
    assert fast.cached == 2


def test_bad_split_is_refused_before_compiling() -> None:
    model = apply_merging(make_model("test_vit", dict(img_size=32, depth=2)))
    fast = CompiledMerging(model)
    with pytest.raises(ValueError, match=r"split must be an integer in 0\.\.2"):
        fast.edge_forward(make_images(model, batch=1), 3)
    assert fast.cached == 0
    with pytest.raises(ValueError, match="max_entries"):
        CompiledMerging(model, max_entries=0)
    with pytest.raises(TypeError, match="needs a timm VisionTransformer, not Linear"):
        CompiledMerging(torch.nn.Linear(2, 2))


def test_cache_hits_skip_guards_and_clear_or_check_guards_see_what_the_key_does_not() -> None:
    """The cache key is the contract: a change it does not name (here ``global_pool``) is not seen by a
    cache hit, whose guards are skipped; ``clear()`` or ``check_guards=True`` pick it up."""
    from paretoctl.models import compiled

    model = apply_merging(make_model("test_vit", dict(img_size=32, depth=2)), [1, 1])
    images = make_images(model, batch=2)
    fast, checked = CompiledMerging(model), CompiledMerging(model, check_guards=True)
    with torch.inference_mode():
        token_logits = model(images)
        torch.testing.assert_close(fast(images), token_logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(checked(images), token_logits, atol=1e-5, rtol=0)
        model.global_pool = "avg"
        avg_logits = model(images)
        assert not torch.allclose(avg_logits, token_logits, atol=1e-3)
        torch.testing.assert_close(checked(images), avg_logits, atol=1e-5, rtol=0)  # Dynamo's guards recompile
        if compiled._CAN_SKIP_GUARDS:
            torch.testing.assert_close(fast(images), token_logits, atol=1e-5, rtol=0)  # stale: guards skipped
        fast.clear()
        assert fast.cached == 0
        torch.testing.assert_close(fast(images), avg_logits, atol=1e-5, rtol=0)
