"""Tests of ``paretoctl.plots`` and the ``paretoctl plot`` command.

The command and the schedule figure are tested on a real smoke build (``paretoctl build`` on
configs/smoke.yaml, made once per session); figures that need several channels, and hand-computed
answers, use synthetic fronts from ``tests.fronts``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
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
from paretoctl.exitcodes import ExitCode
from paretoctl.models.schedule import tokens_after_layers
from paretoctl.plots.policy_grid import PolicyGrid, choice_boundaries
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, load_front
from tests.fronts import assemble_front, hand_config, make_front, write_front
from tests.paretoctl.builds import ROOT, write_build_dir

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
def smoke_front(smoke_build_dir: Path) -> FrontArtifact:
    return load_front(smoke_build_dir / "front.json")


@pytest.fixture(scope="module")
def cli_on_build(smoke_build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Result:
    """``paretoctl plot BUILD_DIR --out DIR`` on the real smoke build, run once for the module."""
    out = tmp_path_factory.mktemp("figures")
    return runner.invoke(make_cli(), ["plot", str(smoke_build_dir), "--out", str(out)])


@pytest.fixture(scope="module")
def build_plots(cli_on_build: Result) -> list[Path]:
    """The files the command says it wrote."""
    assert cli_on_build.exit_code == 0, cli_on_build.output
    return [Path(line.strip()) for line in cli_on_build.stdout.splitlines() if line.startswith("  ")]


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
# Files, from the real smoke build


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
    assert not [p for p in build_plots[0].parent.iterdir() if p.name.startswith(".")], "temp files left"


def test_front_file_gives_the_front_figures_without_convergence(smoke_build_dir: Path, tmp_path: Path) -> None:
    written = plots.plot_path(smoke_build_dir / "front.json", tmp_path / "out", split="val")
    assert {p.stem for p in written} == FRONT_STEMS
    assert all(p.parent == tmp_path / "out" for p in written)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_output_is_byte_for_byte_reproducible(smoke_front: FrontArtifact, fmt: str, tmp_path: Path) -> None:
    a = plots.save(plots.schedule_figure(smoke_front), tmp_path / "a", "s", (fmt,))[0]
    b = plots.save(plots.schedule_figure(smoke_front), tmp_path / "b", "s", (fmt,))[0]
    assert a.read_bytes() == b.read_bytes()
    assert plots.render(plots.policy_map_figure(smoke_front), (fmt,)) == \
        plots.render(plots.policy_map_figure(smoke_front), (fmt,))


def test_written_files_equal_the_rendered_bytes(build_plots: list[Path], smoke_front: FrontArtifact) -> None:
    """The command's schedules files are exactly what rendering the figure again gives."""
    rendered = plots.render(plots.schedule_figure(smoke_front))
    for path in build_plots:
        if path.stem == "schedules":
            assert path.read_bytes() == rendered[path.suffix[1:]]


# ------------------------------------------------------------------------------------------------
# The schedule figure on the real build: tokens entering each block, per the front/2 schema


def test_schedule_lines_are_non_increasing_and_match_an_independent_count(smoke_front: FrontArtifact) -> None:
    prov = smoke_front.provenance
    n_all = prov.num_patches + prov.num_prefix_tokens
    ax = plots.schedule_figure(smoke_front).get_axes()[0]
    by_id = plots.config_map(smoke_front)
    schedule_lines = [ln for ln in ax.get_lines() if len(line_xy(ln)[0]) == prov.depth + 1]
    labels = [str(ln.get_label()).split(":")[0] for ln in schedule_lines]
    assert smoke_front.reference_config_id in labels and len(labels) >= 3
    for label, ln in zip(labels, schedule_lines, strict=True):
        xs, ys = line_xy(ln)
        assert xs == list(range(prov.depth + 1))
        assert all(b <= a for a, b in itertools.pairwise(ys)), f"{label}: tokens rise: {ys}"
        cfg = by_id[label]
        # Independent count: models.schedule walks r from the input tokens, never reading tokens_per_layer.
        want = [n_all, *tokens_after_layers(cfg.r, prov.num_patches, prov.num_prefix_tokens)]
        assert ys == want, label
        assert ys[prov.split_index] == cfg.tokens_sent, "the height at the split is what is sent"
    assert any(line_xy(ln)[1][-1] < n_all for ln in schedule_lines), "the build merged nothing at all"


def test_schedule_figure_marks_the_split_and_starts_from_all_tokens(smoke_front: FrontArtifact) -> None:
    prov = smoke_front.provenance
    ax = plots.schedule_figure(smoke_front).get_axes()[0]
    xy = [line_xy(ln) for ln in ax.get_lines()]
    split = float(prov.split_index)
    assert sum(x == [split, split] for x, _ in xy) == 1, "one vertical line at the split"
    assert {y[0] for x, y in xy if len(x) == prov.depth + 1} == {prov.num_patches + prov.num_prefix_tokens}
    assert ax.get_ylabel() == "Tokens left (class token included)"


def test_tokens_left_reads_tokens_entering_each_block() -> None:
    cfg = hand_config("c", {"awgn": [0.5] * 5}, depth=3, proportions=[1.0, 0.5, 0.0], num_patches=16)
    # 16 patches + cls: block 0 merges 8 (-> 9 left), block 1 merges round(0.5 * 4) = 2 (-> 7), block 2 none.
    front = assemble_front([cfg], depth=3, num_patches=16)
    assert front.configs[0].tokens_per_layer == [17, 9, 7]
    assert plots.tokens_left(front.configs[0]) == ([0, 1, 2, 3], [17, 9, 7, 7])


def test_select_schedules_thins_to_the_limit_and_keeps_the_highlights() -> None:
    front = small_front(n_configs=30)
    sel = plots.select_schedules(front, limit=4)
    assert len(sel.shown) == 4 and sel.reference == "unmerged"
    assert "unmerged" not in sel.shown
    by_id = plots.config_map(front)
    union = sorted({i for k in ("awgn", "rayleigh") for i in plots.front_ids(front, k)} - {"unmerged"})
    assert sel.pareto_count == len(union) > 4
    for kind in ("awgn", "rayleigh"):
        h = plots.find_highlights([by_id[i] for i in union], kind, "val")
        assert {h.most_accurate, h.cheapest} <= set(sel.shown)


# ------------------------------------------------------------------------------------------------
# What the other figures contain


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


def test_convergence_figure_has_one_line_per_method_of_the_real_build(smoke_build_dir: Path) -> None:
    doc = json.loads((smoke_build_dir / "convergence.json").read_text())
    conv = plots.load_convergence(smoke_build_dir / "convergence.json")
    assert set(conv.methods) == set(doc["methods"])
    assert conv.ref_point == [float(v) for v in doc["ref_point"]]
    for name, rows in doc["methods"].items():
        assert conv.methods[name] == sorted((r["n_evals"], r["hypervolume"]) for r in rows)
    ax = plots.convergence_figure(conv.methods).get_axes()[0]
    assert len(ax.get_lines()) == len(doc["methods"])
    assert "BoTorch qLogNEHVI" in legend_texts(ax)
    assert "evaluations" in ax.get_xlabel()


# ------------------------------------------------------------------------------------------------
# Data selection works without matplotlib


def test_data_selection_runs_without_matplotlib(smoke_build_dir: Path, smoke_front: FrontArtifact) -> None:
    """The data modules answer the same in an interpreter where ``import matplotlib`` fails."""
    code = (
        "import json, sys\n"
        "sys.modules['matplotlib'] = None  # any import of it now raises ImportError\n"
        "import paretoctl.plots as P\n"
        f"src = P.read_plot_input({str(smoke_build_dir)!r})\n"
        "f = src.front\n"
        "pg = P.policy_grid(f, 'awgn', width=5, height=4)\n"
        "print(json.dumps({'shown': P.select_schedules(f).shown, 'front': P.front_ids(f, 'awgn'),\n"
        "                  'tokens': [P.tokens_left(c)[1] for c in f.configs], 'choice': pg.choice,\n"
        "                  'methods': sorted(src.convergence.methods)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    pg = plots.policy_grid(smoke_front, "awgn", width=5, height=4)
    assert got == {"shown": plots.select_schedules(smoke_front).shown,
                   "front": plots.front_ids(smoke_front, "awgn"),
                   "tokens": [plots.tokens_left(c)[1] for c in smoke_front.configs],
                   "choice": pg.choice, "methods": ["botorch"]}


# ------------------------------------------------------------------------------------------------
# Pure helpers, against hand-computed answers


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


def test_choice_boundaries_separate_feasible_neighbours_only() -> None:
    # Cells centred on SNR 0, 1 (edges at -0.5, 0.5, 1.5) and latency 10, 20 ms (edges 5, 15, 25).
    pg = PolicyGrid(snrs=[0.0, 1.0], latencies=[10.0, 20.0], accuracy=[[50.0, 60.0], [float("nan"), 60.0]],
                    choice=[[0, 1], [-1, 1]], ids=["a", "b"], fastest_ms=12.0)
    # Only the two feasible cells of the lower row differ; the infeasible cell draws no boundary.
    assert choice_boundaries(pg) == [[(0.5, 5.0), (0.5, 15.0)]]


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
    bad.write_text('{"methods": {"botorch": [{"n_evals": 1, "hypervolume": NaN}]}}')
    with pytest.raises(plots.PlotInputError, match="NaN"):
        plots.load_convergence(bad)
    with pytest.raises(plots.PlotInputError, match="cannot read convergence file"):
        plots.load_convergence(tmp_path / "absent.json")


# ------------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def cli() -> typer.Typer:
    return make_cli()


def test_cli_lists_every_file_it_wrote(cli_on_build: Result, build_plots: list[Path]) -> None:
    assert cli_on_build.stdout.startswith("wrote 10 files to ")
    assert len(build_plots) == 10
    assert {p.name for p in build_plots} == {f"{s}.{e}" for s in FRONT_STEMS | {"convergence"}
                                             for e in ("png", "svg")}
    assert all(p.is_file() for p in build_plots)


def test_cli_requires_out(cli: typer.Typer, smoke_build_dir: Path) -> None:
    result = runner.invoke(cli, ["plot", str(smoke_build_dir)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--out" in result.output


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", "does not exist"),
        ("not_json", "malformed: not valid JSON"),
        ("checksum", "checksum: checksum mismatch"),
        ("version", "version: schema_version"),
        ("empty_dir", "has no front.json"),
        ("bad_convergence", "convergence.json: expected an object"),
        ("nan_convergence", "convergence file is not valid JSON"),
    ],
)
def test_cli_gives_one_clean_error_line_for_bad_input(
    cli: typer.Typer, tmp_path: Path, damage: str, expected: str
) -> None:
    src = _damaged_input(tmp_path, damage)
    out = tmp_path / "figs"
    result = runner.invoke(cli, ["plot", str(src), "--out", str(out)])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists(), "nothing is written for bad input"


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
    if damage in ("bad_convergence", "nan_convergence"):
        build = write_build_dir(tmp_path / "build", load_front(front_path))
        text = json.dumps({"methods": {}}) if damage == "bad_convergence" else \
            '{"methods": {"botorch": [{"n_evals": 4, "hypervolume": NaN}]}}'
        (build / "convergence.json").write_text(text)
        return build
    raise AssertionError(damage)


def test_cli_cannot_write_into_a_file(cli: typer.Typer, tmp_path: Path) -> None:
    src = write_front(tmp_path / "front.json", small_front(n_configs=4, channels=("awgn",)))
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("keep me\n")
    result = runner.invoke(cli, ["plot", str(src), "--out", str(blocker)])
    assert result.exit_code == ExitCode.FAILED, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(blocker) in lines[0]
    assert blocker.read_text() == "keep me\n"


def test_a_write_failing_half_way_leaves_whole_files_only(cli: typer.Typer, tmp_path: Path) -> None:
    """The 7th file cannot be replaced: the command fails with 3 and leaves no partial or temp file."""
    src = write_front(tmp_path / "front.json", small_front(n_configs=4, channels=("awgn",)))
    out = tmp_path / "figs"
    (out / "schedules.png").mkdir(parents=True)  # a directory where a figure should go
    result = runner.invoke(cli, ["plot", str(src), "--out", str(out)])
    assert result.exit_code == ExitCode.FAILED, result.output
    assert result.stderr.startswith("error: cannot write figures to ")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["front.png", "front.svg", "accuracy_vs_snr.png", "accuracy_vs_snr.svg",
                            "policy_map.png", "policy_map.svg", "schedules.png"]), names
    for name in names:
        if name.endswith(".png") and name != "schedules.png":
            assert_png(out / name)
        elif name.endswith(".svg"):
            assert_svg(out / name)


def test_cli_without_matplotlib_says_how_to_install_it(tmp_path: Path) -> None:
    src = write_front(tmp_path / "front.json", small_front(n_configs=3, channels=("awgn",)))
    code = "import sys; sys.modules['matplotlib'] = None\nfrom paretoctl.cli import app; app()"
    proc = subprocess.run([sys.executable, "-c", code, "plot", str(src), "--out", str(tmp_path / "f")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert proc.stderr.startswith("error: plotting needs matplotlib: pip install 'paretoctl[plot]'")
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "f").exists()


def test_plot_is_registered_on_the_real_cli() -> None:
    from paretoctl.cli import app

    names = {cmd.name or (cmd.callback.__name__ if cmd.callback else "") for cmd in app.registered_commands}
    assert "plot" in names


# ------------------------------------------------------------------------------------------------
# Threshold (input-adaptive) configurations


def marker_vertices(marker: str) -> Any:
    from matplotlib.markers import MarkerStyle

    style = MarkerStyle(marker)
    return style.get_path().transformed(style.get_transform()).vertices


def scatters_with(ax: Axes, marker: str) -> list[Any]:
    """The scatter collections of ``ax`` drawn with ``marker``."""
    want = marker_vertices(marker)
    return [c for c in ax.collections if hasattr(c, "get_paths") and c.get_paths()
            and c.get_paths()[0].vertices.shape == want.shape and np.allclose(c.get_paths()[0].vertices, want)]


def mixed_front() -> FrontArtifact:
    """Fixed schedules, threshold configurations and one constant-threshold mark (source uniform)."""
    base = small_front(n_configs=10, n_thresholds=4, channels=("awgn",))
    doc = base.model_dump(mode="json")
    mark = hand_config("thr-mark", {"awgn": [0.3, 0.4, 0.5, 0.6, 0.7]}, depth=6, num_patches=16, split_index=2,
                       proportions=[0.5] * 6, edge_gflops=0.01, server_gflops=0.02, channel_uses=300,
                       source="uniform", thresholds=[0.9] * 6)
    return assemble_front([*doc["configs"], mark], depth=6, num_patches=16, split_index=2,
                          reference_config_id="unmerged")


def test_front_figure_draws_threshold_configs_as_diamonds_and_constant_thresholds_as_plus() -> None:
    front = mixed_front()
    by_id = plots.config_map(front)
    ax = plots.front_figure(front, "val").get_axes()[0]
    diamonds = scatters_with(ax, "D")
    grid = front.provenance.snr_grid_db
    want_sets = []
    for snr in grid:
        ids = [i for i in plots.front_ids(front, "awgn", snr) if by_id[i].merging == "thresholds"]
        if ids:
            want_sets.append(sorted((by_id[i].gflops.total, plots.accuracy_at(by_id[i], "awgn", "val", snr))
                                    for i in ids))
    assert want_sets, "the synthetic front puts no threshold configuration on the front"
    got_sets = [sorted(map(tuple, np.asarray(c.get_offsets()).tolist())) for c in diamonds]
    assert sorted(got_sets) == sorted(want_sets)
    # No circle stands for a threshold configuration, and the constant-threshold mark is a "P" at every SNR.
    thr_points = {(by_id[i].gflops.total) for i in by_id if by_id[i].merging == "thresholds"}
    for c in scatters_with(ax, "o"):
        assert not {x for x, _ in np.asarray(c.get_offsets()).tolist()} & thr_points
    plus = scatters_with(ax, "P")
    assert len(plus) == len(grid)
    assert all(np.asarray(c.get_offsets()).tolist()[0][0] == pytest.approx(0.03) for c in plus)
    labels = [t.get_text() for lg in plots.front_figure(front).legends for t in lg.get_texts()]
    assert "Pareto-optimal, input-adaptive\n(thresholds; mean costs)" in labels
    assert "constant threshold (all blocks)" in labels
    fixed_only = [t.get_text() for lg in plots.front_figure(small_front()).legends for t in lg.get_texts()]
    assert not any("threshold" in t for t in fixed_only)


def test_tokens_left_of_a_threshold_config_is_its_mean_per_block() -> None:
    front = mixed_front()
    cfg = next(c for c in front.configs if c.merging == "thresholds")
    assert cfg.cost_distribution is not None
    blocks, tokens = plots.tokens_left(cfg)
    assert blocks == list(range(6)) and tokens == cfg.cost_distribution.tokens_per_layer_mean
    # hand_config's means are the rounded counts less 0.25 after block 0: not the integer counts
    assert tokens[1:] == [t - 0.25 for t in cfg.tokens_per_layer[1:]]


def test_schedule_figure_shows_threshold_means_and_a_threshold_panel() -> None:
    front = mixed_front()
    by_id = plots.config_map(front)
    fig = plots.schedule_figure(front)
    tokens_ax, thr_ax = fig.get_axes()
    shown = plots.select_schedules(front).shown
    adaptive = [i for i in shown if by_id[i].merging == "thresholds"]
    assert adaptive, "no threshold configuration among the lines shown"
    lines = {str(ln.get_label()).split(":")[0]: ln for ln in tokens_ax.get_lines()
             if not str(ln.get_label()).startswith("_")}
    for cid in shown:
        xs, ys = line_xy(lines[cid])
        cfg = by_id[cid]
        if cid in adaptive:
            assert cfg.cost_distribution is not None and cfg.thresholds is not None
            assert ys == cfg.cost_distribution.tokens_per_layer_mean and lines[cid].get_linestyle() == "-."
            assert "thresholds; mean" in str(lines[cid].get_label())
        else:
            assert ys == [float(t) for t in plots.tokens_left(cfg)[1]] and lines[cid].get_linestyle() == "-"
    steps = {str(ln.get_label()): ln for ln in thr_ax.get_lines() if not str(ln.get_label()).startswith("_")}
    assert set(steps) == set(adaptive)
    for cid in adaptive:
        xs, ys = line_xy(steps[cid])
        want = [min(t, 1.02) for t in by_id[cid].thresholds or []]
        assert xs == list(range(7)) and ys == [*want, want[-1]]
        assert steps[cid].get_color() == lines[cid].get_color()
    assert len(plots.schedule_figure(small_front()).get_axes()) == 1  # fixed schedules only: one panel


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_threshold_figures_are_byte_for_byte_reproducible(fmt: str) -> None:
    front = mixed_front()
    for draw in (plots.schedule_figure, plots.front_figure, plots.accuracy_snr_figure):
        assert plots.render(draw(front), (fmt,)) == plots.render(draw(front), (fmt,))


def test_plots_of_the_real_threshold_build(threshold_build_dir: Path, tmp_path: Path) -> None:
    """Every figure of a real threshold build; its schedule lines are the build's own per-block means."""
    written = plots.plot_path(threshold_build_dir, tmp_path / "figs")
    assert {p.stem for p in written} == FRONT_STEMS | {"convergence"}
    for path in written:
        assert_png(path) if path.suffix == ".png" else assert_svg(path)
    front = load_front(threshold_build_dir / "front.json")
    by_id = plots.config_map(front)
    assert {c.merging for c in front.configs} == {"proportions", "thresholds"}
    prov = front.provenance
    fig = plots.schedule_figure(front)
    tokens_ax = fig.get_axes()[0]
    labelled = {str(ln.get_label()).split(":")[0]: ln for ln in tokens_ax.get_lines()
                if not str(ln.get_label()).startswith("_")}
    shown = plots.select_schedules(front).shown
    assert any(by_id[i].merging == "thresholds" for i in shown)
    for cid in shown:
        cfg = by_id[cid]
        ys = line_xy(labelled[cid])[1]
        if cfg.cost_distribution is not None:
            assert ys == cfg.cost_distribution.tokens_per_layer_mean and len(ys) == prov.depth
            assert ys[0] == prov.num_patches + prov.num_prefix_tokens
            assert all(b <= a + 1e-9 for a, b in itertools.pairwise(ys)), f"{cid}: mean tokens rise"
            # the mean tokens entering the split block are the mean tokens sent
            assert ys[prov.split_index] == pytest.approx(cfg.cost_distribution.tokens_sent.mean)
        else:
            assert ys == [prov.num_patches + prov.num_prefix_tokens,
                          *tokens_after_layers(cfg.r, prov.num_patches, prov.num_prefix_tokens)]
    assert len(fig.get_axes()) == 2
    assert plots.render(plots.schedule_figure(front)) == plots.render(plots.schedule_figure(front))
    assert plots.render(plots.front_figure(front)) == plots.render(plots.front_figure(front))
