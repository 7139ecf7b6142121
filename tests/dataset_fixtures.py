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
