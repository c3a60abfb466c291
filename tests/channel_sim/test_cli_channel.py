"""`paretoctl channel check` through the root Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paretoctl.cli import app


def test_channel_check_writes_png_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "check"
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(out), "--samples", "20000", "--seed", "3"])
    assert result.exit_code == 0, result.output
    png = out / "ber_check.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "ber_check.json").read_text())
    assert doc["samples"] == 20000 and len(doc["points"]) == 32
    assert "outside tolerance" in result.output and "awgn" in result.output


def test_channel_check_exits_non_zero_on_a_bad_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import paretoctl.channel_sim.check as check
    from paretoctl.channel_sim.channels import AWGNChannel

    class Louder(AWGNChannel):  # 3 dB too much noise
        def transmit_symbols(self, symbols, snr_db, generator=None, *, reals_per_token=None):  # type: ignore[no-untyped-def]
            return super().transmit_symbols(symbols, snr_db - 3.0, generator)

    monkeypatch.setattr(check, "make_channel", lambda kind, **params: Louder())
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(tmp_path), "--samples", "20000"])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output
    assert (tmp_path / "ber_check.png").stat().st_size > 0


def test_channel_check_rejects_bad_samples(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["channel", "check", "--out", str(tmp_path), "--samples", "0"])
    assert result.exit_code == 2
