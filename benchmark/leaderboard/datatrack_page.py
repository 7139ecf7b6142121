"""The data track's leaderboard (issue #15, benchmark/contracts/datatrack.py): the model, recipe
and evaluation are fixed and a submission is a training set, so a row is a dataset (its size,
the tokens and epochs the fixed budget gave it, what validation dropped) with its headline scores
against the base model and against `curated`; and each headline metric is plotted against the
number of pairs on a log axis, the nested subsets forming a scaling curve.

One view (`load`) feeds both the site's data.html and the README table of `marinebench report`,
so the two can never disagree. Every name and rule in it is untrusted text: the page escapes it
(Jinja2 autoescape, markupsafe in the SVG), the README quotes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from benchmark.contracts import datatrack as dt
from benchmark.contracts import results as contract
from benchmark.contracts.adapter import TRAIN_METRICS_FILE
from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS
from benchmark.contracts.site import PRIMARY
from benchmark.errors import UserError
from benchmark.leaderboard import present, svg
from benchmark.leaderboard.ingest import Delta, Key, Stat, read_json

_ANY = Path("build")
#: where the track's folders are, relative to its root (the contract's layout)
DATA_REL = dt.data_dir(_ANY, "x").parent.relative_to(dt.root(_ANY))
RESULTS_REL = dt.results_dir(_ANY).relative_to(dt.root(_ANY))
ADAPTERS_REL = dt.adapter_dir(_ANY, "x").parent.relative_to(dt.root(_ANY))


@dataclass(frozen=True)
class Column:
    """One headline metric: (claim, task, metric) of the protocol, and its direction."""

    claim: str
    task: str
    metric: str
    higher: bool | None

    @property
    def key(self) -> Key:
        return (self.task, self.metric)


@dataclass
class Row:
    """One submission (or the base model) as the track trained and evaluated it."""

    name: str
    model: str | None  # its model name in the results folder (None: not evaluated)
    kind: str  # "base", "reference", "submission" or "model" (in the results, no submission.json)
    rule: str = ""
    pairs: int | None = None
    fraction: float | None = None
    tokens_seen: int | None = None
    epochs: float | None = None
    drops: list[tuple[str, str, int]] = field(default_factory=list)  # (step, reason, count)
    stats: dict[Key, Stat] = field(default_factory=dict)
    vs_base: dict[Key, Delta] = field(default_factory=dict)
    vs_curated: dict[Key, Delta] = field(default_factory=dict)
    is_curated: bool = False

    @property
    def is_base(self) -> bool:
        return self.kind == "base"

    @property
    def dropped(self) -> int | None:
        return None if self.is_base else sum(n for _, _, n in self.drops)

    @property
    def fraction_text(self) -> str:
        if self.fraction is None:
            return ""
        return str(Fraction(self.fraction).limit_denominator(64))


@dataclass
class DataTrack:
    root: Path
    rows: list[Row]  # base first, then best first by the primary metric
    columns: list[Column]
    curated: str | None  # the curated adapter's model name (the reference of vs_curated)
    token_budget: int | None


# ---------------------------------------------------------------- reading


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _int(v: Any) -> int | None:
    x = _num(v)
    return int(x) if x is not None else None


def _obj(doc: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise UserError(f"{path}: {where} must be a JSON object, got {type(doc).__name__}")
    return doc


def _stat(v: Any) -> Stat | None:
    mean = _num(v.get("mean")) if isinstance(v, dict) else None
    if mean is None:
        return None
    low, high = _num(v.get("ci_low")), _num(v.get("ci_high"))
    kind = "bootstrap" if low is not None and high is not None else "none"
    return Stat(mean, low, high, _int(v.get("n")), kind)


def _delta(v: Any) -> Delta | None:
    d = _num(v.get("delta")) if isinstance(v, dict) else None
    if d is None:
        return None
    return Delta(d, _num(v.get("ci_low")), _num(v.get("ci_high")), _num(v.get("p_value")))


def _cells(block: Any, model: str, columns: list[Column], parse) -> dict[Key, Any]:
    """{(task, metric): parsed} of one model's {task: {metric: ...}} in a summary block."""
    tasks = block.get(model) if isinstance(block, dict) else None
    out = {}
    for c in columns:
        metrics = tasks.get(c.task) if isinstance(tasks, dict) else None
        value = parse(metrics.get(c.metric)) if isinstance(metrics, dict) else None
        if value is not None:
            out[c.key] = value
    return out


def _columns(summary: dict[str, Any]) -> list[Column]:
    """The protocol's headline metrics that some model of the track was scored on."""
    models = summary.get("models") if isinstance(summary.get("models"), dict) else {}
    declared = summary.get("higher_is_better")
    declared = declared if isinstance(declared, dict) else {}
    cols = []
    for claim, task in PRIMARY_SETS:
        for metric in PRIMARY_METRICS:
            if any(isinstance(t, dict) and metric in (t.get(task) or {}) for t in models.values()):
                higher = declared.get(metric, contract.higher_is_better(metric))
                cols.append(Column(claim, task, metric, higher))
    return cols


def _drops(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    drops = doc.get("drops") if isinstance(doc.get("drops"), dict) else {}
    out = []
    for step, reasons in drops.items():
        if isinstance(reasons, dict):
            out += [(str(step), str(r), n) for r, c in reasons.items() if (n := _int(c))]
        elif (n := _int(reasons)) is not None:  # a bare count per step
            out.append((str(step), "", n))
    return out


def _submissions(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    folder = root / DATA_REL
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob(f"*/{dt.SUBMISSION_FILE}")):
        out.append((path, _obj(read_json(path), path, "the submission record")))
    return out


def _training(results: Path, model: str) -> dict[str, Any]:
    path = contract.training_dir(results, model) / TRAIN_METRICS_FILE
    if not path.is_file():
        return {}
    return _obj(read_json(path), path, "the training record")


def _row(doc: dict[str, Any], folder: str, train: dict[str, Any]) -> Row:
    """A submission's row from its submission.json and its adapter's training record; the
    epochs the run actually saw (`epochs_seen`) win over the ones the budget planned."""
    epochs = _num(train.get("epochs_seen"))
    return Row(
        name=str(doc.get("name") or folder),
        model=str(doc["adapter"]) if doc.get("adapter") else None,
        kind=str(doc.get("kind") or "submission"),
        rule=str(doc.get("rule") or ""),
        pairs=_int(doc.get("pairs")),
        fraction=_num(doc.get("fraction")),
        tokens_seen=_int(train.get("tokens_seen")),
        epochs=epochs if epochs is not None else _num(doc.get("epochs")),
        drops=_drops(doc),
    )


def load(root: Path | None) -> DataTrack | None:
    """The data track under `root` (build/datatrack), or None when it has no results summary
    yet (then the site has no data page and the README's data-track section is left alone)."""
    if root is None:
        return None
    root = Path(root)
    results = root / RESULTS_REL
    summary_path = results / contract.SUMMARY_FILE
    if not summary_path.is_file():
        return None
    summary = _obj(read_json(summary_path), summary_path, "the summary")
    columns = _columns(summary)
    models = summary.get("models") if isinstance(summary.get("models"), dict) else {}
    base = str(summary.get("base") or contract.BASE)
    subs = _submissions(root)
    rows = [Row(name=base, model=base, kind="base")]
    budgets = []
    for path, doc in subs:
        model = str(doc["adapter"]) if doc.get("adapter") else None
        train = _training(results, model) if model else {}
        rows.append(_row(doc, path.parent.name, train))
        budgets += [_int(doc.get("token_budget")), _int(train.get("token_budget"))]
    claimed = {r.model for r in rows}
    rows += [Row(name=m, model=m, kind="model") for m in models if m not in claimed]
    refs = summary.get(dt.REFERENCE_COMPARISONS_KEY)
    refs = refs if isinstance(refs, dict) else {}
    curated = next((r.model for r in rows if r.name == dt.CURATED), None)
    if curated is None and len(refs) == 1:
        curated = next(iter(refs))
    for r in rows:
        r.is_curated = r.model is not None and r.model == curated
        if r.model is None:
            continue
        r.stats = _cells(models, r.model, columns, _stat)
        if not r.is_base:
            r.vs_base = _cells(summary.get("comparisons"), r.model, columns, _delta)
        if curated and not r.is_curated:
            r.vs_curated = _cells(refs.get(curated), r.model, columns, _delta)
    budget = next((b for b in budgets if b is not None), None)
    return DataTrack(root, _ordered(rows, columns), columns, curated, budget)


def order_column(columns: list[Column]) -> Column | None:
    """The column rows are ranked by: the site's primary metric, else the first headline one."""
    return next((c for c in columns if c.key == PRIMARY), columns[0] if columns else None)


def _ordered(rows: list[Row], columns: list[Column]) -> list[Row]:
    """Base first, then best first by `order_column`; rows without a score last, by name."""
    col = order_column(columns)
    if col is None:
        return sorted(rows, key=lambda r: (not r.is_base, r.name))
    sign = 1 if col.higher is False else -1

    def key(r: Row) -> tuple:
        s = r.stats.get(col.key)
        return (not r.is_base, s is None, sign * s.mean if s else 0.0, r.name)

    return sorted(rows, key=key)


# ---------------------------------------------------------------- the page


def _delta_view(d: Delta | None, higher: bool | None, against: str) -> dict[str, str] | None:
    if d is None:
        return None
    status = present.delta_status(d, higher)
    return {
        "text": f"vs {against} {present.fmt_signed(d.delta)}",
        "status": status,
        "marker": {"up": "▲", "down": "▼"}.get(status, ""),
        "p": present.p_text(d.p) if d.p is not None else "no paired test",
    }


def _cell(r: Row, c: Column) -> dict[str, Any]:
    s = r.stats.get(c.key)
    if s is None:
        return {"sort": "", "value": "—", "ci": "", "deltas": []}
    deltas = [
        _delta_view(r.vs_base.get(c.key), c.higher, "base"),
        _delta_view(r.vs_curated.get(c.key), c.higher, dt.CURATED),
    ]
    return {
        "sort": repr(round(s.mean, 6)),
        "value": present.fmt_value(s.mean),
        "ci": present.ci_text(s),
        "deltas": [d for d in deltas if d],
    }


def page_context(track: DataTrack) -> dict[str, Any]:
    """What data.html.j2 shows: the table's rows and one scaling plot per headline metric."""
    rows = [
        {
            "r": r,
            "cells": [_cell(r, c) for c in track.columns],
            "drops": [(s, why or "(no reason given)", n) for s, why, n in r.drops],
        }
        for r in track.rows
    ]
    groups = []
    for c in track.columns:
        if not groups or groups[-1]["claim"] != c.claim:
            groups.append({"claim": c.claim, "task": c.task, "span": 0})
        groups[-1]["span"] += 1
    return {
        "track": track,
        "order": order_column(track.columns),
        "rows": rows,
        "groups": groups,
        "columns": [(c, present.direction(c.higher)) for c in track.columns],
        "plots": [(c, p) for c in track.columns if (p := scaling_plot(track, c))],
    }


# ---------------------------------------------------------------- the scaling plot


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks of a log axis inside [lo, hi] (powers of ten alone when that gives enough)."""
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0**k for m in (1, 2, 5) if lo <= m * 10.0**k <= hi]
    decades = [t for t in out if math.log10(t).is_integer()]
    return decades if len(decades) >= 3 else out


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _point_title(name: str, pairs: int, c: Column, s: Stat) -> str:
    ci = f" [{present.ci_text(s)}]" if s.low is not None else ""
    return f"{name}: {pairs:,} pairs, {c.metric} {present.fmt_value(s.mean)}{ci}"


def scaling_plot(track: DataTrack, c: Column) -> Markup | None:
    """`c` against the number of pairs (log x): the nested subsets and curated as a line with
    its 95% CI band, the base model as a dashed line with its band, every other submission as
    a labelled square with its CI. None when no submission has both a size and a score."""
    placed = [r for r in track.rows if not r.is_base and r.pairs and c.key in r.stats]
    if not placed:
        return None
    curve = sorted((r for r in placed if r.fraction is not None), key=lambda r: r.pairs or 0)
    others = [r for r in placed if r.fraction is None]
    base = next((r.stats.get(c.key) for r in track.rows if r.is_base), None)
    width, height, left, right, top, bottom = 560, 300, 56, 112, 34, 46
    xs = [float(r.pairs or 1) for r in placed]
    x_lo, x_hi = min(xs) / 1.35, max(xs) * 1.35
    ys = [
        v
        for r in placed
        for s in [r.stats[c.key]]
        for v in (s.mean, s.low, s.high)
        if v is not None
    ]
    if base is not None:
        ys += [v for v in (base.mean, base.low, base.high) if v is not None]
    yt = svg.nice_ticks(min(ys), max(ys), 5)
    y0, y1 = min(yt), max(yt)

    def px(v: float) -> float:
        span = math.log10(x_hi) - math.log10(x_lo)
        return left + (math.log10(v) - math.log10(x_lo)) / span * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    arrow, words = present.direction(c.higher)
    title = f"{c.claim} ({c.task}) {c.metric} against training pairs, log scale ({words})"
    x_end = width - right
    parts = [
        f'<svg class="chart scaling" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for t in yt:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{x_end}" y1="{_n(py(t))}" y2="{_n(py(t))}"/>'
            f'<text class="tick" x="{left - 6}" y="{_n(py(t) + 4)}" text-anchor="end">'
            f"{svg.tick_label(t)}</text>"
        )
    for t in log_ticks(x_lo, x_hi):
        parts.append(
            f'<line class="grid" x1="{_n(px(t))}" x2="{_n(px(t))}" y1="{top}" y2="{height - bottom}"/>'
            f'<text class="tick x-tick" x="{_n(px(t))}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{svg.fmt_num(t)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{x_end}" y1="{height - bottom}" y2="{height - bottom}"/>'
        f'<text class="axis-label" x="{(left + x_end) / 2:.0f}" y="{height - 8}" '
        'text-anchor="middle">training pairs (log scale)</text>'
        f'<text class="axis-label" transform="translate(14 {(top + height - bottom) / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{escape(c.metric)} {arrow}</text>'
    )
    if base is not None:
        parts.append(_base_lines(base, left, x_end, py))
    if len(curve) > 1 and all(r.stats[c.key].low is not None for r in curve):
        low = [(px(r.pairs or 1), py(r.stats[c.key].low or 0)) for r in curve]
        high = [(px(r.pairs or 1), py(r.stats[c.key].high or 0)) for r in reversed(curve)]
        pts = " ".join(f"{_n(a)},{_n(b)}" for a, b in low + high)
        parts.append(
            f'<polygon class="band curve-band mde" points="{pts}"><title>95% CI of the scaling curve</title></polygon>'
        )
    if len(curve) > 1:
        d = "M" + "L".join(f"{_n(px(r.pairs or 1))} {_n(py(r.stats[c.key].mean))}" for r in curve)
        parts.append(f'<path class="series s1 curve" d="{d}"/>')
    for r in curve:
        s = r.stats[c.key]
        x, y = px(r.pairs or 1), py(s.mean)
        label = f"{r.name} ({r.fraction_text})" if r.fraction_text != "1" else r.name
        parts.append(
            f'<circle class="dot s2 point curve-point" cx="{_n(x)}" cy="{_n(y)}" r="4" '
            f'data-pairs="{r.pairs}"><title>{escape(_point_title(label, r.pairs or 0, c, s))}'
            "</title></circle>"
            f'<text class="label curve-label" x="{_n(x)}" y="{_n(y - 8)}" text-anchor="middle">'
            f"{escape(r.fraction_text if r.fraction_text != '1' else r.name)}</text>"
        )
    parts += _other_markers(others, c, px, py)
    parts.append(_legend(left, bool(curve), base is not None, bool(others)))
    parts.append("</svg>")
    return Markup("".join(parts))


def _base_lines(base: Stat, x0: float, x1: float, py) -> str:
    out = ""
    if base.low is not None and base.high is not None:
        out += (
            f'<rect class="band base-band mde" x="{x0}" y="{_n(py(base.high))}" '
            f'width="{_n(x1 - x0)}" height="{_n(max(py(base.low) - py(base.high), 0.5))}">'
            f"<title>base model, 95% CI {escape(present.ci_text(base))}</title></rect>"
        )
    return out + (
        f'<line class="ref base-line" x1="{x0}" x2="{x1}" y1="{_n(py(base.mean))}" '
        f'y2="{_n(py(base.mean))}"/><text class="ref-label" x="{x1 + 4}" '
        f'y="{_n(py(base.mean) + 3)}">base {present.fmt_value(base.mean)}</text>'
    )


def _other_markers(others: list[Row], c: Column, px, py) -> list[str]:
    """Squares with CI whiskers, labelled on their right; labels are pushed apart so that
    submissions of one size (noisy, short, self are all curated-sized) stay readable."""
    placed = sorted(others, key=lambda r: py(r.stats[c.key].mean))
    parts, last_y = [], -1e9
    for r in placed:
        s = r.stats[c.key]
        x, y = px(r.pairs or 1), py(s.mean)
        if s.low is not None and s.high is not None:
            parts.append(f'<path class="whisker" d="M{_n(x)} {_n(py(s.low))}V{_n(py(s.high))}"/>')
        label_y = max(y + 4, last_y + 11)
        last_y = label_y
        short = r.name if len(r.name) <= 16 else r.name[:15] + "…"
        parts.append(
            f'<rect class="bar point other-point" x="{_n(x - 4)}" y="{_n(y - 4)}" width="8" '
            f'height="8" data-pairs="{r.pairs}"><title>'
            f"{escape(_point_title(r.name, r.pairs or 0, c, s))}</title></rect>"
            f'<text class="label other-label" x="{_n(x + 8)}" y="{_n(label_y)}">{escape(short)}'
            f"<title>{escape(r.name)}</title></text>"
        )
    return parts


def _legend(x: float, curve: bool, base: bool, others: bool) -> str:
    items = []
    if curve:
        items.append(("s1", "nested subsets, curated"))
    if base:
        items.append(("mde", "base ± 95% CI"))
    if others:
        items.append(("bar", "others"))
    out = ""
    for cls, text in items:
        out += (
            f'<rect class="swatch {cls}" x="{_n(x)}" y="10" width="12" height="8"/>'
            f'<text class="legend" x="{_n(x + 16)}" y="18">{escape(text)}</text>'
        )
        x += 30 + 8 * len(text)
    return out
