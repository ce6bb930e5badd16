"""The dedup section of the build config."""

from __future__ import annotations

import pytest

from openwit.config import load_build_config
from openwit.errors import ConfigError


def test_defaults_are_the_measured_ones():
    config = load_build_config(None).dedup
    assert config.near_duplicate_radius == 4
    assert config.near_duplicate_dhash_radius == 14
    assert (config.eval_phash_radius, config.eval_dhash_radius) == (8, 14)
    assert config.eval_mirror and config.eval_crop_steps == [0.04, 0.08, 0.12]
    assert config.decontaminate is False


def test_dhash_checks_can_be_turned_off_from_yaml(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("dedup:\n  eval_dhash_radius: null\n  near_duplicate_dhash_radius: null\n")
    config = load_build_config(path).dedup
    assert config.eval_dhash_radius is None and config.near_duplicate_dhash_radius is None


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("dedup:\n  eval_crop_steps: [0.6]\n", "dedup.eval_crop_steps"),
        ("dedup:\n  near_duplicate_radius: 40\n", "dedup.near_duplicate_radius"),
        ("dedup:\n  eval_radius: 3\n", "dedup.eval_radius"),
    ],
)
def test_bad_dedup_values_name_the_key(tmp_path, body, key):
    path = tmp_path / "b.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_build_config(path)
