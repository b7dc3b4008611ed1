"""The status page in a real headless browser (the `page` fixture, tests/browser.py). The page must render a
halted state from the state file, with the reason, and a screenshot of it is saved; then the Resume button, with
the token, ends the halt."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.sim.persist import SimPersistence
from engine.core.store import StateStore
from engine.operator.status_page import StatusServer, make_server
from engine.trading.runner import operator_halt
from engine.validate import load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig

TOKEN = "browser-test-token"


@pytest.fixture
def server(project: ProjectCopy, rig: Rig) -> Iterator[StatusServer]:
    """A simulated morning with a trade closed, saved as a simulation, then halted by the operator."""
    rig.until(lambda r: len(r.store.trades()) >= 1, limit=3000)
    rig.store.set_meta("broker", "sim")
    SimPersistence(rig.exchange, rig.store)()
    operator_halt(rig.store, rig.engine.journal, "news at 10:00", rig.clock.now())
    rig.engine.journal.flush()
    report = load_valid(project.config, project.machines, project.rules)
    srv = make_server(report, rig.store.path, rig.log, "127.0.0.1", 0, TOKEN)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        srv.app.close()


def test_the_page_renders_the_halted_state_and_a_screenshot_is_taken(server: StatusServer, page: Any, tmp_path: Path) -> None:
    page.goto(server.url, wait_until="load", timeout=10_000)
    page.wait_for_selector("body[data-loaded=yes]", timeout=10_000)
    banner = page.locator("#banner")
    assert banner.get_attribute("class") == "halted"
    text = banner.inner_text()
    assert text.startswith("HALTED: the system since 2026-11-23T") and "news at 10:00" in text and "-08:00" in text
    system = page.locator("[data-machine='system:system']")
    assert "system system: halted" in system.locator("h3").inner_text()
    assert system.locator("tr.current").count() == 1  # the current state highlighted in its table
    assert page.locator("#preflight h3").count() == 3  # the three enabled bots
    assert page.locator("#trades tr").count() >= 2  # a header and a trade
    assert page.locator("#equity svg polyline").count() >= 2  # a bot's curve and the total
    assert page.locator("#controls").is_visible()  # a token is configured: the buttons are there

    shot = tmp_path / "halted.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert page.errors == []  # no script error, no CSP refusal


def test_resume_from_the_page_needs_the_token_and_ends_the_halt(server: StatusServer, page: Any) -> None:
    from playwright.sync_api import expect  # type: ignore[import-not-found, unused-ignore]  # the browser extra

    page.goto(server.url, wait_until="load", timeout=10_000)
    page.wait_for_selector("body[data-loaded=yes]", timeout=10_000)
    page.fill("#token", "wrong")
    page.click("#resume")
    expect(page.locator("#result")).to_have_text(re.compile(r"^refused: "), timeout=5_000)  # (the CSP forbids eval)
    assert StateStore(server.app.state_db).halts(open_only=True)

    page.fill("#token", TOKEN)
    page.click("#resume")
    expect(page.locator("#banner")).to_have_text("not halted", timeout=5_000)
    assert "resumed: 1 halt(s) ended" in page.locator("#result").inner_text()
    assert not StateStore(server.app.state_db).halts(open_only=True)


def test_a_state_that_cannot_be_read_takes_the_last_one_off_the_page(server: StatusServer, page: Any) -> None:
    """The page must not go on showing "HALTED" or "not halted", positions and P&L it can no longer read."""
    page.goto(server.url, wait_until="load", timeout=10_000)
    page.wait_for_selector("body[data-loaded=yes]", timeout=10_000)
    assert page.locator("#banner").get_attribute("class") == "halted"
    db = server.app.state_db
    db.rename(db.with_name("moved.db"))
    page.evaluate("refresh()")  # the next poll, now rather than in 3 s
    page.wait_for_selector("body[data-loaded=error]", timeout=10_000)
    banner = page.locator("#banner")
    assert banner.get_attribute("class") == "unknown"
    assert banner.inner_text().startswith("STATE UNKNOWN: state file ") and "gone now" in banner.inner_text()
    assert "not shown: the state cannot be read" in page.locator("#machines").inner_text()
    assert page.locator("#trades tr").count() == 0 and page.locator("#equity svg").count() == 0
    assert page.errors == [] or all("503" in e for e in page.errors)  # the browser logs the 503 itself
