"""Tiny, self-contained dataset sources written in code (the real curated files are not used)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

REAL_PROMPTS = Path(__file__).resolve().parent.parent / "datasets_src" / "prompts"
TOPICS = {
    "reef_life": "Coral reef organisms and reef ecology.",
    "open_ocean": "Pelagic animals of the open ocean.",
    "tide_pools": "Rocky-shore and tide-pool life.",
}


def _words(rng: random.Random, n: int) -> str:
    letters = "abcdefghijklmnoprstuvw"
    return " ".join(
        "".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(n)
    )


def make_record(topic: str, k: int, seed: int = 0) -> dict:
    """A unique record: random pseudo-words, so no two fixtures are near-duplicates."""
    rng = random.Random(f"{seed}:{topic}:{k}")
    return {
        "id": f"{topic}-{k:03d}",
        "topic": topic,
        "difficulty": ("easy", "medium", "hard")[k % 3],
        "question": f"Why does the {_words(rng, 6)} matter?",
        "answer": f"Because {_words(rng, 12)}.",
        "source": "test fixture",
    }


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def make_src(root: Path, per_topic: int = 12, extra: dict[str, list[dict]] | None = None) -> Path:
    """root/{taxonomy.yaml, curated/<topic>.jsonl, prompts/} with `per_topic` records per topic."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["topics:"] + [f"  {t}: {d}" for t, d in TOPICS.items()]
    (root / "taxonomy.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for topic in TOPICS:
        records = [make_record(topic, k) for k in range(per_topic)]
        records += (extra or {}).get(topic, [])
        write_jsonl(root / "curated" / f"{topic}.jsonl", records)
    shutil.copytree(REAL_PROMPTS, root / "prompts")
    return root


# --- the hand-written evaluation sets (datasets_src/test_extra/, datasets_src/recall/) ---

NOTES = (
    "# How this set was written\n\n"
    "- Written by hand, one record at a time.\n"
    "- Fact-checked against two independent sources.\n"
)


def write_notes(folder: Path, name: str = "NOTES-a.md", text: str = NOTES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def make_extra(topic: str, k: int) -> dict:
    """A transfer addition in the curated format, unlike any fixture record (other seed)."""
    rec = make_record(topic, k, seed=99)
    return {**rec, "id": f"{topic}-x{k:03d}", "source": "curated", "check_note": "checked"}


def add_test_extra(root: Path, per_topic: int = 2, extra: list[dict] | None = None) -> list[dict]:
    """root/test_extra/<topic>.jsonl (+ NOTES-a.md); returns every record written."""
    written = []
    for topic in TOPICS:
        records = [make_extra(topic, k) for k in range(1, per_topic + 1)]
        records += [r for r in extra or [] if r["topic"] == topic]
        write_jsonl(root / "test_extra" / f"{topic}.jsonl", records)
        written += records
    write_notes(root / "test_extra")
    return written


def recall_pick(train_rows: list[dict], per_topic: int) -> dict[str, list[str]]:
    """The protocol's selection rule, written out independently of the builder: per topic, the
    `per_topic` train ids with the smallest sha256("recall-v1:" + id)."""
    import hashlib

    by_topic: dict[str, list[str]] = {}
    for row in train_rows:
        by_topic.setdefault(row["topic"], []).append(row["id"])

    def key(train_id: str) -> str:
        return hashlib.sha256(f"recall-v1:{train_id}".encode()).hexdigest()

    return {t: sorted(ids, key=key)[:per_topic] for t, ids in by_topic.items()}


def make_recall_row(pair: dict, k: int = 0) -> dict:
    """A recall line for a training pair: new (random) wording, the trained answer verbatim."""
    rng = random.Random(f"recall:{pair['id']}:{k}")
    return {
        "id": f"recall-{pair['id']}",
        "train_id": pair["id"],
        "topic": pair["topic"],
        "question": f"Which {_words(rng, 5)} explains it?",
        "answer": pair["answer"],
        "check_note": "",
    }


def write_recall(root: Path, rows: list[dict], notes: bool = True) -> None:
    """root/recall/<topic>.jsonl from `rows` (grouped by their topic field) and NOTES-a.md."""
    folder = root / "recall"
    if folder.exists():
        shutil.rmtree(folder)
    by_topic: dict[str, list[dict]] = {}
    for row in rows:
        by_topic.setdefault(row["topic"], []).append(row)
    for topic, items in by_topic.items():
        write_jsonl(folder / f"{topic}.jsonl", items)
    if notes:
        write_notes(folder)
