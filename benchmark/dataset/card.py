"""The dataset card (README.md): Hub YAML metadata plus the numbers a reader needs to trust it."""

from __future__ import annotations

import statistics

import yaml

from benchmark.contracts.dataset import COLUMNS, QA_COLUMNS, SPLITS, split_glob
from benchmark.dataset.records import QARecord

LICENSE = "cc-by-4.0"
PRETTY_NAME = "MarineBench marine-biology Q&A"


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def metadata(splits: dict[str, list[QARecord]], sizes: dict[str, int]) -> dict:
    total = sum(len(v) for v in splits.values())
    return {
        "license": LICENSE,
        "language": ["en"],
        "pretty_name": PRETTY_NAME,
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(total)],
        "tags": ["biology", "marine-biology", "oceanography", "benchmark"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": split_glob(s)} for s in SPLITS],
            }
        ],
        "dataset_info": {
            "features": [{"name": name, "dtype": "string"} for name in COLUMNS],
            "splits": [
                {"name": s, "num_bytes": sizes[s], "num_examples": len(splits[s])} for s in SPLITS
            ],
            "dataset_size": sum(sizes.values()),
        },
    }


def length_stats(splits: dict[str, list[QARecord]]) -> dict:
    """Words per question and answer, per split: min / median / mean / max."""
    out = {}
    for s in SPLITS:
        for field in QA_COLUMNS:
            words = [len(getattr(r, field).split()) for r in splits[s]] or [0]
            out[f"{s}.{field}"] = {
                "min": min(words),
                "median": float(statistics.median(words)),
                "mean": round(statistics.fmean(words), 1),
                "max": max(words),
            }
    return out


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(splits: dict[str, list[QARecord]], sizes: dict[str, int], report: dict) -> str:
    meta = yaml.safe_dump(metadata(splits, sizes), sort_keys=False, allow_unicode=True)
    topics = sorted({r.topic for recs in splits.values() for r in recs})
    count_rows = []
    for t in topics:
        row = [sum(r.topic == t for r in splits[s]) for s in SPLITS]
        count_rows.append([f"`{t}`", *row, sum(row)])
    totals = [len(splits[s]) for s in SPLITS]
    count_rows.append(["**total**", *totals, sum(totals)])
    stats = report["length_stats"]
    stat_rows = [[k, v["min"], v["median"], v["mean"], v["max"]] for k, v in stats.items()]
    step_rows = [
        [
            s["name"],
            s["input"],
            s["kept"],
            s["dropped"],
            ", ".join(f"{k}: {v}" for k, v in s["reasons"].items()) or "-",
        ]
        for s in report["steps"]
    ]
    sources = ", ".join(report["sources"])
    return f"""---
{meta}---

# {PRETTY_NAME}

Short question/answer pairs about marine biology (answers are one to three sentences), across
{len(topics)} topics, for fine-tuning and evaluating small chat models. Built by MarineBench's
`marinebench dataset build` from: {sources}.

Every record has the fields {", ".join(f"`{f}`" for f in COLUMNS)}. `difficulty` is easy, medium
or hard; `source` says where the pair came from.

## Splits and topics

Split seeded ({report["seed"]}) and stratified by topic ({report["config"]["splits"]}); no
validation or test question is a near-duplicate (character 5-gram Jaccard >=
{report["config"]["dedup"]["decontam_threshold"]}) of a train question.

{_table(["topic", *SPLITS, "total"], count_rows)}

## Lengths (words)

{_table(["split.field", "min", "median", "mean", "max"], stat_rows)}

## What each step dropped

{_table(["step", "in", "kept", "dropped", "why"], step_rows)}

The ids and reasons of every dropped record are in `build_report.json`.

## Rebuild

```bash
nox -s dataset            # or: marinebench dataset build --source {" --source ".join(report["sources"])}
```

The same inputs and seed give byte-identical parquet files and the same build hash.

Build hash: `{report["build_hash"]}`
"""
