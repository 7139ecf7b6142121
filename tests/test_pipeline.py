"""`marinebench benchmark`: every stage runs once, and a rerun with nothing changed is all cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmark.pipeline import tree_hash

ROOT = Path(__file__).resolve().parent.parent


def _tiny_config(path: Path, model_dir: Path, seed: int = 3) -> Path:
    config = {
        "model": str(model_dir),
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "epochs": 1,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "max_length": 96,
        "seed": seed,
        "device": "cpu",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _benchmark(build: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARINEBENCH_BUILD": str(build)}
    return subprocess.run(
        [sys.executable, "-m", "benchmark", "benchmark", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_benchmark_runs_every_stage_then_reruns_from_cache(tmp_path, tiny_model_dir):
    build = tmp_path / "build"
    configs = [
        _tiny_config(tmp_path / "tiny-a.yaml", tiny_model_dir, seed=1),
        _tiny_config(tmp_path / "tiny-b.yaml", tiny_model_dir, seed=2),
    ]
    args = ["--model", str(tiny_model_dir), "--limit", "4", "--configs", *map(str, configs)]
    first = _benchmark(build, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    record = json.loads((build / "benchmark.json").read_text())
    names = [s["name"] for s in record["stages"]]
    assert names == ["dataset", "train:tiny-a", "train:tiny-b", "evaluate", "site"]
    assert not any(s["cached"] for s in record["stages"])
    for name in ("tiny-a", "tiny-b"):
        assert (build / "adapters" / name / "adapter_model.safetensors").is_file()
    run = build / "results" / tiny_model_dir.name
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "tiny-a", "tiny-b"}
    assert (build / "site" / "index.html").is_file()
    assert "Site:" in first.stdout

    started = time.perf_counter()
    second = _benchmark(build, *args)
    elapsed = time.perf_counter() - started
    assert second.returncode == 0, second.stderr[-3000:]
    record = json.loads((build / "benchmark.json").read_text())
    assert all(s["cached"] for s in record["stages"]), record
    assert elapsed < 60

    # A changed training config retrains that adapter and everything downstream of it only.
    _tiny_config(configs[1], tiny_model_dir, seed=5)
    third = _benchmark(build, *args)
    assert third.returncode == 0, third.stderr[-3000:]
    cached = {
        s["name"]: s["cached"] for s in json.loads((build / "benchmark.json").read_text())["stages"]
    }
    assert cached == {
        "dataset": True,
        "train:tiny-a": True,
        "train:tiny-b": False,
        "evaluate": False,
        "site": False,
    }


def test_failed_stage_is_reported_and_recorded(tmp_path, tiny_model_dir):
    build = tmp_path / "build"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "lora": {"r": 0}}))
    proc = _benchmark(build, "--model", str(tiny_model_dir), "--configs", str(bad))
    assert proc.returncode == 2
    assert "stage train:bad failed" in proc.stderr
    record = json.loads((build / "benchmark.json").read_text())
    assert record["failed_stage"] == "train:bad"
    assert not (build / "site").exists()


def test_tree_hash_follows_content_and_ignores_caches(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    before = tree_hash(tmp_path)
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert tree_hash(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 2\n")
    assert tree_hash(tmp_path) != before
    assert tree_hash(tmp_path / "missing") == "missing"


def test_trainings_run_in_waves_that_share_out_the_cores():
    from benchmark.pipeline import Stage, _waves

    stages = [Stage(f"train:{i}", [], {}, []) for i in range(3)]
    waves = _waves(stages, slots=2, cpus=2)
    assert [([s.name for s in wave], threads) for wave, threads in waves] == [
        (["train:0", "train:1"], 1),
        (["train:2"], 2),
    ]
    assert [threads for _, threads in _waves(stages, slots=3, cpus=2)] == [1]
    assert [threads for _, threads in _waves(stages[:1], slots=2, cpus=4)] == [4]
