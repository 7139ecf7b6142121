"""Evaluate a base model and all its adapters in one process through lm-eval's evaluator.

The base is loaded once and measured as it is; each adapter is then merged into it with PEFT
and the base weights are restored bit for bit afterwards (see merging.py). Each model's lm-eval
results and samples, plus our per-sample scores, are cached by a hash of everything that
determines them, so a rerun with nothing changed loads no model at all. The run folder is
assembled from those entries and renamed into place whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark import paths, scorers
from benchmark.atomic import atomic_dir
from benchmark.contracts.results import (
    BASE,
    MANIFEST_FILE,
    SCORES_FILE,
    SUMMARY_FILE,
    ScoreRecord,
    lm_eval_dir,
    sample_scores,
)
from benchmark.device import Placement, choose_placement
from benchmark.errors import UserError
from benchmark.evaluation import data, merging
from benchmark.evaluation.adapters import AdapterInfo, check_adapters
from benchmark.evaluation.cache import (
    CacheEntry,
    EvalCache,
    dumps_lm_eval,
    write_entry_files,
)
from benchmark.evaluation.stats import BootstrapSettings
from benchmark.evaluation.summary import build_summary
from benchmark.evaluation.training import copy_training_records
from benchmark.fingerprint import code_closure, machine, model_fingerprint, package_versions
from benchmark.hashing import sha256_tree
from benchmark.models import load_model, model_path, resolve_model

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("marine",)
DATA_TASKS = ("marine_qa",)

#: how many times this process loaded base-model weights (a cached rerun must not add any)
MODEL_LOADS = 0


@dataclass
class EvalSettings:
    """Everything besides the model that decides the numbers (all of it goes in the cache key)."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    limit: int | float | None = None
    max_gen_toks: int | None = None
    batch_size: int = 80
    apply_chat_template: bool = True
    bertscore_model: str = scorers.DEFAULT_BERTSCORE_MODEL
    dataset: str | None = None
    retention: str | None = None
    device: str | None = None
    dtype: str | None = None
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    #: processes sharing the models out, the CPU threads split between them (in the cache key:
    #: a different thread count may round bf16 sums differently)
    workers: int = 1
    #: the opt-in fast path (evaluation/fast.py): all models in one batch, LoRA unmerged;
    #: numbers differ from the exact path by rounding (`marinebench perf parity`)
    fast: bool = False


@dataclass
class ModelRun:
    name: str
    adapter: AdapterInfo | None
    key: str
    entry: CacheEntry | None = None
    cached: bool = False


@dataclass
class RunResult:
    folder: Path
    models: list[ModelRun]
    load_s: float
    summary: dict


def _placement(settings: EvalSettings) -> Placement:
    try:
        return choose_placement(settings.device, settings.dtype)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _code_and_packages() -> tuple[dict[str, str], dict[str, str]]:
    """The code a model's evaluation runs (this module's imports, followed, and the tasks' own
    code) and the packages it runs on: any change invalidates that model's cache entry."""
    code, modules = code_closure([__name__, paths.TASKS_DIR / "utils.py"])
    return code, package_versions(modules)


def _versions() -> dict[str, str]:
    import lm_eval
    import peft
    import torch
    import transformers

    return {
        "lm_eval": lm_eval.__version__,
        "peft": peft.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _metadata(dataset: data.DataSource, retention: data.DataSource) -> dict[str, str]:
    """Task metadata (lm-eval passes it to tasks/utils.py's dataset loaders)."""

    def spec(source: data.DataSource) -> str:
        return source.location + (f"@{source.revision}" if source.revision else "")

    return {"dataset": spec(dataset), "retention_data": spec(retention)}


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@dataclass
class Plan:
    """What an evaluation needs before any model loads: inputs checked, cache keys computed."""

    spec: str
    path: str
    infos: list[AdapterInfo]
    dataset: data.DataSource
    retention: data.DataSource
    placement: Placement
    common: dict[str, Any]
    runs: list[ModelRun]


def plan(model: str | None, adapters: list[Path], settings: EvalSettings, cache: EvalCache) -> Plan:
    """Check every input (adapters, data files) and key each model's cache entry."""
    spec = str(model) if model else resolve_model(None).spec
    path = model_path(spec)
    infos = check_adapters(list(adapters), spec, path)
    dataset = data.resolve_source(settings.dataset)
    retention = data.resolve_source(
        settings.retention or str(data.default_retention_file()), env=data.RETENTION_ENV
    )
    for source in (dataset, retention):
        if source.kind == "jsonl":
            data.read_qa_jsonl(source.location)  # fail on a bad line before any model loads
    placement = _placement(settings)
    code, packages = _code_and_packages()
    common = {
        "model": model_fingerprint(path),
        "task_files": sha256_tree(paths.TASKS_DIR, exclude=("__pycache__",)),
        "code": code,
        "packages": packages,
        "machine": machine(),
        "tasks": list(settings.tasks),
        "dataset": data.source_hash(dataset),
        "retention": data.source_hash(retention),
        "generation": {
            "max_gen_toks": settings.max_gen_toks,
            "batch_size": settings.batch_size,
            "apply_chat_template": settings.apply_chat_template,
            "path": "fast" if settings.fast else "exact",
            "adapters": (
                "unmerged LoRA, each row its own adapter"
                if settings.fast
                else "merged into the base weights"
            ),
            "workers": 1 if settings.fast else settings.workers,
            "device": placement.device,
            "dtype": placement.dtype_name,
        },
        "limit": settings.limit,
        "bertscore_model": settings.bertscore_model,
        "versions": _versions(),
    }
    runs = [ModelRun(BASE, None, cache.key({**common, "adapter": None}))]
    runs += [ModelRun(i.name, i, cache.key({**common, "adapter": i.hash})) for i in infos]
    for item in runs:
        item.entry = cache.get(item.key)
        item.cached = item.entry is not None
        if item.cached:
            log.info("%s: cached results (%s)", item.name, item.key[:12])
    return Plan(spec, path, infos, dataset, retention, placement, common, runs)


def compute(p: Plan, todo: list[ModelRun], settings: EvalSettings, cache: EvalCache) -> float:
    """Evaluate the models in `todo` in this process (base loaded once); returns load seconds."""
    return _evaluate_models(
        p.path, todo, settings, p.placement, p.dataset, p.retention, cache, p.common
    )


def evaluate(
    model: str | None,
    adapters: list[Path],
    settings: EvalSettings,
    run: str | None = None,
    use_cache: bool = True,
    out_root: Path | None = None,
    judge: Any = None,
    references: tuple[str, ...] = (),
) -> RunResult:
    """Evaluate base + adapters; write build/results/<run>/; return what was done."""
    cache = EvalCache(enabled=use_cache)
    p = plan(model, adapters, settings, cache)
    spec, path, runs, common = p.spec, p.path, p.runs, p.common
    dataset, retention = p.dataset, p.retention
    resolved = resolve_model(spec)
    run = run or default_run_name(spec)
    if unknown := [r for r in references if r not in {m.name for m in runs}]:
        raise UserError(
            f"--compare-to {' '.join(unknown)}: not a model of this evaluation "
            f"(models: {', '.join(m.name for m in runs)})"
        )

    load_s = 0.0
    todo = [r for r in runs if not r.cached]
    if len(todo) > 1 and settings.workers > 1 and not settings.fast:
        from benchmark.evaluation.workers import compute_in_workers

        compute_in_workers(p, todo, settings, cache)
    elif todo:
        load_s = compute(p, todo, settings, cache)

    out_root = out_root or paths.results_dir()
    folder = out_root / run
    scores = {r.name: r.entry.scores for r in runs}
    if judge is not None:  # the optional LLM judge (evaluation/judge.py): two more metrics
        scores = judge(scores)
    summary = build_summary(run, scores, settings.bootstrap, references=references)
    manifest = {
        "run": run,
        "base_model": resolved.name,
        "base_model_path": path,
        "dataset_path": dataset.location,
        "dataset_source": dataset.describe(),
        "dataset_hash": data.source_hash(dataset),
        "retention_path": retention.location,
        "retention_hash": data.source_hash(retention),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tasks": sorted({t for r in runs for t in r.entry.samples}),
        "task_request": list(settings.tasks),
        "limit": settings.limit,
        "generation": {
            **common["generation"],
            "max_gen_toks": settings.max_gen_toks or _task_max_gen_toks(runs),
            "do_sample": False,
        },
        # How the dtype was chosen (the CPU probe's GFLOP/s when auto measured); not part of
        # the cache key, which holds the dtype itself.
        "dtype_choice": p.placement.record(),
        "bertscore_model": settings.bertscore_model,
        "judge": judge.record if judge is not None else None,
        "library_versions": common["versions"],
        "models": [
            {
                "name": r.name,
                "adapter": str(r.adapter.path) if r.adapter else None,
                "adapter_hash": r.adapter.hash if r.adapter else None,
                "cache_key": r.key,
                "cached": r.cached,
                "timing": r.entry.timing,
            }
            for r in runs
        ],
    }
    with atomic_dir(folder) as tmp:
        for r in runs:
            write_entry_files(lm_eval_dir(tmp, r.name), r.entry, with_scores=False)
        with open(tmp / SCORES_FILE, "w", encoding="utf-8") as fh:
            for r in runs:
                for row in scores[r.name]:
                    fh.write(dumps_lm_eval(row, indent=None) + "\n")
        (tmp / SUMMARY_FILE).write_text(dumps_lm_eval(summary) + "\n", encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(dumps_lm_eval(manifest) + "\n", encoding="utf-8")
        copy_training_records(tmp, {r.name: r.adapter.path for r in runs if r.adapter})
    log.info("results written to %s", folder)
    return RunResult(folder, runs, load_s, summary)


def default_run_name(spec: str) -> str:
    """The preset name, a local model folder's name, or a Hub id with / replaced."""
    resolved = resolve_model(spec)
    if resolved.preset is None and resolved.local_path is not None:
        return resolved.local_path.name
    return resolved.name.replace("/", "__")


def _task_max_gen_toks(runs: list[ModelRun]) -> int | None:
    for r in runs:
        for cfg in r.entry.results.get("configs", {}).values():
            gen = cfg.get("generation_kwargs") or {}
            if "max_gen_toks" in gen:
                return int(gen["max_gen_toks"])
    return None


def _evaluate_models(
    path: str,
    todo: list[ModelRun],
    settings: EvalSettings,
    placement: Placement,
    dataset: data.DataSource,
    retention: data.DataSource,
    cache: EvalCache,
    common: dict[str, Any],
) -> float:
    """Load the base once, wrap the adapters, run lm-eval for each model not in the cache."""
    global MODEL_LOADS
    import lm_eval

    start = time.perf_counter()
    base, tokenizer = load_model(path, placement)
    MODEL_LOADS += 1
    # Evaluation needs no gradients, and matmul picks its kernel by this flag (lm_head.py): a
    # base evaluated alone must round as it does beside adapters (PEFT freezes it on loading).
    base.requires_grad_(False)
    adapters = [r.adapter for r in todo if r.adapter is not None]
    with contextlib.ExitStack() as stack:
        hflm, model_context = _model_runner(base, tokenizer, todo, path, settings, stack)
        load_s = time.perf_counter() - start
        log.info("loaded %s + checked %d adapter(s) in %.1fs", path, len(adapters), load_s)
        metadata = _metadata(dataset, retention)
        task_manager = _task_manager(settings.tasks, metadata)
        gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None

        for item in todo:
            log.info("evaluating %s on %s", item.name, ", ".join(settings.tasks))
            t0 = time.perf_counter()
            with model_context(item), _env(scorers.BERTSCORE_ENV, settings.bertscore_model):
                results = lm_eval.simple_evaluate(
                    model=hflm,
                    tasks=list(settings.tasks),
                    task_manager=task_manager,
                    apply_chat_template=settings.apply_chat_template,
                    log_samples=True,
                    limit=settings.limit,
                    gen_kwargs=gen_kwargs,
                    bootstrap_iters=0,
                )
            timing = {"eval_s": time.perf_counter() - t0, **hflm.timing()}
            samples = results.pop("samples")
            results["model_name"] = item.name
            results["task_hashes"] = _task_hashes(samples)
            scores = score_samples(item.name, results, samples)
            entry = CacheEntry(results, samples, scores, timing)
            parts = {**common, "adapter": item.adapter.hash if item.adapter else None}
            item.entry = cache.put(item.key, entry, parts) if cache.enabled else entry
    return load_s


def _model_runner(base, tokenizer, todo: list[ModelRun], path: str, settings, stack):
    """(the HFLM every model runs on, per model the context its evaluation runs in).

    Exact path: each adapter merged into the base weights within its context, restored after.
    Fast path (evaluation/fast.py): the first model's generation answers for all of them, each
    row its own adapter; likelihoods run on the merged model as on the exact path."""
    from benchmark.evaluation.hflm import EvalHFLM

    adapters = [r.adapter for r in todo if r.adapter is not None]
    if not settings.fast:
        merging.check_fit(base, adapters, path)
        saved = merging.SavedWeights(base) if adapters else None
        hflm = EvalHFLM(pretrained=base, tokenizer=tokenizer, batch_size=settings.batch_size)

        def exact_context(item: ModelRun):
            hflm.reset_timing()
            if item.adapter is None:
                return contextlib.nullcontext()
            return merging.merged_adapter(base, item.adapter, path, saved)

        return hflm, exact_context

    from benchmark.evaluation import multi_lora
    from benchmark.evaluation.fast import FastEvalHFLM

    weights = [multi_lora.read_adapter(base, a, path) for a in adapters]  # checks each fits
    saved = merging.SavedWeights(base) if adapters else None
    infos = {r.name: r.adapter for r in todo}

    def merge(name: str):
        if infos[name] is None:
            return contextlib.nullcontext()
        return merging.merged_adapter(base, infos[name], path, saved)

    hflm = FastEvalHFLM(
        pretrained=base,
        tokenizer=tokenizer,
        batch_size=settings.batch_size,
        adapters=weights,
        # 0: the base; i: the i-th adapter of `weights`
        models={r.name: adapters.index(r.adapter) + 1 if r.adapter else 0 for r in todo},
        merge=merge,
    )
    stack.callback(hflm.close)

    def fast_context(item: ModelRun):
        hflm.select(item.name)
        return contextlib.nullcontext()

    return hflm, fast_context


def _task_manager(tasks: tuple[str, ...], metadata: dict[str, str]):
    """lm-eval's task index, built once for all models. Only tasks/ is indexed when every
    requested task is ours: indexing lm-eval's thousands of built-in YAML files costs ~10 s."""
    from lm_eval.tasks import TaskManager

    ours = TaskManager(include_path=str(paths.TASKS_DIR), include_defaults=False, metadata=metadata)
    if set(tasks) <= set(ours.all_tasks):
        return ours
    return TaskManager(include_path=str(paths.TASKS_DIR), metadata=metadata)


def _task_hashes(samples: dict[str, list[dict]]) -> dict[str, str]:
    """Per-task hash of all samples, as lm-eval's EvaluationTracker records it."""
    from lm_eval.utils import hash_string

    return {
        task: hash_string(
            "".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows)
        )
        for task, rows in samples.items()
    }


# --- per-sample scores (scores.jsonl) ---------------------------------------------------------


def score_samples(model: str, results: dict, samples: dict[str, list[dict]]) -> list[dict]:
    """One scores.jsonl record per (task, doc): the scores the task's own code left in lm-eval's
    logged samples (contracts.results.sample_scores), with the document and the answer."""
    rows: list[dict] = []
    for task in sorted(samples):
        output_type = results.get("configs", {}).get(task, {}).get("output_type")
        for sample in sorted(samples[task], key=lambda s: s["doc_id"]):
            doc = sample.get("doc", {})
            record = ScoreRecord(
                model=model,
                task=task,
                doc_id=sample["doc_id"],
                id=doc.get("id", str(sample["doc_id"])),
                topic=doc.get("topic", ""),
                question=doc.get("question", ""),
                reference=doc.get("answer", sample.get("target")),
                prediction=_prediction(output_type, sample),
                metrics=sample_scores(sample),
            )
            rows.append(record.to_json())
    return rows


def _prediction(output_type: str | None, sample: dict) -> str | None:
    """The model's answer, read the way the task's declared output type produces it."""
    if output_type == "multiple_choice":
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        choices = sample.get("doc", {}).get("choices") or []
        pick = max(range(len(lls)), key=lls.__getitem__) if lls else None
        return choices[pick] if pick is not None and pick < len(choices) else None
    if output_type == "generate_until":
        return _first_text(sample.get("filtered_resps"))
    return None  # likelihood tasks score a given text; the model answers nothing


def _first_text(resps) -> str:
    while isinstance(resps, list | tuple):
        if not resps:
            return ""
        resps = resps[0]
    return "" if resps is None else str(resps)
