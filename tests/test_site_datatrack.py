"""The data track's leaderboard: data.html (a row per training set with its headline scores
against the base and against curated, and the scaling plots), its place in the site and its
stage key, and the README's data-track table."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser_helpers import SCREENSHOTS, Watched, launch
from datatrack_fixtures import (
    CURATED_ADAPTER,
    HOSTILE,
    HOSTILE_RULE,
    SUBMISSIONS,
    TOKEN_BUDGET,
    adapter_of,
    write_datatrack,
)

from benchmark.cli import main as cli_main
from benchmark.contracts import datatrack as dt
from benchmark.contracts.protocol import PRIMARY_METRICS, PRIMARY_SETS
from benchmark.leaderboard import cli as site_cli
from benchmark.leaderboard.render import build_site
from benchmark.leaderboard.synthetic import write_tree
from benchmark.readme_results import (
    DT_END,
    DT_START,
    END,
    START,
    render_datatrack_section,
    replace_datatrack_section,
)

HEADLINE = [(claim, task, m) for claim, task in PRIMARY_SETS for m in PRIMARY_METRICS]
BY_NAME = {s[0]: s for s in SUBMISSIONS}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    """A main benchmark build (one adapter) and a data track beside it."""
    root = tmp_path_factory.mktemp("datatrack") / "build"
    paths = write_tree(root, n_adapters=1, n_samples=8)
    paths.update(write_datatrack(root))
    return paths


@pytest.fixture(scope="module")
def site(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("datatrack-site") / "site"
    build_site(tree["results"], out, tree["dataset"], tree["root"])
    return out


@pytest.fixture(scope="module")
def summary(tree) -> dict:
    return json.loads(tree["summary"].read_text(encoding="utf-8"))


class _Rows(HTMLParser):
    """The body rows of one table: per row its attributes and, per cell, its text pieces."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.body = table_id, False, False
        self.rows: list[tuple[dict, list[list[str]]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tbody":
            self.body = True
        elif self.body and tag == "tr":
            self.rows.append((attrs, []))
        elif self.body and tag in ("td", "th"):
            self.rows[-1][1].append([])

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = self.body = False

    def handle_data(self, data):
        if self.body and self.rows and self.rows[-1][1] and data.strip():
            self.rows[-1][1][-1].append(data.strip())


def _rows(html: str) -> dict[str, list[list[str]]]:
    parser = _Rows("datatrack-board")
    parser.feed(html)
    return {attrs["data-name"]: cells for attrs, cells in parser.rows}


def _signed(x: float) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "±") + f"{abs(x):.3f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def test_every_submission_has_a_row_with_its_facts(site):
    rows = _rows((site / "data.html").read_text(encoding="utf-8"))
    assert list(rows)[0] == "base"
    assert set(rows) == {"base", *BY_NAME}
    for name, (_, _, fraction, pairs, per_pair, rule, drops) in BY_NAME.items():
        cells = rows[name]
        assert rule in cells[0]
        assert cells[1] == [f"{pairs:,}"] and cells[2] == [f"{TOKEN_BUDGET:,}"]
        assert cells[3] == [f"{TOKEN_BUDGET / (pairs * per_pair):.2f}"]
        dropped = sum(sum(r.values()) for r in drops.values())
        assert cells[4][0] == str(dropped)
        for step, reasons in drops.items():
            for reason, n in reasons.items():
                assert f"{step} · {reason}: {n}" in cells[4]
        if fraction is not None and name != dt.CURATED:
            assert f"nested subset: {Fraction(fraction)} of curated" in cells[0]
    assert [c[0] for c in rows["base"][1:5]] == ["—"] * 4


def test_headline_cells_show_ci_and_both_paired_changes(site, summary):
    rows = _rows((site / "data.html").read_text(encoding="utf-8"))
    refs = summary[dt.REFERENCE_COMPARISONS_KEY][CURATED_ADAPTER]
    for name in ["base", *BY_NAME]:
        model = "base" if name == "base" else adapter_of(name)
        for i, (_, task, metric) in enumerate(HEADLINE):
            cell = rows[name][5 + i]
            stat = summary["models"][model][task][metric]
            assert cell[:2] == [
                f"{stat['mean']:.3f}",
                f"{stat['ci_low']:.3f}–{stat['ci_high']:.3f}",
            ]
            expected = []
            if name != "base":
                c = summary["comparisons"][model][task][metric]
                expected += [f"vs base {_signed(c['delta'])}", _p(c["p_value"])]
            if name != dt.CURATED:
                c = refs[model][task][metric]
                expected += [f"vs curated {_signed(c['delta'])}", _p(c["p_value"])]
            assert [t for t in cell[2:] if t not in "▲▼"] == expected, (name, task, metric)


def test_rows_are_base_first_then_best_first_by_transfer_rougeL(site, summary):
    rows = list(_rows((site / "data.html").read_text(encoding="utf-8")))
    means = {
        name: summary["models"][adapter_of(name)]["marine_qa"]["rougeL"]["mean"] for name in BY_NAME
    }
    assert rows == ["base", *sorted(means, key=lambda n: -means[n])]


def test_untrusted_names_and_rules_stay_text(site):
    html = (site / "data.html").read_text(encoding="utf-8")
    assert "<img" not in html and "<script>alert" not in html and "<b>bold" not in html
    assert "&lt;img src=x onerror=&#34;alert(9)&#34;&gt;" in html  # table and plot labels
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; reason" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "&lt;img src=x oner…" in svg


def _plots(html: str) -> list[str]:
    return re.findall(r'<svg class="chart scaling".*?</svg>', html, re.S)


def _attr(tag: str, name: str) -> str:
    return re.search(rf' {name}="([^"]*)"', tag).group(1)


def test_plot_per_headline_metric_on_a_log_axis_with_ci_bands(site):
    plots = _plots((site / "data.html").read_text(encoding="utf-8"))
    assert len(plots) == len(HEADLINE)
    curve_sizes = sorted(s[3] for s in SUBMISSIONS if s[2] is not None)  # 80 ... 640
    for svg in plots:
        points = [
            (int(_attr(t, "data-pairs")), float(_attr(t, "cx")))
            for t in re.findall(r'<circle class="dot s2 point curve-point"[^>]*>', svg)
        ]
        assert [p for p, _ in points] == curve_sizes
        xs = [x for _, x in points]
        # each subset doubles the one before: equal steps on a log axis (a linear one would
        # give steps of 1:2:4)
        steps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
        assert min(steps) > 20 and max(steps) - min(steps) < 0.3
        # the scaling curve's CI band: low bounds left to right, then high bounds back
        band = re.search(r'<polygon class="band curve-band[^"]*" points="([^"]*)"', svg).group(1)
        corners = [tuple(map(float, p.split(","))) for p in band.split()]
        assert len(corners) == 2 * len(curve_sizes)
        assert [round(x, 1) for x, _ in corners] == [round(x, 1) for x in xs + xs[::-1]]
        n = len(curve_sizes)
        assert all(corners[i][1] >= corners[2 * n - 1 - i][1] for i in range(n))  # low below high
        # the base model: a line and its band; the other submissions: labelled squares
        assert 'class="band base-band' in svg and 'class="ref base-line"' in svg
        others = re.findall(r'<rect class="bar point other-point"[^>]*data-pairs="(\d+)"', svg)
        assert sorted(map(int, others)) == sorted(s[3] for s in SUBMISSIONS if s[2] is None)
        labels = re.findall(r'<text class="label other-label"[^>]*>([^<]*)<title>', svg)
        assert {"noisy", "short", "self"} <= set(labels)
        assert re.findall(r'class="tick x-tick"[^>]*>([^<]+)<', svg) == ["100", "200", "500"]


def test_x_ticks_follow_the_log_scale(site):
    svg = _plots((site / "data.html").read_text(encoding="utf-8"))[0]
    ticks = re.findall(r'<text class="tick x-tick" x="([0-9.]+)"[^>]*>([^<]+)<', svg)
    x100, x200, x500 = (float(x) for x, _ in ticks)
    ratio = (x500 - x200) / (x200 - x100)
    assert ratio == pytest.approx(math.log10(2.5) / math.log10(2), abs=0.01)


def test_nav_links_to_the_data_page_from_every_page(site):
    assert 'href="data.html" aria-current="page">Data track<' in (site / "data.html").read_text()
    assert 'href="data.html">Data track<' in (site / "index.html").read_text()
    assert 'href="../data.html">Data track<' in (site / "runs" / "base.html").read_text()


def test_no_data_track_no_page_and_no_link(tree, tmp_path):
    for datatrack in (None, tmp_path / "absent", tmp_path / "no-results"):
        if datatrack is not None and datatrack.name == "no-results":
            shutil.copytree(tree["root"] / "data", datatrack / "data")
        out = tmp_path / f"site-{datatrack.name if datatrack else 'none'}"
        info = build_site(tree["results"], out, tree["dataset"], datatrack)
        assert info["datatrack_rows"] is None
        assert not (out / "data.html").exists()
        assert "data.html" not in "".join(p.read_text() for p in out.rglob("*.html"))


def _key(tree, datatrack: Path) -> str:
    args = argparse.Namespace(
        results=tree["results"], dataset=tree["dataset"], out=None, datatrack=datatrack
    )
    return site_cli.stage_key(args).parts["inputs"]["datatrack"]


def test_site_stage_key_follows_the_submissions_and_results(tree, tmp_path):
    copy = tmp_path / "datatrack"
    shutil.copytree(tree["root"], copy)
    before = _key(tree, copy)
    assert _key(tree, tmp_path / "absent") == "missing"
    # the adapters' weights and the evaluation cache never reach the page
    (copy / "adapters" / "noisy-weights.bin").write_bytes(b"\0" * 16)
    (copy / "results" / ".cache").mkdir()
    (copy / "results" / ".cache" / "x.json").write_text("{}")
    assert _key(tree, copy) == before
    record = copy / "data" / "noisy" / dt.SUBMISSION_FILE
    doc = json.loads(record.read_text())
    doc["rule"] = "half of the answers swapped"
    record.write_text(json.dumps(doc))
    changed = _key(tree, copy)
    assert changed != before
    (copy / "results" / dt.RUN / "summary.json").write_text("{}")
    assert _key(tree, copy) != changed


def test_cli_builds_the_data_page(tree, tmp_path, capsys):
    out = tmp_path / "cli-site"
    argv = ["site", "build", "--results", str(tree["results"]), "--out", str(out)]
    assert cli_main([*argv, "--datatrack", str(tree["root"])]) == 0
    assert (out / "data.html").is_file()
    assert f"data track: {len(SUBMISSIONS)} submissions" in capsys.readouterr().out
    assert cli_main([*argv, "--datatrack", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


# ---------------------------------------------------------------- the README table


def _md_rows(section: str) -> dict[str, list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return {
        cells[0]: cells
        for line in lines[1:]
        if (cells := [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    }


def test_readme_table_has_the_page_columns_and_numbers(tree, summary):
    section = render_datatrack_section(tree["root"])
    header = next(line for line in section.splitlines() if line.startswith("| submission"))
    assert header == (
        "| submission | pairs | tokens | epochs | dropped | "
        + " | ".join(f"{claim} {m}" for claim, _, m in HEADLINE)
        + " |"
    )
    rows = _md_rows(section)
    assert list(rows)[0] == "base" and rows["base"][1:5] == ["–"] * 4
    hostile = '&lt;img src=x onerror="alert(9)"&gt;'
    assert hostile in rows and "<img" not in section
    assert rows["self"][1:5] == ["612", f"{TOKEN_BUDGET:,}", "0.87", "28 (clean 3, dedupe 25)"]
    assert rows["subset-1-8 (1/8)"][3] == "8.00"
    refs = summary[dt.REFERENCE_COMPARISONS_KEY][CURATED_ADAPTER]
    model = adapter_of("noisy")
    for i, (_, task, metric) in enumerate(HEADLINE):
        stat = summary["models"][model][task][metric]
        vs_base = summary["comparisons"][model][task][metric]
        vs_cur = refs[model][task][metric]
        cell = rows["noisy"][5 + i]
        assert cell.startswith(f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]")
        assert f"<br>vs base {vs_base['delta']:+.3f} (p={vs_base['p_value']:.2g})" in cell
        assert f"<br>vs curated {vs_cur['delta']:+.3f} (p={vs_cur['p_value']:.2g})" in cell
    assert "vs curated" not in "".join(rows["curated"])


def test_report_writes_the_data_track_between_its_markers(tree, build_root, tmp_path):
    shutil.copytree(tree["build"], build_root)
    readme = tmp_path / "README.md"
    original = f"# T\n\n{START}\nOLD NUMBERS\n{END}\n\n{DT_START}\nPLACEHOLDER\n{DT_END}\n\ntail\n"
    readme.write_text(original)
    assert cli_main(["report", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert (
        "OLD NUMBERS" not in text
        and "PLACEHOLDER" not in text
        and text.endswith(f"{DT_END}\n\ntail\n")
    )
    inside = text[text.index(DT_START) : text.index(DT_END)]
    assert "| submission | pairs |" in inside and "| noisy |" in inside
    # without a data track, the section is left as it was
    shutil.rmtree(dt.root(build_root))
    readme.write_text(original)
    assert cli_main(["report", "--readme", str(readme)]) == 0
    assert f"{DT_START}\nPLACEHOLDER\n{DT_END}" in readme.read_text()


def test_replace_datatrack_section_needs_no_markers():
    assert replace_datatrack_section("# no markers\n", "table\n") == "# no markers\n"
    text = f"a\n{DT_START}\nold\n{DT_END}\nb\n"
    assert replace_datatrack_section(text, "new\n") == f"a\n{DT_START}\nnew\n{DT_END}\nb\n"


def test_readme_has_the_empty_data_track_markers():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert text.index(END) < text.index(DT_START) < text.index(DT_END)
    assert "nox -s datatrack" in text[text.index(DT_START) : text.index(DT_END)]


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    yield from launch()


@pytest.mark.browser
def test_data_page_in_chromium(site, browser):
    w = Watched(browser)
    page = w.open((site / "index.html").as_uri())
    page.click("nav a:text('Data track')")
    page.wait_for_load_state("load")
    assert page.url.endswith("/data.html") and page.title().startswith("Data track")
    table = page.locator("#datatrack-board")
    assert table.is_visible()
    assert table.locator("tbody tr").count() == len(SUBMISSIONS) + 1
    plots = page.locator("svg.chart.scaling")
    assert plots.count() == len(HEADLINE) and plots.first.is_visible()
    box = plots.first.bounding_box()
    assert box["width"] > 300 and box["height"] > 150
    # the drops' reasons open in place; the table sorts by pairs
    page.locator("td.drops details summary").first.click()
    assert page.locator("td.drops details[open] .drop").first.is_visible()
    page.locator("#datatrack-board thead tr:last-child th").nth(1).locator("button").click()
    pairs = page.eval_on_selector_all(
        "#datatrack-board tbody tr", "rs => rs.map(r => r.cells[1].getAttribute('data-v'))"
    )
    numbers = [int(p) for p in pairs if p]
    assert numbers == sorted(numbers, reverse=True) and pairs[-1] == ""  # base: no size, last
    assert HOSTILE in page.locator("#datatrack-board").inner_text()
    assert HOSTILE_RULE in page.locator("#datatrack-board").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "data.png"), full_page=True)
    w.assert_clean()  # no console error, no alert from the hostile name, no outside request
    w.close()
