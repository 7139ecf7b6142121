"""The hand-written evaluation sets (docs/protocol.md): transfer additions to the test split and
the recall split, from tiny sources written in code."""

from __future__ import annotations

import hashlib
import json
import logging

import pyarrow.parquet as pq
import pytest
from dataset_fixtures import (
    NOTES,
    TOPICS,
    add_test_extra,
    make_extra,
    make_recall_row,
    make_record,
    make_src,
    recall_pick,
    write_jsonl,
    write_notes,
    write_recall,
)

from benchmark.contracts.dataset import RECALL_COLUMNS, RECALL_SOURCE, SPLITS, split_file
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.dataset.records import DatasetError

PER_TOPIC = 3  # recall_per_topic in these tests: the fixture topics have ~10 train pairs each


def _rows(folder, split) -> list[dict]:
    return pq.read_table(split_file(folder, split)).to_pylist()


def _bytes(folder, split) -> bytes:
    return split_file(folder, split).read_bytes()


def _cfg(src, out, **kw) -> BuildConfig:
    return BuildConfig(src=src, out=out, recall_per_topic=PER_TOPIC, **kw)


def _step(report, name) -> dict:
    return next(s for s in report["steps"] if s["name"] == name)


@pytest.fixture
def src(tmp_path):
    return make_src(tmp_path / "src", per_topic=12)


@pytest.fixture
def plain(src, tmp_path):
    """The build without any hand-written set: (report, its train rows by id)."""
    report = build(_cfg(src, tmp_path / "plain"))
    return report, {r["id"]: r for r in _rows(tmp_path / "plain", "train")}


def _recall_rows(train: dict[str, dict]) -> list[dict]:
    pick = recall_pick(list(train.values()), PER_TOPIC)
    return [make_recall_row(train[i]) for topic in sorted(pick) for i in pick[topic]]


# --- transfer additions -------------------------------------------------------------------


def test_test_extra_goes_to_test_only_and_leaves_train_and_validation_identical(
    src, plain, tmp_path
):
    before, train = plain
    curated = next(r for r in train.values() if r["topic"] == "reef_life")
    # An addition that repeats a curated train question (case-blind): dedupe drops the addition.
    dup = {**make_extra("reef_life", 50), "question": curated["question"].upper()}
    written = add_test_extra(src, per_topic=2, extra=[dup])
    after = build(_cfg(src, tmp_path / "with"))

    for split in ("train", "validation"):
        assert _bytes(tmp_path / "with", split) == _bytes(tmp_path / "plain", split), split
    old_test = {r["id"] for r in _rows(tmp_path / "plain", "test")}
    new_test = _rows(tmp_path / "with", "test")
    added = {r["id"] for r in written} - {dup["id"]}
    assert {r["id"] for r in new_test} == old_test | added
    assert [(r["topic"], r["id"]) for r in new_test] == sorted(
        (r["topic"], r["id"]) for r in new_test
    )
    assert list(new_test[0]) == list(_rows(tmp_path / "plain", "test")[0])  # same columns
    assert "check_note" not in new_test[0]

    dedupe = _step(after, "dedupe")
    item = next(d for d in dedupe["dropped_items"] if d["id"] == dup["id"])
    assert item["reason"] == "exact_duplicate_question" and curated["id"] in item["detail"]
    assert after["counts"]["test"] == before["counts"]["test"] + 6
    assert after["counts"]["test_extra"] == 6 and before["counts"]["test_extra"] == 0
    assert after["counts"]["total"] == before["counts"]["total"] + 6
    assert _step(after, "test_extra")["input"] == _step(after, "test_extra")["kept"] == 6
    assert _step(after, "split")["input"] == _step(before, "split")["input"]  # the same 36
    extra = after["handwritten"]["test_extra"]
    assert (extra["files"], extra["loaded"], extra["in_test"]) == (3, 7, 6)
    assert extra["dropped"] == {"dedupe": 1}
    assert extra["by_topic"]["reef_life"] == {"loaded": 3, "in_test": 2}
    for rel in ("test_extra/reef_life.jsonl", "test_extra/NOTES-a.md"):
        assert after["inputs"][rel] == hashlib.sha256((src / rel).read_bytes()).hexdigest()
    assert after["build_hash"] != before["build_hash"]
    card = (tmp_path / "with" / "README.md").read_text()
    assert "**Transfer additions**" in card and "**6 of 7**" in card
    assert "Fact-checked against two independent sources." in card  # the notes, quoted
    assert "#### How this set was written" in card  # their heading pushed below the card's


def test_test_extra_near_duplicate_of_train_is_dropped_by_decontamination(src, tmp_path):
    def cfg(out):
        c = _cfg(src, tmp_path / out)
        c.dedup.question_threshold = c.dedup.qa_threshold = 1.01  # only decontamination is left
        return c

    build(cfg("plain"))
    target = next(r for r in _rows(tmp_path / "plain", "train") if r["topic"] == "tide_pools")
    leak = {
        **make_extra("tide_pools", 40),
        "question": target["question"].replace("Why does the", "Why does a"),
    }
    add_test_extra(src, per_topic=1, extra=[leak])
    report = build(cfg("with"))

    decon = _step(report, "decontaminate")
    item = next(d for d in decon["dropped_items"] if d["id"] == leak["id"])
    assert item["reason"] == "near_duplicate_of_train"
    assert item["detail"].startswith("test:") and target["id"] in item["detail"]
    test_ids = {r["id"] for r in _rows(tmp_path / "with", "test")}
    assert leak["id"] not in test_ids
    assert {f"{t}-x001" for t in TOPICS} <= test_ids
    assert report["handwritten"]["test_extra"]["dropped"] == {"decontaminate": 1}
    assert report["handwritten"]["test_extra"]["in_test"] == 3
    for split in ("train", "validation"):
        assert _bytes(tmp_path / "with", split) == _bytes(tmp_path / "plain", split), split


# --- the recall split ----------------------------------------------------------------------


def test_recall_rows_link_to_training_pairs_with_the_trained_answers(src, plain, tmp_path):
    import datasets

    _, train = plain
    rows = _recall_rows(train)
    first, second = rows[0], rows[1]
    # A recall question may be as close to its training question as it likes: no dedupe/decontam.
    first["question"] = train[first["train_id"]]["question"]
    # Cleaned like every record: the answer matches the trained one after NFC and single spaces.
    second["answer"] = "  " + second["answer"].replace(" ", "   ", 2) + "\n"
    second["question"] = "Which  caf\u0065\u0301 " + second["question"][6:]
    write_recall(src, rows)
    report = build(_cfg(src, tmp_path / "ds"))

    recall = _rows(tmp_path / "ds", "recall")
    assert pq.read_schema(split_file(tmp_path / "ds", "recall")).names == list(RECALL_COLUMNS)
    assert len(recall) == 3 * PER_TOPIC == report["counts"]["recall"]
    pick = recall_pick(list(train.values()), PER_TOPIC)
    assert {r["train_id"] for r in recall} == {i for ids in pick.values() for i in ids}
    for row in recall:
        pair = train[row["train_id"]]
        assert row["answer"] == pair["answer"]
        assert (row["topic"], row["difficulty"]) == (pair["topic"], pair["difficulty"])
        assert row["source"] == RECALL_SOURCE and row["id"] == f"recall-{pair['id']}"
    by_train = {r["train_id"]: r for r in recall}
    assert by_train[first["train_id"]]["question"] == train[first["train_id"]]["question"]
    assert by_train[second["train_id"]]["question"].startswith("Which caf\u00e9 ")
    assert [(r["topic"], r["id"]) for r in recall] == sorted((r["topic"], r["id"]) for r in recall)
    for split in SPLITS:  # the recall set changes no other split
        assert _bytes(tmp_path / "ds", split) == _bytes(tmp_path / "plain", split), split
    again = build(_cfg(src, tmp_path / "again"))  # same inputs: the same bytes, every file
    assert again["build_hash"] == report["build_hash"]
    for path in (tmp_path / "ds").rglob("*"):
        if path.is_file():
            twin = tmp_path / "again" / path.relative_to(tmp_path / "ds")
            assert twin.read_bytes() == path.read_bytes(), path.name

    step = _step(report, "recall")
    assert (step["input"], step["kept"], step["dropped"]) == (9, 9, 0)
    summary = report["handwritten"]["recall"]
    assert summary["by_topic"]["reef_life"] == {"selected": 3, "written": 3, "kept": 3}
    assert summary["topics_not_written"] == [] and summary["per_topic"] == PER_TOPIC
    assert report["inputs"]["recall/reef_life.jsonl"]
    assert report["inputs"]["recall/NOTES-a.md"]
    assert report["content_sha256"]["recall"]

    text = (tmp_path / "ds" / "README.md").read_text()
    assert 'the 3 train pairs with the smallest sha256("recall-v1:" + id)' in text
    assert "**Recall paraphrases**" in text and "**9 of 9**" in text
    assert NOTES.splitlines()[-1].lstrip("- ") in text
    cache = str(tmp_path / "hf-cache")
    default = datasets.load_dataset(str(tmp_path / "ds"), cache_dir=cache)
    assert set(default) == set(SPLITS)
    only = datasets.load_dataset(str(tmp_path / "ds"), "recall", cache_dir=cache)
    assert set(only) == {"recall"} and only["recall"].column_names == list(RECALL_COLUMNS)
    assert len(only["recall"]) == 9


def test_bad_recall_rows_are_dropped_with_their_reason(src, plain, tmp_path):
    _, train = plain
    validation = _rows(tmp_path / "plain", "validation")[0]
    rows = _recall_rows(train)
    rows[1]["answer"] = rows[1]["answer"][:-1] + " indeed."  # not the trained answer
    wrong_topic = next(t for t in TOPICS if t != rows[4]["topic"])
    rows[4]["topic"] = wrong_topic
    rows[5]["question"] = "As an AI, " + rows[5]["question"]
    rows += [
        {**make_recall_row(train[rows[0]["train_id"]]), "id": "ghost", "train_id": "reef_life-999"},
        make_recall_row(validation),
        {**rows[2], "question": "Which other wording of the same question is this?"},
        {**rows[3], "id": "recall-second"},
    ]
    write_recall(src, rows)
    report = build(_cfg(src, tmp_path / "ds"))  # bad rows drop; the set still fits the rule

    step = _step(report, "recall")
    assert step["reasons"] == {
        "answer_differs": 1,
        "duplicate_id": 1,
        "duplicate_train_id": 1,
        "refusal": 1,
        "topic_differs": 1,
        "train_id_not_in_train": 2,
    }
    why = {d["id"]: d for d in step["dropped_items"]}
    assert why["ghost"]["reason"] == "train_id_not_in_train"
    assert (
        "'reef_life-999'" in why["ghost"]["detail"] and "no such record" in why["ghost"]["detail"]
    )
    # Names the file (relative to the sources, so the report is the same on every machine)
    # and the line: the ghost is the 4th-from-last line written to its topic's file.
    ghost_file = f"recall/{rows[0]['topic']}.jsonl"
    ghost_line = [r["topic"] for r in rows][: rows.index(rows[-4]) + 1].count(rows[0]["topic"])
    assert why["ghost"]["detail"].startswith(f"{ghost_file}:{ghost_line}: ")
    assert "validation split" in why[f"recall-{validation['id']}"]["detail"]
    assert why[rows[1]["id"]]["reason"] == "answer_differs"
    assert "character" in why[rows[1]["id"]]["detail"]
    assert why[rows[4]["id"]]["reason"] == "topic_differs"
    assert why["recall-second"]["reason"] == "duplicate_train_id"
    kept = _rows(tmp_path / "ds", "recall")
    assert len(kept) == step["kept"] == 9 - 3
    dropped_pairs = {rows[k]["train_id"] for k in (1, 4, 5)}
    assert {r["train_id"] for r in kept} == {r["train_id"] for r in rows[:9]} - dropped_pairs
    assert report["handwritten"]["recall"]["by_topic"][rows[1]["topic"]]["written"] == 3


def test_recall_set_written_for_another_split_stops_the_build(src, plain, tmp_path):
    _, train = plain
    out = tmp_path / "plain"
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    # Written for the train split of another seed.
    build(_cfg(src, tmp_path / "seed7", seed=7))
    other = {r["id"]: r for r in _rows(tmp_path / "seed7", "train")}
    write_recall(src, _recall_rows(other))
    ours, theirs = recall_pick(list(train.values()), 3), recall_pick(list(other.values()), 3)
    missing = sorted(
        {i for ids in ours.values() for i in ids} - {i for ids in theirs.values() for i in ids}
    )
    assert missing  # the two seeds' train splits really differ in what the rule picks
    with pytest.raises(DatasetError) as err:
        build(_cfg(src, out))
    message = str(err.value)
    assert "written for another train split" in message
    assert 'sha256("recall-v1:" + id)' in message
    assert f"selected train ids with no recall row: {', '.join(missing)}" in message
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before  # untouched

    # One row swapped for a pair the rule does not pick: both ids are named.
    rows = _recall_rows(train)
    unpicked = next(i for i in train if i not in ours[train[i]["topic"]])
    swapped = next(r for r in rows if r["topic"] == train[unpicked]["topic"])
    rows[rows.index(swapped)] = make_recall_row(train[unpicked])
    write_recall(src, rows)
    with pytest.raises(DatasetError, match="written for another train split") as err:
        build(_cfg(src, out))
    assert f"no recall row: {swapped['train_id']}" in str(err.value)
    assert f"does not select: {unpicked}" in str(err.value)

    # The per-topic count is a setting: rows for 3 per topic do not fit a rule of 4.
    write_recall(src, _recall_rows(train))
    four = recall_pick(list(train.values()), 4)
    with pytest.raises(DatasetError, match="the 4 train pairs with the smallest") as err:
        build(BuildConfig(src=src, out=out, recall_per_topic=4))
    assert all(ids[3] in str(err.value) for ids in four.values())


def test_topic_without_recall_rows_is_reported_not_an_error(src, plain, tmp_path, caplog):
    _, train = plain
    write_recall(src, [r for r in _recall_rows(train) if r["topic"] != "tide_pools"])
    with caplog.at_level(logging.WARNING, logger="benchmark.dataset.handwritten"):
        report = build(_cfg(src, tmp_path / "ds"))
    assert report["counts"]["recall"] == 6
    assert report["handwritten"]["recall"]["topics_not_written"] == ["tide_pools"]
    assert report["handwritten"]["recall"]["by_topic"]["tide_pools"]["written"] == 0
    assert "no rows yet for topic(s) tide_pools" in caplog.text
    assert (
        "Topics with no recall rows yet: `tide_pools`."
        in (tmp_path / "ds" / "README.md").read_text()
    )


# --- bad hand-written input ----------------------------------------------------------------


def _recall_line(**changes) -> dict:
    row = {
        "id": "recall-x",
        "train_id": "reef_life-001",
        "topic": "reef_life",
        "question": "Which fact is this asking about?",
        "answer": "A fact about reefs and corals.",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


@pytest.mark.parametrize(
    ("folder", "line", "expect"),
    [
        ("recall", _recall_line(train_id=None), ["bad.jsonl:2", "missing field 'train_id'"]),
        ("recall", _recall_line(answer=7), ["bad.jsonl:2", "field 'answer' must be a string"]),
        ("recall", _recall_line(question=" "), ["bad.jsonl:2", "field 'question' is empty"]),
        ("recall", _recall_line(topic="moon"), ["bad.jsonl:2", "unknown topic 'moon'"]),
        ("recall", "{oops", ["bad.jsonl:2", "malformed JSON"]),
        (
            "test_extra",
            {**make_extra("reef_life", 1), "difficulty": None},
            ["bad.jsonl:2", "field 'difficulty' must be a string"],
        ),
        (
            "test_extra",
            {**make_extra("reef_life", 1), "id": "reef_life-003"},
            ["bad.jsonl:2", "'reef_life-003' already used at", "curated/reef_life.jsonl:4"],
        ),
    ],
)
def test_bad_hand_written_line_names_file_line_and_key(src, tmp_path, folder, line, expect):
    good = _recall_line() if folder == "recall" else make_extra("reef_life", 9)
    path = src / folder / "bad.jsonl"
    path.parent.mkdir(parents=True)
    text = line if isinstance(line, str) else json.dumps(line)
    path.write_text(json.dumps(good) + "\n" + text + "\n", encoding="utf-8")
    write_notes(src / folder)
    with pytest.raises(DatasetError) as err:
        build(_cfg(src, tmp_path / "ds"))
    for part in expect:
        assert part in str(err.value)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("folder", ["recall", "test_extra"])
def test_hand_written_set_without_notes_is_an_error(src, folder, tmp_path):
    row = _recall_line() if folder == "recall" else make_extra("reef_life", 1)
    write_jsonl(src / folder / "reef_life.jsonl", [row])
    with pytest.raises(DatasetError, match=r"no NOTES-\*\.md.*written and fact-checked"):
        build(_cfg(src, tmp_path / "ds"))


def test_hand_written_sets_come_with_the_curated_source_only(src, plain, tmp_path, monkeypatch):
    """Without the curated source there are no training pairs to recall: neither set is read."""
    from benchmark.dataset import gemini
    from benchmark.dataset.generate import Generated
    from benchmark.dataset.records import QARecord

    _, train = plain
    add_test_extra(src, per_topic=1)
    write_recall(src, _recall_rows(train))
    fake = [
        QARecord(**{**make_record(t, k, seed=5), "source": "gemini"})
        for t in TOPICS
        for k in range(8)
    ]
    monkeypatch.setattr(gemini, "generate", lambda *a, **k: Generated(records=fake, dropped=[]))
    report = build(_cfg(src, tmp_path / "ds", sources=["gemini"]))
    assert "recall" not in report["counts"] and report["counts"]["test_extra"] == 0
    assert not split_file(tmp_path / "ds", "recall").exists()
    assert not any(k.startswith(("recall/", "test_extra/")) for k in report["inputs"])


# --- readers of the dataset folder keep working with the extra split ------------------------


def test_readers_of_the_dataset_folder_handle_the_recall_split(src, plain, tmp_path):
    from pathlib import Path

    from benchmark.dataset.push import local_files
    from benchmark.evaluation import data as eval_data
    from benchmark.leaderboard.dataset_page import dataset_page_view
    from benchmark.train import data as train_data

    _, train = plain
    add_test_extra(src, per_topic=1)
    write_recall(src, _recall_rows(train))
    report = build(_cfg(src, tmp_path / "ds"))
    folder = Path(tmp_path / "ds")

    # Training reads train and validation only, unchanged.
    train_data.check_dataset(folder)
    assert train_data.read_split(folder, "train") == _rows(tmp_path / "plain", "train")
    # The evaluation loads every split; the data hash covers the recall split too.
    source = eval_data.DataSource("folder", str(folder))
    loaded = eval_data.load_source(source)
    assert set(loaded) == {*SPLITS, "recall"}
    assert loaded["recall"].column_names == list(RECALL_COLUMNS)
    assert len(loaded["test"]) == report["counts"]["test"]
    before = eval_data.source_hash(source)
    write_recall(src, [r for r in _recall_rows(train) if r["topic"] != "tide_pools"])
    build(_cfg(src, folder))
    assert eval_data.source_hash(source) != before
    # The site's dataset page shows the split; a push sends its file.
    view = dataset_page_view(folder)
    assert ("recall", 6) in view["splits"]
    assert dict(view["report"]["counts"])["recall"] == 6
    assert "data/recall-00000-of-00001.parquet" in local_files(folder)
