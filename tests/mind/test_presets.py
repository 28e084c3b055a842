"""The packaged presets load, and configs/demo.yaml says what `mindcore demo` runs."""
import pytest

from mindcore.mind.config import ConfigError, load_config
from mindcore.mind.demo import DEMO


def test_demo_preset_matches_the_demo():
    cfg = load_config("demo")
    for key, value in DEMO.items():
        assert getattr(cfg, key) == value, key


def test_study_presets_load_and_name_a_study():
    full, lora, tiny = load_config("study"), load_config("study-lora"), load_config("study-tiny")
    assert full.student == lora.student == "smollm2-135m" and full.lora_r == 0 and lora.lora_r > 0
    assert tiny.student == "tiny-llama"
    for cfg in (full, lora, tiny):
        spec = cfg.extra["study"]
        assert spec["seeds"] >= 3 and set(spec["protocols"]) == {"equal_questions", "equal_rows"}
        assert {"single", "uniform", "consistency", "mind"} <= set(spec["modes"]) and spec["solo"]


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
