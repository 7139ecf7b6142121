"""The per-sample views of the site, from scores.jsonl: each run page's metrics per topic, and
the compare page's question-by-question data and its no-JavaScript preview."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmark.contracts import results as contract
from benchmark.contracts.site import PRIMARY
from benchmark.leaderboard import ingest, present

PREVIEW_ROWS = 20


def preview(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The first rows of the first task, rendered in the HTML so the page reads without JS."""
    if not payload["tasks"]:
        return None
    task, t = next(iter(payload["tasks"].items()))
    primary = payload["primary"]
    m = t["metrics"].index(primary) if primary in t["metrics"] else 0
    rows = []
    for r in t["rows"][:PREVIEW_ROWS]:
        b, a = r[6][m], r[7][m]
        d = None if a is None or b is None else a - b
        better = None if not d else (d > 0) == t["higher"][m]
        rows.append(
            {
                "id": r[0],
                "topic": r[1],
                "question": r[2],
                "reference": r[3],
                "base": r[4],
                "tuned": r[5],
                "score": f"{t['metrics'][m]}: {present.fmt_value(b)} → {present.fmt_value(a)}"
                + (f" ({present.fmt_signed(d)})" if d is not None else ""),
                "cls": "" if better is None else ("better" if better else "worse"),
            }
        )
    return {"task": task, "rows": rows, "total": len(t["rows"])}


_NUMBER = (int, float)  # exact types: bool and strings become null (the JS expects numbers)


def scores_by_run(lb: ingest.Leaderboard) -> dict[int, dict[str, dict[str, list[dict]]]]:
    """run folder id -> model -> task -> records sorted by doc_id."""
    out: dict[int, dict[str, dict[str, list[dict]]]] = {}
    for folder in lb.runs:
        if folder.scores_path is None:
            continue
        grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for rec in ingest.iter_scores(folder.scores_path):
            grouped[str(rec["model"])][str(rec["task"])].append(rec)
        for tasks in grouped.values():
            for recs in tasks.values():
                recs.sort(key=lambda r: _doc_key(r))
        out[id(folder)] = grouped
    return out


def _doc_key(rec: dict) -> tuple:
    d = rec.get("doc_id")
    return (0, d, "") if isinstance(d, int) else (1, 0, str(rec.get("id", d)))


def metric_names(recs: list[dict]) -> list[str]:
    """Every metric the records hold, in display order."""
    names: dict[str, None] = {}
    for r in recs:
        if isinstance(r.get("metrics"), dict):
            names.update(dict.fromkeys(r["metrics"]))
    return sorted(names, key=contract.metric_sort_key)


_MEANS_CACHE: dict[int, tuple[list[dict], dict]] = {}


def forget_topic_means() -> None:
    """Drop the means cached during one site build."""
    _MEANS_CACHE.clear()


def _topic_means(rows: list[dict]) -> dict[str, dict[str, tuple[float, int]]]:
    """topic -> metric -> (mean, n), plus "(all)"; cached per record list (the base is reused)."""
    hit = _MEANS_CACHE.get(id(rows))
    if hit is not None and hit[0] is rows:
        return hit[1]
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        topic = str(r.get("topic") or "(none)")
        mt, ma = acc[topic], acc["(all)"]
        for m, v in (r.get("metrics") or {}).items():
            if type(v) in _NUMBER:
                mt[m].append(v)
                ma[m].append(v)
    out = {t: {m: (sum(v) / len(v), len(v)) for m, v in ms.items()} for t, ms in acc.items()}
    _MEANS_CACHE[id(rows)] = (rows, out)
    return out


def topic_table(recs: list[dict], base_recs: list[dict] | None, hib: dict) -> dict[str, Any]:
    """The run page's table of one task: each metric's mean per topic, and its change against
    the base's mean on the same topic."""
    metrics = metric_names(recs)
    means = _topic_means
    mine, base = means(recs), means(base_recs or [])
    topics = sorted(t for t in mine if t != "(all)") + ["(all)"]
    rows = []
    for t in topics:
        n = max((c for _, c in mine[t].values()), default=0)
        cells = []
        for m in metrics:
            v = mine[t].get(m)
            b = base.get(t, {}).get(m)
            d = None if v is None or b is None else v[0] - b[0]
            better = None if d is None or d == 0 else (d > 0) == hib.get(m, True)
            cells.append(
                {
                    "value": present.fmt_value(v[0] if v else None),
                    "delta": present.fmt_signed(d) if d is not None else "",
                    "cls": "" if better is None else ("better" if better else "worse"),
                }
            )
        rows.append({"topic": t, "n": n, "cells": cells})
    return {"metrics": metrics, "rows": rows, "has_base": bool(base_recs)}


def compare_payload(entry, base, scores, hib_for) -> dict[str, Any]:
    """The compare page's data (window.MB_COMPARE): per task, each document's question,
    reference, both answers and both models' scores."""
    tasks: dict[str, Any] = {}
    mine = scores.get(entry.model, {})
    theirs = scores.get(base.model, {})
    for task in sorted(mine, key=contract.task_sort_key):
        base_by = {_doc_key(r): r for r in theirs.get(task, [])}
        pairs = [(base_by[_doc_key(r)], r) for r in mine[task] if _doc_key(r) in base_by]
        if not pairs:
            continue
        metrics = metric_names([r for _, r in pairs])
        rows = []
        for b, t in pairs:
            bm, tm = b.get("metrics") or {}, t.get("metrics") or {}
            rows.append(
                [
                    str(t.get("id", t.get("doc_id"))),
                    str(t.get("topic") or ""),
                    str(t.get("question") or ""),
                    str(t.get("reference") or ""),
                    str(b.get("prediction") or ""),
                    str(t.get("prediction") or ""),
                    [bm.get(m) if type(bm.get(m)) in _NUMBER else None for m in metrics],
                    [tm.get(m) if type(tm.get(m)) in _NUMBER else None for m in metrics],
                ]
            )
        tasks[task] = {
            "metrics": metrics,
            "higher": [hib_for(task, m) for m in metrics],
            "rows": rows,
        }
    return {"model": entry.label, "base": base.label, "primary": PRIMARY[1], "tasks": tasks}
