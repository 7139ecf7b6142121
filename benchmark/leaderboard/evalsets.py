"""One ranking per question set: group the leaderboard's rows by the questions they were scored on.

A run of `marinebench evaluate --data my.jsonl` scores its models on other questions than the
benchmark's, under the same task names; ranking them in one table would compare numbers that
measure different things. Every run folder's manifest records what it was scored on
(`dataset_hash`, `dataset_source`, `retention_hash`, `limit`; benchmark/contracts/results.py), so
runs with the same record form one *evaluation set*, and each set gets its own tables, charts
and deltas. A run whose manifest does not record its data is a set of its own, and so is every
lm-eval results file from another run (MarineBench cannot tell which questions it used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.leaderboard.ingest import Entry, Key, RunFolder

#: source kinds of the benchmark's own data (the built dataset folder or its Hub copy): the sets
#: the pre-registered protocol (docs/protocol.md) is about, shown first
BENCHMARK_KINDS = ("folder", "hub")
KIND_WORDS = {"folder": "Dataset folder", "hub": "Hub dataset", "jsonl": "JSONL file"}
FOREIGN_KEY: tuple = ("lm-eval",)


@dataclass
class EvalSet:
    """Models scored on the same questions: the runs whose manifests record the same data."""

    key: tuple
    name: str
    """Named after the data's source: a JSONL file's name, a folder's path, a Hub id."""
    kind: str
    """"folder", "hub", "jsonl", "unrecorded" (a run whose manifest names no data) or
    "lm-eval" (results files of other runs)."""
    dataset_hash: str | None = None
    retention_hash: str | None = None
    limit: int | None = None
    runs: list[RunFolder] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    columns: list[Key] = field(default_factory=list)
    anchor: str = ""
    """The section's id on the leaderboard page (set-1, set-2, ...)."""

    @property
    def kind_words(self) -> str:
        return KIND_WORDS.get(self.kind, "")

    @property
    def registered(self) -> bool:
        """Whether the protocol's claims are about these questions (the benchmark's own data)."""
        return self.kind in BENCHMARK_KINDS

    @property
    def latest(self) -> str:
        return max((str((r.manifest or {}).get("created") or "") for r in self.runs), default="")


def _display_path(location: str) -> str:
    """A path for a heading: relative to the working folder when inside it, else its last two
    parts (no home folders on pages)."""
    path = Path(location)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return "/".join(path.parts[-2:])


def source_name(manifest: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of the data a run was scored on, from its manifest's `dataset_source`
    ("kind:location[@revision]", benchmark.evaluation.data.DataSource.describe) or path."""
    source = manifest.get("dataset_source")
    location = str(manifest.get("dataset_path") or "")
    kind = ""
    if isinstance(source, str) and ":" in source:
        kind, _, location = source.partition(":")
    elif location.endswith(".jsonl"):
        kind = "jsonl"
    elif location:
        kind = "folder"
    if kind == "hub":
        return kind, location
    if kind == "jsonl":
        return kind, Path(location).name
    return kind or "folder", _display_path(location) if location else "dataset"


def _key(run: RunFolder) -> tuple:
    manifest = run.manifest or {}
    dataset_hash = manifest.get("dataset_hash")
    if not dataset_hash:
        return ("unrecorded", str(run.path))
    retention = str(manifest.get("retention_hash") or "")
    return ("data", str(dataset_hash), retention, manifest.get("limit"))


def group(runs: list[RunFolder], entries: list[Entry], columns: list[Key]) -> list[EvalSet]:
    """The evaluation sets of a leaderboard, in display order: the benchmark's own data first
    (newest evaluation first), then other data, runs that record none, and other lm-eval files.
    Sets with the same source name are told apart by their hashes."""
    sets: dict[tuple, EvalSet] = {}
    for run in runs:
        key = _key(run)
        s = sets.get(key)
        if s is None:
            manifest = run.manifest or {}
            if key[0] == "unrecorded":
                s = EvalSet(key, f"results folder {run.name}", "unrecorded")
            else:
                kind, name = source_name(manifest)
                s = EvalSet(key, name, kind, key[1], key[2] or None, key[3])
            sets[key] = s
        s.runs.append(run)
        run.eval_set = s
    foreign = [e for e in entries if e.folder is None]
    if foreign:
        sets[FOREIGN_KEY] = EvalSet(FOREIGN_KEY, "lm-eval results files of other runs", "lm-eval")
    for e in entries:
        s = sets[FOREIGN_KEY] if e.folder is None else e.folder.eval_set
        s.entries.append(e)
    rank = {**{k: 0 for k in BENCHMARK_KINDS}, "jsonl": 1, "unrecorded": 2, "lm-eval": 3}
    ordered = sorted(sets.values(), key=lambda s: s.name)
    ordered.sort(key=lambda s: s.latest, reverse=True)
    ordered.sort(key=lambda s: rank.get(s.kind, 2))
    for s in ordered:
        if isinstance(s.limit, float) and 0 < s.limit < 1:
            s.name = f"{s.name}, {s.limit:.0%} of the questions per task"
        elif s.limit:
            s.name = f"{s.name}, first {s.limit} questions per task"
    _disambiguate(ordered)
    for i, s in enumerate(ordered, 1):
        s.anchor = f"set-{i}"
        names = [e.model for e in s.entries]
        for e in s.entries:  # within one set, the run's name is needed only to tell rows apart
            unique = e.origin == "marinebench" and names.count(e.model) == 1
            e.set_label = e.model if unique else e.label
        keys = {k for e in s.entries for k in e.stats}
        s.columns = [c for c in columns if c in keys]
    return ordered


def _disambiguate(sets: list[EvalSet]) -> None:
    """Sets that share a source name (two versions of one file) are named with their hashes."""
    for attr, label in (("dataset_hash", "questions"), ("retention_hash", "retention set")):
        names: dict[str, list[EvalSet]] = {}
        for s in sets:
            names.setdefault(s.name, []).append(s)
        for same in names.values():
            if len(same) > 1:
                for s in same:
                    value = getattr(s, attr)
                    if value:
                        s.name = f"{s.name} ({label} {value[:12]})"
