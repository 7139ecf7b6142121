"""`marinebench judge-agreement FILE`: how often the LLM judge agrees with a person.

FILE is a hand-labelled JSONL, one answer per line: {"question", "reference", "answer",
"label"}, the label one of CORRECT / INCORRECT / NOT_ATTEMPTED (SimpleQA's grades, as in
judge.py's prompt); other keys (an id, the model that wrote the answer) are kept out of the way.
The judge grades every line (cached like every verdict) and the report gives the agreement:
accuracy (the share of lines where judge and label agree), Cohen's kappa (agreement beyond what
the two label frequencies give by chance; scikit-learn's cohen_kappa_score), the confusion table
and each disagreement with the judge's reason. A figure from fewer than MIN_LABELLED answers is
reported with a warning: it is too uncertain to vouch for the judge.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.evaluation.judge import VERDICTS, GeminiJudge, Item, JudgeError
from benchmark.hashing import sha256_file

#: the size of hand-labelled set the issue asks for before the agreement is reported as evidence
MIN_LABELLED = 60
FIELDS = ("question", "reference", "answer")


@dataclass(frozen=True)
class Labelled:
    line: int
    question: str
    reference: str
    answer: str
    label: str


def read_labelled(path: Path) -> list[Labelled]:
    """Every labelled answer of `path`; a bad line is a JudgeError naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JudgeError(f"cannot read the labelled file {path}: {exc.strerror or exc}") from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JudgeError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise JudgeError(f"{where}: expected an object with {', '.join(FIELDS)} and label")
        bad = [k for k in FIELDS if not isinstance(obj.get(k), str)]
        bad += [k for k in ("question", "reference") if k not in bad and not obj[k].strip()]
        if bad:
            raise JudgeError(f"{where}: missing, empty or non-text {', '.join(bad)}")
        label = obj.get("label")
        if not isinstance(label, str) or label.strip().upper() not in VERDICTS:
            raise JudgeError(f"{where}: label {label!r} is not one of {', '.join(VERDICTS)}")
        out.append(
            Labelled(n, obj["question"], obj["reference"], obj["answer"], label.strip().upper())
        )
    if not out:
        raise JudgeError(f"{path}: no labelled answers")
    return out


def kappa(labels: list[str], verdicts: list[str]) -> float | None:
    """Cohen's kappa over the three grades; None where it is undefined (both sides gave one and
    the same grade to everything, so chance agreement is already 1)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score(labels, verdicts, labels=list(VERDICTS)))
    return None if math.isnan(value) else value


def agreement(path: Path, judge: GeminiJudge) -> dict[str, Any]:
    """The judge's agreement with the labels of `path` (see the module docstring)."""
    path = Path(path)
    rows = read_labelled(path)
    items = [Item(f"{path}:{r.line}", r.question, r.reference, r.answer) for r in rows]
    got = judge.judge(items)
    labels = [r.label for r in rows]
    verdicts = [v.verdict for v in got]
    agree = sum(a == b for a, b in zip(labels, verdicts, strict=True))
    return {
        "file": str(path),
        "file_sha256": sha256_file(path),
        "n": len(rows),
        "enough": len(rows) >= MIN_LABELLED,
        "min_labelled": MIN_LABELLED,
        "accuracy": agree / len(rows),
        "cohen_kappa": kappa(labels, verdicts),
        # confusion[label][verdict] = how many lines with that label got that verdict
        "confusion": {
            a: {
                b: sum(x == a and y == b for x, y in zip(labels, verdicts, strict=True))
                for b in VERDICTS
            }
            for a in VERDICTS
        },
        "disagreements": [
            {"line": r.line, "label": r.label, "verdict": v.verdict, "reason": v.reason}
            for r, v in zip(rows, got, strict=True)
            if r.label != v.verdict
        ],
        "judge": judge.record,
    }


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    kappa_text = "undefined" if report["cohen_kappa"] is None else f"{report['cohen_kappa']:.3f}"
    print(
        f"judge {report['judge']['model']} against {report['file']}: n = {report['n']}, "
        f"accuracy {report['accuracy']:.3f}, Cohen's kappa {kappa_text}"
    )
    table = Table(title="label (rows) x judge verdict (columns)")
    table.add_column("label")
    for verdict in VERDICTS:
        table.add_column(verdict, justify="right")
    for label in VERDICTS:
        table.add_row(label, *(str(report["confusion"][label][v]) for v in VERDICTS))
    Console(width=120).print(table)
    if not report["enough"]:
        print(
            f"warning: only {report['n']} labelled answers; at least {report['min_labelled']} "
            "are needed before this agreement says much about the judge"
        )
