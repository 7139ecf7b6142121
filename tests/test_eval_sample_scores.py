"""Per-sample scores are computed once, by the tasks' own code (tasks/utils.py), and the runner
reads them from lm-eval's logged samples: a real run on the tiny model, with every scorer of
benchmark.scorers counted."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from eval_helpers import build_tiny_adapter, build_tiny_dataset, build_tiny_retention

from benchmark import scorers
from benchmark.contracts import results as contract
from benchmark.contracts.adapter import CARD_FILE, TRAIN_METRICS_FILE
from benchmark.evaluation import runner
from benchmark.evaluation.stats import BootstrapSettings

#: the scorer functions counted: the per-pair scorer, the embedding cosine, and BERTScore's
#: encoder (every BERTScore metric, full and length-controlled, goes through it)
SCORERS = ("pair_scores", "embedding_cosine", "_bertscore_pairs")
#: every task, three documents each, short answers: seconds on the tiny model
TINY_RUN = {"tasks": ("marine",), "limit": 3, "max_gen_toks": 48, "batch_size": 4, "dtype": "fp32"}


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """Base + one adapter on every task, each scorer call recorded with its (predictions,
    references) arguments (BERTScore's memo emptied, so its encoder sees every pair)."""
    root = tmp_path_factory.mktemp("scored-once")
    calls: dict[str, list[tuple]] = {name: [] for name in SCORERS}

    def counted(name):
        scorer = getattr(scorers, name)

        def wrapper(*args, **kwargs):
            pairs = args[1:3] if name == "_bertscore_pairs" else args[:2]  # after the model name
            calls[name].append(pairs)
            return scorer(*args, **kwargs)

        return wrapper

    adapter = build_tiny_adapter(tiny_model_dir, root / "adapters" / "lora-a", seed=1)
    (adapter / TRAIN_METRICS_FILE).write_text(json.dumps({"trainable_params": 1, "epochs": 1}))
    settings = runner.EvalSettings(
        **TINY_RUN,
        dataset=str(build_tiny_dataset(root / "dataset")),
        retention=str(build_tiny_retention(root / "retention.jsonl")),
        bootstrap=BootstrapSettings(n_resamples=200, seed=0),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MARINEBENCH_BUILD", str(root / "build"))
        mp.setattr(scorers, "_BERTSCORE_CACHE", {})
        for name in SCORERS:
            mp.setattr(scorers, name, counted(name))
        result = runner.evaluate(str(tiny_model_dir), [adapter], settings, use_cache=False)
    records = [json.loads(line) for line in (result.folder / contract.SCORES_FILE).open()]
    return {"folder": result.folder, "calls": calls, "records": records}


def _generation_pairs(records) -> Counter:
    return Counter(
        (r["prediction"], r["reference"]) for r in records if r["task"] in contract.GENERATION_TASKS
    )


def test_each_sample_is_scored_once_by_each_scorer(run):
    samples = _generation_pairs(run["records"])
    n_corpora = 2 * len(contract.GENERATION_TASKS)  # models x generation tasks
    assert sum(samples.values()) == n_corpora * 3  # x documents
    assert Counter(run["calls"]["pair_scores"]) == samples
    calls = run["calls"]["embedding_cosine"]
    assert len(calls) == n_corpora  # one call per model and task: the corpus at once
    assert Counter(pair for preds, refs in calls for pair in zip(preds, refs, strict=True)) == (
        samples
    )
    # BERTScore: each distinct pair, full answer or cut to the reference's length, goes to the
    # encoder once (for precision, recall, F1 and F1 of the cut answer alike), the cut answers
    # in the same call as the full ones: at most one call per model and task
    calls = run["calls"]["_bertscore_pairs"]
    encoded = Counter(pair for preds, refs in calls for pair in zip(preds, refs, strict=True))
    assert set(encoded.values()) == {1}
    answered = [(p, r) for p, r in samples if not scorers.is_empty(p)]
    cut = {(scorers.cut_to_reference(p, r), r) for p, r in answered}
    assert set(encoded) == set(answered) | cut
    assert len(cut - set(answered)) > 0  # some answers were longer than their reference
    assert 0 < len(calls) <= n_corpora


def test_records_hold_the_registered_metrics_with_lm_evals_directions(run):
    by_task = {}
    for r in run["records"]:
        by_task.setdefault(r["task"], set()).update(r["metrics"])
    assert set(by_task) == set(contract.task_names())
    for task, metrics in by_task.items():
        assert metrics == {m.name for m in contract.metrics_of(task)}, task
    lm_eval = contract.lm_eval_dir(run["folder"], contract.BASE) / contract.LM_EVAL_RESULTS_FILE
    higher = json.loads(lm_eval.read_text())["higher_is_better"]  # the task YAMLs' declaration
    for task in contract.task_names():
        assert higher[task] == {
            m.name: contract.higher_is_better(m.name) for m in contract.metrics_of(task)
        }
    assert higher["marine_qa"]["length_ratio"] is None  # neither direction is better


def test_the_runner_reads_the_scores_the_tasks_logged(run):
    model_dir = contract.lm_eval_dir(run["folder"], "lora-a")
    for task in ("marine_qa", "marine_recall", "marine_qa_ppl"):
        logged = [json.loads(line) for line in (model_dir / contract.samples_file(task)).open()]
        ours = {
            r["doc_id"]: r["metrics"]
            for r in run["records"]
            if r["model"] == "lora-a" and r["task"] == task
        }
        for sample in logged:
            assert contract.sample_scores(sample) == ours[sample["doc_id"]]
            record = "bits_per_byte" if task == "marine_qa_ppl" else "bertscore_f1"
            assert sample[record]["score"] >= 0


def test_each_adapters_training_record_is_copied_into_the_results(run):
    copy = contract.training_dir(run["folder"], "lora-a")
    assert json.loads((copy / TRAIN_METRICS_FILE).read_text())["trainable_params"] == 1
    assert (copy / CARD_FILE).is_file()  # PEFT's own card
    assert not contract.training_dir(run["folder"], contract.BASE).exists()
