"""`marinebench evaluate`: the base model and every adapter, one pass, cached, with statistics."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmark import scorers
from benchmark.errors import UserError
from benchmark.evaluation import stats

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate the base model and its adapters on the marine lm-eval tasks",
        description=(
            "Load the base model once and evaluate it and each adapter with lm-evaluation-harness "
            "(tasks/). With no --adapters, every adapter folder under build/adapters/ trained on "
            "this base is evaluated. Writes build/results/<run>/."
        ),
    )
    p.add_argument("--model", default=None, help="preset name, Hub id or model folder")
    p.add_argument(
        "--adapters", nargs="*", type=Path, default=None, metavar="DIR", help="adapter folders"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="evaluate on your own JSONL of {question, answer} records (generation metrics)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset folder or Hub dataset id (default: build/dataset, or $MARINEBENCH_DATASET)",
    )
    p.add_argument("--retention", default=None, help="retention JSONL (default: datasets_src/)")
    p.add_argument("--tasks", nargs="+", default=None, help="lm-eval tasks (default: marine)")
    p.add_argument("--limit", type=float, default=None, help="first N documents per task")
    p.add_argument("--max-gen-toks", type=int, default=None, help="answer length cap (tokens)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=80,
        help="requests generated at once (default 80: the test split in one batch; on a 2-core "
        "CPU, batch 80 generates SmolLM2's answers at 325 tok/s against 195 at batch 16)",
    )
    p.add_argument(
        "--no-chat-template", action="store_true", help="prompt without the chat template"
    )
    p.add_argument(
        "--bertscore-model",
        default=scorers.DEFAULT_BERTSCORE_MODEL,
        choices=sorted(scorers.BERTSCORE_LAYERS),
        help="minilm: offline (default); roberta-large: the seed's choice, downloads 1.4 GB",
    )
    p.add_argument("--run", default=None, help="results folder name (default: model name)")
    p.add_argument(
        "--results-root",
        type=Path,
        default=None,
        help="where the results folder goes (default build/results; the data track: "
        "build/datatrack/results)",
    )
    p.add_argument(
        "--compare-to",
        nargs="+",
        default=(),
        metavar="MODEL",
        help="also test every model against these models (adapter folder names), as against the "
        "base (summary.json `reference_comparisons`; the data track compares with `curated`)",
    )
    p.add_argument("--n-resamples", type=int, default=stats.DEFAULT_RESAMPLES)
    p.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap seed")
    p.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the models out, CPU threads split between them (default 1: "
        "the base loads once); on a 2-core CPU, 2 workers evaluate ~1.35x faster",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="opt-in fast path: every model in one batch (LoRA unmerged, per row), finished "
        "rows dropped, shared likelihood requests run once; numbers differ from the exact "
        "path by rounding (see `marinebench perf parity`); --workers is ignored",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default=None, help="auto (default), bf16, fp16, fp32")
    p.add_argument(
        "--judge",
        default=None,
        choices=_judge_providers(),
        help="also grade every generated answer against its reference with an LLM judge "
        "(CORRECT / INCORRECT / NOT_ATTEMPTED; adds judge_correct and judge_not_attempted). "
        "Online and paid: needs GEMINI_API_KEY; never part of the default",
    )
    _judge_arguments(p)
    p.set_defaults(func=run, stage_key=stage_key)

    a = sub.add_parser(
        "judge-agreement",
        help="how often the LLM judge agrees with a hand-labelled set of answers",
        description=(
            "Grade every answer of a hand-labelled JSONL ({question, reference, answer, label}, "
            "label CORRECT / INCORRECT / NOT_ATTEMPTED) with the Gemini judge and report "
            "accuracy, Cohen's kappa and the confusion table. Needs GEMINI_API_KEY."
        ),
    )
    a.add_argument("file", type=Path, metavar="FILE.jsonl", help="the hand-labelled answers")
    _judge_arguments(a)
    a.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="where the report goes (default build/judge_agreement/<file>--<judge model>.json)",
    )
    a.set_defaults(func=run_agreement, judge="gemini")


def _judge_providers() -> tuple[str, ...]:
    from benchmark.evaluation.judge import PROVIDERS

    return PROVIDERS


def _judge_arguments(p: argparse.ArgumentParser) -> None:
    from benchmark.evaluation.judge import DEFAULT_MODEL

    p.add_argument(
        "--judge-model", default=None, help=f"the judge's Gemini model (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--judge-workers",
        type=int,
        default=8,
        help="judge requests in flight at once (default 8); 429s are retried with backoff",
    )


def _limit(value: float | None) -> int | float | None:
    if value is None:
        return None
    if value <= 0:
        raise UserError(f"--limit must be positive, got {value}")
    return int(value) if value >= 1 else value


def _check(args: argparse.Namespace) -> None:
    if args.data is not None and args.dataset is not None:
        raise UserError("give either --data FILE.jsonl or --dataset, not both")
    if args.data is not None and args.data.suffix != ".jsonl":
        raise UserError(f"--data {args.data}: expected a .jsonl file of question/answer records")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.judge_workers < 1:
        raise UserError(f"--judge-workers must be at least 1, got {args.judge_workers}")
    if args.judge is not None:
        _judge(args)  # settings and key checked before any other work


def _judge_settings(args: argparse.Namespace):
    """The judge `--judge` asks for (None without it): what decides its verdicts goes into the
    stage's fingerprint, so a judged run is keyed apart from an unjudged one."""
    from benchmark.evaluation.judge import DEFAULT_MODEL, JudgeSettings

    if args.judge is None:
        return None
    return JudgeSettings(
        provider=args.judge,
        model=args.judge_model or DEFAULT_MODEL,
        max_workers=args.judge_workers,
    )


def _judge(args: argparse.Namespace):
    """The judge itself (None without `--judge`); a JudgeError without a key."""
    from benchmark.evaluation.judge import GeminiJudge

    settings = _judge_settings(args)
    return None if settings is None else GeminiJudge(settings)


def _settings(args: argparse.Namespace):
    from benchmark.evaluation.runner import DATA_TASKS, DEFAULT_TASKS, EvalSettings

    return EvalSettings(
        tasks=tuple(args.tasks or (DATA_TASKS if args.data else DEFAULT_TASKS)),
        limit=_limit(args.limit),
        max_gen_toks=args.max_gen_toks,
        batch_size=args.batch_size,
        apply_chat_template=not args.no_chat_template,
        bertscore_model=args.bertscore_model,
        dataset=str(args.data) if args.data else args.dataset,
        retention=args.retention,
        device=args.device,
        dtype=args.dtype,
        bootstrap=stats.BootstrapSettings(n_resamples=args.n_resamples, seed=args.seed),
        workers=args.workers,
        fast=args.fast,
    )


def _run_name(args: argparse.Namespace, spec: str) -> str:
    from benchmark.evaluation.runner import default_run_name

    if args.run is not None:
        return args.run
    if args.data is not None:
        return f"{default_run_name(spec)}--{args.data.stem}"
    return default_run_name(spec)


def stage_key(args: argparse.Namespace):
    """The results folder and everything that decides it: settings, base weights, adapters,
    data, task files, and the code (lm-eval loads tasks/utils.py by path) and packages."""
    import dataclasses
    import os

    from benchmark import paths
    from benchmark.evaluation import data
    from benchmark.evaluation.adapters import HASH_EXCLUDE, discover_adapters
    from benchmark.fingerprint import PLACEMENT_ENV, folder_digest, model_fingerprint, stage_key
    from benchmark.models import resolve_model, weights_location

    _check(args)
    spec = args.model or resolve_model(None).spec
    settings = _settings(args)
    adapters = args.adapters if args.adapters is not None else discover_adapters()
    retention = settings.retention or str(data.default_retention_file())
    inputs = {
        "settings": dataclasses.asdict(settings),
        "model": model_fingerprint(weights_location(spec)),
        "adapters": {
            str(a.resolve()): folder_digest(a, exclude=HASH_EXCLUDE) for a in map(Path, adapters)
        },
        "dataset": data.source_hash(data.resolve_source(settings.dataset)),
        "retention": data.source_hash(data.resolve_source(retention, env=data.RETENTION_ENV)),
        "tasks": folder_digest(paths.TASKS_DIR),
        "env": {k: os.environ.get(k) for k in PLACEMENT_ENV},
    }
    if args.compare_to:
        inputs["compare_to"] = list(args.compare_to)
    judge = _judge_settings(args)
    if judge is not None:
        inputs["judge"] = judge.fingerprint()
    out = (args.results_root or paths.results_dir()) / _run_name(args, spec)
    entries = ["benchmark.evaluation.cli", paths.TASKS_DIR / "utils.py"]
    return stage_key(out, entries, inputs, numeric=True)


def run(args: argparse.Namespace) -> int:
    from benchmark.evaluation.adapters import check_adapters, discover_adapters
    from benchmark.evaluation.runner import evaluate
    from benchmark.models import model_path, resolve_model

    _check(args)
    spec = args.model or resolve_model(None).spec
    adapters = args.adapters
    if adapters is None:
        adapters = []
        for folder in discover_adapters():
            try:
                check_adapters([folder], spec, model_path(spec))
            except UserError as exc:
                log.warning("skipping %s", exc)
                continue
            adapters.append(folder)
    settings = _settings(args)
    judge = _judge(args)
    # The judge grades the answers after the evaluation (runner.evaluate's `judge` hook).
    extra = {} if judge is None else {"judge": judge}
    result = evaluate(
        spec,
        adapters,
        settings,
        run=_run_name(args, spec),
        use_cache=not args.no_cache,
        out_root=args.results_root,
        references=tuple(args.compare_to),
        **extra,
    )
    print_summary(result.summary)
    if judge is not None:
        stats = judge.stats
        print(
            f"judge {judge.settings.model}: {stats.answers} answers, {stats.cached} verdicts "
            f"cached, {stats.requested} asked ({stats.prompt_tokens} prompt tokens, "
            f"{stats.output_tokens} output tokens)"
        )
    print(f"results: {result.folder}")
    return 0


def run_agreement(args: argparse.Namespace) -> int:
    """`marinebench judge-agreement FILE`: the judge against hand labels; prints and writes it."""
    from benchmark import paths
    from benchmark.atomic import atomic_write_json
    from benchmark.evaluation.judge_agreement import agreement, print_report

    if args.judge_workers < 1:
        raise UserError(f"--judge-workers must be at least 1, got {args.judge_workers}")
    judge = _judge(args)
    report = agreement(args.file, judge)
    out = args.out or (
        paths.build_dir()
        / "judge_agreement"
        / f"{args.file.stem}--{judge.settings.model.replace('/', '_')}.json"
    )
    atomic_write_json(out, report)
    print_report(report)
    print(f"report: {out}")
    return 0


def print_summary(summary: dict) -> None:
    """Mean [95% CI] per model/task/metric, and each adapter's delta and p-value vs the base."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {summary['run']}")
    for col in ("model", "task", "metric", "mean [95% CI]", "delta vs base", "p"):
        table.add_column(col)
    for model, tasks in summary["models"].items():
        for task, metrics in tasks.items():
            for metric, s in metrics.items():
                cmp = summary["comparisons"].get(model, {}).get(task, {}).get(metric)
                table.add_row(
                    model,
                    task,
                    metric,
                    f"{s['mean']:.4g} [{s['ci_low']:.4g}, {s['ci_high']:.4g}]",
                    f"{cmp['delta']:+.4g}" if cmp else "",
                    f"{cmp['p_value']:.3g}" if cmp else "",
                )
    Console(width=140).print(table)
