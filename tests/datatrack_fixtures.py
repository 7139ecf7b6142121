"""A synthetic data-track folder (benchmark/contracts/datatrack.py) for the site and README tests:
one submission.json per submission, and one contract-exact results folder (the synthetic
factory's, its summary from the evaluation's own build_summary) whose summary also holds the
paired tests of every model against curated."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from benchmark.contracts import datatrack as dt
from benchmark.contracts import results as contract
from benchmark.contracts.adapter import TRAIN_METRICS_FILE
from benchmark.evaluation.stats import BootstrapSettings
from benchmark.evaluation.summary import build_summary
from benchmark.leaderboard.synthetic import write_adapter, write_results_run

#: the curated adapter is the main benchmark's default one, reused
CURATED_ADAPTER = "smollm2-lora-r16"
CURATED_PAIRS = 640
TOKENS_PER_PAIR = 100
TOKEN_BUDGET = CURATED_PAIRS * TOKENS_PER_PAIR
#: a submission whose name and rule try to inject HTML (the page must show them as text)
HOSTILE = '<img src=x onerror="alert(9)">'
HOSTILE_RULE = "<script>alert(1)</script> pairs from my lab notebook"
#: (name, kind, fraction, pairs, tokens per pair, rule, drops)
SUBMISSIONS = (
    (dt.CURATED, "reference", 1.0, CURATED_PAIRS, TOKENS_PER_PAIR, "the whole curated split", {}),
    ("subset-1-8", "reference", 0.125, 80, TOKENS_PER_PAIR, "a seeded 1/8 of curated", {}),
    ("subset-1-4", "reference", 0.25, 160, TOKENS_PER_PAIR, "a seeded 1/4 of curated", {}),
    ("subset-1-2", "reference", 0.5, 320, TOKENS_PER_PAIR, "a seeded 1/2 of curated", {}),
    ("noisy", "reference", None, 640, TOKENS_PER_PAIR, "a quarter of answers swapped", {}),
    ("short", "reference", None, 640, 40, "answers cut to their first sentence", {}),
    (
        "self",
        "reference",
        None,
        612,
        120,
        "the base model's own answers",
        {"clean": {"empty answer": 3}, "dedupe": {"exact duplicate": 25}},
    ),
    (
        HOSTILE,
        "submission",
        None,
        200,
        TOKENS_PER_PAIR,
        HOSTILE_RULE,
        {
            "clean": {"chat-control tokens": 2, "<b>bold</b> reason": 1},
            "decontaminate": {"test": 4, "recall": 1},
        },
    ),
)
TASKS = ("marine_recall", "marine_qa")
N_RESAMPLES = 200


def adapter_of(name: str) -> str:
    """The model name each submission's adapter has in the results folder."""
    return CURATED_ADAPTER if name == dt.CURATED else f"dt-{name}"


def _record(name, kind, fraction, pairs, per_pair, rule, drops) -> dict:
    per_pass = pairs * per_pair
    return {
        "name": name,
        "kind": kind,
        "rule": rule,
        "source": "build/dataset (train split)",
        "source_sha256": "c" * 64,
        "pairs_in": pairs + sum(sum(r.values()) for r in drops.values()),
        "pairs": pairs,
        "drops": drops,
        "dropped": [
            {"where": "line 1", "id": f"x-{i}", "step": step, "reason": reason, "detail": ""}
            for step, reasons in drops.items()
            for reason, n in reasons.items()
            for i in range(n)
        ],
        "fraction": fraction,
        "adapter": adapter_of(name),
        "token_budget": TOKEN_BUDGET,
        "tokens_per_pass": per_pass,
        "epochs": TOKEN_BUDGET / per_pass,
        "dataset_hash": "d" * 64,
    }


def _reference_comparisons(run: Path, reference: str) -> dict:
    """Every other model's paired test against `reference`, as summary.json's
    REFERENCE_COMPARISONS_KEY holds them: from the run's scores, by the evaluation's own
    build_summary."""
    scores: dict = defaultdict(list)
    for line in (run / contract.SCORES_FILE).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        scores[row["model"]].append(row)
    settings = BootstrapSettings(n_resamples=N_RESAMPLES, seed=0)
    summary = build_summary(run.name, dict(scores), settings, references=(reference,))
    return summary[contract.REFERENCE_COMPARISONS_KEY]


def write_datatrack(root: Path, *, n_samples: int = 16, seed: int = 0) -> dict[str, Path]:
    """build/datatrack/ under `root`: data/<name>/submission.json, adapters/<adapter>/ (training
    records only) and results/datatrack/. Returns its paths."""
    track = dt.root(Path(root))
    adapters = []
    for i, spec in enumerate(SUBMISSIONS):
        record = _record(*spec)
        folder = dt.data_dir(Path(root), spec[0])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / dt.SUBMISSION_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        adapter = write_adapter(track / "adapters", record["adapter"], seed + i + 1)
        tm_path = adapter / TRAIN_METRICS_FILE
        tm = json.loads(tm_path.read_text(encoding="utf-8"))
        tm.update(
            tokens_seen=TOKEN_BUDGET,
            token_budget=TOKEN_BUDGET,
            epochs_seen=round(record["epochs"], 4),
        )
        if spec[0] == dt.CURATED:  # reused from the main benchmark: no data-track keys
            for key in ("token_budget", "epochs_seen"):
                tm.pop(key)
        tm_path.write_text(json.dumps(tm, indent=2), encoding="utf-8")
        adapters.append((record["adapter"], adapter))
    run = write_results_run(
        dt.results_root(Path(root)),
        adapters,
        run=dt.RUN,
        n_samples=n_samples,
        seed=seed,
        tasks=TASKS,
        n_resamples=N_RESAMPLES,
    )
    summary_path = run / contract.SUMMARY_FILE
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary[dt.REFERENCE_COMPARISONS_KEY] = _reference_comparisons(run, CURATED_ADAPTER)
    summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return {"root": track, "run": run, "summary": summary_path}
