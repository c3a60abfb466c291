"""Tests of ``paretoctl.plots`` and the ``paretoctl plot`` command, on synthetic fronts and builds."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

pytest.importorskip("matplotlib")

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from paretoctl import cli_plot, plots
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, load_front
from tests.fronts import assemble_front, hand_config, make_front, write_front
from tests.paretoctl.builds import METHODS, write_build_dir

FRONT_STEMS = {"front", "accuracy_vs_snr", "policy_map", "schedules"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_BYTES = 10_000
"""A figure with axes, labels and data is tens of kB; an empty canvas is a few hundred bytes."""


def small_front(**kwargs: Any) -> FrontArtifact:
    """Two channels, 10 configurations, depth 6: every figure has something in every panel."""
    opts: dict[str, Any] = {"depth": 6, "channels": ("awgn", "rayleigh"), "n_configs": 10,
                               "num_patches": 16, "dim": 64, "split_index": 2}
    opts.update(kwargs)
    return make_front(**opts)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_build_dir(tmp_path_factory.mktemp("build") / "run", small_front())


def make_cli() -> typer.Typer:
    """A root app with only the plot command, registered as ``paretoctl.cli`` does it."""
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """paretoctl (test root)."""

    cli_plot.register(app)
    return app


runner = CliRunner()


@pytest.fixture(scope="module")
def cli_on_build(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Result:
    """``paretoctl plot BUILD_DIR --out DIR``, run once for the module (drawing takes seconds)."""
    out = tmp_path_factory.mktemp("figures")
    return runner.invoke(make_cli(), ["plot", str(build_dir), "--out", str(out)])


@pytest.fixture(scope="module")
def build_plots(cli_on_build: Result) -> list[Path]:
    """The files the command says it wrote."""
    assert cli_on_build.exit_code == 0, cli_on_build.output
    return [Path(line.strip()) for line in cli_on_build.output.splitlines() if line.startswith("  ")]


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "the panel has no legend"
    return [t.get_text() for t in legend.get_texts()]


def line_xy(line: Line2D) -> tuple[list[float], list[float]]:
    return [float(v) for v in np.asarray(line.get_xdata())], [float(v) for v in np.asarray(line.get_ydata())]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > MIN_BYTES, f"{path} is suspiciously small ({len(data)} bytes)"


def assert_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", f"{path} root is {root.tag}"
    assert len(list(root.iter())) > 50, f"{path} has almost no elements"
    return root


# ------------------------------------------------------------------------------------------------
# Files


def test_build_dir_gives_every_figure_as_png_and_svg(build_plots: list[Path]) -> None:
    stems = {p.stem for p in build_plots}
    assert stems == FRONT_STEMS | {"convergence"}
    assert sorted(p.suffix for p in build_plots) == sorted([".png", ".svg"] * len(stems))
    for path in build_plots:
        assert path.is_file()
        if path.suffix == ".png":
            assert_png(path)
        else:
            assert_svg(path)


def test_front_file_gives_the_front_figures_without_convergence(tmp_path: Path) -> None:
    src = write_front(tmp_path / "front.json", small_front(channels=("awgn",), n_configs=6))
    written = plots.plot_path(src, tmp_path / "out", split="val")
    assert {p.stem for p in written} == FRONT_STEMS
    assert all(p.parent == tmp_path / "out" for p in written)


def test_svg_output_is_reproducible(tmp_path: Path) -> None:
    front = small_front(n_configs=5)
    a = plots.save(plots.schedule_figure(front), tmp_path / "a", "s", ("svg",))[0]
    b = plots.save(plots.schedule_figure(front), tmp_path / "b", "s", ("svg",))[0]
    assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------------------------------
# What the figures contain


def test_front_figure_has_one_panel_per_channel_and_labelled_axes() -> None:
    front = small_front()
    fig = plots.front_figure(front, "test")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["Channel: AWGN channel", "Channel: Rayleigh block fading"]
    assert "GFLOPs per image" in axes[0].get_xlabel()
    assert "test split" in axes[0].get_ylabel()
    assert "test split" in fig.get_suptitle()
    legend_titles = {lg.get_title().get_text() for lg in fig.legends}
    assert legend_titles == {"SNR (Es/N0)", "Configuration", "Tokens sent\n(marker area)"}


def test_front_figure_marks_reference_and_uniform_at_every_snr() -> None:
    front = small_front()
    n_grid = len(front.provenance.snr_grid_db)
    n_uniform = sum(cfg.source == "uniform" for cfg in front.configs)
    assert n_uniform > 0
    ax = plots.front_figure(front).get_axes()[0]
    # One scatter per SNR for the front, plus one per (reference or uniform config, SNR).
    assert len(ax.collections) == n_grid + (1 + n_uniform) * n_grid


def test_accuracy_snr_figure_names_the_highlighted_configs() -> None:
    front = small_front()
    fig = plots.accuracy_snr_figure(front, "test")
    labels = legend_texts(fig.get_axes()[0])
    assert any(label.startswith("most accurate: ") for label in labels)
    assert any(label.startswith("cheapest: ") for label in labels)
    assert any(label.startswith("unmerged model") for label in labels)


def test_convergence_figure_has_one_line_per_method(build_dir: Path) -> None:
    conv = plots.load_convergence(build_dir / "convergence.json")
    assert set(conv.methods) == set(METHODS)
    assert conv.ref_point == [0.1, 1.0, 5000.0]
    assert all(n == sorted(n) for n in conv.methods.values())
    ax = plots.convergence_figure(conv.methods).get_axes()[0]
    assert legend_texts(ax) == [
        "BoTorch qLogNEHVI", "NSGA-II", "Sobol random search"]
    assert len(ax.get_lines()) == len(METHODS)
    assert "evaluations" in ax.get_xlabel()


def test_schedule_figure_marks_the_split_and_starts_from_all_tokens() -> None:
    front = small_front()
    ax = plots.schedule_figure(front).get_axes()[0]
    xy = [line_xy(ln) for ln in ax.get_lines()]
    assert sum(x == [2.0, 2.0] for x, _ in xy) == 1, "one vertical line at the split (after block 2)"
    starts = {y[0] for x, y in xy if len(x) == 7}
    assert starts == {16 + 1}  # every schedule starts from all patches plus the cls token


# ------------------------------------------------------------------------------------------------
# Pure helpers, against hand-computed answers


def test_schedule_xy_counts_tokens_after_each_block() -> None:
    cfg = hand_config("c", {"awgn": [0.5] * 5}, depth=3, proportions=[1.0, 0.5, 0.0], num_patches=16)
    # 16 patches: block 0 merges 8 (-> 8 left), block 1 merges round(0.5 * 4) = 2 (-> 6), block 2 none.
    front = assemble_front([cfg], depth=3, num_patches=16)
    assert plots._schedule_xy(front.configs[0]) == ([0, 1, 2, 3], [17, 9, 7, 7])


def _three_point_front() -> FrontArtifact:
    flat = [0.5] * 5
    configs = [
        hand_config("big", {"awgn": [0.9] * 5}, edge_gflops=0.5, server_gflops=0.5, source="reference"),
        hand_config("knee", {"awgn": [0.85] * 5}, edge_gflops=0.1, server_gflops=0.1),
        hand_config("tiny", {"awgn": flat}, edge_gflops=0.025, server_gflops=0.025),
        hand_config("meh", {"awgn": [0.55] * 5}, edge_gflops=0.2, server_gflops=0.2),
    ]
    return assemble_front(configs)


def test_find_highlights_picks_best_cheapest_and_knee() -> None:
    front = _three_point_front()
    h = plots.find_highlights(front.configs, "awgn", "val")
    assert (h.most_accurate, h.cheapest, h.knee) == ("big", "tiny", "knee")
    assert h.items() == [("most accurate", "big"), ("knee", "knee"), ("cheapest", "tiny")]


def test_find_highlights_has_no_knee_below_the_chord() -> None:
    configs = [
        hand_config("a", {"awgn": [0.9] * 5}, edge_gflops=0.5, server_gflops=0.5),
        hand_config("b", {"awgn": [0.55] * 5}, edge_gflops=0.4, server_gflops=0.4),
        hand_config("c", {"awgn": [0.5] * 5}, edge_gflops=0.05, server_gflops=0.05),
    ]
    h = plots.find_highlights(assemble_front(configs).configs, "awgn", "val")
    assert h.knee is None


def test_front_ids_are_sorted_by_gflops_and_filtered_by_snr() -> None:
    front = _three_point_front()
    assert plots.front_ids(front, "awgn") == ["tiny", "knee", "big"]  # "meh" is dominated by "knee"
    assert plots.front_ids(front, "awgn", 0.0) == ["tiny", "knee", "big"]
    assert plots.front_ids(front, "awgn", 7.0) == []


def test_envelope_keeps_the_staircase() -> None:
    assert plots.envelope([(3.0, 70.0), (1.0, 50.0), (2.0, 40.0), (1.0, 60.0)]) == ([1.0, 3.0], [60.0, 70.0])


def test_thin_out_keeps_required_ids_and_respects_the_limit() -> None:
    ids = [f"c{i}" for i in range(20)]
    out = plots.thin_out(ids, keep=["c7", "c13"], limit=5)
    assert len(out) == 5
    assert {"c7", "c13", "c0", "c19"} <= set(out)
    assert out == sorted(out, key=ids.index)
    assert plots.thin_out(ids[:3], keep=[], limit=5) == ids[:3]


def test_policy_grid_agrees_with_select_and_marks_infeasible_cells() -> None:
    front = small_front()
    pg = plots.policy_grid(front, "rayleigh", width=9, height=7)
    fastest = min(cfg.latency.total_ms for cfg in front.configs)
    assert pg.fastest_ms == pytest.approx(fastest)
    for i, lat in enumerate(pg.latencies):
        for j, snr in enumerate(pg.snrs):
            d = select(front, snr, lat, channel="rayleigh")
            if d.feasible:
                assert d.predicted_accuracy is not None
                assert pg.accuracy[i][j] == pytest.approx(100 * d.predicted_accuracy.mean)
                assert pg.ids[pg.choice[i][j]] == d.config_id
            else:
                assert pg.choice[i][j] == -1
    assert pg.choice[0][0] == -1, "the lowest budget on the axis is below the fastest configuration"
    assert pg.choice[-1][-1] >= 0


def test_load_convergence_rejects_a_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "convergence.json"
    bad.write_text(json.dumps({"methods": {"botorch": [{"n_evals": 1}]}}))
    with pytest.raises(plots.PlotInputError, match="botorch"):
        plots.load_convergence(bad)
    bad.write_text(json.dumps({"methods": {"botorch": [{"n_evals": 1, "hypervolume": 0.5}]},
                               "ref_point": ["x"]}))
    with pytest.raises(plots.PlotInputError, match="ref_point"):
        plots.load_convergence(bad)
    bad.write_text("{not json")
    with pytest.raises(plots.PlotInputError, match="not valid JSON"):
        plots.load_convergence(bad)


# ------------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def cli() -> typer.Typer:
    return make_cli()


def test_cli_lists_every_file_it_wrote(cli_on_build: Result, build_plots: list[Path]) -> None:
    assert cli_on_build.output.startswith("wrote 10 files to ")
    assert len(build_plots) == 10
    assert {p.name for p in build_plots} == {f"{s}.{e}" for s in FRONT_STEMS | {"convergence"}
                                             for e in ("png", "svg")}
    assert all(p.is_file() for p in build_plots)


def test_cli_requires_out(cli: typer.Typer, build_dir: Path) -> None:
    result = runner.invoke(cli, ["plot", str(build_dir)])
    assert result.exit_code != 0
    assert "--out" in result.output


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", "does not exist"),
        ("not_json", "malformed: not valid JSON"),
        ("checksum", "checksum: checksum mismatch"),
        ("version", "version: schema_version"),
        ("empty_dir", "has no front.json"),
        ("bad_convergence", "convergence.json"),
    ],
)
def test_cli_gives_a_clean_error_for_bad_input(
    cli: typer.Typer, tmp_path: Path, damage: str, expected: str
) -> None:
    src = _damaged_input(tmp_path, damage)
    result = runner.invoke(cli, ["plot", str(src), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ")
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _damaged_input(tmp_path: Path, damage: str) -> Path:
    """A path that is wrong in the way ``damage`` names."""
    front_path = write_front(tmp_path / "front.json", small_front(n_configs=4))
    if damage == "missing":
        return tmp_path / "nope.json"
    if damage == "not_json":
        front_path.write_text("{ this is not json")
        return front_path
    if damage in ("checksum", "version"):
        doc = json.loads(front_path.read_text())
        if damage == "checksum":
            doc["configs"][0]["tokens_sent"] += 1
        else:
            doc["schema_version"] = "paretoctl.front/99"
        front_path.write_text(json.dumps(doc))
        return front_path
    if damage == "empty_dir":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if damage == "bad_convergence":
        build = write_build_dir(tmp_path / "build", load_front(front_path))
        (build / "convergence.json").write_text(json.dumps({"methods": {}}))
        return build
    raise AssertionError(damage)


def test_plot_is_registered_on_the_real_cli() -> None:
    from paretoctl.cli import app

    names = {cmd.name or (cmd.callback.__name__ if cmd.callback else "") for cmd in app.registered_commands}
    assert "plot" in names
