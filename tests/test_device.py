"""Device and dtype choice: override precedence, the CPU dtype probe's rule, and its cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from benchmark import device
from benchmark.cli import build_parser
from benchmark.device import Placement, choose_placement, pick_dtype
from benchmark.train import cli as train_cli
from benchmark.train.config import ConfigError, load_config, with_env_overrides

# Figures from issue #13: an Intel Xeon (avx512_bf16, no AMX exposed) and the AMD EPYC.
INTEL = {"fp32": {"square": 321.0, "decode": 279.0}, "bf16": {"square": 169.0, "decode": 163.0}}
AMD = {"fp32": {"square": 200.0, "decode": 190.0}, "bf16": {"square": 410.0, "decode": 380.0}}


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(device.DTYPE_ENV, raising=False)
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)


@pytest.fixture
def fake_probe(monkeypatch, build_root, no_env):
    """Both candidates offered, and measurement replaced by given figures with a call counter."""
    calls = []
    figures = {name: {shape: 100.0 for shape in device.PROBE_SHAPES} for name in ("fp32", "bf16")}
    figures["bf16"] = {shape: 300.0 for shape in device.PROBE_SHAPES}

    def measure(candidates, budget_s=device.PROBE_BUDGET_S):
        calls.append(list(candidates))
        return {name: dict(figures[name]) for name in candidates}

    monkeypatch.setattr(device, "cpu_dtype_candidates", lambda: ["fp32", "bf16"])
    monkeypatch.setattr(device, "measure_gflops", measure)
    return calls, figures


def _config_file(tmp_path, dtype: str):
    path = tmp_path / "run.yaml"
    path.write_text(f"name: run\ndtype: {dtype}\n", encoding="utf-8")
    return path


def _train_config(path, *flags):
    args = build_parser().parse_args(["train", "--config", str(path), *flags])
    return train_cli._config(args)


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        (INTEL, "fp32"),
        (AMD, "bf16"),
        # bf16 3% faster: within the margin, fp32 keeps its precision
        ({"fp32": {"a": 100.0, "b": 100.0}, "bf16": {"a": 103.0, "b": 103.0}}, "fp32"),
        # the geometric mean, not one lucky shape, decides: 4x faster on one, 5x slower on one
        ({"fp32": {"a": 100.0, "b": 100.0}, "bf16": {"a": 400.0, "b": 20.0}}, "fp32"),
        ({"fp32": {"a": 100.0}}, "fp32"),
    ],
)
def test_pick_dtype_follows_the_measured_figures(figures, expected):
    assert pick_dtype(figures) == expected


@pytest.mark.parametrize("bad", [{}, {"fp32": {}}, {"fp32": {"a": 0.0}}, {"fp32": {"a": "fast"}}])
def test_pick_dtype_rejects_figures_it_cannot_compare(bad):
    with pytest.raises(ValueError):
        pick_dtype(bad)


def test_env_var_wins_over_a_config_dtype_auto(tmp_path, monkeypatch, no_env):
    config = load_config(_config_file(tmp_path, "auto"))
    monkeypatch.setenv(device.DTYPE_ENV, "fp16")
    # what the trainer does with the config's value: "auto" must not hide the environment
    placement = choose_placement("cpu", config.dtype)
    assert placement.dtype == torch.float16 and placement.source == device.DTYPE_ENV
    assert _train_config(_config_file(tmp_path, "auto")).dtype == "fp16"


def test_precedence_flag_then_env_then_config(tmp_path, monkeypatch, no_env):
    path = _config_file(tmp_path, "bf16")
    assert _train_config(path).dtype == "bf16"
    monkeypatch.setenv(device.DTYPE_ENV, "float32")  # device.py's spelling is accepted too
    assert _train_config(path).dtype == "fp32"
    assert _train_config(path, "--dtype", "fp16").dtype == "fp16"
    assert choose_placement("cpu", "fp16").dtype == torch.float16  # an explicit value wins
    monkeypatch.setenv(device.DTYPE_ENV, "auto")  # "auto" in the environment changes nothing
    assert _train_config(path).dtype == "bf16"


def test_bad_env_value_names_the_variable(tmp_path, monkeypatch, no_env):
    monkeypatch.setenv(device.DTYPE_ENV, "int3")
    with pytest.raises(ValueError, match=device.DTYPE_ENV):
        choose_placement("cpu")
    with pytest.raises(ConfigError, match=device.DTYPE_ENV):
        with_env_overrides(load_config(_config_file(tmp_path, "auto")))


def test_probe_is_cached_once_and_reused(fake_probe, build_root):
    calls, _ = fake_probe
    first = choose_placement("cpu", "auto")
    assert first.dtype == torch.bfloat16 and first.source == "measured by the cpu probe"
    assert first.probe["cached"] is False and len(calls) == 1
    cache = device._probe_file(device.cpu_identity())
    assert cache.parent == build_root / ".probe"
    stored = json.loads(cache.read_text())
    assert stored["choice"] == "bf16" and stored["gflops"]["bf16"]["square_1024"] == 300.0
    assert stored["identity"]["threads"] == torch.get_num_threads()
    mtime = cache.stat().st_mtime_ns

    second = choose_placement("cpu")
    assert len(calls) == 1 and second.probe["cached"] is True and second.dtype == torch.bfloat16
    assert cache.stat().st_mtime_ns == mtime
    assert second.record()["probe"]["score_gflops"] == {"fp32": 100.0, "bf16": 300.0}


def test_new_thread_count_is_probed_again(fake_probe):
    calls, _ = fake_probe
    threads = torch.get_num_threads()
    choose_placement("cpu")
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert choose_placement("cpu").probe["cached"] is False
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2 and choose_placement("cpu").probe["cached"] is True


@pytest.mark.parametrize("damage", ["garbage", "list", "choice", "shapes", "identity"])
def test_damaged_cache_is_probed_again_not_trusted(fake_probe, damage):
    calls, _ = fake_probe
    choose_placement("cpu")
    cache = device._probe_file(device.cpu_identity())
    record = json.loads(cache.read_text())
    if damage == "garbage":
        cache.write_bytes(b'{"choice": "bf1')
    elif damage == "list":
        cache.write_text("[]")
    elif damage == "choice":  # says fp32 although its figures favour bf16
        cache.write_text(json.dumps({**record, "choice": "fp32"}))
    elif damage == "shapes":
        del record["gflops"]["fp32"]["square_1024"]
        cache.write_text(json.dumps(record))
    else:
        cache.write_text(json.dumps({**record, "identity": {**record["identity"], "threads": 99}}))

    again = choose_placement("cpu")
    assert len(calls) == 2 and again.probe["cached"] is False and again.dtype == torch.bfloat16
    assert json.loads(cache.read_text())["choice"] == "bf16"  # rewritten whole


def test_gpu_and_bf16less_cpu_skip_the_probe(monkeypatch, build_root, no_env):
    monkeypatch.setattr(device, "cpu_dtype_candidates", lambda: ["fp32"])
    monkeypatch.setattr(device, "measure_gflops", lambda *a, **k: pytest.fail("probed"))
    placement = choose_placement("cpu")
    assert placement.dtype == torch.float32 and placement.probe is None
    assert not (build_root / ".probe").exists()


def test_real_probe_returns_a_valid_choice():
    candidates = device.cpu_dtype_candidates()
    figures = device.measure_gflops(candidates, budget_s=0.05)
    assert sorted(figures) == sorted(candidates)
    for per_shape in figures.values():
        assert sorted(per_shape) == sorted(device.PROBE_SHAPES)
        assert all(v > 0 for v in per_shape.values())
    assert pick_dtype(figures) in candidates


def test_eval_workers_get_the_parents_dtype(monkeypatch, tmp_path):
    """Workers run with fewer threads, so their own probe could choose another dtype and miss
    every cache key the parent computed: they must be handed the parent's choice."""
    from types import SimpleNamespace

    from benchmark.errors import UserError
    from benchmark.evaluation import workers
    from benchmark.evaluation.cache import EvalCache
    from benchmark.evaluation.runner import EvalSettings

    jobs, threads = [], []

    class FakePopen:
        def __init__(self, cmd, **kwargs):
            jobs.append(json.loads(Path(cmd[-1]).read_text(encoding="utf-8")))
            threads.append(kwargs["env"]["OMP_NUM_THREADS"])

        def wait(self):
            return 1

    monkeypatch.setattr(workers.subprocess, "Popen", FakePopen)
    plan = SimpleNamespace(spec="m", infos=[], placement=Placement("cpu", torch.bfloat16))
    todo = [SimpleNamespace(name=n, key=n, entry=None) for n in ("base", "a")]
    settings = EvalSettings(tasks=("marine",), workers=2, dtype=None)
    with pytest.raises(UserError):
        workers.compute_in_workers(plan, todo, settings, EvalCache(root=tmp_path, enabled=False))
    assert len(jobs) == 2
    assert all(j["settings"]["dtype"] == "bfloat16" for j in jobs)
    assert all(j["settings"]["device"] == "cpu" for j in jobs)
    # A Ray task reserved 6 CPUs on a bigger node: 2 workers get 3 threads each, not the
    # node's cores divided by 2.
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    jobs.clear(), threads.clear()
    with pytest.raises(UserError):
        workers.compute_in_workers(plan, todo, settings, EvalCache(root=tmp_path, enabled=False))
    assert threads == ["3", "3"]
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert workers.cpu_budget() == len(os.sched_getaffinity(0))
