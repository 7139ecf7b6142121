"""The data track: submissions checked and decontaminated, the reference derivations, the equal
token budget, and the whole track through the tiny model, cached."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import make_record

from benchmark.dataset.records import DatasetError, QARecord
from benchmark.datatrack import references as refs
from benchmark.datatrack.submission import EvalSet, check, read_submission, require_pairs

ROOT = Path(__file__).resolve().parent.parent


def _pair(i: int, topic: str = "reefs", answer: str | None = None) -> QARecord:
    return QARecord(
        id=f"p{i}",
        topic=topic,
        difficulty="easy",
        question=f"Which trait number {i} of {topic} organisms helps them survive in warm water?",
        answer=answer or f"Trait {i} lets {topic} organisms regulate heat. It also saves energy.",
        source="test",
    )


def _lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- reading a submission ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b'{"question": "What?", "answer": "This."}\n{"question": ', ":2: malformed JSON"),
        (b'{"question": "Why do whales sing?", "answer": "\xff"}\n', ":1: not valid UTF-8"),
        (b'{"question": "Why do whales sing?"}\n', ":1: missing field 'answer'"),
        (b'{"question": "Q?", "answer": "A.", "topic": 3}\n', ":1: field 'topic'"),
        (b'["question", "answer"]\n', ":1: expected a JSON object"),
    ],
)
def test_an_unreadable_submission_is_an_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "sub.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as info:
        read_submission(path, "sub")
    assert str(path) in str(info.value)


def test_pairs_that_must_not_be_trained_on_are_dropped_with_line_and_reason(tmp_path):
    good = {
        "question": "How do corals feed at night?",
        "answer": "They extend polyps to catch plankton.",
    }
    rows = [
        good,
        {"question": "What is <|im_start|>system?", "answer": "A chat-control token sneaks in."},
        {"question": "How large can an answer be?", "answer": "Whale song. " * 170_000},  # 2 MB
        dict(good),  # a duplicate of line 1
        {"question": "What eats kelp in cold seas?", "answer": "Sea urchins graze kelp forests."},
    ]
    path = _lines(tmp_path / "sub.jsonl", rows)
    records, where_of = read_submission(path, "sub")
    assert [r.topic for r in records] == ["unspecified"] * 5
    checked = check(records, where_of, [])
    assert [r.question for r in checked.records] == [rows[0]["question"], rows[4]["question"]]
    reasons = {d["where"]: (d["step"], d["reason"]) for d in checked.dropped}
    assert reasons == {
        f"{path}:2": ("clean", "chat_control_token"),
        f"{path}:3": ("clean", "answer_length"),
        f"{path}:4": ("dedupe", "exact_duplicate_question"),
    }
    assert checked.drops == {
        "clean": {"answer_length": 1, "chat_control_token": 1},
        "dedupe": {"exact_duplicate_question": 1},
    }


def test_decontamination_against_every_evaluation_set():
    held = {
        "test": (
            "Why do parrotfish produce so much white sand on coral reefs?",
            "Parrotfish grind coral skeletons and excrete the fine carbonate as sand.",
        ),
        "recall": (
            "What lets sea otters stay warm without blubber in cold water?",
            "Dense fur traps air.",
        ),
        "validation": (
            "How do mangrove roots cope with salty tidal water every day?",
            "They filter salt out.",
        ),
        "retention": (
            "What is the boiling point of water at sea level in Celsius?",
            "It is 100 degrees Celsius.",
        ),
    }
    sets = [EvalSet(name, [q], [] if name == "recall" else [a]) for name, (q, a) in held.items()]
    records = [
        # near-duplicates of each set's question (one word changed or case/punctuation)
        QARecord(
            "t",
            "reefs",
            "easy",
            held["test"][0].replace("white", "pale"),
            "Fish make sand from coral.",
            "s",
        ),
        QARecord(
            "r", "mammals", "easy", held["recall"][0].upper(), "Sea otters groom dense fur.", "s"
        ),
        QARecord(
            "v",
            "coasts",
            "easy",
            held["validation"][0] + "!",
            "Mangroves exclude salt at the roots.",
            "s",
        ),
        QARecord(
            "e",
            "other",
            "easy",
            held["retention"][0].replace("Celsius", "celsius degrees"),
            "Water boils at 100 degrees at sea level.",
            "s",
        ),
        # a new question whose answer copies a held-out (test) reference
        QARecord(
            "a",
            "reefs",
            "easy",
            "Where does the white sand of tropical beaches come from?",
            held["test"][1],
            "s",
        ),
        # a new question with the recall reference as its answer: allowed (recall's references
        # are the curated training answers, which a submission may teach)
        QARecord(
            "ok",
            "mammals",
            "easy",
            "How do otters keep their body heat in the North Pacific?",
            held["recall"][1],
            "s",
        ),
    ]
    checked = check(records, {r.id: f"sub:{r.id}" for r in records}, sets)
    assert [r.id for r in checked.records] == ["ok"]
    reasons = {d["id"]: d["reason"] for d in checked.dropped}
    assert reasons == {
        "t": "question_in_test",
        "r": "question_in_recall",
        "v": "question_in_validation",
        "e": "question_in_retention",
        "a": "answer_in_test",
    }
    assert checked.drops == {
        "decontaminate": {
            "answer_in_test": 1,
            "question_in_recall": 1,
            "question_in_retention": 1,
            "question_in_test": 1,
            "question_in_validation": 1,
        }
    }


def test_a_submission_with_nothing_left_is_an_error_that_says_why():
    sets = [EvalSet("test", [_pair(0).question], [])]
    checked = check([_pair(0)], {"p0": "sub.jsonl:1"}, sets)
    with pytest.raises(DatasetError, match=r"sub\.jsonl: none of its 1 pairs .*question_in_test"):
        require_pairs(checked, "sub.jsonl")


# --- the reference derivations ---------------------------------------------------------------


def _curated(per_topic: int = 8, topics: tuple[str, ...] = ("reefs", "kelp", "deep")) -> list:
    return [
        QARecord(
            f"{t}-{i}",
            t,
            "easy",
            f"Question {i} about {t}?",
            f"Answer {i} about {t}. A second sentence about {t} {i}.",
            "curated",
        )
        for t in topics
        for i in range(per_topic)
    ]


def test_scaling_subsets_are_nested_and_topic_balanced():
    train = _curated()
    subsets = {name: refs.subset(train, share) for name, share in refs.SCALING}
    assert [len(s) for s in subsets.values()] == [3, 6, 12]
    assert subsets["eighth"] == subsets["quarter"][:3] == subsets["half"][:3]
    assert subsets["quarter"] == subsets["half"][:6]
    for subset in subsets.values():
        counts = Counter(r.topic for r in subset)
        assert max(counts.values()) - min(counts.values()) <= 1
    # the order comes from the ids, not the input order
    assert refs.subset(list(reversed(train)), 0.5) == subsets["half"]


def test_noisy_moves_a_quarter_of_the_answers_within_their_topic():
    train = _curated()
    noisy = refs.noisy(train)
    assert [r.question for r in noisy] == [r.question for r in train]
    assert Counter(r.answer for r in noisy) == Counter(r.answer for r in train)
    moved = [(old, new) for old, new in zip(train, noisy, strict=True) if old.answer != new.answer]
    assert len(moved) == 6  # 2 of 8 in each of 3 topics
    by_answer = {r.answer: r for r in train}
    for old, new in moved:
        donor = by_answer[new.answer]
        assert donor.topic == old.topic and donor.id != old.id


def test_short_keeps_the_first_sentence_and_self_keeps_whole_sentences():
    train = _curated(per_topic=1, topics=("reefs",))
    assert refs.short(train)[0].answer == "Answer 0 about reefs."
    assert refs.first_sentence("Whales sing, e.g. humpbacks. They migrate.") == (
        "Whales sing, e.g. humpbacks."
    )
    assert refs.whole_sentences("Krill swarm. They feed on algae and") == "Krill swarm."
    assert refs.whole_sentences("No full stop at all") == "No full stop at all"
    assert refs.self_answers(train, ["It is a reef. It grows slowly and"])[0].answer == (
        "It is a reef."
    )


def test_self_answers_are_the_base_models_greedy_answers(tiny_model_dir):
    from benchmark.chat import answer
    from benchmark.datatrack.prepare import base_answers
    from benchmark.models import load_model

    questions = ["Why are reefs colourful?", "What do krill eat in winter under the ice?", "Hi?"]
    got = base_answers(questions, str(tiny_model_dir), progress=False)
    model, tokenizer = load_model(str(tiny_model_dir))
    alone = [
        answer(model, tokenizer, [q], max_new_tokens=refs.SELF_MAX_NEW_TOKENS)[0] for q in questions
    ]
    assert got == alone


# --- the whole track, through the tiny model -------------------------------------------------


def _recipe(path: Path, model_dir: Path) -> Path:
    config = {
        "model": str(model_dir),
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "epochs": 1,
        "learning_rate": 1e-3,
        "batch_size": 64,
        "max_length": 192,
        "seed": 3,
        "device": "cpu",
        "dtype": "fp32",
        "eval_each_epoch": False,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _datatrack(build: Path, submissions: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MARINEBENCH_BUILD": str(build),
        "MARINEBENCH_SUBMISSIONS": str(submissions),
        "MARINEBENCH_PROGRESS_INTERVAL": "0",
    }
    env.pop("GEMINI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_track_trains_each_submission_on_the_same_tokens_then_reruns_from_cache(
    tmp_path, tiny_model_dir
):
    build, subs = tmp_path / "build", tmp_path / "submissions"
    recipe = _recipe(tmp_path / "tiny.yaml", tiny_model_dir)
    mine = _lines(
        tmp_path / "mine.jsonl",
        [
            {k: v for k, v in make_record("reef_life", i).items() if k in ("question", "answer")}
            for i in range(24)
        ]
        + ["", '{"question": "Bad <|im_end|> pair?", "answer": "It carries a control token."}'],
    )
    # `data submit` needs the frozen evaluation sets: build the dataset first, as a user would.
    made = _datatrack(build, subs, "dataset", "build")
    assert made.returncode == 0, made.stderr[-2000:]
    bad = _lines(tmp_path / "bad.jsonl", ['{"question": "Truncated'])
    refused = _datatrack(build, subs, "data", "submit", str(bad), "--name", "bad")
    assert refused.returncode == 2 and f"{bad}:1: malformed JSON" in refused.stderr
    assert not subs.exists()  # nothing entered, nothing half-written
    entered = _datatrack(build, subs, "data", "submit", str(mine), "--name", "mine")
    assert entered.returncode == 0, entered.stderr[-2000:]
    assert "24 of 25 pairs pass" in entered.stdout
    assert (subs / "mine.jsonl").read_bytes() == mine.read_bytes()

    args = ["datatrack", "--recipe", str(recipe), "--only", "mine", "--limit", "2"]
    first = _datatrack(build, subs, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    record = json.loads((build / "datatrack.json").read_text())
    names = [s["name"] for s in record["stages"]]
    assert names[:3] == ["dataset", "prepare:curated", "prepare:mine"]
    # side by side, recorded as they finish; curated is the recipe's own adapter (train:tiny)
    # on the main training split
    assert set(names[3:5]) == {"train:tiny", "train:mine"}
    assert names[5:] == ["evaluate", "site"]
    assert [s["cached"] for s in record["stages"]][:1] == [True]
    track = build / "datatrack"
    curated = json.loads((track / "data" / "curated" / "submission.json").read_text())
    assert curated["adapter"] == "tiny" and curated["pairs"] == curated["pairs_in"]
    assert not (track / "adapters" / "curated").exists()
    budget = curated["token_budget"]
    metrics = {
        name: json.loads((folder / "train_metrics.json").read_text())
        for name, folder in {
            "curated": build / "adapters" / "tiny",
            "mine": track / "adapters" / "mine",
        }.items()
    }
    assert metrics["curated"]["tokens_seen"] == budget  # one pass of the curated split
    for name in ("mine",):
        sub = json.loads((track / "data" / name / "submission.json").read_text())
        assert sub["token_budget"] == budget == metrics[name]["token_budget"]
        # the same tokens, up to the last step's
        assert budget <= metrics[name]["tokens_seen"] < budget + 64 * 192
        assert metrics[name]["epochs_seen"] == pytest.approx(sub["epochs"], rel=0.2)
    mine_record = json.loads((track / "data" / "mine" / "submission.json").read_text())
    assert mine_record["pairs"] == 24 and mine_record["drops"] == {
        "clean": {"chat_control_token": 1}
    }
    assert metrics["mine"]["epochs_seen"] > 10  # 24 short pairs, seen many times
    summary = json.loads((track / "results" / "datatrack" / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "tiny", "mine"}
    assert set(summary["reference_comparisons"]["tiny"]) == {"base", "mine"}
    assert (build / "site" / "data.html").is_file()
    assert "Data leaderboard:" in first.stdout

    started = time.perf_counter()
    second = _datatrack(build, subs, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert time.perf_counter() - started < 60
    record = json.loads((build / "datatrack.json").read_text())
    assert all(s["cached"] for s in record["stages"]), record

    # A changed submission file re-prepares, retrains and re-evaluates only itself and after.
    _lines(subs / "mine.jsonl", [json.loads(x) for x in mine.read_text().splitlines()[:20]])
    plan = _datatrack(build, subs, *args, "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    said = dict(
        re.findall(
            r"^\[benchmark\] (\S+): (would run|may run|fingerprint unchanged)", plan.stdout, re.M
        )
    )
    assert said == {
        "dataset": "fingerprint unchanged",
        "prepare:curated": "fingerprint unchanged",
        "prepare:mine": "would run",
        "train:tiny": "fingerprint unchanged",
        "train:mine": "may run",
        "evaluate": "may run",
        "site": "may run",
    }, plan.stdout


def test_a_submission_made_only_of_evaluation_questions_leaves_nothing_under_build(tmp_path):
    from eval_helpers import build_tiny_dataset, records

    build = tmp_path / "build"
    dataset = build_tiny_dataset(tmp_path / "dataset")
    leaked = _lines(
        tmp_path / "leaked.jsonl",
        [
            {"question": r["question"], "answer": "Copied from the test split."}
            for r in records("test")
        ],
    )
    proc = _datatrack(
        build,
        tmp_path / "subs",
        "data",
        "prepare",
        "leaked",
        "--file",
        str(leaked),
        "--dataset",
        str(dataset),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{leaked}: none of its 15 pairs is left to train on" in proc.stderr
    assert "question_in_test x15" in proc.stderr
    assert not (build / "datatrack").exists()  # nothing half-written


def test_gemini_reference_is_made_by_the_builders_gemini_source(
    tmp_path, monkeypatch, tiny_model_dir
):
    """Only with a key, through the real google-genai client against a loopback server."""
    from eval_helpers import build_tiny_dataset, build_tiny_retention
    from test_dataset_gemini import KEY, FakeGemini, _pairs

    from benchmark.dataset.records import load_taxonomy
    from benchmark.datatrack.pipeline import entries
    from benchmark.datatrack.prepare import prepare
    from benchmark.paths import DATASETS_SRC

    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("MARINEBENCH_SUBMISSIONS", str(tmp_path / "subs"))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert "gemini" not in [name for name, _ in entries()]  # offline: never
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    assert "gemini" in [name for name, _ in entries()]

    topics = sorted(load_taxonomy(DATASETS_SRC / "taxonomy.yaml"))
    script = {t: [(200, json.dumps(_pairs(t, 2)))] for t in topics}
    with FakeGemini(script) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        record = prepare(
            "gemini",
            None,
            build_tiny_dataset(tmp_path / "dataset"),
            build_tiny_retention(tmp_path / "retention.jsonl"),
            tmp_path / "out",
            _recipe(tmp_path / "tiny.yaml", tiny_model_dir),
        )
    assert {r["topic"] for r in server.requests} == set(topics)
    assert all(r["key"] == KEY for r in server.requests)
    assert record["kind"] == "reference" and record["pairs"] == 2 * len(topics)
    assert record["fraction"] is None and record["adapter"] == "gemini"
    saved = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert KEY not in json.dumps(saved)  # the key never lands in an artefact
