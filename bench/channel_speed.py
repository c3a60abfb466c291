"""Cost of the channel relative to one forward pass of the bundled model on the same batch.

The channel runs once per evaluated image and SNR during the search, so it must stay cheap next to
the model: the goal is below 5 % of a full forward pass of ``vit_fmnist_patch4_28`` (random weights;
only the time matters). The channel gets the token tensor the model would send unmerged, ``[B, 50, 128]``.
Repetitions are interleaved (model, then every channel, in turn) so that background load hits all
rows alike, and medians are reported. Prints a markdown table to stdout.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python bench/channel_speed.py [--batches 64 256] [--reps 15] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from paretoctl.channel_sim import make_channel

GOAL = 0.05
CHANNELS: list[tuple[str, str, dict[str, object]]] = [
    ("ideal", "ideal", {}),
    ("awgn", "awgn", {}),
    ("awgn, MMSE", "awgn", {"equaliser": "mmse"}),
    ("rayleigh, per symbol, ZF", "rayleigh", {}),
    ("rayleigh, per token, MMSE", "rayleigh", {"block": "token", "equaliser": "mmse"}),
    ("rayleigh, per image, ZF", "rayleigh", {"block": "image"}),
    ("rician K=4, per symbol, ZF", "rician", {"k_factor": 4.0}),
    ("rician K=4, random LOS phase, per token", "rician", {"k_factor": 4.0, "block": "token",
                                                           "los_phase": "random"}),
]


def _time(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench(batch: int, reps: int, device: torch.device) -> list[tuple[str, float, float]]:
    """Median seconds of the model and each channel at one batch size; rows (name, channel_s, model_s)."""
    import timm

    import paretoctl.models.vit_fmnist  # noqa: F401  (registers the model with timm)

    model = timm.create_model("vit_fmnist_patch4_28").eval().to(device)
    images = torch.randn(batch, 1, 28, 28, device=device)
    tokens = torch.randn(batch, 50, 128, device=device)
    snr = torch.linspace(0.0, 20.0, batch, device=device)  # per-sample SNR, the general case
    generator = torch.Generator(device).manual_seed(0)
    channels = {name: make_channel(kind, **params) for name, kind, params in CHANNELS}
    jobs: dict[str, Callable[[], object]] = {"model": lambda: model(images)}
    for name, channel in channels.items():
        jobs[name] = lambda channel=channel: channel(tokens, snr, generator=generator)  # type: ignore[misc]
    times: dict[str, list[float]] = {name: [] for name in jobs}
    with torch.inference_mode():
        for fn in jobs.values():  # warm up
            fn()
        for _ in range(reps):
            for name, fn in jobs.items():
                times[name].append(_time(fn, device))
    model_s = statistics.median(times["model"])
    return [(name, statistics.median(times[name]), model_s) for name in channels]


def main() -> None:
    """Parse arguments, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{args.reps} interleaved repetitions, medians; tokens [B, 50, 128] float32, per-sample SNR\n")
    print("| batch | channel | channel ms | model forward ms | channel / model | < 5 % |")
    print("| ---: | --- | ---: | ---: | ---: | :---: |")
    worst = 0.0
    for batch in args.batches:
        for name, channel_s, model_s in bench(batch, args.reps, device):
            ratio = channel_s / model_s
            worst = max(worst, ratio)
            print(f"| {batch} | {name} | {1e3 * channel_s:.2f} | {1e3 * model_s:.1f} | {100 * ratio:.2f} % | "
                  f"{'yes' if ratio < GOAL else '**no**'} |", flush=True)
    print(f"\nworst channel / model ratio: {100 * worst:.2f} % (goal < {100 * GOAL:.0f} %)")


if __name__ == "__main__":
    main()
