"""``paretoctl policy``, ``serve`` and ``profile``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from paretoctl.cli import app
from paretoctl.cli_service import EXIT_INFEASIBLE
from paretoctl.exitcodes import ExitCode
from paretoctl.service.latency import load_profile
from paretoctl.service.policy import select
from paretoctl.service.schema import load_front
from tests.fronts import make_front, write_front
from tests.service.test_live_server import DEVICES_DIR, free_port, live_app

runner = CliRunner()


@pytest.fixture
def front_file(tmp_path: Path) -> Path:
    return write_front(tmp_path / "front.json", make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=10))


def test_policy_local_json_matches_select(front_file: Path) -> None:
    res = runner.invoke(app, ["policy", "--front", str(front_file), "--snr", "4", "--latency", "1000",
                              "--channel", "rayleigh", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    want = select(load_front(front_file), 4, 1000, channel="rayleigh")
    assert got == json.loads(want.model_dump_json())


def test_policy_local_table(front_file: Path) -> None:
    res = runner.invoke(app, ["policy", "--front", str(front_file), "--snr", "-9", "--latency", "1000"])
    assert res.exit_code == 0, res.output
    d = select(load_front(front_file), -9, 1000)
    assert d.config_id is not None and d.config_id in res.output
    assert "accuracy (test)" in res.output and "warning" in res.output  # -9 dB is below the grid


def test_policy_prints_the_merging_kind_and_the_thresholds(tmp_path: Path) -> None:
    front = make_front(depth=6, n_configs=8, n_thresholds=4, seed=4)
    path = write_front(tmp_path / "front.json", front)
    adaptive = next(d for d in (select(front, 20.0, c.latency.total_ms) for c in front.configs)
                    if d.merging == "thresholds")
    fixed = next(d for d in (select(front, 20.0, c.latency.total_ms) for c in front.configs)
                 if d.merging == "proportions")
    for d in (adaptive, fixed):
        args = ["policy", "--front", str(path), "--snr", "20", "--latency", repr(d.latency_budget_ms)]
        table = runner.invoke(app, args, env={"COLUMNS": "200"})
        as_json = runner.invoke(app, [*args, "--json"])
        assert table.exit_code == as_json.exit_code == 0, table.output
        assert json.loads(as_json.output)["merging"] == d.merging
        assert json.loads(as_json.output)["thresholds"] == d.thresholds
        assert d.config_id is not None and d.config_id in table.output
        if d.thresholds is not None:
            assert "thresholds (input-adaptive" in table.output
            assert " ".join(f"{t:.4g}" for t in d.thresholds) in table.output
            assert "mean schedule r" in table.output
        else:
            assert "proportions (a fixed schedule" in table.output and "thresholds" not in table.output
            assert "schedule r " + " ".join(map(str, d.r or [])) in " ".join(table.output.replace("│", " ").split())


def test_policy_infeasible_exit_status(front_file: Path) -> None:
    res = runner.invoke(app, ["policy", "--front", str(front_file), "--snr", "4", "--latency", "0.001"])
    assert res.exit_code == EXIT_INFEASIBLE == ExitCode.NEGATIVE
    assert "infeasible" in res.output and "fastest latency" in res.output


def test_policy_with_device_profile(front_file: Path) -> None:
    res = runner.invoke(app, ["policy", "--front", str(front_file), "--snr", "4", "--latency", "1e5", "--device",
                              "mcu-class", "--devices-dir", str(DEVICES_DIR), "--json"])
    assert res.exit_code == 0, res.output
    want = select(load_front(front_file), 4, 1e5, profile=load_profile(DEVICES_DIR / "mcu-class.yaml"))
    assert json.loads(res.output)["latency"]["total_ms"] == pytest.approx(want.latency.total_ms)  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [
    ["--snr", "1", "--latency", "10"],  # neither --front nor --url
    ["--front", "x.json", "--url", "http://127.0.0.1:1", "--snr", "1", "--latency", "10"],  # both
    ["--front", "{front}", "--snr", "1", "--latency", "-10"],  # bad budget
    ["--front", "{front}", "--snr", "1", "--latency", "10", "--channel", "rician"],
    ["--front", "{bad}", "--snr", "1", "--latency", "10"],
])
def test_policy_usage_errors(front_file: Path, tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "paretoctl.front/7", "checksum": "x"}')
    argv = [a.format(front=front_file, bad=bad) for a in args]
    res = runner.invoke(app, ["policy", *argv])
    assert res.exit_code == ExitCode.BAD_INPUT, res.output
    assert "error:" in res.output


def test_policy_remote_uses_the_sdk(front_file: Path, tmp_path: Path) -> None:
    with live_app(front_file) as srv:
        res = runner.invoke(app, ["policy", "--url", srv.url, "--snr", "4", "--latency", "1000", "--json",
                                  "--cache-dir", str(tmp_path / "cache")])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        assert got["source"] == "server"
        assert got["config_id"] == select(load_front(front_file), 4, 1000).config_id
    # the server is gone; the SDK answers from the cache it kept
    res = runner.invoke(app, ["policy", "--url", srv.url, "--snr", "4", "--latency", "1000", "--json",
                              "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["source"] == "cache"


def test_serve_with_two_workers_refuses_reload(front_file: Path) -> None:
    """Two workers serve; a reload would switch one of them only, so it is refused (docs/service.md)."""
    port = free_port()
    exe = Path(sys.executable).parent / "paretoctl"
    env = {**os.environ, "PARETOCTL_ADMIN_TOKEN": "tok"}
    proc = subprocess.Popen([str(exe), "serve", "--front", str(front_file), "--port", str(port), "--workers", "2",
                             "--devices-dir", str(DEVICES_DIR), "--log-level", "WARNING",
                             "--reload-dir", str(front_file.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/policy", params={"snr": 5, "latency": 1e5,
                                                                        "device": "default"}, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["device_profile"] == "default"
        for _ in range(4):  # whichever worker answers
            rr = httpx.post(f"http://127.0.0.1:{port}/admin/reload", json={"path": front_file.name},
                            headers={"Authorization": "Bearer tok"}, timeout=5)
            assert rr.status_code == 409 and rr.json()["reason"] == "workers", rr.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        if proc.stderr:
            proc.stderr.close()


def test_measure_edge_times_the_real_model_at_each_schedule() -> None:
    torch = pytest.importorskip("torch")
    from paretoctl.cli_service import measure_edge

    threads = torch.get_num_threads()
    try:
        rows = measure_edge("bundled", repeats=2, warmup=1, batch=2, threads=1)
    finally:
        torch.set_num_threads(threads)  # the function sets it process-wide
    assert [r["proportion"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rows[0]["r"] == [0] * 12 and sum(rows[-1]["r"]) > sum(rows[1]["r"]) > 0
    gflops = [r["gflops"] for r in rows]
    assert gflops == sorted(gflops, reverse=True) and gflops[0] > 2 * gflops[-1]
    assert all(0 < r["ms"] <= r["median_ms"] for r in rows)


def test_profile_fits_and_writes_a_loadable_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command end to end, with the timings replaced by a known line (3 ms + GFLOPs at 25 GFLOP/s)."""
    def fake_measure(model: str, **kw: object) -> list[dict[str, object]]:
        assert model == "bundled" and kw["batch"] == 4
        return [{"proportion": p, "r": [0], "gflops": g, "ms": 3.0 + 1000 * g / 25.0, "median_ms": 9.0}
                for p, g in [(0.0, 0.2), (0.5, 0.1), (1.0, 0.05)]]

    monkeypatch.setattr("paretoctl.cli_service.measure_edge", fake_measure)
    out = tmp_path / "devices" / "bench-box.yaml"
    res = runner.invoke(app, ["profile", "--out", str(out), "--batch", "4", "--symbol-rate", "250000"])
    assert res.exit_code == 0, res.output
    prof = load_profile(out)
    assert prof.name == "bench-box" and prof.symbol_rate_hz == 250000
    assert prof.edge_gflops_per_s == pytest.approx(25.0) and prof.edge_overhead_ms == pytest.approx(3.0)
    text = out.read_text()
    assert text.startswith("# Measured by `paretoctl profile") and text.count("proportion") == 3


def test_profile_refuses_timings_that_do_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paretoctl.cli_service.measure_edge", lambda model, **kw: [
        {"proportion": 0.0, "r": [0], "gflops": 0.2, "ms": 5.0, "median_ms": 5.0},
        {"proportion": 1.0, "r": [0], "gflops": 0.1, "ms": 9.0, "median_ms": 9.0}])
    out = tmp_path / "x.yaml"
    res = runner.invoke(app, ["profile", "--out", str(out)])
    assert res.exit_code == ExitCode.FAILED and "does not grow" in res.output and not out.exists()


def test_profile_compiled_needs_a_front(tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    res = runner.invoke(app, ["profile", "--out", str(out), "--compiled"])
    assert res.exit_code == ExitCode.BAD_INPUT and "give --front" in res.output and not out.exists()


@pytest.mark.parametrize("args", [
    ["--log-level", "loud"],
    ["--port", "1"],  # with an admin token from the environment but no reload directory
])
def test_serve_refuses_bad_settings_in_one_line(front_file: Path, args: list[str]) -> None:
    exe = Path(sys.executable).parent / "paretoctl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARETOCTL_")}
    env["PARETOCTL_ADMIN_TOKEN"] = "tok"
    proc = subprocess.run([str(exe), "serve", "--front", str(front_file), *args], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert ("--log-level" if "--log-level" in args else "reload_dir") in lines[0]


def test_serve_accepts_an_upper_case_log_level(front_file: Path) -> None:
    port = free_port()
    exe = Path(sys.executable).parent / "paretoctl"
    proc = subprocess.Popen([str(exe), "serve", "--front", str(front_file), "--port", str(port), "--log-level",
                             "INFO", "--devices-dir", str(DEVICES_DIR)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["front_checksum"] == load_front(front_file).checksum
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.parametrize("command", ["policy", "serve", "profile"])
def test_help_has_no_raw_markup(command: str) -> None:
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "``" not in res.output and ":class:" not in res.output, res.output
