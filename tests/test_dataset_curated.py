"""The tests on the real source (datasets_src/): it is big enough, valid, and builds cleanly; the
hand-written evaluation sets leave train and validation alone and, once complete, have the sizes
docs/protocol.md registers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.contracts.dataset import split_file
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.dataset.records import load_curated, load_taxonomy
from benchmark.paths import DATASETS_SRC

HANDWRITTEN = ("test_extra", "recall")
PER_TOPIC = 12  # docs/protocol.md: 12 recall and 12 transfer questions per topic


def _incomplete(folder: Path, n_topics: int) -> str | None:
    """Why a hand-written folder is not final yet (None when it is: one file of 12 per topic and
    its notes)."""
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        return f"{folder.name}/ has no *.jsonl files yet"
    lines = {p.name: sum(1 for x in p.read_text("utf-8").splitlines() if x.strip()) for p in files}
    short = {name: n for name, n in lines.items() if n != PER_TOPIC}
    if len(files) != n_topics or short:
        return f"{folder.name}/ has {len(files)} of {n_topics} files" + (
            f", not {PER_TOPIC} lines in {short}" if short else ""
        )
    if not list(folder.glob("NOTES-*.md")):
        return f"{folder.name}/ has no NOTES-*.md yet"
    return None


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Two builds of the real source: curated pairs only, and with the hand-written sets (those
    still being written are left out, and `why` says so)."""
    root = tmp_path_factory.mktemp("real")
    taxonomy = load_taxonomy(DATASETS_SRC / "taxonomy.yaml")
    why = {sub: _incomplete(DATASETS_SRC / sub, len(taxonomy)) for sub in HANDWRITTEN}
    curated_src = root / "src-curated"
    shutil.copytree(DATASETS_SRC, curated_src, ignore=shutil.ignore_patterns(*HANDWRITTEN))
    full_src = DATASETS_SRC
    if any(why.values()):
        full_src = root / "src-full"
        left_out = [sub for sub, reason in why.items() if reason]
        shutil.copytree(DATASETS_SRC, full_src, ignore=shutil.ignore_patterns(*left_out))
    curated = build(BuildConfig(src=curated_src, out=root / "curated"))
    full = build(BuildConfig(src=full_src, out=root / "full"))
    return {"root": root, "curated": curated, "full": full, "why": why, "taxonomy": taxonomy}


def test_real_curated_source_builds(real):
    records, _ = load_curated(DATASETS_SRC, real["taxonomy"])
    assert len(records) >= 400
    assert len({r.topic for r in records}) >= 15
    counts = real["curated"]["counts"]
    assert counts["total"] >= 0.95 * len(records)  # the curated set is nearly all kept
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
    assert abs(counts["train"] / counts["total"] - 0.8) < 0.03


def test_real_hand_written_sets_leave_train_and_validation_alone(real):
    root = real["root"]
    for split in ("train", "validation"):
        curated = split_file(root / "curated", split).read_bytes()
        assert split_file(root / "full", split).read_bytes() == curated, split
    full, curated = real["full"]["counts"], real["curated"]["counts"]
    assert full["test"] == curated["test"] + full["test_extra"]


def test_real_hand_written_sets_have_the_registered_sizes(real):
    if unfinished := {sub: why for sub, why in real["why"].items() if why}:
        pytest.skip(f"hand-written sets still being written: {unfinished}")
    report, curated = real["full"], real["curated"]
    expected = len(real["taxonomy"]) * PER_TOPIC  # 20 topics x 12 = 240
    assert report["counts"]["recall"] == expected
    assert report["handwritten"]["recall"]["topics_not_written"] == []
    extra = report["handwritten"]["test_extra"]
    assert extra["loaded"] == expected
    assert extra["in_test"] + sum(extra["dropped"].values()) == expected
    assert report["counts"]["test"] == curated["counts"]["test"] + extra["in_test"]
    card = (real["root"] / "full" / "README.md").read_text("utf-8")
    for sub in HANDWRITTEN:
        for notes in sorted((DATASETS_SRC / sub).glob("NOTES-*.md")):
            assert f"From `{sub}/{notes.name}`:" in card
            last = notes.read_text("utf-8").strip().splitlines()[-1]
            assert last in card  # quoted whole, to its last line
