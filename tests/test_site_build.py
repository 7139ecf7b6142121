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
from benchmark.errors import UserError
from benchmark.leaderboard import ingest
from benchmark.leaderboard.render import build_site, js_json
from benchmark.leaderboard.synthetic import SECRET_LIKE, write_tree

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


def test_index_table_is_accessible_and_has_all_columns(site):
    html = (site / "index.html").read_text()
    table = html[html.index('<table id="leaderboard"') : html.index("</table>")]
    assert "<caption" in table
    body = table[table.index("<tbody>") :]
    assert body.count('<th scope="row"') == 5  # base + 3 adapters + the foreign lm-eval model
    # one sortable header per metric + model + 4 efficiency columns, each a real <button>
    n_cols = table[: table.index("<tbody>")].count('<th scope="col"')
    ours = sum(len(contract.metrics_of(t)) for t in contract.task_names())
    assert n_cols == 1 + ours + 4 + 4  # model, our metrics, hellaswag/arc_easy acc + acc_norm, eff
    assert table.count('<button type="button" class="sort"') == n_cols
    assert 'aria-sort="descending"' in table  # the initial order is announced
    # significance is marked with a symbol and text, not only colour
    assert re.search(
        r'class="d up">\+[0-9.]+ <span class="mk">▲</span> <span class="note">better, p', table
    )
    assert "n.s." in table
    # efficiency columns come from the training records (train_metrics.json) in the results
    assert "%</td>" in table and " MB</td>" in table
    # the gain chart is inline SVG with an accessible title
    assert html.count('<svg class="chart gain"') >= 8 and "<title>marine_qa · rougeL" in html
    # relative links only, no external resources
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # per-sample data is not on the index
    assert "Corals are animals" not in html


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
    assert "No adapter has a <code>train_metrics.json</code>" in (site / "index.html").read_text()
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
            assert resp.status == 200 and b'<table id="leaderboard"' in resp.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    with pytest.raises(UserError, match="site build"):
        make_server(site / "runs", 0)


def test_bench_site_writes_its_figures(tmp_path, monkeypatch):
    from benchmark.bench import site as bench_site

    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path))
    assert bench_site.main(["--runs", "2", "--samples", "12", "--repeat", "1"]) == 0
    figures = json.loads((tmp_path / "bench" / "site.json").read_text())
    assert figures["runs"] == 2 and figures["samples"] == 12 and figures["models"] == 3
    assert figures["seconds"] > 0 and figures["index_kb"] > 0
