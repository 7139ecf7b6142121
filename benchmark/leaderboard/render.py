"""Render the static site (index, run, compare, dataset, method pages) from ingested results.

Everything is written through one function that redacts secrets, into a temp folder that
replaces the output folder only when the whole site rendered (benchmark.atomic.atomic_dir).
Output bytes depend only on the inputs: no clocks, sorted traversal, relative links only.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from benchmark.atomic import atomic_dir
from benchmark.leaderboard import dataset as dataset_info
from benchmark.leaderboard import ingest, present, svg
from benchmark.leaderboard.markdown import render_markdown
from benchmark.leaderboard.redact import redact_text, scrub
from benchmark.paths import SITE_SRC

PRIMARY = ("marine_qa", "rougeL")
MAX_CHART_MODELS = 8
TASK_NOTES = {
    "marine_qa": "marine Q&A, generated answers scored against the reference",
    "marine_qa_ppl": "log-likelihood of the reference answers",
    "marine_mc": "multiple-choice marine questions",
    "retention_qa": "general-knowledge questions: does fine-tuning make the model forget?",
}


def js_json(obj: Any) -> str:
    """JSON that is safe inside <script>: no `</script>`, `<!--`, or raw U+2028/U+2029."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(SITE_SRC / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = present.fmt_value
    env.filters["signed"] = present.fmt_signed
    env.filters["pval"] = present.fmt_p
    env.filters["js_json"] = lambda obj: Markup(js_json(obj))
    env.filters["pretty_json"] = lambda obj: json.dumps(
        obj, indent=2, ensure_ascii=False, sort_keys=True
    )
    return env


@dataclass
class SiteWriter:
    root: Path
    files: int = 0
    bytes: int = 0

    def text(self, rel: str, text: str) -> None:
        """Every site file passes through here, so nothing escapes secret redaction."""
        data = redact_text(text).encode("utf-8")
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files += 1
        self.bytes += len(data)


def _rel_display(path: Path) -> str:
    """A path for display: relative to the working folder when inside it (no home dirs on pages)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).name


# ---------------------------------------------------------------- per-sample scores

PREVIEW_ROWS = 20


def _preview(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The first rows of the first task, rendered in the HTML so the page reads without JS."""
    if not payload["tasks"]:
        return None
    task, t = next(iter(payload["tasks"].items()))
    m = t["metrics"].index("rougeL") if "rougeL" in t["metrics"] else 0
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


def _scores_by_run(lb: ingest.Leaderboard) -> dict[int, dict[str, dict[str, list[dict]]]]:
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


def _metric_names(recs: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for r in recs:
        if isinstance(r.get("metrics"), dict):
            names.update(dict.fromkeys(r["metrics"]))
    order = {m: i for i, m in enumerate(ingest.METRIC_ORDER)}
    return sorted(names, key=lambda m: (order.get(m, len(order)), m))


_MEANS_CACHE: dict[int, tuple[list[dict], dict]] = {}


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


def _topic_table(recs: list[dict], base_recs: list[dict] | None, hib: dict) -> dict[str, Any]:
    metrics = _metric_names(recs)
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


def _compare_payload(entry, base, scores, hib_for) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    mine = scores.get(entry.model, {})
    theirs = scores.get(base.model, {})
    for task in sorted(mine, key=lambda t: (t not in ingest.TASK_ORDER, t)):
        base_by = {_doc_key(r): r for r in theirs.get(task, [])}
        pairs = [(base_by[_doc_key(r)], r) for r in mine[task] if _doc_key(r) in base_by]
        if not pairs:
            continue
        metrics = _metric_names([r for _, r in pairs])
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
    return {"model": entry.label, "base": base.label, "tasks": tasks}


# ---------------------------------------------------------------- pages


def _ordered_entries(lb: ingest.Leaderboard) -> tuple[list[ingest.Entry], ingest.Key | None]:
    primary = PRIMARY if PRIMARY in lb.columns else (lb.columns[0] if lb.columns else None)
    if primary is None:
        return sorted(lb.entries, key=lambda e: e.label), None
    sign = -1 if lb.higher_is_better[primary] else 1

    def key(e: ingest.Entry) -> tuple:
        s = e.stats.get(primary)
        return (s is None, sign * s.mean if s else 0.0, e.label)

    return sorted(lb.entries, key=key), primary


def _gain_chart(lb: ingest.Leaderboard, ordered: list[ingest.Entry], primary) -> dict[str, Any]:
    tuned = [e for e in ordered if e.deltas]
    shown = tuned[:MAX_CHART_MODELS]
    panels = []
    for col in lb.columns:
        rows = []
        for e in shown:
            d = e.deltas.get(col)
            if d is None:
                continue
            status = present.delta_status(d, lb.higher_is_better[col])
            rows.append((e.label, d.delta, d.low, d.high, status))
        if rows:
            title = f"{col[0]} · {col[1]}"
            panels.append(
                {
                    "task": col[0],
                    "metric": col[1],
                    "svg": svg.gain_panel(title, rows, lb.higher_is_better[col]),
                }
            )
    return {"panels": panels, "shown": len(shown), "total": len(tuned)}


def _loss_chart(train: dict[str, Any]) -> Markup:
    steps = [
        (float(p["step"]), float(p["loss"]))
        for p in train.get("loss_per_step") or []
        if isinstance(p, dict)
        and isinstance(p.get("step"), int | float)
        and isinstance(p.get("loss"), int | float)
    ]
    if len(steps) > 800:  # keep the SVG small: every k-th point still shows the curve's shape
        k = -(-len(steps) // 800)
        steps = steps[::k] + ([steps[-1]] if (len(steps) - 1) % k else [])
    series = [("training loss", "s1", steps, False)]
    val = [p for p in train.get("val_loss_per_epoch") or [] if isinstance(p, dict)]
    epochs = train.get("epochs") or len(val) or 1
    if steps and val:
        last = steps[-1][0]
        pts = [
            (last * float(p["epoch"]) / float(epochs), float(p["loss"]))
            for p in val
            if isinstance(p.get("epoch"), int | float) and isinstance(p.get("loss"), int | float)
        ]
        series.append(("validation loss (end of epoch)", "s2", pts, True))
    if not steps:
        return Markup("")
    return svg.line_chart("Training loss per optimiser step", series, "step", "loss")


TRAIN_FACTS = (
    ("base_model", "Base model"),
    ("base_model_hub_id", "Base model hub id"),
    ("quantization", "Quantization"),
    ("lora", "LoRA"),
    ("trainable_params", "Trainable parameters"),
    ("total_params", "Total parameters"),
    ("trainable_pct", "Trainable share"),
    ("epochs", "Epochs"),
    ("tokens_seen", "Tokens seen"),
    ("wall_time_s", "Training time"),
    ("tokens_per_s", "Tokens per second"),
    ("mfu", "Model FLOPs utilisation"),
    ("peak_memory_mb", "Peak memory"),
    ("device", "Device"),
    ("dtype", "Dtype"),
    ("seed", "Seed"),
    ("dataset_hash", "Dataset hash"),
    ("config_hash", "Config hash"),
)


def _train_facts(train: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, label in TRAIN_FACTS:
        if key not in train:
            continue
        v = train[key]
        if key == "lora" and isinstance(v, dict):
            text = ", ".join(
                f"{k}={'/'.join(map(str, x)) if isinstance(x, list) else x}" for k, x in v.items()
            )
        elif key in (
            "trainable_pct",
            "wall_time_s",
            "peak_memory_mb",
            "tokens_per_s",
        ) and isinstance(v, int | float):
            text = present.fmt_efficiency(key, v)
        elif key == "mfu" and isinstance(v, int | float):
            text = f"{100 * v:.1f} %"
        elif isinstance(v, int) and not isinstance(v, bool):
            text = f"{v:,}"
        elif v is None:
            text = "none"
        else:
            text = str(v)
        out.append((label, text))
    return out


def _copy_raw(writer: SiteWriter, raw: ingest.RawFile, done: set[str]) -> None:
    if raw.dest in done:
        return
    done.add(raw.dest)
    doc = ingest.read_json(raw.source)
    writer.text(raw.dest, json.dumps(scrub(doc), indent=2, ensure_ascii=False) + "\n")


def build_site(results: Path, out: Path, dataset: Path | None) -> dict[str, Any]:
    """Render the whole site into `out` (replaced atomically). Returns counts for the caller."""
    try:
        return _build_site(results, out, dataset)
    finally:
        _MEANS_CACHE.clear()


def _build_site(results: Path, out: Path, dataset: Path | None) -> dict[str, Any]:
    lb = ingest.load(Path(results))
    env = _env()
    ordered, primary = _ordered_entries(lb)
    scores = _scores_by_run(lb)
    tasks = sorted(
        {c[0] for c in lb.columns},
        key=lambda t: (
            t not in ingest.TASK_ORDER,
            ingest.TASK_ORDER.index(t) if t in ingest.TASK_ORDER else 0,
            t,
        ),
    )
    bases = {id(e.folder): e for e in lb.entries if e.is_base and e.folder is not None}

    def hib_for(task: str, metric: str) -> bool:
        return lb.higher_is_better.get((task, metric), not ingest.lower_is_better(metric))

    with atomic_dir(out) as tmp:
        w = SiteWriter(tmp)
        shutil.copytree(SITE_SRC / "static", tmp / "static")
        done: set[str] = set()
        pages = []
        for e in ordered:
            base = bases.get(id(e.folder))
            run_scores = scores.get(id(e.folder)) if e.folder is not None else None
            has_compare = bool(
                not e.is_base
                and base is not None
                and run_scores
                and run_scores.get(e.model)
                and run_scores.get(base.model)
            )
            pages.append((e, base, run_scores, has_compare))
        compare_slugs = {e.slug for e, _, _, c in pages if c}

        common = {
            "results_display": _rel_display(lb.results_root),
            "n_models": len(lb.entries),
        }
        rows = [
            {
                "e": e,
                "cells": [
                    present.metric_cell(e, col, lb.higher_is_better[col]) for col in lb.columns
                ],
                "eff": present.efficiency_cells(e),
                "compare": e.slug in compare_slugs,
            }
            for e in ordered
        ]
        any_train = any(e.train for e in lb.entries)
        columns = [
            {"task": t, "metric": m, "higher": lb.higher_is_better[(t, m)]} for t, m in lb.columns
        ]
        w.text(
            "index.html",
            env.get_template("index.html.j2").render(
                root="",
                page="index",
                title="Leaderboard",
                rows=rows,
                columns=columns,
                tasks=tasks,
                task_notes=TASK_NOTES,
                efficiency=present.EFFICIENCY,
                any_train=any_train,
                primary=primary,
                chart=_gain_chart(lb, ordered, primary),
                runs=lb.runs,
                **common,
            ),
        )

        run_tpl = env.get_template("run.html.j2")
        cmp_tpl = env.get_template("compare.html.j2")
        card_tpl = env.get_template("card.html.j2")
        for e, base, run_scores, has_compare in pages:
            for raw in e.raw:
                _copy_raw(w, raw, done)
            card = None
            if e.card_path is not None:
                text = e.card_path.read_text(encoding="utf-8", errors="replace")
                w.text(f"files/adapters/{e.slug}/README.md", text)
                w.text(
                    f"cards/{e.slug}.html",
                    card_tpl.render(
                        root="../",
                        page="card",
                        title=f"Adapter card: {e.label}",
                        e=e,
                        card=render_markdown(text),
                        **common,
                    ),
                )
                card = {
                    "html": f"../cards/{e.slug}.html",
                    "raw": f"../files/adapters/{e.slug}/README.md",
                }
            metric_rows = []
            for col in lb.columns:
                s = e.stats.get(col)
                if s is None:
                    continue
                d = e.deltas.get(col)
                metric_rows.append(
                    {
                        "task": col[0],
                        "metric": col[1],
                        "higher": lb.higher_is_better[col],
                        "stat": s,
                        "ci": present.ci_text(s),
                        "cell": present.metric_cell(e, col, lb.higher_is_better[col]),
                        "d": d,
                        "dci": (
                            f"{present.fmt_signed(d.low)} to {present.fmt_signed(d.high)}"
                            if d and d.low is not None and d.high is not None
                            else ""
                        ),
                    }
                )
            topic_tables = []
            if run_scores and run_scores.get(e.model):
                for task, recs in sorted(
                    run_scores[e.model].items(),
                    key=lambda kv: (kv[0] not in ingest.TASK_ORDER, kv[0]),
                ):
                    base_recs = (
                        run_scores.get(base.model, {}).get(task)
                        if base is not None and not e.is_base
                        else None
                    )
                    hib = {m: hib_for(task, m) for m in _metric_names(recs)}
                    topic_tables.append((task, _topic_table(recs, base_recs, hib)))
            config = (
                scrub(e.train.get("config"))
                if e.train and isinstance(e.train.get("config"), dict)
                else None
            )
            w.text(
                f"runs/{e.slug}.html",
                run_tpl.render(
                    root="../",
                    page="run",
                    title=e.label,
                    e=e,
                    base=base,
                    metric_rows=metric_rows,
                    topic_tables=topic_tables,
                    has_scores=bool(e.folder and e.folder.scores_path),
                    train=scrub(e.train) if e.train else None,
                    facts=_train_facts(e.train) if e.train else [],
                    loss_chart=_loss_chart(e.train) if e.train else Markup(""),
                    config=config,
                    lm_eval_config=scrub(e.lm_eval_config) if e.lm_eval_config else None,
                    card=card,
                    has_compare=has_compare,
                    adapter_display=_rel_display(e.adapter_dir) if e.adapter_dir else None,
                    **common,
                ),
            )
            if has_compare:
                payload = _compare_payload(e, base, run_scores, hib_for)
                w.text(
                    f"compare/{e.slug}.data.js",
                    "window.MB_COMPARE = " + js_json(payload) + ";\n",
                )
                w.text(
                    f"compare/{e.slug}.html",
                    cmp_tpl.render(
                        root="../",
                        page="compare",
                        title=f"Compare: {e.label} vs {base.label}",
                        e=e,
                        base=base,
                        tasks=list(payload["tasks"]),
                        slug=e.slug,
                        preview=_preview(payload),
                        **common,
                    ),
                )

        ds = dataset_info.load_dataset_view(dataset) if dataset is not None else None
        w.text(
            "dataset.html",
            env.get_template("dataset.html.j2").render(
                root="",
                page="dataset",
                title="Dataset",
                ds=ds,
                dataset_display=_rel_display(dataset) if dataset is not None else "",
                **common,
            ),
        )
        adapters = sorted(
            {
                str((e.train or {}).get("config_name") or e.model)
                for e in lb.entries
                if e.origin == "marinebench" and not e.is_base
            }
        )
        w.text(
            "method.html",
            env.get_template("method.html.j2").render(
                root="",
                page="method",
                title="Method",
                runs=lb.runs,
                adapters=adapters,
                bootstrap=[(r.name, (r.summary or {}).get("bootstrap")) for r in lb.runs],
                base_models=sorted(
                    {
                        str((r.manifest or {}).get("base_model") or "smollm2-135m-instruct")
                        for r in lb.runs
                    }
                )
                or ["smollm2-135m-instruct"],
                **common,
            ),
        )
        files, size = w.files, w.bytes
    index_bytes = (Path(out) / "index.html").stat().st_size
    return {
        "models": len(lb.entries),
        "columns": len(lb.columns),
        "compare_pages": len(compare_slugs),
        "files": files,
        "bytes": size,
        "index_bytes": index_bytes,
    }
