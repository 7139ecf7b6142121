"""The site in a real headless Chromium: clean loads, no network, sorting, filters, inert HTML."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from browser_helpers import SCREENSHOTS, Watched, launch
from site_fixtures import write_hellaswag_results

from benchmark.leaderboard.render import build_site
from benchmark.leaderboard.synthetic import write_results_run, write_tree
from benchmark.paths import REPO_ROOT

pytestmark = pytest.mark.browser

N_SAMPLES = 24
N_RECALL = 3 * N_SAMPLES // 4  # the synthetic recall split: three quarters as many questions
MAIN, OTHER = "smollm2-135m-instruct", "my-questions"
R16 = f"{MAIN}-smollm2-lora-r16"  # the adapter is in both runs, so its pages name the run


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site-browser")
    paths = write_tree(root, n_adapters=3, n_samples=N_SAMPLES, hostile=True)
    # the same adapter scored on a user's own questions (`marinebench evaluate --data my.jsonl`)
    write_results_run(
        paths["results"],
        [("smollm2-lora-r16", paths["adapters"] / "smollm2-lora-r16")],
        run=OTHER,
        n_samples=16,
        seed=3,
        dataset_hash="e" * 64,
        dataset_source=f"jsonl:{root / 'my.jsonl'}",
        tasks=("marine_qa", "marine_mc"),
    )
    write_hellaswag_results(paths["results"] / "external" / "pythia.json")
    out = root / "site"
    build_site(paths["results"], out, paths["dataset"])
    return out


@pytest.fixture(scope="module")
def browser():
    yield from launch()


def _url(site: Path, rel: str) -> str:
    return (site / rel).as_uri()


PAGES = [
    "index.html",
    f"runs/{R16}.html",
    f"runs/{MAIN}-base.html",
    f"runs/{OTHER}-smollm2-lora-r16.html",
    "runs/EleutherAI-pythia-160m.html",
    f"compare/{R16}.html",
    f"cards/{R16}.html",
    "dataset.html",
    "method.html",
]


def test_pages_load_cleanly_and_are_screenshotted(site, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    w = Watched(browser)
    for rel in PAGES:
        page = w.open(_url(site, rel))
        assert page.title().endswith("MarineBench")
        name = rel.replace("/", "_").removesuffix(".html")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=not rel.startswith("c"))
    w.assert_clean()
    assert len(w.requests) >= len(PAGES) * 2  # pages plus their css/js were all requested locally
    w.close()
    phone = Watched(browser, width=390, height=844)
    for rel in ("index.html", f"compare/{R16}.html", f"runs/{R16}.html", "method.html"):
        page = phone.open(_url(site, rel))
        # the page itself never scrolls sideways; wide tables scroll inside their container
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(
            path=str(SCREENSHOTS / f"phone-{rel.replace('/', '_').removesuffix('.html')}.png")
        )
    phone.assert_clean()
    phone.close()
    assert (SCREENSHOTS / "index.png").stat().st_size > 10_000


def _column_values(page, table: str, col: int) -> list[str]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{col}].getAttribute('data-v'))"
    )


def _labels(page, table: str) -> list[str]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr th a:not(.sub)", "as => as.map(a => a.textContent)"
    )


def _header_index(page, table: str, *words: str) -> int:
    headers = page.eval_on_selector_all(
        f"#{table} thead tr:last-child th", "ths => ths.map(t => t.textContent)"
    )
    return next(i for i, t in enumerate(headers) if all(w in t for w in words))


def test_sorting_reorders_rows_within_one_question_set(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "index.html"))
    board = "set-1-board"
    col = _header_index(page, board, "marine_qa", "rouge2")
    before = _labels(page, board)
    th = page.locator(f"#{board} thead th").nth(col)
    th.locator("button").click()
    assert th.get_attribute("aria-sort") == "descending"
    nums = [float(v) for v in _column_values(page, board, col)]
    assert nums == sorted(nums, reverse=True) and len(nums) == 4  # only this set's 4 models
    th.locator("button").click()
    assert th.get_attribute("aria-sort") == "ascending"
    nums_up = [float(v) for v in _column_values(page, board, col)]
    assert nums_up == sorted(nums_up)
    assert _labels(page, board) != before or nums != nums_up
    # the model column sorts by name; keyboard works too (Enter on the focused button)
    page.locator(f"#{board} thead th").nth(0).locator("button").focus()
    page.keyboard.press("Enter")
    labels = _labels(page, board)
    assert labels == sorted(labels, key=str.lower)
    assert page.locator(f"#{board} thead th[aria-sort]").count() == 1
    # the headline table (two header rows: the groups, then the columns) sorts the same way
    head = "set-1-headline"
    col = _header_index(page, head, "recall", "token_f1")
    page.locator(f"#{head} thead tr:last-child th").nth(col).locator("button").click()
    nums = [float(v) for v in _column_values(page, head, col)]
    assert nums == sorted(nums, reverse=True) and len(nums) == 4
    assert page.locator(f"#{head} thead th[aria-sort]").count() == 1
    # the user's own questions keep their own table: its rows never join the benchmark's
    assert sorted(_labels(page, "set-2-headline")) == ["base", "smollm2-lora-r16"]
    assert len(_labels(page, "set-1-headline")) == 4
    w.assert_clean()
    w.close()


def test_question_sets_are_sections_of_their_own(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "index.html"))
    names = page.eval_on_selector_all(".evalset > h2", "hs => hs.map(h => h.textContent)")
    assert [" ".join(n.split()) for n in names] == [
        "Questions build/dataset",
        "Questions my.jsonl",
        "Other runs lm-eval results files of other runs",
    ]
    page.click("nav.sets a >> nth=1")
    assert page.evaluate("location.hash") == "#set-2"
    # the benchmark's headline: recall and transfer side by side, with the answers' length
    groups = page.eval_on_selector_all(
        "#set-1-headline .group-head", "ths => ths.map(t => t.getAttribute('data-claim'))"
    )
    assert groups == ["recall", "transfer"]
    first = page.locator("#set-1-headline tbody tr").first
    text = first.inner_text()
    assert "MDE" in text and "words" in text and "ref." in text
    # a run without the recall task has no recall group
    assert page.locator("#set-2-headline .group-head").all_inner_texts()[0].startswith("Transfer")
    assert page.locator("#set-2-headline .group-head").count() == 1
    # its charts show its own adapter only
    bars = page.locator("#set-2 .head-col svg.chart.gain").first.locator("rect.bar")
    assert bars.count() == 1
    w.assert_clean()
    w.close()


def test_task_filter_hides_other_tasks(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "index.html"))
    assert page.locator("#set-1 .lb-controls").is_visible()
    set2_heads = page.locator("#set-2-board thead th:visible").count()
    page.select_option("#set-1-filter", "retention_qa")
    heads = page.locator("#set-1-board thead th:visible")
    n_retention = len(
        [
            t
            for t in page.eval_on_selector_all(
                "#set-1-board thead th", "ths => ths.map(t => t.getAttribute('data-task'))"
            )
            if t == "retention_qa"
        ]
    )
    assert heads.count() == 1 + n_retention + 4  # model, retention metrics, efficiency
    assert page.locator("#set-1-board tbody tr:visible").count() == 4
    # the other sets are untouched: the filter is per question set
    assert page.locator("#set-2-board thead th:visible").count() == set2_heads > n_retention
    assert page.locator("#set-3-board tbody tr:visible").count() == 1
    page.select_option("#set-3-filter", "hellaswag")
    assert page.locator("#set-3-board thead th:visible").count() == 1 + 2
    page.select_option("#set-1-filter", "")
    assert page.locator("#set-1-board tbody tr:visible").count() == 4
    w.assert_clean()
    w.close()


def _deltas(page) -> list[float]:
    texts = page.eval_on_selector_all("#cmp-rows .primary", "els => els.map(e => e.textContent)")
    out = []
    for t in texts:
        m = re.search(r"\(([+−±])([0-9.]+)\)", t)
        out.append((-1 if m.group(1) == "−" else 1) * float(m.group(2)))
    return out


def test_compare_filter_search_and_sort(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, f"compare/{R16}.html"))
    rows = page.locator("#cmp-rows tr")
    # the headline tasks come first: recall (the default), then transfer
    options = page.eval_on_selector_all("#cmp-task option", "os => os.map(o => o.value)")
    assert options[:2] == ["marine_recall", "marine_qa"]
    assert rows.count() == N_RECALL
    assert f"Showing {N_RECALL} of {N_RECALL}" in page.locator("#cmp-count").inner_text()
    assert re.search(
        r"changes by [+−±][0-9.]+ \(p [=<] [0-9.]+, MDE [0-9.]+\)", page.inner_text("#cmp-overall")
    )
    page.select_option("#cmp-task", "marine_qa")
    assert rows.count() == N_SAMPLES
    page.fill("#cmp-search", "plankton")
    n_search = rows.count()
    assert 0 < n_search < N_SAMPLES
    assert all("plankton" in t.lower() for t in rows.all_inner_texts())
    page.fill("#cmp-search", "")
    page.select_option("#cmp-topic", "coral_reefs")
    metas = page.eval_on_selector_all(
        "#cmp-rows .meta:not(.words)", "els => els.map(e => e.textContent)"
    )
    assert len(metas) == N_SAMPLES // 8 and all(m.endswith("coral_reefs") for m in metas)
    page.select_option("#cmp-topic", "")
    page.select_option("#cmp-sort", "gain")
    gains = _deltas(page)
    assert gains == sorted(gains, reverse=True) and gains[0] > gains[-1]
    page.select_option("#cmp-sort", "loss")
    losses = _deltas(page)
    assert losses == sorted(losses)
    # another task from the same data file
    page.select_option("#cmp-task", "retention_qa")
    assert rows.count() == max(8, N_SAMPLES // 5)
    w.assert_clean()
    w.close()


def test_compare_shows_each_answers_length(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, f"compare/{R16}.html"))
    page.select_option("#cmp-task", "marine_qa")
    page.select_option("#cmp-sort", "id")
    first = page.locator("#cmp-rows tr").first
    cells = first.locator("td")
    for j in (1, 2, 3):  # reference, base answer, tuned answer
        words = cells.nth(j).locator(".words").inner_text()
        text = cells.nth(j).evaluate("td => td.lastChild.textContent")
        assert words == f"{len(text.split())} words"
    # length describes the answers: sorting it says increase/decrease, never better/worse
    metric = page.eval_on_selector_all(
        "#cmp-metric option", "os => os.map(o => [o.value, o.textContent])"
    )
    value = next(v for v, label in metric if label.startswith("answer_words"))
    page.select_option("#cmp-metric", value)
    assert page.locator("#cmp-sort option").first.inner_text() == "Largest increase first"
    assert page.locator("#cmp-rows .primary.better, #cmp-rows .primary.worse").count() == 0
    page.select_option("#cmp-metric", metric[0][0])
    assert page.locator("#cmp-sort option").first.inner_text() == "Largest gain first"
    # multiple choice picks a given answer: no length there
    page.select_option("#cmp-task", "marine_mc")
    assert page.locator("#cmp-rows .words").count() == 0
    w.assert_clean()
    w.close()


def test_method_page_shows_the_verdicts_and_the_protocol(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "method.html"))
    tables = page.locator("table.verdicts")
    assert tables.count() == 2  # the benchmark's run, and the run on my.jsonl (for information)
    rows = tables.first.locator("tbody tr")
    assert rows.count() == 8
    verdicts = [t.strip() for t in tables.first.locator("td.verdict").all_inner_texts()]
    assert set(verdicts) <= {"✔ held", "✘ did not hold"}
    second = [t.strip() for t in tables.nth(1).locator("td.verdict").all_inner_texts()]
    assert second[:4] == ["not evaluated"] * 4
    assert "shown for information" in tables.nth(1).locator("caption").inner_text()
    doc = page.locator("details.protocol-doc")
    assert not doc.locator("article").is_visible()
    doc.locator("summary").click()
    assert doc.locator("article h2").first.is_visible()
    assert "Holm" in doc.locator("article").inner_text()
    w.assert_clean()
    w.close()


def test_hostile_model_output_stays_text(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, f"compare/{R16}.html"))
    page.select_option("#cmp-sort", "id")
    cells = page.eval_on_selector_all("#cmp-rows td", "tds => tds.map(t => t.textContent)")
    assert any("<script>alert(1)</script>" in c for c in cells)
    assert any('<img src=x onerror="alert(2)">' in c for c in cells)
    assert page.locator("#cmp-rows script, #cmp-rows img, main img").count() == 0
    page.wait_for_timeout(200)
    page.goto(_url(site, f"cards/{R16}.html"))
    assert page.locator("article script").count() == 0
    assert "<script>alert('card')</script>" in page.locator("article").inner_text()
    w.assert_clean()  # includes: no alert dialog fired
    w.close()


def test_served_on_loopback(site, browser):
    from benchmark.leaderboard.serve import make_server

    server = make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        w = Watched(browser)
        port = server.server_address[1]
        page = w.open(f"http://127.0.0.1:{port}/index.html")
        page.locator("#set-1-board thead th").nth(0).locator("button").click()
        page.click("#set-1-board a.sub >> nth=0")
        page.wait_for_load_state("load")
        assert page.locator("#cmp-rows tr").count() == N_RECALL
        w.assert_clean()
        assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in w.requests)
        w.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_screenshots_dir_is_in_the_real_build():
    assert SCREENSHOTS.parent == REPO_ROOT / "build"
    assert shutil.which("chromium") or not os.environ.get("MARINEBENCH_REQUIRE_BROWSER")
