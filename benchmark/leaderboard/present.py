"""Turn ingested rows into display-ready values: formatted numbers, CI text, delta markers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.leaderboard.ingest import Delta, Entry, Key, Stat
from benchmark.leaderboard.svg import fmt_num

ALPHA = 0.05
EFFICIENCY = (
    ("trainable_pct", "Trainable", "%", "share of parameters trained"),
    ("wall_time_s", "Train time", "", "wall-clock training time"),
    ("tokens_per_s", "Tokens/s", "", "training throughput"),
    ("peak_memory_mb", "Peak mem", "MB", "peak accelerator / process memory during training"),
)


def fmt_value(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if -1.5 <= x <= 1.5 else fmt_num(x)


def fmt_signed(x: float) -> str:
    s = fmt_value(abs(x))
    return ("+" if x > 0 else "−" if x < 0 else "±") + s


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_efficiency(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "trainable_pct":
        return f"{value:.2f} %"
    if key == "wall_time_s":
        return fmt_duration(value)
    if key == "peak_memory_mb":
        return f"{value:,.0f} MB"
    return f"{value:,.0f}"


def delta_status(d: Delta, higher_is_better: bool) -> str:
    """ "up"/"down": significantly better/worse (p < 0.05); "ns": tested, not significant; "nt": no test."""
    if d.p is None:
        return "nt"
    if d.p >= ALPHA:
        return "ns"
    better = d.delta > 0 if higher_is_better else d.delta < 0
    return "up" if better else "down"


@dataclass
class Cell:
    sort: str  # data-v for the sorter (empty: missing)
    value: str
    ci: str
    delta: str
    status: str
    marker: str
    note: str  # visible short text after the delta: p value / n.s.
    title: str


def ci_text(s: Stat) -> str:
    if s.low is None or s.high is None:
        return ""
    return f"{fmt_value(s.low)}–{fmt_value(s.high)}"


def metric_cell(entry: Entry, key: Key, higher_is_better: bool) -> Cell:
    stat = entry.stats.get(key)
    if stat is None:
        return Cell("", "—", "", "", "", "", "", "not evaluated")
    d = entry.deltas.get(key)
    delta = marker = note = status = ""
    ci_kind = {"bootstrap": "bootstrap 95% CI", "stderr": "95% CI = ±1.96·stderr"}.get(
        stat.ci, "no CI"
    )
    title = f"{key[0]} {key[1]}: {stat.mean:.4g} ({ci_kind})"
    if d is not None:
        status = delta_status(d, higher_is_better)
        delta = fmt_signed(d.delta)
        marker = {"up": "▲", "down": "▼"}.get(status, "")
        if status in ("up", "down"):
            p_text = f"p {fmt_p(d.p)}" if d.p < 0.001 else f"p = {fmt_p(d.p)}"
            note = ("better, " if status == "up" else "worse, ") + p_text
        elif status == "ns":
            note = "n.s."
        title += f"; change vs base {d.delta:+.4g}" + (
            f", p = {d.p:.3g}" if d.p is not None else ", no paired test"
        )
    return Cell(
        repr(round(stat.mean, 6)),
        fmt_value(stat.mean),
        ci_text(stat),
        delta,
        status,
        marker,
        note,
        title,
    )


def efficiency_cells(entry: Entry) -> list[Cell]:
    train = entry.train or {}
    cells = []
    for key, *_ in EFFICIENCY:
        v = train.get(key)
        v = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        sort = "" if v is None else repr(round(v, 6))
        title = (
            "base model: nothing trained"
            if entry.is_base
            else ("" if v is not None else "no train_metrics.json")
        )
        cells.append(Cell(sort, fmt_efficiency(key, v), "", "", "", "", "", title))
    return cells
