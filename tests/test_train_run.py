"""End-to-end training on the tiny model: outputs per contract, determinism, resume, QLoRA,
bad input, and data-parallel under accelerate (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_model import build_tiny_llama
from train_fixtures import TINY_LORA, make_dataset, write_config

from benchmark.errors import UserError
from benchmark.train.config import load_config
from benchmark.train.trainer import train

REPO = Path(__file__).resolve().parent.parent
CONTRACT_KEYS = {
    "config_name", "config", "config_hash", "base_model", "base_model_hub_id", "dataset_path",
    "dataset_hash", "seed", "quantization", "lora", "trainable_params", "total_params",
    "trainable_pct", "tokens_seen", "wall_time_s", "tokens_per_s", "flops_per_s",
    "matmul_peak_flops", "mfu", "peak_memory_mb", "loss_per_step", "val_loss_per_epoch",
    "library_versions", "hardware", "device", "dtype", "dtype_choice", "epochs",
}  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("train")
    dataset = make_dataset(root / "dataset")
    config = write_config(root / "tiny-lora.yaml", tiny_model_dir, dataset, dtype="fp32")
    return root, config


@pytest.fixture(scope="module")
def reference_run(workdir):
    root, config_path = workdir
    return train(load_config(config_path), out_dir=root / "adapters" / "ref", progress=False)


def test_adapter_folder_matches_contract(reference_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    names = {p.name for p in reference_run.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "train_metrics.json",
    } <= names
    metrics = json.loads((reference_run / "train_metrics.json").read_text())
    assert set(metrics) >= CONTRACT_KEYS
    assert metrics["config_name"] == "tiny-lora" and metrics["seed"] == 7
    assert metrics["lora"] == TINY_LORA
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert metrics["trainable_pct"] == pytest.approx(
        100 * metrics["trainable_params"] / metrics["total_params"], abs=1e-3
    )
    steps = metrics["loss_per_step"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1)) and len(steps) == 6
    assert all({"step", "loss", "lr", "tokens"} <= set(s) for s in steps)
    assert metrics["tokens_seen"] == sum(s["tokens"] for s in steps)
    assert [v["epoch"] for v in metrics["val_loss_per_epoch"]] == [1, 2]
    assert 0 < metrics["mfu"] < 1 and metrics["matmul_peak_flops"] > 1e9
    assert metrics["dtype"] == "float32" and metrics["device"] == "cpu"
    assert metrics["dtype_choice"] == {
        "device": "cpu",
        "dtype": "float32",
        "source": "requested",
        "probe": None,
    }
    assert len(metrics["dataset_hash"]) == 64 and len(metrics["config_hash"]) == 64
    # loadable by PEFT on the base model
    adapter_cfg = json.loads((reference_run / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), reference_run
    )
    assert any("lora_A" in n for n, _ in model.named_parameters())
    # adapter card with YAML metadata
    card = (reference_run / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert (
        meta["library_name"] == "peft"
        and "lora" in meta["tags"]
        and "marine-biology" in meta["tags"]
    )
    assert meta["base_model"] == str(tiny_model_dir.resolve()) and meta["datasets"]


def test_training_learns(reference_run):
    metrics = json.loads((reference_run / "train_metrics.json").read_text())
    losses = [s["loss"] for s in metrics["loss_per_step"]]
    assert min(losses[-2:]) < losses[0]


def test_same_seed_gives_bitwise_identical_adapter(workdir, reference_run):
    root, config_path = workdir
    again = train(load_config(config_path), out_dir=root / "adapters" / "again", progress=False)
    a = (reference_run / "adapter_model.safetensors").read_bytes()
    assert (again / "adapter_model.safetensors").read_bytes() == a
    other = write_config(
        root / "other-seed.yaml", *_model_and_data(config_path), dtype="fp32", seed=8
    )
    different = train(load_config(other), out_dir=root / "adapters" / "other", progress=False)
    assert (different / "adapter_model.safetensors").read_bytes() != a


def test_neftune_noise_changes_training_and_stays_reproducible(workdir, reference_run):
    """NEFTune's embedding noise is drawn from the seeded RNG: a run with it differs from the
    plain run, and two runs with it are bitwise identical."""
    root, config_path = workdir
    noisy = write_config(
        root / "neftune.yaml", *_model_and_data(config_path), dtype="fp32", neftune_alpha=50.0
    )
    first = train(load_config(noisy), out_dir=root / "adapters" / "neft1", progress=False)
    second = train(load_config(noisy), out_dir=root / "adapters" / "neft2", progress=False)
    weights = (first / "adapter_model.safetensors").read_bytes()
    assert weights != (reference_run / "adapter_model.safetensors").read_bytes()
    assert (second / "adapter_model.safetensors").read_bytes() == weights
    metrics = json.loads((first / "train_metrics.json").read_text())
    assert metrics["config"]["neftune_alpha"] == 50.0


def _model_and_data(config_path: Path):
    raw = yaml.safe_load(config_path.read_text())
    return Path(raw["model"]), Path(raw["dataset"])


def _cli_env(build: Path, **extra) -> dict:
    env = {**os.environ, "MARINEBENCH_BUILD": str(build), "PYTHONPATH": str(REPO), **extra}
    return env


def test_killed_run_resumes_to_the_same_adapter(workdir, reference_run):
    root, config_path = workdir
    out = root / "adapters" / "resumed"
    cmd = [sys.executable, "-m", "benchmark", "train", "--config", str(config_path),
           "--output", str(out), "--no-progress"]  # fmt: skip
    killed = subprocess.run(
        cmd,
        env=_cli_env(root / "build", MARINEBENCH_TRAIN_KILL_AT_STEP="4"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 1, killed.stderr[-2000:]
    ckpts = root / "adapters" / ".resumed.checkpoints"
    assert [p.name for p in ckpts.glob("step-*")] == ["step-000004"]  # older ones pruned
    assert not out.exists()
    # without --resume it refuses to silently start over
    with pytest.raises(UserError, match="--resume"):
        train(load_config(config_path), out_dir=out, progress=False)
    train(load_config(config_path), out_dir=out, resume=True, progress=False)
    assert not ckpts.exists()
    assert (out / "adapter_model.safetensors").read_bytes() == (
        reference_run / "adapter_model.safetensors"
    ).read_bytes()
    resumed = json.loads((out / "train_metrics.json").read_text())
    ref = json.loads((reference_run / "train_metrics.json").read_text())
    assert [s["loss"] for s in resumed["loss_per_step"]] == [
        s["loss"] for s in ref["loss_per_step"]
    ]
    assert resumed["val_loss_per_epoch"] == ref["val_loss_per_epoch"]


def test_resume_without_checkpoint_is_an_error(workdir):
    root, config_path = workdir
    with pytest.raises(UserError, match="no checkpoint"):
        train(load_config(config_path), out_dir=root / "adapters" / "none", resume=True)


def test_qlora_nf4_trains_on_cpu(tmp_path):
    model = build_tiny_llama(tmp_path / "model64", hidden_size=64)  # 4-bit blocks need 64
    dataset = make_dataset(tmp_path / "dataset", n_train=8, n_val=2)
    config = load_config(
        write_config(
            tmp_path / "tiny-qlora.yaml", model, dataset, quantization="nf4", max_steps=2, epochs=1
        )
    )
    out = train(config, out_dir=tmp_path / "out", progress=False)
    metrics = json.loads((out / "train_metrics.json").read_text())
    # dtype auto: the CPU probe's choice (bf16 or fp32, whichever it measured faster)
    choice = metrics["dtype_choice"]
    assert metrics["quantization"] == "nf4" and choice["dtype"] == metrics["dtype"]
    if choice["probe"] is not None:
        expected = {"bf16": "bfloat16", "fp32": "float32"}[choice["probe"]["choice"]]
        assert metrics["dtype"] == expected and choice["probe"]["gflops"]
    assert len(metrics["loss_per_step"]) == 2
    assert metrics["total_params_4bit_reported"] < metrics["total_params"]
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "qlora" in card["tags"]


@pytest.mark.parametrize("problem", ["missing", "empty", "model", "rank", "module"])
def test_bad_input_fails_before_any_work(tmp_path, tiny_model_dir, problem):
    from benchmark.cli import main

    dataset = make_dataset(tmp_path / "dataset", n_train=4, n_val=2)
    extra: dict = {}
    expect = ""
    if problem == "missing":
        dataset, expect = tmp_path / "no-such-dataset", "dataset build"
    elif problem == "empty":
        make_dataset(dataset, n_train=0, n_val=2)
        expect = "no rows"
    elif problem == "model":
        extra["model"], expect = "no-such-model", "unknown model"
    elif problem == "rank":
        extra["lora"], expect = {"r": 0}, "lora.r"
    else:
        extra["lora"], expect = {"target_modules": ["q_proj", "query_key_value"]}, "query_key_value"
    config = write_config(tmp_path / "bad.yaml", tiny_model_dir, dataset, **extra)
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--output", str(out)]) == 2
    assert not out.exists() and not (tmp_path / ".out.checkpoints").exists()
    with pytest.raises(UserError, match=expect):
        from benchmark.train.trainer import preflight

        preflight(load_config(config))


def test_data_parallel_two_cpu_processes(workdir, tmp_path):
    root, config_path = workdir
    out = tmp_path / "ddp"
    # --multi_gpu picks accelerate's torchrun launcher; with no GPU it trains MULTI_CPU on gloo
    # (`--cpu` would select the single-process launcher).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "benchmark", "train", "--config", str(config_path), "--output", str(out),
           "--no-progress"]  # fmt: skip
    done = subprocess.run(
        cmd, env=_cli_env(tmp_path / "build"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("adapter written") == 1  # only rank 0 reports and writes
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["hardware"]["world_size"] == 2
    # 12 examples, batch 4 -> 3 batches per epoch; 2 ranks need one each -> 1 step per epoch
    assert len(metrics["loss_per_step"]) == 2
    assert (out / "adapter_model.safetensors").is_file()
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())


def test_adapter_config_bytes_do_not_follow_the_string_hash_seed(workdir, reference_run):
    """PEFT keeps target_modules as a set; the folder's bytes (and every cache keyed on its
    digest) must not depend on the process's hash seed. All seven projections, so an unsorted
    list would match by chance once in 5040 runs."""
    root, config_path = workdir
    seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    raw = yaml.safe_load(config_path.read_text())
    raw["lora"]["target_modules"] = seven
    raw["max_steps"] = 1
    config = root / "seven.yaml"
    config.write_text(yaml.safe_dump(raw))
    outs = []
    for seed in ("1", "2"):
        out = root / "adapters" / f"hashseed-{seed}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmark",
                "train",
                "--config",
                str(config),
                "--output",
                str(out),
                "--no-progress",
            ],  # fmt: skip
            env=_cli_env(root / "build", PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append((out / "adapter_config.json").read_bytes())
    assert outs[0] == outs[1]
    assert json.loads(outs[0])["target_modules"] == sorted(seven)
