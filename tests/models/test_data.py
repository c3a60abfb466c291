"""Fashion-MNIST from local IDX files: the reader, the seeded split, and clear errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from paretoctl.models.data import DataNotFoundError, find_fmnist_dir, load_fmnist, read_idx, split_indices


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
