"""Bars too coarse for the bots (engine/replay/timeframes.py): day bars refused for what they are, and a signal that
cannot answer within a session's trade window said at the start, not left to read as 0 trades."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.core.calendar import NEW_YORK, market_calendar
from engine.data.errors import DataError
from engine.data.files import write_bars
from engine.replay.backtest import MissingData, run_backtest
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load, minute_bars


def bars_every(folder: Path, step: timedelta, sessions: int = 3) -> None:
    """AAPL bars `step` apart over the regular hours of `sessions` sessions from Monday 2026-11-23, rising and falling
    by turns (the momentum bot would enter on them if its signal could answer)."""
    bars = []
    for session in market_calendar().sessions(MONDAY_OPEN.date(), MONDAY_OPEN.date() + timedelta(days=10))[:sessions]:
        count = int((session.close - session.open) / step)
        closes = [round(190.0 + (i % 8) * 0.4, 2) for i in range(count)]
        bars += [bar._replace(timestamp=session.open + i * step) for i, bar in enumerate(minute_bars(session.open, closes))]
    write_bars(folder, "AAPL", bars, fsync=False)


def test_day_bars_are_refused_as_day_bars_not_as_a_time_zone_mistake(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """`data fetch --timeframe 1Day` stamps each bar at New York midnight, which the backtest read as rows of a shut
    market and refused with advice to write the times with their offset: the file was right, the advice wrong. It is
    refused as day bars, saying the bots trade within a session and which timeframe to fetch."""
    days = [s.open.astimezone(NEW_YORK).date() for s in market_calendar().sessions(MONDAY_OPEN.date(),
                                                                                      MONDAY_OPEN.date() + timedelta(days=30))]  # fmt: skip
    bars = [bar._replace(timestamp=datetime.combine(day, datetime.min.time(), NEW_YORK))
            for bar, day in zip(minute_bars(MONDAY_OPEN, [190.0 + i for i in range(len(days))]), days, strict=True)]  # fmt: skip
    write_bars(tmp_path / "daily", "AAPL", bars, fsync=False)
    with pytest.raises(DataError) as refused:
        run_backtest(load(momentum_project), tmp_path / "daily", out_dir=tmp_path / "out", html=False)
    assert not isinstance(refused.value, MissingData)
    [problem] = refused.value.problems
    assert problem.message.startswith("mom_AAPL trades AAPL, whose bars (bars/AAPL) are mostly 1 day apart: day bars "
                                      "(`data fetch --timeframe 1Day`, stamped at New York midnight) give no price "
                                      "within a session")  # fmt: skip
    assert "fetch --timeframe 1Min" in problem.message and "offset" not in problem.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("step", "said"), [
    (timedelta(hours=1), "mom_AAPL (history 12 ticks: 12 h from the open, not before its trade_end 09:30 America/Los_Angeles)"),
    (timedelta(minutes=15), "mom_AAPL (history 12 ticks: 3 h from the open, not before its trade_end 09:30 America/Los_Angeles)"),
    (timedelta(minutes=1), None),
], ids=["1Hour", "15Min", "1Min"])  # fmt: skip
def test_a_signal_that_cannot_answer_within_the_trade_window_is_said(momentum_project: ProjectCopy, tmp_path: Path,
                                                                     step: timedelta, said: str | None) -> None:  # fmt: skip
    """On hour bars (or 15-minute bars under mom_AAPL's three-hour window) the signal's 12 ticks of history are not
    there before the window ends, every session: the backtest ran to 0 trades, said as if the bot had chosen so."""
    bars_every(tmp_path / "data", step, sessions=3 if step > timedelta(minutes=1) else 1)
    result = run_backtest(load(momentum_project), tmp_path / "data", out_dir=tmp_path / "out", html=False)
    notes = [n for n in result.notes if "cannot answer within a session's trade window" in n]
    if said is None:
        assert notes == []
        return
    assert len(notes) == 1 and notes[0].startswith(said), notes
    assert "0 trades is the timeframe's, not the strategy's); fetch --timeframe 1Min" in notes[0]
    assert result.summary["total"]["trades"] == 0 and notes[0] in [n.replace("<data>", str(tmp_path / "data"))
                                                                   for n in result.summary["notes"]]  # fmt: skip
