"""Bad build configs fail before any work, with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paretoctl.optimizer.config import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _base() -> dict:
    return yaml.safe_load((CONFIGS / "smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["default.yaml", "smoke.yaml", "deit_small_imagenet.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.search.budget >= 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.update(bogus=1), "bogus"),
        (lambda c: c["search"].update(budgett=3), "search.budgett"),
        (lambda c: c["channel"].update(snr_grid_db=[10, 0, 20]), "channel.snr_grid_db"),
        (lambda c: c["channel"].update(snr_grid_db=[0, 0]), "channel.snr_grid_db"),
        (lambda c: c["search"].update(budget=0), "search.budget"),
        (lambda c: c.update(split_index=-1), "split_index"),
        (lambda c: c["channel"].update(kinds=[{"kind": "laser"}]), "channel.kinds.0.kind"),
        (lambda c: c["channel"].update(kinds=[{"kind": "rician", "k_factor": -1}]), "channel.kinds.0.k_factor"),
        (lambda c: c["search"].update(initial=50), "search.initial"),
    ],
)
def test_bad_config_names_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = _base()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "test.yaml")
    assert field in str(err.value)


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
