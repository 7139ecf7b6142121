"""The optional LLM judge (`evaluate --judge gemini`, `judge-agreement`) through the real
google-genai client, against a loopback generateContent server."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from gemini_loopback import ScriptedGemini

from benchmark.cli import main as cli_main
from benchmark.contracts.results import ScoreRecord, find_metric
from benchmark.evaluation import judge as judge_mod
from benchmark.evaluation.judge import (
    CORRECT_METRIC,
    NOT_ATTEMPTED_METRIC,
    GeminiJudge,
    Item,
    JudgeError,
    JudgeSettings,
)
from benchmark.evaluation.stats import BootstrapSettings
from benchmark.evaluation.summary import build_summary

KEY = "test-judge-key-9b71e04c"
ANSWER = re.compile(r"<answer>\n(.*)\n</answer>", re.S)


def verdict(v: str, reason: str = "compared with the reference") -> str:
    return json.dumps({"reason": reason, "verdict": v})


class FakeJudge(ScriptedGemini):
    """Scripted per answer text (the prompt's <answer> block), with token counts in every
    reply; unscripted answers get HTTP 400 (see gemini_loopback)."""

    def __init__(self, script: dict[str, list[tuple[int, str]]]):
        super().__init__(
            script,
            lambda prompt: ANSWER.search(prompt).group(1),
            "answer",
            usage={
                "promptTokenCount": 700,
                "candidatesTokenCount": 30,
                "thoughtsTokenCount": 70,
                "totalTokenCount": 800,
            },
        )


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    return KEY


def _settings(url: str, cache: Path, **overrides) -> JudgeSettings:
    base = dict(
        base_url=url,
        cache_dir=cache,
        max_workers=2,
        retry_attempts=2,
        retry_initial_delay=0.01,  # tiny backoff for the test
        retry_jitter=0.0,
    )
    base.update(overrides)
    return JudgeSettings(**base)


def _item(answer: str, name: str = "item") -> Item:
    return Item(
        name,
        "Why do corals bleach when the sea warms?",
        "Heat stress makes corals expel their symbiotic algae.",
        answer,
    )


def _no_key_anywhere(*roots: Path) -> None:
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path


# --- verdicts and the request ------------------------------------------------------------------


def test_verdicts_come_from_structured_output(tmp_path, key, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    script = {
        "They expel their algae.": [(200, verdict("CORRECT", "names the expelled algae"))],
        "The skeleton dissolves.": [(200, verdict("INCORRECT"))],
        "I am not sure.": [(429, ""), (200, verdict("NOT_ATTEMPTED"))],  # retried after 429
    }
    items = [_item(a, f"item {i}") for i, a in enumerate(script)]
    with FakeJudge(script) as server:
        judge = GeminiJudge(_settings(server.url, tmp_path / "cache"))
        got = judge.judge(items)
    assert [v.verdict for v in got] == ["CORRECT", "INCORRECT", "NOT_ATTEMPTED"]
    assert got[0].reason == "names the expelled algae"
    assert server.count("I am not sure.") == 2

    first = server.requests[0]
    assert first["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert first["key"] == KEY
    gen = first["body"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["temperature"] == 0
    schema = gen["responseSchema"]
    assert schema["properties"]["verdict"]["enum"] == ["CORRECT", "INCORRECT", "NOT_ATTEMPTED"]
    assert schema["required"] == ["reason", "verdict"]
    prompt = first["prompt"]
    assert "<question>\nWhy do corals bleach when the sea warms?\n</question>" in prompt
    assert "<reference>\nHeat stress makes corals expel their symbiotic algae.\n</reference>" in (
        prompt
    )
    assert "NOT_ATTEMPTED: the essential facts of the reference are not in the answer" in prompt

    assert judge.stats.requested == 3 and judge.stats.cached == 0
    assert judge.stats.prompt_tokens == 3 * 700 and judge.stats.output_tokens == 3 * 100
    record = judge.record
    assert record["model"] == "gemini-2.5-flash" and record["requested"] == 3
    assert KEY not in json.dumps(record)
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err + caplog.text
    _no_key_anywhere(tmp_path / "cache")


# --- the cache ---------------------------------------------------------------------------------


def test_cache_rerun_asks_nothing_and_a_new_model_or_prompt_asks_again(tmp_path, key):
    answers = ["They expel their algae.", "The skeleton dissolves."]
    script = {answers[0]: [(200, verdict("CORRECT"))], answers[1]: [(200, verdict("INCORRECT"))]}
    cache = tmp_path / "cache"
    # The same answer twice (two models answering alike) is asked once.
    items = [_item(answers[0], "a"), _item(answers[1], "b"), _item(answers[0], "c")]
    with FakeJudge(script) as server:
        first = GeminiJudge(_settings(server.url, cache)).judge(items)
        assert len(server.requests) == 2
        files = sorted(cache.glob("*.json"))
        assert len(files) == 2
        stored = json.loads(files[0].read_text())
        assert (
            stored["verdict"] in ("CORRECT", "INCORRECT") and stored["model"] == "gemini-2.5-flash"
        )
        assert {"question", "reference", "answer", "prompt_sha256", "usage"} <= set(stored)

        again = GeminiJudge(_settings(server.url, cache))
        assert again.judge(items) == first
        assert len(server.requests) == 2  # nothing asked: every verdict came from the cache
        assert again.stats.cached == 2 and again.stats.requested == 0

        other_model = GeminiJudge(_settings(server.url, cache, model="gemini-2.5-pro"))
        assert [v.verdict for v in other_model.judge(items)] == ["CORRECT", "INCORRECT", "CORRECT"]
        assert len(server.requests) == 4
        assert server.requests[-1]["path"] == "/v1beta/models/gemini-2.5-pro:generateContent"

        prompt = judge_mod.GRADER_PROMPT.replace("You grade answers", "You carefully grade answers")
        GeminiJudge(_settings(server.url, cache, prompt=prompt)).judge(items)
        assert len(server.requests) == 6
        assert server.requests[-1]["prompt"].startswith("You carefully grade answers")
        assert len(list(cache.glob("*.json"))) == 6
    _no_key_anywhere(cache)


# --- the judge's metrics in a run's score rows and the summary --------------------------------


def _row(model, task, doc_id, prediction, reference="Heat stress makes corals expel algae."):
    return ScoreRecord(
        model=model,
        task=task,
        doc_id=doc_id,
        id=f"{task}-{doc_id}",
        topic="coral_reefs",
        question=f"Question {doc_id} of {task}?",
        reference=reference,
        prediction=prediction,
        metrics={"rougeL": 0.5},
    ).to_json()


def test_score_rows_gain_judge_metrics_and_the_summary_tests_them(tmp_path, key):
    base_answers = ["base right", "base wrong", "base unsure", "base wrong 2"]
    tuned_answers = ["tuned right", "tuned right 2", "base unsure", "tuned right 3"]
    script = {
        "base right": [(200, verdict("CORRECT"))],
        "base wrong": [(200, verdict("INCORRECT"))],
        "base wrong 2": [(200, verdict("INCORRECT"))],
        "base unsure": [(200, verdict("NOT_ATTEMPTED"))],
        "tuned right": [(200, verdict("CORRECT"))],
        "tuned right 2": [(200, verdict("CORRECT"))],
        "tuned right 3": [(200, verdict("CORRECT"))],
        "retention answer": [(200, verdict("INCORRECT"))],
    }

    def rows(model, answers):
        out = [_row(model, "marine_qa", i, a) for i, a in enumerate(answers)]
        out.append(_row(model, "retention_qa", 0, "retention answer"))
        out.append(_row(model, "marine_qa_ppl", 0, None))  # a likelihood task: nothing to judge
        out.append(_row(model, "marine_mc", 0, "A brown alga."))  # a choice, not an answer
        return out

    scores = {"base": rows("base", base_answers), "lora-a": rows("lora-a", tuned_answers)}
    before = json.dumps(scores, sort_keys=True)
    with FakeJudge(script) as server:
        judged = GeminiJudge(_settings(server.url, tmp_path / "cache"))(scores)
    assert json.dumps(scores, sort_keys=True) == before  # the cache's rows are not modified
    # "base unsure" is the same question/answer for both models (same doc): asked once.
    assert len(server.requests) == 8 and server.count("base unsure") == 1
    assert {r["answer"] for r in server.requests} == set(script)

    def metric(model, task, name):
        return [r["metrics"].get(name) for r in judged[model] if r["task"] == task]

    assert metric("base", "marine_qa", CORRECT_METRIC) == [1.0, 0.0, 0.0, 0.0]
    assert metric("base", "marine_qa", NOT_ATTEMPTED_METRIC) == [0.0, 0.0, 1.0, 0.0]
    assert metric("lora-a", "marine_qa", CORRECT_METRIC) == [1.0, 1.0, 0.0, 1.0]
    assert metric("base", "retention_qa", CORRECT_METRIC) == [0.0]
    assert metric("base", "marine_qa_ppl", CORRECT_METRIC) == [None]
    assert metric("base", "marine_mc", CORRECT_METRIC) == [None]
    assert all(r["metrics"]["rougeL"] == 0.5 for rs in judged.values() for r in rs)

    summary = build_summary("run", judged, BootstrapSettings(n_resamples=200, seed=0))
    base_qa = summary["models"]["base"]["marine_qa"]
    assert base_qa[CORRECT_METRIC]["mean"] == pytest.approx(0.25)
    assert base_qa[NOT_ATTEMPTED_METRIC]["mean"] == pytest.approx(0.25)
    assert "ci_low" in base_qa[CORRECT_METRIC]
    cmp = summary["comparisons"]["lora-a"]["marine_qa"][CORRECT_METRIC]
    assert cmp["delta"] == pytest.approx(0.5) and cmp["n"] == 4 and 0 < cmp["p_value"] <= 1
    assert summary["higher_is_better"][CORRECT_METRIC] is True
    assert summary["higher_is_better"][NOT_ATTEMPTED_METRIC] is None
    assert (
        "marine_qa_ppl" not in summary["models"]["base"]
        or CORRECT_METRIC not in (summary["models"]["base"]["marine_qa_ppl"])
    )
    assert find_metric(CORRECT_METRIC).lower_is_better is False


# --- bad replies and errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, expected",
    [
        pytest.param((200, '{"reason": "cut off", "verd'), r"not JSON", id="malformed"),
        pytest.param(
            (200, verdict("MOSTLY_CORRECT")), r"verdict 'MOSTLY_CORRECT' is not one of", id="enum"
        ),
        pytest.param((200, ""), r"an empty reply \(finish reason STOP\)", id="empty"),
        pytest.param((503, ""), r"answered HTTP 503 after 2 attempt\(s\)", id="503"),
    ],
)
def test_a_bad_reply_is_a_clear_error_naming_item_and_endpoint(
    tmp_path, key, caplog, reply, expected
):
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    good, bad = "They expel their algae.", "Something odd."
    script = {good: [(200, verdict("CORRECT"))], bad: [reply]}
    scores = {"base": [_row("base", "marine_qa", 0, good), _row("base", "marine_qa", 1, bad)]}
    with FakeJudge(script) as server:
        judge = GeminiJudge(_settings(server.url, cache, max_workers=1))
        with pytest.raises(JudgeError, match=expected) as info:
            judge(scores)
    message = str(info.value)
    assert f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent" in message
    assert "model base, task marine_qa, doc 1 (id marine_qa-1)" in message
    assert "rerunning asks only for the rest" in message
    assert KEY not in message + caplog.text
    assert len(list(cache.glob("*.json"))) == 1  # the good verdict is kept, the bad not cached
    _no_key_anywhere(cache)

    with FakeJudge({good: [(200, verdict("INCORRECT"))], bad: [(200, verdict("CORRECT"))]}) as ok:
        judged = GeminiJudge(_settings(ok.url, cache))(scores)
        assert [r["answer"] for r in ok.requests] == [bad]  # only the failed one is asked again
    assert [r["metrics"][CORRECT_METRIC] for r in judged["base"]] == [1.0, 1.0]


def test_no_key_is_a_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    build = tmp_path / "build"
    monkeypatch.setenv("MARINEBENCH_BUILD", str(build))
    with pytest.raises(JudgeError, match="GEMINI_API_KEY"):
        GeminiJudge(JudgeSettings(cache_dir=tmp_path / "cache"))

    labelled = tmp_path / "labels.jsonl"
    labelled.write_text(
        json.dumps({"question": "Q?", "reference": "R.", "answer": "A.", "label": "CORRECT"}) + "\n"
    )
    with FakeJudge({}) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        assert cli_main(["evaluate", "--judge", "gemini"]) == 2
        err = capsys.readouterr().err
        assert (
            "the Gemini judge (--judge gemini) needs an API key" in err and "GEMINI_API_KEY" in err
        )
        assert cli_main(["judge-agreement", str(labelled)]) == 2
        assert "GEMINI_API_KEY" in capsys.readouterr().err
        assert server.requests == []
    assert not build.exists()  # no model, dataset, results or cache touched


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"prompt": "Grade {answer} against {reference}."}, r"no \{question\} field to fill in"),
        ({"prompt": "{question} {reference} {answer} {extra}"}, "no other braces"),
        ({"timeout_ms": 0}, "judge.timeout_ms must be"),
        ({"max_workers": 0}, "judge.max_workers must be"),
        ({"provider": "oracle"}, "unknown judge 'oracle'"),
    ],
)
def test_bad_settings_are_refused(tmp_path, key, overrides, expected):
    with pytest.raises(JudgeError, match=expected):
        GeminiJudge(JudgeSettings(cache_dir=tmp_path, **overrides))


# --- evaluate --judge: the stage fingerprint ---------------------------------------------------


def test_a_judged_evaluation_is_fingerprinted_apart(
    tiny_model_dir, tmp_path, monkeypatch, key, capsys
):
    from eval_helpers import build_tiny_dataset, build_tiny_retention

    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    dataset = build_tiny_dataset(tmp_path / "dataset")
    retention = build_tiny_retention(tmp_path / "retention.jsonl")
    common = ["--model", str(tiny_model_dir), "--dataset", str(dataset)]
    common += ["--retention", str(retention), "--adapters"]

    def fingerprint(*extra):
        assert cli_main(["--fingerprint", "evaluate", *extra, *common]) == 0
        return json.loads(capsys.readouterr().out)

    plain = fingerprint()
    judged = fingerprint("--judge", "gemini")
    other = fingerprint("--judge", "gemini", "--judge-model", "gemini-2.5-pro")
    assert "judge" not in plain["parts"]["inputs"]
    assert judged["parts"]["inputs"]["judge"] == JudgeSettings().fingerprint()
    assert other["parts"]["inputs"]["judge"]["model"] == "gemini-2.5-pro"
    assert len({plain["digest"], judged["digest"], other["digest"]}) == 3
    assert plain["output"] == judged["output"]
    # The judge's code is part of the stage's code; the workers setting decides no verdict.
    assert "benchmark/evaluation/judge.py" in judged["parts"]["code"]
    assert fingerprint("--judge", "gemini", "--judge-workers", "2")["digest"] == judged["digest"]
    assert KEY not in json.dumps([plain, judged, other])


# --- judge-agreement ---------------------------------------------------------------------------


def test_agreement_command_reports_accuracy_and_kappa(tmp_path, monkeypatch, key, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    # (answer, hand label, the judge's verdict): five of six agree.
    rows = [
        ("a1", "CORRECT", "CORRECT"),
        ("a2", "CORRECT", "INCORRECT"),
        ("a3", "INCORRECT", "INCORRECT"),
        ("a4", "INCORRECT", "INCORRECT"),
        ("a5", "NOT_ATTEMPTED", "NOT_ATTEMPTED"),
        ("a6", "correct", "CORRECT"),  # labels are read case-insensitively
    ]
    labelled = tmp_path / "labels.jsonl"
    labelled.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"Q {a}?",
                    "reference": f"R {a}.",
                    "answer": a,
                    "label": label,
                    "id": a,
                }
            )
            + "\n"
            for a, label, _ in rows
        )
    )
    script = {a: [(200, verdict(v, f"reason for {a}"))] for a, _, v in rows}
    with FakeJudge(script) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        assert cli_main(["judge-agreement", str(labelled)]) == 0
        assert len(server.requests) == 6 and {r["key"] for r in server.requests} == {KEY}
        out = capsys.readouterr().out
        # Labels C C I I N C against verdicts C I I I N C: p_o = 5/6; chance agreement from the
        # marginals (labels 3/2/1, verdicts 2/3/1 of 6) p_e = (3*2 + 2*3 + 1*1) / 36 = 13/36.
        kappa = (5 / 6 - 13 / 36) / (1 - 13 / 36)
        assert "n = 6, accuracy 0.833" in out and f"Cohen's kappa {kappa:.3f}" in out
        assert "warning: only 6 labelled answers; at least 60" in out
        report_path = tmp_path / "build" / "judge_agreement" / "labels--gemini-2.5-flash.json"
        report = json.loads(report_path.read_text())
        assert report["n"] == 6 and report["accuracy"] == pytest.approx(5 / 6)
        assert report["cohen_kappa"] == pytest.approx(kappa) and report["enough"] is False
        assert report["confusion"]["CORRECT"] == {"CORRECT": 2, "INCORRECT": 1, "NOT_ATTEMPTED": 0}
        assert report["confusion"]["INCORRECT"]["INCORRECT"] == 2
        assert report["disagreements"] == [
            {"line": 2, "label": "CORRECT", "verdict": "INCORRECT", "reason": "reason for a2"}
        ]
        assert report["judge"]["model"] == "gemini-2.5-flash"

        # A rerun is all cache hits, with the same figures.
        assert cli_main(["judge-agreement", str(labelled), "--out", str(tmp_path / "r.json")]) == 0
        assert len(server.requests) == 6
        assert json.loads((tmp_path / "r.json").read_text())["cohen_kappa"] == pytest.approx(kappa)
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err + caplog.text
    _no_key_anywhere(tmp_path / "build", tmp_path / "r.json")


def test_agreement_bad_label_names_the_line(tmp_path, monkeypatch, key, capsys):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    labelled = tmp_path / "labels.jsonl"
    good = {"question": "Q?", "reference": "R.", "answer": "A.", "label": "CORRECT"}
    labelled.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "label": "PARTIAL"}) + "\n")
    with FakeJudge({}) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        assert cli_main(["judge-agreement", str(labelled)]) == 2
        assert server.requests == []
    assert f"{labelled}:3: label 'PARTIAL' is not one of" in capsys.readouterr().err
