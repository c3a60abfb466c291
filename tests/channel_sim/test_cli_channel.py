"""`paretoctl channel check` through the root Typer app, and the sample counts it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paretoctl.channel_sim.check import (
    DEFAULT_CURVES,
    MIN_EXPECTED_ERRORS,
    Curve,
    run_check,
    samples_needed,
    samples_to_test,
)
from paretoctl.channel_sim.theory import BITS_PER_SYMBOL, theory_ber
from paretoctl.cli import app
from paretoctl.exitcodes import ExitCode

N_POINTS = sum(len(c.snr_db) for c in DEFAULT_CURVES)


def expected_tested(samples: int) -> int:
    """Points theory expects >= MIN_EXPECTED_ERRORS errors at, counted here from theory alone."""
    count = 0
    for curve in DEFAULT_CURVES:
        k = BITS_PER_SYMBOL[curve.modulation]
        bits = -(-samples // k) * k
        count += sum(bits * theory_ber(curve.modulation, curve.channel, s) >= MIN_EXPECTED_ERRORS
                     for s in curve.snr_db)
    return count


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def test_channel_check_with_enough_samples_tests_every_point_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "check"
    samples = samples_needed()[1]
    assert samples is not None and expected_tested(samples) == N_POINTS == 32
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(out), "--samples", str(samples),
                                      "--seed", "3"])
    assert result.exit_code == ExitCode.OK, result.output
    png = out / "ber_check.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "ber_check.json").read_text())
    assert doc["samples"] == samples and len(doc["points"]) == N_POINTS
    assert doc["passed"] is True and doc["points_tested"] == N_POINTS and doc["points_failed"] == 0
    assert all(p["tested"] for p in doc["points"])
    assert f"{N_POINTS}/{N_POINTS} points tested, 0 outside tolerance" in result.stdout


def test_too_few_samples_for_any_point_is_refused_before_running(tmp_path: Path) -> None:
    """#11.10: ``--samples 50`` used to exit 0 with 0 of 32 points tested."""
    out = tmp_path / "check"
    assert expected_tested(50) == 0
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(out), "--samples", "50"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --samples 50 can test none of the 32 points")
    assert f"--samples >= {samples_needed()[1]}" in lines[0]
    assert not out.exists(), "refused before running: nothing written"


def test_some_points_untested_is_a_negative_result(tmp_path: Path) -> None:
    out = tmp_path / "check"
    tested = expected_tested(20_000)
    assert 0 < tested < N_POINTS
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(out), "--samples", "20000", "--seed", "3"])
    assert result.exit_code == ExitCode.NEGATIVE, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1
    assert lines[0].startswith(f"error: channel check incomplete: {N_POINTS - tested} of {N_POINTS} points "
                               "had too few samples to judge")
    doc = json.loads((out / "ber_check.json").read_text())  # the numbers are still kept
    assert doc["passed"] is False and doc["points_tested"] == tested and doc["points_failed"] == 0


def test_channel_check_exits_negative_on_a_bad_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import paretoctl.channel_sim.check as check
    from paretoctl.channel_sim.channels import AWGNChannel

    class Louder(AWGNChannel):  # 3 dB too much noise
        def transmit_symbols(self, symbols, snr_db, generator=None, *, reals_per_token=None):  # type: ignore[no-untyped-def]
            return super().transmit_symbols(symbols, snr_db - 3.0, generator)

    monkeypatch.setattr(check, "make_channel", lambda kind, **params: Louder())
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(tmp_path), "--samples", "20000"])
    assert result.exit_code == ExitCode.NEGATIVE, result.output
    assert "FAIL" in result.stdout
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: channel check failed: ")
    assert "outside tolerance: awgn/bpsk at 0 dB (z=" in lines[0]
    assert (tmp_path / "ber_check.png").stat().st_size > 0


def test_channel_check_rejects_bad_samples(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(tmp_path), "--samples", "0"])
    assert result.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize("device", ["bogus", "cuda:7"])
def test_channel_check_refuses_an_unusable_device(tmp_path: Path, device: str) -> None:
    out = tmp_path / "check"
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(out), "--samples", "1000000",
                                      "--device", device])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: --device {device!r}")
    assert not out.exists()


def test_channel_check_cannot_write_into_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(blocker / "sub"), "--samples", "1000000"])
    assert result.exit_code == ExitCode.FAILED, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --out: ") and str(blocker) in lines[0]


@pytest.mark.parametrize(("modulation", "channel", "snr_db"),
                         [("16qam", "awgn", 0.0), ("qpsk", "rayleigh", 10.0), ("bpsk", "awgn", 4.0)])
def test_samples_to_test_is_the_exact_threshold(modulation: str, channel: str, snr_db: float) -> None:
    """One bit fewer and the simulated point is not tested; at the threshold it is."""
    n = samples_to_test(modulation, channel, snr_db)
    assert n is not None
    curve = [Curve(modulation, channel, (snr_db,))]
    (below,) = run_check(samples=n - 1, curves=curve)
    (at,) = run_check(samples=n, curves=curve)
    assert not below.tested and at.tested
    assert at.bits * at.theory >= MIN_EXPECTED_ERRORS > below.bits * below.theory


def test_samples_needed_bounds_the_default_curves() -> None:
    any_from, all_from = samples_needed()
    assert any_from is not None and all_from is not None
    assert expected_tested(any_from - 1) == 0 and expected_tested(any_from) >= 1
    assert expected_tested(all_from - 1) < N_POINTS == expected_tested(all_from)
    # 16-QAM at 0 dB has the highest BER (about 0.287): 100 / 0.287 bits, in whole 4-bit symbols.
    assert any_from == samples_to_test("16qam", "awgn", 0.0)
    assert 100 / theory_ber("16qam", "awgn", 0.0) <= any_from + 3
