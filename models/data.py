"""Data sets: Fashion-MNIST from local IDX files, and image folders for users' own data.

Fashion-MNIST is read straight from the IDX ``.gz`` files with gzip and numpy, so it works offline
from Debian's ``dataset-fashion-mnist`` package or from a directory that torchvision downloaded.
The 60k training images are split, with a fixed seed, into a training part and a validation part;
the official 10k test set is used only for reporting. Builds read their splits lazily
(:func:`fmnist_eval_splits`, :func:`image_folder`) through :func:`make_loader`, a DataLoader with
worker processes, so a split of any size is never held whole in memory as float tensors.
"""

from __future__ import annotations

import csv
import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LABELS_FILE = "labels.csv"
"""A flat image folder holds this CSV (``filename,label``) beside its images."""


class FmnistImages(Dataset):
    """Chosen Fashion-MNIST images kept as uint8 and normalised one at a time.

    Holds ``[N, 28, 28]`` uint8 (784 bytes an image), never the float copy of a split; each item is
    normalised exactly as :func:`to_tensor_images` does for a whole array, so batches are bitwise
    equal to slices of :func:`load_fmnist`'s tensors.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensor_images(self.images[i : i + 1])[0], torch.tensor(self.labels[i])

    def select(self, idx: np.ndarray) -> FmnistImages:
        """The images at ``idx``, in that order (a copy of just those images)."""
        return FmnistImages(self.images[idx], self.labels[idx])


def fmnist_eval_splits(root: str | Path | None = None, val_size: int = 5000,
                       seed: int = 0) -> tuple[FmnistImages, FmnistImages]:
    """(validation, test) as lazily normalised data sets: the same images as :func:`load_fmnist`."""
    tr_x, tr_y = load_fmnist_arrays("train", root)
    te_x, te_y = load_fmnist_arrays("test", root)
    _, va_idx = split_indices(len(tr_y), val_size, seed)
    return FmnistImages(tr_x[va_idx], tr_y[va_idx]), FmnistImages(te_x, te_y)


def subset(ds: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of at most ``limit`` items (all of them when limit is None).

    The chosen indices depend on ``len(ds)``, ``limit`` and ``seed`` only, and keep their order.
    """
    n = len(ds)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[idx] for t in ds.tensors))
    if isinstance(ds, FmnistImages):
        return ds.select(idx)
    return torch.utils.data.Subset(ds, idx.tolist())


def read_labels_csv(path: Path) -> list[tuple[str, str]]:
    """``(filename, label)`` rows of a labels CSV; a ``filename,label`` header line is skipped."""
    rows: list[tuple[str, str]] = []
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or (n == 1 and [c.strip().lower() for c in row[:2]] == ["filename", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}:{n}: expected 'filename,label', got {','.join(row)!r}")
            rows.append((row[0].strip(), row[1].strip()))
    if not rows:
        raise ValueError(f"{path}: no labelled images")
    return rows


class LabelledFolder(Dataset):
    """A flat folder of images whose labels come from a CSV (``filename,label``), read lazily.

    Labels are class indices when every label is an integer; otherwise class names, numbered in
    sorted order (as ``ImageFolder`` numbers its sub-folders). Only file names are held in memory.
    """

    def __init__(self, root: Path, labels_csv: Path, transform: Any = None) -> None:
        rows = read_labels_csv(labels_csv)
        missing = [f for f, _ in rows if not (root / f).is_file()]
        if missing:
            raise DataNotFoundError(f"{labels_csv} names {len(missing)} missing image(s) in {root}, e.g. {missing[0]}")
        names = [lbl for _, lbl in rows]
        self.classes: list[Any]
        if all(_is_int(lbl) for lbl in names):
            self.classes = sorted({int(lbl) for lbl in names})
            targets = [int(lbl) for lbl in names]
        else:
            self.classes = sorted(set(names))
            index = {c: i for i, c in enumerate(self.classes)}
            targets = [index[lbl] for lbl in names]
        self.root, self.transform = root, transform
        self.files = [f for f, _ in rows]
        self.targets = targets

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        with Image.open(self.root / self.files[i]) as im:
            img = im.convert("RGB")
        return (self.transform(img) if self.transform is not None else img), self.targets[i]


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def image_folder(root: str | Path, model: torch.nn.Module, labels: str | Path | None = None) -> Dataset:
    """An image data set with timm's eval transforms from ``model``'s pretrained config, read lazily.

    Two layouts: ImageNet's (one sub-folder per class, numbered in sorted order), or a flat folder
    with a labels CSV (``labels``, by default ``root/labels.csv``; see :class:`LabelledFolder`).
    """
    from timm.data import create_transform, resolve_data_config

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    cfg = resolve_data_config({}, model=model)
    transform = create_transform(**cfg, is_training=False)
    csv_path = Path(labels).expanduser() if labels is not None else root / LABELS_FILE
    if labels is not None or (csv_path.is_file() and not any(p.is_dir() for p in root.iterdir())):
        if not csv_path.is_file():
            raise DataNotFoundError(f"labels file {csv_path} does not exist")
        return LabelledFolder(root, csv_path, transform)
    from torchvision.datasets import ImageFolder

    if not any(p.is_dir() for p in root.iterdir()):
        raise DataNotFoundError(f"image folder {root} has no class sub-folders and no {LABELS_FILE}")
    return ImageFolder(str(root), transform=transform)


def make_loader(dataset: Dataset, batch_size: int, workers: int = 0, pin_memory: bool = False
                ) -> torch.utils.data.DataLoader:
    """A re-iterable, in-order loader of ``(images [B, ...], labels [B])`` batches.

    Items are read and decoded by ``workers`` processes (kept alive between passes), a few batches
    ahead, so a split is never held whole in memory. ``pin_memory`` speeds copies to a CUDA device.
    """
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory,
        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None,
    )
