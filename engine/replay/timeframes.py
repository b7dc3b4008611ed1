"""Whether the data's bars are fine enough for the bots that replay on them (docs/backtest.md, Timeframes).

The engine's bots trade within a session: a trade window of hours, exits in minutes, a signal over its last few
ticks (each tick one bar in a backtest). `data fetch` also fetches hourly and daily bars, which a backtest cannot
use that way: a day bar (Alpaca stamps it at New York midnight) was refused as a stock's rows "while its market is
closed", with advice about time zones that were not wrong; an hour bar (or a 15-minute one under a 3-hour window)
leaves a signal too few ticks in a session to ever answer, and the report said 0 trades as if the bot had chosen so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from engine.config.errors import Problem
from engine.config.model import BotsConfig
from engine.core.calendar import market_calendar
from engine.data.dataset import DataSet
from engine.data.records import file_stem
from engine.rules.book import RuleBook
from engine.trading.startup import symbols_by_bot

SECOND = timedelta(seconds=1)
DAY_BARS = timedelta(hours=20)  # bars mostly this far apart or more are a day's (or longer): no intraday price
INTRADAY = "1Min (or a few minutes: 5Min)"


def day_bar_problems(bots: BotsConfig, data: DataSet, gaps: dict[str, tuple[timedelta, timedelta]]) -> list[Problem]:
    """One problem per enabled bot's symbol priced by bars (no quotes) that are mostly a day or more apart (`gaps`:
    `backtest.bar_gaps`, each symbol's smallest and median gap), saying why a backtest cannot use them and what to
    fetch instead."""
    problems = []
    for bot_id, symbol, _fractional in symbols_by_bot(bots):
        gap = gaps.get(symbol)
        if gap is None or gap[1] < DAY_BARS or data.rows("quotes", symbol):
            continue
        apart = _span(gap[1] / SECOND)
        problems.append(Problem(str(data.folder), 0, 0, "",
                                f"{bot_id} trades {symbol}, whose bars (bars/{file_stem(symbol)}) are mostly {apart} apart: "
                                "day bars (`data fetch --timeframe 1Day`, stamped at New York midnight) give no price "
                                "within a session, and the engine's bots trade within one (a trade window, exits in "
                                f"minutes, a signal over its last ticks); fetch --timeframe {INTRADAY} into another "
                                "folder"))  # fmt: skip
    return problems


def signals_without_history(book: RuleBook, bots: BotsConfig, spacing: float, tz: ZoneInfo, day: datetime) -> list[str]:
    """A note naming the enabled stock and options bots whose signal cannot answer inside their trade window on
    ticks `spacing` seconds apart, or none: a signal reading `history` ticks back needs that many ticks after the
    session's first (a signal's history starts again after the night's gap), so the earliest it can answer is
    the open plus `history` ticks; at or after the window's end (`trade_end`, in `tz`) it never does. Judged on
    the first regular session from `day` (an early close only shortens the window). Coin bots trade around the
    clock: their history runs on across days."""
    from engine.config.checks import trading_bots
    from engine.config.model import CryptoBotConfig
    from engine.trading.bots import make_bot

    calendar = market_calendar()
    sessions = calendar.sessions(day.date(), day.date() + timedelta(days=10))
    if not sessions:
        return []
    opened = sessions[0].open.astimezone(tz)
    mute: list[str] = []
    for _path, config in trading_bots(bots):
        if not config.enabled or isinstance(config, CryptoBotConfig):
            continue
        bot = make_bot(config, book)
        if bot.history <= 0:
            continue
        earliest = opened + timedelta(seconds=bot.history * spacing)
        ends = datetime.combine(opened.date(), bot.trade_end, tz)
        if earliest >= ends:
            mute.append(f"{bot.bot_id} (history {bot.history} ticks: {_span(bot.history * spacing)} from the open, "
                        f"not before its trade_end {bot.trade_end:%H:%M} {tz.key})")  # fmt: skip
    if not mute:
        return []
    its, they = ("its signal", "it") if len(mute) == 1 else ("their signals", "they")
    return [
        f"{'; '.join(mute)}: on ticks {_span(spacing)} apart {its} cannot answer within a session's trade window, so "
        f"{they} cannot enter (0 trades is the timeframe's, not the strategy's); fetch --timeframe {INTRADAY}, or "
        "give the signal a shorter history"
    ]


def _span(seconds: float) -> str:
    """A duration as a person reads it: 12 min, 3 h, 1 h 30 min, 5 s."""
    if seconds < 60:
        return f"{seconds:g} s"
    minutes = round(seconds / 60)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    if hours >= 24 and not rest and not hours % 24:
        return f"{hours // 24} day{'s' if hours > 24 else ''}"
    return f"{hours} h" + (f" {rest} min" if rest else "")
