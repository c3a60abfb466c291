"""The runtime section: device resolution, refusals before anything loads, precision, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paretoctl.models.data import make_loader
from paretoctl.optimizer.build import run_build
from paretoctl.optimizer.config import ConfigError, load_config, parse_config
from paretoctl.optimizer.evaluator import Evaluator
from paretoctl.optimizer.executor import load_model, make_evaluator, open_split
from paretoctl.optimizer.runtime import RuntimeSection, device_problem, resolve_device, runtime_error
from tests.optimizer.conftest import smoke_config_text

NO_CUDA = not torch.cuda.is_available()


def _config(tmp_path: Path, runtime: str = "", **overrides: object):  # type: ignore[no-untyped-def]
    path = tmp_path / "cfg.yaml"
    path.write_text(smoke_config_text() + runtime)
    return load_config(path, dict(overrides))


@pytest.mark.parametrize(("runtime", "field"), [
    ("device: gpu", "runtime.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("device: cuda:x", "runtime.device"),
    ("precision: fp8", "runtime.precision"),
    ("executor: dask", "runtime.executor"),
    ("threads: 0", "runtime.threads"),
    ("ray_workers: 0", "runtime.ray_workers"),
    ("process_workers: 0", "runtime.process_workers"),
    ("process_threads: 0", "runtime.process_threads"),
    ("gpus: 1", "runtime.gpus"),
])
def test_bad_runtime_values_name_the_field(runtime: str, field: str) -> None:
    raw = {"channel": {"kinds": [{"kind": "awgn"}], "snr_grid_db": [0]}, "split_index": 1,
           "runtime": dict([map(str.strip, runtime.split(":", 1))])}  # type: ignore[list-item]
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_runtime_defaults_are_recorded_in_the_canonical_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.canonical()["runtime"] == {
        "device": "auto", "precision": "fp32", "threads": None, "loader_workers": 0, "server_chunk": 64,
        "executor": "local", "process_workers": None, "process_threads": 1, "ray_address": None,
        "ray_workers": None, "ray_cpus_per_worker": 1,
        "ray_gpus_per_worker": 0.0,
    }


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert device_problem("auto") is None and device_problem("cpu") is None


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_anything_loads(tmp_path: Path) -> None:
    assert "torch sees no CUDA device" in (device_problem("cuda:1") or "")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    cfg = _config(tmp_path, "runtime:\n  device: cuda\n")
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run_build(cfg, out)
    assert "runtime.device: cuda requested but torch sees no CUDA device" in str(err.value)
    assert not out.exists()  # refused before the directory, the model or the data were touched


def test_ray_address_needs_the_ray_executor() -> None:
    assert runtime_error(RuntimeSection(ray_address="10.0.0.1:6379")) == (
        "runtime.ray_address", "is only used with runtime.executor: ray")
    assert runtime_error(RuntimeSection(device="cpu", precision="bf16")) is None


def test_streamed_batches_measure_what_in_memory_batches_do(tmp_path: Path) -> None:
    """A DataLoader (with a worker process) and a list of the same batches give identical accuracies."""
    cfg = _config(tmp_path, "runtime:\n  device: cpu\n  loader_workers: 1\n", **{"data.val_limit": 60,
                                                                                  "data.batch_size": 25})
    model = load_model(cfg)
    streamed = make_evaluator(cfg, "val", model)
    assert isinstance(streamed.batches, torch.utils.data.DataLoader) and streamed.batches.num_workers == 1
    held = list(make_loader(open_split(cfg, "val", model), 25))
    assert [len(y) for _, y in held] == [25, 25, 10]
    in_memory = Evaluator(model, held, cfg.channel.kinds, cfg.channel.snr_grid_db, cfg.split_index,
                          seed=cfg.search.seed, device="cpu")
    r = [2] * 12
    a, b = streamed.evaluate(r), in_memory.evaluate(r)
    assert a.accuracy == b.accuracy and a.accuracy["awgn"][0].n_images == 60
    assert streamed.evaluate(r).accuracy == a.accuracy  # re-iterated: the same images every evaluation


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    """bf16 runs the model's layers in bfloat16 (weights stay float32) and moves accuracy by a few images at most."""
    cfg = _config(tmp_path, **{"data.val_limit": 100, "data.batch_size": 50})
    model = load_model(cfg)
    fp32 = make_evaluator(cfg, "val", model).evaluate([0] * 12)
    half = Evaluator(model, make_loader(open_split(cfg, "val", model), 50), cfg.channel.kinds,
                     cfg.channel.snr_grid_db, cfg.split_index, seed=cfg.search.seed, precision="bf16")
    seen: list[torch.dtype] = []
    hook = model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    low = half.evaluate([0] * 12)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for p32, p16 in zip(fp32.accuracy["awgn"], low.accuracy["awgn"], strict=True):
        assert abs(p32.mean - p16.mean) <= 0.05  # 5 of 100 images
