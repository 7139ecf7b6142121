"""`marinebench benchmark`: every stage runs once, and a rerun with nothing changed is all cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmark.fingerprint import FINGERPRINT_FILE, code_closure, folder_digest, package_versions

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("dataset", "train:tiny-a", "train:tiny-b", "evaluate", "site")


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


def _benchmark(
    build: Path, *args: str, root: Path = ROOT, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARINEBENCH_BUILD": str(build), **(env or {})}
    if root != ROOT:  # a copy of the project: its code, not the installed one, runs
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "benchmark", "benchmark", *args],
        cwd=root,
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
    first = _benchmark(build, *args, env={"MARINEBENCH_PROGRESS_INTERVAL": "0"})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # stdout is a pipe here, as in a CI log: the trainings running side by side each print
    # plain progress lines while they run, then one when they end.
    for name in ("train:tiny-a", "train:tiny-b"):
        lines = re.findall(rf"^\[benchmark\] {name}: (.*)$", first.stdout, re.M)
        assert lines[1].startswith("started, 1 thread(s)"), lines
        assert any(re.match(r"(starting|step \d+/3)", line) for line in lines), lines
        assert re.match(r"done in \d+(\.\d)?s", lines[-1]), lines
    # then the evaluation says which model it is on, and lm-eval shows its request bars
    for model in ("base", "tiny-a", "tiny-b"):
        assert f"evaluating {model} on marine" in first.stderr
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


def test_folder_digest_follows_content_and_ignores_caches_and_fingerprint(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    before = folder_digest(tmp_path)
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / FINGERPRINT_FILE).write_text("{}")
    assert folder_digest(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 2\n")
    assert folder_digest(tmp_path) != before
    assert folder_digest(tmp_path / "missing") == "missing"


def test_code_closure_follows_lazy_and_relative_imports_only(tmp_path):
    pkg = tmp_path / "benchmark"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "data").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "data" / "table.json").write_text("{}")
    (pkg / "sub" / "cli.py").write_text(
        "import yaml\nfrom . import helper\n\ndef run():\n    from benchmark import lazy\n"
        "    importlib.import_module('benchmark.plugin')\n"
    )
    (pkg / "sub" / "helper.py").write_text("import json\nfrom ..deep import thing\n")
    (pkg / "deep.py").write_text("import numpy as np\nthing = 1\n")
    (pkg / "lazy.py").write_text("")
    (pkg / "plugin.py").write_text("")
    (pkg / "unused.py").write_text("")
    code, modules = code_closure(["benchmark.sub.cli"], root=tmp_path)
    assert set(code) == {
        "benchmark/__init__.py",
        "benchmark/sub/__init__.py",
        "benchmark/sub/cli.py",
        "benchmark/sub/helper.py",
        "benchmark/deep.py",
        "benchmark/lazy.py",
        "benchmark/plugin.py",
        "benchmark/data/table.json",
    }
    assert modules == {"yaml", "numpy"}  # json is the standard library's
    versions = package_versions(modules)
    assert versions["pyyaml"] and versions["numpy"]


def test_stage_closures_hold_the_code_each_stage_runs():
    """The files the issue found outside every stage's hand-written key are now inside."""
    train, _ = code_closure(["benchmark.train.cli"])
    evaluate, _ = code_closure(["benchmark.evaluation.cli", ROOT / "tasks" / "utils.py"])
    site, site_modules = code_closure(["benchmark.leaderboard.cli"])
    for shared in ("benchmark/models.py", "benchmark/device.py", "benchmark/hashing.py"):
        assert shared in train and shared in evaluate
    assert "benchmark/atomic.py" in train and "benchmark/scorers.py" in evaluate
    assert not any(f.startswith(("benchmark/train/", "benchmark/evaluation/")) for f in site)
    assert "benchmark/models.py" not in site and "torch" not in site_modules


def _copy_project(dest: Path) -> Path:
    """A copy of the project's code and sources, so a test can change them and see what reruns."""
    for name in ("benchmark", "tasks", "site", "datasets_src", "configs"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


_DRY_RUNS = """
import contextlib, importlib, io, json, re, sys
from pathlib import Path
from benchmark.cli import build_parser

args, probes = sys.argv[1:-1], json.loads(sys.argv[-1])

def would_run(extra_path=None):
    if extra_path:
        sys.path.insert(0, extra_path)
        importlib.invalidate_caches()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        parsed = build_parser().parse_args(["benchmark", *args, "--dry-run"])
        assert parsed.func(parsed) == 0
    if extra_path:
        sys.path.remove(extra_path)
    text = out.getvalue()
    found = re.findall(r"^\\[benchmark\\] (\\S+): (would run|may run|fingerprint unchanged)", text, re.M)
    assert len(found) == 5, text
    return sorted(name for name, verb in found if verb == "would run")

result = {}
for label, path, line, extra in probes:
    before = Path(path).read_text() if path else None
    if path:
        Path(path).write_text(before + line)
    result[label] = would_run(extra)
    if path:
        Path(path).write_text(before)
print(json.dumps(result))
"""


def _dry_runs(build: Path, args: list[str], root: Path, probes: list) -> dict[str, set[str]]:
    """For each (label, file to append a line to, line, extra sys.path entry): the stages whose
    own fingerprint a dry run finds changed; one process runs them all, in the project copy."""
    env = {**os.environ, "MARINEBENCH_BUILD": str(build), "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", _DRY_RUNS, *args, json.dumps(probes)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {label: set(names) for label, names in json.loads(proc.stdout.splitlines()[-1]).items()}


def _edit(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line)


def _record(build: Path) -> dict[str, bool]:
    stages = json.loads((build / "benchmark.json").read_text())["stages"]
    return {s["name"]: s["cached"] for s in stages}


def test_code_package_and_weights_changes_rerun_exactly_the_stages_they_affect(
    tmp_path, tiny_model_dir
):
    root = _copy_project(tmp_path / "project")
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    build = tmp_path / "build"
    configs = [
        _tiny_config(tmp_path / "tiny-a.yaml", model, seed=1),
        _tiny_config(tmp_path / "tiny-b.yaml", model, seed=2),
    ]
    args = ["--model", str(model), "--limit", "2", "--configs", *map(str, configs)]
    cold = _benchmark(build, *args, root=root)
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
    for stage_output in ("dataset", "adapters/tiny-a", "results/model", "site"):
        assert (build / stage_output / FINGERPRINT_FILE).is_file()

    # A newer peft, found first on the path.
    fake = tmp_path / "fake-dists"
    (fake / "peft-99.0.dist-info").mkdir(parents=True)
    (fake / "peft-99.0.dist-info" / "METADATA").write_text("Name: peft\nVersion: 99.0\n")
    probe = "\n_STALE_PROBE = 1\n"
    probes = [
        ("nothing", None, None, None),
        ("models.py", str(root / "benchmark/models.py"), probe, None),
        ("device.py", str(root / "benchmark/device.py"), probe, None),
        ("chat.py", str(root / "benchmark/chat.py"), probe, None),
        ("scorers.py", str(root / "benchmark/scorers.py"), probe, None),
        ("render.py", str(root / "benchmark/leaderboard/render.py"), probe, None),
        ("style.css", str(root / "site/static/style.css"), "\n", None),
        ("peft 99.0", None, None, str(fake)),
    ]
    # New base weights: one tensor re-saved with other values (restored afterwards).
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1
    changed_weights = tmp_path / "changed.safetensors"
    save_file(tensors, changed_weights, metadata={"format": "pt"})
    shutil.copyfile(changed_weights, weights)
    weights_run = _dry_runs(build, args, root, [("weights", None, None, None)])
    weights.write_bytes(original)
    would = _dry_runs(build, args, root, probes)

    # The stages whose own fingerprint changes (a dry run says the ones downstream "may run":
    # whether they do depends on whether the rerun's output differs). models.py (weights
    # loading) and device.py (dtype) run in every numeric stage and in the dataset builder's
    # local-model source; chat.py only in that source; the site runs none of them.
    trainings_on = {"train:tiny-a", "train:tiny-b", "evaluate"}
    assert would == {
        "nothing": set(),
        "models.py": {"dataset", *trainings_on},
        "device.py": {"dataset", *trainings_on},
        "chat.py": {"dataset"},
        "scorers.py": {"evaluate"},
        "render.py": {"site"},
        "style.css": {"site"},
        "peft 99.0": trainings_on,
    }
    assert weights_run == {"weights": trainings_on}

    # For real: a dtype-policy change in device.py reruns every stage that imports it ...
    _edit(root / "benchmark/device.py", "\n_STALE_PROBE = 2\n")
    rerun = _benchmark(build, *args, root=root)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "code: benchmark/device.py" in rerun.stdout
    assert _record(build) == dict.fromkeys(STAGES, False)
    # ... and a change to the site's code reruns the site alone.
    _edit(root / "benchmark/leaderboard/render.py", "\n_STALE_PROBE = 3\n")
    site_only = _benchmark(build, *args, root=root)
    assert site_only.returncode == 0, site_only.stdout[-3000:] + site_only.stderr[-3000:]
    assert _record(build) == {**dict.fromkeys(STAGES, True), "site": False}


def test_fingerprint_flag_prints_what_the_stage_would_record(tmp_path, tiny_model_dir):
    config = _tiny_config(tmp_path / "tiny.yaml", tiny_model_dir)
    env = {**os.environ, "MARINEBENCH_BUILD": str(tmp_path / "build")}
    cmd = [sys.executable, "-m", "benchmark", "--fingerprint", "train", "--config", str(config)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    key = json.loads(proc.stdout)
    assert key["output"] == str(tmp_path / "build" / "adapters" / "tiny")
    parts = key["parts"]
    assert "benchmark/device.py" in parts["code"] and parts["packages"]["peft"]
    assert parts["inputs"]["model"]["files"]["model.safetensors"]
    assert parts["machine"]["cpu"]
    assert not (tmp_path / "build" / "adapters").exists()  # nothing ran, nothing written
    bad = subprocess.run(
        [sys.executable, "-m", "benchmark", "--fingerprint", "site", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a pipeline stage" in bad.stderr


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


def test_stages_that_ran_together_are_recorded_in_graph_order_failures_last(tmp_path):
    """Side-by-side stages end in whatever order the machine makes; the record must not."""
    import pytest

    from benchmark.errors import UserError
    from benchmark.pipeline import Stage, StageRunner

    stages = [Stage(f"train:{i}", [], []) for i in range(3)]
    runner = StageRunner(tmp_path / "benchmark.json", "cpu", force=False, dry_run=False)
    runner.finish_all([(stages[2], 0), (stages[0], 0), (stages[1], 0)], stages)
    record = json.loads((tmp_path / "benchmark.json").read_text())
    assert [s["name"] for s in record["stages"]] == ["train:0", "train:1", "train:2"]

    runner = StageRunner(tmp_path / "again.json", "cpu", force=False, dry_run=False)
    with pytest.raises(UserError, match="train:0 failed"):
        runner.finish_all([(stages[2], 0), (stages[0], 1), (stages[1], 0)], stages)
    record = json.loads((tmp_path / "again.json").read_text())
    assert [s["name"] for s in record["stages"]] == ["train:1", "train:2", "train:0"]
    assert record["failed_stage"] == "train:0"
