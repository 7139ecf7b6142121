"""Parity of the opt-in fast evaluation path (`marinebench evaluate --fast`) with the exact
path: both evaluate the same base + adapters on the same tasks, and every metric mean of every
model on the fast path is checked against its own 95% confidence interval on the exact path.

Both runs go through `marinebench evaluate` in subprocesses, with the evaluation cache (the
exact path's results of an earlier run are reused). Writes build/perf/parity.json: per model,
task and metric the two means, the exact path's CI and whether the fast mean lies inside it;
the share of generated answers that came out word for word the same; `all_within`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_write_json
from benchmark.contracts.results import SCORES_FILE, SUMMARY_FILE

DEFAULT_TASKS = "marine_qa,marine_recall,marine_qa_ppl"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="marinebench perf parity", description=__doc__)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument(
        "--adapters", nargs="*", type=Path, default=None, help="default: build/adapters/*"
    )
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated lm-eval tasks")
    p.add_argument("--limit", type=int, default=80, help="documents per task (0: all)")
    p.add_argument("--batch-size", type=int, default=80)
    p.add_argument("--out", type=Path, default=None, help="default: build/perf/parity.json")
    return p.parse_args(argv)


def compare(exact: dict, fast: dict) -> list[dict]:
    """One row per (model, task, metric) of the exact summary: both means, the exact CI, and
    whether the fast mean lies within it (a metric the fast run lacks counts as outside)."""
    rows = []
    for model, tasks in sorted(exact["models"].items()):
        for task, metrics in sorted(tasks.items()):
            for metric, stat in sorted(metrics.items()):
                other = fast.get("models", {}).get(model, {}).get(task, {}).get(metric)
                fast_mean = None if other is None else other["mean"]
                low, high = stat["ci_low"], stat["ci_high"]
                within = (
                    fast_mean is not None
                    and low is not None
                    and high is not None
                    and low <= fast_mean <= high
                ) or (fast_mean is not None and fast_mean == stat["mean"])
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "metric": metric,
                        "exact_mean": stat["mean"],
                        "fast_mean": fast_mean,
                        "exact_ci": [low, high],
                        "within_ci": bool(within),
                    }
                )
    return rows


def same_answers(exact_scores: Path, fast_scores: Path) -> dict[str, float]:
    """Per model, the share of generated answers identical on both paths."""

    def answers(path: Path) -> dict[tuple, str]:
        out = {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if row.get("prediction") is not None and row["task"] and "_mc" not in row["task"]:
                    out[(row["model"], row["task"], row["doc_id"])] = row["prediction"]
        return out

    a, b = answers(exact_scores), answers(fast_scores)
    share: dict[str, list[int]] = {}
    for key, text in a.items():
        hits = share.setdefault(key[0], [0, 0])
        hits[0] += int(b.get(key) == text)
        hits[1] += 1
    return {model: round(same / total, 4) for model, (same, total) in sorted(share.items())}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    adapters = args.adapters
    if adapters is None:
        adapters = sorted(p for p in paths.adapters_dir().iterdir() if p.is_dir())
    out_file = args.out or paths.perf_dir() / "parity.json"
    runs = {}
    for path_name, extra in (("exact", []), ("fast", ["--fast"])):
        run = f"parity-{path_name}"
        cmd = [
            sys.executable, "-m", "benchmark", "evaluate", "--model", args.model,
            "--adapters", *map(str, adapters), "--tasks", *args.tasks.split(","),
            "--batch-size", str(args.batch_size), "--run", run, *extra,
        ]  # fmt: skip
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        print(f"{path_name} path: {' '.join(cmd[3:])}", flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        runs[path_name] = paths.results_dir() / run
    exact = json.loads((runs["exact"] / SUMMARY_FILE).read_text(encoding="utf-8"))
    fast = json.loads((runs["fast"] / SUMMARY_FILE).read_text(encoding="utf-8"))
    rows = compare(exact, fast)
    outside = [r for r in rows if not r["within_ci"]]
    report = {
        "tasks": args.tasks.split(","),
        "limit": args.limit,
        "batch_size": args.batch_size,
        "models": sorted(exact["models"]),
        "metric_means": len(rows),
        "within_ci": len(rows) - len(outside),
        "all_within": not outside,
        "outside": outside,
        "same_answers": same_answers(runs["exact"] / SCORES_FILE, runs["fast"] / SCORES_FILE),
        "rows": rows,
    }
    atomic_write_json(out_file, report)
    print(
        f"fast vs exact: {report['within_ci']}/{len(rows)} metric means within the exact "
        f"path's 95% CI; answers word for word the same: {report['same_answers']}; "
        f"wrote {out_file}"
    )
    for r in outside:
        print(
            f"  outside: {r['model']} {r['task']} {r['metric']}: fast {r['fast_mean']} vs "
            f"exact {r['exact_mean']} [{r['exact_ci'][0]}, {r['exact_ci'][1]}]"
        )
    return 0
