"""`marinebench benchmark`: the main job. dataset -> adapters -> evaluation -> site, each stage
skipped when its fingerprint (benchmark/fingerprint.py: inputs, the code it imports, package
versions, model weights, machine), which each stage records in its own output folder, matches a
fresh one, so a rerun with nothing changed takes seconds. The pipeline only orders stages and
compares fingerprints; build/benchmark.json records stage times, cache hits and why each reran."""

from __future__ import annotations

import argparse
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
from benchmark.contracts import adapter as adapter_contract
from benchmark.contracts import dataset as dataset_contract
from benchmark.contracts import results as results_contract
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.errors import UserError
from benchmark.fingerprint import StageKey, changed

PROFILES = {
    "cpu": {
        "model": DEFAULT_MODEL,
        # smollm2-lora-r8 is opt-in (--configs): with the recall set and 320 transfer questions
        # the evaluation of four models no longer fits the cold time budget (issue #14)
        "configs": ["smollm2-lora-r16", "smollm2-qlora-r16"],
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
        "--dry-run",
        action="store_true",
        help="say which stages would run and why (what changed in their fingerprints), run none",
    )
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
    cluster_argument(p)
    p.set_defaults(func=_run)


def cluster_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=None,
        help="run the stages that are not cached as tasks on a Ray cluster: ray://HOST:PORT, "
        "HOST:PORT of its head, or auto (one started on this machine); needs the cluster "
        "extra: pip install 'marinebench[cluster]'",
    )


def make_cluster(address: str | None, models: list[str], needs_cuda: bool = False):
    """The executor that runs stages on a Ray cluster (benchmark/cluster.py), or None. Ray is
    imported only when a stage that is not cached has to run."""
    if not address:
        return None
    from benchmark.cluster import Cluster

    return Cluster(address, models, gpu=needs_cuda)


@dataclass
class Stage:
    """One pipeline step: a `marinebench` command whose output folder holds `outputs`."""

    name: str
    #: the `marinebench` arguments that run the stage (the stage owns its fingerprint)
    args: list[str]
    #: files that must exist in the stage's output folder for a cached result to count
    outputs: list[str]
    seconds: float = 0.0
    #: when cached: how long the stage took the last time it actually ran
    computed_seconds: float | None = None
    cached: bool = False
    #: the stage's fingerprint digest (what it records in its output folder)
    fingerprint: str = ""
    #: why it reran: the parts of the fingerprint that changed since the recorded one
    reasons: list[str] = field(default_factory=list)
    output: Path | None = None
    #: dry run: unchanged itself, but downstream of a stage that would run
    downstream: bool = False

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "benchmark", *self.args]


def _config_file(spec: str) -> Path:
    """A config named `NAME` (configs/NAME.yaml) or given as a path to a YAML file."""
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        path = paths.CONFIGS_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise UserError(f"no training config {path}")
    return path.resolve()


def _load_record(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def stage_key(args: list[str]) -> StageKey:
    """The fingerprint the stage would record if it ran now (asked of the stage's own command,
    exactly as `marinebench --fingerprint ARGS` would)."""
    from benchmark.cli import build_parser

    parsed = build_parser().parse_args(args)
    key = parsed.stage_key(parsed) if getattr(parsed, "stage_key", None) else None
    if key is None:
        raise UserError(f"`marinebench {' '.join(args)}` is not a pipeline stage")
    return key


def _is_cached(stage: Stage, previous: dict, force: bool) -> bool:
    """Compare the stage's fresh fingerprint with the one recorded in its output folder."""
    key = stage_key(stage.args)
    stage.fingerprint, stage.output = key.digest, key.output
    missing = [name for name in stage.outputs if not (key.output / name).exists()]
    stage.reasons = ["forced"] if force else changed(key)
    if missing and not stage.reasons:
        stage.reasons = [f"output missing: {missing[0]}"]
    if stage.reasons:
        return False
    prev = previous.get(stage.name) or {}
    stage.computed_seconds = prev.get("computed_seconds") or prev.get("seconds")
    return True


def _announce(stage: Stage, dry_run: bool = False) -> None:
    if stage.cached:
        print(f"[benchmark] {stage.name}: fingerprint unchanged, cached", flush=True)
    else:
        why = "; ".join(stage.reasons)
        verb = ("may run" if stage.downstream else "would run") if dry_run else "runs"
        print(f"[benchmark] {stage.name}: {verb} ({why})", flush=True)


_TQDM = re.compile(
    r"(?P<step>\d+)/(?P<total>\d+) \[(?P<elapsed>[^<\]]+)<(?P<eta>[^,\]]+)"
    r"(?:, [^,\]]*)?(?:, loss=(?P<loss>[\d.na]+))?(?:, tok_s=(?P<tok_s>\d+))?"
)


def read_log_tail(log: Path, size: int) -> str:
    """The last `size` bytes of a stage's log as text ("" when it cannot be read yet)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, log.stat().st_size - size))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_progress(log: Path) -> str:
    """The newest progress a child wrote, as "step 40/80, loss 2.91, 190 tok/s, ETA 03:12"
    (tqdm separates its updates with carriage returns)."""
    tail = read_log_tail(log, 4096)
    lines = [p.strip() for p in re.split(r"[\r\n]", tail) if "step" in p]
    if not lines:
        return "starting"
    match = _TQDM.search(lines[-1])
    if not match:
        return lines[-1][-90:]
    text = f"step {match['step']}/{match['total']}"
    if match["loss"]:
        text += f", loss {match['loss']}"
    if match["tok_s"]:
        text += f", {match['tok_s']} tok/s"
    return text + f", ETA {match['eta'].strip()}"


class _StageDisplay:
    """One line per running stage: live (rich) on a terminal; on a pipe such as a CI log, a
    plain line per stage every `interval` seconds (MARINEBENCH_PROGRESS_INTERVAL, default 30)."""

    def __init__(self) -> None:
        self.live = sys.stdout.isatty()
        self.interval = float(os.environ.get("MARINEBENCH_PROGRESS_INTERVAL", "30"))
        self.tasks: dict[str, object] = {}
        self.last_printed: dict[str, float] = {}

    def __enter__(self) -> _StageDisplay:
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.__exit__(*exc)

    def add(self, name: str, text: str) -> None:
        if self.live:
            self.tasks[name] = self.progress.add_task(f"{name}: {text}", total=None)
        else:
            print(f"[benchmark] {name}: {text}", flush=True)
        self.last_printed[name] = time.monotonic()

    def update(self, name: str, text: str) -> None:
        if self.live:
            self.progress.update(self.tasks[name], description=f"{name}: {text}")
        elif time.monotonic() - self.last_printed[name] >= self.interval:
            print(f"[benchmark] {name}: {text}", flush=True)
            self.last_printed[name] = time.monotonic()

    def finish(self, name: str, text: str) -> None:
        if self.live:
            self.progress.update(self.tasks[name], description=f"{name}: {text}")
            self.progress.stop_task(self.tasks[name])
        else:
            print(f"[benchmark] {name}: {text}", flush=True)


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
    log_dir.mkdir(parents=True, exist_ok=True)
    done = []
    with _StageDisplay() as display:
        for wave, threads in _waves(stages, slots, cpus or os.cpu_count() or 1):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            running = {}
            for stage in wave:
                log = log_dir / f"{stage.name.replace(':', '-')}.log"
                fh = open(log, "wb")  # noqa: SIM115 - closed when the child ends
                proc = subprocess.Popen(
                    stage.command, cwd=paths.REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env
                )
                display.add(stage.name, f"started, {threads} thread(s), log {log}")
                running[stage.name] = (stage, proc, fh, log, time.perf_counter())
            while running:
                time.sleep(0.5)
                for name, (stage, proc, fh, log, t0) in list(running.items()):
                    if proc.poll() is None:
                        display.update(name, _last_progress(log))
                        continue
                    fh.close()
                    stage.seconds = round(time.perf_counter() - t0, 2)
                    state = "done" if proc.returncode == 0 else f"FAILED (log: {log})"
                    display.finish(name, f"{state} in {stage.seconds:.0f}s")
                    done.append((stage, proc.returncode))
                    del running[name]
    return done


def _pin_auto_dtype() -> None:
    """Measure what "auto" means on this CPU once, and hand it to every stage through the
    environment: trainings at 1 thread and the evaluation at 2 then use one dtype, and the choice
    is part of every numeric stage's fingerprint (a different choice reruns them)."""
    from benchmark.device import (
        AUTO_DTYPE_ENV,
        choose_placement,
        cpu_dtype_candidates,
        describe_choice,
    )

    if os.environ.get(AUTO_DTYPE_ENV) or cpu_dtype_candidates() == ["fp32"]:
        return
    placement = choose_placement("cpu", "auto")
    os.environ[AUTO_DTYPE_ENV] = placement.dtype_name
    print(f"[benchmark] auto dtype on this CPU: {describe_choice(placement.record())}", flush=True)


class StageRunner:
    """Runs stages in order, each skipped when cached, and keeps the pipeline's record (stage
    times, cache hits, why each reran) up to date after every stage: the main benchmark and the
    data track (benchmark/datatrack/pipeline.py) both drive their stages through one."""

    def __init__(
        self, record_path: Path, profile: str, force: bool, dry_run: bool, cluster=None
    ) -> None:
        self.record_path = record_path
        self.profile = profile
        self.force = force
        self.dry_run = dry_run
        #: when set (benchmark/cluster.py), the stages that run are Ray tasks, not local processes
        self.cluster = cluster
        self.log_dir = record_path.parent / "logs"
        self.previous = {s["name"]: s for s in _load_record(record_path).get("stages", [])}
        self.stages: list[Stage] = []
        self.started = time.perf_counter()

    def write(self, failed: str | None = None) -> float:
        return _write_record(self.record_path, self.profile, self.stages, self.started, failed)

    def finish(self, stage: Stage, returncode: int) -> None:
        self.stages.append(stage)
        if returncode != 0:
            self.write(failed=stage.name)
            raise UserError(f"stage {stage.name} failed (exit {returncode})")
        print(f"[benchmark] {stage.name}: done in {stage.seconds:.1f}s", flush=True)
        self.write()

    def finish_all(self, done: list[tuple[Stage, int]], order: list[Stage] | None = None) -> None:
        """Record stages that ran together, the ones that succeeded first, each group in the
        stage graph's `order` rather than the order they happened to end in, so the record of
        two identical runs lists its stages alike."""
        rank = {s.name: i for i, s in enumerate(order or [s for s, _ in done])}
        for stage, returncode in sorted(done, key=lambda d: (d[1] != 0, rank[d[0].name])):
            self.finish(stage, returncode)

    def execute(self, stage: Stage) -> None:
        if self.cluster is not None:  # all the cores a local run would give it
            self.finish_all(
                self.cluster.run([stage], {stage.name: os.cpu_count() or 1}, self.log_dir)
            )
            return
        t0 = time.perf_counter()
        returncode = subprocess.run(stage.command, cwd=paths.REPO_ROOT).returncode
        stage.seconds = round(time.perf_counter() - t0, 2)
        self.finish(stage, returncode)

    def decide(self, stage: Stage, upstream: list[Stage]) -> None:
        """Cached or not; a dry run also says which stages run because an upstream one does."""
        try:
            stage.cached = _is_cached(stage, self.previous, self.force)
        except UserError as exc:  # e.g. a bad config: the stage fails before it starts
            if not self.dry_run:
                self.stages.append(stage)
                self.write(failed=stage.name)
                raise UserError(f"stage {stage.name} failed: {exc}") from None
            stage.cached, stage.reasons = False, [f"cannot be checked yet: {exc}"]
        ran = [u.name for u in upstream if not u.cached]
        if self.dry_run and ran and stage.cached:
            # Its own fingerprint is unchanged; whether it runs depends on what those produce.
            stage.cached, stage.downstream = False, True
            stage.reasons = [f"after {', '.join(ran)}, if their output changes"]
        _announce(stage, self.dry_run)
        if stage.cached or self.dry_run:
            self.stages.append(stage)

    def run_stage(self, stage: Stage, upstream: list[Stage]) -> None:
        self.decide(stage, upstream)
        if not stage.cached and not self.dry_run:
            self.execute(stage)

    def run_side_by_side(
        self,
        stages: list[Stage],
        upstream: list[Stage] | dict[str, list[Stage]],
        jobs: int | None,
    ):
        """Decide each (`upstream`: the stages all of them follow, or each one's by name), then
        run the ones not cached `jobs` at a time (default: one per core on CPU, see
        _run_concurrently; 1 on a GPU, which trains one at a time)."""
        for stage in stages:
            self.decide(stage, upstream[stage.name] if isinstance(upstream, dict) else upstream)
        todo = [] if self.dry_run else [s for s in stages if not s.cached]
        jobs = jobs or min(os.cpu_count() or 1, len(todo))
        if self.cluster is not None and todo:
            # Each gets the threads its local wave would give it, as CPUs; Ray decides when.
            waves = _waves(todo, jobs, os.cpu_count() or 1)
            threads = {stage.name: n for wave, n in waves for stage in wave}
            names = ", ".join(s.name for s in todo)
            print(f"[benchmark] {names}: as tasks on the cluster", flush=True)
            self.finish_all(self.cluster.run(todo, threads, self.log_dir), todo)
        elif jobs > 1:
            names = ", ".join(s.name for s in todo)
            print(f"[benchmark] {names}: {jobs} at a time", flush=True)
            self.finish_all(_run_concurrently(todo, jobs, self.log_dir), todo)
        else:
            for stage in todo:
                self.execute(stage)


def training_stage(config: Path, *extra: str, name: str | None = None) -> Stage:
    """`marinebench train --config CONFIG ...` as a stage."""
    return Stage(
        name or f"train:{config.stem}",
        ["train", "--config", str(config), *extra],
        [adapter_contract.WEIGHTS_FILE, adapter_contract.TRAIN_METRICS_FILE],
    )


def prepare_model(model: str, needs_cuda: bool, dry_run: bool) -> None:
    """Pin the CPU dtype, and convert the model once up front, so parallel stages never race
    on it."""
    if not needs_cuda:
        _pin_auto_dtype()
    if not dry_run:
        from benchmark.models import model_path

        model_path(model)


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
    cluster = make_cluster(args.cluster, [model], profile["needs_cuda"])
    runner = StageRunner(record_path, args.profile, args.force, args.dry_run, cluster)
    prepare_model(model, profile["needs_cuda"], args.dry_run)

    dataset = Stage("dataset", ["dataset", "build"], [dataset_contract.BUILD_REPORT_FILE])
    runner.run_stage(dataset, [])
    trainings = [training_stage(config) for config in config_files]
    runner.run_side_by_side(trainings, [dataset], 1 if profile["needs_cuda"] else args.jobs)
    # On CPU the models are shared out to one single-thread worker per core (see
    # evaluation/workers.py); a GPU evaluates them all in one process.
    evaluation = Stage(
        "evaluate",
        [
            "evaluate",
            "--model",
            model,
            "--adapters",
            *(str(t.output) for t in trainings),
            *(["--limit", str(args.limit)] if args.limit else []),
            "--workers",
            str(eval_workers(len(trainings) + 1, profile["needs_cuda"])),
        ],
        [results_contract.SUMMARY_FILE],
    )
    runner.run_stage(evaluation, [dataset, *trainings])
    site = Stage("site", ["site", "build"], ["index.html"])
    runner.run_stage(site, [dataset, evaluation])
    if args.dry_run:
        return 0
    total = runner.write()
    print(f"\nSite: {site.output / 'index.html'}  (serve it with: nox -s serve)")
    _print_summary(evaluation.output / results_contract.SUMMARY_FILE)
    print(f"Total {total:.1f}s; stage times and cache hits in {record_path}")
    return 0


def eval_workers(models: int, needs_cuda: bool) -> int:
    """One single-thread worker per core on CPU, at most one per model; one process on GPU.
    (The worker count is part of each model's evaluation cache key: pipelines that share
    models, such as the data track, must ask for the same.)"""
    return 1 if needs_cuda else max(1, min(os.cpu_count() or 1, models))


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
                    "fingerprint": s.fingerprint,
                    "reasons": s.reasons,
                }
                for s in stages
            ],
        },
    )
    return total


def _print_summary(summary_path: Path) -> None:
    """Recall and transfer side by side (docs/protocol.md): per model and primary metric, the
    mean and, for an adapter, its change against the base with the paired p-value."""
    from rich.console import Console
    from rich.table import Table

    from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS

    if not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text())
    sets = [
        (claim, task)
        for claim, task in PRIMARY_SETS
        if any(task in tasks for tasks in summary["models"].values())
    ]
    title = " | ".join(f"{claim} ({task})" for claim, task in sets)
    table = Table(title=f"{title}: mean; change vs base (paired p)")
    table.add_column("model")
    for claim, _task in sets:
        for metric in PRIMARY_METRICS:
            table.add_column(f"{claim}\n{metric}")
    for model, tasks in summary["models"].items():
        row = [model]
        for _claim, task in sets:
            for metric in PRIMARY_METRICS:
                stat = tasks.get(task, {}).get(metric)
                if not stat:
                    row.append("-")
                    continue
                cell = f"{stat['mean']:.3f}"
                comp = summary.get("comparisons", {}).get(model, {}).get(task, {}).get(metric)
                if comp:
                    cell += f" {comp['delta']:+.3f}\np={comp['p_value']:.2g}"
                row.append(cell)
        table.add_row(*row)
    Console(width=160).print(table)
