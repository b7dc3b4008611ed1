"""report.html in a real headless browser (the `page` fixture, tests/browser.py): opened from the file, offline,
it draws the equity curve and its drawdown, the trades on the price, and the P&L by bot, with no script error; a
screenshot of it is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.replay.backtest import run_backtest
from tests.conftest import ProjectCopy
from tests.replay.conftest import load
from tests.replay.test_backtest import trending_day


def test_report_html_draws_the_curve_offline(momentum_project: ProjectCopy, tmp_path: Path, page: Any) -> None:
    trending_day(tmp_path / "data")
    run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out")
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto((tmp_path / "out" / "report.html").as_uri(), wait_until="load", timeout=20_000)
    page.wait_for_selector("#equity .scatterlayer .trace path.js-line", timeout=20_000)
    curves = page.locator("#equity .scatterlayer .trace path.js-line")
    assert curves.count() == 2  # the equity and its drawdown
    drawn = (curves.first.get_attribute("d") or "").lstrip("M").split("L")
    xs = [float(point.split(",")[0]) for point in drawn]
    assert len(xs) >= 5 and xs[-1] - xs[0] > 800  # across the whole day (plotly merges flat stretches), not a dot
    assert page.locator("#trades-AAPL .scatterlayer .trace").count() == 3  # the price, the entries, the exits
    assert page.locator("#trades-AAPL .scatterlayer .point").count() >= 2  # at least one round trip marked
    assert page.locator("#pnl .barlayer .point").count() == 1  # mom_AAPL's bar
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 20_000
    assert page.errors == []
