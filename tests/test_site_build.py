"""The leaderboard site renders from contract-shaped results: pages, escaping, secrets, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from site_fixtures import HELLASWAG_ACC, HELLASWAG_ACC_STDERR, write_hellaswag_results

from benchmark.cli import main as cli_main
from benchmark.contracts import results as contract
from benchmark.contracts.adapter import TRAIN_METRICS_FILE
from benchmark.contracts.protocol import PRIMARY_ADAPTER, PRIMARY_METRICS, endpoints
from benchmark.errors import UserError
from benchmark.leaderboard import ingest, per_sample, present
from benchmark.leaderboard.render import build_site, js_json
from benchmark.leaderboard.synthetic import SECRET_LIKE, write_results_run, write_tree
from benchmark.paths import REPO_ROOT

ENV_SECRET = "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987654321"
# Not token-shaped: only the "values of secret env vars" rule can catch it.
PLAIN_ENV_SECRET = "gm-plainLookingGeminiKey-55aa77"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("site-build")
    paths = write_tree(root, n_adapters=3, n_samples=24, hostile=True)
    write_hellaswag_results(paths["results"] / "other-runs" / "pythia" / "results_2025-01-01.json")
    # the evaluator's cache under results/.cache holds lm-eval JSON too: never rows
    write_hellaswag_results(paths["results"] / ".cache" / "abc123" / "results.json", "cached/model")
    tm = contract.training_dir(paths["run"], "smollm2-lora-r8") / TRAIN_METRICS_FILE
    metrics = json.loads(tm.read_text())
    metrics["config"]["comment"] = f"key was {PLAIN_ENV_SECRET}"
    metrics["config"]["GOOGLE_API_KEY"] = "AIzaSyFakeGoogleKeyForTests-0123456789abc"
    tm.write_text(json.dumps(metrics))
    return paths


@pytest.fixture(scope="module")
def site(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site-out") / "site"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", ENV_SECRET)
    mp.setenv("GEMINI_API_KEY", PLAIN_ENV_SECRET)
    try:
        build_site(tree["results"], out, tree["dataset"])
    finally:
        mp.undo()
    return out


def _all_text(site: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(site.rglob("*")) if p.is_file())


def test_every_page_is_written(site):
    for rel in (
        "index.html",
        "dataset.html",
        "method.html",
        "static/style.css",
        "static/leaderboard.js",
        "static/compare.js",
        "runs/base.html",
        "runs/smollm2-lora-r16.html",
        "compare/smollm2-lora-r16.html",
        "compare/smollm2-lora-r16.data.js",
        "cards/smollm2-lora-r16.html",
        "files/smollm2-135m-instruct/summary.json",
        "files/smollm2-135m-instruct/lm_eval/smollm2-lora-r16/results.json",
    ):
        assert (site / rel).is_file(), rel
    assert not (site / "compare" / "base.html").exists()  # nothing to compare the base with


def _table(html: str, table_id: str) -> str:
    start = html.index(f'id="{table_id}"')
    return html[start : html.index("</table>", start)]


def _summary(tree) -> dict:
    return json.loads((tree["run"] / contract.SUMMARY_FILE).read_text())


def test_index_table_is_accessible_and_has_all_columns(site):
    html = (site / "index.html").read_text()
    # two question sets: the benchmark's questions, then the foreign lm-eval file on its own
    assert html.count('<section class="evalset"') == 2
    head = _table(html, "set-1-headline")
    table = _table(html, "set-1-board")
    for t in (head, table):
        assert "<caption" in t
        assert t[t.index("<tbody>") :].count('<th scope="row"') == 4  # base + 3 adapters
    # the headline: recall and transfer side by side, four primary metrics and length each
    groups = re.findall(r'scope="colgroup" colspan="(\d+)"[^>]*data-claim="(\w+)">(\w+)', head)
    assert groups == [("5", "recall", "Recall"), ("5", "transfer", "Transfer")]
    head_cols = head[: head.index("<tbody>")].count('<th scope="col"')
    assert head_cols == 1 + 2 * (len(PRIMARY_METRICS) + 1)
    assert head.count('<button type="button" class="sort"') == head_cols
    assert 'aria-sort="descending"' in head  # the initial order (transfer rougeL) is announced
    # every other column of ours is in the secondary table, plus 4 efficiency columns
    n_cols = table[: table.index("<tbody>")].count('<th scope="col"')
    ours = sum(len(contract.metrics_of(t)) for t in contract.task_names())
    headline_cols = 2 * (len(PRIMARY_METRICS) + 2)  # primary metrics, answer_words, length_ratio
    assert n_cols == 1 + ours - headline_cols + 4
    assert table.count('<button type="button" class="sort"') == n_cols
    # significance is marked with a symbol or text, not only colour; the secondary table shows
    # score and change only (p and MDE are on the run pages, and the headline has them)
    assert re.search(r'<td data-v="[0-9.e-]+">[0-9.]+<i class="d up">\+[0-9.]+ ▲</i></td>', table)
    assert " n.s.</i>" in table and "MDE " not in table
    assert "run page has the full numbers" in html
    # the gain charts of every secondary metric are on their own page, linked from the index
    assert 'href="charts/set-1.html"' in html and "more-charts" in html
    charts = (site / "charts" / "set-1.html").read_text()
    assert charts.count('<svg class="chart gain"') > 8 and '<rect class="mde"' in charts
    # efficiency columns come from the training records (train_metrics.json) in the results
    assert "%</td>" in table and " MB</td>" in table
    # the headline charts are inline SVG with an accessible title, with MDE bands
    assert html.count('<svg class="chart gain"') >= 8 and "<title>marine_qa · rougeL" in html
    assert '<rect class="mde"' in html and html.count('<svg class="chart length"') == 2
    # the foreign lm-eval model has its own set, with no efficiency columns
    foreign = _table(html, "set-2-board")
    assert "pythia" in foreign and "efficiency" not in foreign
    assert "hellaswag" not in table and "pythia" not in head + table
    # relative links only, no external resources
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # per-sample data is not on the index
    assert "Corals are animals" not in html


def test_every_delta_shows_its_p_value_and_minimum_detectable_effect(tree, site):
    summary = _summary(tree)
    html = (site / "index.html").read_text()
    head = _table(html, "set-1-headline")
    row = head[head.index('href="runs/smollm2-lora-r16.html"') :]
    row = row[: row.index("</tr>")]
    for metric in PRIMARY_METRICS:
        for task in ("marine_recall", "marine_qa"):
            c = summary["comparisons"]["smollm2-lora-r16"][task][metric]
            assert f"MDE {present.fmt_value(c['mde'])}</span>" in row
            assert present.p_text(c["p_value"]) in row
    assert row.count("MDE ") == 2 * (len(PRIMARY_METRICS) + 1)  # and the length's
    run = (site / "runs" / "smollm2-lora-r16.html").read_text()
    c = summary["comparisons"]["smollm2-lora-r16"]["marine_qa"]["rouge2"]
    assert re.search(
        rf"<td>marine_qa</td>\s*<th scope=\"row\">rouge2 .*?<td class=\"num\">"
        rf"{re.escape(present.fmt_p(c['p_value']))}</td>\s*<td class=\"num\">"
        rf"{re.escape(present.fmt_value(c['mde']))}</td>",
        run,
        re.S,
    )


def test_topic_tables_show_the_paired_change_and_its_mde(tree, site):
    from benchmark.evaluation.stats import min_detectable_effect

    summary = _summary(tree)
    assert per_sample.min_detectable_effect(0.1, 80) == pytest.approx(
        min_detectable_effect(0.1, 80), rel=1e-9
    )
    assert per_sample.min_detectable_effect(0.1, 1) is None
    run = (site / "runs" / "smollm2-lora-r16.html").read_text()
    table = run[run.index("marine_qa: mean per topic") :]
    table = table[: table.index("</table>")]
    total = table[table.index('<tr class="total">') :]
    cells = re.findall(
        r'<td class="num">([^<]+)(?:<span class="dd[^"]*">([^<]+)</span>)?'
        r'(?:<span class="dd mde">MDE ([^<]+)</span>)?</td>',
        total,
    )
    metrics = per_sample.metric_names(
        [
            r
            for r in ingest.iter_scores(tree["run"] / contract.SCORES_FILE)
            if r["task"] == "marine_qa"
        ]
    )
    rouge = cells[1 + metrics.index("rougeL")]  # after n
    c = summary["comparisons"]["smollm2-lora-r16"]["marine_qa"]["rougeL"]
    assert rouge[1] == present.fmt_signed(c["delta"])  # the (all) row is the whole comparison
    assert rouge[2] == present.fmt_value(c["mde"])


def test_length_is_shown_and_never_coloured_as_gain_or_loss(tree, site):
    summary = _summary(tree)
    lb = ingest.load(tree["results"])
    assert lb.higher_is_better[("marine_qa", "answer_words")] is None
    html = (site / "index.html").read_text()
    head = _table(html, "set-1-headline")
    lengths = re.findall(r'<td class="len" data-v="[^"]*" title="[^"]*">(.*?)</td>', head, re.S)
    assert len(lengths) == 2 * 4  # recall and transfer, four models
    for cell in lengths:
        assert "<small>words</small>" in cell and " ref.</span>" in cell
        assert 'class="d up"' not in cell and 'class="d down"' not in cell
    base = summary["models"]["base"]["marine_qa"]
    assert f"{base['answer_words']['mean']:.1f} <small>words" in head
    assert f"×{base['length_ratio']['mean']:.2f} ref." in head
    # the compare page shows each answer's length in words, counted as answer_words counts
    data = (site / "compare" / "smollm2-lora-r16.data.js").read_text()
    payload = json.loads(data.removeprefix("window.MB_COMPARE = ").removesuffix(";\n"))
    qa = payload["tasks"]["marine_qa"]
    assert qa["generated"] and not payload["tasks"]["marine_mc"]["generated"]
    assert qa["higher"][qa["metrics"].index("answer_words")] is None
    for row in qa["rows"]:
        assert row[8] == [len(row[3].split()), len(row[4].split()), len(row[5].split())]
        assert row[7][qa["metrics"].index("answer_words")] == len(row[5].split())
    cmp_html = (site / "compare" / "smollm2-lora-r16.html").read_text()
    first = payload["tasks"][next(iter(payload["tasks"]))]["rows"][0]
    assert f'<span class="meta words">{first[8][1]} words</span>' in cmp_html


def test_two_dataset_hashes_are_ranked_apart(tmp_path):
    paths = write_tree(tmp_path, n_adapters=2, n_samples=16, dataset=False)
    adapter = [("smollm2-lora-r16", paths["adapters"] / "smollm2-lora-r16")]
    other = tmp_path / "elsewhere" / "my.jsonl"
    write_results_run(
        paths["results"],
        adapter,
        run="my-questions",
        seed=7,
        dataset_hash="e" * 64,
        dataset_source=f"jsonl:{other}",
        tasks=("marine_qa", "marine_mc"),
    )
    # a second run on the benchmark's own questions joins the benchmark's set
    write_results_run(paths["results"], adapter, run="rerun", seed=9)
    lb = ingest.load(paths["results"])
    assert [(s.name, s.kind) for s in lb.sets] == [
        ("build/dataset", "folder"),
        ("my.jsonl", "jsonl"),
    ]
    main, mine = lb.sets
    assert [r.name for r in main.runs] == ["rerun", "smollm2-135m-instruct"]
    assert {e.run for e in mine.entries} == {"my-questions"} and len(mine.entries) == 2
    assert {e.run for e in main.entries} == {"rerun", "smollm2-135m-instruct"}

    site = tmp_path / "site"
    build_site(paths["results"], site, None)
    html = (site / "index.html").read_text()
    sections = html.split('<section class="evalset"')[1:]
    assert len(sections) == 2
    assert '<span class="kind">Questions</span> my.jsonl</h2>' in sections[1]
    assert "JSONL file · questions hash <code>eeeeeeeeeeee</code>" in sections[1]
    assert "Not the benchmark's own questions" in sections[1]
    # every table and chart of a set holds its own models only
    for section, other_run in ((sections[0], "my-questions"), (sections[1], "rerun")):
        assert f"runs/{other_run}-" not in section and f"{other_run} / " not in section
        for table in re.findall(r"<table.*?</table>", section, re.S):
            labels = re.findall(r'<a href="runs/([^"]+)\.html"', table)
            assert labels and not any(label.startswith(other_run) for label in labels)
            if section is sections[1]:
                assert all(label.startswith("my-questions-") for label in labels)
    mine_head = _table(sections[1], "set-2-headline")
    assert mine_head[mine_head.index("<tbody>") :].count('<th scope="row"') == 2
    assert "Recall" not in mine_head  # that run has no recall task
    assert sections[0].count('<th scope="row"') == 2 * 5  # 2 runs: base, r8, r16 + base, r16
    # a chart compares the set's own adapters: the jsonl set's charts show one bar each
    charts = re.findall(r'<svg class="chart gain".*?</svg>', sections[1], re.S)
    assert charts and all(c.count('<rect class="bar') == 1 for c in charts)
    # its deltas are against its own base: the run page says which questions
    run = (site / "runs" / "my-questions-smollm2-lora-r16.html").read_text()
    assert 'question set <a href="../index.html#set-2">my.jsonl</a>' in run
    summary = json.loads((paths["results"] / "my-questions" / contract.SUMMARY_FILE).read_text())
    c = summary["comparisons"]["smollm2-lora-r16"]["marine_qa"]["rougeL"]
    assert f"MDE {present.fmt_value(c['mde'])}" in mine_head
    # the verdicts of a run on other questions are labelled so on the method page
    method = (site / "method.html").read_text()
    assert "not the benchmark's own questions: shown for information" in method


def test_two_versions_of_one_file_are_told_apart_by_hash(tmp_path):
    results = tmp_path / "results"
    for run, h in (("v1", "a" * 64), ("v2", "b" * 64)):
        write_results_run(
            results,
            [],
            run=run,
            n_samples=8,
            dataset_hash=h,
            dataset_source="jsonl:/data/my.jsonl",
            tasks=("marine_qa",),
        )
    write_results_run(
        results,
        [],
        run="limited",
        n_samples=8,
        dataset_hash="a" * 64,
        dataset_source="jsonl:/data/my.jsonl",
        tasks=("marine_qa",),
        limit=5,
    )
    names = sorted(s.name for s in ingest.load(results).sets)
    assert names == [
        "my.jsonl (questions aaaaaaaaaaaa)",
        "my.jsonl (questions bbbbbbbbbbbb)",
        "my.jsonl, first 5 questions per task",
    ]


def test_results_without_the_recall_task_have_no_recall_group(tmp_path):
    older = tuple(t for t in contract.task_names() if "recall" not in t)
    paths = write_tree(tmp_path, n_adapters=2, n_samples=12, tasks=older)
    site = tmp_path / "site"
    build_site(paths["results"], site, paths["dataset"])
    html = (site / "index.html").read_text()
    head = _table(html, "set-1-headline")
    assert re.findall(r'data-claim="(\w+)"', head) == ["transfer"]
    assert "marine_recall" not in html
    run = (site / "runs" / "smollm2-lora-r16.html").read_text()
    assert "Headline: transfer</h2>" in run and "Recall" not in run
    method = (site / "method.html").read_text()
    verdicts = method[method.index('<table class="plain verdicts">') :]
    verdicts = verdicts[: verdicts.index("</table>")]
    assert verdicts.count('<tr class="verdict-not-evaluated">') == len(PRIMARY_METRICS)
    assert "Holm across the 4 endpoints tested" in method


def test_foreign_lm_eval_results_become_rows_and_columns(tree):
    lb = ingest.load(tree["results"])
    foreign = [e for e in lb.entries if e.origin == "lm-eval"]
    assert [e.label for e in foreign] == ["EleutherAI/pythia-160m"]  # not the .cache copy
    stat = foreign[0].stats[("hellaswag", "acc")]
    assert stat.mean == pytest.approx(HELLASWAG_ACC)
    assert stat.low == pytest.approx(HELLASWAG_ACC - 1.96 * HELLASWAG_ACC_STDERR)
    assert stat.high == pytest.approx(HELLASWAG_ACC + 1.96 * HELLASWAG_ACC_STDERR)
    assert stat.n == 10042 and stat.ci == "stderr"
    assert {("hellaswag", "acc_norm"), ("arc_easy", "acc"), ("arc_easy", "acc_norm")} <= set(
        lb.columns
    )
    # MarineBench cannot tell which questions it was scored on: a set of its own, last
    assert lb.sets[-1].kind == "lm-eval" and lb.sets[-1].entries == foreign
    assert all(e not in lb.sets[0].entries for e in foreign)
    # our own results use the bootstrap CI from summary.json, not lm-eval's stderr
    ours = next(e for e in lb.entries if e.model == "smollm2-lora-r16")
    assert ours.stats[("marine_qa", "rougeL")].ci == "bootstrap"
    assert ours.deltas[("marine_qa", "rougeL")].p is not None
    # lower-is-better comes from lm-eval's higher_is_better or the metric name
    assert lb.higher_is_better[("marine_qa_ppl", "bits_per_byte")] is False
    assert lb.higher_is_better[("hellaswag", "acc")] is True


def test_a_lone_lm_eval_file_builds_a_site(tmp_path):
    write_hellaswag_results(tmp_path / "results" / "r.json", pretrained="<script>alert(3)</script>")
    info = build_site(tmp_path / "results", tmp_path / "site", tmp_path / "no-dataset")
    assert info["models"] == 1 and info["columns"] == 4 and info["compare_pages"] == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in index and "<script>alert(3)" not in index
    assert "hellaswag" in index and "0.289" in index
    assert "No dataset folder" in (tmp_path / "site" / "dataset.html").read_text()
    run = next((tmp_path / "site" / "runs").glob("*.html")).read_text()
    assert "No <code>scores.jsonl</code>" in run


def test_untrusted_text_is_inert(site):
    cmp_html = (site / "compare" / "smollm2-lora-r16.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cmp_html
    assert "&lt;img src=x onerror=" in cmp_html
    assert "<script>alert" not in cmp_html and "<img" not in cmp_html
    data = (site / "compare" / "smollm2-lora-r16.data.js").read_text()
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in data
    assert "<" not in data and "\u2028" not in data
    card = (site / "cards" / "smollm2-lora-r16.html").read_text()
    assert "&lt;script&gt;alert('card')&lt;/script&gt;" in card and "<script>alert" not in card
    dataset = (site / "dataset.html").read_text()
    assert "&lt;b&gt;raw html&lt;/b&gt;" in dataset


def test_js_json_cannot_break_out_of_a_script():
    payload = {
        "a": "</script><script>alert(1)</script>",
        "b": "<!-- x",
        "c": "line\u2028sep\u2029",
        "d": "&",
    }
    text = js_json(payload)
    assert "</script" not in text.lower() and "<!--" not in text
    assert "\u2028" not in text and "\u2029" not in text and "&" not in text
    assert json.loads(text) == payload


def test_no_secret_reaches_the_site(site):
    text = _all_text(site)
    assert SECRET_LIKE not in text  # train config's hub_token
    assert ENV_SECRET not in text  # the environment is never dumped
    assert PLAIN_ENV_SECRET not in text  # a secret env var's value is redacted wherever it shows up
    assert "AIzaSyFakeGoogleKeyForTests" not in text
    assert "hf_ThisIsAFakeTokenValue1234567890" not in text  # token= inside lm-eval model_args
    assert "[redacted]" in text
    # non-secret keys that merely contain "token" survive
    run = (site / "runs" / "smollm2-lora-r8.html").read_text()
    assert "Tokens seen" in run and "Tokens per second" in run
    assert "&#34;GOOGLE_API_KEY&#34;: &#34;[redacted]&#34;" in run
    assert (
        "&#34;max_length&#34;: 256" in run and "&#34;comment&#34;: &#34;key was [redacted]" in run
    )


def test_run_page_has_config_loss_curve_topics_and_links(site):
    html = (site / "runs" / "smollm2-lora-r16.html").read_text()
    assert '<svg class="chart line"' in html and "training loss" in html
    assert "coral_reefs" in html and "(all)" in html  # per-topic metrics from scores.jsonl
    for href in (
        "../compare/smollm2-lora-r16.html",
        "../cards/smollm2-lora-r16.html",
        "../files/adapters/smollm2-lora-r16/README.md",
        "../files/smollm2-135m-instruct/summary.json",
        "../files/smollm2-135m-instruct/lm_eval/smollm2-lora-r16/results.json",
    ):
        assert f'href="{href}"' in html
        assert (site / "runs" / href).resolve().is_file(), href


def test_dataset_and_method_pages(site):
    ds = (site / "dataset.html").read_text()
    assert "near_dedup_minhash" in ds and '<svg class="chart hbar"' in ds
    assert re.search(r"<th scope=\"row\">train</th><td class=\"num\">80</td>", ds)
    assert "Curated marine-biology question/answer pairs." in ds  # rendered card body
    method = (site / "method.html").read_text()
    for cmd in (
        "nox -s benchmark",
        "marinebench dataset build",
        "marinebench train --config configs/smollm2-lora-r16.yaml",
        "marinebench evaluate",
        "marinebench site build",
        "lm_eval --model hf --model_args pretrained=build/models/smollm2-135m-instruct,"
        "peft=build/adapters/smollm2-lora-r16 --include_path tasks --tasks marine",
    ):
        assert cmd in method
    assert "sign-flip permutation" in method and "percentile bootstrap" in method
    assert "Minimum detectable effect (MDE)" in method


def test_method_page_states_each_claim_of_the_protocol(tree, site):
    summary = _summary(tree)
    recorded = summary["protocol"][PRIMARY_ADAPTER]["claims"]
    method = (site / "method.html").read_text()
    table = method[method.index('<table class="plain verdicts">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(
        r'<tr class="verdict-([\w-]+)"><th scope="row">(\w+)</th><td>(\w+)</td>'
        r"<td>(\w+)</td>(.*?)</tr>",
        table,
        re.S,
    )
    assert [(claim, task, metric) for _, claim, task, metric, _ in rows] == endpoints()
    for (verdict, *_, cells), c in zip(rows, recorded, strict=True):
        expected = "held" if c["holds"] else "did-not-hold"
        assert verdict == expected
        assert (">✔</span> held" if c["holds"] else ">✘</span> did not hold") in cells
        nums = re.findall(r'<td class="num">([^<]+)</td>', cells)
        assert nums == [
            str(c["n"]),
            present.fmt_signed(c["delta"]),
            present.fmt_p(c["p_value"]),
            present.fmt_p(c["p_holm"]),
            present.fmt_value(c["mde"]),
        ]
    held = sum(c["holds"] for c in recorded)
    assert f"{held} of 4 held" in method or held == 0
    # the index links each set's verdict line to it
    index = (site / "index.html").read_text()
    assert f"Protocol verdict for <strong>{PRIMARY_ADAPTER}</strong>" in index
    assert 'href="method.html#verdicts"' in index
    # the registered protocol's own text is on the page (the site is static and offline)
    protocol = (REPO_ROOT / "docs" / "protocol.md").read_text()
    heading = re.search(r"^## (.+)$", protocol, re.M).group(1)
    assert f"<h2>{heading}</h2>" in method and 'id="protocol"' in method


def test_output_is_deterministic(tree, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_site(tree["results"], a, tree["dataset"])
    build_site(tree["results"], b, tree["dataset"])
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_missing_optional_inputs_are_reported_not_fatal(tmp_path, build_root):
    paths = write_tree(tmp_path, n_adapters=2, n_samples=10, dataset=False, train_metrics=False)
    (paths["run"] / "scores.jsonl").unlink()
    info = build_site(paths["results"], tmp_path / "site", tmp_path / "dataset")
    assert info["compare_pages"] == 0
    site = tmp_path / "site"
    index = (site / "index.html").read_text()
    assert "No adapter of this set has a <code>train_metrics.json</code>" in index
    run = (site / "runs" / "smollm2-lora-r8.html").read_text()
    assert "not found" in run or "no <code>train_metrics.json</code>" in run
    assert "No <code>scores.jsonl</code>" in run
    assert "No dataset folder" in (site / "dataset.html").read_text()


@pytest.mark.parametrize(
    "victim", ["summary.json", "manifest.json", "lm_eval/base/results.json", "stray.json"]
)
def test_malformed_json_is_a_user_error_naming_the_file(tmp_path, victim):
    paths = write_tree(tmp_path, n_adapters=1, n_samples=8, dataset=False)
    bad = paths["run"] / victim
    bad.write_text('{"results": {"x": 1,', encoding="utf-8")
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("previous site")
    with pytest.raises(UserError, match=re.escape(str(bad))):
        build_site(paths["results"], out, None)
    assert (out / "index.html").read_text() == "previous site"  # old site left intact


def test_bad_scores_line_names_file_and_line(tmp_path):
    paths = write_tree(tmp_path, n_adapters=1, n_samples=8, dataset=False)
    scores = paths["run"] / "scores.jsonl"
    lines = scores.read_text().splitlines()
    lines[2] = lines[2][:-5]
    scores.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=re.escape(f"{scores}:3:")):
        build_site(paths["results"], tmp_path / "site", None)


def test_cli_build_and_errors(tree, tmp_path, capsys):
    out = tmp_path / "cli-site"
    rc = cli_main(
        [
            "site",
            "build",
            "--results",
            str(tree["results"]),
            "--out",
            str(out),
            "--dataset",
            str(tree["dataset"]),
        ]
    )
    assert rc == 0 and (out / "index.html").is_file()
    assert "compare pages" in capsys.readouterr().out
    rc = cli_main(
        ["site", "build", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and "nope" in err and "marinebench evaluate" in err


def test_serve_binds_loopback_and_serves_the_site(site):
    import threading
    import urllib.request

    from benchmark.leaderboard.serve import make_server

    server = make_server(site, 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
            assert resp.status == 200 and b'id="set-1-headline"' in resp.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    with pytest.raises(UserError, match="site build"):
        make_server(site / "runs", 0)


def test_perf_site_writes_its_figures(tmp_path, monkeypatch):
    from benchmark.perf import site as perf_site

    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path))
    assert perf_site.main(["--runs", "2", "--samples", "12", "--repeat", "1"]) == 0
    figures = json.loads((tmp_path / "perf" / "site.json").read_text())
    assert figures["runs"] == 2 and figures["samples"] == 12 and figures["models"] == 3
    assert figures["seconds"] > 0 and figures["index_kb"] > 0
