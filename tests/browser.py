"""A real headless browser for the tests of pages the engine writes or serves: Debian's Chromium
(/usr/bin/chromium, or HYDRA_CHROMIUM) driven by Playwright, which is told to use that binary (no browser is
downloaded).

Skipped, with the reason, when Chromium or Playwright is not installed; .ci/run installs both and sets
HYDRA_REQUIRE_BROWSER, so there a missing or broken browser fails instead."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = os.environ.get("HYDRA_CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("HYDRA_REQUIRE_BROWSER"):
        pytest.fail(f"HYDRA_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


def _playwright() -> Any:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # type: ignore[import-not-found, unused-ignore]  # the browser extra
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[browser]')")
    return sync_playwright


@pytest.fixture
def page() -> Iterator[Any]:
    """A browser tab; `page.errors` collects the page's script errors and console errors."""
    sync_playwright = _playwright()
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # a Chromium that cannot start here (no driver for it in this Playwright)
            _unavailable(f"Chromium at {CHROMIUM} does not start under Playwright: {str(exc).splitlines()[0]}")
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            tab.errors = errors
            yield tab
        finally:
            browser.close()
