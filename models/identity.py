"""Which model a front was built for: fingerprints of a timm ViT's architecture and weights.

A merge schedule is only meaningful on the model it was measured on: the accuracies, FLOPs and
latencies of a front say nothing about another architecture, nor about the same architecture with
other weights. The build records both fingerprints in the front's provenance
(``ModelIdentity``), every decision carries them, and the SDK's ``apply_policy`` recomputes them on
the device's model and refuses a decision made for another one.

Conventions:
    * architecture: SHA-256 over the JSON list of ``[name, shape]`` for every entry of the model's
      ``state_dict`` (parameters and persistent buffers), in name order. Dtype and device are left
      out, so a float16 copy on a GPU has the architecture of its float32 original.
    * weights: SHA-256 over every ``state_dict`` tensor's values as contiguous little-endian float32
      bytes (integer buffers as int64), in name order. Casting to float32 first makes the fingerprint
      independent of the device and of a float32 -> float32 round trip; a float16 copy of a float32
      model has other values and so another fingerprint, which is right: its accuracies differ.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

__all__ = ["architecture_sha256", "model_identity", "weights_sha256"]

_CACHE_ATTR = "_paretoctl_weights_sha256"


def architecture_sha256(model: nn.Module) -> str:
    """Hex SHA-256 of the model's state-dict names and shapes (see the module docstring)."""
    layout = [[name, list(t.shape)] for name, t in sorted(model.state_dict().items())]
    return hashlib.sha256(json.dumps(layout, separators=(",", ":")).encode()).hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu")
    if t.is_floating_point():
        return t.to(torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()
    return t.to(torch.int64).contiguous().numpy().astype("<i8", copy=False).tobytes()


def weights_sha256(model: nn.Module) -> str:
    """Hex SHA-256 of the model's state-dict values (see the module docstring).

    The result is cached on the model, keyed by each tensor's storage pointer and in-place version
    counter, so calling it on every ``apply_policy`` costs a hash only after the weights change.
    """
    state = sorted(model.state_dict().items())
    key = tuple((name, t.data_ptr(), t._version) for name, t in state)
    cached: tuple[Any, str] | None = getattr(model, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256()
    for name, t in state:
        h.update(name.encode())
        h.update(_tensor_bytes(t))
    digest = h.hexdigest()
    object.__setattr__(model, _CACHE_ATTR, (key, digest))
    return digest


def model_identity(model: nn.Module, name: str) -> dict[str, Any]:
    """The ``ModelIdentity`` document of the front schema: ``{name, architecture_sha256, weights_sha256}``."""
    return {"name": name, "architecture_sha256": architecture_sha256(model), "weights_sha256": weights_sha256(model)}
