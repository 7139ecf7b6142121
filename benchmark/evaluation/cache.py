"""Per-model evaluation cache: lm-eval's results and samples plus our per-sample scores, stored
under build/results/.cache/<key>/ where key hashes everything that could change them (model
weights, adapter, task config, dataset, generation settings, limit, scorer code).

A rerun with nothing changed reads every model's entry and never loads a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import paths
from benchmark.atomic import atomic_dir
from benchmark.contracts.results import (
    CACHE_DIR,
    LM_EVAL_RESULTS_FILE,
    SCORES_FILE,
    samples_file,
)
from benchmark.hashing import sha256_json

ENTRY_FILE = "entry.json"


def cache_dir() -> Path:
    return paths.results_dir() / CACHE_DIR


@dataclass
class CacheEntry:
    """One model's evaluation: lm-eval results, samples per task, our score rows, timings."""

    results: dict[str, Any]
    samples: dict[str, list[dict]]
    scores: list[dict]
    timing: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


@dataclass
class EvalCache:
    """Read/write entries by key; counts hits and misses (tests check a rerun only hits)."""

    root: Path = field(default_factory=cache_dir)
    enabled: bool = True
    hits: int = 0
    misses: int = 0

    def key(self, parts: dict[str, Any]) -> str:
        return sha256_json(parts)

    def get(self, key: str) -> CacheEntry | None:
        folder = self.root / key
        if not self.enabled or not (folder / ENTRY_FILE).is_file():
            self.misses += 1
            return None
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            samples = {task: _read_jsonl(folder / samples_file(task)) for task in entry["tasks"]}
            results = json.loads((folder / LM_EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
            scores = _read_jsonl(folder / SCORES_FILE)
        except (OSError, ValueError, KeyError):
            self.misses += 1  # a damaged entry is recomputed, never trusted
            return None
        self.hits += 1
        return CacheEntry(results, samples, scores, entry.get("timing", {}), folder)

    def put(self, key: str, entry: CacheEntry, parts: dict[str, Any]) -> CacheEntry:
        """Write the entry whole (temp folder + rename) and return it with its path."""
        folder = self.root / key
        with atomic_dir(folder) as tmp:
            write_entry_files(tmp, entry)
            (tmp / ENTRY_FILE).write_text(
                json.dumps(
                    {"tasks": sorted(entry.samples), "timing": entry.timing, "key_parts": parts},
                    indent=2,
                    sort_keys=True,
                    default=str,
                )
                + "\n",
                encoding="utf-8",
            )
        entry.path = folder
        return entry


def dumps_lm_eval(obj: Any, indent: int | None = 2) -> str:
    """JSON the way lm-eval's EvaluationTracker writes it (numpy, sets, callables handled)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(obj, indent=indent, default=handle_non_serializable, ensure_ascii=False)


def write_entry_files(folder: Path, entry: CacheEntry, with_scores: bool = True) -> None:
    """lm-eval's results.json and samples_<task>.jsonl (plus our scores.jsonl) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LM_EVAL_RESULTS_FILE).write_text(
        dumps_lm_eval(entry.results) + "\n", encoding="utf-8"
    )
    for task, rows in entry.samples.items():
        _write_jsonl(folder / samples_file(task), rows, lm_eval_style=True)
    if with_scores:
        _write_jsonl(folder / SCORES_FILE, entry.scores)


def _write_jsonl(path: Path, rows: list[dict], lm_eval_style: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            line = dumps_lm_eval(row, indent=None) if lm_eval_style else json.dumps(row)
            fh.write(line + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
