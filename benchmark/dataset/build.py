"""The build: load -> clean -> dedupe -> split -> test_extra -> decontaminate -> recall -> write,
each step reported.

The hand-written evaluation sets (benchmark/dataset/handwritten.py, docs/protocol.md) come with
the curated source: the transfer additions join the records after every source, so deduplication
(which keeps the first of a group) never drops a curated record for them, and they skip the
seeded split; train and validation are therefore exactly what they are without them.

The output folder is replaced in one rename only after everything succeeded, so a failed build
(bad input, an API error, Ctrl-C) leaves the previous build/dataset/ exactly as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark.atomic import atomic_dir
from benchmark.contracts.dataset import RECALL_SPLIT, SPLITS
from benchmark.dataset import card as card_mod
from benchmark.dataset import handwritten
from benchmark.dataset.clean import clean
from benchmark.dataset.config import SOURCES, BuildConfig
from benchmark.dataset.dedup import dedupe
from benchmark.dataset.records import DatasetError, load_curated, load_taxonomy, records_digest
from benchmark.dataset.split import decontaminate, split
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
    seen: dict[str, str] = {}  # id -> where it was loaded (file:line for hand-written records)
    for source in dict.fromkeys(cfg.sources):  # each once, in the order given
        if source == "curated":
            recs, hashes = load_curated(cfg.src, taxonomy, seen)
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
        for rec in got.records:
            seen.setdefault(rec.id, f"the {source} source")
        report.input += len(got.records) + len(got.dropped)
        report.dropped += got.dropped
    extra = handwritten.TransferSet([], 0, [])
    recall = handwritten.RecallSource([], 0, [])
    if "curated" in cfg.sources:  # the hand-written evaluation sets belong to the curated source
        extra, hashes = handwritten.load_test_extra(cfg.src, taxonomy, seen)
        inputs.update(hashes)
        records += extra.records  # last: dedupe keeps the first of a group, never drops for them
        report.input += len(extra.records)
        recall, hashes = handwritten.load_recall(cfg.src, taxonomy)
        inputs.update(hashes)
    report.kept = len(records)
    return records, inputs, report, extra, recall


def build(cfg: BuildConfig) -> dict:
    """Build the dataset folder; returns the build report (also written as build_report.json)."""
    taxonomy = load_taxonomy(Path(cfg.src) / "taxonomy.yaml")
    loaded, inputs, load_report, extra, recall_src = _load(cfg, taxonomy)
    if not loaded:
        raise DatasetError(
            "no usable records: every source came back empty or malformed (see above)"
        )
    cleaned, clean_report = clean(loaded, cfg.clean)
    unique, dedupe_report = dedupe(cleaned, cfg.dedup)
    extra_ids = extra.ids
    seeded = [r for r in unique if r.id not in extra_ids]
    parts, split_report = split(seeded, cfg.splits, cfg.seed)
    parts, extra_report = handwritten.assign_test_extra(
        parts, [r for r in unique if r.id in extra_ids]
    )
    parts, decon_report = decontaminate(parts, cfg.dedup)
    if not parts["train"]:
        raise DatasetError("the train split is empty: the sources need more records")
    reports = [load_report, clean_report, dedupe_report, split_report, extra_report, decon_report]
    recall_summary = None
    if recall_src.files:
        # Recall rows are cleaned but deliberately not deduplicated or decontaminated against
        # train: each is meant to paraphrase a training question (handwritten.recall_step).
        fates = handwritten.record_fates(reports, parts)
        parts[RECALL_SPLIT], recall_report, recall_summary = handwritten.recall_step(
            recall_src, parts["train"], fates, cfg.clean, cfg.recall_per_topic
        )
        reports.append(recall_report)
    steps = [r.to_dict() for r in reports]
    inputs["records_sha256"] = records_digest(loaded)
    build_hash = sha256_json({"inputs": inputs, "config": cfg.hashed(), "code": code_version()})
    written = list(parts)  # the seeded splits, then recall when there is one
    by_topic = {
        t: {s: sum(r.topic == t for r in parts[s]) for s in written}
        for t in sorted({r.topic for recs in parts.values() for r in recs})
    }
    extra_summary = handwritten.transfer_summary(
        extra, [clean_report, dedupe_report, decon_report], parts["test"]
    )
    report = {
        "build_hash": build_hash,
        "seed": cfg.seed,
        "sources": list(dict.fromkeys(cfg.sources)),
        "config": cfg.hashed(),
        "code_version": code_version(),
        "inputs": inputs,
        "steps": steps,
        "counts": {
            **{s: len(parts[s]) for s in written},
            "test_extra": extra_summary["in_test"],
            "total": sum(len(parts[s]) for s in SPLITS),
            "by_topic": by_topic,
        },
        "handwritten": {"test_extra": extra_summary, "recall": recall_summary},
        "content_sha256": {s: records_digest(parts[s]) for s in written},
        "length_stats": card_mod.length_stats(parts),
    }
    sizes = {s: split_table(parts[s], s).nbytes for s in written}
    notes = {"test_extra": extra.notes, "recall": recall_src.notes}
    text = card_mod.render(parts, sizes, report, notes)
    out = cfg.out_dir()
    with atomic_dir(out) as tmp:
        write_folder(tmp, parts, text, report)
    log.info("dataset written to %s (build hash %s)", out, build_hash[:12])
    return report
