"""Checks a build config against the machine before any model or data is loaded (well under a second).

What ``paretoctl.optimizer.config`` cannot see from the YAML alone: that the device profile, checkpoint
and data folders exist, that the timm name is known and ``model.kwargs`` fit it, that the split index
is within the model's depth (the model is built on the ``meta`` device: no weights are allocated or
read), and that the validation images are not ones the bundled model was trained on. Each failure is
a :class:`paretoctl.optimizer.config.ConfigError` of one line naming the field.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretoctl.optimizer.config import BuildConfig, ConfigError


@dataclass(frozen=True)
class Preflight:
    """What the checks learnt: the device profile and the model's depth (number of blocks)."""

    profile: Any
    depth: int


def split_index_error(split: int, depth: int) -> str | None:
    """Why ``split`` is not a valid edge/server split of a ``depth``-block model, or None if it is.

    The one definition of the rule: blocks ``[0, split)`` run on the edge, so ``0 <= split <= depth``.
    """
    if not 0 <= split <= depth:
        return f"{split} is outside 0..{depth} (the model has {depth} blocks)"
    return None


def _fail(source: str, field: str, message: str) -> ConfigError:
    return ConfigError(f"invalid build config {source}: {field}: {' '.join(str(message).split())}")


def model_depth(cfg: BuildConfig, source: str) -> int:
    """Build the configured model on the meta device and return its depth; errors name ``model.*``."""
    import timm
    import torch

    from paretoctl.models.loading import ModelSpec, create_model

    m = cfg.model
    if m.name != "bundled" and not timm.is_model(m.name):
        raise _fail(source, "model.name", f"{m.name!r} is not a timm model name (nor 'bundled')")
    if m.checkpoint is not None and not Path(m.checkpoint).is_file():
        raise _fail(source, "model.checkpoint", f"file not found: {m.checkpoint}")
    # The bundled spec loads its shipped weights (a small file) so that kwargs that change its shape
    # are refused here; any other model is built without weights.
    spec = ModelSpec(m.name, None, False, dict(m.kwargs))
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # copying into meta tensors is a no-op, by design
            model = create_model(spec)
    except (TypeError, ValueError, RuntimeError, KeyError, AssertionError) as err:
        raise _fail(source, "model.kwargs", f"{m.name} cannot be built with {m.kwargs}: {err}") from None
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise _fail(source, "model.name", f"{m.name} is not a ViT with .blocks (token merging needs one)")
    return len(blocks)


def fmnist_train_size(root: str | None) -> int:
    """Number of Fashion-MNIST training images, read from the IDX header only."""
    from paretoctl.models.data import find_fmnist_dir

    d = find_fmnist_dir(root)
    for name in ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"):
        path = d / name
        if path.is_file():
            with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
                header = fh.read(8)
            return int(struct.unpack(">I", header[4:8])[0])
    raise FileNotFoundError(f"no training labels in {d}")


def leaked_validation_images(cfg: BuildConfig, card: dict[str, Any], n_train: int) -> int:
    """How many of the build's validation images the bundled model was trained on.

    The model card records the split the model was trained with (``val_size``, ``split_seed``: the
    training images are the rest of the 60k). The build evaluates ``val_limit`` of its own validation
    split; those indices are recomputed here exactly as ``paretoctl.models.data`` draws them.
    """
    import numpy as np

    from paretoctl.models.data import split_indices

    d = cfg.data
    card_train, _ = split_indices(n_train, int(card["val_size"]), int(card["split_seed"]))
    _, build_val = split_indices(n_train, d.val_size, d.split_seed)
    if d.val_limit is not None and d.val_limit < len(build_val):
        build_val = build_val[np.sort(np.random.default_rng(d.split_seed).permutation(len(build_val))[: d.val_limit])]
    return int(np.intersect1d(card_train, build_val).size)


def check_data(cfg: BuildConfig, source: str) -> None:
    """Data folders exist, ``val_size`` fits, and (bundled model) no validation image was trained on."""
    from paretoctl.models.data import DataNotFoundError
    from paretoctl.models.loading import bundled_model_card

    d = cfg.data
    if d.kind == "image_folder":
        for field in ("val_root", "test_root"):
            folder = getattr(d, field)
            if not Path(folder).is_dir():
                raise _fail(source, f"data.{field}", f"folder not found: {folder}")
        return
    try:
        n_train = fmnist_train_size(d.root)
    except (DataNotFoundError, FileNotFoundError, OSError) as err:
        raise _fail(source, "data.root", str(err)) from None
    if not 0 < d.val_size < n_train:
        raise _fail(source, "data.val_size", f"must be in (0, {n_train}), got {d.val_size}")
    card = bundled_model_card() if cfg.model.name == "bundled" and cfg.model.checkpoint is None else {}
    if "val_size" in card and "split_seed" in card:
        leaked = leaked_validation_images(cfg, card, n_train)
        if leaked:
            raise _fail(
                source, "data.split_seed",
                f"{leaked} of the validation images were used to train the bundled model (its model card: "
                f"val_size {card['val_size']}, split_seed {card['split_seed']}); use those values",
            )


def threshold_link_error(cfg: BuildConfig) -> str | None:
    """Why ``cfg``'s search space cannot run on its channels, or None if it can.

    Threshold merging sends padded batches (each image keeps its own number of tokens), which a
    digital link refuses (``paretoctl.channel_sim.digital``: its quantiser range and airtime are per
    transmission), so ``search.space: thresholds`` needs analog channels only.
    """
    if cfg.search.space != "thresholds":
        return None
    digital = [c.label for c in cfg.channel.kinds if c.params.get("link") == "digital"]
    if not digital:
        return None
    return (f"thresholds cannot be searched with a digital link ({', '.join(digital)} in channel.kinds): "
            "a digital link refuses the padded batches of input-adaptive merging; use analog channels "
            "or search.space: proportions")


def preflight(cfg: BuildConfig, source: str = "<config>") -> Preflight:
    """Run every check that needs no model weights or images; raises ``ConfigError`` on the first failure."""
    from paretoctl.optimizer.runtime import runtime_error
    from paretoctl.service.latency import ProfileError, load_profile

    link_problem = threshold_link_error(cfg)
    if link_problem:
        raise _fail(source, "search.space", link_problem)
    runtime_problem = runtime_error(cfg.runtime)  # an absent GPU or Ray
    if runtime_problem:
        raise _fail(source, *runtime_problem)
    try:
        profile = load_profile(cfg.device)
    except ProfileError as err:
        raise _fail(source, "device", str(err)) from None
    depth = model_depth(cfg, source)
    problem = split_index_error(cfg.split_index, depth)
    if problem:
        raise _fail(source, "split_index", problem)
    check_data(cfg, source)
    return Preflight(profile, depth)
