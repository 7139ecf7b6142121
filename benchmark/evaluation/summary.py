"""summary.json: per model, task and metric the mean with its 95% bootstrap CI; per adapter,
task and metric the paired difference against the base with its CI and p-value; and each
metric's direction (None for one that describes the answers, such as their length: its change
is tested like any other, but is neither a gain nor a loss)."""

from __future__ import annotations

from collections import defaultdict

from benchmark.contracts.results import BASE, REFERENCE_COMPARISONS_KEY, higher_is_better
from benchmark.errors import UserError
from benchmark.evaluation.protocol import verdicts
from benchmark.evaluation.stats import BootstrapSettings, mean_ci, paired_comparison


def _float_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def _by_task_metric(rows: list[dict]) -> dict[str, dict[str, dict[int, float]]]:
    """{task: {metric: {doc_id: value}}}."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        for metric, value in row["metrics"].items():
            out[row["task"]][metric][row["doc_id"]] = _float_or_nan(value)
    return out


def _compare(tables: dict, against: str, settings: BootstrapSettings) -> dict:
    """{model: {task: {metric: paired comparison}}} of every other model with `against`, on the
    documents both answered."""
    reference_table = tables.get(against, {})
    out: dict = {}
    for model, tasks in tables.items():
        if model == against:
            continue
        out[model] = {}
        for task, metrics in sorted(tasks.items()):
            out[model][task] = {}
            for metric, values in sorted(metrics.items()):
                reference = reference_table.get(task, {}).get(metric)
                if not reference:
                    continue
                docs = sorted(set(values) & set(reference))
                out[model][task][metric] = paired_comparison(
                    [values[d] for d in docs], [reference[d] for d in docs], settings
                )
    return out


def build_summary(
    run: str,
    scores: dict[str, list[dict]],
    settings: BootstrapSettings,
    base: str = BASE,
    references: tuple[str, ...] = (),
) -> dict:
    """The summary of one run from every model's score records (contracts/results.py).

    `references` name more models to compare every model with, as the base is (the data track
    compares each submission with `curated`: contracts/datatrack.py)."""
    tables = {model: _by_task_metric(rows) for model, rows in scores.items()}
    models: dict = {}
    for model, tasks in tables.items():
        models[model] = {
            task: {
                metric: mean_ci([v for _, v in sorted(values.items())], settings)
                for metric, values in sorted(metrics.items())
            }
            for task, metrics in sorted(tasks.items())
        }
    comparisons = _compare(tables, base, settings)
    metric_names = {m for tasks in tables.values() for metrics in tasks.values() for m in metrics}
    summary = {
        "run": run,
        "base": base,
        "models": models,
        "comparisons": comparisons,
        "protocol": verdicts(comparisons),
        "bootstrap": settings.as_dict(),
        "higher_is_better": {m: higher_is_better(m) for m in sorted(metric_names)},
    }
    if references:
        missing = [r for r in references if r not in tables]
        if missing:
            raise UserError(f"cannot compare with {', '.join(missing)}: not a model of run {run}")
        summary[REFERENCE_COMPARISONS_KEY] = {r: _compare(tables, r, settings) for r in references}
    return summary
