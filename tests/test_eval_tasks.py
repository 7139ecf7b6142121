"""The lm-eval tasks in tasks/: data resolution (the recall split included), seeded distractors,
the fixed TF-IDF function, the length columns, and the plain lm_eval CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import (
    build_tiny_dataset,
    build_tiny_retention,
    recall_records,
    records,
)

from benchmark import paths, scorers
from benchmark.contracts import results as contract
from benchmark.contracts.dataset import COLUMNS, RECALL_COLUMNS, RECALL_SPLIT, SPLITS
from benchmark.contracts.results import metrics_of, task_names
from benchmark.errors import UserError
from benchmark.evaluation import data


def _task_utils():
    spec = importlib.util.spec_from_file_location("marine_task_utils", paths.TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mc_distractors_are_seeded_same_topic_and_shuffled():
    import datasets

    utils = _task_utils()
    split = datasets.Dataset.from_list(records("test"))
    first = utils.process_mc_docs(split)
    again = utils.process_mc_docs(datasets.Dataset.from_list(records("test")[::-1]))
    again_by_id = {d["id"]: d for d in again}
    positions = set()
    for doc in first:
        assert len(doc["choices"]) == 4 and len(set(doc["choices"])) == 4
        assert doc["choices"][doc["gold"]] == doc["answer"]
        topic_answers = {r["answer"] for r in records("test") if r["topic"] == doc["topic"]}
        assert set(doc["choices"]) <= topic_answers
        assert again_by_id[doc["id"]]["choices"] == doc["choices"]  # per-doc, order-free seed
        positions.add(doc["gold"])
    assert len(positions) >= 3  # the right answer is not always in the same place


def test_mc_falls_back_to_other_topics_when_a_topic_is_small():
    import datasets

    utils = _task_utils()
    rows = records("test")[:5] + records("test")[5:6]  # second topic has a single question
    doc = [d for d in utils.process_mc_docs(datasets.Dataset.from_list(rows))][-1]
    assert len(doc["choices"]) == 4 and doc["choices"][doc["gold"]] == doc["answer"]


def test_resolve_source_local_jsonl_and_hub(tmp_path, build_root, monkeypatch):
    monkeypatch.delenv(data.DATASET_ENV, raising=False)
    with pytest.raises(UserError, match="marinebench dataset build"):
        data.resolve_source(None)  # build/dataset missing: say how to build it or use the Hub
    folder = build_tiny_dataset(build_root / "dataset")
    assert data.resolve_source(None) == data.DataSource("folder", str(folder.resolve()))
    hub = data.resolve_source("someone/marine-qa@v2")
    assert (hub.kind, hub.location, hub.revision) == ("hub", "someone/marine-qa", "v2")
    monkeypatch.setenv(data.DATASET_ENV, "someone/marine-qa")
    assert data.resolve_source(None).kind == "hub"
    loaded = data.load_source(data.DataSource("folder", str(folder)))
    assert set(loaded) == {*SPLITS, RECALL_SPLIT}
    assert loaded["test"].column_names == list(COLUMNS)
    assert loaded[RECALL_SPLIT].column_names == list(RECALL_COLUMNS)
    assert list(loaded[RECALL_SPLIT]) == recall_records()
    old = data.load_source(data.DataSource("folder", str(build_tiny_dataset(tmp_path, False))))
    assert set(old) == set(SPLITS)  # a folder built before the recall split still loads


def _card(folder: Path, recall: bool) -> None:
    """The dataset card's Hub configs: the seeded splits, and the recall split's own config."""
    configs = ["- config_name: default\n  data_files:\n"]
    configs += [f"  - split: {s}\n    path: data/{s}-*\n" for s in SPLITS]
    if recall:
        configs += [f"- config_name: recall\n  data_files:\n  - split: {RECALL_SPLIT}\n"]
        configs += [f"    path: data/{RECALL_SPLIT}-*\n"]
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n# card\n")


@pytest.mark.parametrize("recall", [True, False])
def test_a_hub_dataset_gives_its_recall_config_as_the_recall_split(tmp_path, recall):
    """The Hub branch, on a local copy of a published dataset (load_dataset reads a folder with
    a card exactly as it reads the repo): the recall config, where there is one, is the split."""
    folder = build_tiny_dataset(tmp_path / "published", recall=recall)
    _card(folder, recall)
    loaded = data.load_source(data.DataSource("hub", str(folder)))
    assert set(loaded) == set(SPLITS) | ({RECALL_SPLIT} if recall else set())
    if recall:
        assert list(loaded[RECALL_SPLIT]) == recall_records()


def test_recall_tasks_read_the_recall_split_and_say_when_it_is_missing(tmp_path):
    utils = _task_utils()
    splits = utils.recall_dataset(dataset=str(build_tiny_dataset(tmp_path / "new")))
    assert [d["question"] for d in splits[RECALL_SPLIT]] == [
        r["question"] for r in recall_records()
    ]
    old = str(build_tiny_dataset(tmp_path / "old", recall=False))
    assert RECALL_SPLIT not in utils.marine_dataset(dataset=old)  # marine_qa still runs on it
    with pytest.raises(UserError, match="no 'recall' split.*marinebench dataset build"):
        utils.recall_dataset(dataset=old)


def test_recall_mc_draws_its_distractors_from_the_recall_split(tmp_path):
    utils = _task_utils()
    splits = utils.recall_dataset(dataset=str(build_tiny_dataset(tmp_path / "dataset")))
    recall = recall_records()
    for doc in utils.process_mc_docs(splits[RECALL_SPLIT]):
        assert len(doc["choices"]) == 4 and doc["choices"][doc["gold"]] == doc["answer"]
        same_topic = {r["answer"] for r in recall if r["topic"] == doc["topic"]}
        assert set(doc["choices"]) == same_topic  # four recall answers per topic: all of them


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"question": "Q?"}', "'answer' must be a non-empty string"),
        ('{"question": " ", "answer": "A"}', "'question' must be a non-empty string"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "What is kelp?", "answer": "A brown alga."}\n\n' + line + "\n")
    with pytest.raises(UserError) as err:
        data.read_qa_jsonl(path)
    assert f"{path}:3" in str(err.value) and message in str(err.value)


def test_jsonl_ids_default_and_duplicates_are_rejected(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "Q1", "answer": "A1"}\n{"question": "Q2", "answer": "A2"}\n')
    assert [r["id"] for r in data.read_qa_jsonl(path)] == ["mine-1", "mine-2"]
    path.write_text('{"id": "x", "question": "Q", "answer": "A"}\n' * 2)
    with pytest.raises(UserError, match="already used on line 1"):
        data.read_qa_jsonl(path)


def _lm_eval_task(name: str, **metadata):
    """One of our tasks as lm-eval builds it from its YAML (only tasks/ indexed)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(
        include_path=str(paths.TASKS_DIR), include_defaults=False, metadata=metadata
    )
    return get_task_dict([name], manager)[name]


def _score(task, docs, predictions) -> tuple[list[dict], dict]:
    """What lm-eval does with a task's answers: process_results per document, then each
    metric's aggregation over all of them, in the order process_results gives the metrics.
    Returns each sample's scores as the runner reads them from lm-eval's log, and the
    aggregates."""
    samples = [task.process_results(d, [p]) for d, p in zip(docs, predictions, strict=True)]
    aggregates = {m: task.aggregation()[m]([s[m] for s in samples]) for m in samples[0]}
    return [contract.sample_scores({"metrics": list(s), **s}) for s in samples], aggregates


def _fit_on(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer().fit(texts)


def _cosine(vectorizer, prediction: str, reference: str) -> float:
    pred, ref = vectorizer.transform([prediction]), vectorizer.transform([reference])
    return float(pred.multiply(ref).sum())


def test_tfidf_is_one_function_fitted_on_the_training_split(tmp_path, monkeypatch):
    """Every set (test, recall, retention) is scored by the vectoriser fitted on the training
    split's questions and answers alone, once per dataset; a pair's score is the same whatever
    the other answers scored with it are."""
    monkeypatch.setattr(scorers, "_TFIDF", {})
    fits = []

    class Counted(scorers.TfidfCosine):
        def __init__(self, corpus):
            fits.append(sorted(corpus))
            super().__init__(corpus)

    monkeypatch.setattr(scorers, "TfidfCosine", Counted)
    metadata = {
        "dataset": str(build_tiny_dataset(tmp_path / "dataset")),
        "retention_data": str(build_tiny_retention(tmp_path / "retention.jsonl")),
    }
    train_texts = [r[c] for r in records("train") for c in ("question", "answer")]
    train_only = _fit_on(train_texts)
    answer = "The capital city is where corals host algae and whales breathe air."
    batches = (
        [answer, "Tube feet.", "Krill."],
        [answer, "Whales breathe air through a blowhole.", "Sea otters eat sea urchins."],
    )
    for name in ("marine_qa", "marine_recall", "retention_qa"):
        task = _lm_eval_task(name, **metadata)
        docs = list(task.test_docs())[:3]
        scored = [_score(task, docs, batch)[0][0]["tfidf_cosine"] for batch in batches]
        expected = _cosine(train_only, answer, docs[0]["answer"])
        assert scored[0] == scored[1] == pytest.approx(expected), name
        assert expected > 0
        # the definition this replaced (refitted on the task's references + answers) would not
        # pass: there the other answers change the score
        refits = [
            _cosine(_fit_on([d["answer"] for d in docs] + batch), answer, docs[0]["answer"])
            for batch in batches
        ]
        assert refits[0] != pytest.approx(refits[1])
    assert fits == [sorted(train_texts)]  # fitted once, for every task of the dataset


def test_tfidf_of_a_jsonl_set_is_fitted_on_its_own_rows(tmp_path, monkeypatch):
    """A user's JSONL has no training split: one function, fitted on its questions and answers,
    still scores every model."""
    monkeypatch.setattr(scorers, "_TFIDF", {})
    path = tmp_path / "mine.jsonl"
    rows = [
        {"question": "What is kelp?", "answer": "Kelp is a large brown alga."},
        {"question": "What do krill eat?", "answer": "Krill eat phytoplankton."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = _lm_eval_task("marine_qa", dataset=str(path))
    docs = list(task.test_docs())
    answer = "Kelp is a brown alga that krill avoid."
    scores, _ = _score(task, docs, [answer, answer])
    own = _fit_on([r[c] for r in rows for c in ("question", "answer")])
    assert [s["tfidf_cosine"] for s in scores] == pytest.approx(
        [_cosine(own, answer, d["answer"]) for d in docs]
    )


def test_length_columns_and_length_controlled_scores(tmp_path, monkeypatch):
    """Hand-made answers to one question: their lengths, and each length-controlled metric equal
    to the full one unless the answer is longer than the reference. BERTScore scores the full
    and the cut answers in one encoder call, each pair once, for all the task's BERTScore
    metrics."""
    monkeypatch.setattr(scorers, "_BERTSCORE_CACHE", {})
    encoded = []
    encoder = scorers._bertscore_pairs

    def counted(model, predictions, references, batch_size):
        encoded.append(list(zip(predictions, references, strict=True)))
        return encoder(model, predictions, references, batch_size)

    monkeypatch.setattr(scorers, "_bertscore_pairs", counted)
    task = _lm_eval_task("marine_qa", dataset=str(build_tiny_dataset(tmp_path / "dataset")))
    doc = next(iter(task.test_docs()))
    reference = "Corals host zooxanthellae, symbiotic algae."
    assert doc["answer"] == reference  # 5 words
    answers = {
        "same": "Corals host zooxanthellae, symbiotic algae.",
        "shorter": "Corals host algae.",
        "longer": "Corals host zooxanthellae, symbiotic algae that feed them and give colour.",
    }
    scored, aggregates = _score(task, [doc] * 3, list(answers.values()))
    score = dict(zip(answers, scored, strict=True))
    assert [s["answer_words"] for s in scored] == [5.0, 3.0, 11.0]
    assert [s["length_ratio"] for s in scored] == pytest.approx([1.0, 3 / 5, 11 / 5])
    # lm-eval's aggregate is the protocol's: total answer words over total reference words
    assert aggregates["length_ratio"] == pytest.approx((5 + 3 + 11) / 15)
    assert aggregates["answer_words"] == pytest.approx(19 / 3)
    cut = "Corals host zooxanthellae, symbiotic algae"
    assert encoded == [[(a, reference) for a in answers.values()] + [(cut, reference)]]
    for metric in scorers.LENGTH_CONTROLLED:
        controlled = metric + scorers.LC_SUFFIX
        for name in ("same", "shorter"):
            assert score[name][controlled] == score[name][metric], (name, metric)
        assert score["longer"][controlled] > score["longer"][metric] + 0.01, metric
    assert score["longer"]["rougeL_recall"] == 1.0 > score["longer"]["rougeL_precision"]
    assert score["longer"]["bertscore_recall"] > score["longer"]["bertscore_precision"]


def test_plain_lm_eval_cli_runs_the_marine_group(tiny_model_dir, tmp_path):
    """A user who knows lm-eval needs nothing else (offline, tiny model, --limit)."""
    dataset = build_tiny_dataset(tmp_path / "dataset")
    retention = build_tiny_retention(tmp_path / "retention.jsonl")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        data.RETENTION_ENV: str(retention),
    }
    env.pop("PYTHONPATH", None)  # tasks/utils.py must find the project on its own
    metadata = json.dumps({"dataset": str(dataset)})
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model_dir},dtype=float32",
        "--include_path",
        str(paths.TASKS_DIR),
        "--tasks",
        "marine",
        "--apply_chat_template",
        "--metadata",
        metadata,
        "--limit",
        "2",
        "--gen_kwargs",
        "max_gen_toks=8",
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--output_path",
        str(out),
        "--log_samples",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = list(Path(out).rglob("results_*.json"))
    doc = json.loads(results_file.read_text())
    results = doc["results"]
    for task in task_names():  # every registered task, the recall tasks included
        assert {k.split(",")[0] for k in results[task]} >= {m.name for m in metrics_of(task)}
        assert doc["n-samples"][task]["effective"] == 2
    assert 0.0 <= results["marine_recall_mc"]["acc,none"] <= 1.0
    assert results["marine_recall_ppl"]["bits_per_byte,none"] > 0
    assert doc["higher_is_better"]["marine_recall"]["answer_words"] is None
    (samples,) = list(Path(out).rglob("samples_marine_recall_[0-9]*.jsonl"))
    logged = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [s["doc"]["train_id"] for s in logged] == [r["train_id"] for r in recall_records()[:2]]
