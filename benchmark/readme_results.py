"""`marinebench report`: the README's results section, generated from build/ (never typed by hand).

It replaces the text between the README's `<!-- results:start -->` and `<!-- results:end -->`
markers with tables read from one results folder, build/results/<run>/ (its summary, manifest
and the adapters' training records that evaluation copied in), and build/benchmark.json:
recall and transfer side by side on the protocol's primary metrics and the answers' length,
every change with its p-value and minimum detectable effect; the protocol's verdicts claim by
claim (docs/protocol.md); then the secondary results. When the data track has results
(build/datatrack, `nox -s datatrack`), its table goes between `<!-- datatrack:start -->` and
`<!-- datatrack:end -->`, from the same view as the site's data page.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_write_text
from benchmark.contracts import datatrack as dt
from benchmark.contracts.adapter import TRAIN_METRICS_FILE
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.contracts.protocol import PRIMARY_ADAPTER, PRIMARY_METRICS, PRIMARY_SETS
from benchmark.contracts.results import (
    MANIFEST_FILE,
    SUMMARY_FILE,
    higher_is_better,
    training_dir,
)
from benchmark.errors import UserError
from benchmark.leaderboard import datatrack_page
from benchmark.leaderboard.evalsets import BENCHMARK_KINDS, KIND_WORDS, source_name
from benchmark.leaderboard.headline import CLAIM_TEXT, RATIO, WORDS
from benchmark.leaderboard.verdicts import HELD, NOT_EVALUATED, verdicts

START, END = "<!-- results:start -->", "<!-- results:end -->"
DT_START, DT_END = "<!-- datatrack:start -->", "<!-- datatrack:end -->"
#: secondary results of the other tasks, in this order where the summary has them
OTHER = (
    ("marine_mc", "acc"),
    ("marine_mc", "acc_norm"),
    ("marine_recall_mc", "acc"),
    ("marine_qa_ppl", "bits_per_byte"),
    ("marine_recall_ppl", "bits_per_byte"),
    ("retention_qa", "rougeL"),
    ("retention_qa", "token_f1"),
    ("retention_qa", "bertscore_f1"),
)
#: the length-controlled variants of the primary metrics (docs/protocol.md: secondary)
LC_SUFFIX = "_lc"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="regenerate the README's results section from build/")
    p.add_argument("--readme", type=Path, default=paths.REPO_ROOT / "README.md")
    p.add_argument("--run", default=DEFAULT_MODEL, help="results run name")
    p.add_argument("--print", action="store_true", help="print the section instead of writing")
    p.set_defaults(func=_run)


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing: run `nox -s benchmark` first") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def _fmt(stat: dict | None, words: bool = False) -> str:
    if not stat:
        return "–"
    if words:
        return f"{stat['mean']:.1f} [{stat['ci_low']:.1f}, {stat['ci_high']:.1f}]"
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def _delta(comp: dict | None, metric: str) -> str:
    """The second line of a cell: delta, p-value and minimum detectable effect, e.g.
    "+0.016 (p=0.16, MDE 0.031)"; ✔ marks p < 0.05 on a metric with a direction (a length
    changes, it does not improve)."""
    if not comp:
        return ""
    words = metric == WORDS
    digits = ".1f" if words else ".3f"
    mde = comp.get("mde")
    mde_text = f", MDE {mde:{digits}}" if isinstance(mde, int | float) and mde == mde else ""
    star = " ✔" if comp["p_value"] < 0.05 and higher_is_better(metric) is not None else ""
    return f"<br>{comp['delta']:+{digits}} (p={comp['p_value']:.2g}{mde_text}){star}"


def _cell(summary: dict, model: str, task: str, metric: str) -> str:
    stat = summary["models"][model].get(task, {}).get(metric)
    comp = summary.get("comparisons", {}).get(model, {}).get(task, {}).get(metric)
    return _fmt(stat, metric == WORDS) + _delta(comp, metric)


def _length_cell(summary: dict, model: str, task: str) -> str:
    stats = summary["models"][model].get(task, {})
    if WORDS not in stats:
        return "–"
    ratio = stats.get(RATIO)
    comp = summary.get("comparisons", {}).get(model, {}).get(task, {}).get(WORDS)
    text = f"{stats[WORDS]['mean']:.1f} words" + (f" (×{ratio['mean']:.2f})" if ratio else "")
    return text + _delta(comp, WORDS)


def _has(summary: dict, task: str, metric: str) -> bool:
    return any(metric in tasks.get(task, {}) for tasks in summary["models"].values())


def _n(summary: dict, task: str) -> int | None:
    ns = [
        stat.get("n")
        for tasks in summary["models"].values()
        for stat in tasks.get(task, {}).values()
        if isinstance(stat.get("n"), int)
    ]
    return max(ns, default=None)


def _headline(summary: dict, models: list[str], suffix: str = "") -> list[str]:
    """Recall and transfer side by side: one column per (claim, primary metric) and the
    answers' length, for the claims the run evaluated (an older run has no recall task)."""
    columns = []  # (header, task, metric or None for the length)
    for claim, task in PRIMARY_SETS:
        for metric in PRIMARY_METRICS:
            if _has(summary, task, metric + suffix):
                columns.append((f"{claim} {metric}{suffix}", task, metric + suffix))
        if not suffix and _has(summary, task, WORDS):
            columns.append((f"{claim} length", task, None))
    if not columns:
        return []
    lines = ["| model | " + " | ".join(h for h, _, _ in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for model in models:
        cells = [
            _length_cell(summary, model, task)
            if metric is None
            else _cell(summary, model, task, metric)
            for _, task, metric in columns
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _claims_text(summary: dict) -> str:
    parts = []
    for claim, task in PRIMARY_SETS:
        if not any(task in tasks for tasks in summary["models"].values()):
            continue
        what = CLAIM_TEXT.get(claim, (claim, ""))[1]
        n = _n(summary, task)
        parts.append(f"**{claim}** ({task}: {what}" + (f"; {n} questions" if n else "") + ")")
    return " and ".join(parts)


def _verdicts(summary: dict, registered: bool) -> list[str]:
    v = verdicts(summary)
    if v is None:
        return [
            f"**Protocol verdicts** ([docs/protocol.md](docs/protocol.md)): this summary records "
            f"none for `{PRIMARY_ADAPTER}` (evaluated before the protocol, or without that "
            "adapter); rerun `marinebench evaluate`."
        ]
    lines = [
        f"**Protocol verdicts** ([docs/protocol.md](docs/protocol.md)), `{v.adapter}` against "
        f"the base model, claim by claim: {v.sentence()}. A claim holds when its Holm-adjusted "
        "p < α and the change is a gain."
        + (
            ""
            if registered
            else " These are not the benchmark's own questions: the protocol's claims are not "
            "about them, so this is for information only."
        ),
        "",
        "| claim | task | metric | n | Δ | p | Holm p | MDE | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in v.claims:
        if c.verdict == NOT_EVALUATED:
            lines.append(
                f"| {c.claim} | {c.task} | {c.metric} | – | – | – | – | – | not evaluated |"
            )
            continue
        mde = f"{c.mde:.3f}" if c.mde is not None and c.mde == c.mde else "–"
        verdict = "**held**" if c.verdict == HELD else "did not hold"
        lines.append(
            f"| {c.claim} | {c.task} | {c.metric} | {c.n} | {c.delta:+.3f} | {c.p:.2g} | "
            f"{c.p_holm:.2g} | {mde} | {verdict} |"
        )
    return lines


def render_section(run: str) -> str:
    results = paths.results_dir() / run
    summary = _load(results / SUMMARY_FILE)
    manifest = _load(results / MANIFEST_FILE)
    models = list(summary["models"])
    comps = summary.get("comparisons", {})
    kind, source = source_name(manifest)
    retention = str(manifest.get("retention_hash") or "")
    lines = [
        f"Generated by `marinebench report` from `build/results/{run}/`: questions from "
        f"`{source}` ({KIND_WORDS.get(kind, kind)}, hash `{str(manifest.get('dataset_hash', ''))[:12]}`"
        + (f"; retention set hash `{retention[:12]}`" if retention else "")
        + "). Mean [95% bootstrap CI]; second line: the change against the base model, its "
        "paired permutation-test p-value and the minimum detectable effect of that comparison "
        "at 80% power (MDE); ✔ = p < 0.05, unadjusted (the protocol's Holm-adjusted verdicts "
        "follow the first table). Length (mean answer words, and their ratio to the reference's "
        "per question) describes the answers: neither direction is better.",
    ]
    head = _headline(summary, models)
    if head:
        lines += ["", f"**Headline**: {_claims_text(summary)}, greedy generation:", "", *head]
    lines += ["", *_verdicts(summary, kind in BENCHMARK_KINDS)]
    lc = _headline(summary, models, LC_SUFFIX)
    if lc:
        lines += [
            "",
            "**Length-controlled** (secondary: each answer cut to its reference's length in "
            "words, docs/protocol.md):",
            "",
            *lc,
        ]

    present = [(t, m) for t, m in OTHER if _has(summary, t, m)]
    if present:
        lines += [
            "",
            "**Other tasks** (secondary, unadjusted p: multiple choice, perplexity, and the "
            "non-marine retention set):",
            "",
            "| model | " + " | ".join(f"{t} {m}" for t, m in present) + " |",
            "|---" * (len(present) + 1) + "|",
        ]
        for model in models:
            cells = []
            for t, m in present:
                stat = summary["models"][model].get(t, {}).get(m)
                cells.append(_fmt(stat) + _delta(comps.get(model, {}).get(t, {}).get(m), m))
            lines.append(f"| {model} | " + " | ".join(cells) + " |")

    rows = []
    for entry in manifest.get("models", []):
        if not entry.get("adapter"):
            continue
        metrics_path = training_dir(results, entry["name"]) / TRAIN_METRICS_FILE
        if not metrics_path.is_file():
            continue
        tm = json.loads(metrics_path.read_text())
        rows.append(
            f"| {entry['name']} | {tm.get('quantization') or tm.get('dtype', '–')} | "
            f"{tm['trainable_params']:,} ({tm['trainable_pct']:.2f}%) | {tm.get('epochs', '–')} | "
            f"{tm['tokens_seen']:,} | {tm['wall_time_s']:.0f} s | {tm['tokens_per_s']:.0f} | "
            f"{tm['mfu']:.2f} | {tm['peak_memory_mb']:.0f} MB |"
        )
    if rows:
        lines += [
            "",
            "**Training cost** (this machine):",
            "",
            "| adapter | base | trainable | epochs | tokens | time | tok/s | MFU | peak mem |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    pipeline_record = paths.build_dir() / "benchmark.json"
    if pipeline_record.is_file():
        record = json.loads(pipeline_record.read_text())
        stages = ", ".join(
            f"{s['name']} " + ("cached" if s["cached"] else f"{s['seconds']:.0f} s")
            for s in record["stages"]
        )
        lines += ["", f"**Last `nox -s benchmark`**: {record['total_s']:.0f} s in all ({stages})."]
        computed = [s.get("computed_seconds") for s in record["stages"]]
        if all(c is not None for c in computed) and any(s["cached"] for s in record["stages"]):
            lines.append(
                "Each stage when it last actually ran: "
                + ", ".join(f"{s['name']} {s['computed_seconds']:.0f} s" for s in record["stages"])
                + " (trainings run side by side on CPU, so their times overlap)."
            )
    return "\n".join(lines) + "\n"


def replace_section(readme: str, section: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise UserError(f"README has no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{section}{END}", readme)


def _md_text(text: str) -> str:
    """Untrusted text (a submission's name) as inert markdown table text."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _dt_delta(d, higher: bool | None, against: str) -> str:
    if d is None:
        return ""
    p = f"p={d.p:.2g}" if d.p is not None else "no test"
    star = " ✔" if d.p is not None and d.p < 0.05 and higher is not None else ""
    return f"<br>vs {against} {d.delta:+.3f} ({p}){star}"


def _dt_cell(row: datatrack_page.Row, col: datatrack_page.Column) -> str:
    s = row.stats.get(col.key)
    if s is None:
        return "–"
    ci = f" [{s.low:.3f}, {s.high:.3f}]" if s.low is not None and s.high is not None else ""
    return (
        f"{s.mean:.3f}{ci}"
        + _dt_delta(row.vs_base.get(col.key), col.higher, "base")
        + _dt_delta(row.vs_curated.get(col.key), col.higher, dt.CURATED)
    )


def _dt_dropped(row: datatrack_page.Row) -> str:
    if row.dropped is None:
        return "–"
    steps: dict[str, int] = {}
    for step, _, n in row.drops:
        steps[step] = steps.get(step, 0) + n
    detail = ", ".join(f"{_md_text(k)} {n}" for k, n in steps.items())
    return f"{row.dropped}" + (f" ({detail})" if detail else "")


def render_datatrack_section(root: Path | None = None) -> str | None:
    """The data-track table (same columns as the site's data page), or None without results."""
    root = root or dt.root(paths.build_dir())
    track = datatrack_page.load(root)
    if track is None:
        return None
    order = datatrack_page.order_column(track.columns)
    budget = f" ({track.token_budget:,} tokens)" if track.token_budget else ""
    lines = [
        f"**Data track** (generated by `marinebench report` from `build/datatrack/` after "
        "`nox -s datatrack`): the model, "
        f"recipe and evaluation are fixed and each submission is a training set, trained under "
        f"the same token budget{budget}. Mean [95% bootstrap CI]; then the change against the "
        f"base model and against `{dt.CURATED}`, with the paired permutation-test p-value on the "
        "same questions (✔ = p < 0.05, unadjusted)"
        + (f"; best first by {order.claim} {order.metric}" if order else "")
        + ".",
        "",
        "| submission | pairs | tokens | epochs | dropped | "
        + " | ".join(f"{c.claim} {c.metric}" for c in track.columns)
        + " |",
        "|---" * (5 + len(track.columns)) + "|",
    ]
    for r in track.rows:
        name = _md_text(r.name)
        if r.fraction is not None and not r.is_curated:
            name += f" ({r.fraction_text})"
        facts = [
            f"{r.pairs:,}" if r.pairs is not None else "–",
            f"{r.tokens_seen:,}" if r.tokens_seen is not None else "–",
            f"{r.epochs:.2f}" if r.epochs is not None else "–",
            _dt_dropped(r),
        ]
        cells = [_dt_cell(r, c) for c in track.columns]
        lines.append(f"| {name} | " + " | ".join(facts + cells) + " |")
    return "\n".join(lines) + "\n"


def replace_datatrack_section(readme: str, section: str) -> str:
    """The README with its data-track section replaced; unchanged when it has no markers."""
    pattern = re.compile(re.escape(DT_START) + r".*?" + re.escape(DT_END), re.S)
    return pattern.sub(lambda _: f"{DT_START}\n{section}{DT_END}", readme)


def _run(args: argparse.Namespace) -> int:
    section = render_section(args.run)
    track = render_datatrack_section()
    if args.print:
        print(section)
        if track is not None:
            print(track)
        return 0
    text = replace_section(args.readme.read_text(), section)
    if track is not None:
        text = replace_datatrack_section(text, track)
    atomic_write_text(args.readme, text)
    print(
        f"updated the results section of {args.readme}"
        + (" and its data-track table" if track is not None and DT_START in text else "")
    )
    return 0
