"""The hand-written evaluation sets of the pre-registered protocol (docs/protocol.md).

- **Transfer additions**, `src/test_extra/*.jsonl`: curated-format pairs about facts no training
  pair states. They are loaded with the curated source, cleaned and deduplicated like every
  record, never take part in the seeded split, and go to the test split (step `test_extra`);
  decontamination then treats them like every test record.
- **Recall paraphrases**, `src/recall/*.jsonl`: for the training pairs the seeded selection rule
  picks, a question written by hand that asks for the same fact in new words, with the trained
  answer verbatim as the reference. Step `recall` checks each row against the final train split
  and writes the `recall` split.

Both folders carry `NOTES-*.md`: how the set was written and fact-checked. The dataset card
quotes them, so a folder with records and no notes is an error.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from benchmark.contracts.dataset import RECALL_SOURCE
from benchmark.dataset.clean import normalise_text, rejection
from benchmark.dataset.config import CleanConfig
from benchmark.dataset.records import (
    DatasetError,
    QARecord,
    RecallRecord,
    json_lines,
    jsonl_files,
    load_records,
    string_fields,
)
from benchmark.dataset.step_report import StepReport

log = logging.getLogger(__name__)

TEST_EXTRA_DIR = "test_extra"
RECALL_DIR = "recall"
NOTES_GLOB = "NOTES-*.md"
#: the salt of the recall selection rule; a new rule needs a new salt (and a new protocol)
SELECTION_SALT = "recall-v1:"
#: the keys every recall line needs (a `check_note` and any other key are ignored)
RECALL_KEYS = ("id", "train_id", "topic", "question", "answer")


def selection_key(train_id: str) -> str:
    """The recall selection rule's sort key: sha256("recall-v1:" + id), hex."""
    return hashlib.sha256((SELECTION_SALT + train_id).encode("utf-8")).hexdigest()


def selection_rule(per_topic: int) -> str:
    """The rule in words, for the card and the build report."""
    return (
        f'per topic, the {per_topic} train pairs with the smallest sha256("{SELECTION_SALT}" + id) '
        "(all of a topic's train pairs when it has fewer)"
    )


def recall_selection(train: list[QARecord], per_topic: int) -> dict[str, list[str]]:
    """The train ids the recall set must cover: topic -> ids in selection order."""
    if per_topic < 1:
        raise DatasetError(f"recall_per_topic must be >= 1, got {per_topic}")
    by_topic: dict[str, list[str]] = {}
    for rec in train:
        by_topic.setdefault(rec.topic, []).append(rec.id)
    return {
        topic: sorted(ids, key=selection_key)[:per_topic] for topic, ids in sorted(by_topic.items())
    }


# --- loading ---------------------------------------------------------------------------------


def read_notes(src: Path, sub: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(relative path, text) of src/<sub>/NOTES-*.md, sorted, and each file's sha256."""
    from benchmark.hashing import sha256_file

    folder = src / sub
    notes, hashes = [], {}
    for path in sorted(folder.glob(NOTES_GLOB)) if folder.is_dir() else []:
        rel = path.relative_to(src).as_posix()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{path}: not valid UTF-8 (byte {exc.start}); save it as UTF-8"
            ) from exc
        if not text:
            raise DatasetError(f"{path}: empty; it must say how the set was written and checked")
        notes.append((rel, text))
        hashes[rel] = sha256_file(path)
    return notes, hashes


def _require_notes(src: Path, sub: str, n_records: int) -> tuple[list[tuple[str, str]], dict]:
    notes, hashes = read_notes(src, sub)
    if n_records and not notes:
        raise DatasetError(
            f"{src / sub}: {n_records} hand-written records but no {NOTES_GLOB}; add a note saying "
            "how they were written and fact-checked (the dataset card quotes it)"
        )
    return notes, hashes


@dataclass
class TransferSet:
    """The transfer additions as loaded (before clean and dedupe)."""

    records: list[QARecord]
    files: int
    notes: list[tuple[str, str]]

    @property
    def ids(self) -> set[str]:
        return {r.id for r in self.records}


def load_test_extra(
    src: Path, taxonomy: dict[str, str], seen: dict[str, str]
) -> tuple[TransferSet, dict[str, str]]:
    """src/test_extra/*.jsonl, validated exactly like curated files (a `check_note` is ignored);
    an id already used by any loaded record is an error naming both places."""
    records, hashes = load_records(src, TEST_EXTRA_DIR, taxonomy, seen)
    notes, note_hashes = _require_notes(src, TEST_EXTRA_DIR, len(records))
    return TransferSet(records, len(hashes), notes), {**hashes, **note_hashes}


@dataclass(frozen=True)
class RecallRow:
    """One line of a recall file, as written; `where` is its "file:line"."""

    id: str
    train_id: str
    topic: str
    question: str
    answer: str
    where: str


@dataclass
class RecallSource:
    rows: list[RecallRow]
    files: int
    notes: list[tuple[str, str]]


def recall_row(obj: object, taxonomy: dict[str, str], where: str) -> RecallRow:
    values = string_fields(obj, RECALL_KEYS, where, "recall line")
    if values["topic"] not in taxonomy:
        raise DatasetError(
            f"{where}: unknown topic {values['topic']!r}; use one of: "
            + ", ".join(sorted(taxonomy))
        )
    return RecallRow(**values, where=where)


def load_recall(src: Path, taxonomy: dict[str, str]) -> tuple[RecallSource, dict[str, str]]:
    """src/recall/*.jsonl (sorted by file name): malformed lines and missing or empty keys are
    errors naming file:line and key; whether a row fits the train split is the recall step's."""
    from benchmark.hashing import sha256_file

    rows, hashes = [], {}
    for path in jsonl_files(src / RECALL_DIR):
        rel = path.relative_to(src).as_posix()
        for where, obj in json_lines(path):
            row = recall_row(obj, taxonomy, where)  # errors name the full path
            # drops in build_report.json name the src-relative one: the same on every machine
            rows.append(replace(row, where=f"{rel}:{where.rsplit(':', 1)[1]}"))
        hashes[rel] = sha256_file(path)
    notes, note_hashes = _require_notes(src, RECALL_DIR, len(rows))
    return RecallSource(rows, len(hashes), notes), {**hashes, **note_hashes}


# --- steps -----------------------------------------------------------------------------------


def assign_test_extra(
    parts: dict[str, list[QARecord]], extras: list[QARecord]
) -> tuple[dict[str, list[QARecord]], StepReport]:
    """Step `test_extra`: the additions that survived clean and dedupe join the test split.

    They never took part in the seeded split, so train and validation are exactly what the
    seeded split made of the other records; the test split is re-sorted (topic, id) as usual.
    """
    report = StepReport("test_extra", input=len(extras), kept=len(extras))
    out = {name: list(recs) for name, recs in parts.items()}
    out["test"] = sorted([*out["test"], *extras], key=lambda r: (r.topic, r.id))
    return out, report


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return (
        f"differs from the trained answer at character {i}: {a[i : i + 30]!r} vs {b[i : i + 30]!r}"
    )


def recall_step(
    source: RecallSource,
    train: list[QARecord],
    fates: dict[str, str],
    clean_cfg: CleanConfig,
    per_topic: int,
) -> tuple[list[RecallRecord], StepReport, dict]:
    """Step `recall`: check every row against the final train split; returns the recall split,
    the step report and a summary for build_report.json.

    Each row is cleaned like every record (NFC, single spaces, the clean step's rejections).
    It is NOT deduplicated or decontaminated against train: a recall question is meant to ask
    for a training pair's fact, so its closeness to the training question is the point, and
    dropping the close ones would leave only the questions furthest from their pair.

    Dropped, with the reason: a clean rejection, a repeated id, a train_id that is not in the
    train split (`fates` says where it went instead), a second row for one train_id, a topic
    other than the pair's, an answer that is not the trained answer verbatim.

    Then the set of train ids the rows were written for must be the selection rule's on this
    train split, in every topic the files cover; otherwise the set was written for another
    split and the build stops. A topic with no row at all is reported as not yet written.
    """
    report = StepReport("recall", input=len(source.rows))
    by_id = {r.id: r for r in train}
    selection = recall_selection(train, per_topic)
    out: list[RecallRecord] = []
    seen_ids: dict[str, str] = {}
    seen_train: dict[str, str] = {}
    written: set[str] = set()
    for row in source.rows:
        rec = RecallRow(
            **{k: normalise_text(getattr(row, k)) for k in RECALL_KEYS}, where=row.where
        )
        if rec.train_id in by_id:
            written.add(rec.train_id)
        # The clean step's rules look at question and answer only ("easy" stands in for the
        # difficulty, which comes from the linked training pair).
        view = QARecord(rec.id, rec.topic, "easy", rec.question, rec.answer, RECALL_SOURCE)
        if why := rejection(view, clean_cfg):
            report.drop(rec.id, why[0], f"{rec.where}: {why[1]}")
            continue
        if rec.id in seen_ids:
            report.drop(
                rec.id, "duplicate_id", f"{rec.where}: id already used at {seen_ids[rec.id]}"
            )
            continue
        seen_ids[rec.id] = rec.where
        pair = by_id.get(rec.train_id)
        if pair is None:
            fate = fates.get(rec.train_id, "no such record in the sources")
            report.drop(
                rec.id,
                "train_id_not_in_train",
                f"{rec.where}: train_id {rec.train_id!r} is not in the train split ({fate})",
            )
            continue
        if rec.train_id in seen_train:
            report.drop(
                rec.id,
                "duplicate_train_id",
                f"{rec.where}: {rec.train_id!r} already has the recall row at "
                f"{seen_train[rec.train_id]}",
            )
            continue
        seen_train[rec.train_id] = rec.where
        if rec.topic != pair.topic:
            report.drop(
                rec.id,
                "topic_differs",
                f"{rec.where}: topic {rec.topic!r}, but {pair.id} is in {pair.topic!r}",
            )
            continue
        if rec.answer != pair.answer:
            report.drop(
                rec.id,
                "answer_differs",
                f"{rec.where}: {_first_difference(rec.answer, pair.answer)}",
            )
            continue
        out.append(
            RecallRecord(
                id=rec.id,
                topic=pair.topic,
                difficulty=pair.difficulty,
                question=rec.question,
                answer=pair.answer,
                source=RECALL_SOURCE,
                train_id=pair.id,
            )
        )
    covered = {normalise_text(r.topic) for r in source.rows} | {by_id[t].topic for t in written}
    missing = sorted(t for topic in covered for t in selection.get(topic, []) if t not in written)
    extra = sorted(t for t in written if t not in selection.get(by_id[t].topic, []))
    if missing or extra:
        raise DatasetError(_mismatch_message(missing, extra, per_topic, fates))
    not_written = sorted(set(selection) - covered)
    if not_written:
        log.warning("recall: no rows yet for topic(s) %s", ", ".join(not_written))
    out.sort(key=lambda r: (r.topic, r.id))
    report.kept = len(out)
    summary = {
        "rule": selection_rule(per_topic),
        "per_topic": per_topic,
        "files": source.files,
        "loaded": len(source.rows),
        "kept": len(out),
        "by_topic": {
            topic: {
                "selected": len(ids),
                "written": sum(t in written for t in ids),
                "kept": sum(r.topic == topic for r in out),
            }
            for topic, ids in selection.items()
        },
        "topics_not_written": not_written,
        "notes": [rel for rel, _ in source.notes],
    }
    return out, report, summary


def _mismatch_message(
    missing: list[str], extra: list[str], per_topic: int, fates: dict[str, str]
) -> str:
    def listed(ids: list[str]) -> str:
        shown = ", ".join(ids[:24])
        return shown + (f" and {len(ids) - 24} more" if len(ids) > 24 else "")

    parts = []
    if missing:
        parts.append(f"selected train ids with no recall row: {listed(missing)}")
    if extra:
        parts.append(f"recall rows for train ids the rule does not select: {listed(extra)}")
    return (
        "the recall set does not match the selection rule on this build's train split ("
        + selection_rule(per_topic)
        + "); "
        + "; ".join(parts)
        + ". The recall set was written for another train split (another seed, source list or "
        "curated set, or another recall_per_topic): build with the split it was written for, or "
        "write the recall rows for this one"
    )


def record_fates(steps: list[StepReport], parts: dict[str, list[QARecord]]) -> dict[str, str]:
    """Where each record id ended up when it is not in train: a held-out split or a step's drop."""
    out = {}
    for step in steps:
        for item in step.dropped:
            out.setdefault(item["id"], f"dropped by step {step.name}: {item['reason']}")
    for name, recs in parts.items():
        if name != "train":
            for rec in recs:
                out[rec.id] = f"it is in the {name} split"
    return out


def transfer_summary(extra: TransferSet, steps: list[StepReport], test: list[QARecord]) -> dict:
    """Counts of the transfer additions: loaded, dropped by each step, in the test split."""
    ids = extra.ids
    dropped = {s.name: sum(d["id"] in ids for d in s.dropped) for s in steps}
    in_test = [r for r in test if r.id in ids]
    topics = sorted({r.topic for r in extra.records})
    return {
        "files": extra.files,
        "loaded": len(extra.records),
        "dropped": {name: n for name, n in dropped.items() if n},
        "in_test": len(in_test),
        "by_topic": {
            t: {
                "loaded": sum(r.topic == t for r in extra.records),
                "in_test": sum(r.topic == t for r in in_test),
            }
            for t in topics
        },
        "notes": [rel for rel, _ in extra.notes],
    }
