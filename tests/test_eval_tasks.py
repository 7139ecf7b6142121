"""The lm-eval tasks in tasks/: data resolution, seeded distractors, and the plain lm_eval CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import build_tiny_dataset, build_tiny_retention, records

from benchmark import paths
from benchmark.contracts.dataset import COLUMNS
from benchmark.contracts.results import metrics_of
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
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["test"].column_names == list(COLUMNS)


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
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = list(Path(out).rglob("results_*.json"))
    results = json.loads(results_file.read_text())["results"]
    qa_metrics = {k.split(",")[0] for k in results["marine_qa"]}
    assert qa_metrics >= {m.name for m in metrics_of("marine_qa")}
    assert {"word_perplexity,none", "bits_per_byte,none"} <= set(results["marine_qa_ppl"])
    assert {"acc,none", "acc_norm,none"} <= set(results["marine_mc"])
    assert "rouge1,none" in results["retention_qa"]
    assert 0.0 <= results["marine_mc"]["acc,none"] <= 1.0
