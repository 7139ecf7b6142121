"""Where the evaluation questions come from: the built dataset folder (default), the published
Hub dataset, or any JSONL of question/answer pairs a user brings; plus the retention set.

The lm-eval tasks (tasks/utils.py) and our runner both resolve data through here, so the plain
`lm_eval` CLI and `marinebench evaluate` always read the same rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark import paths
from benchmark.contracts.dataset import (
    QA_COLUMNS,
    RECALL_CONFIG,
    RECALL_SPLIT,
    SPLITS,
    split_file,
)
from benchmark.errors import UserError
from benchmark.hashing import sha256_file, sha256_tree

#: env overrides, for the plain lm_eval CLI (also settable with --metadata, see tasks/README.md)
DATASET_ENV = "MARINEBENCH_DATASET"
RETENTION_ENV = "MARINEBENCH_RETENTION"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
#: the split whose questions and answers fit the fixed TF-IDF function (docs/protocol.md)
TFIDF_FIT_SPLIT = "train"


@dataclass(frozen=True)
class DataSource:
    """A resolved dataset: kind is "folder", "jsonl" or "hub"; location a path or a repo id."""

    kind: str
    location: str
    revision: str | None = None

    def describe(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.location}{rev}"


def default_retention_file() -> Path:
    return paths.DATASETS_SRC / "retention_qa.jsonl"


def resolve_source(spec: str | os.PathLike | None, *, env: str = DATASET_ENV) -> DataSource:
    """Resolve a dataset spec: None -> $MARINEBENCH_DATASET -> build/dataset.

    A spec is a dataset folder (benchmark/contracts/dataset.py), a .jsonl file, or a Hub
    dataset id ``org/name`` (optionally ``org/name@revision``) when no such local path exists.
    """
    spec = str(spec) if spec else os.environ.get(env) or str(paths.dataset_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        return DataSource("folder", str(path.resolve()))
    if path.is_file():
        if path.suffix != ".jsonl":
            raise UserError(f"{path}: expected a .jsonl file of question/answer records")
        return DataSource("jsonl", str(path.resolve()))
    repo, _, revision = spec.partition("@")
    if _HUB_ID.match(repo) and not spec.startswith((".", "/", "~")):
        return DataSource("hub", repo, revision or None)
    if path == paths.dataset_dir() or spec == str(paths.dataset_dir()):
        raise UserError(
            f"dataset folder {path} not found: build it with `marinebench dataset build` "
            "(nox -s dataset), or point the tasks at the published Hub dataset "
            f'(--metadata \'{{"dataset": "USER/NAME"}}\' or {DATASET_ENV}=USER/NAME)'
        )
    raise UserError(f"dataset {spec!r} not found: give a dataset folder, a .jsonl file or org/name")


def read_qa_jsonl(path: Path | str) -> list[dict[str, str]]:
    """Validated records of a question/answer JSONL; a bad line is a UserError naming file:line.

    Each line is a JSON object with non-empty string "question" and "answer"; "id", "topic",
    "difficulty" and "source" are optional (ids default to <file stem>-<line number>).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    records: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{where}: expected a JSON object with question and answer")
            for key in QA_COLUMNS:
                value = obj.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise UserError(f"{where}: key {key!r} must be a non-empty string")
            record = {
                "id": str(obj.get("id") or f"{path.stem}-{lineno}"),
                "topic": str(obj.get("topic") or ""),
                "difficulty": str(obj.get("difficulty") or ""),
                "question": obj["question"].strip(),
                "answer": obj["answer"].strip(),
                "source": str(obj.get("source") or path.name),
            }
            if record["id"] in seen:
                raise UserError(
                    f"{where}: id {record['id']!r} already used on line {seen[record['id']]}"
                )
            seen[record["id"]] = lineno
            records.append(record)
    if not records:
        raise UserError(f"{path}: no records (expected one JSON object per line)")
    return records


def load_source(source: DataSource):
    """The source as a `datasets.DatasetDict` (a JSONL file becomes a single "test" split).

    A dataset folder or Hub dataset gives its seeded splits and, where it has one, the recall
    split (its own parquet file in a folder, its own config on the Hub: its rows have one more
    column than the other splits').
    """
    import datasets

    if source.kind == "jsonl":
        return datasets.DatasetDict(
            {"test": datasets.Dataset.from_list(read_qa_jsonl(source.location))}
        )
    if source.kind == "folder":
        files = {s: str(split_file(source.location, s)) for s in SPLITS}
        files = {s: f for s, f in files.items() if Path(f).is_file()}
        if "test" not in files:
            raise UserError(
                f"{source.location} has no {split_file('', 'test')}: not a MarineBench dataset "
                "folder (rebuild it with `marinebench dataset build`)"
            )
        splits = datasets.load_dataset("parquet", data_files=files)
        recall = split_file(source.location, RECALL_SPLIT)
        if recall.is_file():
            splits[RECALL_SPLIT] = datasets.load_dataset(
                "parquet", data_files={RECALL_SPLIT: str(recall)}, split=RECALL_SPLIT
            )
        return splits
    try:
        splits = datasets.load_dataset(source.location, revision=source.revision)
        # no recall config (ValueError): a dataset published before the recall split existed
        with contextlib.suppress(ValueError):
            splits[RECALL_SPLIT] = datasets.load_dataset(
                source.location, RECALL_CONFIG, revision=source.revision, split=RECALL_SPLIT
            )
        return splits
    except Exception as exc:  # offline, missing repo, auth: say which and how to fix
        raise UserError(
            f"could not load Hub dataset {source.location}: {type(exc).__name__}: {exc}. "
            "It needs a network (and HF_TOKEN for a private repo)."
        ) from exc


def tfidf_corpus(splits) -> list[str]:
    """The texts the fixed TF-IDF function is fitted on: every question and answer of the
    training split; for a source without one (a user's JSONL), of all its rows, so that even
    there one function scores every model."""
    fit = [splits[TFIDF_FIT_SPLIT]] if TFIDF_FIT_SPLIT in splits else list(splits.values())
    return [text for split in fit for column in QA_COLUMNS for text in split[column]]


def source_hash(source: DataSource) -> str:
    """Content hash of the data the tasks will read (Hub: the repo id and revision)."""
    if source.kind == "folder":
        return sha256_tree(Path(source.location) / "data")
    if source.kind == "jsonl":
        return sha256_file(source.location)
    return f"hub:{source.location}@{source.revision or 'main'}"
