"""The headline of the site: recall (trained facts, new wording) and transfer (held-out facts)
side by side, each with the protocol's four primary metrics (benchmark/contracts/protocol.py)
and the answers' length; every other task and metric is secondary.

A set without the recall task (results from before it existed) has no recall group: the
headline shows what was evaluated and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS
from benchmark.leaderboard import present, svg
from benchmark.leaderboard.ingest import Entry, Key

#: how each claim of PRIMARY_SETS is introduced on the pages
CLAIM_TEXT = {
    "recall": ("Recall", "trained facts, asked in new words"),
    "transfer": ("Transfer", "held-out facts, never in a training pair"),
}
#: the answers' mean length in words, and its ratio to the reference's (descriptive metrics)
WORDS, RATIO = "answer_words", "length_ratio"
MAX_CHART_MODELS = 8


@dataclass
class Group:
    """One headline claim as a set evaluated it."""

    claim: str
    task: str
    title: str
    subtitle: str
    metrics: list[str]
    """The primary metrics this set has for the task, in the protocol's order."""
    length: bool
    """Whether the set has the answers' length for the task (generation tasks, once scored)."""
    n: int | None = None
    """Questions of the task (the largest n of its statistics)."""
    ref_words: float | None = None
    """The references' mean length in words, from scores.jsonl where a run has it."""

    @property
    def span(self) -> int:
        return len(self.metrics) + (1 if self.length else 0)


def groups_of(columns: list[Key], entries: list[Entry] | None = None) -> list[Group]:
    """The headline groups a set of columns has, in the protocol's order (recall, transfer)."""
    present_keys = set(columns)
    out = []
    for claim, task in PRIMARY_SETS:
        metrics = [m for m in PRIMARY_METRICS if (task, m) in present_keys]
        length = (task, WORDS) in present_keys
        if not metrics and not length:
            continue
        title, subtitle = CLAIM_TEXT.get(claim, (claim.capitalize(), ""))
        ns = [
            s.n
            for e in entries or []
            for m in [*metrics, WORDS]
            if (s := e.stats.get((task, m))) is not None and s.n is not None
        ]
        out.append(Group(claim, task, title, subtitle, metrics, length, max(ns, default=None)))
    return out


def headline_keys(groups: list[Group]) -> set[Key]:
    """The columns the headline shows (the secondary table shows the rest)."""
    keys = set()
    for g in groups:
        keys |= {(g.task, m) for m in g.metrics}
        if g.length:
            keys |= {(g.task, WORDS), (g.task, RATIO)}
    return keys


def reference_words(task: str, scores: list[dict[str, dict[str, list[dict]]]]) -> float | None:
    """The references' mean length in words (whitespace-separated, as answer_words counts the
    answers) over a task's questions, from the first run's per-sample records that have it."""
    for run_scores in scores:
        for tasks in run_scores.values():
            refs = [r.get("reference") for r in tasks.get(task, [])]
            refs = [str(r) for r in refs if r is not None]
            if refs:
                return sum(len(r.split()) for r in refs) / len(refs)
    return None


@dataclass
class LengthCell:
    """The answers' length: mean words with its CI, the ratio to the references, the change."""

    words: present.Cell
    ratio: str

    @property
    def sort(self) -> str:
        return self.words.sort


def length_cell(e: Entry, task: str, hib: dict[Key, bool | None]) -> LengthCell | None:
    if (task, WORDS) not in e.stats:
        return None
    ratio = e.stats.get((task, RATIO))
    return LengthCell(
        present.metric_cell(e, (task, WORDS), hib.get((task, WORDS)), present.fmt_words),
        f"×{ratio.mean:.2f}" if ratio is not None else "",
    )


@dataclass
class Row:
    e: Entry
    groups: list[dict[str, Any]] = field(default_factory=list)


def table_rows(entries: list[Entry], groups: list[Group], hib: dict[Key, bool | None]) -> list[Row]:
    """One row per model of the set: per group, a cell per primary metric and the length."""
    rows = []
    for e in entries:
        row = Row(e)
        for g in groups:
            row.groups.append(
                {
                    "cells": [
                        present.metric_cell(e, (g.task, m), hib.get((g.task, m))) for m in g.metrics
                    ],
                    "length": length_cell(e, g.task, hib) if g.length else None,
                }
            )
        rows.append(row)
    return rows


def model_rows(e: Entry, groups: list[Group], hib: dict[Key, bool | None]) -> list[dict[str, Any]]:
    """One model's headline as rows of metrics, the groups side by side (run and compare
    pages): per metric, per group, its cell (None where the group lacks the metric)."""
    names = list(dict.fromkeys(m for g in groups for m in g.metrics))
    rows = []
    for m in names:
        arrow, words = present.direction(hib.get((groups[0].task, m), True))
        rows.append(
            {
                "metric": m,
                "arrow": arrow,
                "dir": words,
                "cells": [
                    present.metric_cell(e, (g.task, m), hib.get((g.task, m)))
                    if m in g.metrics
                    else None
                    for g in groups
                ],
            }
        )
    if any(g.length for g in groups):
        rows.append(
            {
                "metric": "answer length (words)",
                "arrow": "·",
                "dir": "describes the answers: neither direction is better",
                "length": [length_cell(e, g.task, hib) if g.length else None for g in groups],
            }
        )
    return rows


def gain_panels(
    entries: list[Entry], groups: list[Group], hib: dict[Key, bool | None]
) -> list[list[dict[str, Any]]]:
    """Per group, one chart per primary metric of each adapter's change against the base (the
    top MAX_CHART_MODELS in the set's order), with each comparison's MDE band."""
    shown = [e for e in entries if e.deltas][:MAX_CHART_MODELS]
    out = []
    for g in groups:
        panels = []
        for m in g.metrics:
            panel = gain_panel(shown, (g.task, m), hib.get((g.task, m)))
            if panel is not None:
                panels.append(panel)
        out.append(panels)
    return out


def gain_panel(shown: list[Entry], key: Key, higher: bool | None) -> dict[str, Any] | None:
    rows = []
    for e in shown:
        d = e.deltas.get(key)
        if d is None:
            continue
        rows.append(
            (e.set_label or e.label, d.delta, d.low, d.high, present.delta_status(d, higher), d.mde)
        )
    if not rows:
        return None
    title = f"{key[0]} · {key[1]}"
    return {"task": key[0], "metric": key[1], "svg": svg.gain_panel(title, rows, higher)}


def _ratio(e: Entry, task: str) -> float | None:
    s = e.stats.get((task, RATIO))
    return s.mean if s is not None else None


def length_charts(entries: list[Entry], groups: list[Group]) -> list[Markup | None]:
    """Per group, the mean answer length of every model of the set, with the references'."""
    shown = [e for e in entries if e.is_base] + [e for e in entries if not e.is_base]
    out: list[Markup | None] = []
    for g in groups:
        rows = [
            (e.set_label or e.label, s.mean, s.low, s.high, _ratio(e, g.task))
            for e in shown[: MAX_CHART_MODELS + 1]
            if (s := e.stats.get((g.task, WORDS))) is not None
        ]
        out.append(
            svg.length_panel(f"{g.task}: mean answer length in words", rows, g.ref_words)
            if rows
            else None
        )
    return out
