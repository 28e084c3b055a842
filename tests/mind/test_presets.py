"""The packaged presets load, and configs/demo.yaml says what `mindcore demo` runs."""
import pytest

from mindcore.mind.config import ConfigError, load_config
from mindcore.mind.demo import DEMO


def test_demo_preset_matches_the_demo():
    cfg = load_config("demo")
    for key, value in DEMO.items():
        assert getattr(cfg, key) == value, key


def test_study_preset_loads_and_is_longer():
    assert load_config("study").steps > load_config("demo").steps


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
