"""End-to-end builds from tiny in-code sources: layout, steps, determinism, atomicity, the card."""

from __future__ import annotations

import json

import pytest
import yaml
from dataset_fixtures import TOPICS, make_record, make_src

from benchmark.cli import main as cli_main
from benchmark.contracts.dataset import COLUMNS
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.dataset.records import QARecord
from benchmark.dataset.split import SPLITS, max_leak_similarity

PARQUETS = [f"data/{s}-00000-of-00001.parquet" for s in SPLITS]


def _planted() -> dict[str, list[dict]]:
    """Near-duplicates and records the clean step must reject, added to the fixture topics."""
    base = make_record("reef_life", 0)
    long_answer = (
        " ".join(make_record("open_ocean", k)["answer"].rstrip(".") for k in (50, 51, 52)) + "."
    )
    qa_orig = {**make_record("open_ocean", 53), "id": "qa-orig", "answer": long_answer}
    bad = make_record("tide_pools", 90)
    return {
        "reef_life": [
            # exact duplicate question up to case/punctuation/spacing
            {
                **base,
                "id": "dup-exact",
                "question": "  " + base["question"].upper().rstrip("?") + " ?",
            },
            # near-duplicate: one word of the question changed
            {
                **base,
                "id": "dup-near",
                "question": base["question"].replace("Why does the", "Why does a"),
            },
        ],
        "open_ocean": [
            # same long answer, a different question: only the question+answer check catches it
            qa_orig,
            {
                **qa_orig,
                "id": "dup-qa",
                "question": "Which " + qa_orig["question"][13:40] + " lives deepest?",
            },
        ],
        "tide_pools": [
            {**bad, "id": "bad-control", "answer": "Sure <|im_start|>assistant it filters water."},
            {
                **bad,
                "id": "bad-refusal",
                "question": "Why do limpets cling?",
                "answer": "As an AI, I cannot know that.",
            },
            {**bad, "id": "bad-short", "question": "Why?"},
            {
                **bad,
                "id": "bad-restate",
                "question": "Do barnacles filter feed?",
                "answer": "Barnacles filter feed.",
            },
            {
                **bad,
                "id": "bad-long",
                "answer": "One fact. Two facts. Three facts. Four facts here.",
            },
            {
                **bad,
                "id": "ok-nfc",
                "question": "Why is the cafe\u0301   sea slug   green?",
                "answer": "It keeps chloroplasts from the algae it eats.",
            },
        ],
    }


@pytest.fixture
def src(tmp_path):
    return make_src(tmp_path / "src", per_topic=12, extra=_planted())


def _cfg(src, out, **kw) -> BuildConfig:
    return BuildConfig(src=src, out=out, **kw)


def test_build_layout_steps_and_load_dataset(src, tmp_path):
    import datasets

    out = tmp_path / "dataset"
    report = build(_cfg(src, out))
    for rel in [*PARQUETS, "README.md", "build_report.json"]:
        assert (out / rel).is_file(), rel
    on_disk = json.loads((out / "build_report.json").read_text())
    assert on_disk == report
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["load", "clean", "dedupe", "split", "test_extra", "decontaminate"]
    # Each step's input is what the one before kept (no hand-written sets here: test_extra is 0).
    assert steps["clean"]["input"] == steps["load"]["kept"]
    assert steps["dedupe"]["input"] == steps["clean"]["kept"]
    assert steps["split"]["input"] == steps["dedupe"]["kept"]
    assert steps["test_extra"]["input"] == steps["test_extra"]["kept"] == 0
    assert report["counts"]["test_extra"] == 0 and "recall" not in report["counts"]
    assert not (out / "data" / "recall-00000-of-00001.parquet").exists()
    assert steps["load"]["kept"] == 3 * 12 + 10
    dropped = {d["id"]: d["reason"] for s in report["steps"] for d in s["dropped_items"]}
    assert dropped["bad-control"] == "chat_control_token"
    assert dropped["bad-refusal"] == "refusal"
    assert dropped["bad-short"] == "question_length"
    assert dropped["bad-restate"] == "answer_restates_question"
    assert dropped["bad-long"] == "answer_sentences"
    assert dropped["dup-exact"] == "exact_duplicate_question"
    assert dropped["dup-near"] == "near_duplicate_question"
    assert dropped["dup-qa"] == "near_duplicate_qa"
    assert "ok-nfc" not in dropped
    # Dropped items name the record they duplicate.
    near = next(d for d in steps["dedupe"]["dropped_items"] if d["id"] == "dup-near")
    assert "reef_life-000" in near["detail"]

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == set(SPLITS)
    assert sum(len(ds[s]) for s in SPLITS) == report["counts"]["total"] == 36 + 2
    assert ds["train"].column_names == ["id", "topic", "difficulty", "question", "answer", "source"]
    for s in SPLITS:
        assert len(ds[s]) == report["counts"][s]
    # Stratified by topic: each topic has records in every split (12 records: 10/1/1).
    for topic in TOPICS:
        assert all(report["counts"]["by_topic"][topic][s] >= 1 for s in SPLITS)
    # NFC + whitespace cleaning reached the stored text.
    all_q = [q for s in SPLITS for q in ds[s]["question"]]
    assert "Why is the caf\u00e9 sea slug green?" in all_q


def test_no_held_out_question_is_near_duplicate_of_train(src, tmp_path):
    """Decontamination: build with a very loose dedup, so only decontaminate can catch leaks."""
    cfg = _cfg(src, tmp_path / "ds")
    cfg.dedup.question_threshold = cfg.dedup.qa_threshold = 1.01  # dedup off (exact still on)
    cfg.dedup.decontam_threshold = 0.6
    report = build(cfg)
    import pyarrow.parquet as pq

    parts = {
        s: [QARecord(**r) for r in pq.read_table(tmp_path / "ds" / p).to_pylist()]
        for s, p in zip(SPLITS, PARQUETS, strict=True)
    }
    assert max_leak_similarity(parts, cfg.dedup.shingle_chars) < 0.6
    decon = next(s for s in report["steps"] if s["name"] == "decontaminate")
    held_ids = {r.id for s in ("validation", "test") for r in parts[s]}
    assert not held_ids & {d["id"] for d in decon["dropped_items"]}


def test_same_inputs_and_seed_give_identical_bytes_and_hash(src, tmp_path):
    a = build(_cfg(src, tmp_path / "a"))
    b = build(_cfg(src, tmp_path / "b"))
    assert a["build_hash"] == b["build_hash"]
    for rel in [*PARQUETS, "README.md", "build_report.json"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c = build(_cfg(src, tmp_path / "c", seed=7))
    assert c["build_hash"] != a["build_hash"]
    changed = [
        rel
        for rel in PARQUETS
        if (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()
    ]
    assert changed  # another seed really moves records between splits
    assert c["counts"]["total"] == a["counts"]["total"]


def test_card_metadata_and_body(src, tmp_path):
    report = build(_cfg(src, tmp_path / "ds"))
    text = (tmp_path / "ds" / "README.md").read_text()
    _, meta_text, body = text.split("---\n", 2)
    meta = yaml.safe_load(meta_text)
    assert meta["license"] == "cc-by-4.0"
    assert meta["language"] == ["en"]
    assert set(meta["task_categories"]) == {"question-answering", "text-generation"}
    assert meta["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in meta["configs"]] == ["default"]  # no recall set here
    files = {d["split"]: d["path"] for d in meta["configs"][0]["data_files"]}
    assert files == {s: f"data/{s}-*" for s in SPLITS}
    (info,) = meta["dataset_info"]
    assert info["config_name"] == "default"
    assert [f["name"] for f in info["features"]] == list(COLUMNS)
    splits = {s["name"]: s["num_examples"] for s in info["splits"]}
    assert splits == {s: report["counts"][s] for s in SPLITS}
    for s in SPLITS:  # each split's content hash is in the card
        assert f"| {s} | {report['counts'][s]} | `{report['content_sha256'][s]}` |" in body
    assert "## Hand-written evaluation sets" not in body  # none in this build
    assert report["build_hash"] in body
    assert "| `reef_life` |" in body  # per-topic count table
    assert "near_duplicate_question: 1" in body  # what the dedupe step dropped
    assert "## Lengths (words)" in body and "marinebench dataset build" in body
    from huggingface_hub import DatasetCard

    card = DatasetCard(text)  # huggingface_hub parses our metadata
    assert card.data.license == "cc-by-4.0"


def test_cli_build_prints_steps_and_failed_build_keeps_previous(src, tmp_path, capsys):
    out = tmp_path / "ds"
    assert cli_main(["dataset", "build", "--src", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "dataset build steps" in err and "decontaminate" in err
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    # Break the source: the next build fails and the previous folder is untouched.
    with open(src / "curated" / "reef_life.jsonl", "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    assert cli_main(["dataset", "build", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "reef_life.jsonl:15: malformed JSON" in err
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]  # no temp folder left
