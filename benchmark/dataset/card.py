"""The dataset card (README.md): Hub YAML metadata plus the numbers a reader needs to trust it."""

from __future__ import annotations

import re
import statistics

import yaml

from benchmark.contracts.dataset import (
    QA_COLUMNS,
    RECALL_CONFIG,
    RECALL_SOURCE,
    RECALL_SPLIT,
    SPLITS,
    split_columns,
    split_glob,
)
from benchmark.dataset.records import QARecord

LICENSE = "cc-by-4.0"
PRETTY_NAME = "MarineBench marine-biology Q&A"


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def _config(name: str, splits: list[str], records: dict, sizes: dict[str, int]) -> tuple:
    """One Hub config: its data files and its dataset_info (features, split sizes)."""
    files = {
        "config_name": name,
        "data_files": [{"split": s, "path": split_glob(s)} for s in splits],
    }
    info = {
        "config_name": name,
        "features": [{"name": c, "dtype": "string"} for c in split_columns(splits[0])],
        "splits": [
            {"name": s, "num_bytes": sizes[s], "num_examples": len(records[s])} for s in splits
        ],
        "dataset_size": sum(sizes[s] for s in splits),
    }
    return files, info


def metadata(splits: dict[str, list[QARecord]], sizes: dict[str, int]) -> dict:
    """Hub YAML. The recall split is a config of its own: its rows have one more column, and a
    config's splits must share their columns (`datasets.load_dataset` refuses otherwise)."""
    total = sum(len(v) for v in splits.values())
    configs = [_config("default", list(SPLITS), splits, sizes)]
    if RECALL_SPLIT in splits:
        configs.append(_config(RECALL_CONFIG, [RECALL_SPLIT], splits, sizes))
    return {
        "license": LICENSE,
        "language": ["en"],
        "pretty_name": PRETTY_NAME,
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(total)],
        "tags": ["biology", "marine-biology", "oceanography", "benchmark"],
        "configs": [files for files, _ in configs],
        "dataset_info": [info for _, info in configs],
    }


def length_stats(splits: dict[str, list[QARecord]]) -> dict:
    """Words per question and answer, per split: min / median / mean / max."""
    out = {}
    for s in splits:
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


_HEADING = re.compile(r"^(#{1,6})(?=\s)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def quote_notes(text: str, depth: int = 4) -> str:
    """A notes file's markdown with its headings pushed below the card's own (a `#` heading
    becomes `####`; code fences are left alone)."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            level = min(6, len(m.group(1)) + depth - 1)
            line = "#" * level + line[len(m.group(1)) :]
        out.append(line)
    return "\n".join(out)


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def handwritten_section(report: dict, notes: dict[str, list[tuple[str, str]]]) -> str:
    """The card's account of the hand-written evaluation sets: what they are, the recall
    selection rule, counts per topic, and the writers' own notes on how they were written and
    fact-checked (quoted from the NOTES-*.md files of the source folders at build time)."""
    extra = report["handwritten"]["test_extra"]
    recall = report["handwritten"]["recall"]
    if not extra["loaded"] and recall is None:
        return ""
    parts = [
        "## Hand-written evaluation sets",
        "",
        "Two sets were written by hand for MarineBench's pre-registered evaluation protocol "
        "(`docs/protocol.md`), to test two separate claims about a fine-tuned model: that it "
        "recalls the trained facts when asked in new words (recall), and that it answers "
        "questions about facts no training pair states (transfer). Neither set is trained on "
        "or used to choose anything.",
        "",
        "Who wrote and checked them: the project's engineers, AI-assisted coding sessions "
        "working offline, wrote every item by hand (no generator model, no scraping) and then "
        "checked each one in a second pass against the trained answer (recall) or claim by "
        "claim against standard textbook knowledge (transfer), replacing or hedging anything "
        "not firmly established; no external source could be consulted during the check. "
        "`check_note` in the source files records the basis of each check, and the writers' "
        "notes below say what was changed. Treat the sets as carefully written, not as "
        "expert-reviewed.",
    ]
    if extra["loaded"]:
        parts += [
            "",
            f"**Transfer additions** (`test_extra/`: {extra['files']} files, {extra['loaded']} "
            "pairs in the curated format, about facts no training pair states). They are cleaned "
            "and deduplicated like every record (a pair that repeats an earlier record is "
            "dropped, never the earlier record), never take part in the seeded split (so train "
            "and validation are exactly what they are without them) and are added to the test "
            "split, where decontamination drops any whose question near-duplicates a train "
            f"question. In the test split: **{extra['in_test']} of {extra['loaded']}** "
            f"(dropped by step: {_reasons(extra['dropped'])}); the test split's other "
            f"{report['counts']['test'] - extra['in_test']} rows come from the seeded split.",
        ]
    if recall is not None:
        recall_step = next(s for s in report["steps"] if s["name"] == "recall")
        not_written = recall["topics_not_written"]
        parts += [
            "",
            f"**Recall paraphrases** (`recall/`: {recall['files']} files, {recall['loaded']} "
            f"rows), the `{RECALL_SPLIT}` split (config `{RECALL_CONFIG}`: "
            f'`datasets.load_dataset(..., "{RECALL_CONFIG}")`). Selection rule, applied to this '
            f"build's train split: {recall['rule']}. For each selected pair a question was "
            "written by hand that asks for the same fact in new words; the reference answer is "
            "the trained answer, verbatim. `train_id` names the training pair, `difficulty` is "
            f"the pair's and `source` is `{RECALL_SOURCE}`. Rows are cleaned like every record "
            "but not deduplicated or decontaminated against the train split: they are meant to "
            "ask about training pairs. The build checks that each row's `train_id` is in the "
            "train split, that its answer is the trained answer, that no pair has two rows, and "
            "that the rows were written for exactly the rule's selection in every topic they "
            f"cover. Kept: **{recall['kept']} of {recall['loaded']}** (dropped: "
            f"{_reasons(recall_step['reasons'])})."
            + (
                f" Topics with no recall rows yet: {', '.join(f'`{t}`' for t in not_written)}."
                if not_written
                else ""
            ),
        ]
    topics = sorted(set(extra["by_topic"]) | set((recall or {}).get("by_topic", {})))
    rows = []
    for t in topics:
        e = extra["by_topic"].get(t, {"loaded": 0, "in_test": 0})
        r = (recall or {}).get("by_topic", {}).get(t, {"selected": 0, "kept": 0})
        rows.append([f"`{t}`", e["loaded"], e["in_test"], r["selected"], r["kept"]])
    totals = [sum(row[k] for row in rows) for k in range(1, 5)]
    rows.append(["**total**", *totals])
    header = ["topic", "transfer written", "transfer in test", "recall selected", "recall kept"]
    parts += ["", _table(header, rows), "", "### How they were written and checked", ""]
    parts.append(
        "The writers' own notes, quoted from the source folders' `NOTES-*.md` files at build "
        "time (their sha256 is in `build_report.json`, `inputs`):"
    )
    for folder in ("test_extra", "recall"):
        for rel, text in notes.get(folder, []):
            parts += ["", f"From `{rel}`:", "", quote_notes(text)]
    return "\n".join(parts) + "\n\n"


def render(
    splits: dict[str, list[QARecord]],
    sizes: dict[str, int],
    report: dict,
    notes: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    meta = yaml.safe_dump(metadata(splits, sizes), sort_keys=False, allow_unicode=True)
    topics = sorted({r.topic for s in SPLITS for r in splits[s]})
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
    hash_rows = [[s, len(splits[s]), f"`{h}`"] for s, h in report["content_sha256"].items()]
    sources = ", ".join(report["sources"])
    extra_note = (
        " The test split also holds the hand-written transfer additions (below), which take no "
        "part in the seeded split."
        if report["counts"]["test_extra"]
        else ""
    )
    handwritten = handwritten_section(report, notes or {})
    return f"""---
{meta}---

# {PRETTY_NAME}

Short question/answer pairs about marine biology (answers are one to three sentences), across
{len(topics)} topics, for fine-tuning and evaluating small chat models. Built by MarineBench's
`marinebench dataset build` from: {sources}.

Every record has the fields {", ".join(f"`{f}`" for f in split_columns("train"))}. `difficulty`
is easy, medium or hard; `source` says where the pair came from.

## Splits and topics

Split seeded ({report["seed"]}) and stratified by topic ({report["config"]["splits"]}); no
validation or test question is a near-duplicate (character 5-gram Jaccard >=
{report["config"]["dedup"]["decontam_threshold"]}) of a train question.{extra_note}

{_table(["topic", *SPLITS, "total"], count_rows)}

{handwritten}## Lengths (words)

{_table(["split.field", "min", "median", "mean", "max"], stat_rows)}

## What each step dropped

{_table(["step", "in", "kept", "dropped", "why"], step_rows)}

The ids and reasons of every dropped record are in `build_report.json`.

## Content hashes

sha256 of each split's rows (canonical JSON of the records, in file order), so an evaluation can
name exactly the questions it was scored on:

{_table(["split", "rows", "sha256"], hash_rows)}

## Rebuild

```bash
nox -s dataset            # or: marinebench dataset build --source {" --source ".join(report["sources"])}
```

The same inputs and seed give byte-identical parquet files and the same build hash.

Build hash: `{report["build_hash"]}`
"""
