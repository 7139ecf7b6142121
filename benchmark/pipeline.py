"""`marinebench benchmark`: the main job. dataset -> adapters -> evaluation -> site, each stage
skipped when the hashes of its inputs match the last successful run (recorded in
build/benchmark.json), so a rerun with nothing changed takes seconds."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_write_json
from benchmark.errors import UserError
from benchmark.hashing import sha256_file, sha256_json

PROFILES = {
    "cpu": {
        "model": "smollm2-135m-instruct",
        "configs": ["smollm2-lora-r16", "smollm2-lora-r8", "smollm2-qlora-r16"],
        "needs_cuda": False,
    },
    "gpu": {
        "model": "tinyllama-1.1b-chat",
        "configs": ["tinyllama-qlora-r16"],
        "needs_cuda": True,
    },
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="rebuild everything: dataset -> adapters -> evaluation -> site (cached by input hashes)",
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--force", action="store_true", help="rerun every stage even if cached")
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="training configs: names in configs/ or YAML paths",
    )
    p.add_argument("--model", default=None, help="base model to evaluate (default: the profile's)")
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate only the first N documents per task"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="trainings run at once (default on CPU: one per core, the cores shared out as "
        "threads; 1 on GPU)",
    )
    p.set_defaults(func=_run)


def tree_hash(
    root: Path,
    suffixes: tuple[str, ...] = (
        ".py",
        ".yaml",
        ".yml",
        ".jsonl",
        ".json",
        ".j2",
        ".html",
        ".css",
        ".js",
        ".md",
        ".parquet",
        ".safetensors",
        ".txt",
    ),
) -> str:
    """Hash of the source files under `root` (caches and checkpoints excluded)."""
    digest = hashlib.sha256()
    if not root.exists():
        return "missing"
    files = root.rglob("*") if root.is_dir() else [root]
    for path in sorted(files):
        rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
        if not path.is_file() or not path.name.endswith(suffixes):
            continue
        if any(
            part in ("__pycache__", "checkpoints", ".cache") or part.startswith(".")
            for part in Path(rel).parts
        ):
            continue
        digest.update(rel.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


@dataclass
class Stage:
    name: str
    command: list[str]
    inputs: dict[str, str]
    outputs: list[Path]
    seconds: float = 0.0
    #: when cached: how long the stage took the last time it actually ran
    computed_seconds: float | None = None
    cached: bool = False
    input_hash: str = field(default="")


def _config_file(spec: str) -> Path:
    """A config named `NAME` (configs/NAME.yaml) or given as a path to a YAML file."""
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        path = paths.CONFIGS_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise UserError(f"no training config {path}")
    return path.resolve()


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", *args]


def _load_record(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _is_cached(stage: Stage, previous: dict, force: bool) -> bool:
    stage.input_hash = sha256_json(stage.inputs)
    prev = previous.get(stage.name)
    fresh = all(p.exists() for p in stage.outputs)
    cached = not force and fresh and bool(prev) and prev.get("input_hash") == stage.input_hash
    if cached:
        stage.computed_seconds = prev.get("computed_seconds") or prev.get("seconds")
    return cached


def _last_progress(log: Path) -> str:
    """The newest tqdm line a child wrote (tqdm separates updates with carriage returns)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, log.stat().st_size - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]", tail) if "step" in p]
    return parts[-1][-90:] if parts else "starting"


def _waves(stages: list[Stage], slots: int, cpus: int) -> list[tuple[list[Stage], int]]:
    """Split stages into waves of at most `slots` run side by side, each wave with the threads
    per stage that share the CPUs out (3 trainings on 2 cores: 2 with 1 thread, then 1 with 2)."""
    waves = []
    for i in range(0, len(stages), slots):
        wave = stages[i : i + slots]
        waves.append((wave, max(1, cpus // len(wave))))
    return waves


def _run_concurrently(
    stages: list[Stage], slots: int, log_dir: Path, cpus: int | None = None
) -> list[tuple[Stage, int]]:
    """Run stages as child processes in waves of `slots` at once, showing each one's progress.

    Why: on a small CPU a 135M model's bf16 matmuls scale poorly from 1 to 2 threads, so two
    single-thread trainings side by side (measured: 1.4x the throughput of one 2-thread run)
    finish sooner than one after the other, while more processes than cores only fight over
    them. A last, smaller wave gets the freed cores as threads.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    log_dir.mkdir(parents=True, exist_ok=True)
    done = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    ) as progress:
        for wave, threads in _waves(stages, slots, cpus or os.cpu_count() or 1):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            running = {}
            for stage in wave:
                log = log_dir / f"{stage.name.replace(':', '-')}.log"
                fh = open(log, "wb")  # noqa: SIM115 - closed when the child ends
                proc = subprocess.Popen(
                    stage.command, cwd=paths.REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env
                )
                task = progress.add_task(f"{stage.name} ({threads} thread(s))", total=None)
                running[stage.name] = (stage, proc, fh, log, task, time.perf_counter())
            while running:
                time.sleep(1.0)
                for name, (stage, proc, fh, log, task, t0) in list(running.items()):
                    progress.update(task, description=f"{name}: {_last_progress(log)}")
                    if proc.poll() is None:
                        continue
                    fh.close()
                    stage.seconds = round(time.perf_counter() - t0, 2)
                    state = "done" if proc.returncode == 0 else f"FAILED (log: {log})"
                    progress.update(task, description=f"{name}: {state} in {stage.seconds:.0f}s")
                    progress.stop_task(task)
                    done.append((stage, proc.returncode))
                    del running[name]
    return done


def _run(args: argparse.Namespace) -> int:
    profile = PROFILES[args.profile]
    if profile["needs_cuda"]:
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"profile {args.profile!r} runs the seed's TinyLlama QLoRA recipe and needs a CUDA "
                "GPU and a network (for the TinyLlama weights); this machine has no CUDA GPU."
            )
    config_files = [_config_file(c) for c in (args.configs or profile["configs"])]
    model = args.model or profile["model"]
    build = paths.build_dir()
    record_path = build / "benchmark.json"
    previous = {s["name"]: s for s in _load_record(record_path).get("stages", [])}
    code = paths.REPO_ROOT / "benchmark"
    started = time.perf_counter()
    stages: list[Stage] = []

    def finish(stage: Stage, returncode: int) -> None:
        stages.append(stage)
        if returncode != 0:
            _write_record(record_path, args.profile, stages, started, failed=stage.name)
            raise UserError(f"stage {stage.name} failed (exit {returncode})")
        print(f"[benchmark] {stage.name}: done in {stage.seconds:.1f}s", flush=True)
        _write_record(record_path, args.profile, stages, started)

    def run_stage(stage: Stage) -> None:
        if _is_cached(stage, previous, args.force):
            stage.cached = True
            print(f"[benchmark] {stage.name}: inputs unchanged, cached", flush=True)
            stages.append(stage)
            return
        print(f"[benchmark] {stage.name}: {' '.join(stage.command[2:])}", flush=True)
        t0 = time.perf_counter()
        returncode = subprocess.run(stage.command, cwd=paths.REPO_ROOT).returncode
        stage.seconds = round(time.perf_counter() - t0, 2)
        finish(stage, returncode)

    # The default model is converted once up front, so parallel trainings never race on it.
    from benchmark.models import model_path

    model_path(model)

    dataset = paths.dataset_dir()
    run_stage(
        Stage(
            "dataset",
            _python_cli("dataset", "build", "--out", str(dataset)),
            {"sources": tree_hash(paths.DATASETS_SRC), "code": tree_hash(code / "dataset")},
            [dataset / "build_report.json"],
        )
    )
    dataset_hash = tree_hash(dataset / "data")
    adapters, to_train = [], []
    for config in config_files:
        name = config.stem
        out = paths.adapters_dir() / name
        adapters.append(out)
        stage = Stage(
            f"train:{name}",
            _python_cli("train", "--config", str(config)),
            {
                "config": sha256_file(config),
                "dataset": dataset_hash,
                "code": tree_hash(code / "train"),
            },
            [out / "adapter_model.safetensors", out / "train_metrics.json"],
        )
        if _is_cached(stage, previous, args.force):
            stage.cached = True
            stages.append(stage)
            print(f"[benchmark] {stage.name}: inputs unchanged, cached", flush=True)
        else:
            to_train.append(stage)
    # On CPU the trainings run side by side, as many at once as there are cores (see
    # _run_concurrently); a GPU trains one adapter at a time on the whole device.
    jobs = args.jobs or (1 if profile["needs_cuda"] else min(os.cpu_count() or 1, len(to_train)))
    if jobs > 1:
        names = ", ".join(s.name for s in to_train)
        print(f"[benchmark] training {names}: {jobs} at a time", flush=True)
        for stage, returncode in _run_concurrently(to_train, jobs, build / "logs"):
            finish(stage, returncode)
    else:
        for stage in to_train:
            run_stage(stage)
    from benchmark.evaluation.runner import default_run_name

    results = paths.results_dir() / default_run_name(model)
    # On CPU the models are shared out to one single-thread worker per core (see
    # evaluation/workers.py); a GPU evaluates them all in one process.
    cpus = os.cpu_count() or 1
    eval_workers = 1 if profile["needs_cuda"] else max(1, min(cpus, len(adapters) + 1))
    run_stage(
        Stage(
            "evaluate",
            _python_cli(
                "evaluate",
                "--model",
                model,
                "--adapters",
                *map(str, adapters),
                *(["--limit", str(args.limit)] if args.limit else []),
                "--workers",
                str(eval_workers),
            ),
            {
                "model": model,
                "limit": args.limit,
                "workers": eval_workers,
                "adapters": {a.name: tree_hash(a) for a in adapters},
                "dataset": dataset_hash,
                "tasks": tree_hash(paths.TASKS_DIR),
                "retention": tree_hash(paths.DATASETS_SRC / "retention_qa.jsonl"),
                "code": tree_hash(code / "evaluation") + sha256_file(code / "scorers.py"),
            },
            [results / "summary.json"],
        )
    )
    site = paths.site_dir()
    run_stage(
        Stage(
            "site",
            _python_cli("site", "build", "--results", str(paths.results_dir()), "--out", str(site)),
            {
                "results": tree_hash(paths.results_dir()),
                "adapters": {a.name: tree_hash(a) for a in adapters},
                "dataset": tree_hash(dataset),
                "templates": tree_hash(paths.SITE_SRC),
                "code": tree_hash(code / "leaderboard"),
            },
            [site / "index.html"],
        )
    )
    total = _write_record(record_path, args.profile, stages, started)
    print(f"\nSite: {site / 'index.html'}  (serve it with: nox -s serve)")
    _print_summary(results / "summary.json")
    print(f"Total {total:.1f}s; stage times and cache hits in {record_path}")
    return 0


def _write_record(path: Path, profile: str, stages: list[Stage], started: float, failed=None):
    total = round(time.perf_counter() - started, 2)
    atomic_write_json(
        path,
        {
            "profile": profile,
            "total_s": total,
            "failed_stage": failed,
            "stages": [
                {
                    "name": s.name,
                    "seconds": s.seconds,
                    "computed_seconds": s.computed_seconds if s.cached else s.seconds,
                    "cached": s.cached,
                    "input_hash": s.input_hash,
                }
                for s in stages
            ],
        },
    )
    return total


HEADLINE = ("rougeL", "bertscore_f1", "token_f1", "tfidf_cosine")


def _print_summary(summary_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    if not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text())
    table = Table(title="marine_qa (test split): mean [95% CI], delta vs base (paired p)")
    table.add_column("model")
    for metric in HEADLINE:
        table.add_column(metric)
    for model, tasks in summary["models"].items():
        row = [model]
        for metric in HEADLINE:
            stat = tasks.get("marine_qa", {}).get(metric)
            if not stat:
                row.append("-")
                continue
            cell = f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
            comp = summary.get("comparisons", {}).get(model, {}).get("marine_qa", {}).get(metric)
            if comp:
                cell += f"\n{comp['delta']:+.3f} (p={comp['p_value']:.3g})"
            row.append(cell)
        table.add_row(*row)
    Console(width=140).print(table)
