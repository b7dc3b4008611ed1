"""run_backtest: the engine over recorded data, the report it writes, determinism, and what it refuses."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.core.calendar import NEW_YORK
from engine.core.clock import ManualClock
from engine.core.store import StateStore
from engine.data.fetch import fetch, history_clients
from engine.data.files import write_bars
from engine.data.records import Bar
from engine.replay.backtest import BacktestError, BacktestProgress, MissingData, OutputFailed, run_backtest
from engine.replay.fills import FillModel
from engine.replay.report import _drawdown, _exposure, _ratio
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load, only_momentum, session_bars

KEY, SECRET = "PKTESTKEY0123456789", "testsecret0123456789abcdefghijklmnopqrstu"


def trending_day(folder: Path, day_open: datetime = MONDAY_OPEN) -> None:
    """AAPL over a session: up, down, up again, so the momentum bot enters and exits by its rules."""
    closes = [190.0]
    for minute in range(1, 390):
        step = 0.08 if (minute // 40) % 2 == 0 else -0.07
        closes.append(round(closes[-1] + step, 2))
    session_bars(folder, "AAPL", day_open, closes)


def test_a_backtest_on_data_fetched_from_the_emulator_writes_the_report(project: ProjectCopy, tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc))
    with Emulator(SimExchange(clock, seed=7), key=KEY, secret=SECRET) as emulator:
        clients = history_clients(KEY, SECRET, data_base_url=emulator.url)
        fetch(
            clients,
            ["AAPL", "SPY", "QQQ", "BTC/USD", "ETH/USD"],
            date(2026, 11, 20),
            date(2026, 11, 20),
            "1Min",
            tmp_path / "data",
        )
    seen: list[BacktestProgress] = []
    start, end = datetime(2026, 11, 20, 14, 30, tzinfo=timezone.utc), datetime(2026, 11, 20, 17, 0, tzinfo=timezone.utc)
    result = run_backtest(load(project), tmp_path / "data", start=start, end=end, out_dir=tmp_path / "out", progress=seen.append)
    out = tmp_path / "out"
    assert {p.name for p in result.files} == {"summary.json", "trades.csv", "equity.csv", "report.html", "state.db", "app.jsonl"}
    assert all(p.exists() for p in result.files)
    assert result.start == start + timedelta(minutes=1)  # the first stock bar is known at 09:31
    assert result.frames == 150 and result.bar_events == 5 * 150  # every symbol has a bar each minute
    assert seen[-1].fraction == 1.0 and seen[-1].frames == 150
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["bots"]) == {"mom_AAPL", "opt_core", "crypto_core"}
    for figures in (summary["total"], *summary["bots"].values()):
        assert {"trades", "win_rate", "realized_pnl", "max_drawdown_pct", "sharpe", "sortino", "exposure_pct", "fees", "halts",
                "entries_blocked"} <= set(figures)  # fmt: skip
    store = StateStore(out / "state.db")
    trades = store.trades()
    assert {t.bot_id for t in trades} == {"mom_AAPL", "opt_core", "crypto_core"}  # options priced from the underlying
    rows = list(csv.DictReader((out / "trades.csv").open()))
    assert [(r["bot"], r["symbol"], float(r["pnl"])) for r in rows] == [(t.bot_id, t.symbol, round(t.pnl, 4)) for t in trades]
    assert summary["total"]["trades"] == len(trades)
    assert summary["total"]["realized_pnl"] == round(sum(t.pnl for t in trades), 2)
    assert summary["bots"]["crypto_core"]["fees"] > 0 and summary["bots"]["mom_AAPL"]["fees"] == 0  # Alpaca's crypto fee only
    equity = list(csv.DictReader((out / "equity.csv").open()))
    assert len(equity) == 150 and float(equity[-1]["equity"]) == summary["total"]["final_equity"]
    page = (out / "report.html").read_text()
    assert page.count("Plotly.newPlot") >= 3 and '<div id="equity"' in page and "trades-AAPL" in page
    assert 'src="https://cdn.plot.ly' not in page and len(page) > 3_000_000  # plotly's script is inlined: it opens offline


def test_the_same_inputs_give_the_same_bytes(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")
    report = load(momentum_project)
    first = run_backtest(report, tmp_path / "data", out_dir=tmp_path / "a", html=False)
    run_backtest(report, tmp_path / "data", out_dir=tmp_path / "b", html=False)
    assert first.summary["total"]["trades"] >= 2
    for name in ("summary.json", "trades.csv", "equity.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # ... and a different fill model gives different fills
    third = run_backtest(report, tmp_path / "data", out_dir=tmp_path / "c", html=False, fill_model=FillModel(slippage_bps=50))
    assert (tmp_path / "c" / "trades.csv").read_bytes() != (tmp_path / "a" / "trades.csv").read_bytes()
    assert third.summary["total"]["realized_pnl"] < first.summary["total"]["realized_pnl"]


def test_bots_whose_data_is_missing_are_named_at_start(project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")
    with pytest.raises(MissingData) as caught:
        run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out")
    text = str(caught.value)
    for bot, symbol in (("opt_core", "SPY"), ("opt_core", "QQQ"), ("crypto_core", "BTC/USD"), ("crypto_core", "ETH/USD")):
        assert f"{bot} trades {symbol}, which has no data here" in text
    assert "mom_AAPL" not in text
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_pairs_file_named_without_its_dash_is_pointed_at(project: ProjectCopy, tmp_path: Path) -> None:
    """bars/BTCUSD.csv is a valid name, for the symbol BTCUSD: the crypto bot on BTC/USD was told there was no data,
    with nothing pointing at the file that was there."""
    trending_day(tmp_path / "data")
    session_bars(tmp_path / "data", "BTCUSD", MONDAY_OPEN, [50_000.0 + i for i in range(390)])
    with pytest.raises(MissingData) as caught:
        run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out")
    assert "crypto_core trades BTC/USD, which has no data here (bars/BTC-USD.parquet or .csv, or quotes/BTC-USD); " \
        "BTCUSD's data is here, but a pair's file is named BTC-USD" in str(caught.value)
    assert "ETH/USD, which has no data here (bars/ETH-USD.parquet or .csv, or quotes/ETH-USD): fetch" in str(caught.value)


@pytest.mark.parametrize("layout", ["bars/AAPL.csv", "quotes/AAPL/"])
def test_a_symbol_whose_file_holds_no_rows_is_told_so(momentum_project: ProjectCopy, tmp_path: Path, layout: str) -> None:
    """A header only, or an empty parts folder: the message said "no data here" and then "AAPL's data is here, but
    a pair's file is named AAPL", pointing away from the file that was there, empty."""
    path = tmp_path / "data" / layout
    if layout.endswith("/"):
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True)
        path.write_text("timestamp,open,high,low,close,volume\n")
    with pytest.raises(MissingData) as caught:
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out")
    text = str(caught.value)
    assert f"mom_AAPL trades AAPL, whose data here has no rows ({layout} holds none): fetch it, or disable the bot" in text
    assert "pair" not in text


def test_data_outside_the_window_is_missing_data(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")
    with pytest.raises(MissingData, match="outside the backtest's window"):
        run_backtest(load(momentum_project), tmp_path / "data", start=date(2026, 12, 1), out_dir=tmp_path / "out")


def test_ticks_that_end_before_the_data_is_priced_are_named_not_the_data(momentum_project: ProjectCopy,
                                                                         tmp_path: Path) -> None:
    """A recording's ticks/ from the Friday beside Monday's quotes: the error said the folder 'has no data between
    Monday 14:30 and its end', which it has; what it lacks is a tick there, where its replay ticks."""
    trending_day(tmp_path / "data")
    (tmp_path / "data" / "ticks").mkdir()
    (tmp_path / "data" / "ticks" / "part-000001.csv").write_text(
        "timestamp\n2026-11-20T14:30:00Z\n2026-11-20T14:30:05Z\n", encoding="utf-8")
    with pytest.raises(BacktestError) as caught:
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out")
    assert str(caught.value) == (f"{tmp_path / 'data'} has no recorded tick between 2026-11-23T14:31:00Z and its end: its "
                                 "ticks/ (where a replay of a recording ticks) runs from 2026-11-20T14:30:00Z to "
                                 "2026-11-20T14:30:05Z; remove ticks/ to replay at each row's time")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("day_open", [
    datetime(2026, 11, 26, 14, 30, tzinfo=timezone.utc),  # Thanksgiving
    datetime(2026, 11, 28, 14, 30, tzinfo=timezone.utc),  # a Saturday
    datetime(2026, 11, 24, 2, 30, tzinfo=timezone.utc),  # Monday 21:30 in New York: New York's times written as UTC?
])  # fmt: skip
def test_stock_data_with_no_row_in_a_session_is_missing_data(momentum_project: ProjectCopy, tmp_path: Path,
                                                             day_open: datetime) -> None:
    """A day of bars the exchange is closed for: the run went through it, made no trade and exited 0, its report
    as sound as any other's."""
    trending_day(tmp_path / "data", day_open)
    with pytest.raises(MissingData) as caught:
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out")
    assert "mom_AAPL trades AAPL, whose data in the window (" in str(caught.value)
    assert "has no row while its market is open (XNYS sessions)" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_window_with_no_session_is_missing_data_too(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")  # Monday
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN + timedelta(days=5), [190.0] * 390)  # and Saturday
    with pytest.raises(MissingData, match="has no row while its market is open"):
        run_backtest(load(momentum_project), tmp_path / "data", start=date(2026, 11, 28), out_dir=tmp_path / "out")
    run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)  # Monday's are


def test_bars_further_apart_than_the_replays_bar_length_are_told(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """Hourly AAPL bars beside minute SPY bars (two fetches with different --timeframe into one folder): every bar is
    replayed a minute after it starts, so each AAPL bar's close was seen 59 minutes before it happened, unsaid."""
    from engine.data.files import write_bars
    from tests.replay.conftest import minute_bars

    bars = minute_bars(MONDAY_OPEN, [190.0 + i for i in range(6)])
    hourly = [bar._replace(timestamp=MONDAY_OPEN + timedelta(hours=i)) for i, bar in enumerate(bars)]
    write_bars(tmp_path / "data", "AAPL", hourly, fsync=False)
    session_bars(tmp_path / "data", "SPY", MONDAY_OPEN, [500.0] * 390)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert ("AAPL's bars are mostly 1:00:00 apart, but each bar is replayed 0:01:00 after its timestamp (the smallest "
            "gap between two bars of a symbol, SPY's)") in "\n".join(result.notes)
    trending_day(tmp_path / "minute")  # bars of one length: nothing to say
    assert run_backtest(load(momentum_project), tmp_path / "minute", out_dir=tmp_path / "out2", html=False).notes == ()
    # one stray bar a second after another: every bar was replayed a second after it started, unsaid
    stray = minute_bars(MONDAY_OPEN, [190.0 + i / 10 for i in range(390)])
    stray[1] = stray[1]._replace(timestamp=MONDAY_OPEN + timedelta(seconds=1))
    write_bars(tmp_path / "stray", "AAPL", stray, fsync=False)
    result = run_backtest(load(momentum_project), tmp_path / "stray", out_dir=tmp_path / "out3", html=False)
    assert "AAPL's bars are mostly 0:01:00 apart, but each bar is replayed 0:00:01 after its timestamp" in "\n".join(result.notes)


def test_the_bar_length_is_read_from_every_bar_not_the_first_two_thousand(tmp_path: Path) -> None:
    """A file of 5-minute bars that goes on in minute bars (or the other way round): only its first 2,000 bars were
    looked at, so the minute bars were replayed 5 minutes after they started (4 minutes late), and bars mostly 5
    minutes apart were replayed a minute after they started without the note that says so."""
    from engine.data.dataset import DataSet
    from engine.data.files import write_bars
    from engine.data.records import Bar
    from engine.replay.backtest import _longer_bars, bar_interval

    def series(first: timedelta, then: timedelta) -> list[Bar]:
        stamps = [MONDAY_OPEN + first * i for i in range(2001)]
        stamps += [stamps[-1] + then * i for i in range(1, 6001)]
        return [Bar(at, 100.0, 101.0, 99.0, 100.0, 10.0) for at in stamps]

    write_bars(tmp_path / "later", "AAPL", series(timedelta(minutes=5), timedelta(minutes=1)), fsync=False)
    assert bar_interval(DataSet.open(tmp_path / "later")) == timedelta(minutes=1)
    write_bars(tmp_path / "mostly", "AAPL", series(timedelta(minutes=1), timedelta(minutes=5)), fsync=False)
    data = DataSet.open(tmp_path / "mostly")
    assert bar_interval(data) == timedelta(minutes=1)
    assert (_longer_bars(data, timedelta(minutes=1)) or "").startswith("AAPL's bars are mostly 0:05:00 apart")


def test_a_bots_data_that_ends_before_the_others_begin_is_missing_data(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """AAPL on Monday, TSLA on Tuesday: the run starts when every bot has a price, Tuesday, and Monday's AAPL was left
    out without a word (mom_AAPL: no trade, no halt, exit 0)."""
    momentum_project.replace("config/bots.yaml", "  - bot_id: mom_TSLA\n    enabled: false", "  - bot_id: mom_TSLA\n    enabled: true")
    trending_day(tmp_path / "data")
    session_bars(tmp_path / "data", "TSLA", MONDAY_OPEN + timedelta(days=1), [250.0] * 390)
    with pytest.raises(MissingData) as caught:
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out")
    assert str(caught.value).endswith(
        "mom_AAPL trades AAPL, whose data (2026-11-23T14:31:00Z to 2026-11-23T21:00:00Z) ends before the backtest can "
        "start: it starts at 2026-11-24T14:31:00Z, when every enabled bot's symbols have a price (TSLA's first); give "
        "them data over the same days, or disable the bot")
    assert "mom_TSLA" not in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tsla_days", [(0, 2), (0,)], ids=["a-day-missing", "ending-early"])
def test_a_symbol_without_data_for_whole_sessions_the_others_have_is_noted(
    momentum_project: ProjectCopy, tmp_path: Path, tsla_days: tuple[int, ...]
) -> None:
    """AAPL Monday to Wednesday, TSLA without Tuesday (or with Monday alone): mom_TSLA sat idle on the days it had
    no price, rightly, and its figures counted them as days traded, without a word (exit 0, no note)."""
    momentum_project.replace("config/bots.yaml", "  - bot_id: mom_TSLA\n    enabled: false", "  - bot_id: mom_TSLA\n    enabled: true")
    for day in range(3):
        trending_day(tmp_path / "data", MONDAY_OPEN + timedelta(days=day))
    for day in tsla_days:
        session_bars(tmp_path / "data", "TSLA", MONDAY_OPEN + timedelta(days=day), [250.0 + m * 0.01 for m in range(390)])
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    missing = "a session of the backtest where other symbols have (2026-11-24)" if len(tsla_days) == 2 else \
        "2 sessions of the backtest where other symbols have (2026-11-24, 2026-11-25)"
    assert [n for n in result.notes if n.startswith("TSLA")] == [
        f"TSLA has no data in {missing}: mom_TSLA could not trade it then, and the summary's figures count those days all "
        "the same; give it data over the same days, or backtest those days apart"]
    assert not [n for n in result.notes if n.startswith("AAPL")]


def test_a_coin_without_data_for_a_whole_utc_day_the_other_has_is_noted(project: ProjectCopy, tmp_path: Path) -> None:
    """A coin trades every day: its days are UTC's. ETH/USD's file lacks Tuesday, BTC/USD's does not."""
    crypto_alone_on_btc(project)
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD"]', 'pairs: ["BTC/USD", "ETH/USD"]')
    midnight = datetime(2026, 11, 23, tzinfo=timezone.utc)
    for symbol, days in (("BTC/USD", (0, 1, 2)), ("ETH/USD", (0, 2))):
        bars = [Bar(midnight + timedelta(days=day, minutes=15 * i), 100.0, 100.5, 99.5, 100.0, 1.0)
                for day in days for i in range(96)]  # fmt: skip
        write_bars(tmp_path / "data", symbol, bars, fsync=False)
    result = run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert [n for n in result.notes if "no data in" in n] == [
        "ETH/USD has no data in a stretch of 24 hours or more of the backtest where other symbols have (no row after "
        "2026-11-23T23:45:00Z until 2026-11-25T00:00:00Z): crypto_core could not trade it then, and the summary's figures "
        "count that time all the same; give it data over the same days, or backtest those days apart"]


def test_a_coins_gap_of_a_day_not_aligned_to_midnight_is_noted(project: ProjectCopy, tmp_path: Path) -> None:
    """BTC/USD without rows from 2026-11-17T03:00Z to 2026-11-18T03:00Z, ETH/USD going on: no whole UTC day was
    missing, so nothing was said, while crypto_core could not trade BTC/USD for 24 hours."""
    crypto_alone_on_btc(project)
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD"]', 'pairs: ["BTC/USD", "ETH/USD"]')
    midnight = datetime(2026, 11, 16, tzinfo=timezone.utc)
    gap = (datetime(2026, 11, 17, 3, tzinfo=timezone.utc), datetime(2026, 11, 18, 3, tzinfo=timezone.utc))
    for symbol in ("BTC/USD", "ETH/USD"):
        stamps = [midnight + timedelta(minutes=15 * i) for i in range(3 * 96)]
        bars = [Bar(at, 100.0, 100.5, 99.5, 100.0, 1.0) for at in stamps if symbol == "ETH/USD" or not gap[0] <= at < gap[1]]
        write_bars(tmp_path / "data", symbol, bars, fsync=False)
    result = run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert [n for n in result.notes if "no data" in n] == [
        "BTC/USD has no data in a stretch of 24 hours or more of the backtest where other symbols have (no row after "
        "2026-11-17T02:45:00Z until 2026-11-18T03:00:00Z): crypto_core could not trade it then, and the summary's figures "
        "count that time all the same; give it data over the same days, or backtest those days apart"]


def test_symbols_with_data_over_the_same_sessions_are_not_noted(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    momentum_project.replace("config/bots.yaml", "  - bot_id: mom_TSLA\n    enabled: false", "  - bot_id: mom_TSLA\n    enabled: true")
    for day in range(2):
        trending_day(tmp_path / "data", MONDAY_OPEN + timedelta(days=day))
        session_bars(tmp_path / "data", "TSLA", MONDAY_OPEN + timedelta(days=day), [250.0] * 390)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert result.notes == ()


def test_a_holiday_with_bars_is_no_trading_day_and_is_noted(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """AAPL bars on 2026-11-25, 11-26 (Thanksgiving: the exchange had no session), 11-27 and 11-30. summary.json said
    4 trading days, and the account's Sharpe and Sortino counted the holiday as a day's (zero) return; nothing
    said the data has rows on a day the exchange was shut."""
    for day in (2, 3, 4, 7):
        trending_day(tmp_path / "data", MONDAY_OPEN + timedelta(days=day))
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert result.summary["period"]["trading_days"] == 3
    assert [n for n in result.notes if "no session" in n] == [
        "AAPL has rows on a day the exchange (XNYS) had no session (2026-11-26), a holiday or a weekend: mom_AAPL could "
        "not trade it then, and the summary counts the exchange's sessions only as trading days; check the data's dates "
        "and time zone"]
    equity = list(csv.DictReader((tmp_path / "out" / "equity.csv").open()))
    closes: dict[str, float] = {}
    for row in equity:
        session = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).astimezone(NEW_YORK).date().isoformat()
        closes[session] = float(row["equity"])
    del closes["2026-11-26"]
    values = [100_000.0, *closes.values()]
    returns = [after / before - 1 for before, after in itertools.pairwise(values)]
    # equity.csv's cents move these near-equal returns' Sharpe a little; a zero-return holiday among them, a lot
    assert result.summary["total"]["sharpe"] == pytest.approx(_ratio(returns, downside=False), rel=0.01)


def test_a_folder_holding_a_run_is_not_overwritten(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")
    report = load(momentum_project)
    run_backtest(report, tmp_path / "data", out_dir=tmp_path / "out", html=False)
    with pytest.raises(BacktestError, match=r"state\.db exists"):
        run_backtest(report, tmp_path / "data", out_dir=tmp_path / "out")


@pytest.mark.parametrize("left", ["summary.json", "trades.csv", "equity.csv", "report.html"])
def test_a_folder_holding_another_runs_report_file_is_not_taken(momentum_project: ProjectCopy, tmp_path: Path,
                                                               left: str) -> None:  # fmt: skip
    """Only state.db and app.jsonl were refused: a folder keeping an earlier run's report (its state and log deleted
    to save space) was taken, and a run stopped there left the old summary.json, which says the run finished, beside
    its own state. Any file a run leaves refuses the folder, before anything is written."""
    trending_day(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / left).write_text("of another run\n")
    with pytest.raises(BacktestError, match=rf"{left.replace('.', '[.]')} exists: a backtest writes a new folder"):
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=out, html=False)
    assert sorted(p.name for p in out.iterdir()) == [left]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("a_file", "a_file is a file: a backtest writes a folder"),
        ("a_file/out", "cannot write the backtest there"),  # its parent is a file: the folder cannot be made
    ],
)
def test_an_out_folder_that_cannot_be_written_is_refused_before_the_run(
    momentum_project: ProjectCopy, tmp_path: Path, out: str, message: str
) -> None:
    trending_day(tmp_path / "data")
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(BacktestError, match=message):
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / out, html=False)
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_symbol_with_both_bars_and_quotes_is_noted(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    from engine.data.files import write_quotes
    from engine.data.records import Quote as QuoteRow

    trending_day(tmp_path / "data")
    quotes = [QuoteRow(MONDAY_OPEN + timedelta(minutes=m), 189.9 + m * 0.01, 190.1 + m * 0.01) for m in range(60)]
    write_quotes(tmp_path / "data", "AAPL", quotes, fsync=False)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert "AAPL: both bars and quotes given; quotes set the price (docs/backtest.md, Prices)" in result.notes


def test_a_quotes_file_with_no_row_beside_bars_is_not_said_to_set_the_price(momentum_project: ProjectCopy,
                                                                           tmp_path: Path) -> None:
    """quotes/AAPL.csv a header only: the note said the quotes set AAPL's price, while its bars did."""
    trending_day(tmp_path / "data")
    (tmp_path / "data" / "quotes").mkdir()
    (tmp_path / "data" / "quotes" / "AAPL.csv").write_text("timestamp,bid,ask\n")
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    assert result.notes == ()
    assert result.summary["total"]["trades"] >= 2  # priced by its bars


def test_dates_are_days_in_the_engine_time_zone(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    trending_day(tmp_path / "data")
    trending_day(tmp_path / "data", MONDAY_OPEN + timedelta(days=1))
    result = run_backtest(load(momentum_project), tmp_path / "data", start=date(2026, 11, 24), end=date(2026, 11, 24),
                          out_dir=tmp_path / "out", html=False)  # fmt: skip
    assert result.start == MONDAY_OPEN + timedelta(days=1, minutes=1) and result.frames == 390
    assert result.summary["period"]["trading_days"] == 1


def test_a_stale_feed_halts_as_it_would_live(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """AAPL's bars stop for 20 minutes in the session: its price is older than 5 bars, the engine halts (fail closed)."""
    closes = [190.0 + 0.01 * i for i in range(390)]
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN, closes[:60])
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN + timedelta(minutes=80), closes[80:])
    # a second symbol keeps the clock ticking through the gap
    session_bars(tmp_path / "data", "MSFT", MONDAY_OPEN, [400.0] * 390)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    halts = result.summary["system_halts"]
    assert halts and halts[0]["conditions"] == ["data_stale_halt"]
    assert halts[0]["started_at"] == "2026-11-23T15:36:00Z"  # the last bar became known at 10:30; 6 minutes later


def test_a_hole_in_every_file_halts_as_it_does_beside_another_symbol(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """The same hole with AAPL's file alone: no file has a row there, and the replay ticked only at rows, so it
    jumped the hole in one step, no halt, where the same data beside an unrelated file halted (engine/replay/gaps.py).
    A live run ticks through it: so does the replay, on the prices before, and halts at the same minute."""
    closes = [190.0 + 0.01 * i for i in range(390)]
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN, closes[:60])
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN + timedelta(minutes=80), closes[80:])
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    halts = result.summary["system_halts"]
    assert halts and halts[0]["conditions"] == ["data_stale_halt"]
    assert halts[0]["started_at"] == "2026-11-23T15:36:00Z"
    assert result.frames == 390 and result.bar_events == 370  # every minute of the session ticked, 20 without a row
    assert any(note.startswith("20 ticks at instants no file has a row at (the first at 2026-11-23T15:31:00Z)")
               for note in result.summary["notes"])  # fmt: skip


def test_the_metrics() -> None:
    assert _drawdown([100, 120, 90, 130, 117]) == (30, 0.25)
    start = datetime(2026, 11, 23, tzinfo=timezone.utc)
    hours = [(start + timedelta(hours=1), start + timedelta(hours=3)), (start + timedelta(hours=2), start + timedelta(hours=4))]
    assert _exposure(hours, start, start + timedelta(hours=10)) == pytest.approx(0.3)
    assert _ratio([0.01], downside=False) is None and _ratio([0.01, 0.01], downside=False) is None
    assert _ratio([0.01, -0.01, 0.02], downside=False) == round(0.02 / 3 / 0.01527525 * 252**0.5, 4)
    assert _ratio([0.01, 0.02], downside=True) is None  # no losing day: no downside to divide by


def test_a_backtest_stopped_midway_keeps_its_state_up_to_the_last_tick(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its transactions are committed a few hundred at a time (StateStore.hold_commits): an interrupted run (here
    Ctrl-C, raised from the progress callback) still leaves its state file holding every tick it finished."""
    trending_day(tmp_path / "data")
    monkeypatch.setattr("engine.replay.backtest.PROGRESS_EVERY", 100)
    monkeypatch.setattr("engine.replay.backtest.COMMIT_EVERY", 70)  # commits mid-run, and some ticks left to close()

    def interrupt(progress: BacktestProgress) -> None:
        if progress.frames == 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", progress=interrupt, html=False)
    full = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "full", html=False)
    with sqlite3.connect(tmp_path / "out" / "state.db") as conn:  # another connection: only what was committed
        saved = conn.execute("SELECT count(*), max(created_at) FROM orders").fetchone()
    cut = (full.start + timedelta(minutes=299)).astimezone(timezone.utc).isoformat()
    with sqlite3.connect(tmp_path / "full" / "state.db") as conn:
        expected = conn.execute("SELECT count(*) FROM orders WHERE created_at <= ?", (cut,)).fetchone()[0]
    assert expected > 0 and saved[0] == expected
    from engine.trading.runner import state_now

    stopped = StateStore(tmp_path / "out" / "state.db")  # read as of its last tick, not this machine's clock
    try:
        assert state_now(stopped, datetime(2030, 1, 1, tzinfo=timezone.utc)) == (full.start + timedelta(minutes=299), True)
    finally:
        stopped.close()


def _remove(out: Path, what: str) -> None:
    """What a cleanup job does to a backtest folder while the backtest runs."""
    if what == "folder":
        shutil.rmtree(out)
    elif what == "moved":
        out.rename(out.with_name("moved"))
    else:
        (out / what).unlink()


@pytest.mark.parametrize("what", ["folder", "moved", "state.db", "app.jsonl"])
@pytest.mark.parametrize("at", [100, 1.0])
def test_an_out_folder_removed_during_the_backtest_is_an_output_failure_not_a_report(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, at: float
) -> None:
    """SQLite goes on writing a state file deleted under it and the log is opened again at its path: the backtest
    said 'wrote ... state.db, app.jsonl' over a folder without its state.db, or a log without its first part.
    Removed mid-run (at frame 100) it stops at the next check; removed after the last tick, before the report."""
    trending_day(tmp_path / "data")
    monkeypatch.setattr("engine.replay.backtest.PROGRESS_EVERY", 100)
    out = tmp_path / "out"

    def remove(progress: BacktestProgress) -> None:
        if progress.frames == at or progress.fraction == at:
            _remove(out, what)

    with pytest.raises(OutputFailed, match=f"its {'app.jsonl' if what == 'app.jsonl' else 'state.db'} was deleted or "
                       "replaced during the backtest"):  # fmt: skip
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=out, progress=remove, html=False)
    assert not (out / "summary.json").exists() and not (out / "trades.csv").exists()


@pytest.mark.parametrize("inside", [".", "bars", "bars/run"])
def test_a_backtest_is_never_written_into_its_data_folder(momentum_project: ProjectCopy, tmp_path: Path, inside: str) -> None:
    """Its trades.csv in bars/ would make every later backtest of the folder refuse it ('trades' is no symbol)."""
    trending_day(tmp_path / "data")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*"))
    with pytest.raises(BacktestError, match="inside the data folder"):
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "data" / inside, html=False)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*")) == before


def test_a_report_the_disk_cannot_take_is_a_runtime_failure_exit_1(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's exit codes: a file that cannot be used now (a full disk, read-only) is 1, not the 2 of bad
    input; the run's state and log stay. A folder whose parent is a file is bad input: 2."""
    import errno

    from engine.cli import main
    from engine.replay import report as reporting

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    trending_day(tmp_path / "data")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines),
             "--rules", str(momentum_project.rules)]  # fmt: skip
    monkeypatch.setattr(reporting, "write", disk_full)
    assert main(["backtest", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), *files]) == 1
    assert "the run ended but its report could not be written (No space left on device)" in capsys.readouterr().err
    assert (tmp_path / "out" / "state.db").is_file() and (tmp_path / "out" / "app.jsonl").is_file()
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["backtest", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "a_file" / "out"), *files]) == 2


def crypto_alone_on_btc(project: ProjectCopy) -> None:
    """Only the CryptoBot, on BTC/USD alone (ETH/USD, which the simulator's universe names, has no data)."""
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    project.replace("config/bots.yaml", "momentum_bots:\n  - bot_id: mom_AAPL\n    enabled: true",
                    "momentum_bots:\n  - bot_id: mom_AAPL\n    enabled: false")  # fmt: skip
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', 'pairs: ["BTC/USD"]')


def swinging_btc(folder: Path) -> None:
    """A session of BTC/USD minute bars rising half an hour, falling the next: the CryptoBot enters and exits."""
    closes = [50_000.0]
    for minute in range(1, 390):
        closes.append(round(closes[-1] * (1.0015 if (minute // 30) % 2 == 0 else 0.9986), 2))
    session_bars(folder, "BTC/USD", MONDAY_OPEN, closes)


def test_a_crypto_pair_the_simulator_names_but_the_data_lacks_fails_no_assets_read(
    project: ProjectCopy, tmp_path: Path
) -> None:
    """The CryptoBot on BTC/USD alone: the simulator's universe also names ETH/USD, which the data lacks. Its asset
    was priced from the data, so the one /v2/assets read the engine makes failed (404) at every tick, and BTC/USD's
    minimums were never known: the bot never sized an entry, all month."""
    crypto_alone_on_btc(project)
    swinging_btc(tmp_path / "data")
    result = run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    events = [json.loads(line) for line in (tmp_path / "out" / "app.jsonl").read_text().splitlines()]
    assert [e for e in events if e["event"] == "broker_error"] == []
    assert not any("trading rules" in e.get("reason", "") for e in events if e["event"] == "entry_blocked")
    assert result.summary["bots"]["crypto_core"]["trades"] >= 1


def test_each_round_trip_in_trades_csv_carries_the_fees_its_orders_paid(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """SQLite's trades say 0 (no live order shows a fee): trades.csv said 0 on every row while summary.json counted
    the commissions paid."""
    trending_day(tmp_path / "data")
    model = FillModel(commission_per_share=0.01)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False, fill_model=model)
    rows = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    assert len(rows) >= 2 and StateStore(tmp_path / "out" / "state.db").positions() == []  # every trade closed
    for row in rows:
        assert float(row["fees"]) == pytest.approx(2 * float(row["qty"]) * 0.01), row  # a buy and a sell of qty shares
    assert sum(float(r["fees"]) for r in rows) == pytest.approx(result.summary["bots"]["mom_AAPL"]["fees"], abs=0.01)


def test_a_figure_that_is_not_finite_writes_no_report(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """A commission past every bound (set under the model's check, as a bug or an overflow would) made the cash -inf:
    summary.json held Infinity (no JSON reader takes it), equity.csv -inf, and the run exited 0. The report is
    refused whole, naming the figure; the run's state and log stay."""
    trending_day(tmp_path / "data")
    model = FillModel()
    object.__setattr__(model, "commission_per_share", 1e308)
    with pytest.raises(OutputFailed) as caught:
        run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False, fill_model=model)
    assert "the run ended but its report was not written: summary.json:" in str(caught.value)
    assert "not a finite number" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["app.jsonl", "state.db"]


def test_status_and_health_read_a_backtests_state_as_of_its_last_tick(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: every operator command reads a backtest's state.db. `status` said "broker: none yet; as of <this
    machine's clock>; no tick recorded yet", the counters of today's real date (none) and no last run, and judged
    the halts against the real clock: the file recorded no broker, run or last tick. It is read as of its last tick."""
    from engine.cli import main

    trending_day(tmp_path / "data")
    run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    files = ["--state-db", str(tmp_path / "out" / "state.db"), "--log", str(tmp_path / "out" / "app.jsonl"),
             "--config", str(momentum_project.config), "--machines", str(momentum_project.machines),
             "--rules", str(momentum_project.rules)]  # fmt: skip
    assert main(["status", *files]) == 0
    said = capsys.readouterr().out
    header = said.splitlines()[0]
    assert "(broker: backtest; as of 2026-11-23T" in header and "no tick recorded" not in header, header
    assert "counters 2026-11-23:\n  mom_AAPL" in said and "last run: started 2026-11-23T" in said, said
    assert "(backtest: the data ended)" in said
    assert main(["health", *files]) == 1  # a finished run is not a live loop
    health = capsys.readouterr().out
    assert "unhealthy: the last run ended 2026-11-23T" in health and "on the backtest's clock (its data's time)" in health


def test_a_backtest_with_no_end_recorded_is_not_said_to_be_killed(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backtest holds no lock on its state file, and records its end only when its data runs out: while it still
    runs, `status` said "stopped without a summary (killed, or the machine stopped)" and `health` "no engine is
    running ... killed". Neither can tell a running backtest from a stopped one, so both say that, not a kill."""
    import sqlite3

    from engine.cli import main

    trending_day(tmp_path / "data")
    run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    db = tmp_path / "out" / "state.db"
    with sqlite3.connect(db) as conn:  # as it stands mid-run: its start recorded, no end yet
        [(text,)] = conn.execute("SELECT value FROM meta WHERE key = 'last_run'").fetchall()
        record = {k: v for k, v in json.loads(text).items() if k not in ("ended_at", "reason")}
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_run'", (json.dumps(record),))
    files = ["--state-db", str(db), "--log", str(tmp_path / "out" / "app.jsonl"), "--config", str(momentum_project.config),
             "--machines", str(momentum_project.machines), "--rules", str(momentum_project.rules)]  # fmt: skip
    assert main(["status", *files]) == 0
    said = capsys.readouterr().out
    assert "a backtest still running, or one stopped before its end" in said and "killed" not in said, said
    assert main(["health", *files]) == 1
    health = capsys.readouterr().out
    assert "a backtest still running, or one stopped before its end" in health and "killed" not in health, health


def _holds_until_flattened(project: ProjectCopy) -> ProjectCopy:
    """mom_AAPL entering at once on rising bars, and leaving only by the flatten before the close (no stop, take
    profit or time stop within the day)."""
    project.replace("config/bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 380")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 50")
    project.replace("config/bots.yaml", "take_profit_pct: 1.00", "take_profit_pct: 90")
    project.replace("config/bots.yaml", 'mode: "placeholder_momentum_v1"\n      params: {}',
                    'mode: "placeholder_momentum_v1"\n      params: {lookback_ticks: 2, min_move_pct: 0.0}')  # fmt: skip
    return project


def test_a_backtest_on_five_minute_bars_flattens_before_an_early_close(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """The day after Thanksgiving closes at 13:00. mom_AAPL holds until manage_until (12:55 Los Angeles, past the
    close), so it is flattened before the close. On 5-minute bars the tick 5 minutes before the close is 12:55
    and its market order fills at the next bar, known at 13:00, when the market is shut: the order expired and the
    position was held over the close. The margin now leaves a bar to decide on and one to fill in."""
    project = _holds_until_flattened(momentum_project)
    opened = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)  # 09:30 New York; the close is 13:00
    bars = [Bar(opened + timedelta(minutes=5 * i), 190.0 + 0.1 * i, 190.2 + 0.1 * i, 189.9 + 0.1 * i, 190.1 + 0.1 * i, 1000.0)
            for i in range(42)]  # fmt: skip
    write_bars(tmp_path / "data", "AAPL", bars, fsync=False)
    result = run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    trades = (tmp_path / "out" / "trades.csv").read_text().splitlines()[1:]
    assert trades, "the bot entered and its position was closed"
    assert all(row.split(",")[3] < "2026-11-27T18:00:00Z" for row in trades)  # every exit before the close
    assert result.summary["bots"]["mom_AAPL"]["unrealized_pnl"] == 0  # nothing held over the close


def test_a_manage_until_inside_the_close_margin_is_met_in_time_on_five_minute_bars(
    momentum_project: ProjectCopy, tmp_path: Path
) -> None:
    """manage_until 12:55 Los Angeles is 15:55 New York, five minutes before a regular close. On 5-minute bars the
    tick at 15:55 flattened, and its market order fills at the next bar, known at 16:00 with the market shut: the
    position was held overnight. A manage_until inside the close margin is met where the margin begins."""
    project = _holds_until_flattened(momentum_project)
    bars = [Bar(MONDAY_OPEN + timedelta(minutes=5 * i), 190.0 + 0.1 * i, 190.2 + 0.1 * i, 189.9 + 0.1 * i, 190.1 + 0.1 * i,
                1000.0) for i in range(78)]  # fmt: skip
    write_bars(tmp_path / "data", "AAPL", bars, fsync=False)
    result = run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    trades = (tmp_path / "out" / "trades.csv").read_text().splitlines()[1:]
    assert trades and all(row.split(",")[3] < "2026-11-23T21:00:00Z" for row in trades)  # every exit before the close
    assert result.summary["bots"]["mom_AAPL"]["unrealized_pnl"] == 0  # nothing held overnight


def test_fees_and_p_and_l_under_a_cent_are_not_written_as_0_in_summary_json(project: ProjectCopy, tmp_path: Path) -> None:
    """summary.json rounded realized P&L and fees to the cent: a CryptoBot on a few dollars paid fees under a cent
    and summary.json said 0.0, as if it paid none."""
    crypto_alone_on_btc(project)
    project.replace("config/bots.yaml", "default_notional_usd: 50", "default_notional_usd: 10")
    project.replace("config/bots.yaml", "max_trades_per_day: 6", "max_trades_per_day: 1")
    swinging_btc(tmp_path / "data")
    run_backtest(load(project), tmp_path / "data", out_dir=tmp_path / "out", html=False,
                 fill_model=FillModel(crypto_maker_fee=0.0002, crypto_taker_fee=0.0002))  # fmt: skip
    bot = json.loads((tmp_path / "out" / "summary.json").read_text())["bots"]["crypto_core"]
    assert bot["trades"] == 1 and 0 < bot["fees"] < 0.005, bot


def test_a_recording_over_a_holiday_is_not_told_to_check_its_dates(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """The engine's own recording of a run over Thanksgiving (it reads every symbol's quote each tick, the market
    shut or not) was told its stock rows on the holiday meant wrong dates or a wrong time zone: the rows are the
    run's reads, its times the engine's own (as MissingData's session rule already knows)."""
    from engine.data.recorder import Recorder

    thanksgiving = MONDAY_OPEN + timedelta(days=3)
    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for day in (MONDAY_OPEN, thanksgiving):
            for second in range(0, 300, 5):
                recorder.record("AAPL", day + timedelta(seconds=second), 190.0, 190.02)
                recorder.tick(day + timedelta(seconds=second))
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    assert result.frames == 120
    assert not [note for note in result.notes if "had no session" in note], result.notes


def test_a_recording_with_rows_its_ticks_never_read_says_its_replay_is_not_the_runs(momentum_project: ProjectCopy,
                                                                                    tmp_path: Path) -> None:
    """A recording's replay ticks at its run's ticks. Rows merged into its folder from elsewhere (another day's
    quotes without their ticks) are read by no tick: the replay is not the run's there, and it says so."""
    from engine.data.recorder import Recorder

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in range(0, 600, 5):
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
    quiet = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    assert quiet.frames == 120 and quiet.notes == ()
    with Recorder(tmp_path / "other", fsync=False) as other:  # the next day's quotes, recorded without ticks
        for second in range(0, 60, 5):
            other.record("AAPL", MONDAY_OPEN + timedelta(days=1, seconds=second), 191.0, 191.02)
    shutil.copy(tmp_path / "other" / "quotes" / "AAPL" / "part-000001.parquet",
                tmp_path / "rec" / "quotes" / "AAPL" / "part-000002.parquet")
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out2", html=False)
    assert result.frames == 120
    assert ("12 rows of" in "\n".join(result.notes) and "were seen by no tick of the recording there (the first at "
            "2026-11-24T14:30:00Z)" in "\n".join(result.notes))


def test_a_replay_starting_inside_a_recorded_run_says_it_starts_flat(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """--from inside a recording (or the second day of a folder two runs recorded): the run then held positions,
    cash and machine states the replay does not know, and it started flat without a word."""
    from engine.data.recorder import Recorder

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in range(0, 1200, 5):
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
    whole = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    assert whole.notes == ()
    cut = run_backtest(load(momentum_project), tmp_path / "rec", start=MONDAY_OPEN + timedelta(minutes=10),
                       out_dir=tmp_path / "out2", html=False)  # fmt: skip
    assert cut.frames == 120
    assert (f"the replay starts at 2026-11-23T14:40:00Z, after the first recorded tick of {tmp_path / 'rec'} "
            "(2026-11-23T14:30:00Z; the last before the start: 2026-11-23T14:39:55Z): what the recorded run held then "
            "(positions, cash, its machines' states, halts) is not known here, and the replay starts flat with --cash"
            ) in "\n".join(cut.notes)  # fmt: skip


def test_a_recording_whose_run_held_positions_or_other_cash_says_the_replay_does_not(momentum_project: ProjectCopy,
                                                                                     tmp_path: Path) -> None:
    """The run's first recorded tick held AAPL and had other cash (the next session of an account): the replay
    starts flat with --cash, and said nothing; nor of notes it could not read."""
    from engine.data.recorder import Recorder

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in range(0, 600, 5):
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
        recorder.note("run", MONDAY_OPEN, cash=81_000.0, equity=100_000.0, positions={"AAPL": 100.0}, halts=[])
    with (tmp_path / "rec" / "recording.jsonl").open("a") as f:
        f.write("damaged\n")
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False, cash=100_000)
    said = "\n".join(result.notes)
    assert ("the recorded run started at 2026-11-23T14:30:00Z holding AAPL 100.0; the replay starts with no position"
            in said)
    assert "with cash 81,000.00, the replay with 100,000.00: give --cash 81000.00 to size as it did" in said
    assert f"1 line of {tmp_path / 'rec' / 'recording.jsonl'} cannot be read ({tmp_path / 'rec' / 'recording.jsonl'}:2)" in said


def test_ticks_a_kill_lost_from_a_recording_are_told(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """A kill loses the ticks buffered since the last flush, while the state file kept them: the next run goes on
    from the state's last tick, and the replay had no tick in between, without a word. The next run's first note
    has both last ticks, and the backtest says what is not in the replay."""
    from engine.data.recorder import Recorder

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in [*range(0, 300, 5), *range(600, 900, 5)]:  # 14:35 to 14:40 lost
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
        recorder.note("run", MONDAY_OPEN + timedelta(seconds=600), cash=100_000.0, positions={}, halts=[],
                      state_last_tick=MONDAY_OPEN + timedelta(seconds=595),
                      recorded_last_tick=MONDAY_OPEN + timedelta(seconds=295))  # fmt: skip
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    assert ("the recorded run ticked from 2026-11-23T14:34:55Z to 2026-11-23T14:39:55Z with nothing recorded (a kill "
            "loses the quotes and ticks buffered since the last flush)") in "\n".join(result.notes)


def test_two_backtests_into_one_out_at_once_never_share_it(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two backtests given one --out, started together: both found no state.db, and both went on into the folder,
    the second one's ticks written into the first one's state.db and log (its report read from both runs). The
    folder is claimed as the run's state file is made: the one that comes second is refused, the other's files
    are left whole."""
    import engine.replay.backtest as backtest

    trending_day(tmp_path / "data")
    report, out = load(momentum_project), tmp_path / "out"
    real = backtest.ensure_writable_folder
    others: list[object] = []

    def the_other_one_runs_meanwhile(folder: Path) -> None:  # between this run's checks and its first write
        real(folder)
        if not others:
            others.append(folder)  # before it runs: the other one's own call to this comes through as it is
            run_backtest(report, tmp_path / "data", out_dir=out, html=False)

    monkeypatch.setattr(backtest, "ensure_writable_folder", the_other_one_runs_meanwhile)
    with pytest.raises(BacktestError, match=r"state\.db exists"):
        run_backtest(report, tmp_path / "data", out_dir=out, html=False)
    assert others
    starts = [line for line in (out / "app.jsonl").read_text().splitlines() if '"backtest_start"' in line]
    assert len(starts) == 1
    summary = json.loads((out / "summary.json").read_text())
    with sqlite3.connect(out / "state.db") as db:
        assert db.execute("SELECT count(*) FROM trades").fetchone()[0] == summary["total"]["trades"]


def test_backtests_started_in_one_second_without_out_get_a_folder_each(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default folder is named by the second: of two backtests started in one second (a script starting one per
    data folder), the second was refused "state.db exists ... (give another --out)", exit 2, though it gave no --out.
    It gets the name with -2. A default folder the backtest wrote nothing into is not left behind."""
    from engine.cli import main

    trending_day(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    now = datetime.now(timezone.utc)
    for seconds in range(-2, 60):  # the folder of whichever second the command starts in holds a run already
        taken = tmp_path / "backtests" / (now + timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%SZ")
        taken.mkdir(parents=True)
        (taken / "state.db").write_bytes(b"")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines), "--rules",
             str(momentum_project.rules)]  # fmt: skip
    assert main(["backtest", "--data", "data", *files]) == 0
    said = capsys.readouterr()
    made = [p for p in (tmp_path / "backtests").iterdir() if p.name.endswith("Z-2")]
    assert len(made) == 1 and (made[0] / "summary.json").is_file()
    assert f"wrote {Path('backtests') / made[0].name}/" in said.out
    before = sorted((tmp_path / "backtests").iterdir())
    assert main(["backtest", "--data", "data", "--from", "2026-12-01", *files]) == 2  # no data then: refused
    assert sorted((tmp_path / "backtests").iterdir()) == before


_HOLD_FOLDER = """
import sys
from pathlib import Path
from engine.core.lock import RunLock
from engine.data.recorder import Recorder
folder = Path(sys.argv[2])
if sys.argv[1] == "record":
    Recorder(folder).hold_folder()  # as `run --record` does before its run starts, until it ends
else:
    RunLock(folder / ".fetch").acquire()  # as `data fetch` does (engine/data/fetch.py `_folder_lock`)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("writer", "said"), [("record", "being recorded by a `run --record` now"),
                                               ("fetch", "being fetched by a `data fetch` now")])  # fmt: skip
def test_a_data_folder_being_written_now_is_refused_in_one_line_with_exit_1(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], writer: str, said: str
) -> None:
    """`backtest --data rec` while `run --record rec` still runs: every file there is whole, but each symbol's is as of
    its own last flush, and the replay ran to whatever moment it found, a symbol a flush behind replayed as a feed
    gone quiet, without a word. Refused while the writer holds the folder; replayed once it is gone."""
    import subprocess
    import sys

    from engine.cli import main
    from engine.paths import PROJECT_ROOT

    trending_day(tmp_path / "data")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines), "--rules",
             str(momentum_project.rules)]  # fmt: skip
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.8]\n", encoding="utf-8")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_FOLDER, writer, str(tmp_path / "data")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        for extra in ([], ["--sweep", str(sweep), "--jobs", "1"]):
            out = tmp_path / ("sw" if extra else "out")
            assert main(["backtest", "--data", str(tmp_path / "data"), "--out", str(out), *extra, *files]) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: ") and said in err and f"pid {holder.pid}" in err and len(err.splitlines()) == 1
            assert not (out / "state.db").exists() and not (out / "run-001").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert main(["backtest", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), *files]) == 0


def test_a_key_a_signal_raises_with_is_masked_in_the_backtests_log_and_state_file(
    momentum_project: ProjectCopy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    user_module: Path,
) -> None:
    """A real run's journal masks the keys in what it records; the backtest's journal was given none, so a signal
    that raised with a key in its message (the user's code reading the environment) wrote it into the backtest's
    app.jsonl and state.db (the halt's reason), as raw as it came."""
    from engine.cli import main

    user_module.write_text(
        "import os\n\n\ndef momentum_breakout(prices, params):\n"
        "    raise RuntimeError('auth failed for ' + os.environ['ALPACA_KEY'])\n\n\n"
        "SIGNALS = {'momentum_breakout': momentum_breakout}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    monkeypatch.setenv("ALPACA_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET", SECRET)
    trending_day(tmp_path / "data")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines),
             "--rules", str(momentum_project.rules)]  # fmt: skip
    code = main(["backtest", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), *files])
    said = capsys.readouterr()
    assert code == 0, said.err
    log = (tmp_path / "out" / "app.jsonl").read_text()
    reasons = [h.reason for h in StateStore(tmp_path / "out" / "state.db").halts()]
    assert "auth failed for ***" in log and any("auth failed for ***" in r for r in reasons), reasons
    for text in (log, *reasons, said.out, said.err):
        assert KEY not in text, text


def test_a_recording_whose_every_quote_of_a_symbol_was_one_sided_replays_it_as_read(
    momentum_project: ProjectCopy, tmp_path: Path
) -> None:
    """A thin stock's feed before the open sends only one side: the recorder keeps those quotes in unusable/, and
    the symbol has no quotes/ folder. Its replay was refused as "AAPL, which has no data here", though the run read
    AAPL at every tick; it replays now, the bot blocked by quotes_usable as the run's was."""
    from engine.data.recorder import Recorder

    with Recorder(tmp_path / "rec", fsync=False) as recorder:
        for second in range(0, 300, 5):
            recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 0.0, 190.02)
            recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
    assert not (tmp_path / "rec" / "quotes").exists() and (tmp_path / "rec" / "unusable" / "AAPL").is_dir()
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    assert result.frames == 60
    events = [json.loads(line) for line in (tmp_path / "out" / "app.jsonl").read_text().splitlines()]
    preflight = [e for e in events if e["event"] == "preflight" and e["bot"] == "mom_AAPL"]
    assert preflight and "quotes_usable" in preflight[0]["failed"]
    assert not [e for e in events if e["event"] == "order"]


def test_a_slippage_past_the_live_fill_band_is_booked_as_the_fill_model_made_it(tmp_path: Path) -> None:
    """Live, a fill more than 10 % off the quotes is a broker's answer to doubt (engine/trading/fillprice.py); in a
    backtest every fill is the fill model's own. Held to that band, a stress test at 1,200 bps halted at each fill
    and booked it at the quote: the slippage vanished, and a heavily slipped strategy showed a profit."""
    project = ProjectCopy(tmp_path / "project")
    only_momentum(project)
    trending_day(tmp_path / "data")
    out = tmp_path / "out"
    result = run_backtest(load(project), tmp_path / "data", out_dir=out, html=False, fill_model=FillModel(slippage_bps=1200))
    events = [json.loads(line) for line in (out / "app.jsonl").read_text().splitlines()]
    assert not [e for e in events if e.get("action") == "fill_price_unverified"]
    fills = [e for e in events if e["event"] == "fill"]
    assert fills and not [e for e in fills if e.get("price_unverified")]
    assert result.summary["total"]["realized_pnl"] < 0  # 12 % paid on every fill


def test_a_recordings_replay_spaces_its_ticks_as_its_run_did(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """A recording of quotes alone has no bars, so the replay took a minute (the bar length) for its ticks' spacing:
    a signal's history was reset after 60 s plus the staleness limit where the run's 5 s loop reset it after 5 s plus
    that limit, and the close margin was a minute loop's. A recording's ticks are its run's, spaced by the config's
    runner.loop_interval_seconds, and a recording whose ticks are mostly otherwise apart is said."""
    from engine.core.journal import read_events
    from engine.data.recorder import Recorder

    settings = load(momentum_project).config.settings  # type: ignore[union-attr]
    stale = settings.health.max_price_staleness_seconds
    for name, every in (("rec", 5), ("slow", 30)):
        with Recorder(tmp_path / name, fsync=False) as recorder:
            for second in range(0, 1800, every):
                recorder.record("AAPL", MONDAY_OPEN + timedelta(seconds=second), 190.0, 190.02)
                recorder.tick(MONDAY_OPEN + timedelta(seconds=second))
    result = run_backtest(load(momentum_project), tmp_path / "rec", out_dir=tmp_path / "out", html=False)
    start = next(e for e in read_events(tmp_path / "out" / "app.jsonl") if e["event"] == "backtest_start")
    assert settings.runner.loop_interval_seconds == 5 and result.notes == ()
    assert (start["tick_seconds"], start["history_gap_seconds"]) == (5.0, 5.0 + stale)
    slow = run_backtest(load(momentum_project), tmp_path / "slow", out_dir=tmp_path / "out-slow", html=False)
    assert (f"{tmp_path / 'slow'}'s recorded ticks are mostly 30 s apart, but runner.loop_interval_seconds here is 5"
            ) in "\n".join(slow.notes)  # fmt: skip
    trending_day(tmp_path / "bars")  # bars: a tick a bar, as before
    run_backtest(load(momentum_project), tmp_path / "bars", out_dir=tmp_path / "out-bars", html=False)
    start = next(e for e in read_events(tmp_path / "out-bars" / "app.jsonl") if e["event"] == "backtest_start")
    assert (start["tick_seconds"], start["history_gap_seconds"]) == (60.0, 60.0 + stale)
