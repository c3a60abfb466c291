"""Data: Fashion-MNIST from IDX files, image folders (class sub-folders or labels.csv), streaming loaders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paretoctl.models.data import (
    DataNotFoundError,
    FmnistImages,
    LabelledFolder,
    find_fmnist_dir,
    fmnist_eval_splits,
    image_folder,
    load_fmnist,
    make_loader,
    read_idx,
    split_indices,
    subset,
)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))


def test_read_idx_round_trip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    _write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), arr)


def test_read_idx_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_torchvision_layout_and_split(tmp_path: Path) -> None:
    _fake_fmnist(tmp_path / "FashionMNIST" / "raw")
    assert find_fmnist_dir(tmp_path) == tmp_path / "FashionMNIST" / "raw"
    splits = load_fmnist(tmp_path, val_size=5, seed=1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, 10)
    tr, va = split_indices(30, 5, seed=1)
    assert set(tr).isdisjoint(va) and len(set(tr) | set(va)) == 30
    assert np.array_equal(split_indices(30, 5, seed=1)[1], va)  # seeded: same split every time


def test_missing_data_names_package_and_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        find_fmnist_dir(tmp_path / "nowhere")
    assert "dataset-fashion-mnist" in str(err.value) and "nowhere" in str(err.value)


def test_real_debian_data_shapes() -> None:
    try:
        splits = load_fmnist()
    except DataNotFoundError:
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    x, y = splits.test[0]
    assert tuple(x.shape) == (1, 28, 28) and 0 <= int(y) < 10


# --- lazy splits, image folders and streaming ------------------------------------------------------


def test_lazy_fmnist_splits_equal_the_in_memory_tensors(tmp_path: Path) -> None:
    _fake_fmnist(tmp_path / "fm")
    eager = load_fmnist(tmp_path / "fm", val_size=5, seed=1)
    val, test = fmnist_eval_splits(tmp_path / "fm", val_size=5, seed=1)
    assert isinstance(val, FmnistImages) and val.images.dtype == np.uint8  # 784 bytes an image, no floats
    for lazy, ref in ((val, eager.val), (test, eager.test)):
        xs, ys = zip(*(lazy[i] for i in range(len(lazy))), strict=True)
        assert torch.equal(torch.stack(xs), ref.tensors[0]) and torch.equal(torch.stack(ys), ref.tensors[1])
    # the seeded subset picks the same images from both forms, and again on a second call
    for a, b in ((subset(val, 3, seed=4), subset(eager.val, 3, seed=4)), (subset(val, 3, 4), subset(val, 3, 4))):
        assert torch.equal(torch.stack([a[i][0] for i in range(3)]), torch.stack([b[i][0] for i in range(3)]))


def _pngs(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        names.append(f"img_{i:04d}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / names[-1])
    return names


@pytest.fixture(scope="module")
def tiny_vit() -> torch.nn.Module:
    import timm

    return timm.create_model("test_vit", pretrained=False).eval()


def test_flat_folder_with_labels_csv(tmp_path: Path, tiny_vit: torch.nn.Module) -> None:
    names = _pngs(tmp_path, 4)
    (tmp_path / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{lbl}\n" for n, lbl in
                                                                      zip(names, ["7", "2", "7", "0"], strict=True)))
    ds = image_folder(tmp_path, tiny_vit)
    assert isinstance(ds, LabelledFolder) and len(ds) == 4
    assert [ds[i][1] for i in range(4)] == [7, 2, 7, 0]  # integer labels are class indices as written
    x, _ = ds[0]
    assert tuple(x.shape) == (3, 160, 160)  # timm's eval transform for test_vit
    # class names are numbered in sorted order, as ImageFolder numbers sub-folders
    (tmp_path / "names.csv").write_text("".join(f"{n},{c}\n" for n, c in zip(names, "dcad", strict=True)))
    named = image_folder(tmp_path, tiny_vit, labels=tmp_path / "names.csv")
    assert named.classes == ["a", "c", "d"] and named.targets == [2, 1, 0, 2]  # type: ignore[attr-defined]


def test_labels_csv_errors_name_the_line_or_file(tmp_path: Path, tiny_vit: torch.nn.Module) -> None:
    names = _pngs(tmp_path, 2)
    (tmp_path / "labels.csv").write_text(f"{names[0]},1\n{names[1]}\n")
    with pytest.raises(ValueError, match=r"labels\.csv:2: expected 'filename,label'"):
        image_folder(tmp_path, tiny_vit)
    (tmp_path / "labels.csv").write_text(f"{names[0]},1\nmissing.png,0\n")
    with pytest.raises(DataNotFoundError, match=r"1 missing image.*missing\.png"):
        image_folder(tmp_path, tiny_vit)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"no class sub-folders and no labels\.csv"):
        image_folder(tmp_path, tiny_vit)


def test_class_subfolders_and_the_loader(tmp_path: Path, tiny_vit: torch.nn.Module) -> None:
    for c, name in enumerate(("b_cls", "a_cls")):
        _pngs(tmp_path / name, 3, seed=c)
    ds = image_folder(tmp_path, tiny_vit)
    loader = make_loader(ds, batch_size=4, workers=1)
    passes = [[(x.clone(), y.clone()) for x, y in loader] for _ in range(2)]  # re-iterable, workers kept
    assert [tuple(x.shape) for x, _ in passes[0]] == [(4, 3, 160, 160), (2, 3, 160, 160)]
    assert torch.cat([y for _, y in passes[0]]).tolist() == [0, 0, 0, 1, 1, 1]  # a_cls = 0, in file order
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*passes, strict=True))


MEMORY_SCRIPT = r"""
import json, sys, timm, torch
from paretoctl.models.data import image_folder, make_loader
from paretoctl.optimizer.config import ChannelSpec
from paretoctl.optimizer.evaluator import Evaluator
torch.set_num_threads(1)
root, mode = sys.argv[1], sys.argv[2]
model = timm.create_model("test_vit", pretrained=False).eval()
channels, grid = [ChannelSpec(kind="awgn")], [0.0, 10.0]
warm = [(torch.randn(16, 3, 160, 160), torch.zeros(16, dtype=torch.long))]
Evaluator(model, warm, channels, grid, split=3).evaluate([0] * 6)  # allocator pools, lazy imports
def status(key):
    return next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith(key + ":"))
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM, the peak resident set, to the current one
rss_before = status("VmRSS")
batches = make_loader(image_folder(root, model), batch_size=16)
if mode == "materialise":  # what builds did before: the whole split as tensors
    batches = [(x, y) for x, y in batches]
out = Evaluator(model, batches, channels, grid, split=3).evaluate([0] * 6)
print(json.dumps({"rss_before": rss_before, "peak": status("VmHWM"), "n": out.accuracy["awgn"][0].n_images}))
"""


def _peak_rss(root: Path, mode: str) -> tuple[int, int]:
    """(peak RSS growth of a fresh process during one evaluation of ``root``, in bytes; images evaluated)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(root), mode], capture_output=True, text=True,
                         env=env, check=True)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    return int(doc["peak"]) - int(doc["rss_before"]), int(doc["n"])


@pytest.mark.slow
def test_streaming_peak_memory_does_not_grow_with_the_split(tmp_path: Path) -> None:
    """Peak RSS evaluating 64 vs 512 images (test_vit, 160x160 inputs: 300 KB an image as float32).

    Holding the 448 extra images would cost 138 MB; streamed, the bound is 25 MB (allocator noise).
    The materialised path is measured too, to show the measurement sees such growth.
    """
    small, big = tmp_path / "small", tmp_path / "big"
    for folder, n in ((small, 64), (big, 512)):
        names = _pngs(folder, n, size=48, seed=n)
        (folder / "labels.csv").write_text("".join(f"{name},{i % 10}\n" for i, name in enumerate(names)))
    (p_small, n_small), (p_big, n_big) = _peak_rss(small, "stream"), _peak_rss(big, "stream")
    assert (n_small, n_big) == (64, 512)
    held = 448 * 3 * 160 * 160 * 4
    assert p_big - p_small < 25 * 2**20, f"streaming peak grew by {(p_big - p_small) / 2**20:.1f} MB"
    m_small, m_big = _peak_rss(small, "materialise")[0], _peak_rss(big, "materialise")[0]
    assert m_big - m_small > 0.8 * held  # the old, materialising path grows by the held images
