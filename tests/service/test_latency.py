"""Device profiles (YAML) and the latency model."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretoctl.service.latency import (
    ProfileError,
    fit_overhead_and_rate,
    list_profiles,
    load_profile,
    load_profiles,
    predict_latency,
    profile_path,
)
from paretoctl.service.schema import DeviceProfile

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("default", "jetson-nano-class", "mcu-class")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name: str) -> None:
    prof = load_profile(REPO / "configs" / "devices" / f"{name}.yaml")
    assert prof.name == name
    assert prof.edge_gflops_per_s > 0 and prof.server_gflops_per_s > prof.edge_gflops_per_s


def test_shipped_profiles_are_ordered_by_edge_speed() -> None:
    p = {n: load_profile(REPO / "configs" / "devices" / f"{n}.yaml") for n in SHIPPED}
    assert p["mcu-class"].edge_gflops_per_s < p["default"].edge_gflops_per_s < p["jetson-nano-class"].edge_gflops_per_s


def test_predict_latency_by_hand() -> None:
    prof = DeviceProfile(name="x", edge_gflops_per_s=20, server_gflops_per_s=2000, symbol_rate_hz=1e6,
                         edge_overhead_ms=2, link_overhead_ms=5, server_overhead_ms=1)
    lat = predict_latency(0.1, 0.2, 10_000, prof)
    assert lat.edge_ms == pytest.approx(2 + 5.0)  # 0.1 GFLOP at 20 GFLOP/s = 5 ms
    assert lat.transmit_ms == pytest.approx(5 + 10.0)  # 10k symbols at 1 MHz = 10 ms
    assert lat.server_ms == pytest.approx(1 + 0.1)  # 0.2 GFLOP at 2000 GFLOP/s = 0.1 ms
    assert lat.total_ms == pytest.approx(lat.edge_ms + lat.transmit_ms + lat.server_ms)


def _write(tmp_path: Path, text: str, name: str = "dev.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "edge_gflops_per_s: 10\nserver_gflops_per_s: 100\nsymbol_rate_hz: 1000\n"


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    prof = load_profile(_write(tmp_path, GOOD, "my-board.yaml"))
    assert prof.name == "my-board" and prof.edge_overhead_ms == 0.0


@pytest.mark.parametrize(("text", "field"), [
    (GOOD + "edge_gflops_per_sec: 3\n", "edge_gflops_per_sec"),
    (GOOD.replace("symbol_rate_hz: 1000", "symbol_rate_hz: 0"), "symbol_rate_hz"),
    (GOOD.replace("edge_gflops_per_s: 10", "edge_gflops_per_s: -1"), "edge_gflops_per_s"),
    (GOOD.replace("server_gflops_per_s: 100\n", ""), "server_gflops_per_s"),
    (GOOD + "link_overhead_ms: -2\n", "link_overhead_ms"),
    (GOOD.replace("10", "fast"), "edge_gflops_per_s"),
])
def test_bad_profile_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert field in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "a: [unclosed\n", ""])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ProfileError):
        load_profile(_write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden", "x" * 65])
def test_profile_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProfileError, match="invalid device profile name"):
        profile_path(name, tmp_path)


def test_load_profiles_reports_bad_files_and_keeps_good_ones(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "good.yaml")
    _write(tmp_path, GOOD + "typo: 1\n", "bad.yaml")
    good, bad = load_profiles(tmp_path)
    assert list(good) == ["good"] and list(bad) == ["bad"] and "typo" in bad["bad"]
    assert list_profiles(tmp_path) == ["bad", "good"]
    assert list_profiles(tmp_path / "missing") == []


def test_fit_recovers_rate_and_overhead() -> None:
    gflops = [0.05, 0.1, 0.2, 0.4]
    ms = [3.0 + 1000 * g / 25.0 for g in gflops]
    overhead, rate = fit_overhead_and_rate(gflops, ms)
    assert overhead == pytest.approx(3.0) and rate == pytest.approx(25.0)


def test_fit_refuses_degenerate_or_decreasing_timings() -> None:
    with pytest.raises(ProfileError):
        fit_overhead_and_rate([0.1, 0.1], [1.0, 2.0])
    with pytest.raises(ProfileError, match="does not grow"):
        fit_overhead_and_rate([0.1, 0.2, 0.3], [5.0, 4.0, 3.0])
    assert fit_overhead_and_rate([1.0, 2.0], [10.0, 110.0])[0] == 0.0  # negative intercept clipped


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("json", '{"a": NaN}', "report is not valid JSON"),
    ("json", "{", "report is not valid JSON"),
    ("yaml", "a: [unclosed\n", "report is not valid YAML"),
    ("json", None, "cannot read report: No such file"),
])
def test_read_document_errors_are_one_line_naming_the_file(tmp_path: Path, kind: str, text: str | None,
                                                           message: str) -> None:
    from paretoctl.service.latency import read_document

    class ReportError(ValueError):
        pass

    path = tmp_path / f"report.{kind}"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ReportError, match=message) as info:
        read_document(path, kind=kind, what="report", error=ReportError)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{path}: ")


def test_read_document_parses(tmp_path: Path) -> None:
    from paretoctl.service.latency import read_document

    (tmp_path / "a.json").write_text('{"x": [1, 2.5]}')
    (tmp_path / "a.yaml").write_text("x: [1, 2.5]\n")
    for name, kind in (("a.json", "json"), ("a.yaml", "yaml")):
        assert read_document(tmp_path / name, kind=kind, what="t", error=ValueError) == {"x": [1, 2.5]}  # type: ignore[arg-type]
