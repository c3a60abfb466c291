"""Wall-clock speed of token merging against the unmerged model, side by side in one run.

For each model and batch size, the unmerged model and the merged model (one patched copy whose
schedule is switched with ``set_schedule``) are timed in interleaved rounds: every round times each
configuration once, in a rotated order, so slow drifts of the machine (other jobs, thermal limits)
hit all of them alike. After a warm-up, the median over rounds is reported. Each measurement repeats
the forward pass enough times to last about ``--min-time`` seconds, so batch 1 is not timer noise.

Columns: FLOPs ratio = analytic merged / unmerged GFLOPs (``paretoctl.models.flops``); wall ratio = median
merged / median unmerged time; efficiency = (1 - wall ratio) / (1 - FLOPs ratio), the share of the
FLOPs saving that turns into time saved (1 is ideal). Goals: >= 0.85 at batch 64; at batch 1 the
bundled model no slower than unmerged at ~50% of the FLOPs, and deit_small >= 0.7.

``--compiled`` times both sides compiled instead (the unmerged and the merged model each through
:class:`paretoctl.models.compiled.CompiledMerging`, so both skip Dynamo's guard checks after the first
call: compiled with compiled) and reports each compilation's wall time, a cost that an edge device
pays once per schedule.
``--modes eager,compiled`` times both paths in the same interleaved rounds, and each compiled row also
gives its time over the *eager* unmerged model's ("vs eager unmerged": compiling is worth it only
where that is below 1). ``--threads 1,2`` repeats everything per thread count in the same run.

Usage::

    python bench/merge_speed.py            # a few minutes on 2 CPU cores
    python bench/merge_speed.py --quick    # fewer rounds, to check it works
    python bench/merge_speed.py --threads 1,2 --schedules half --compiled   # the issue #12 table

Models are randomly initialised (timing does not depend on the weights); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paretoctl.models.vit_fmnist  # noqa: F401  (registers vit_fmnist_patch4_28)
from paretoctl.models.compiled import CompiledMerging
from paretoctl.models.flops import analytic_cost
from paretoctl.models.patch import apply_merging, set_schedule
from paretoctl.models.schedule import constant_r, decreasing_r, resolve_schedule
from paretoctl.models.timing import cpu_model

UNMERGED = "unmerged"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    model: str
    schedule: str
    batch: int
    gflops: float
    flops_ratio: float
    ms: float
    wall_ratio: float
    threads: int = 1
    mode: str = "eager"
    compile_s: float = math.nan
    vs_eager: float = math.nan
    """Compiled rows: median time over the eager unmerged model's, timed in the same run (NaN if not)."""

    @property
    def efficiency(self) -> float:
        """(1 - wall ratio) / (1 - FLOPs ratio); NaN when the schedule saves no FLOPs."""
        saved = 1.0 - self.flops_ratio
        return (1.0 - self.wall_ratio) / saved if saved > 1e-9 else math.nan


def build(name: str) -> VisionTransformer:
    """A randomly initialised timm ViT in eval mode."""
    model = timm.create_model(name, pretrained=False).eval()
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"{name} is a {type(model).__name__}, not a timm VisionTransformer")
    return model


def half_flops_schedule(model: VisionTransformer) -> tuple[str, list[int]]:
    """The uniform-proportion schedule whose analytic FLOPs come closest to half the unmerged model's."""
    depth, patches = len(model.blocks), int(model.patch_embed.num_patches)
    full = analytic_cost(model, None, 0).total_gflops
    best = min((abs(analytic_cost(model, r, 0).total_gflops / full - 0.5), p, r)
               for p in (i / 40 for i in range(41))
               for r in [resolve_schedule([p] * depth, patches, depth)])
    return f"p={best[1]:.3f} (~50% FLOPs)", best[2]


def schedules_for(model: VisionTransformer, which: str = "all") -> list[tuple[str, list[int]]]:
    """The ~50% FLOPs schedule, then (``which='all'``) ToMe's constant and decreasing schedules and a
    few proportion vectors, sized to the model."""
    if which == "half":
        return [half_flops_schedule(model)]
    depth, patches = len(model.blocks), int(model.patch_embed.num_patches)
    r_small, r_large = max(1, patches // 24), max(2, patches // 15)  # 8 and 13 for 196 patches
    return [
        half_flops_schedule(model),
        (f"constant r={r_small}", constant_r(r_small, depth, patches)),
        (f"constant r={r_large}", constant_r(r_large, depth, patches)),
        (f"decreasing r={r_small}", decreasing_r(r_small, depth, patches)),
        ("p=0.25 all layers", resolve_schedule([0.25] * depth, patches, depth)),
        ("p=1,0.5,... first 4", resolve_schedule([1.0] + [0.5] * 3 + [0.0] * (depth - 4), patches, depth)),
    ]


def time_forward(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, inner: int) -> float:
    """Seconds per forward pass, averaged over ``inner`` back-to-back passes."""
    start = time.perf_counter()
    for _ in range(inner):
        model(images)
    return (time.perf_counter() - start) / inner


def bench(name: str, batch: int, rounds: int, min_time: float, which: str = "all",
          modes: Sequence[str] = ("eager",)) -> list[Row]:
    """Time the unmerged model and every schedule of :func:`schedules_for`, interleaved.

    ``modes`` (``eager``, ``compiled`` or both) are timed in the same interleaved rounds; each mode's
    rows are relative to that mode's unmerged model, and a compiled row's ``vs_eager`` compares it
    with the *eager* unmerged model.
    """
    torch.manual_seed(0)
    base = build(name)
    merged = build(name)
    merged.load_state_dict(base.state_dict())
    schedules = schedules_for(base, which)
    apply_merging(merged, schedules[0][1])
    threads = torch.get_num_threads()
    fns: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
        "eager": (base, merged)}
    if "compiled" in modes:
        # both through CompiledMerging, so both skip Dynamo's guard checks after their first call
        fns["compiled"] = (CompiledMerging(base, max_entries=1), CompiledMerging(merged, max_entries=len(schedules)))
    compile_s: dict[tuple[str, str], float] = {}
    channels = base.patch_embed.proj.in_channels
    height, width = base.patch_embed.img_size
    images = torch.randn(batch, channels, height, width)
    labels = [UNMERGED] + [label for label, _ in schedules]
    configs = [(mode, label) for mode in modes for label in labels]
    r_of = dict(schedules)

    def run(config: tuple[str, str], inner: int) -> float:
        mode, label = config
        base_fn, merged_fn = fns[mode]
        if label == UNMERGED:
            return time_forward(base_fn, images, inner)
        set_schedule(merged, r_of[label])
        return time_forward(merged_fn, images, inner)

    times: dict[tuple[str, str], list[float]] = {config: [] for config in configs}
    with torch.inference_mode():
        for config in configs:  # compile everything first; the first call's wall time is the compile cost
            if config[0] == "compiled":
                start = time.perf_counter()
                run(config, 1)
                compile_s[config] = time.perf_counter() - start
        warm = {config: run(config, 1) for config in configs}  # warm-up (allocator, threads)
        inner = max(1, math.ceil(min_time / warm[(modes[0], UNMERGED)]))
        for i in range(rounds):
            shift = i % len(configs)
            for config in configs[shift:] + configs[:shift]:
                times[config].append(run(config, inner))

    reference_gflops = analytic_cost(base, None, 0).total_gflops
    eager_s = statistics.median(times[("eager", UNMERGED)]) if "eager" in modes else math.nan
    rows = []
    for mode in modes:
        reference_s = statistics.median(times[(mode, UNMERGED)])
        for label, r in [(UNMERGED, None), *schedules]:
            gflops = analytic_cost(base, r, 0).total_gflops
            seconds = statistics.median(times[(mode, label)])
            rows.append(Row(name, label, batch, gflops, gflops / reference_gflops, 1000 * seconds,
                            seconds / reference_s, threads, mode, compile_s.get((mode, label), math.nan),
                            seconds / eager_s if mode == "compiled" else math.nan))
    return rows


def markdown(rows: Sequence[Row]) -> str:
    """The results as a markdown table."""
    lines = [
        "| model | schedule | mode | threads | batch | GFLOPs/img | FLOPs ratio | ms/batch | wall ratio "
        "| efficiency | compile s | vs eager unmerged |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        eff = "-" if math.isnan(row.efficiency) else f"{row.efficiency:.2f}"
        comp = "-" if math.isnan(row.compile_s) else f"{row.compile_s:.1f}"
        vs = "-" if math.isnan(row.vs_eager) else f"{row.vs_eager:.3f}"
        lines.append(
            f"| {row.model} | {row.schedule} | {row.mode} | {row.threads} | {row.batch} | {row.gflops:.3f} | "
            f"{row.flops_ratio:.3f} | {row.ms:.2f} | {row.wall_ratio:.3f} | {eff} | {comp} | {vs} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5 (checks that it works)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated torch thread counts, each run in turn (default: torch's own)")
    parser.add_argument("--schedules", choices=("all", "half"), default="all",
                        help="'half': only the uniform schedule nearest 50%% of the FLOPs")
    parser.add_argument("--compiled", action="store_true",
                        help="compare compiled with compiled (torch.compile), reporting compile times")
    parser.add_argument("--modes", default=None,
                        help="comma-separated: eager, compiled or both, timed interleaved in the same rounds "
                             "(default: compiled with --compiled, else eager)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds each measurement lasts at least (default 0.3, quick 0.1)")
    parser.add_argument("--models", default="deit_small_patch16_224,vit_fmnist_patch4_28",
                        help="comma-separated timm names")
    parser.add_argument("--batches", default="64,1", help="comma-separated batch sizes")
    args = parser.parse_args(argv)
    if args.modes and not set(args.modes.split(",")) <= {"eager", "compiled"}:
        parser.error(f"--modes: {args.modes!r} is not a comma-separated list of eager and compiled")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    rounds = args.rounds or (2 if args.quick else 5)
    modes = args.modes.split(",") if args.modes else ["compiled" if args.compiled else "eager"]
    min_time = args.min_time if args.min_time is not None else (0.1 if args.quick else 0.3)
    started = time.perf_counter()
    rows: list[Row] = []
    start_load = os.getloadavg()[0]
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                rows.extend(bench(name.strip(), batch, rounds, min_time, args.schedules, modes))
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    print(f"`python bench/merge_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip())
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {thread_counts}, "
          f"{cpus} CPUs ({cpu_model()}), {rounds} rounds, "
          f"median; {time.perf_counter() - started:.0f} s in all; load average {start_load:.1f} at the start, "
          f"{load:.1f} at the end\n")
    if load > 0.5 * cpus:
        print(f"WARNING: load average {load:.1f} on {cpus} CPUs: other jobs share the cores, so these "
              "timings are noisy (and threads that wait on each other make it worse; try --threads 1).\n")
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" and any(t > 1 for t in thread_counts if t):
        print("WARNING: OMP_WAIT_POLICY=PASSIVE puts idle OpenMP threads to sleep between operators; at 2 "
              "threads it doubles the batch-1 time here. Unset it to measure what a default process sees.\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
