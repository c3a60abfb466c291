"""Model specs: a timm name plus a local checkpoint the test saves itself, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from paretoctl.models.loading import CheckpointError, ModelSpec, create_model


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_checkpoint_round_trip(tmp_path: Path, suffix: str) -> None:
    src = timm.create_model("test_vit", num_classes=7)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    model = create_model(ModelSpec("test_vit", checkpoint=str(path), kwargs={"num_classes": 7}))
    x = torch.randn(2, 3, 160, 160)
    assert torch.equal(model(x), src.eval()(x))


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        create_model(ModelSpec("test_vit", checkpoint=str(tmp_path / "nope.safetensors")))


def test_checkpoint_of_other_architecture(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_vit2").state_dict(), str(path))
    with pytest.raises(CheckpointError, match="does not fit the architecture"):
        create_model(ModelSpec("test_vit", checkpoint=str(path)))


def test_unknown_timm_name() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        create_model(ModelSpec("vit_does_not_exist"))


def test_bundled_architecture_registered() -> None:
    import paretoctl.models.vit_fmnist  # noqa: F401

    model = timm.create_model("vit_fmnist_patch4_28")
    assert len(model.blocks) == 12 and model.patch_embed.num_patches == 49
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
