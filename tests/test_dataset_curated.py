"""The one test on the real curated source: it is big enough, valid, and builds cleanly."""

from __future__ import annotations

from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.dataset.records import load_curated, load_taxonomy
from benchmark.paths import DATASETS_SRC


def test_real_curated_source_builds(tmp_path):
    taxonomy = load_taxonomy(DATASETS_SRC / "taxonomy.yaml")
    records, _ = load_curated(DATASETS_SRC, taxonomy)
    assert len(records) >= 400
    assert len({r.topic for r in records}) >= 15
    report = build(BuildConfig(out=tmp_path / "ds"))
    counts = report["counts"]
    assert counts["total"] >= 0.95 * len(records)  # the curated set is nearly all kept
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
    assert abs(counts["train"] / counts["total"] - 0.8) < 0.03
