"""`marinebench datatrack` (nox -s datatrack): every submission through the fixed recipe and the
fixed evaluation, cached stage by stage exactly like the main benchmark (benchmark/pipeline.py's
StageRunner and the stages' own fingerprints), recorded in build/datatrack.json.

dataset -> prepare:NAME (each reference and submission) -> train:NAME (side by side, under the
token budget; `curated` reuses the main benchmark's default adapter when its data is the main
training split) -> evaluate (base + every adapter, paired tests against base and `curated`) ->
site (the data leaderboard page beside the model leaderboard).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmark import paths
from benchmark.contracts import dataset as dataset_contract
from benchmark.contracts import datatrack as contract
from benchmark.contracts import results as results_contract
from benchmark.datatrack.cli import recipe_argument
from benchmark.datatrack.prepare import DEFAULT_RECIPE, recipe_config
from benchmark.errors import UserError
from benchmark.pipeline import (
    PROFILES,
    Stage,
    StageRunner,
    cluster_argument,
    eval_workers,
    make_cluster,
    prepare_model,
    training_stage,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datatrack",
        help="the data track: train and evaluate every reference and submitted training set "
        "under the fixed recipe (cached by input hashes)",
    )
    p.add_argument("--force", action="store_true", help="rerun every stage even if cached")
    p.add_argument(
        "--dry-run", action="store_true", help="say which stages would run and why, run none"
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these submissions (curated always runs: everything is compared with it)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N documents per task")
    p.add_argument("--jobs", type=int, default=None, help="trainings at once (default: cores)")
    recipe_argument(p)
    cluster_argument(p)
    p.set_defaults(func=_run)


def entries(only: list[str] | None = None) -> list[tuple[str, Path | None]]:
    """(name, file or None) of every offline reference, `gemini` when GEMINI_API_KEY is set,
    and every submissions/NAME.jsonl; `curated` first."""
    from benchmark.datatrack.cli import check_name
    from benchmark.datatrack.references import REFERENCES

    out: list[tuple[str, Path | None]] = [
        (r.name, None)
        for r in REFERENCES
        if not r.online or os.environ.get("GEMINI_API_KEY", "").strip()
    ]
    for path in sorted(contract.submissions_dir().glob("*.jsonl")):
        check_name(path.stem, submitted=True)
        out.append((path.stem, path))
    if only:
        unknown = set(only) - {name for name, _ in out}
        if unknown:
            raise UserError(f"--only {' '.join(sorted(unknown))}: no such submission")
        out = [(n, f) for n, f in out if n == contract.CURATED or n in only]
    return out


def _record(name: str) -> dict | None:
    path = contract.data_dir(paths.build_dir(), name) / contract.SUBMISSION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _run(args: argparse.Namespace) -> int:
    build = paths.build_dir()
    record_path = build / contract.RECORD_FILE
    recipe = (args.recipe or DEFAULT_RECIPE).resolve()
    config = recipe_config(recipe)
    cluster = make_cluster(args.cluster, [config.model])
    runner = StageRunner(record_path, "datatrack", args.force, args.dry_run, cluster)
    prepare_model(config.model, False, args.dry_run)
    recipe_args = ["--recipe", str(recipe)]

    dataset = Stage("dataset", ["dataset", "build"], [dataset_contract.BUILD_REPORT_FILE])
    runner.run_stage(dataset, [])
    subs = entries(args.only)
    prepares = [
        Stage(
            f"prepare:{name}",
            ["data", "prepare", name, *recipe_args, *(["--file", str(file)] if file else [])],
            [contract.SUBMISSION_FILE],
        )
        for name, file in subs
    ]
    # One at a time: `self` runs the base model on every core; the others take seconds.
    runner.run_side_by_side(prepares, [dataset], jobs=1)

    main_training = training_stage(recipe)
    trainings: list[Stage] = []
    adapters: list[Stage] = []
    after: dict[str, list[Stage]] = {}  # each training's upstream: the dataset, its prepare
    for (name, _file), prepared in zip(subs, prepares, strict=True):
        record = _record(name)
        if record is None:  # a dry run before the first prepare
            print(f"[benchmark] train:{name}: would run after prepare:{name}", flush=True)
            continue
        if record["adapter"] == config.name:
            stage = main_training
        else:
            stage = training_stage(
                recipe,
                "--dataset",
                str(contract.data_dir(build, name)),
                "--output",
                str(contract.adapter_dir(build, name)),
                "--token-budget",
                str(record["token_budget"]),
                name=f"train:{name}",
            )
        trainings.append(stage)
        adapters.append(stage)
        after[stage.name] = [dataset, prepared]
    runner.run_side_by_side(trainings, after, args.jobs)
    if args.dry_run and len(adapters) < len(subs):
        print("[benchmark] evaluate, site: would run after the trainings", flush=True)
        return 0

    curated = _record(contract.CURATED)
    main_models = len(PROFILES["cpu"]["configs"]) + 1
    evaluation = Stage(
        "evaluate",
        [
            "evaluate",
            "--model",
            config.model,
            "--adapters",
            *(str(s.output) for s in adapters),
            "--results-root",
            str(contract.results_root(build)),
            "--run",
            contract.RUN,
            "--compare-to",
            curated["adapter"] if curated else contract.CURATED,
            *(["--limit", str(args.limit)] if args.limit else []),
            # the main benchmark's worker count: the models both evaluate (base, the default
            # adapter) then share their evaluation cache entries
            "--workers",
            str(eval_workers(main_models, needs_cuda=False)),
        ],
        [results_contract.SUMMARY_FILE],
    )
    runner.run_stage(evaluation, [dataset, *prepares, *trainings])
    site = Stage("site", ["site", "build"], ["index.html"])
    runner.run_stage(site, [evaluation])
    if args.dry_run:
        return 0
    total = runner.write()
    print(f"\nData leaderboard: {site.output / 'data.html'}  (serve it with: nox -s serve)")
    _print_table(evaluation.output / results_contract.SUMMARY_FILE, subs)
    print(f"Total {total:.1f}s; stage times and cache hits in {record_path}")
    return 0


def _print_table(summary_path: Path, subs: list[tuple[str, Path | None]]) -> None:
    """Per submission: pairs, passes, and each headline metric's change vs base and vs
    curated with its paired p-value."""
    from rich.console import Console
    from rich.table import Table

    from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS

    summary = json.loads(summary_path.read_text())
    curated = (_record(contract.CURATED) or {}).get("adapter")
    versus = summary.get(contract.REFERENCE_COMPARISONS_KEY, {}).get(curated, {})
    table = Table(title="data track: change vs base | vs curated (paired p)")
    for col in ("submission", "pairs", "passes"):
        table.add_column(col)
    for claim, _task in PRIMARY_SETS:
        for metric in PRIMARY_METRICS:
            table.add_column(f"{claim}\n{metric}")
    for name, _file in subs:
        record = _record(name) or {}
        model = record.get("adapter", name)
        row = [name, str(record.get("pairs", "-")), f"{record.get('epochs', 0):.2f}"]
        for _claim, task in PRIMARY_SETS:
            for metric in PRIMARY_METRICS:
                cell = []
                for comps in (summary["comparisons"], versus):
                    comp = comps.get(model, {}).get(task, {}).get(metric)
                    cell.append(f"{comp['delta']:+.3f} p={comp['p_value']:.2g}" if comp else "-")
                row.append("\n".join(cell))
        table.add_row(*row)
    Console(width=200).print(table)
