"""Training configs: shipped configs load, defaults fill every knob, bad keys/values are named."""

from __future__ import annotations

import pytest

from benchmark.paths import CONFIGS_DIR
from benchmark.train.config import ALL_LINEAR, ConfigError, load_config, resolve_config_arg

SHIPPED = ["smollm2-lora-r16", "smollm2-qlora-r16", "smollm2-lora-r8", "tinyllama-qlora-r16"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    config = load_config(CONFIGS_DIR / f"{name}.yaml")
    assert config.name == name
    assert config.lora.r > 0 and config.epochs > 0
    assert set(config.lora.target_modules) == set(ALL_LINEAR)


def test_shipped_recipes_match_the_issue():
    default = load_config(resolve_config_arg("smollm2-lora-r16"))
    assert (default.lora.r, default.lora.alpha, default.lora.dropout) == (16, 32, 0.05)
    assert default.quantization is None and default.model == "smollm2-135m-instruct"
    assert load_config(resolve_config_arg("smollm2-qlora-r16")).quantization == "nf4"
    assert load_config(resolve_config_arg("smollm2-lora-r8")).lora.r == 8
    tiny = load_config(resolve_config_arg("tinyllama-qlora-r16"))
    assert tiny.model == "tinyllama-1.1b-chat" and tiny.quantization == "nf4"


def test_empty_file_gets_every_default_and_name_from_stem(tmp_path):
    path = tmp_path / "my-run.yaml"
    path.write_text("")
    config = load_config(path)
    assert config.name == "my-run"
    assert config.lr_schedule == "cosine" and config.batch_size == 8 and config.seed == 42
    assert config.lora.target_modules == ALL_LINEAR


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("learning_rat: 0.1\n", "learning_rat"),
        ("lora:\n  rank: 4\n", "lora.rank"),
        ("lora:\n  r: 0\n", "lora.r"),
        ("lora:\n  r: -3\n", "lora.r"),
        ("epochs: true\n", "epochs"),
        ("epochs: 0\n", "epochs"),
        ("lr_schedule: exponential\n", "lr_schedule"),
        ("quantization: int3\n", "quantization"),
        ("dtype: fp8\n", "dtype"),
        ("device: tpu\n", "device"),
        ("batch_size: eight\n", "batch_size"),
        ("warmup_ratio: 1.5\n", "warmup_ratio"),
        ("lora:\n  target_modules: []\n", "lora.target_modules"),
        ("lora:\n  dropout: 1.0\n", "lora.dropout"),
        ("neftune_alpha: 0\n", "neftune_alpha"),
        ("neftune_alpha: five\n", "neftune_alpha"),
    ],
)
def test_bad_key_or_value_names_key_and_file(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"'{key}'" in str(err.value) and str(path) in str(err.value)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_hash_tracks_recipe_not_description(tmp_path):
    a, b, c = (tmp_path / f"{n}.yaml" for n in "abc")
    a.write_text("name: x\nlearning_rate: 0.001\ndescription: one\n")
    b.write_text("name: x\nlearning_rate: 0.001\ndescription: two\n")
    c.write_text("name: x\nlearning_rate: 0.002\n")
    assert load_config(a).config_hash == load_config(b).config_hash
    assert load_config(a).config_hash != load_config(c).config_hash
