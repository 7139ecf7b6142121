"""Render the static site (index, run, compare, dataset, method pages, and the data track's
page when there is one) from ingested results.

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
from markupsafe import Markup, escape

from benchmark.atomic import atomic_dir
from benchmark.contracts import results as contract
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.contracts.protocol import (
    ALPHA,
    POWER,
    PRIMARY_ADAPTER,
    PRIMARY_METRICS,
    PRIMARY_SETS,
    endpoints,
)
from benchmark.contracts.site import PRIMARY, PROTOCOL_DOC
from benchmark.leaderboard import (
    datatrack_page,
    evalsets,
    headline,
    ingest,
    per_sample,
    present,
    svg,
    verdicts,
)
from benchmark.leaderboard.dataset_page import dataset_page_view
from benchmark.leaderboard.markdown import render_markdown
from benchmark.leaderboard.redact import redact_text, scrub
from benchmark.paths import REPO_ROOT, SITE_SRC

MAX_CHART_MODELS = headline.MAX_CHART_MODELS


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
    # let a long metric name break after its underscores (headers of narrow columns)
    env.filters["wbr"] = lambda text: Markup(str(escape(text)).replace("_", "_<wbr>"))
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


def _ordered_entries(
    entries: list[ingest.Entry], columns: list[ingest.Key], hib: dict[ingest.Key, bool | None]
) -> tuple[list[ingest.Entry], ingest.Key | None]:
    """One set's rows, best first by the primary column (transfer ROUGE-L where the set has it)."""
    primary = PRIMARY if PRIMARY in columns else (columns[0] if columns else None)
    if primary is None:
        return sorted(entries, key=lambda e: e.label), None
    sign = 1 if hib[primary] is False else -1

    def key(e: ingest.Entry) -> tuple:
        s = e.stats.get(primary)
        return (s is None, sign * s.mean if s else 0.0, e.label)

    return sorted(entries, key=key), primary


def _gain_chart(
    ordered: list[ingest.Entry], columns: list[ingest.Key], hib: dict[ingest.Key, bool | None]
) -> dict[str, Any]:
    tuned = [e for e in ordered if e.deltas]
    shown = tuned[:MAX_CHART_MODELS]
    panels = [p for col in columns if (p := headline.gain_panel(shown, col, hib[col])) is not None]
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


def build_site(
    results: Path, out: Path, dataset: Path | None, datatrack: Path | None = None
) -> dict[str, Any]:
    """Render the whole site into `out` (replaced atomically). Returns counts for the caller.
    `datatrack` (build/datatrack) adds data.html when it holds a results summary."""
    try:
        return _build_site(results, out, dataset, datatrack)
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
    eval_set: evalsets.EvalSet


def _build_site(
    results: Path, out: Path, dataset: Path | None, datatrack: Path | None
) -> dict[str, Any]:
    lb = ingest.load(Path(results))
    track = datatrack_page.load(datatrack)
    scores = per_sample.scores_by_run(lb)
    views = [_set_view(lb, s, scores) for s in lb.sets]
    pages = _model_pages(lb, [e for v in views for e in v["ordered"]], scores)
    with atomic_dir(out) as tmp:
        common = {
            "results_display": _rel_display(lb.results_root),
            "n_models": len(lb.entries),
            "has_datatrack": track is not None,
        }
        site = _Site(lb, _env(), SiteWriter(tmp), common)
        shutil.copytree(SITE_SRC / "static", tmp / "static")
        _write_index(site, views, pages)
        for v in views:
            _write_chart_page(site, v)
        copied: set[str] = set()
        groups = {id(v["set"]): v["groups"] for v in views}
        for page in pages:
            _write_model_pages(site, page, groups[id(page.eval_set)], copied)
        _write_dataset_page(site, dataset)
        _write_method_page(site, views)
        if track is not None:
            _write_data_page(site, track)
        files, size = site.writer.files, site.writer.bytes
    return {
        "models": len(lb.entries),
        "columns": len(lb.columns),
        "compare_pages": sum(p.has_compare for p in pages),
        "datatrack_rows": len(track.rows) - 1 if track is not None else None,
        "files": files,
        "bytes": size,
        "index_bytes": (Path(out) / "index.html").stat().st_size,
    }


def _model_pages(
    lb: ingest.Leaderboard, ordered: list[ingest.Entry], scores: dict[int, Any]
) -> list[_ModelPage]:
    bases = {id(e.folder): e for e in lb.entries if e.is_base and e.folder is not None}
    set_of = {id(e): s for s in lb.sets for e in s.entries}
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
        pages.append(_ModelPage(e, base, run_scores, has_compare, set_of[id(e)]))
    return pages


def _set_view(lb: ingest.Leaderboard, s: evalsets.EvalSet, scores: dict[int, Any]) -> dict:
    """Everything the leaderboard shows of one evaluation set: its headline (recall and transfer
    side by side), its secondary table and charts, and its runs' protocol verdicts."""
    hib = lb.higher_is_better
    ordered, primary = _ordered_entries(s.entries, s.columns, hib)
    groups = headline.groups_of(s.columns, s.entries)
    run_scores = [scores[id(r)] for r in s.runs if id(r) in scores]
    for g in groups:
        g.ref_words = headline.reference_words(g.task, run_scores)
    shown = headline.headline_keys(groups)
    columns = [c for c in s.columns if c not in shown]
    return {
        "set": s,
        "ordered": ordered,
        "primary": primary,
        "groups": groups,
        "head_rows": headline.table_rows(ordered, groups, hib),
        "head_panels": headline.gain_panels(ordered, groups, hib),
        "length_charts": headline.length_charts(ordered, groups),
        "columns": columns,
        "chart": _gain_chart(ordered, columns, hib),
        "verdicts": [(r, v) for r in s.runs if (v := verdicts.verdicts(r.summary)) is not None],
    }


def _write_index(site: _Site, views: list[dict], pages: list[_ModelPage]) -> None:
    hib = site.lb.higher_is_better
    compare = {p.entry.slug for p in pages if p.has_compare}
    sections = []
    for v in views:
        ordered, columns = v["ordered"], v["columns"]
        sections.append(
            {
                **v,
                "rows": [
                    {
                        "e": e,
                        "cells": [present.metric_cell(e, col, hib[col]) for col in columns],
                        "eff": present.efficiency_cells(e),
                        "compare": e.slug in compare,
                    }
                    for e in ordered
                ],
                "compare": compare,
                "columns": [
                    {"task": t, "metric": m, "dir": present.direction(hib[(t, m)])}
                    for t, m in columns
                ],
                "head_dirs": {
                    (g.task, m): present.direction(hib[(g.task, m)])
                    for g in v["groups"]
                    for m in g.metrics
                },
                "tasks": sorted({c[0] for c in columns}, key=contract.task_sort_key),
                "any_train": any(e.train for e in ordered),
                "has_marinebench": any(e.origin == "marinebench" for e in ordered),
            }
        )
    site.render(
        "index.html",
        "index.html.j2",
        root="",
        page="index",
        title="Leaderboard",
        sections=sections,
        efficiency=present.EFFICIENCY,
        n_rows=len(site.lb.entries),
        primary_adapter=PRIMARY_ADAPTER,
    )


def _write_chart_page(site: _Site, view: dict) -> None:
    """One set's gain charts of every secondary metric, on their own page: inline on the index
    they would double its size."""
    if not view["chart"]["panels"]:
        return
    site.render(
        f"charts/{view['set'].anchor}.html",
        "charts.html.j2",
        root="../",
        page="charts",
        title=f"Every metric's change: {view['set'].name}",
        s=view,
    )


def _write_model_pages(
    site: _Site, page: _ModelPage, groups: list[headline.Group], copied: set[str]
) -> None:
    """The run page, the adapter card and the compare page of one row, and its raw files."""
    for raw in page.entry.raw:
        _copy_raw(site.writer, raw, copied)
    card = _write_card(site, page.entry)
    head = headline.model_rows(page.entry, groups, site.lb.higher_is_better) if groups else []
    _write_run_page(site, page, card, groups, head)
    if page.has_compare:
        _write_compare_page(site, page, groups, head)


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
                "dir": present.direction(higher),
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


def _write_run_page(
    site: _Site, page: _ModelPage, card: dict[str, str] | None, groups, head
) -> None:
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
        eval_set=page.eval_set,
        groups=groups,
        head=head,
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


def _write_compare_page(site: _Site, page: _ModelPage, groups, head) -> None:
    e, base = page.entry, page.base
    payload = per_sample.compare_payload(e, base, page.scores, site.hib_for)
    site.writer.text(f"compare/{e.slug}.data.js", "window.MB_COMPARE = " + js_json(payload) + ";\n")
    claims = {g.task: g for g in groups}
    site.render(
        f"compare/{e.slug}.html",
        "compare.html.j2",
        root="../",
        page="compare",
        title=f"Compare: {e.label} vs {base.label}",
        e=e,
        base=base,
        eval_set=page.eval_set,
        groups=groups,
        head=head,
        head_tasks=[(t, claims[t]) for t in payload["tasks"] if t in claims],
        other_tasks=[t for t in payload["tasks"] if t not in claims],
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


def _write_data_page(site: _Site, track: datatrack_page.DataTrack) -> None:
    site.render(
        "data.html",
        "data.html.j2",
        root="",
        page="data",
        title="Data track",
        **datatrack_page.page_context(track),
    )


def _protocol_doc() -> dict[str, object] | None:
    """docs/protocol.md rendered for the method page (the site is static and offline, so the
    text itself goes in, not a link to the repository)."""
    path = REPO_ROOT / PROTOCOL_DOC
    if not path.is_file():
        return None
    return render_markdown(path.read_text(encoding="utf-8"))


def _write_method_page(site: _Site, views: list[dict]) -> None:
    """What the metrics measure (from the registry), the protocol and its verdicts, the
    statistics, and the commands."""
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
        metrics=[
            (m, present.direction(contract.higher_is_better(m.name))) for m in contract.METRICS
        ],
        runs=lb.runs,
        adapters=adapters,
        bootstrap=[(r.name, (r.summary or {}).get("bootstrap")) for r in lb.runs],
        base_models=sorted(base_models) or [DEFAULT_MODEL],
        verdict_sets=[v for v in views if v["verdicts"]],
        protocol=_protocol_doc(),
        protocol_doc=PROTOCOL_DOC,
        primary_adapter=PRIMARY_ADAPTER,
        primary_sets=PRIMARY_SETS,
        primary_metrics=PRIMARY_METRICS,
        alpha=ALPHA,
        power=POWER,
        n_endpoints=len(endpoints()),
        claim_text=headline.CLAIM_TEXT,
    )
