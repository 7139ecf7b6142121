"""The pipeline steps on their own: clean rules, near-duplicate detection, the split."""

from __future__ import annotations

import pytest

from benchmark.dataset.clean import clean, count_sentences
from benchmark.dataset.config import CleanConfig
from benchmark.dataset.dedup import jaccard, near_duplicate_pairs, shingle_hashes
from benchmark.dataset.records import QARecord
from benchmark.dataset.split import split


def _rec(
    i,
    q="Why do sea otters use rocks?",
    a="They crack open hard-shelled prey such as urchins.",
    topic="t",
):
    return QARecord(id=f"r{i}", topic=topic, difficulty="easy", question=q, answer=a, source="s")


@pytest.mark.parametrize(
    ("q", "a", "reason"),
    [
        ("Why do sea otters use rocks?", "They crack <|assistant|> shells.", "chat_control_token"),
        ("Why do sea otters use rocks?</s>", "They crack open shells.", "chat_control_token"),
        ("<|im_start|>user Why do otters float?", "Dense fur traps air.", "chat_control_token"),
        ("Why do sea otters use rocks?", "As an AI language model I cannot say.", "refusal"),
        ("Why do sea otters use rocks?", "I'm sorry, but I can't help with that.", "refusal"),
        ("Why?", "They crack open shells.", "question_length"),
        ("Why do sea otters use rocks?", "Tools.", "answer_length"),
        ("Why do sea otters use rocks?", "Sea otters use rocks.", "answer_restates_question"),
        ("Why do sea otters use rocks?", "A. B is it. C is so. D too.", "answer_sentences"),
    ],
)
def test_clean_rejects(q, a, reason):
    kept, report = clean([_rec(0, q, a)], CleanConfig())
    assert kept == []
    assert report.to_dict()["reasons"] == {reason: 1}


def test_clean_normalises_and_keeps_good_records():
    rec = _rec(
        0,
        q="  Why do  sea\u00a0otters use rocks?\n",
        a="They crack open shells, e.g. clams. Mostly urchins.",
    )
    kept, report = clean([rec], CleanConfig())
    assert kept[0].question == "Why do sea otters use rocks?"
    assert report.kept == 1 and report.dropped == []
    assert count_sentences("E.g. one, i.e. two. Then 3.5 m. End!") == 3


def test_near_duplicates_found_and_verified():
    texts = [
        "What is coral bleaching and why does it happen?",
        "what is coral bleaching, and why does it happen",  # same after normalisation
        "What is coral bleaching and why does it occur?",  # near
        "How do octopuses change colour so quickly?",
    ]
    pairs = near_duplicate_pairs(texts, 0.6)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (0, 2), (1, 2)]
    for i, j, score in pairs:
        assert score == pytest.approx(
            jaccard(shingle_hashes(texts[i], 5), shingle_hashes(texts[j], 5)), abs=1e-4
        )
        assert score >= 0.6


def test_split_is_seeded_stratified_and_per_topic_stable():
    recs = [
        _rec(i, q=f"q{i}", topic=t)
        for t in ("a", "b")
        for i in range(20 * (t == "a") + 10 * (t == "b"))
    ]
    recs = [QARecord(**{**r.to_dict(), "id": f"{r.topic}{r.id}"}) for r in recs]
    fr = {"train": 0.8, "validation": 0.1, "test": 0.1}
    one, _ = split(recs, fr, seed=1)
    again, _ = split(list(reversed(recs)), fr, seed=1)  # input order does not matter
    assert one == again
    assert [sum(r.topic == "a" for r in one[s]) for s in ("train", "validation", "test")] == [
        16,
        2,
        2,
    ]
    assert [sum(r.topic == "b" for r in one[s]) for s in ("train", "validation", "test")] == [
        8,
        1,
        1,
    ]
    other, _ = split(recs, fr, seed=2)
    assert other != one
    # Another topic's records do not reorder topic a (its held-out records stay a prefix).
    only_a, _ = split([r for r in recs if r.topic == "a"], fr, seed=1)
    assert only_a["test"] == [r for r in one["test"] if r.topic == "a"]
    # Cumulative rounding: 20 topics of 25 give exactly 400/50/50 overall.
    many = [
        QARecord(**{**_rec(0).to_dict(), "id": f"{t}-{i}", "topic": f"t{t:02d}"})
        for t in range(20)
        for i in range(25)
    ]
    parts, _ = split(many, fr, seed=0)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [400, 50, 50]
    assert {
        sum(r.topic == "t00" for r in parts["validation"]),
        sum(r.topic == "t01" for r in parts["validation"]),
    } == {2, 3}
