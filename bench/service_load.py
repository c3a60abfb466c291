"""Load benchmark of the policy service: ``GET /policy`` on loopback, from a separate process.

Starts ``paretoctl serve`` (one uvicorn worker by default) on a synthetic 50-configuration front (or
``--front``), then for each concurrency level (1, 8, 32, 64 connections) drives ``/policy`` from a
second process for a bounded time (and, with the Python generator, a bounded number of requests),
and prints a markdown table of requests/s and p50/p99 latency. It also times one in-process
``paretoctl.service.policy.select`` call.

The load generator is ``wrk`` when it is installed (``apt-get install wrk``; C, so it costs the
server little CPU), else a small asyncio HTTP/1.1 keep-alive client in a subprocess. Queries cycle
through SNRs on, between, above and below the grid, with and without a device profile.

Goals: >= 2,000 req/s with p99 < 10 ms at 32 connections on one worker; ``select`` < 50 us.

Usage:
    python bench/service_load.py [--duration 5] [--concurrency 1,8,32,64] [--tool auto|wrk|python] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_RPS = 2000.0
GOAL_P99_MS = 10.0
GOAL_SELECT_US = 50.0
GOAL_CONNECTIONS = 32

def policy_paths(tight_ms: float) -> list[str]:
    """Feasible queries (200s), so that every answer does the whole selection and serialisation.

    ``tight_ms`` is a budget that some but not all configurations meet (the front's median latency),
    so two of the eight queries exercise the budget cut rather than the whole front.
    """
    return [
        f"/policy?snr={snr}&latency={lat:.4g}" + (f"&device={dev}" if dev else "")
        for snr, lat, dev in [
            (7.3, 1000, None), (10, 1000, None), (-8, 1000, None), (25, 1000, None), (3.1, tight_ms, None),
            (15, 1000, "default"), (0, 1000, "jetson-nano-class"), (12.5, tight_ms, None),
        ]
    ]


def median_latency_ms(front_path: Path) -> float:
    """The median served latency of the front's configurations (under its own profile)."""
    totals = sorted(c["latency"]["total_ms"] for c in json.loads(front_path.read_text())["configs"])
    return float(totals[len(totals) // 2])


PATHS: list[str] = policy_paths(10.0)


# ------------------------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic_front(path: Path) -> Path:
    """A 50-configuration front: depth 12, 3 channels, 6 SNRs (a realistic size for a build)."""
    from tests.fronts import make_front, write_front

    return write_front(path, make_front(depth=12, snr_grid_db=(-5, 0, 5, 10, 15, 20),
                                        channels=("awgn", "rayleigh", "rician"), n_configs=50,
                                        num_patches=49, seed=0))


def start_server(front: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "paretoctl"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from paretoctl.cli import app; app()"]
    cmd += ["serve", "--front", str(front), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--devices-dir", str(REPO / "configs" / "devices"), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise SystemExit("the policy server did not become ready")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------- generators

WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(port: int, connections: int, duration: float) -> dict[str, Any]:
    """wrk with one thread (the other core is the server's), ``connections`` keep-alive connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % ", ".join(json.dumps(p) for p in PATHS))
        script = fh.name
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
                              "-s", script, f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=duration + 60, check=True).stdout
    finally:
        os.unlink(script)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    secs = r["duration_us"] / 1e6
    return {"tool": "wrk", "requests": r["requests"], "errors": r["errors"], "rps": r["requests"] / secs,
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000}


async def _generate(port: int, connections: int, duration: float, max_requests: int) -> dict[str, Any]:
    """``connections`` keep-alive HTTP/1.1 connections, each sending one request at a time."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + duration

    async def one_connection(k: int) -> None:
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                path = PATHS[i % len(PATHS)]
                i += 1
                t0 = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    t_start = time.perf_counter()
    await asyncio.gather(*(one_connection(k) for k in range(connections)))
    elapsed = time.perf_counter() - t_start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"tool": "python", "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def run_python(port: int, connections: int, duration: float, max_requests: int) -> dict[str, Any]:
    """The asyncio generator, in its own process (so it does not share the benchmark's interpreter)."""
    out = subprocess.run([sys.executable, __file__, "--_generate", str(port), str(connections), str(duration),
                          str(max_requests), json.dumps(PATHS)], capture_output=True, text=True,
                         timeout=duration + 60, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------- main


def time_select(front_path: Path) -> float:
    """Microseconds per in-process ``select`` call (best of 5 runs of 2,000, index already built)."""
    from paretoctl.service.policy import select
    from paretoctl.service.schema import load_front

    front = load_front(front_path)
    select(front, 7.3, 10.0)
    return min(timeit.repeat(lambda: select(front, 7.3, 10.0, channel="rayleigh"), number=2000, repeat=5)) / 2000 * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--front", type=Path, help="front.json to serve (default: a synthetic 50-config front)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per concurrency level")
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap per level (python generator)")
    ap.add_argument("--concurrency", default="1,8,32,64", help="comma-separated connection counts")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    ap.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")

    with tempfile.TemporaryDirectory() as tmp:
        front = args.front or synthetic_front(Path(tmp) / "front.json")
        PATHS[:] = policy_paths(median_latency_ms(front))
        select_us = time_select(front)
        port = free_port()
        server = start_server(front, port, args.workers)
        rows = []
        try:
            # warm-up: connections, caches, the policy index for each profile
            run_python(port, 4, 1.0, 5000) if tool == "python" else run_wrk(port, 4, 1.0)
            for c in levels:
                r = (run_wrk(port, c, args.duration) if tool == "wrk"
                     else run_python(port, c, args.duration, args.max_requests))
                rows.append((c, r))
        finally:
            stop_server(server)

    print(f"\n### /policy on loopback: {args.workers} uvicorn worker(s), {tool}, {args.duration:g} s per level, "
          f"{os.cpu_count()} CPUs\n")
    print("| connections | requests | errors | req/s | p50 (ms) | p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c, r in rows:
        print(f"| {c} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    print(f"\nIn-process `select()` on a 50-config front: {select_us:.1f} us per call\n")
    ok = True
    at_goal = dict(rows).get(GOAL_CONNECTIONS)
    if at_goal is not None:
        met = at_goal["rps"] >= GOAL_RPS and at_goal["p99_ms"] < GOAL_P99_MS and at_goal["errors"] == 0
        ok &= met
        print(f"- goal at {GOAL_CONNECTIONS} connections: >= {GOAL_RPS:.0f} req/s and p99 < {GOAL_P99_MS:g} ms: "
              f"{'met' if met else 'NOT met'} ({at_goal['rps']:.0f} req/s, p99 {at_goal['p99_ms']:.2f} ms)")
    met_sel = select_us < GOAL_SELECT_US
    ok &= met_sel
    print(f"- goal select < {GOAL_SELECT_US:g} us: {'met' if met_sel else 'NOT met'} ({select_us:.1f} us)")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--_generate":
        port_, conns, dur, cap, paths = sys.argv[2:]
        PATHS[:] = json.loads(paths)  # the parent's queries, fitted to the front it serves
        print(json.dumps(asyncio.run(_generate(int(port_), int(conns), float(dur), int(cap)))))
        sys.exit(0)
    sys.exit(main())
