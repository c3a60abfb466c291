"""configs/deit_small_imagenet.yaml runs end to end: a random-init DeiT-S loaded from a local checkpoint,
on generated ImageNet-style folders (class sub-folders for validation, a flat folder with labels.csv
for test), with a tiny budget. Pretrained weights cannot be downloaded here; the ``pretrained: true``
line of the file stays, and the checkpoint takes precedence over it (as for an offline user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from paretoctl.models.identity import weights_sha256
from paretoctl.models.loading import file_sha256
from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import load_config
from paretoctl.service.schema import load_front
from tests.optimizer.conftest import ROOT

CONFIG = ROOT / "configs" / "deit_small_imagenet.yaml"
CLASSES = ("n01440764", "n01443537", "n01484850")


def write_images(folder: Path, per_class: int, seed: int, flat: bool) -> None:
    """``per_class`` random 224x224 RGB PNGs per class: in sub-folders, or flat with labels.csv."""
    rng = np.random.default_rng(seed)
    rows = ["filename,label"]
    for c, name in enumerate(CLASSES):
        sub = folder if flat else folder / name
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = rng.integers(0, 256, 3)  # a class-ish tint plus noise
            pixels = np.clip(base + rng.normal(0, 40, (224, 224, 3)), 0, 255).astype(np.uint8)
            fname = f"{name}_{i}.png"
            Image.fromarray(pixels).save(sub / fname)
            rows.append(f"{fname},{c}")
    if flat:
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_imagenet_example_config_builds_a_valid_front(tmp_path: Path) -> None:
    write_images(tmp_path / "val", per_class=4, seed=1, flat=False)
    write_images(tmp_path / "test", per_class=3, seed=2, flat=True)
    torch.manual_seed(7)
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    ckpt = tmp_path / "deit_small_random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))

    cfg = load_config(CONFIG, {
        "model.checkpoint": str(ckpt),
        "data.val_root": str(tmp_path / "val"), "data.test_root": str(tmp_path / "test"),
        "data.batch_size": 6, "data.val_limit": 6,
        "search.budget": 3, "search.initial": 3, "search.q": 3, "search.uniform_marks": False,
        "search.max_front_configs": 3, "runtime.loader_workers": 1, "runtime.device": "cpu",
    })
    assert cfg.model.pretrained  # the file's online path is kept; the local checkpoint wins
    out = tmp_path / "build"
    front = load_front(run_build(cfg, out))

    prov = front.provenance
    assert prov.model == "deit_small_patch16_224" and prov.num_patches == 196 and prov.num_prefix_tokens == 1
    assert prov.checkpoint_sha256 == file_sha256(ckpt)
    assert prov.model_identity.weights_sha256 == weights_sha256(model)
    assert prov.split_sizes.val == 6 and prov.split_sizes.test == 9  # val_limit of 12; all 9 flat test images
    assert prov.config["runtime"]["device"] == "cpu" and prov.config["runtime"]["executor"] == "local"
    assert [c.kind for c in prov.channels] == ["awgn", "rician-k4"]
    for entry in front.configs:
        assert entry.tokens_per_layer[0] == 197
        for points in entry.accuracy_test.values():
            assert [p.n_images for p in points] == [9] * 5
            # 9 images: every accuracy is a whole number of ninths
            assert all(abs(p.mean * 9 - round(p.mean * 9)) < 1e-9 for p in points)
