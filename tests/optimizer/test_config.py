"""Bad build configs fail before any work, with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paretoctl.optimizer.config import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _base() -> dict:
    raw = yaml.safe_load((CONFIGS / "smoke.yaml").read_text())
    raw.setdefault("timing", {})
    return raw


@pytest.mark.parametrize("name", ["default.yaml", "smoke.yaml", "deit_small_imagenet.yaml", "smoke_thresholds.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.search.budget >= 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.update(bogus=1), "bogus"),
        (lambda c: c["search"].update(budgett=3), "search.budgett"),
        (lambda c: c["search"].update(prior_mean="linear"), "search.prior_mean"),
        (lambda c: c["channel"].update(snr_grid_db=[10, 0, 20]), "channel.snr_grid_db"),
        (lambda c: c["channel"].update(snr_grid_db=[0, 0]), "channel.snr_grid_db"),
        (lambda c: c["search"].update(budget=0), "search.budget"),
        (lambda c: c.update(split_index=-1), "split_index"),
        (lambda c: c["channel"].update(kinds=[{"kind": "laser"}]), "channel.kinds.0.kind"),
        (lambda c: c["channel"].update(kinds=[{"kind": "rician", "k_factor": -1}]), "channel.kinds.0: k_factor"),
        (lambda c: c["channel"].update(kinds=[{"kind": "awgn", "k_factor": 4}]), "channel.kinds.0: channel 'awgn'"),
        (lambda c: c["channel"].update(kinds=[{"kind": "rayleigh", "block": "nope"}]), "channel.kinds.0: "),
        (lambda c: c["model"].update(kwargs=5), "model.kwargs"),
        (lambda c: c["search"].update(initial=50), "search.initial"),
        (lambda c: c["search"].update(space="tokens"), "search.space"),
        (lambda c: c["search"].update(threshold_range=[0.9, 0.8]), "search.threshold_range: must be [lo, hi]"),
        (lambda c: c["search"].update(threshold_range=[0.9, 0.9]), "search.threshold_range: must be [lo, hi]"),
        (lambda c: c["search"].update(threshold_range=[-1.5, 1.0]), "search.threshold_range: must be [lo, hi]"),
        (lambda c: c["search"].update(threshold_range=[0.5, 1.01]), "search.threshold_range: must be [lo, hi]"),
        (lambda c: c["search"].update(threshold_range=[0.5]), "search.threshold_range"),
        (lambda c: c["timing"].update(threads=0), "timing.threads"),
    ],
)
def test_bad_config_names_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = _base()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "test.yaml")
    assert field in str(err.value)
    assert "\n" not in str(err.value)  # one line


def test_override_on_empty_or_odd_yaml_names_the_field(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="channel: missing field; split_index: missing field"):
        load_config(empty, {"search.budget": 3})
    odd = tmp_path / "odd.yaml"
    odd.write_text("search: 5\n")
    with pytest.raises(ConfigError, match="search: expected a mapping"):
        load_config(odd, {"search.budget": 3})


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    raw = _base()
    raw["model"]["checkpoint"] = "weights/w.safetensors"
    raw["data"]["root"] = "/abs/fmnist"
    cfg_dir = tmp_path / "cfgs"
    cfg_dir.mkdir()
    (cfg_dir / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_dir / "c.yaml")
    assert cfg.device == str(cfg_dir / "devices" / "default.yaml")
    assert cfg.model.checkpoint == str(cfg_dir / "weights" / "w.safetensors")
    assert cfg.data.root == "/abs/fmnist"


def test_channel_spec_is_the_artifacts_with_flat_params() -> None:
    from paretoctl.service.schema import ChannelSpec as ArtifactSpec

    raw = _base()
    raw["channel"]["kinds"] = [{"kind": "rician", "k_factor": 4, "block": "token"}, {"kind": "awgn"}]
    kinds = parse_config(raw).channel.kinds
    assert isinstance(kinds[0], ArtifactSpec)
    assert kinds[0].params == {"k_factor": 4, "block": "token"} and kinds[0].label == "rician-k4"
    assert kinds[1].params == {} and kinds[1].label == "awgn"


def test_override_and_unreadable(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "smoke.yaml", {"search.budget": 5, "search.seed": 3})
    assert (cfg.search.budget, cfg.search.seed) == (5, 3)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_search_space_defaults_leave_existing_configs_unchanged() -> None:
    """Without the new keys a config searches proportions; timing runs single-threaded by default."""
    cfg = parse_config(_base(), "test.yaml")
    assert cfg.search.space == "proportions" and cfg.search.threshold_range == (0.8, 1.0)
    assert cfg.timing.threads == 1
    thresholds = load_config(CONFIGS / "smoke_thresholds.yaml")
    assert thresholds.search.space == "thresholds" and thresholds.search.threshold_range == (0.8, 1.0)
    assert thresholds.canonical()["search"]["threshold_range"] == [0.8, 1.0]  # what config.yaml records
    raw = _base()
    raw["search"].update(space="thresholds", threshold_range=[-1, 0.5])
    assert parse_config(raw, "test.yaml").search.threshold_range == (-1.0, 0.5)  # the whole closed range is allowed


def test_timing_section_gives_the_settings_the_build_times_with() -> None:
    """Every field of the config's timing section reaches the stopping rule, the statistic included."""
    from paretoctl.models.timing import TimingSettings

    raw = _base()
    raw["timing"] = {"server_batch": 4, "warmup": 2, "min_runs": 7, "max_runs": 90, "rel_ci": 0.05,
                     "max_seconds": 12.0, "statistic": "p50"}
    assert parse_config(raw, "test.yaml").timing.settings() == TimingSettings(
        server_batch=4, warmup=2, min_runs=7, max_runs=90, rel_ci=0.05, max_seconds=12.0, statistic="p50")
