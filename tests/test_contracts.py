"""The declared contracts (benchmark/contracts/): a metric registered once reaches every stage,
and the site reads one results folder and nothing else."""

from __future__ import annotations

import json
import re
import shutil

from benchmark.contracts import results as contract
from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS
from benchmark.leaderboard.render import build_site
from benchmark.leaderboard.synthetic import write_tree

# Lower is better, and named so that no guess from the name could tell: only the registry can.
NINTH = contract.Metric(
    "hallucination_rate",
    contract.GENERATION_TASKS,
    True,
    "Share of claims in the answer that the reference contradicts.",
)


def _index_headers(index: str) -> list[tuple[str, str, str]]:
    """(task, metric, direction) of every metric column of the leaderboard's tables (the
    headline, then the secondary table), in order; a length column reads (task, "length", "·")."""
    return [
        (task, "length" if "answer length" in rest else metric, arrow)
        for task, metric, rest, arrow in re.findall(
            r'data-task="([^"]+)"[^>]*><button type="button" class="sort" title="[^ ]+ ?([^ :"]*)'
            r'([^"]*)">.*?<span class="dir">([↑↓·])',
            index,
        )
    ]


def test_a_ninth_metric_registered_once_reaches_the_summary_and_every_page(tmp_path, monkeypatch):
    generation_metrics = len(contract.metrics_of("marine_qa"))
    monkeypatch.setattr(contract, "METRICS", (*contract.METRICS, NINTH))
    assert len(contract.metrics_of("marine_qa")) == generation_metrics + 1

    paths = write_tree(tmp_path, n_adapters=2, n_samples=16)
    records = [json.loads(line) for line in (paths["run"] / contract.SCORES_FILE).open()]
    for r in records:
        assert set(r["metrics"]) == {m.name for m in contract.metrics_of(r["task"])}
    summary = json.loads((paths["run"] / contract.SUMMARY_FILE).read_text())
    for task in contract.GENERATION_TASKS:
        assert {"mean", "ci_low", "ci_high", "n"} <= set(
            summary["models"]["base"][task][NINTH.name]
        )
        assert "p_value" in summary["comparisons"]["smollm2-lora-r16"][task][NINTH.name]
    assert summary["higher_is_better"][NINTH.name] is False

    site = tmp_path / "site"
    info = build_site(paths["results"], site, paths["dataset"])
    ours = sum(len(contract.metrics_of(t)) for t in contract.task_names())
    assert info["columns"] == ours
    index = (site / "index.html").read_text()
    headers = _index_headers(index)
    arrow = {True: "↓", False: "↑", None: "·"}
    headline = dict(PRIMARY_SETS).values()
    for task in contract.task_names():  # every column once, each with its direction
        shown = [(m, d) for t, m, d in headers if t == task]
        registered = [(m.name, arrow[m.lower_is_better]) for m in contract.metrics_of(task)]
        if task in headline:  # the primary metrics and the length first, then the rest in order
            length = [(m, d) for m, d in registered if m in ("answer_words", "length_ratio")]
            first = [(m, d) for m, d in registered if m in PRIMARY_METRICS]
            rest = [(m, d) for m, d in registered if (m, d) not in first + length]
            assert shown == first + [("length", "·")] + rest
        else:
            assert shown == registered
        if task in contract.GENERATION_TASKS:
            assert (NINTH.name, "↓") in shown
    run = (site / "runs" / "smollm2-lora-r16.html").read_text()
    assert re.search(f'{NINTH.name} <span class="dir" title="lower is better">↓', run)
    method = (site / "method.html").read_text()
    assert f'<th scope="row">{NINTH.name}</th><td>lower</td><td>{NINTH.meaning}</td>' in method
    # a metric that describes the answers (their length) is neither better nor worse
    assert '<th scope="row">answer_words</th><td>neither</td>' in method
    data = (site / "compare" / "smollm2-lora-r16.data.js").read_text()
    payload = json.loads(data.removeprefix("window.MB_COMPARE = ").removesuffix(";\n"))
    qa = payload["tasks"]["marine_qa"]
    assert qa["metrics"] == [m.name for m in contract.metrics_of("marine_qa")]
    assert qa["higher"][qa["metrics"].index(NINTH.name)] is False


def test_the_site_reads_one_results_folder(tmp_path):
    paths = write_tree(tmp_path, n_adapters=2, n_samples=8)
    shutil.rmtree(paths["adapters"])  # the adapters' training records live on in the results
    site = tmp_path / "site"
    build_site(paths["results"], site, paths["dataset"])
    index = (site / "index.html").read_text()
    assert "No adapter of this set has a <code>train_metrics.json</code>" not in index
    assert " MB</td>" in index  # efficiency columns
    run = (site / "runs" / "smollm2-lora-r16.html").read_text()
    assert "Tokens seen" in run and '<svg class="chart line"' in run
    assert (site / "cards" / "smollm2-lora-r16.html").is_file()
