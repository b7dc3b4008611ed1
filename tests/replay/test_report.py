"""The report's figures: the account's daily returns, and the plot thinning (a long curve is cut to about PLOT_POINTS
points without losing its extremes)."""

from __future__ import annotations

import csv
import html
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from engine.config.model import BotsConfig
from engine.core.calendar import market_calendar
from engine.replay.report import _daily_returns, thinned
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load
from tests.replay.test_backtest import crypto_alone_on_btc

MINUTE = timedelta(minutes=1)
CLOSE = MONDAY_OPEN + timedelta(hours=6, minutes=30)  # Monday 2026-11-23, 16:00 New York


def after_hours_curve() -> list[tuple[datetime, float, float]]:
    """equity.csv's rows over two sessions of a position held overnight: 101,000 at Monday's close (16:00 New
    York), 80,000 at an after-hours bar at 16:10, 102,000 at Tuesday's close, 70,000 after it at 17:00."""
    tuesday = CLOSE + timedelta(days=1)
    return [(MONDAY_OPEN + MINUTE, 100_000.0, 50_000.0), (CLOSE, 101_000.0, 50_000.0),
            (CLOSE + 10 * MINUTE, 80_000.0, 50_000.0), (tuesday - timedelta(hours=6), 99_000.0, 50_000.0),
            (tuesday, 102_000.0, 50_000.0), (tuesday + timedelta(hours=1), 70_000.0, 50_000.0)]  # fmt: skip


def bots_of(project: ProjectCopy) -> BotsConfig:
    config = load(project).config
    assert config is not None
    return config.bots


def test_a_sessions_return_is_taken_at_its_close_not_after_hours(momentum_project: ProjectCopy) -> None:
    """Stock data with after-hours bars: the day's last row of equity.csv was the after-hours one, so the account's
    daily returns (Sharpe, Sortino) read 100,000 -> 80,000 -> 70,000, two falls of 20 % and 12.5 %, where the
    account closed each session up (101,000, then 102,000): the engine's own last_equity is the close's."""
    bots = bots_of(momentum_project)
    days, returns = _daily_returns(after_hours_curve(), 100_000.0, ZoneInfo("America/Los_Angeles"), bots,
                                   market_calendar())  # fmt: skip
    assert [d.isoformat() for d in days] == ["2026-11-23", "2026-11-24"]
    assert returns == [101_000 / 100_000 - 1, 102_000 / 101_000 - 1]


def test_a_backtest_of_stocks_and_coins_takes_a_sessions_return_at_its_close(project: ProjectCopy) -> None:
    """Coins make every day a trading day, but a session's day still ends at its close, where last_equity is."""
    days, returns = _daily_returns(after_hours_curve(), 100_000.0, ZoneInfo("America/Los_Angeles"), bots_of(project),
                                   market_calendar())  # fmt: skip
    assert [d.isoformat() for d in days] == ["2026-11-23", "2026-11-24"]
    assert returns == [101_000 / 100_000 - 1, 102_000 / 101_000 - 1]


def test_a_coin_only_backtest_ends_its_days_at_midnight(project: ProjectCopy) -> None:
    """Coins trade around the clock and a backtest of coins alone has no session: its day is a whole date in
    system.timezone, its last row included, as docs/backtest.md says."""
    crypto_alone_on_btc(project)
    bots = bots_of(project)
    days, returns = _daily_returns(after_hours_curve(), 100_000.0, ZoneInfo("America/Los_Angeles"), bots,
                                   market_calendar())  # fmt: skip
    assert [d.isoformat() for d in days] == ["2026-11-23", "2026-11-24"]
    assert returns == [80_000 / 100_000 - 1, 70_000 / 80_000 - 1]


def test_a_short_series_is_kept_whole() -> None:
    assert thinned(np.arange(10.0), points=40).tolist() == list(range(10))


def test_a_long_series_keeps_its_ends_its_spike_and_its_worst_fall() -> None:
    values = np.full(100_003, 100.0)
    values[51_234] = 180.0  # a spike a stride of 25 would step over
    values[77_777] = 20.0  # the worst drawdown
    kept = thinned(values, points=4000)
    assert len(kept) <= 4000 + 2
    assert kept[0] == 0 and kept[-1] == len(values) - 1
    assert 51_234 in kept and 77_777 in kept
    assert np.all(np.diff(kept) > 0)  # in order, each once


def test_the_last_short_bucket_keeps_its_extremes_too() -> None:
    values = np.zeros(1001)
    values[1000] = -5.0  # alone in the last bucket
    values[999] = 5.0
    kept = thinned(values, points=40)
    assert {999, 1000} <= set(kept.tolist())


def test_a_zone_ahead_of_new_york_counts_each_session_on_its_own_date(momentum_project: ProjectCopy) -> None:
    """In Pacific/Auckland a session falls on the next date (Wednesday 2026-11-25's 09:30-16:00 New York is Thursday
    03:30-10:00 there, Friday's half day is Saturday's): the days were asked of the calendar by New York's date, so
    Saturday held no session (Friday's dropped) and Thursday 11-26 was Thanksgiving (Wednesday's dropped). Three
    sessions counted as one trading day, their returns folded into it; each is its own day, ended at its close."""
    bots = bots_of(momentum_project)
    wednesday, friday = MONDAY_OPEN + timedelta(days=2), MONDAY_OPEN + timedelta(days=4)
    monday = MONDAY_OPEN + timedelta(days=7)
    curve = [(wednesday + MINUTE, 100_000.0, 0.0), (wednesday + timedelta(hours=6, minutes=30), 101_000.0, 0.0),
             (wednesday + timedelta(hours=7), 50_000.0, 0.0),  # after the close: not the day's
             (friday + MINUTE, 101_000.0, 0.0), (friday + timedelta(hours=3, minutes=30), 99_990.0, 0.0),
             (monday + timedelta(hours=6, minutes=30), 102_000.0, 0.0)]  # fmt: skip
    days, returns = _daily_returns(curve, 100_000.0, ZoneInfo("Pacific/Auckland"), bots, market_calendar())
    assert [d.isoformat() for d in days] == ["2026-11-26", "2026-11-28", "2026-12-01"]
    assert returns == [101_000 / 100_000 - 1, 99_990 / 101_000 - 1, 102_000 / 99_990 - 1]


def test_the_backtests_notes_are_kept_in_summary_json_with_the_same_bytes_wherever_the_data_is(
    momentum_project: ProjectCopy, tmp_path: Path
) -> None:
    """The notes (bars seen before they end, sessions without data, rows on holidays, where a replay parts from its
    run) were printed and written nowhere: a run's folder, and a sweep's runs, read as clean. summary.json keeps them,
    the data folder's path (which a recording's notes name) written <data>, so it stays the same bytes."""
    from engine.data.recorder import Recorder
    from engine.replay.backtest import run_backtest

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in range(0, 1200, 5):
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
    shutil.copytree(tmp_path / "rec", tmp_path / "elsewhere")
    texts = []
    for name in ("rec", "elsewhere"):
        result = run_backtest(load(momentum_project), tmp_path / name, start=MONDAY_OPEN + timedelta(minutes=10),
                              out_dir=tmp_path / f"out-{name}")  # fmt: skip
        assert len(result.notes) == 1 and str(tmp_path / name) in result.notes[0]
        summary = json.loads((tmp_path / f"out-{name}" / "summary.json").read_text())
        assert summary["notes"] == [result.notes[0].replace(str(tmp_path / name), "<data>")]
        assert "after the first recorded tick of <data> (2026-11-23T14:30:00Z" in summary["notes"][0]
        assert html.escape(summary["notes"][0]) in (tmp_path / f"out-{name}" / "report.html").read_text()
        texts.append((tmp_path / f"out-{name}" / "summary.json").read_bytes())
    assert texts[0] == texts[1]
    whole = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out-whole", html=False)
    assert whole.notes == () and json.loads((tmp_path / "out-whole" / "summary.json").read_text())["notes"] == []


def test_sharpe_and_sortino_edge_cases_are_as_documented() -> None:
    """docs/backtest.md said both were null with fewer than two days or no variation, but a steady loss had a Sortino
    of -15.87 and a Sharpe of null, and a run of gains a null Sortino, said nowhere. Each case now has its definition:
    fewer than two days, neither; no variation, no Sharpe; no losing day, no Sortino (`losing_days` says which); a
    loss, even the same each day, a Sortino."""
    from engine.replay.report import _ratio

    for one_day in ([0.01], [-0.01], []):
        assert _ratio(one_day, downside=False) is None and _ratio(one_day, downside=True) is None
    gains = [0.001, 0.003, 0.002, 0.004]
    assert _ratio(gains, downside=False) == round(0.0025 / 0.0012909944 * 252**0.5, 4)
    assert _ratio(gains, downside=True) is None  # no losing day: no downside to divide by
    steady_loss = [-0.002, -0.002, -0.002]
    assert _ratio(steady_loss, downside=False) is None  # no variation
    assert _ratio(steady_loss, downside=True) == round(-(252**0.5), 4)  # the mean over its own downside
    for flat in ([0.0, 0.0, 0.0], [0.001, 0.001]):
        assert _ratio(flat, downside=False) is None and _ratio(flat, downside=True) is None
    mixed = [0.01, -0.01, 0.02]
    assert _ratio(mixed, downside=True) == round(0.02 / 3 / (0.0001 / 3) ** 0.5 * 252**0.5, 4)


def test_a_stock_bots_ratios_are_over_its_sessions_whatever_coin_bot_is_enabled(project: ProjectCopy, tmp_path: Path) -> None:
    """A bot's Sharpe and Sortino were over the account's days, and with any coin bot enabled every calendar day is
    one: a stock bot's weekend became two days of no return, and its ratios moved with a bot it has nothing to do
    with. They are over the days its own market trades: the same with the coin bot as without it."""
    from engine.data.files import write_bars
    from engine.replay.backtest import run_backtest
    from tests.replay.conftest import minute_bars

    friday = MONDAY_OPEN - timedelta(days=3)
    bars = []
    for day_open, up, down in ((friday, 0.08, -0.07), (MONDAY_OPEN, 0.12, -0.05)):  # two sessions, two P&Ls
        closes = [190.0]
        for minute in range(1, 390):
            closes.append(round(closes[-1] + (up if (minute // 40) % 2 == 0 else down), 2))
        bars += minute_bars(day_open, closes)
    for name in ("both", "stocks"):
        write_bars(tmp_path / f"data-{name}", "AAPL", bars, fsync=False)
    minutes = int((MONDAY_OPEN + timedelta(hours=6, minutes=30) - friday) / MINUTE)
    write_bars(tmp_path / "data-both", "BTC/USD", minute_bars(friday, [50_000.0] * minutes), fsync=False)
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', 'pairs: ["BTC/USD"]')
    both = run_backtest(load(project), tmp_path / "data-both", out_dir=tmp_path / "out-both", html=False).summary
    project.replace("config/bots.yaml", "cryptobot:\n  enabled: true", "cryptobot:\n  enabled: false")
    alone = run_backtest(load(project), tmp_path / "data-stocks", out_dir=tmp_path / "out-stocks", html=False).summary
    assert both["period"]["trading_days"] == 4 and alone["period"]["trading_days"] == 2  # Friday to Monday; sessions
    mine, theirs = both["bots"]["mom_AAPL"], alone["bots"]["mom_AAPL"]
    assert mine["trades"] > 0 and mine["days"] == theirs["days"] == 2 and theirs["sharpe"] is not None
    assert (mine["sharpe"], mine["sortino"], mine["realized_pnl"]) == (theirs["sharpe"], theirs["sortino"], theirs["realized_pnl"])
    assert mine["losing_days"] == theirs["losing_days"] == 0  # two sessions of gains: no Sortino in either
    assert both["bots"]["crypto_core"]["days"] == 4  # a coin bot's market trades every day


def test_the_pnl_figures_add_up_to_the_equity_a_position_partly_sold_at_the_end_included(
    momentum_project: ProjectCopy, tmp_path: Path
) -> None:
    """A $10 stock: the momentum bot buys some 4,800 shares, which fill 2,000 a step, and sells them the same way. Cut
    while the exit was filling, the part already sold was in no figure: realized P&L counted closed round trips only,
    unrealized the shares still held. Over whole and cut runs, with and without commissions: realized + unrealized -
    fees is the equity's change, and the partly sold position is listed in `open_positions` with its sold part."""
    from engine.core.journal import read_events
    from engine.replay.backtest import run_backtest
    from engine.replay.fills import FillModel
    from tests.replay.conftest import session_bars

    closes = [10.0]
    for minute in range(1, 390):
        closes.append(round(closes[-1] + (0.0042 if (minute // 40) % 2 == 0 else -0.0037), 4))
    session_bars(tmp_path / "whole", "AAPL", MONDAY_OPEN, closes)
    first = run_backtest(load(momentum_project), tmp_path / "whole", out_dir=tmp_path / "out-whole", html=False)
    sells = [e for e in read_events(tmp_path / "out-whole" / "app.jsonl") if e.get("event") == "fill" and e["side"] == "sell"]
    assert len(sells) > 1 and sells[0]["qty"] == 2000.0  # an exit filled in parts
    selling = int((datetime.fromisoformat(sells[0]["ts"]) - MONDAY_OPEN) / MINUTE)
    partly = []
    for cut, model in ((None, FillModel()), (selling, FillModel()), (selling, FillModel(commission_per_share=0.005)),
                       (selling + 1, FillModel(commission_per_share=0.005, slippage_bps=20))):  # fmt: skip
        name = f"{cut}-{model.commission_per_share}-{model.slippage_bps}"
        session_bars(tmp_path / name, "AAPL", MONDAY_OPEN, closes[:cut])
        result = first if cut is None else run_backtest(load(momentum_project), tmp_path / name, fill_model=model,
                                                        out_dir=tmp_path / f"out-{name}", html=False)  # fmt: skip
        summary = result.summary
        for figures in (summary["total"], summary["bots"]["mom_AAPL"]):
            change = figures["realized_pnl"] + figures["unrealized_pnl"] - figures["fees"]
            assert change == pytest.approx(summary["total"]["final_equity"] - summary["starting_cash"], abs=0.02), name
        partly += [p for p in summary["open_positions"] if p["sold_qty"] > 0]
        with (result.out_dir / "trades.csv").open() as rows:
            closed = sum(float(row["pnl"]) for row in csv.DictReader(rows))
        sold = sum(p["realized_pnl"] for p in summary["open_positions"])
        assert summary["total"]["realized_pnl"] == pytest.approx(closed + sold, abs=0.01), name
    assert partly and all(p["qty"] > 0 and p["realized_pnl"] != 0 for p in partly)
