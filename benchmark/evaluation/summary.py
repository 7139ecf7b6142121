"""summary.json: per model, task and metric the mean with its 95% bootstrap CI; per adapter,
task and metric the paired difference against the base with its CI and p-value; and each
metric's direction (None for one that describes the answers, such as their length: its change
is tested like any other, but is neither a gain nor a loss)."""

from __future__ import annotations

from collections import defaultdict

from benchmark.contracts.results import BASE, higher_is_better
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


def build_summary(
    run: str, scores: dict[str, list[dict]], settings: BootstrapSettings, base: str = BASE
) -> dict:
    """The summary of one run from every model's score records (contracts/results.py)."""
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
    comparisons: dict = {}
    base_table = tables.get(base, {})
    for model, tasks in tables.items():
        if model == base:
            continue
        comparisons[model] = {}
        for task, metrics in sorted(tasks.items()):
            comparisons[model][task] = {}
            for metric, values in sorted(metrics.items()):
                reference = base_table.get(task, {}).get(metric)
                if not reference:
                    continue
                docs = sorted(set(values) & set(reference))
                comparisons[model][task][metric] = paired_comparison(
                    [values[d] for d in docs], [reference[d] for d in docs], settings
                )
    metric_names = {m for tasks in tables.values() for metrics in tasks.values() for m in metrics}
    return {
        "run": run,
        "base": base,
        "models": models,
        "comparisons": comparisons,
        "protocol": verdicts(comparisons),
        "bootstrap": settings.as_dict(),
        "higher_is_better": {m: higher_is_better(m) for m in sorted(metric_names)},
    }
