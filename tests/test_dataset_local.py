"""The local-model source: the generation prompts through a transformers chat model (tiny, random)."""

from __future__ import annotations

from dataset_fixtures import TOPICS, make_src

from benchmark.cli import main as cli_main
from benchmark.dataset.config import LocalConfig
from benchmark.dataset.generate import Generated, parse_reply, render_prompt
from benchmark.dataset.local import generate


def test_tiny_model_garbage_is_reported_not_fatal(tiny_model_dir, tmp_path, capsys):
    src = make_src(tmp_path / "src", per_topic=6)
    cfg = LocalConfig(
        model=str(tiny_model_dir), pairs_per_topic=3, max_new_tokens=12, batch_size=2, device="cpu"
    )
    got = generate(src, dict(TOPICS), sorted(TOPICS), cfg)
    # A random model cannot write JSON: every topic's reply is dropped with a reason, none kept.
    assert got.records == []
    assert sorted(d["id"] for d in got.dropped) == [f"local:{t}" for t in sorted(TOPICS)]
    assert {d["reason"] for d in got.dropped} <= {"malformed_reply", "malformed_item"}

    # Through the CLI next to the curated source: the build succeeds and reports the drops.
    out = tmp_path / "ds"
    argv = ["dataset", "build", "--src", str(src), "--out", str(out), "--source", "curated,local"]
    argv += [
        "--local-model",
        str(tiny_model_dir),
        "--max-new-tokens",
        "8",
        "--pairs-per-topic",
        "2",
    ]
    assert cli_main(argv) == 0
    import json

    report = json.loads((out / "build_report.json").read_text())
    load = report["steps"][0]
    assert load["kept"] == 18 and load["dropped"] == 3
    assert report["config"]["local"]["model"] == str(tiny_model_dir)


def test_prompt_and_reply_parsing(tmp_path):
    src = make_src(tmp_path / "src", per_topic=1)
    prompt = render_prompt(src, "reef_life", TOPICS["reef_life"], 5)
    assert "Topic: reef_life" in prompt and "Write 5 new" in prompt and '"difficulty"' in prompt
    out = Generated()
    reply = (
        "Sure! Here you go:\n```json\n"
        '[{"question": "Why do corals spawn at night?", "answer": "Darkness hides gametes.", "difficulty": "Medium"},'
        ' {"question": "What is a polyp?", "answer": "", "difficulty": "easy"},'
        ' {"question": "What is a reef crest?", "answer": "The shallowest part.", "difficulty": "trivial"}, 7]\n```'
    )
    parse_reply(reply, topic="reef_life", source="local:m", origin="local:reef_life", out=out)
    assert [(r.question, r.difficulty, r.source) for r in out.records] == [
        ("Why do corals spawn at night?", "medium", "local:m")
    ]
    assert out.records[0].id.startswith("local-reef_life-")
    assert [(d["id"], d["reason"]) for d in out.dropped] == [
        ("local:reef_life#1", "malformed_item"),
        ("local:reef_life#2", "malformed_item"),
        ("local:reef_life#3", "malformed_item"),
    ]
