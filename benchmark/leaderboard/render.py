"""Render the static site (index, run, compare, dataset, method pages) from ingested results.

Everything is written through one function that redacts secrets, into a temp folder that
replaces the output folder only when the whole site rendered (benchmark.atomic.atomic_dir).
Output bytes depend only on the inputs: no clocks, sorted traversal, relative links only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from benchmark.atomic import atomic_dir
from benchmark.contracts import results as contract
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.contracts.site import PRIMARY
from benchmark.leaderboard import ingest, per_sample, present, svg
from benchmark.leaderboard.dataset_page import dataset_page_view
from benchmark.leaderboard.markdown import render_markdown
from benchmark.leaderboard.redact import redact_text, scrub
from benchmark.paths import SITE_SRC

MAX_CHART_MODELS = 8


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
        per_sample.forget_topic_means()


@dataclass
class _Site:
    """What every page writer of one build shares."""

    lb: ingest.Leaderboard
    env: Environment
    writer: SiteWriter
    common: dict[str, Any]

    def hib_for(self, task: str, metric: str) -> bool:
        return ingest.higher_is_better(self.lb.higher_is_better, (task, metric))

    def render(self, rel: str, template: str, **context: Any) -> None:
        page = self.env.get_template(template).render(**context, **self.common)
        self.writer.text(rel, page)


@dataclass
class _ModelPage:
    """One leaderboard row's pages: its run page, and a compare page where both it and its
    run's base have per-sample scores."""

    entry: ingest.Entry
    base: ingest.Entry | None
    scores: dict[str, dict[str, list[dict]]] | None  # its run's per-sample records
    has_compare: bool


def _build_site(results: Path, out: Path, dataset: Path | None) -> dict[str, Any]:
    lb = ingest.load(Path(results))
    ordered, primary = _ordered_entries(lb)
    pages = _model_pages(lb, ordered)
    with atomic_dir(out) as tmp:
        common = {"results_display": _rel_display(lb.results_root), "n_models": len(lb.entries)}
        site = _Site(lb, _env(), SiteWriter(tmp), common)
        shutil.copytree(SITE_SRC / "static", tmp / "static")
        _write_index(site, ordered, primary, pages)
        copied: set[str] = set()
        for page in pages:
            _write_model_pages(site, page, copied)
        _write_dataset_page(site, dataset)
        _write_method_page(site)
        files, size = site.writer.files, site.writer.bytes
    return {
        "models": len(lb.entries),
        "columns": len(lb.columns),
        "compare_pages": sum(p.has_compare for p in pages),
        "files": files,
        "bytes": size,
        "index_bytes": (Path(out) / "index.html").stat().st_size,
    }


def _model_pages(lb: ingest.Leaderboard, ordered: list[ingest.Entry]) -> list[_ModelPage]:
    scores = per_sample.scores_by_run(lb)
    bases = {id(e.folder): e for e in lb.entries if e.is_base and e.folder is not None}
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
        pages.append(_ModelPage(e, base, run_scores, has_compare))
    return pages


def _write_index(site: _Site, ordered, primary, pages: list[_ModelPage]) -> None:
    lb = site.lb
    compare = {p.entry.slug for p in pages if p.has_compare}
    rows = [
        {
            "e": e,
            "cells": [present.metric_cell(e, col, lb.higher_is_better[col]) for col in lb.columns],
            "eff": present.efficiency_cells(e),
            "compare": e.slug in compare,
        }
        for e in ordered
    ]
    site.render(
        "index.html",
        "index.html.j2",
        root="",
        page="index",
        title="Leaderboard",
        rows=rows,
        columns=[
            {"task": t, "metric": m, "higher": lb.higher_is_better[(t, m)]} for t, m in lb.columns
        ],
        tasks=sorted({c[0] for c in lb.columns}, key=contract.task_sort_key),
        efficiency=present.EFFICIENCY,
        any_train=any(e.train for e in lb.entries),
        primary=primary,
        chart=_gain_chart(lb, ordered, primary),
        runs=lb.runs,
    )


def _write_model_pages(site: _Site, page: _ModelPage, copied: set[str]) -> None:
    """The run page, the adapter card and the compare page of one row, and its raw files."""
    for raw in page.entry.raw:
        _copy_raw(site.writer, raw, copied)
    card = _write_card(site, page.entry)
    _write_run_page(site, page, card)
    if page.has_compare:
        _write_compare_page(site, page)


def _write_card(site: _Site, e: ingest.Entry) -> dict[str, str] | None:
    """The adapter card as a page and as raw markdown; links to both for the run page."""
    if e.card_path is None:
        return None
    text = e.card_path.read_text(encoding="utf-8", errors="replace")
    site.writer.text(f"files/adapters/{e.slug}/README.md", text)
    site.render(
        f"cards/{e.slug}.html",
        "card.html.j2",
        root="../",
        page="card",
        title=f"Adapter card: {e.label}",
        e=e,
        card=render_markdown(text),
    )
    return {"html": f"../cards/{e.slug}.html", "raw": f"../files/adapters/{e.slug}/README.md"}


def _metric_rows(site: _Site, e: ingest.Entry) -> list[dict[str, Any]]:
    """Every metric of one row with its CI, and its change against the base with that CI."""
    rows = []
    for col in site.lb.columns:
        s = e.stats.get(col)
        if s is None:
            continue
        d = e.deltas.get(col)
        higher = site.lb.higher_is_better[col]
        rows.append(
            {
                "task": col[0],
                "metric": col[1],
                "higher": higher,
                "stat": s,
                "ci": present.ci_text(s),
                "cell": present.metric_cell(e, col, higher),
                "d": d,
                "dci": (
                    f"{present.fmt_signed(d.low)} to {present.fmt_signed(d.high)}"
                    if d and d.low is not None and d.high is not None
                    else ""
                ),
            }
        )
    return rows


def _topic_tables(site: _Site, page: _ModelPage) -> list[tuple[str, dict[str, Any]]]:
    """Per task, the metrics per topic from scores.jsonl (with the change against the base)."""
    e, base = page.entry, page.base
    if not (page.scores and page.scores.get(e.model)):
        return []
    tables = []
    for task in sorted(page.scores[e.model], key=contract.task_sort_key):
        recs = page.scores[e.model][task]
        base_recs = (
            page.scores.get(base.model, {}).get(task)
            if base is not None and not e.is_base
            else None
        )
        hib = {m: site.hib_for(task, m) for m in per_sample.metric_names(recs)}
        tables.append((task, per_sample.topic_table(recs, base_recs, hib)))
    return tables


def _write_run_page(site: _Site, page: _ModelPage, card: dict[str, str] | None) -> None:
    e, train = page.entry, page.entry.train
    config = train.get("config") if train else None
    site.render(
        f"runs/{e.slug}.html",
        "run.html.j2",
        root="../",
        page="run",
        title=e.label,
        e=e,
        base=page.base,
        metric_rows=_metric_rows(site, e),
        topic_tables=_topic_tables(site, page),
        has_scores=bool(e.folder and e.folder.scores_path),
        train=scrub(train) if train else None,
        facts=_train_facts(train) if train else [],
        loss_chart=_loss_chart(train) if train else Markup(""),
        config=scrub(config) if isinstance(config, dict) else None,
        lm_eval_config=scrub(e.lm_eval_config) if e.lm_eval_config else None,
        card=card,
        has_compare=page.has_compare,
        adapter_display=_rel_display(Path(e.adapter)) if e.adapter else None,
    )


def _write_compare_page(site: _Site, page: _ModelPage) -> None:
    e, base = page.entry, page.base
    payload = per_sample.compare_payload(e, base, page.scores, site.hib_for)
    site.writer.text(f"compare/{e.slug}.data.js", "window.MB_COMPARE = " + js_json(payload) + ";\n")
    site.render(
        f"compare/{e.slug}.html",
        "compare.html.j2",
        root="../",
        page="compare",
        title=f"Compare: {e.label} vs {base.label}",
        e=e,
        base=base,
        tasks=list(payload["tasks"]),
        slug=e.slug,
        preview=per_sample.preview(payload),
    )


def _write_dataset_page(site: _Site, dataset: Path | None) -> None:
    site.render(
        "dataset.html",
        "dataset.html.j2",
        root="",
        page="dataset",
        title="Dataset",
        ds=dataset_page_view(dataset) if dataset is not None else None,
        dataset_display=_rel_display(dataset) if dataset is not None else "",
    )


def _write_method_page(site: _Site) -> None:
    """What the metrics measure (from the registry), the statistics, and the commands."""
    lb = site.lb
    adapters = sorted(
        {
            str((e.train or {}).get("config_name") or e.model)
            for e in lb.entries
            if e.origin == "marinebench" and not e.is_base
        }
    )
    base_models = {str((r.manifest or {}).get("base_model") or DEFAULT_MODEL) for r in lb.runs}
    site.render(
        "method.html",
        "method.html.j2",
        root="",
        page="method",
        title="Method",
        tasks=contract.TASKS,
        metrics=contract.METRICS,
        runs=lb.runs,
        adapters=adapters,
        bootstrap=[(r.name, (r.summary or {}).get("bootstrap")) for r in lb.runs],
        base_models=sorted(base_models) or [DEFAULT_MODEL],
    )
