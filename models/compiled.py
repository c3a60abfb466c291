"""Compiled forward passes of a token-merging ViT, one per schedule (``torch.compile``, Inductor).

Why: at batch 1 on a CPU every eager operator costs a few microseconds of dispatch whatever its size,
and a merge (matching plus size-weighted averages) is some 35 small operators per block, about as
long as the matrix products it saves on a small model (measured in ``bench/merge_speed.py``).
Inductor fuses the element-wise work of the whole forward (merges, layer norms, GELU, residuals) into
a few generated C++ kernels and calls the matrix products directly, so the merged model's time
follows its FLOPs again.

The cost is compilation: tens of seconds per schedule on a small CPU. A compiled forward is
specialised to one schedule and one input shape (``dynamic=False``; the token counts are then
constants), so :class:`CompiledMerging` keeps a bounded LRU of compiled functions keyed by what they
were specialised on and reports the time each compilation took. Each entry gets its own code object,
so entries never share Dynamo's per-function recompile limit or walk each other's guards.

Guards: Dynamo checks a compiled function's guards (every parameter, module attribute and input it
specialised on) before each call, 0.2-0.5 ms at batch 1 on the bundled model, a tenth of the whole
forward. The cache key here already names everything a compiled entry is specialised on that
callers change (schedule, shapes, dtype, device, grad and inference mode, train/eval, threads, the
weights' dtype and device), and each entry is its own code object holding one graph, so after an
entry's first call (full guards, compilation) its calls skip guard evaluation
(``torch.compiler.set_stance(skip_guard_eval_unsafe=True)``, torch >= 2.6). Changing what the key does
not cover (replacing a module or a parameter tensor, ``global_pool``) needs :meth:`CompiledMerging.clear`,
or ``check_guards=True`` to keep Dynamo's checks on every call. In-place weight updates
(``load_state_dict``, optimiser steps) are safe: parameters are graph inputs, not constants.

Exactness: the compiled graph runs the same operators in the same order as the eager path
(:mod:`paretoctl.models.patch`, :mod:`paretoctl.models.split`); Inductor may reassociate float sums,
which moves values by about 1e-7 (tests hold it to 1e-5 on tokens, sizes and logits).

Example:
    >>> fast = CompiledMerging(apply_merging(model, r))    # doctest: +SKIP
    >>> logits = fast(images)                               # compiles on the first call, then reuses
    >>> state = fast.edge_forward(images, split=4)          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from paretoctl.models.patch import get_schedule
from paretoctl.models.split import TRACE_SOURCE_ATTR, TokenState, check_split, edge_forward, server_forward

__all__ = ["CompiledMerging"]

_serial = itertools.count()

_CAN_SKIP_GUARDS = "skip_guard_eval_unsafe" in inspect.signature(torch.compiler.set_stance).parameters \
    if hasattr(torch.compiler, "set_stance") else False


def _without_guards() -> contextlib.AbstractContextManager[Any]:
    """Run a compiled function without evaluating Dynamo's guards (see the module docstring)."""
    if _CAN_SKIP_GUARDS:
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)  # type: ignore[no-any-return]
    return contextlib.nullcontext()


def _logits(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    return model(images)


def _edge(model: VisionTransformer, images: torch.Tensor, split: int) -> tuple[torch.Tensor, ...]:
    state = edge_forward(model, images, split)
    return (state.tokens, state.size) if state.source is None else (state.tokens, state.size, state.source)


def _server(model: VisionTransformer, tokens: torch.Tensor, size: torch.Tensor, split: int) -> torch.Tensor:
    return server_forward(model, TokenState(tokens=tokens, size=size), split)


def _fresh_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object, so Dynamo caches its compilations apart."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_serial)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class CompiledMerging:
    """Compiled ``forward``, ``edge_forward`` and ``server_forward`` of one (patched or plain) timm ViT.

    The model's schedule is read at every call (``set_schedule`` works as usual); a schedule, input
    shape, dtype, split, grad mode, train/eval state or thread count not seen before compiles a new
    function, and the least recently used one is dropped beyond ``max_entries``.

    Args:
        model: a timm ``VisionTransformer``, usually patched by
            :func:`paretoctl.models.patch.apply_merging`.
        max_entries: compiled functions kept (each holds its generated code and constants).
        check_guards: evaluate Dynamo's guards on every call, not only an entry's first (slower by
            0.2-0.5 ms a call at batch 1; for callers that replace modules or parameters in place).
        **compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune-no-cudagraphs"``).

    Attributes:
        compile_seconds: wall seconds of the first call of each compiled function (compilation plus
            one run), in compilation order, keyed like the cache.
    """

    def __init__(self, model: nn.Module, *, max_entries: int = 8, check_guards: bool = False,
                 **compile_kwargs: Any) -> None:
        if not isinstance(model, VisionTransformer):
            raise TypeError(f"CompiledMerging needs a timm VisionTransformer, not {type(model).__name__}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.model: VisionTransformer = model
        self.max_entries = max_entries
        self.check_guards = check_guards
        self.compile_kwargs: dict[str, Any] = {"fullgraph": True, "dynamic": False, **compile_kwargs}
        self.compile_seconds: dict[Hashable, float] = {}
        self._cache: OrderedDict[Hashable, Callable[..., Any]] = OrderedDict()

    def _key(self, kind: str, split: int | None, *tensors: torch.Tensor) -> Hashable:
        model = self.model
        weights = next(model.parameters())  # model.to(dtype/device) moves it with every other
        return (kind, split, get_schedule(model), bool(getattr(model, TRACE_SOURCE_ATTR, False)),
                tuple((tuple(t.shape), t.dtype, t.device) for t in tensors), weights.dtype, weights.device,
                torch.is_grad_enabled(), torch.is_inference_mode_enabled(), model.training,
                torch.get_num_threads())  # Inductor's CPU kernels bake in the thread count

    def _call(self, fn: Callable[..., Any], key: Hashable, *args: Any) -> Any:
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
            with contextlib.nullcontext() if self.check_guards else _without_guards():
                return compiled(self.model, *args)
        compiled = torch.compile(_fresh_function(fn), **self.compile_kwargs)
        self._cache[key] = compiled
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        start = time.perf_counter()
        out = compiled(self.model, *args)
        self.compile_seconds[key] = time.perf_counter() - start
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``model(images)``: images ``[B, C, H, W]`` to logits ``[B, classes]``."""
        return self._call(_logits, self._key("forward", None, images), images)  # type: ignore[no-any-return]

    def edge_forward(self, images: torch.Tensor, split: int) -> TokenState:
        """:func:`paretoctl.models.split.edge_forward`, compiled.

        Raises:
            ValueError: ``split`` is out of range (checked before anything compiles).
        """
        check_split(self.model, split)
        out = self._call(_edge, self._key("edge", split, images), images, split)
        return TokenState(tokens=out[0], size=out[1], source=out[2] if len(out) > 2 else None)

    def server_forward(self, state: TokenState, split: int) -> torch.Tensor:
        """:func:`paretoctl.models.split.server_forward`, compiled (the source matrix is not needed).

        Raises:
            ValueError: ``split`` is out of range (checked before anything compiles).
        """
        check_split(self.model, split)
        key = self._key("server", split, state.tokens, state.size)
        return self._call(_server, key, state.tokens, state.size, split)  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Drop every compiled function (after changing the model in a way the cache key does not see)."""
        self._cache.clear()

    @property
    def cached(self) -> int:
        """Compiled functions currently held."""
        return len(self._cache)
