"""The site in a real headless Chromium: clean loads, no network, sorting, filters, inert HTML."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from site_fixtures import write_hellaswag_results

from benchmark.leaderboard.render import build_site
from benchmark.leaderboard.synthetic import write_tree
from benchmark.paths import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
N_SAMPLES = 24


def _need_browser():
    required = os.environ.get("MARINEBENCH_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("playwright is not installed but MARINEBENCH_REQUIRE_BROWSER=1")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"{CHROMIUM} is missing but MARINEBENCH_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site-browser")
    paths = write_tree(root, n_adapters=3, n_samples=N_SAMPLES, hostile=True)
    write_hellaswag_results(paths["results"] / "external" / "pythia.json")
    out = root / "site"
    build_site(paths["results"], out, paths["dataset"])
    return out


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _need_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page plus everything it did that a clean page must not: errors, dialogs, requests."""

    def __init__(self, browser, width: int = 1280, height: int = 900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.context.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str):
        self.page.goto(url)
        self.page.wait_for_load_state("load")
        return self.page

    def assert_clean(self):
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        outside = [
            u for u in self.requests if not re.match(r"^(file://|https?://127\.0\.0\.1[:/])", u)
        ]
        assert outside == [], outside

    def close(self):
        self.context.close()


def _url(site: Path, rel: str) -> str:
    return (site / rel).as_uri()


PAGES = [
    "index.html",
    "runs/smollm2-lora-r16.html",
    "runs/base.html",
    "runs/EleutherAI-pythia-160m.html",
    "compare/smollm2-lora-r16.html",
    "cards/smollm2-lora-r16.html",
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
        page.screenshot(
            path=str(SCREENSHOTS / f"{name}.png"), full_page=rel != "compare/smollm2-lora-r16.html"
        )
    w.assert_clean()
    assert len(w.requests) >= len(PAGES) * 2  # pages plus their css/js were all requested locally
    w.close()
    phone = Watched(browser, width=390, height=844)
    for rel in ("index.html", "compare/smollm2-lora-r16.html", "runs/smollm2-lora-r16.html"):
        page = phone.open(_url(site, rel))
        # the page itself never scrolls sideways; wide tables scroll inside their container
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(
            path=str(SCREENSHOTS / f"phone-{rel.replace('/', '_').removesuffix('.html')}.png")
        )
    phone.assert_clean()
    phone.close()
    assert (SCREENSHOTS / "index.png").stat().st_size > 10_000


def _column_values(page, col: int) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr", f"rows => rows.map(r => r.cells[{col}].getAttribute('data-v'))"
    )


def _labels(page) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr th a:not(.sub)", "as => as.map(a => a.textContent)"
    )


def test_sorting_reorders_rows(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "index.html"))
    headers = page.eval_on_selector_all(
        "#leaderboard thead th", "ths => ths.map(t => t.textContent)"
    )
    col = next(
        i
        for i, t in enumerate(headers)
        if "rouge2" in t and "marine_qa" in t and "retention" not in t
    )
    before = _labels(page)
    button = page.locator("#leaderboard thead th").nth(col).locator("button")
    button.click()
    th = page.locator("#leaderboard thead th").nth(col)
    assert th.get_attribute("aria-sort") == "descending"
    values = [v for v in _column_values(page, col)]
    nums = [float(v) for v in values if v]
    assert nums == sorted(nums, reverse=True) and len(nums) == 4
    assert values[-1] == ""  # the foreign model has no marine_qa: missing values sort last
    button.click()
    assert th.get_attribute("aria-sort") == "ascending"
    nums_up = [float(v) for v in _column_values(page, col) if v]
    assert nums_up == sorted(nums_up)
    assert _labels(page) != before or nums != nums_up
    # the model column sorts by name; keyboard works too (Enter on the focused button)
    page.locator("#leaderboard thead th").nth(0).locator("button").focus()
    page.keyboard.press("Enter")
    labels = _labels(page)
    assert labels == sorted(labels, key=str.lower)
    # only one column at a time announces a sort order
    assert page.locator("#leaderboard thead th[aria-sort]").count() == 1
    w.assert_clean()
    w.close()


def test_task_filter_hides_other_tasks(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "index.html"))
    assert page.locator("#lb-controls").is_visible()
    page.select_option("#task-filter", "hellaswag")
    visible_rows = page.locator("#leaderboard tbody tr:visible")
    assert visible_rows.count() == 1 and "pythia" in visible_rows.first.inner_text()
    visible_heads = page.locator("#leaderboard thead th:visible")
    assert visible_heads.count() == 1 + 2 + 4  # model, hellaswag acc/acc_norm, efficiency
    assert page.locator(".panel:visible").count() == 0  # no gain chart for a task without a base
    page.select_option("#task-filter", "marine_qa")
    assert page.locator("#leaderboard tbody tr:visible").count() == 4
    assert page.locator(".panel:visible").count() == 8
    page.select_option("#task-filter", "")
    assert page.locator("#leaderboard tbody tr:visible").count() == 5
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
    page = w.open(_url(site, "compare/smollm2-lora-r16.html"))
    rows = page.locator("#cmp-rows tr")
    assert rows.count() == N_SAMPLES
    assert "Showing 24 of 24" in page.locator("#cmp-count").inner_text()
    page.fill("#cmp-search", "plankton")
    n_search = rows.count()
    assert 0 < n_search < N_SAMPLES
    assert all("plankton" in t.lower() for t in rows.all_inner_texts())
    page.fill("#cmp-search", "")
    page.select_option("#cmp-topic", "coral_reefs")
    metas = page.eval_on_selector_all("#cmp-rows .meta", "els => els.map(e => e.textContent)")
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


def test_hostile_model_output_stays_text(site, browser):
    w = Watched(browser)
    page = w.open(_url(site, "compare/smollm2-lora-r16.html"))
    page.select_option("#cmp-sort", "id")
    cells = page.eval_on_selector_all("#cmp-rows td", "tds => tds.map(t => t.textContent)")
    assert any("<script>alert(1)</script>" in c for c in cells)
    assert any('<img src=x onerror="alert(2)">' in c for c in cells)
    assert page.locator("#cmp-rows script, #cmp-rows img, main img").count() == 0
    page.wait_for_timeout(200)
    page.goto(_url(site, "cards/smollm2-lora-r16.html"))
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
        page.locator("#leaderboard thead th").nth(0).locator("button").click()
        page.click("#leaderboard a.sub >> nth=0")
        page.wait_for_load_state("load")
        assert page.locator("#cmp-rows tr").count() == N_SAMPLES
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
