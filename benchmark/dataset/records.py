"""Q&A records, the topic taxonomy, and strict loading of the curated JSONL files.

Curated files are written by people, so every problem is a hard error naming file and line:
a build never silently drops a hand-written record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from benchmark.contracts.dataset import COLUMNS
from benchmark.errors import UserError

DIFFICULTIES = ("easy", "medium", "hard")


class DatasetError(UserError):
    """Bad dataset input (a source file, the taxonomy, or the build options)."""


@dataclass(frozen=True)
class QARecord:
    id: str
    topic: str
    difficulty: str
    question: str
    answer: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class RecallRecord(QARecord):
    """A row of the recall split: a new question about a training pair's fact (RECALL_COLUMNS)."""

    train_id: str


def load_taxonomy(path: Path) -> dict[str, str]:
    """`topics: {id: description}` from taxonomy.yaml."""
    if not path.is_file():
        raise DatasetError(
            f"{path}: taxonomy file not found (expected `topics: {{id: description}}`)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid UTF-8 YAML: {exc}") from exc
    topics = data.get("topics") if isinstance(data, dict) else None
    if not isinstance(topics, dict) or not topics:
        raise DatasetError(f"{path}: needs a non-empty mapping under the key `topics`")
    for key, desc in topics.items():
        if not isinstance(key, str) or not isinstance(desc, str) or not desc.strip():
            raise DatasetError(f"{path}: topic {key!r} needs a non-empty string description")
    return dict(topics)


def string_fields(obj: object, keys: tuple[str, ...], where: str, what: str) -> dict[str, str]:
    """The non-empty string fields `keys` of one parsed JSON object; `where` ("file:line")
    prefixes every error and `what` names the kind of line ("record", "recall line")."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    values = {}
    for key in keys:
        if key not in obj:
            raise DatasetError(
                f"{where}: missing field {key!r} (each {what} needs {', '.join(keys)})"
            )
        value = obj[key]
        if not isinstance(value, str):
            raise DatasetError(
                f"{where}: field {key!r} must be a string, got {type(value).__name__}"
            )
        if not value.strip():
            raise DatasetError(f"{where}: field {key!r} is empty")
        values[key] = value
    return values


def record_from_obj(obj: object, taxonomy: dict[str, str], where: str) -> QARecord:
    """Validate one parsed JSON object; `where` ("file:line") prefixes every error."""
    values = string_fields(obj, COLUMNS, where, "record")
    if values["topic"] not in taxonomy:
        raise DatasetError(
            f"{where}: unknown topic {values['topic']!r}; add it to taxonomy.yaml or use one of: "
            + ", ".join(sorted(taxonomy))
        )
    if values["difficulty"] not in DIFFICULTIES:
        raise DatasetError(
            f"{where}: difficulty {values['difficulty']!r} must be one of {', '.join(DIFFICULTIES)}"
        )
    return QARecord(**values)


def json_lines(path: Path) -> Iterator[tuple[str, object]]:
    """("file:line", parsed JSON) for each non-blank line of a hand-written JSONL file.

    An empty file, bytes that are not UTF-8 and malformed JSON are errors naming file and line.
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise DatasetError(f"{path}: file is empty (expected one JSON record per line)")
    for lineno, line in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{where}: not valid UTF-8 (byte {exc.start}: {line[exc.start : exc.start + 1]!r}); "
                "save the file as UTF-8"
            ) from exc
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        yield where, obj


def read_jsonl(path: Path, taxonomy: dict[str, str]) -> list[tuple[str, QARecord]]:
    """("file:line", record) for one JSONL file; blank lines are allowed, nothing else malformed."""
    return [(where, record_from_obj(obj, taxonomy, where)) for where, obj in json_lines(path)]


def jsonl_files(folder: Path) -> list[Path]:
    """The folder's *.jsonl files, sorted by name (none when the folder does not exist)."""
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def load_records(
    src: Path, sub: str, taxonomy: dict[str, str], seen: dict[str, str] | None = None
) -> tuple[list[QARecord], dict[str, str]]:
    """All records of src/<sub>/*.jsonl (sorted by file name) and each file's sha256.

    `seen` maps ids already loaded (from another folder) to their "file:line"; an id used twice,
    in one folder or across folders, is an error naming both places. It is updated in place.
    """
    from benchmark.hashing import sha256_file

    seen = {} if seen is None else seen
    records: list[QARecord] = []
    hashes = {}
    for path in jsonl_files(src / sub):
        for where, rec in read_jsonl(path, taxonomy):
            if rec.id in seen:
                raise DatasetError(f"{where}: id {rec.id!r} already used at {seen[rec.id]}")
            seen[rec.id] = where
            records.append(rec)
        hashes[path.relative_to(src).as_posix()] = sha256_file(path)
    return records, hashes


def load_curated(
    src: Path, taxonomy: dict[str, str], seen: dict[str, str] | None = None
) -> tuple[list[QARecord], dict[str, str]]:
    """All records of src/curated/*.jsonl (sorted by file name) and each file's sha256."""
    if not jsonl_files(src / "curated"):
        raise DatasetError(
            f"{src / 'curated'}: no *.jsonl files (the curated source needs at least one)"
        )
    return load_records(src, "curated", taxonomy, seen)


def records_digest(records: Iterable[QARecord]) -> str:
    """Order-sensitive hash of records: the build's real input, whatever the source."""
    from benchmark.hashing import sha256_json

    return sha256_json([r.to_dict() for r in records])
