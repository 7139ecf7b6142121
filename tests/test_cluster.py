"""`--cluster`: the pipeline's stages as Ray tasks on a local 2-CPU Ray cluster give the same
artefacts as the local run; a failed task is recorded and a rerun redoes only it and what follows;
Ctrl-C cancels the cluster's tasks; without `--cluster` Ray is never imported."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from test_pipeline import _benchmark, _tiny_config

from benchmark.cluster import install_outputs, run_stage_task, ship
from benchmark.contracts import dataset as dataset_contract
from benchmark.fingerprint import FINGERPRINT_FILE
from benchmark.pipeline import Stage, stage_key

ROOT = Path(__file__).resolve().parent.parent
#: the same numbers in every run: the dtype is pinned rather than measured by each build's own
#: probe, and the string hash seed is fixed so that the comparison is about where a stage ran
#: (the trainer's own bytes no longer follow it: tests/test_train_run.py)
STABLE_ENV = {"PYTHONHASHSEED": "0", "MARINEBENCH_AUTO_DTYPE": "fp32"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray head with 2 CPUs (`ray start --head --block`, stopped by its own process:
    nothing else's Ray processes are touched); yields its GCS and Ray Client addresses."""
    pytest.importorskip(
        "ray", reason="the cluster extra is not installed: pip install -e .[cluster]"
    )
    port, client_port = _free_port(), _free_port()
    # Ray's socket paths must stay short: a temp dir directly under /tmp
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None))
    log_path = temp / "head.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--block",
                "--num-cpus",
                "2",
                "--port",
                str(port),
                "--ray-client-server-port",
                str(client_port),
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--temp-dir",
                str(temp),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield {"gcs": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client_port}"}
    finally:
        proc.terminate()  # --block: the head drains and stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _configs(folder: Path, model: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _tiny_config(folder / "tiny-a.yaml", model, seed=1),
        _tiny_config(folder / "tiny-b.yaml", model, seed=2),
    ]


def _args(model: Path, configs: list[Path]) -> list[str]:
    return ["--model", str(model), "--limit", "4", "--configs", *map(str, configs)]


@pytest.fixture(scope="module")
def local_build(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny pipeline run locally (local waves), to compare the cluster's artefacts with."""
    tmp = tmp_path_factory.mktemp("local")
    build = tmp / "build"
    proc = _benchmark(
        build, *_args(tiny_model_dir, _configs(tmp / "cfg", tiny_model_dir)), env=STABLE_ENV
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build


def _artefacts(build: Path, run: str) -> dict[str, bytes]:
    """What must come out byte-identical: the adapters' weights, and per model and task the
    per-sample scores and samples, the run's scores and summary (not files with timings,
    timestamps or build paths)."""
    files = sorted((build / "adapters").glob("*/adapter_model.safetensors"))
    results = build / "results" / run
    files += sorted(results.rglob("*.jsonl")) + [results / "summary.json"]
    return {str(p.relative_to(build)): p.read_bytes() for p in files}


def _assert_same(a: Path, b: Path, run: str) -> None:
    left, right = _artefacts(a, run), _artefacts(b, run)
    assert sorted(left) == sorted(right)
    assert len([n for n in left if n.endswith(".safetensors")]) == 2
    differ = [name for name in left if left[name] != right[name]]
    assert not differ, differ


def _cached(build: Path, record: str = "benchmark.json") -> dict[str, bool]:
    return {s["name"]: s["cached"] for s in json.loads((build / record).read_text())["stages"]}


def test_cluster_run_gives_the_local_artefacts(tmp_path, tiny_model_dir, ray_cluster, local_build):
    build = tmp_path / "build"
    args = _args(tiny_model_dir, _configs(tmp_path / "cfg", tiny_model_dir))
    env = {**STABLE_ENV, "MARINEBENCH_PROGRESS_INTERVAL": "0"}
    proc = _benchmark(build, *args, "--cluster", ray_cluster["gcs"], env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one node reading this build/: tasks wrote there directly
    assert "every node reads it): tasks write there directly" in proc.stdout
    for name in ("train:tiny-a", "train:tiny-b"):
        assert f"[benchmark] {name}: queued on the cluster, 1 CPU(s)" in proc.stdout
        assert f"[benchmark] {name}: done in " in proc.stdout
    assert "[benchmark] evaluate: queued on the cluster, 2 CPU(s)" in proc.stdout
    assert "[benchmark] warning" not in proc.stderr
    assert not any(_cached(build).values())
    _assert_same(local_build, build, tiny_model_dir.name)

    # Everything cached: the driver decides that alone and never contacts the cluster.
    again = _benchmark(build, *args, "--cluster", "ray://127.0.0.1:1", env=STABLE_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(_cached(build).values())
    assert "connecting" not in again.stdout


def test_failed_task_is_recorded_and_a_rerun_redoes_only_it(
    tmp_path, tiny_model_dir, ray_cluster, local_build
):
    """Without a shared filesystem (forced: each task runs in its own build folder and sends its
    output back). Through the head's GCS address: a Ray Client (ray://) connection makes the head
    start a server per client, which failed to start in time once on a loaded 2-core CI machine;
    the ray:// path is the same code after `ray.init`."""
    build = tmp_path / "build"
    configs = _configs(tmp_path / "cfg", tiny_model_dir)
    good = configs[1].read_text()
    configs[1].write_text(good.replace("- v_proj", "- no_such_proj"))  # fails in the task
    env = {**STABLE_ENV, "MARINEBENCH_CLUSTER_SHARED": "0"}
    args = [*_args(tiny_model_dir, configs), "--cluster", ray_cluster["gcs"]]
    first = _benchmark(build, *args, env=env)
    assert first.returncode == 2, first.stdout[-3000:] + first.stderr[-3000:]
    assert "tasks get their inputs and send their outputs back" in first.stdout
    assert "[benchmark] train:tiny-b: FAILED on" in first.stdout
    # reported with the end of its log, which is also kept in build/logs
    assert "train:tiny-b failed on" in first.stderr
    assert "no_such_proj not in model" in first.stderr
    assert "stage train:tiny-b failed (exit 2)" in first.stderr
    assert "no_such_proj" in (build / "logs" / "train-tiny-b.log").read_text()
    record = json.loads((build / "benchmark.json").read_text())
    assert record["failed_stage"] == "train:tiny-b"
    assert [s["name"] for s in record["stages"]] == ["dataset", "train:tiny-a", "train:tiny-b"]
    # the finished training came back whole, with its fingerprint mapped to this build
    assert (build / "adapters" / "tiny-a" / FINGERPRINT_FILE).is_file()
    assert not (build / "adapters" / "tiny-b").exists()
    assert not (build / "site").exists()

    configs[1].write_text(good)
    second = _benchmark(build, *args, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[benchmark] warning" not in second.stderr
    assert _cached(build) == {
        "dataset": True,
        "train:tiny-a": True,
        "train:tiny-b": False,
        "evaluate": False,
        "site": False,
    }
    assert json.loads((build / "benchmark.json").read_text())["failed_stage"] is None
    _assert_same(local_build, build, tiny_model_dir.name)


def _processes_with(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_cancels_the_cluster_tasks(tmp_path, tiny_model_dir, ray_cluster):
    long = _tiny_config(tmp_path / "long-run.yaml", tiny_model_dir)
    long.write_text(long.read_text().replace("max_steps: 3", "max_steps: 5000"))
    long.write_text(long.read_text().replace("epochs: 1", "epochs: 500"))
    out = tmp_path / "out.log"
    env = {
        **os.environ,
        **STABLE_ENV,
        "MARINEBENCH_BUILD": str(tmp_path / "build"),
        "MARINEBENCH_PROGRESS_INTERVAL": "0",
    }
    cmd = [sys.executable, "-m", "benchmark", "benchmark", *_args(tiny_model_dir, [long])]
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [*cmd, "--cluster", ray_cluster["gcs"]],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            # a test runner may start us with SIGINT ignored; the driver must see Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 180
        while "train:long-run: step" not in out.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        assert _processes_with(str(long))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text(errors="replace")
    assert "cancelling 1 task(s) on the cluster" in text
    deadline = time.monotonic() + 30
    while _processes_with(str(long)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_with(str(long)), "the training kept running after Ctrl-C"


def test_without_cluster_ray_is_never_imported(tmp_path, tiny_model_dir):
    """Neither a run without --cluster nor one that runs nothing imports Ray or the cluster
    module's Ray side (a dry run with --cluster does not connect)."""
    config = _tiny_config(tmp_path / "tiny-a.yaml", tiny_model_dir)
    code = (
        "import sys\n"
        "from benchmark.cli import main\n"
        "args = sys.argv[1:]\n"
        "assert main(['benchmark', '--dry-run', *args]) == 0\n"
        "assert 'ray' not in sys.modules and 'benchmark.cluster' not in sys.modules\n"
        "assert main(['benchmark', '--dry-run', *args, '--cluster', 'ray://127.0.0.1:1']) == 0\n"
        "assert 'ray' not in sys.modules\n"
        "print('no ray')\n"
    )
    env = {**os.environ, "MARINEBENCH_BUILD": str(tmp_path / "build")}
    proc = subprocess.run(
        [sys.executable, "-c", code, *_args(tiny_model_dir, [config])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no ray" in proc.stdout


def test_ship_names_inputs_under_build_and_ships_other_files(tmp_path, monkeypatch):
    build = tmp_path / "build"
    monkeypatch.setenv("MARINEBENCH_BUILD", str(build))
    for rel in ("dataset/data/train.parquet", "datatrack/data/x/data/train.parquet"):
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_text("rows")
    (build / "models" / "m").mkdir(parents=True)
    (build / "models" / "m" / "model.safetensors").write_text("weights")
    (build / "datatrack" / "adapters" / "x").mkdir(parents=True)
    (build / "datatrack" / "adapters" / "x" / "old.bin").write_text("old output")
    config = tmp_path / "recipe.yaml"
    config.write_text("lora: {}\n")
    out = build / "datatrack" / "adapters" / "x"
    stage = Stage(
        "train:x",
        ["train", "--config", str(config), "--dataset", str(build / "datatrack/data/x")]
        + ["--output", str(out)],
        [],
        output=out,
    )
    portable, blob, output = ship(stage, build)
    assert output == "datatrack/adapters/x"
    assert portable == [
        "train",
        "--config",
        ["file", "0/recipe.yaml"],
        "--dataset",
        ["build", "datatrack/data/x"],
        "--output",
        ["build", "datatrack/adapters/x"],
    ]
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = set(tar.getnames())
    assert "files/0/recipe.yaml" in names
    assert "build/datatrack/data/x/data/train.parquet" in names
    assert "build/dataset/data/train.parquet" in names  # read without being named
    assert not any(
        "models" in n or "adapters" in n for n in names
    )  # never the model, nor the output


def test_a_task_in_its_own_build_sends_its_output_back(tmp_path, monkeypatch):
    """The task function itself, without Ray: with no shared build/ it builds the dataset in a
    temporary build folder and returns it; written back here, it is the stage's output with
    the fingerprint the driver expects, so the stage is cached afterwards."""
    build = tmp_path / "build"
    monkeypatch.setenv("MARINEBENCH_BUILD", str(build))
    stage = Stage("dataset", ["dataset", "build"], [dataset_contract.BUILD_REPORT_FILE])
    key = stage_key(stage.args)
    stage.fingerprint, stage.output = key.digest, key.output
    portable, blob, output = ship(stage, build)
    spec = {
        "name": stage.name,
        "args": stage.args,
        "env": {"MARINEBENCH_BUILD": str(build)},
        "threads": 1,
        "build": str(build),
        "log": str(build / "logs" / "dataset.log"),
        "token": None,
        "shared": False,
        "inputs": [blob],
        "portable": portable,
        "output": output,
        "models": [],
    }
    result = run_stage_task(spec)
    assert result["returncode"] == 0, result["log"]
    assert result["shared"] is False and list(result["folders"]) == ["dataset"]
    assert not build.exists()  # the task wrote nothing here itself
    install_outputs(result, build)
    report = build / "dataset" / dataset_contract.BUILD_REPORT_FILE
    assert report.is_file()
    recorded = json.loads((build / "dataset" / FINGERPRINT_FILE).read_text())
    assert recorded["digest"] == key.digest
    assert stage_key(stage.args).digest == key.digest
