"""Small inline-SVG charts drawn by our own code.

Hand-written rather than matplotlib because the site needs tiny, deterministic, text-selectable
SVG that takes its colours from the page's CSS (light/dark) and carries accessible titles;
matplotlib's SVG output embeds fonts/ids/timestamps and is ~50x larger.
Colours come from CSS classes (site/static/style.css), never inline, so dark mode works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:.0f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (the classic 1-2-5 rule)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    n = math.ceil(hi / step - 1e-9) - math.floor(lo / step + 1e-9)
    return [round(start + i * step, 10) for i in range(n + 1)]


def tick_label(t: float) -> str:
    return "0" if t == 0 else f"{t:.6g}".replace("-", "−")


def fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if float(x).is_integer():
        return f"{x:,.0f}"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1:
        return f"{x:.3f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def gain_panel(
    title: str,
    rows: Sequence[tuple],
    higher_is_better: bool | None,
) -> Markup:
    """One metric's deltas vs base: rows of (label, delta, ci_low, ci_high, status[, mde]).

    status is "up" / "down" (significant better / worse), "ns" (not significant), "nt" (no test)
    or "desc" (a significant change of a metric that is neither better nor worse). Where a row
    has its minimum detectable effect (80% power), a shaded band spans ±MDE around zero: a bar
    inside it is smaller than what that comparison could reliably detect.
    """
    label_w, plot_w, value_w, row_h, top = 150, 180, 92, 22, 8
    width = label_w + plot_w + value_w
    height = top + row_h * len(rows) + 22
    values = [0.0]
    for row in rows:
        _, d, lo, hi, _ = row[:5]
        mde = row[5] if len(row) > 5 else None
        values += [d] + [v for v in (lo, hi) if v is not None]
        if mde is not None and math.isfinite(mde):
            values += [mde, -mde]
    lo_v, hi_v = min(values), max(values)
    if lo_v == hi_v:
        hi_v = lo_v + 1.0
    ticks = nice_ticks(lo_v, hi_v, 4)
    lo_axis, hi_axis = min(ticks), max(ticks)

    def x(v: float) -> float:
        return label_w + (v - lo_axis) / (hi_axis - lo_axis) * plot_w

    direction = {True: "higher is better", False: "lower is better"}.get(
        higher_is_better, "neither direction is better"
    )
    parts = [
        f'<svg class="chart gain" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}: change versus base ({direction})">',
        f"<title>{escape(title)}: change versus base ({direction})</title>",
    ]
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top}" y2="{height - 18}"/>'
            f'<text class="tick" x="{_f(x(t))}" y="{height - 5}" text-anchor="middle">{tick_label(t)}</text>'
        )
    for i, row in enumerate(rows):
        mde = row[5] if len(row) > 5 else None
        if mde is not None and math.isfinite(mde) and mde > 0:
            y = top + i * row_h
            parts.append(
                f'<rect class="mde" x="{_f(x(-mde))}" y="{y + 2}" width="{_f(x(mde) - x(-mde))}" '
                f'height="18"><title>minimum detectable effect ±{fmt_num(mde)}</title></rect>'
            )
    parts.append(
        f'<line class="axis" x1="{_f(x(0))}" x2="{_f(x(0))}" y1="{top}" y2="{height - 18}"/>'
    )
    for i, row in enumerate(rows):
        label, d, lo, hi, status = row[:5]
        y = top + i * row_h
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(short)}'
            f"<title>{escape(label)}</title></text>"
        )
        x0, x1 = sorted((x(0), x(d)))
        parts.append(
            f'<rect class="bar {status}" x="{_f(x0)}" y="{y + 5}" width="{_f(max(x1 - x0, 1))}" height="12"/>'
        )
        if lo is not None and hi is not None:
            parts.append(
                f'<path class="whisker" d="M{_f(x(lo))} {y + 11}H{_f(x(hi))}'
                f'M{_f(x(lo))} {y + 7}V{y + 15}M{_f(x(hi))} {y + 7}V{y + 15}"/>'
            )
        mark = {"up": " ▲", "down": " ▼"}.get(status, "")
        sign = "+" if d > 0 else ""
        parts.append(
            f'<text class="value {status}" x="{label_w + plot_w + 6}" y="{y + 15}">'
            f"{sign}{fmt_num(d)}{mark}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def length_panel(
    title: str,
    rows: Sequence[tuple],
    reference: float | None,
) -> Markup:
    """Mean answer length per model: rows of (label, mean words, ci_low, ci_high[, ratio to the
    references]), with a dashed line at the references' mean length where it is known. Neutral
    colours: length describes the answers, it is neither a gain nor a loss."""
    label_w, plot_w, value_w, row_h, top = 150, 200, 90, 22, 22
    width = label_w + plot_w + value_w
    height = top + row_h * len(rows) + 22
    values = [0.0] + [v for row in rows for v in row[1:4] if v is not None]
    if reference is not None:
        values.append(reference)
    ticks = nice_ticks(0.0, max(values) or 1.0, 4)
    hi_axis = max(ticks) or 1.0

    def x(v: float) -> float:
        return label_w + v / hi_axis * plot_w

    parts = [
        f'<svg class="chart length" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top}" y2="{height - 18}"/>'
            f'<text class="tick" x="{_f(x(t))}" y="{height - 5}" text-anchor="middle">{tick_label(t)}</text>'
        )
    for i, row in enumerate(rows):
        label, mean, lo, hi = row[:4]
        ratio = row[4] if len(row) > 4 else None
        y = top + i * row_h
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(short)}'
            f"<title>{escape(label)}</title></text>"
            f'<rect class="bar nt" x="{label_w}" y="{y + 5}" width="{_f(max(x(mean) - label_w, 1))}" '
            f'height="12"/>'
        )
        if lo is not None and hi is not None:
            parts.append(
                f'<path class="whisker" d="M{_f(x(lo))} {y + 11}H{_f(x(hi))}'
                f'M{_f(x(lo))} {y + 7}V{y + 15}M{_f(x(hi))} {y + 7}V{y + 15}"/>'
            )
        parts.append(
            f'<text class="value" x="{label_w + plot_w + 6}" y="{y + 15}">{mean:.1f}'
            + (f" (×{ratio:.2f})" if ratio is not None else "")
            + "</text>"
        )
    if reference is not None:
        parts.append(
            f'<line class="ref" x1="{_f(x(reference))}" x2="{_f(x(reference))}" y1="{top - 4}" '
            f'y2="{height - 18}"/><text class="ref-label" x="{_f(x(reference))}" y="{top - 8}" '
            f'text-anchor="middle">references {reference:.1f}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]], bool]],
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 280,
) -> Markup:
    """Lines (or point markers) over a shared x axis: series of (name, css class, points, markers)."""
    left, right, top, bottom = 56, 16, 30, 44
    pts = [p for _, _, s, _ in series for p in s]
    if not pts:
        return Markup("")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = nice_ticks(min(xs), max(xs), 6), nice_ticks(min(ys), max(ys), 5)
    x0, x1, y0, y1 = min(xt), max(xt), min(yt), max(yt)

    def px(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1) * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    parts = [
        f'<svg class="chart line" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for t in yt:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(py(t))}" y2="{_f(py(t))}"/>'
            f'<text class="tick" x="{left - 6}" y="{_f(py(t) + 4)}" text-anchor="end">{tick_label(t)}</text>'
        )
    for t in xt:
        parts.append(
            f'<text class="tick" x="{_f(px(t))}" y="{height - bottom + 16}" text-anchor="middle">{tick_label(t)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}"/>'
        f'<text class="axis-label" x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis-label" transform="translate(14 {(top + height - bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    legend_x = left + 8
    for name, cls, points, markers in series:
        if markers:
            for a, b in points:
                parts.append(f'<circle class="dot {cls}" cx="{_f(px(a))}" cy="{_f(py(b))}" r="4"/>')
        else:
            d = "M" + "L".join(f"{_f(px(a))} {_f(py(b))}" for a, b in points)
            parts.append(f'<path class="series {cls}" d="{d}"/>')
        parts.append(
            f'<rect class="swatch {cls}" x="{legend_x}" y="8" width="12" height="4"/>'
            f'<text class="legend" x="{legend_x + 16}" y="14">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))


def hbar_chart(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """Horizontal bars with the value printed at each bar's end (e.g. rows per topic)."""
    label_w, plot_w, row_h, top = 190, 300, 20, 6
    width, height = label_w + plot_w + 70, top + row_h * len(items) + 8
    top_v = max([v for _, v in items] + [1])
    parts = [
        f'<svg class="chart hbar" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, v) in enumerate(items):
        y = top + i * row_h
        w = v / top_v * plot_w
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar nt" x="{label_w}" y="{y + 4}" width="{_f(max(w, 1))}" height="13"/>'
            f'<text class="value" x="{_f(label_w + w + 6)}" y="{y + 14}">{fmt_num(v)}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
