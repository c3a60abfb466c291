"""Data sets: Fashion-MNIST from local IDX files, and image folders for users' own data.

Fashion-MNIST is read straight from the IDX ``.gz`` files with gzip and numpy, so it works offline
from Debian's ``dataset-fashion-mnist`` package or from a directory that torchvision downloaded.
The 60k training images are split, with a fixed seed, into a training part and a validation part;
the official 10k test set is used only for reporting.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

FMNIST_APT_PACKAGE = "dataset-fashion-mnist"
FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Per-pixel statistics of the Fashion-MNIST training set (after scaling to [0, 1]).
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEFAULT_SEARCH_DIRS: tuple[Path, ...] = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path("data/FashionMNIST/raw"),
    Path("~/.cache/paretoctl/FashionMNIST/raw").expanduser(),
)


class DataNotFoundError(FileNotFoundError):
    """The requested data set is not on disk; the message says where we looked and how to get it."""


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short to be an IDX file")
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def _find_file(stem: str, dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        for name in (f"{stem}.gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def find_fmnist_dir(root: str | Path | None = None) -> Path:
    """Locate a directory holding the four Fashion-MNIST IDX files.

    Accepts the Debian layout, torchvision's ``FashionMNIST/raw`` layout, or its parent.
    """
    candidates: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        candidates += [r, r / "raw", r / "FashionMNIST" / "raw"]
    else:
        candidates += list(DEFAULT_SEARCH_DIRS)
    for d in candidates:
        if all(_find_file(stem, [d]) for pair in _FILES.values() for stem in pair):
            return d
    searched = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"Fashion-MNIST IDX files not found. Searched: {searched}. Install them with "
        f"`apt-get install -y {FMNIST_APT_PACKAGE}` (as root, after apt-get update), or download "
        "torchvision's FashionMNIST into one of those directories."
    )


def load_fmnist_arrays(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) for ``split`` in {'train', 'test'}."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = find_fmnist_dir(root)
    img_stem, lbl_stem = _FILES[split]
    images = read_idx(_find_file(img_stem, [d]))  # type: ignore[arg-type]
    labels = read_idx(_find_file(lbl_stem, [d])).astype(np.int64)  # type: ignore[arg-type]
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{d}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed, seeded split of range(n) into (train, validation) indices."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be in (0, {n}), got {val_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> normalised float32 [N, 1, 28, 28]."""
    x = torch.from_numpy(np.array(images, copy=True)).float().div_(255.0).unsqueeze(1)
    return (x - FMNIST_MEAN) / FMNIST_STD


@dataclass(frozen=True)
class FmnistSplits:
    """The three Fashion-MNIST splits, as normalised tensors held in memory (about 200 MB)."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset


def load_fmnist(root: str | Path | None = None, val_size: int = 5000, seed: int = 0) -> FmnistSplits:
    """Load Fashion-MNIST with a seeded validation split carved out of the training images."""
    tr_x, tr_y = load_fmnist_arrays("train", root)
    te_x, te_y = load_fmnist_arrays("test", root)
    tr_idx, va_idx = split_indices(len(tr_y), val_size, seed)
    xs = to_tensor_images(tr_x)
    ys = torch.from_numpy(tr_y)
    return FmnistSplits(
        train=TensorDataset(xs[tr_idx], ys[tr_idx]),
        val=TensorDataset(xs[va_idx], ys[va_idx]),
        test=TensorDataset(to_tensor_images(te_x), torch.from_numpy(te_y)),
    )


def subset(ds: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of at most ``limit`` items (all of them when limit is None)."""
    n = len(ds)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[idx] for t in ds.tensors))
    return torch.utils.data.Subset(ds, idx.tolist())


def image_folder(root: str | Path, model: torch.nn.Module) -> Dataset:
    """A class-per-folder data set with timm's eval transforms from ``model``'s pretrained config."""
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    cfg = resolve_data_config({}, model=model)
    return ImageFolder(str(root), transform=create_transform(**cfg, is_training=False))
