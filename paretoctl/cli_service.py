"""``paretoctl serve``, ``paretoctl policy`` and ``paretoctl profile``.

``serve`` and ``policy`` need only the base install; ``profile`` times the real model and needs the
``[build]`` extra (torch is imported inside the command).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paretoctl.exitcodes import ExitCode, fail

if TYPE_CHECKING:
    from paretoctl.service.policy import Decision
    from paretoctl.service.schema import DeviceProfile
    from paretoctl.service.settings import Settings

EXIT_INFEASIBLE = ExitCode.NEGATIVE
"""``paretoctl policy`` exit status when nothing fits the budget (the shared "the answer is no" code)."""

DEFAULT_DEVICES_DIR = Path("configs/devices")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``policy`` and ``profile`` to the root app."""
    app.command("serve")(serve)
    app.command("policy")(policy)
    app.command("profile")(profile)


# ------------------------------------------------------------------------------------------ serve


def serve(
    front: Annotated[Path | None, typer.Option(help="front.json to serve", envvar="PARETOCTL_FRONT_PATH")] = None,
    host: Annotated[str, typer.Option(help="interface to bind (0.0.0.0 in a container)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes (with more than one, "
                                                     "POST /admin/reload is refused: restart instead)")] = 1,
    devices_dir: Annotated[Path, typer.Option(help="device profiles for ?device=",
                                              envvar="PARETOCTL_DEVICES_DIR")] = DEFAULT_DEVICES_DIR,
    reload_dir: Annotated[Path | None, typer.Option(
        help="the only directory POST /admin/reload reads fronts from (required with an admin token)",
        envvar="PARETOCTL_RELOAD_DIR")] = None,
    log_level: Annotated[str, typer.Option(help=f"log level, any case: {', '.join(LOG_LEVELS)}",
                                           envvar="PARETOCTL_LOG_LEVEL")] = "info",
) -> None:
    """Serve the policy API (GET /policy, /front, /healthz, /readyz, /metrics) with uvicorn.

    The front is checked before the server starts, so a bad file fails here with the loader's
    reason instead of starting a server that is never ready. The admin token for POST /admin/reload
    comes from PARETOCTL_ADMIN_TOKEN; other settings from PARETOCTL_* variables (docs/service.md).

    Exit status: 2 bad options, settings or front.
    """
    import uvicorn
    from pydantic import ValidationError

    from paretoctl.service.schema import FrontLoadError, load_front
    from paretoctl.service.settings import Settings
    from paretoctl.service.validation import format_validation_error

    level = log_level.strip().lower()
    if level not in LOG_LEVELS:
        fail(ExitCode.BAD_INPUT, f"--log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    given: dict[str, Any] = {"front_path": front, "devices_dir": devices_dir, "workers": workers, "log_level": level}
    if reload_dir is not None:
        given["reload_dir"] = reload_dir
    try:
        settings = Settings(**given)  # the rest (admin token, limits) from PARETOCTL_* variables
    except ValidationError as exc:
        fail(ExitCode.BAD_INPUT, f"invalid settings: {format_validation_error(exc)}")
    if front is not None:
        try:
            load_front(front, max_bytes=settings.max_front_bytes)
        except FrontLoadError as exc:
            fail(ExitCode.BAD_INPUT, f"cannot serve {front}: {exc.reason}: {exc.message}")
    if workers == 1:
        from paretoctl.service.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level=level, access_log=False,
                    proxy_headers=False)
        return
    _exec_workers(settings, host, port, workers, level)


def _exec_workers(settings: Settings, host: str, port: int, workers: int, level: str) -> None:
    """Replace this process by uvicorn's multi-worker supervisor, its settings passed in its environment.

    Each worker process builds its own app with ``create_app()``, which reads ``PARETOCTL_*``; the
    variables are given to the new process image only (this process's environment is not written).
    Exec rather than a child keeps the PID, so signals (``docker stop``) reach the supervisor directly.
    """
    argv = [sys.executable, "-m", "uvicorn", "--factory", "paretoctl.service.app:create_app", "--host", host,
            "--port", str(port), "--workers", str(workers), "--log-level", level, "--no-access-log",
            "--no-proxy-headers"]
    env = {**os.environ, **settings.environment()}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


# ----------------------------------------------------------------------------------------- policy


def policy(
    snr: Annotated[float, typer.Option(help="link SNR (Es/N0), dB")],
    latency: Annotated[float, typer.Option(help="latency budget, ms")],
    front: Annotated[Path | None, typer.Option(help="front.json to decide from (local)")] = None,
    url: Annotated[str | None, typer.Option(help="policy service URL (uses the SDK)")] = None,
    channel: Annotated[str | None, typer.Option(help="channel kind (default: the front's first)")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="accuracy floor in [0, 1]")] = None,
    device: Annotated[str | None, typer.Option(help="device profile name")] = None,
    devices_dir: Annotated[Path, typer.Option(help="device profiles (with --front)")] = DEFAULT_DEVICES_DIR,
    cache_dir: Annotated[Path | None, typer.Option(help="SDK front cache (with --url)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """Which merge schedule to run at a link SNR within a latency budget.

    Decides from a local front file (--front) or asks a policy service (--url).

    Exit status: 0 a schedule fits; 1 nothing fits the budget; 2 bad options, front, profile or
    channel; 3 the service could not be reached and no cached front was available.
    """
    from paretoctl.client import PolicyClientError, PolicyRequestError

    if (front is None) == (url is None):
        fail(ExitCode.BAD_INPUT, "give exactly one of --front PATH or --url URL")
    try:
        decision = _decide_local(front, snr, latency, channel, min_accuracy, device, devices_dir) \
            if front is not None else _decide_remote(url or "", snr, latency, channel, min_accuracy, device,
                                                    cache_dir)
    except PolicyRequestError as exc:
        fail(ExitCode.BAD_INPUT, str(exc))
    except PolicyClientError as exc:
        fail(ExitCode.FAILED, str(exc))
    except ValueError as exc:
        fail(ExitCode.BAD_INPUT, str(exc))
    if as_json:
        typer.echo(decision.model_dump_json(indent=2))
    else:
        _print_decision(decision)
    if not decision.feasible:
        raise typer.Exit(int(EXIT_INFEASIBLE))


def _decide_local(front_path: Path, snr: float, latency: float, channel: str | None,
                  min_accuracy: float | None, device: str | None, devices_dir: Path) -> Decision:
    from paretoctl.service.latency import load_profile, profile_path
    from paretoctl.service.policy import select
    from paretoctl.service.schema import FrontLoadError, load_front

    try:
        front = load_front(front_path)
    except FrontLoadError as exc:
        raise ValueError(f"cannot load {front_path}: {exc.reason}: {exc.message}") from None
    prof = load_profile(profile_path(device, devices_dir)) if device is not None else None
    return select(front, snr, latency, channel=channel, min_accuracy=min_accuracy, profile=prof)


def _decide_remote(url: str, snr: float, latency: float, channel: str | None, min_accuracy: float | None,
                   device: str | None, cache_dir: Path | None) -> Decision:
    from paretoctl.client import PolicyClient

    with PolicyClient(url, cache_dir=cache_dir) as client:
        return client.get_policy(snr, latency, channel=channel, min_accuracy=min_accuracy, device=device)


def _fmt(x: float | None, spec: str = ".4g", unit: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{unit}"


def _print_decision(d: Decision) -> None:
    """A rich table of the decision (and its warnings)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (f"[green]{d.config_id}[/green]" if d.feasible else "[red]infeasible[/red]") + \
        f"  ({d.channel} at {d.snr_db:g} dB, budget {d.latency_budget_ms:g} ms, source {d.source})"
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    if d.feasible:
        assert d.predicted_accuracy is not None and d.validation_accuracy is not None
        assert d.latency is not None and d.gflops is not None
        for name, value in _merging_rows(d):
            table.add_row(name, value)
        table.add_row("accuracy (test)", f"{d.predicted_accuracy.mean:.4f} ± {d.predicted_accuracy.stderr:.4f}")
        table.add_row("accuracy (val)", f"{d.validation_accuracy.mean:.4f} ± {d.validation_accuracy.stderr:.4f}")
        lat = d.latency
        table.add_row("latency", f"{lat.total_ms:.3f} ms (edge {lat.edge_ms:.3f} {lat.edge_source}, "
                      f"link {lat.transmit_ms:.3f} {lat.transmit_source}, "
                      f"server {lat.server_ms:.3f} {lat.server_source})")
        mean = " per image, mean" if d.merging == "thresholds" else ""
        table.add_row("GFLOPs", f"{d.gflops.total:.4g} (edge {d.gflops.edge:.4g}, server {d.gflops.server:.4g}){mean}")
        table.add_row("tokens sent / channel uses", f"{d.tokens_sent} / {d.channel_uses}{mean}")
    else:
        table.add_row("reason", d.reason or "")
        table.add_row("fastest latency", _fmt(d.fastest_latency_ms, ".4g", " ms"))
        if d.min_accuracy is not None:
            table.add_row("best accuracy within budget", _fmt(d.best_accuracy_within_budget))
            table.add_row("fastest latency meeting min accuracy",
                          _fmt(d.fastest_latency_meeting_min_accuracy_ms, ".4g", " ms"))
    table.add_row("SNR grid points used", ", ".join(f"{s:g}" for s in d.snr_used_db) + " dB")
    table.add_row("device profile", d.device_profile)
    table.add_row("front", f"{d.front_version} {d.front_checksum}")
    console.print(table)
    for w in d.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def _merging_rows(d: Decision) -> list[tuple[str, str]]:
    """The table rows saying what to apply: the merging kind, then the thresholds or the schedule.

    A threshold configuration's ``r`` and proportions are its rounded mean over images, shown as such.
    """
    r = " ".join(str(x) for x in d.r or [])
    props = " ".join(f"{p:.2f}" for p in d.proportions or [])
    if d.merging == "thresholds":
        return [("merging", "thresholds (input-adaptive: apply the thresholds)"),
                ("thresholds", " ".join(f"{t:.4g}" for t in d.thresholds or [])),
                ("mean schedule r", r), ("mean proportions", props)]
    return [("merging", "proportions (a fixed schedule: apply r)"), ("schedule r", r), ("proportions", props)]


# ---------------------------------------------------------------------------------------- profile


def profile(
    out: Annotated[Path, typer.Option(help="profile YAML to write")] = DEFAULT_DEVICES_DIR / "local.yaml",
    model: Annotated[str, typer.Option(help="'bundled' or a timm model name")] = "bundled",
    name: Annotated[str | None, typer.Option(help="profile name (default: the file stem)")] = None,
    symbol_rate: Annotated[float, typer.Option(min=1e-9, help="radio symbol rate, Hz (not measurable here)")]
    = 1e6,
    server_gflops: Annotated[float, typer.Option(min=1e-9, help="server GFLOP/s (measure on the server)")]
    = 2000.0,
    link_overhead_ms: Annotated[float, typer.Option(min=0.0, help="fixed link cost, ms")] = 5.0,
    server_overhead_ms: Annotated[float, typer.Option(min=0.0, help="fixed server cost, ms")] = 1.0,
    repeats: Annotated[int, typer.Option(min=1, help="timed runs per schedule (best taken)")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="untimed runs per schedule")] = 3,
    batch: Annotated[int, typer.Option(min=1, help="images per forward pass")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's)")] = None,
    front: Annotated[Path | None, typer.Option(help="re-time this front's configurations instead of fitting "
                                                    "a rate (writes per-config measured edge/server ms)")] = None,
    max_seconds: Annotated[float, typer.Option(min=1.0, help="with --front: bound on the timing, s")] = 60.0,
    compiled: Annotated[bool, typer.Option(help="with --front: time each schedule's torch.compile'd forward "
                                                "(compiles every schedule first: tens of seconds each)")] = False,
) -> None:
    """Measure this machine as an edge device and write a device profile.

    With --front, every configuration of that front is timed on the front's own model (edge at
    batch 1, server at --batch; interleaved until each median is within 3%; a threshold
    configuration cycles over the build's validation images, since its work depends on the image),
    and the profile carries those per-configuration measurements: load it by name (?device=NAME) and the
    policy uses them (their p90) for that front. The rates in it (edge from the front's profile;
    server, symbol rate and overheads from the options, in GFLOP/s, Hz and ms) remain the modelled
    fallback for what was not measured; the transmit time is always modelled from them. With
    --compiled the fixed schedules are timed as a device that deploys with torch.compile runs them
    (each compiled once first; the compile seconds are recorded per configuration).

    Times the real model's forward pass at several merge schedules (so at several GFLOPs), fits
    time = overhead + GFLOPs / rate by least squares, and writes edge_gflops_per_s and
    edge_overhead_ms. The link and server figures are properties of the radio and of the server,
    so they come from options. Needs the [build] extra (torch, timm).

    Exit status: 3 the timings do not fit a line, or the profile cannot be written.
    """
    from paretoctl.service.fileio import atomic_write_bytes
    from paretoctl.service.latency import ProfileError, fit_overhead_and_rate, profile_from_mapping

    if front is not None:
        _profile_front(front, out, name, {"symbol_rate_hz": symbol_rate, "server_gflops_per_s": server_gflops,
                                          "link_overhead_ms": link_overhead_ms,
                                          "server_overhead_ms": server_overhead_ms},
                       batch=batch, warmup=warmup, threads=threads, max_seconds=max_seconds, compiled=compiled)
        return
    if compiled:
        fail(ExitCode.BAD_INPUT, "--compiled times a front's configurations: give --front FRONT")
    rows = measure_edge(model, repeats=repeats, warmup=warmup, batch=batch, threads=threads)
    try:
        overhead, rate = fit_overhead_and_rate([r["gflops"] for r in rows], [r["ms"] for r in rows])
        prof = profile_from_mapping({
            "name": name or out.stem, "edge_gflops_per_s": round(rate, 4),
            "server_gflops_per_s": server_gflops, "symbol_rate_hz": symbol_rate,
            "edge_overhead_ms": round(overhead, 4), "link_overhead_ms": link_overhead_ms,
            "server_overhead_ms": server_overhead_ms}, source=str(out))
    except ProfileError as exc:
        fail(ExitCode.FAILED, str(exc))
    r2 = _r_squared([r["gflops"] for r in rows], [r["ms"] for r in rows], overhead, rate)
    if r2 < 0.8:
        typer.echo(f"warning: the fit explains only {r2:.0%} of the timing variance: the machine is busy or the "
                   "model too small to time at this batch; re-run idle, or raise --repeats/--batch", err=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, profile_yaml(prof, rows, model, batch).encode())
    except OSError as exc:
        fail(ExitCode.FAILED, f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}: edge {rate:.2f} GFLOP/s + {overhead:.3f} ms overhead "
               f"(fit over {len(rows)} schedules, batch {batch})")


def _profile_front(front_path: Path, out: Path, name: str | None, link: dict[str, float], *, batch: int,
                   warmup: int, threads: int | None, max_seconds: float, compiled: bool = False) -> None:
    """``paretoctl profile --front``: time the front's configurations and write a measured profile."""
    import torch
    import yaml

    from paretoctl.models.timing import TimingSettings, front_measurements, timing_images
    from paretoctl.optimizer.config import ConfigError, parse_config
    from paretoctl.optimizer.executor import load_model, open_split
    from paretoctl.service.fileio import atomic_write_bytes
    from paretoctl.service.latency import ProfileError, profile_from_mapping
    from paretoctl.service.schema import FrontLoadError, load_front

    try:
        art = load_front(front_path)
    except (OSError, FrontLoadError) as exc:
        fail(ExitCode.BAD_INPUT, f"{front_path}: {getattr(exc, 'strerror', None) or exc}")
    if threads is not None:
        torch.set_num_threads(threads)
    thresholds = {c.id: list(c.thresholds) for c in art.configs if c.thresholds is not None}
    try:
        build_cfg = parse_config(art.provenance.config)
        net = load_model(build_cfg)
        # Threshold configurations do work that depends on the image: time them on the build's own
        # validation images, as the build does.
        images = timing_images(open_split(build_cfg, "val", net), build_cfg.search.seed) if thresholds else None
    except (ConfigError, ValueError, OSError) as exc:
        fail(ExitCode.BAD_INPUT, f"{front_path}: cannot rebuild the front's model and data: {exc}")
    doc = front_measurements(net, [(c.id, c.r) for c in art.configs], art.provenance.split_index,
                             TimingSettings(server_batch=batch, warmup=warmup, max_seconds=max_seconds),
                             front_checksum=art.checksum, thresholds=thresholds or None, images=images,
                             compiled=compiled)
    try:
        prof = profile_from_mapping({**art.device_profile.model_dump(exclude={"measurements"}), **link,
                                     "name": name or out.stem, "measurements": doc}, source=str(out))
    except ProfileError as exc:
        fail(ExitCode.FAILED, str(exc))
    how = " --compiled" if compiled else ""
    head = (f"# Measured by `paretoctl profile --front {front_path}{how}` ({len(art.configs)} configurations; edge at "
            f"batch 1, server at batch {batch}). The policy uses the measurements' {doc['statistic']} for\n"
            "# this front's configurations and the rates below (GFLOP/s, Hz, ms) for anything else.\n")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (head + yaml.safe_dump(prof.model_dump(mode="json"), sort_keys=False)).encode())
    except OSError as exc:
        fail(ExitCode.FAILED, f"cannot write {out}: {exc.strerror or exc}")
    on_images = f"; {len(thresholds)} threshold configurations over {len(images)} validation images" \
        if images is not None else ""
    compile_s = [c["compile_s"] for c in doc["configs"] if "compile_s" in c]
    compiled_note = f"; {len(compile_s)} compiled in {sum(compile_s):.0f} s" if compile_s else ""
    typer.echo(f"wrote {out}: {len(art.configs)} configurations timed on {doc['machine']['cpu']} "
               f"({doc['machine']['threads']} threads{on_images}{compiled_note})")


def _r_squared(gflops: list[float], ms: list[float], overhead: float, rate: float) -> float:
    """Coefficient of determination of the fitted line (1 = the timings lie on it)."""
    mean = sum(ms) / len(ms)
    total = sum((t - mean) ** 2 for t in ms)
    resid = sum((t - (overhead + 1000.0 * g / rate)) ** 2 for g, t in zip(gflops, ms, strict=True))
    return 1.0 - resid / total if total > 0 else 1.0


def profile_yaml(prof: DeviceProfile, rows: list[dict[str, Any]], model: str, batch: int) -> str:
    """The profile as YAML, headed by a comment recording how it was measured."""
    import platform

    import yaml

    lines = [f"# Measured by `paretoctl profile --model {model} --batch {batch}` on {platform.node()} "
             f"({platform.machine()}, Python {platform.python_version()}) at "
             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}.",
             "# Fit: time_ms = edge_overhead_ms + 1000 * gflops / edge_gflops_per_s over these runs",
             "# (best of the timed runs; link and server figures are from options):"]
    lines += [f"#   proportion {r['proportion']:.2f}  GFLOPs {r['gflops']:.5f}  best {r['ms']:.3f} ms  "
              f"median {r['median_ms']:.3f} ms" for r in rows]
    body = yaml.safe_dump(prof.model_dump(), sort_keys=False)
    return "\n".join(lines) + "\n" + body


def measure_edge(model_name: str, *, repeats: int, warmup: int, batch: int,
                 threads: int | None = None,
                 proportions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> list[dict[str, Any]]:
    """Forward time of the model at constant merge proportions; one row per schedule.

    Returns:
        ``[{"proportion", "r", "gflops" (for the batch), "ms" (best run), "median_ms"}]``.
    """
    import torch

    from paretoctl.models.flops import analytic_cost
    from paretoctl.models.patch import apply_merging
    from paretoctl.models.schedule import resolve_schedule

    if threads is not None:
        torch.set_num_threads(threads)
    net = _load_model(model_name)
    depth = len(net.blocks)
    num_patches = int(net.patch_embed.num_patches)
    in_chans = int(net.patch_embed.proj.in_channels)
    h, w = (int(s) for s in net.patch_embed.img_size)
    x = torch.randn(batch, in_chans, h, w)
    schedules = [resolve_schedule([p] * depth, num_patches, depth) for p in proportions]
    gflops = [analytic_cost(net, r, depth).total_gflops * batch for r in schedules]
    times: list[list[float]] = [[] for _ in schedules]
    with torch.inference_mode():
        for r in schedules:
            apply_merging(net, r=r)
            for _ in range(warmup):
                net(x)
        # Round-robin over the schedules, so that a change in background load hits all of them alike.
        for _ in range(repeats):
            for i, r in enumerate(schedules):
                apply_merging(net, r=r)
                t0 = time.perf_counter()
                net(x)
                times[i].append((time.perf_counter() - t0) * 1000.0)
    # The best run, as timeit advises: slower runs measure interference, not the model.
    rows = [{"proportion": p, "r": r, "gflops": g, "ms": min(t), "median_ms": statistics.median(t)}
            for p, r, g, t in zip(proportions, schedules, gflops, times, strict=True)]
    return rows


def _load_model(model_name: str) -> Any:
    """The bundled model (its weights when present; timing does not depend on them) or a timm model."""
    from paretoctl.models.loading import BUNDLED_NAME, BUNDLED_WEIGHTS, ModelSpec, create_model

    if model_name == BUNDLED_NAME and not BUNDLED_WEIGHTS.is_file():
        import timm

        import paretoctl.models.vit_fmnist  # noqa: F401  (registers the architecture)

        print("bundled weights not found; timing the randomly initialised architecture", file=sys.stderr)
        return timm.create_model("vit_fmnist_patch4_28").eval()
    return create_model(ModelSpec(name=model_name))

