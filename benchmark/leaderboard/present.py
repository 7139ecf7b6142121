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


def fmt_signed(x: float, fmt=None) -> str:
    s = (fmt or fmt_value)(abs(x))
    return ("+" if x > 0 else "−" if x < 0 else "±") + s


def fmt_words(x: float | None) -> str:
    """A length in words: one decimal."""
    return "—" if x is None else f"{x:.1f}"


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


def delta_status(d: Delta, higher_is_better: bool | None) -> str:
    """ "up"/"down": significantly better/worse (p < 0.05); "ns": tested, not significant; "nt": no
    test; "desc": a significant change of a metric that describes the answers (their length),
    which is neither better nor worse."""
    if d.p is None:
        return "nt"
    if d.p >= ALPHA:
        return "ns"
    if higher_is_better is None:
        return "desc"
    better = d.delta > 0 if higher_is_better else d.delta < 0
    return "up" if better else "down"


def direction(higher_is_better: bool | None) -> tuple[str, str]:
    """(arrow, words) of a metric's direction; a descriptive metric has neither."""
    if higher_is_better is None:
        return "·", "describes the answers: neither direction is better"
    return ("↑", "higher is better") if higher_is_better else ("↓", "lower is better")


def p_text(p: float) -> str:
    return f"p {fmt_p(p)}" if p < 0.001 else f"p = {fmt_p(p)}"


def delta_stats(d: Delta, fmt=None) -> tuple[str, str]:
    """What stands next to every delta: its p-value and the minimum detectable effect at 80%
    power of that comparison, e.g. ("p = 0.160", "MDE 0.031"); ("no paired test", "") without
    a test."""
    if d.p is None:
        return "no paired test", ""
    return p_text(d.p), (f"MDE {(fmt or fmt_value)(d.mde)}" if d.mde is not None else "")


@dataclass
class Cell:
    sort: str  # data-v for the sorter (empty: missing)
    value: str
    ci: str
    delta: str
    status: str
    marker: str
    note: str  # short text after the delta: better / worse / n.s. / changed
    title: str
    p_note: str = ""  # under the delta: its p-value ("no paired test" without one)
    mde_note: str = ""  # under the delta: the comparison's minimum detectable effect

    @property
    def stats(self) -> str:
        """p-value and MDE in one line, e.g. "p = 0.160, MDE 0.031"."""
        return ", ".join(t for t in (self.p_note, self.mde_note) if t)

    @property
    def note_visible(self) -> bool:
        """n.s. is shown in words; better/worse carry their arrow (the words are for screen
        readers), and a descriptive change is shown by its box and p-value."""
        return self.status == "ns"


def ci_text(s: Stat, fmt=None) -> str:
    if s.low is None or s.high is None:
        return ""
    fmt = fmt or fmt_value
    return f"{fmt(s.low)}–{fmt(s.high)}"


def metric_cell(entry: Entry, key: Key, higher_is_better: bool | None, fmt=None) -> Cell:
    """One metric of one row: score, CI and the change against the base with its p-value and
    MDE. `fmt` formats the numbers (default fmt_value)."""
    fmt = fmt or fmt_value
    stat = entry.stats.get(key)
    if stat is None:
        return Cell("", "—", "", "", "", "", "", "not evaluated")
    d = entry.deltas.get(key)
    delta = marker = note = status = p_note = mde_note = ""
    ci_kind = {"bootstrap": "bootstrap 95% CI", "stderr": "95% CI = ±1.96·stderr"}.get(
        stat.ci, "no CI"
    )
    title = f"{key[0]} {key[1]}: {stat.mean:.4g} ({ci_kind})"
    if d is not None:
        status = delta_status(d, higher_is_better)
        delta = fmt_signed(d.delta, fmt)
        marker = {"up": "▲", "down": "▼"}.get(status, "")
        note = {"up": "better", "down": "worse", "ns": "n.s.", "desc": "changed"}.get(status, "")
        p_note, mde_note = delta_stats(d, fmt)
        title += f"; change vs base {d.delta:+.4g}" + (
            f", p = {d.p:.3g}" if d.p is not None else ", no paired test"
        )
        if d.mde is not None:
            title += f", minimum detectable effect (80% power) {d.mde:.3g}"
    return Cell(
        repr(round(stat.mean, 6)),
        fmt(stat.mean),
        ci_text(stat, fmt),
        delta,
        status,
        marker,
        note,
        title,
        p_note,
        mde_note,
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
