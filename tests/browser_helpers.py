"""Headless Chromium for the site tests (test_site_browser.py, test_site_datatrack.py): a
browser to launch, and `Watched`, a page that records what a clean page must never do."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from benchmark.paths import REPO_ROOT

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


def need_browser():
    """playwright's sync_playwright, or a skip (a failure under MARINEBENCH_REQUIRE_BROWSER=1)."""
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


def launch():
    """A headless Chromium for the length of a test module's `browser` fixture:
    `yield from launch()` (a plain generator, so each module declares its own fixture)."""
    sync_playwright = need_browser()
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
