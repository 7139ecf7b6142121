"""Bad curated input: a clear error naming file (and line), exit code 2, and no output written."""

from __future__ import annotations

import json

import pytest
from dataset_fixtures import make_record, make_src

from benchmark.cli import main as cli_main
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.dataset.records import DatasetError
from benchmark.errors import UserError

GOOD = json.dumps(make_record("reef_life", 77)).encode()


def _line(**changes) -> bytes:
    rec = make_record("reef_life", 77)
    rec.update(changes)
    for key, value in list(rec.items()):
        if value is None:
            del rec[key]
    return json.dumps(rec, ensure_ascii=False).encode()


CASES = {
    "malformed_json": (b'{"id": "x", "topic": ', ["bad.jsonl:2", "malformed JSON"]),
    "missing_field": (_line(answer=None), ["bad.jsonl:2", "missing field 'answer'"]),
    "empty_field": (_line(question="   "), ["bad.jsonl:2", "field 'question' is empty"]),
    "wrong_type": (_line(difficulty=3), ["bad.jsonl:2", "field 'difficulty' must be a string"]),
    "bad_difficulty": (
        _line(difficulty="extreme"),
        ["bad.jsonl:2", "'extreme'", "easy, medium, hard"],
    ),
    "unknown_topic": (
        _line(topic="moon_rocks"),
        ["bad.jsonl:2", "unknown topic 'moon_rocks'", "taxonomy.yaml"],
    ),
    "not_an_object": (b"[1, 2]", ["bad.jsonl:2", "expected a JSON object"]),
    "non_utf8": (
        _line(question="Why is the caf\u00e9 sea slug green?").replace("é".encode(), b"\xe9"),
        ["bad.jsonl:2", "not valid UTF-8"],
    ),
    "duplicate_id": (
        _line(id="reef_life-000"),
        ["bad.jsonl:2", "'reef_life-000' already used", "reef_life.jsonl:1"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_fails_cleanly_and_keeps_previous_build(case, tmp_path, capsys):
    src = make_src(tmp_path / "src", per_topic=6)
    out = tmp_path / "ds"
    assert cli_main(["dataset", "build", "--src", str(src), "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    content, expected = CASES[case]
    (src / "curated" / "bad.jsonl").write_bytes(
        json.dumps(make_record("tide_pools", 99)).encode() + b"\n" + content + b"\n"
    )
    assert cli_main(["dataset", "build", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for piece in expected:
        assert piece in err, (piece, err)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]


def test_empty_file_and_no_files_and_first_build_writes_nothing(tmp_path):
    src = make_src(tmp_path / "src", per_topic=6)
    (src / "curated" / "empty.jsonl").write_bytes(b"\n  \n")
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=r"empty\.jsonl: file is empty"):
        build(BuildConfig(src=src, out=out))
    assert not out.exists()
    for path in (src / "curated").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"no \*\.jsonl files"):
        build(BuildConfig(src=src, out=out))
    assert not out.exists()


def test_bad_taxonomy_sources_and_topics(tmp_path):
    src = make_src(tmp_path / "src", per_topic=6)
    with pytest.raises(UserError, match="unknown topic.*moon_rocks"):
        build(
            BuildConfig(
                src=src, out=tmp_path / "ds", sources=["curated", "gemini"], topics=["moon_rocks"]
            )
        )
    with pytest.raises(UserError, match="unknown source"):
        build(BuildConfig(src=src, out=tmp_path / "ds", sources=["wikipedia"]))
    (src / "taxonomy.yaml").write_text("topics: []\n")
    with pytest.raises(
        UserError, match="taxonomy.yaml: needs a non-empty mapping under the key `topics`"
    ):
        build(BuildConfig(src=src, out=tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()
