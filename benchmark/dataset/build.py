"""The build: load -> clean -> dedupe -> split -> decontaminate -> write, each step reported.

The output folder is replaced in one rename only after everything succeeded, so a failed build
(bad input, an API error, Ctrl-C) leaves the previous build/dataset/ exactly as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark.atomic import atomic_dir
from benchmark.dataset import card as card_mod
from benchmark.dataset.clean import clean
from benchmark.dataset.config import SOURCES, BuildConfig
from benchmark.dataset.dedup import dedupe
from benchmark.dataset.records import DatasetError, load_curated, load_taxonomy, records_digest
from benchmark.dataset.split import SPLITS, decontaminate, split
from benchmark.dataset.step_report import StepReport
from benchmark.dataset.writer import split_table, write_folder
from benchmark.hashing import sha256_file, sha256_json

log = logging.getLogger(__name__)
CODE_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """Hash of the builder's own source: a code change that could change the output changes it."""
    return sha256_json({p.name: sha256_file(p) for p in sorted(CODE_DIR.glob("*.py"))})


def _load(cfg: BuildConfig, taxonomy: dict[str, str]):
    unknown = [s for s in cfg.sources if s not in SOURCES]
    if unknown or not cfg.sources:
        raise DatasetError(
            f"unknown source(s) {unknown or cfg.sources}; choose from {', '.join(SOURCES)}"
        )
    topics = cfg.topics or sorted(taxonomy)
    if bad := [t for t in topics if t not in taxonomy]:
        raise DatasetError(
            f"unknown topic(s) {', '.join(bad)}; taxonomy.yaml has: {', '.join(sorted(taxonomy))}"
        )
    report = StepReport("load")
    records, inputs = [], {}
    for source in dict.fromkeys(cfg.sources):  # each once, in the order given
        if source == "curated":
            recs, hashes = load_curated(cfg.src, taxonomy)
            records += recs
            inputs.update(hashes)
            report.input += len(recs)
            continue
        if source == "gemini":
            from benchmark.dataset import gemini

            got = gemini.generate(cfg.src, taxonomy, topics, cfg.gemini, cfg.cache_root())
        else:
            from benchmark.dataset import local

            got = local.generate(cfg.src, taxonomy, topics, cfg.local)
        records += got.records
        report.input += len(got.records) + len(got.dropped)
        report.dropped += got.dropped
    report.kept = len(records)
    return records, inputs, report


def build(cfg: BuildConfig) -> dict:
    """Build the dataset folder; returns the build report (also written as build_report.json)."""
    taxonomy = load_taxonomy(Path(cfg.src) / "taxonomy.yaml")
    loaded, inputs, load_report = _load(cfg, taxonomy)
    if not loaded:
        raise DatasetError(
            "no usable records: every source came back empty or malformed (see above)"
        )
    cleaned, clean_report = clean(loaded, cfg.clean)
    unique, dedupe_report = dedupe(cleaned, cfg.dedup)
    parts, split_report = split(unique, cfg.splits, cfg.seed)
    parts, decon_report = decontaminate(parts, cfg.dedup)
    if not parts["train"]:
        raise DatasetError("the train split is empty: the sources need more records")
    steps = [
        r.to_dict() for r in (load_report, clean_report, dedupe_report, split_report, decon_report)
    ]
    inputs["records_sha256"] = records_digest(loaded)
    build_hash = sha256_json({"inputs": inputs, "config": cfg.hashed(), "code": code_version()})
    by_topic = {
        t: {s: sum(r.topic == t for r in parts[s]) for s in SPLITS}
        for t in sorted({r.topic for recs in parts.values() for r in recs})
    }
    report = {
        "build_hash": build_hash,
        "seed": cfg.seed,
        "sources": list(dict.fromkeys(cfg.sources)),
        "config": cfg.hashed(),
        "code_version": code_version(),
        "inputs": inputs,
        "steps": steps,
        "counts": {
            **{s: len(parts[s]) for s in SPLITS},
            "total": sum(len(v) for v in parts.values()),
            "by_topic": by_topic,
        },
        "length_stats": card_mod.length_stats(parts),
    }
    sizes = {s: split_table(parts[s]).nbytes for s in SPLITS}
    text = card_mod.render(parts, sizes, report)
    out = cfg.out_dir()
    with atomic_dir(out) as tmp:
        write_folder(tmp, parts, text, report)
    log.info("dataset written to %s (build hash %s)", out, build_hash[:12])
    return report
