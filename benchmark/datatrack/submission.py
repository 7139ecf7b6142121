"""A data-track submission read and checked: the builder's own clean and dedupe steps, then
decontamination against every frozen evaluation set (docs/datatrack.md).

A submission is JSONL, one `{"question", "answer"}` object per line (`topic`, `id` optional).
A line that cannot be read (an empty file, bytes that are not UTF-8, malformed JSON, a missing
or non-string field) is an error naming file and line: the file is not a training set. A pair
that can be read but must not be trained on (chat-control tokens, a refusal, an answer of 2 MB,
a duplicate, a near-duplicate of an evaluation question) is dropped with its reason and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmark.dataset.clean import clean
from benchmark.dataset.config import CleanConfig, DedupConfig
from benchmark.dataset.dedup import dedupe, near_duplicate_pairs, normalise_for_match
from benchmark.dataset.records import DatasetError, QARecord, json_lines, string_fields
from benchmark.dataset.step_report import StepReport

#: topic and difficulty of a pair that does not say
UNSPECIFIED = "unspecified"
#: The builder's clean step, with the length limits widened from the curated style (3-sentence
#: answers of <= 700 characters) to what one training example can hold: a submission's answers
#: may be long or short (that is the variable), but not absurd.
SUBMISSION_CLEAN = CleanConfig(
    max_question_chars=1000, max_answer_chars=4000, max_answer_sentences=10_000
)
#: the builder's thresholds (questions near-duplicate at Jaccard >= 0.8, decontamination 0.7)
SUBMISSION_DEDUP = DedupConfig()


@dataclass
class EvalSet:
    """A frozen evaluation set a submission must not contain: its questions, and its reference
    answers where they state held-out facts (not for recall: its references are the curated
    training answers, which a submission may teach)."""

    name: str
    questions: list[str]
    answers: list[str] = field(default_factory=list)


@dataclass
class Checked:
    """A submission after the checks: the pairs kept, and every drop with its line and reason."""

    records: list[QARecord]
    pairs_in: int
    dropped: list[dict]

    @property
    def drops(self) -> dict[str, dict[str, int]]:
        """{step: {reason: count}}."""
        out: dict[str, Counter] = {}
        for d in self.dropped:
            out.setdefault(d["step"], Counter())[d["reason"]] += 1
        return {step: dict(sorted(c.items())) for step, c in out.items()}


def read_submission(path: Path, name: str) -> tuple[list[QARecord], dict[str, str]]:
    """The pairs of a submission file and where each came from ({id: "file:line"})."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such submission file")
    records, where_of = [], {}
    for where, obj in json_lines(path):
        values = string_fields(obj, ("question", "answer"), where, "pair")
        extra = {}
        for key in ("topic", "id"):
            value = obj.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise DatasetError(
                    f"{where}: field {key!r}, when given, must be a non-empty string"
                )
            extra[key] = value
        rec_id = extra["id"] or f"{name}-{where.rsplit(':', 1)[1]}"
        if rec_id in where_of:
            raise DatasetError(f"{where}: id {rec_id!r} already used at {where_of[rec_id]}")
        where_of[rec_id] = where
        records.append(
            QARecord(
                id=rec_id,
                topic=extra["topic"] or UNSPECIFIED,
                difficulty=UNSPECIFIED,
                question=values["question"],
                answer=values["answer"],
                source=name,
            )
        )
    return records, where_of


def decontaminate(
    records: list[QARecord], eval_sets: list[EvalSet], cfg: DedupConfig
) -> tuple[list[QARecord], StepReport]:
    """Drop every pair whose question is a near-duplicate (character-shingle Jaccard >=
    cfg.decontam_threshold, or the same normalised text) of a question of any evaluation set, or
    whose answer is one of a held-out reference answer."""
    report = StepReport("decontaminate", input=len(records))
    reasons: dict[int, tuple[str, str]] = {}

    def check(field_name: str, texts: list[str], against: list[str], set_name: str) -> None:
        if not texts or not against:
            return
        n = len(texts)
        exact = {normalise_for_match(t): k for k, t in enumerate(against)}
        for i, text in enumerate(texts):
            if i not in reasons and normalise_for_match(text) in exact:
                reasons[i] = (f"{field_name}_in_{set_name}", f"same {field_name} as {set_name}")
        pairs = near_duplicate_pairs(
            texts + against,
            cfg.decontam_threshold,
            shingle_chars=cfg.shingle_chars,
            num_perm=cfg.num_perm,
            seed=cfg.seed,
        )
        for i, j, score in pairs:
            if i < n <= j and i not in reasons:
                reasons[i] = (
                    f"{field_name}_in_{set_name}",
                    f"Jaccard {score:.2f} with {set_name} {field_name} {j - n + 1}",
                )

    for ev in eval_sets:
        check("question", [r.question for r in records], ev.questions, ev.name)
        check("answer", [r.answer for r in records], ev.answers, ev.name)
    return report.keep(records, [reasons.get(i) for i in range(len(records))]), report


def check(
    records: list[QARecord],
    where_of: dict[str, str],
    eval_sets: list[EvalSet],
    clean_cfg: CleanConfig = SUBMISSION_CLEAN,
    dedup_cfg: DedupConfig = SUBMISSION_DEDUP,
) -> Checked:
    """clean -> dedupe within the submission -> decontaminate; every drop keeps its line."""
    pairs_in = len(records)
    dropped: list[dict] = []
    steps = []
    kept, report = clean(records, clean_cfg)
    steps.append(report)
    kept, report = dedupe(kept, dedup_cfg)
    steps.append(report)
    kept, report = decontaminate(kept, eval_sets, dedup_cfg)
    steps.append(report)
    for step in steps:
        for item in step.dropped:
            dropped.append({"where": where_of.get(item["id"], ""), "step": step.name, **item})
    return Checked(kept, pairs_in, dropped)


def require_pairs(checked: Checked, source: str) -> None:
    """A submission with nothing left to train on is an error that says why."""
    if checked.records:
        return
    why = "; ".join(
        f"{step}: {', '.join(f'{r} x{n}' for r, n in reasons.items())}"
        for step, reasons in checked.drops.items()
    )
    raise DatasetError(
        f"{source}: none of its {checked.pairs_in} pairs is left to train on ({why}); "
        "see the dropped pairs above"
    )


def renamed(records: list[QARecord], source: str) -> list[QARecord]:
    """Records with `source` set (derived references say which rule made them)."""
    return [replace(r, source=source) for r in records]
