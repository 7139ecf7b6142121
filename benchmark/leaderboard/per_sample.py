"""The per-sample views of the site, from scores.jsonl: each run page's metrics per topic, and
the compare page's question-by-question data and its no-JavaScript preview."""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import NormalDist
from typing import Any

import numpy as np

from benchmark.contracts import results as contract
from benchmark.contracts.protocol import ALPHA, POWER, PRIMARY_SETS
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
    higher = t["higher"][m]
    for r in t["rows"][:PREVIEW_ROWS]:
        b, a = r[6][m], r[7][m]
        d = None if a is None or b is None else a - b
        better = None if not d or higher is None else (d > 0) == higher
        ref_w, base_w, tuned_w = r[8] if t["generated"] else (None, None, None)
        rows.append(
            {
                "id": r[0],
                "topic": r[1],
                "question": r[2],
                "reference": r[3],
                "base": r[4],
                "tuned": r[5],
                "words": (ref_w, base_w, tuned_w),
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


_MATRIX_CACHE: dict[tuple, tuple[list[dict], tuple]] = {}


def forget_topic_means() -> None:
    """Drop the per-sample matrices and word counts cached during one site build."""
    _MATRIX_CACHE.clear()
    _BASE_WORDS.clear()


def _matrix(rows: list[dict], metrics: list[str]) -> tuple[list[tuple], list[str], np.ndarray]:
    """(doc keys, topics, values[doc, metric]) of one model's records of one task; NaN where a
    value is missing. Cached per record list (the base's is reused by every adapter)."""
    key = (id(rows), tuple(metrics))
    hit = _MATRIX_CACHE.get(key)
    if hit is not None and hit[0] is rows:
        return hit[1]
    nan = float("nan")
    values = np.array(
        [
            [v if type(v) in _NUMBER else nan for v in map((r.get("metrics") or {}).get, metrics)]
            for r in rows
        ],
        dtype=np.float64,
    ).reshape(len(rows), len(metrics))
    out = ([_doc_key(r) for r in rows], [str(r.get("topic") or "(none)") for r in rows], values)
    _MATRIX_CACHE[key] = (rows, out)
    return out


def _column_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, count, sd with ddof=1) of each column over its finite values."""
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    safe = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=0) / n
        dev = np.where(finite, values - mean, 0.0)
        sd = np.sqrt((dev**2).sum(axis=0) / (n - 1))
    return mean, n, sd


#: z_{1-alpha/2} + z_power of the protocol's power calculation (docs/protocol.md); the same
#: formula as benchmark.evaluation.stats.min_detectable_effect, without importing scipy
_Z_MDE = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)


def min_detectable_effect(sd: float, n: int) -> float | None:
    """The smallest true mean difference a paired test on `n` questions whose differences have
    SD `sd` detects with 80% power at two-sided alpha 0.05; None where it is not defined."""
    if n < 2 or not math.isfinite(sd):
        return None
    return _Z_MDE * sd / math.sqrt(n)


def topic_table(recs: list[dict], base_recs: list[dict] | None, hib: dict) -> dict[str, Any]:
    """The run page's table of one task: each metric's mean per topic and, against the base,
    the mean paired difference on that topic's questions with its minimum detectable effect."""
    metrics = metric_names(recs)
    keys, topics, mine = _matrix(recs, metrics)
    diffs = None
    if base_recs:
        base_keys, _, base = _matrix(base_recs, metrics)
        where = {k: i for i, k in enumerate(base_keys)}
        idx = np.array([where.get(k, -1) for k in keys], dtype=np.int64)
        aligned = np.full_like(mine, np.nan)
        found = idx >= 0
        aligned[found] = base[idx[found]]
        diffs = mine - aligned
    topic_arr = np.array(topics, dtype=object)
    rows = []
    for t in sorted(set(topics)) + ["(all)"]:
        mask = np.ones(len(topics), bool) if t == "(all)" else topic_arr == t
        means, counts, _ = _column_stats(mine[mask])
        if diffs is not None:
            d_mean, d_n, d_sd = _column_stats(diffs[mask])
        cells = []
        for j, m in enumerate(metrics):
            v = float(means[j]) if counts[j] else None
            d = float(d_mean[j]) if diffs is not None and d_n[j] else None
            mde = min_detectable_effect(float(d_sd[j]), int(d_n[j])) if d is not None else None
            higher = hib.get(m, True)
            better = None if d is None or d == 0 or higher is None else (d > 0) == higher
            cells.append(
                {
                    "value": present.fmt_value(v),
                    "delta": present.fmt_signed(d) if d is not None else "",
                    "mde": f"MDE {present.fmt_value(mde)}" if mde is not None else "",
                    "cls": "" if better is None else ("better" if better else "worse"),
                }
            )
        rows.append({"topic": t, "n": int(counts.max(initial=0)), "cells": cells})
    return {"metrics": metrics, "rows": rows, "has_base": bool(base_recs)}


def _words(text: Any) -> int | None:
    """Words of a text as answer_words counts them (whitespace-separated); None for no text."""
    return None if text is None else len(str(text).split())


_BASE_WORDS: dict[int, tuple[dict, tuple[int | None, int | None]]] = {}


def _base_words(rec: dict) -> tuple[int | None, int | None]:
    """(reference words, answer words) of a base record, counted once per build: every adapter
    of the run is compared with the same base records."""
    hit = _BASE_WORDS.get(id(rec))
    if hit is not None and hit[0] is rec:
        return hit[1]
    words = (_words(rec.get("reference")), _words(rec.get("prediction")))
    _BASE_WORDS[id(rec)] = (rec, words)
    return words


def task_order(tasks) -> list[str]:
    """The headline tasks first (recall, transfer: the protocol's order), then the others in the
    registry's order."""
    head = [t for _, t in PRIMARY_SETS if t in tasks]
    return head + sorted((t for t in tasks if t not in head), key=contract.task_sort_key)


def compare_payload(entry, base, scores, hib_for) -> dict[str, Any]:
    """The compare page's data (window.MB_COMPARE): per task, each document's question,
    reference, both answers, both models' scores and the words of reference and answers; and
    per metric the run's paired comparison (delta, p, MDE) for the whole task."""
    tasks: dict[str, Any] = {}
    mine = scores.get(entry.model, {})
    theirs = scores.get(base.model, {})
    for task in task_order(mine):
        base_by = {_doc_key(r): r for r in theirs.get(task, [])}
        pairs = [(base_by[_doc_key(r)], r) for r in mine[task] if _doc_key(r) in base_by]
        if not pairs:
            continue
        metrics = metric_names([r for _, r in pairs])
        # generated answers have a length in words (multiple choice picks a given answer)
        generated = task in contract.GENERATION_TASKS or "answer_words" in metrics
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
                    [*_base_words(b), _words(t.get("prediction"))] if generated else None,
                ]
            )
        comparison = []
        for m in metrics:
            d = entry.deltas.get((task, m))
            comparison.append(None if d is None else [d.delta, d.p, d.mde])
        tasks[task] = {
            "metrics": metrics,
            "higher": [hib_for(task, m) for m in metrics],
            "comparison": comparison,
            "generated": generated,
            "rows": rows,
        }
    return {"model": entry.label, "base": base.label, "primary": PRIMARY[1], "tasks": tasks}
