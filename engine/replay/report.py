"""What a backtest leaves in its folder (issue 9, item 5), beside the run's own SQLite state and JSONL log:

- `summary.json`: per bot and in total: trades, win rate, realized P&L (a position partly sold at the end: its sold
  part; `open_positions` lists it), unrealized P&L at the end, fees, max
  drawdown, Sharpe and Sortino of daily returns, exposure, halts with their reasons, entries blocked by each
  check; the backtest's notes (what the data or a recording's run leaves uncertain), as printed;
- `trades.csv`: one row per round trip, from SQLite's `trades` (`StateStore.trades()`);
- `equity.csv`: the account's equity and cash, at most once a minute, with the drawdown from the peak;
- `report.html`: one self-contained page (plotly's script inlined, so it opens offline): the equity curve with its
  drawdown, each traded symbol's price with the entries and exits on it, and P&L by bot.

summary.json and trades.csv hold only what the inputs decide (no wall-clock time, no paths), written in a fixed
order with rounded numbers, so the same data, config and fill model give the same bytes.

Definitions (docs/backtest.md): a day is a trading date in system.timezone. The account's daily return is the
day's equity at its end (a session's close when a bot trades stocks or options: `session_close`; else its last
row) over the day before's (the first day's over the starting cash). A bot's daily return is its
realized P&L of the day (trades closed that day) over the starting cash, on the days its own market trades
(`bot_trades_on`). Sharpe is the mean daily return over its standard deviation (n - 1), times the square root of
252; Sortino divides by the downside deviation (the root mean square of the negative returns, the others counted as
0) instead; where either has no value it is null (`_ratio`: fewer than two days; no variation for Sharpe; no losing
day for Sortino). Max drawdown is the largest fall from a peak: of the equity curve for the account, of starting
cash plus cumulative realized P&L for a bot. Exposure is the share of the backtest's time a position was held.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from engine.brokers.symbols import asset_class_of, contract_multiplier
from engine.config.model import BotsConfig
from engine.core.calendar import MarketCalendar, Session
from engine.core.money import cents, money
from engine.core.store import SYSTEM_SCOPE, Halt, OrderRow, TradeRow
from engine.data.dataset import DataSet
from engine.data.files import iso, replace_whole
from engine.data.records import Kind
from engine.replay.exchange import ReplayExchange
from engine.replay.fills import FillModel
from engine.trading.engine import Engine
from engine.trading.startup import symbols_by_bot

TRADING_DAYS_PER_YEAR = 252
TRADE_COLUMNS = ("bot", "symbol", "entry_time", "exit_time", "entry_price", "exit_price", "qty", "pnl", "fees", "exit_trigger")
PLOT_POINTS = 4000  # a price line is thinned to about this many points
REPORT_FILES = ("summary.json", "trades.csv", "equity.csv", "report.html")  # what `write` leaves in the run's folder


@dataclass
class Recorded:
    """What the run observed beside SQLite: the equity curve, the entries blocked (from the journal), the counts."""

    equity: list[tuple[datetime, float, float]] = field(default_factory=list)  # (at, equity, cash)
    blocked: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # bot -> check -> count
    frames: int = 0
    bar_events: int = 0

    EVENTS: ClassVar[frozenset[str]] = frozenset({"entry_blocked"})  # the events `journal_event` reads (`subscribe`)

    def journal_event(self, record: dict[str, Any]) -> None:
        """A journal listener: `entry_blocked` names the checks (or the gate's reasons) that refused an entry."""
        if record.get("event") == "entry_blocked":
            self.blocked[str(record.get("bot"))].update(str(name) for name in record.get("failed") or ())


class FigureNotFinite(ValueError):
    """A figure of the report is not a finite number (inf, NaN): the file is not written. JSON has no such number
    (`json.dumps` wrote `Infinity`, which no JSON reader takes), and a CSV's `inf` reads as a figure; either way the
    run's figures can no longer be trusted, so the report says so instead of writing them."""


def refuse_non_finite(where: str, value: Any) -> None:
    """FigureNotFinite naming the first figure in `value` (a number, or dicts and lists of them) that is not finite,
    by its place (`summary.json: total.fees`)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FigureNotFinite(f"{where} is {value!r}, not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_non_finite(f"{where}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            refuse_non_finite(f"{where}[{index}]", item)


def _num(value: float, digits: int = 6) -> float:
    """A number as written: rounded, and never -0.0 (which JSON would spell differently from 0.0)."""
    rounded = round(value, digits)
    return rounded + 0.0 if rounded != 0 else 0.0


def _ratio(returns: Sequence[float], downside: bool) -> float | None:
    """Sharpe (`downside` False) or Sortino of daily returns, annualized by the square root of 252; None where the
    ratio has no value (docs/backtest.md, Definitions):
    - fewer than two days: neither (one day has no spread);
    - Sharpe: no variation (every day the same return, a loss or a gain alike: nothing to divide by);
    - Sortino: no losing day (the downside deviation is 0: a run of gains has no downside to divide by, which the
      summary's `losing_days` 0 tells apart from too few days). A loss every day has a downside, even the same loss
      each day (no variation): its Sortino is the mean over that loss, -sqrt(252) for a steady one."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    if downside:
        if not any(r < 0 for r in returns):
            return None
        spread = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    else:
        spread = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    if spread < 1e-15:  # no variation (a mean of equal returns leaves float noise, not 0); a loss too small to count
        return None
    return _num(mean / spread * math.sqrt(TRADING_DAYS_PER_YEAR), 4)


def _drawdown(values: Iterable[float]) -> tuple[float, float]:
    """(the largest fall from a running peak in dollars, the same as a share of that peak)."""
    peak = -math.inf
    worst_usd = worst_pct = 0.0
    for value in values:
        peak = max(peak, value)
        fall = peak - value
        if fall > worst_usd:
            worst_usd = fall
        if peak > 0 and fall / peak > worst_pct:
            worst_pct = fall / peak
    return worst_usd, worst_pct


def _exposure(spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """The share of [start, end] covered by the union of `spans`."""
    total = (end - start).total_seconds()
    if total <= 0:
        return 0.0
    covered = 0.0
    reach = start
    for opened, closed in sorted((max(a, start), min(b, end)) for a, b in spans):
        if closed <= reach:
            continue
        covered += (closed - max(opened, reach)).total_seconds()
        reach = closed
    return covered / total


def _halt_record(halt: Halt) -> dict[str, Any]:
    return {
        "scope": halt.scope,
        "reason": halt.reason,
        "conditions": list(halt.conditions),
        "started_at": iso(halt.started_at),
        "ended_at": iso(halt.ended_at) if halt.ended_at else None,
    }


def session_on(calendar: MarketCalendar, tz: ZoneInfo) -> Callable[[date], Session | None]:
    """The exchange's session held on a trading date of system.timezone: the one that opens on that date there, or
    None. A session's New York date is not the engine's date everywhere: in Pacific/Auckland Friday's session
    (03:30-07:00 on Saturday there) falls on Saturday, Monday's on Tuesday, so asking the calendar for the engine's
    date by New York's dropped Friday's session and took a Thursday holiday's date's session for Wednesday's.
    Validation refuses a zone in which a session crosses midnight while a stock or options bot is enabled, so each
    session lies within one date of the zone."""

    @functools.cache
    def session(day: date) -> Session | None:
        near = calendar.sessions(day - timedelta(days=1), day + timedelta(days=1))
        return next((s for s in near if s.open.astimezone(tz).date() == day), None)

    return session


def trades_on(bots: BotsConfig, calendar: MarketCalendar, tz: ZoneInfo) -> Callable[[date], bool]:
    """Whether a day (a date in system.timezone) is a trading day of the backtest: any day when a bot trades a coin
    (crypto trades every day), else one that holds a session of the exchange (`session_on`). A stock's rows on a
    holiday or a weekend (bad data: the exchange was shut) made a day of their own, and the Sharpe and Sortino
    counted a zero return the account could not have had."""
    if any(asset_class_of(symbol) == "crypto" for _bot, symbol, _fractional in symbols_by_bot(bots)):
        return lambda day: True
    session = session_on(calendar, tz)
    return lambda day: session(day) is not None


def bot_trades_on(bots: BotsConfig, calendar: MarketCalendar, tz: ZoneInfo) -> dict[str, Callable[[date], bool]]:
    """For each enabled bot, whether a day is one its own market trades: every day for a bot of coins, a day holding
    a session of the exchange (`session_on`) for a stock or options bot. A bot's Sharpe and Sortino are over those
    days: over the account's, a stock bot's weekends counted as days of no return as soon as any coin bot was
    enabled, and its ratios changed with a bot it has nothing to do with."""
    session = session_on(calendar, tz)
    coins: dict[str, bool] = {}
    for bot_id, symbol, _fractional in symbols_by_bot(bots):
        coins[bot_id] = coins.get(bot_id, False) or asset_class_of(symbol) == "crypto"
    return {bot_id: (lambda _day: True) if crypto else (lambda day: session(day) is not None)
            for bot_id, crypto in coins.items()}  # fmt: skip


def session_close(bots: BotsConfig, calendar: MarketCalendar, tz: ZoneInfo) -> Callable[[date], datetime | None]:
    """The instant a trading day's return is taken at, when it is not the day's end: the close of the exchange's
    session that day (`session_on`) when a bot trades a stock or an option (the account Alpaca's `last_equity`
    values, the engine's daily P&L's basis: `SimExchange._take_close`); None for a day without a session and in a
    backtest of coins alone, whose day is a whole date. Equity after the close is valued at after-hours bars: taken
    as the day's, it moved the day's return by what happened after it, and the next day's by the same amount the
    other way."""
    if all(asset_class_of(symbol) == "crypto" for _bot, symbol, _fractional in symbols_by_bot(bots)):
        return lambda day: None
    session = session_on(calendar, tz)

    def close(day: date) -> datetime | None:
        held = session(day)
        return held.close if held is not None else None

    return close


def _daily_returns(equity: Sequence[tuple[datetime, float, float]], cash: float, tz: ZoneInfo, bots: BotsConfig,
                   calendar: MarketCalendar) -> tuple[list[date], list[float]]:  # fmt: skip
    """The trading days (`trades_on`) with equity, and the account's return on each: its equity at the day's end
    (the last row at or before its session's close, `session_close`; else its last row) over the previous trading
    day's (the first day's over `cash`)."""
    trading, closing = trades_on(bots, calendar, tz), session_close(bots, calendar, tz)
    ends: dict[date, datetime | None] = {}  # a day's last instant counted (None: the whole day), if a trading day
    last_of_day: dict[date, float] = {}
    for at, value, _cash in equity:
        day = at.astimezone(tz).date()
        if day not in ends:
            if not trading(day):
                continue
            ends[day] = closing(day)
        end = ends[day]
        if end is None or at <= end:
            last_of_day[day] = value
    days = sorted(last_of_day)
    returns, before = [], cash
    for day in days:
        returns.append(last_of_day[day] / before - 1 if before else 0.0)
        before = last_of_day[day]
    return days, returns


def summarize(
    *,
    engine: Engine,
    exchange: ReplayExchange,
    recorded: Recorded,
    cash: float,
    model: FillModel,
    data: DataSet,
    start: datetime,
    end: datetime,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    store = engine.store
    tz = ZoneInfo(engine.config.settings.system.timezone)
    bots = [bot.bot_id for bot in engine.bots]
    trades = store.trades()
    days, account_returns = _daily_returns(recorded.equity, cash, tz, engine.config.bots, exchange.calendar)
    fees: dict[str, float] = defaultdict(float)
    for client_order_id, paid in exchange.fees.items():
        row = store.order(client_order_id)
        fees[row.bot_id if row is not None else "unattributed"] += paid
    halts = store.halts()
    held_spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for t in trades:
        held_spans[t.bot_id].append((t.opened_at, t.closed_at))
    unrealized: dict[str, float] = defaultdict(float)
    sold_of_open: dict[str, float] = defaultdict(float)  # the P&L of the part sold of a position still open
    still_open = []
    for p in sorted(store.positions(), key=lambda row: (row.bot_id, row.symbol)):
        held_spans[p.bot_id].append((p.opened_at, end))
        price = exchange.last_price(p.symbol) if exchange.listed(p.symbol) else p.avg_entry_price
        open_pnl = (price - p.avg_entry_price) * p.qty * contract_multiplier(p.symbol)
        unrealized[p.bot_id] += open_pnl
        sold_of_open[p.bot_id] += p.realized
        still_open.append({"bot": p.bot_id, "symbol": p.symbol, "qty": _num(p.qty, 9),
                           "avg_entry_price": _num(p.avg_entry_price, 6), "price": _num(price, 6),
                           "opened_at": iso(p.opened_at), "sold_qty": _num(p.sold_qty, 9),
                           "realized_pnl": cents(p.realized), "unrealized_pnl": cents(open_pnl)})  # fmt: skip

    def figures(
        bot_trades: list[TradeRow],
        returns: list[float],
        drawdown: tuple[float, float],
        spans: list[tuple[datetime, datetime]],
        paid: float,
        bot_halts: list[Halt],
        blocked: Counter[str],
        open_pnl: float,
        sold_pnl: float,
    ) -> dict[str, Any]:
        wins = sum(1 for t in bot_trades if t.pnl > 0)
        return {
            "days": len(returns),  # the daily returns the Sharpe and Sortino are over
            "losing_days": sum(1 for r in returns if r < 0),
            "trades": len(bot_trades),
            "wins": wins,
            "win_rate": _num(wins / len(bot_trades), 4) if bot_trades else None,
            # closed round trips, and the part already sold of a position still open at the end (`open_positions`)
            "realized_pnl": cents(sum(t.pnl for t in bot_trades) + sold_pnl),
            "unrealized_pnl": cents(open_pnl),
            "fees": cents(paid),  # a few coins' fee is under a cent: never written as 0
            "max_drawdown_usd": _num(drawdown[0], 2),
            "max_drawdown_pct": _num(drawdown[1] * 100, 4),
            "sharpe": _ratio(returns, downside=False),
            "sortino": _ratio(returns, downside=True),
            "exposure_pct": _num(_exposure(spans, start, end) * 100, 4),
            "halts": [_halt_record(h) for h in bot_halts],
            "entries_blocked": dict(sorted(blocked.items())),
        }

    per_bot: dict[str, Any] = {}
    markets = bot_trades_on(engine.config.bots, exchange.calendar, tz)
    for bot_id in bots:
        mine = [t for t in trades if t.bot_id == bot_id]
        realized_by_day: dict[date, float] = defaultdict(float)
        for t in mine:
            realized_by_day[t.closed_at.astimezone(tz).date()] += t.pnl
        its_days = markets.get(bot_id, lambda _day: True)
        returns = [realized_by_day.get(day, 0.0) / cash for day in days if its_days(day)]
        curve = [cash]
        for t in mine:
            curve.append(curve[-1] + t.pnl)
        per_bot[bot_id] = figures(
            mine,
            returns,
            _drawdown(curve),
            held_spans[bot_id],
            fees.get(bot_id, 0.0),
            [h for h in halts if h.scope == bot_id],
            recorded.blocked.get(bot_id, Counter()),
            unrealized.get(bot_id, 0.0),
            sold_of_open.get(bot_id, 0.0),
        )
    blocked_total: Counter[str] = Counter()
    for counts in recorded.blocked.values():
        blocked_total.update(counts)
    final = recorded.equity[-1][1] if recorded.equity else cash
    total = figures(
        trades,
        account_returns,
        _drawdown(e for _at, e, _c in recorded.equity),
        [s for v in held_spans.values() for s in v],
        sum(fees.values()),
        halts,
        blocked_total,
        sum(unrealized.values()),
        sum(sold_of_open.values()),
    )
    total.update({"final_equity": _num(final, 2), "return_pct": _num((final / cash - 1) * 100, 4)})
    return {
        "period": {
            "start": iso(start),
            "end": iso(end),
            "trading_days": len(days),
            "frames": recorded.frames,
            "bar_events": recorded.bar_events,
            "timezone": str(tz),
        },
        "data": {"symbols": list(data.symbols)},
        "starting_cash": _num(cash, 2),
        "fill_model": model.as_dict(),
        "system_halts": [_halt_record(h) for h in halts if h.scope == SYSTEM_SCOPE],
        "open_positions": still_open,
        "total": total,
        "bots": per_bot,
        "definitions": "docs/backtest.md",
        "notes": [_without_folder(note, data.folder) for note in notes],
    }


def _without_folder(note: str, folder: Path) -> str:
    """A backtest's note as summary.json keeps it: the data folder's path (which the notes of a recording name)
    written `<data>` (as sweep.csv writes it), so the same data, config and fill model give the same bytes wherever
    the folder is."""
    return note.replace(str(folder), "<data>")


def with_fees(trades: Sequence[TradeRow], orders: Iterable[OrderRow], paid: Mapping[str, float]) -> list[TradeRow]:
    """The round trips, each with what its own orders paid the exchange (`ReplayExchange.fees`: commissions and
    crypto fees). SQLite's `trades` say 0: a live run cannot see a fee in any order. An order of a bot's symbol
    belongs to the first of that bot's round trips in it closed at or after the order was sent (an order after the
    last one is the open position's). The ExitBot's flatten of a symbol several bots hold belongs to none of them."""
    closes: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for i, t in enumerate(trades):
        closes[(t.bot_id, t.symbol)].append((t.closed_at, i))
    for ends in closes.values():
        ends.sort()
    fees = [0.0] * len(trades)
    for order in orders:
        fee = paid.get(order.client_order_id)
        closed = closes.get((order.bot_id, order.symbol))
        if not fee or not closed:
            continue
        at = bisect.bisect_left(closed, (order.created_at, -1))
        if at < len(closed):
            fees[closed[at][1]] += fee
    return [dataclasses.replace(t, fees=fee) if fee else t for t, fee in zip(trades, fees, strict=True)]


def trades_csv(trades: Sequence[TradeRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRADE_COLUMNS)
    for t in trades:
        writer.writerow(
            [
                t.bot_id,
                t.symbol,
                iso(t.opened_at),
                iso(t.closed_at),
                repr(_num(t.entry_price, 6)),
                repr(_num(t.exit_price, 6)),
                repr(_num(t.qty, 9)),
                repr(_num(t.pnl, 4)),
                repr(_num(t.fees, 4)),
                t.exit_trigger,
            ]
        )
    return out.getvalue()


def equity_csv(equity: Sequence[tuple[datetime, float, float]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("timestamp", "equity", "cash", "drawdown_pct"))
    peak = -math.inf
    for at, value, cash in equity:
        peak = max(peak, value)
        writer.writerow(
            [iso(at), repr(_num(value, 2)), repr(_num(cash, 2)), repr(_num((peak - value) / peak * 100 if peak > 0 else 0.0, 4))]
        )
    return out.getvalue()


def write(
    out: Path,
    *,
    engine: Engine,
    exchange: ReplayExchange,
    data: DataSet,
    recorded: Recorded,
    cash: float,
    model: FillModel,
    start: datetime,
    end: datetime,
    html: bool = True,
    notes: Sequence[str] = (),
) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """Write the report files; (the summary, the files written). `notes` (`BacktestResult.notes`: bars seen before
    they end, missing sessions, rows on holidays, where a replay parts from its run) go into summary.json, so a run's
    folder (a sweep's run too) keeps what was printed about it."""
    summary = summarize(
        engine=engine,
        exchange=exchange,
        recorded=recorded,
        cash=cash,
        model=model,
        data=data,
        start=start,
        end=end,
        notes=notes,
    )
    trades = with_fees(engine.store.trades(), engine.store.orders(), exchange.fees)
    refuse_non_finite("summary.json:", summary)
    for index, t in enumerate(trades):
        refuse_non_finite(f"trades.csv: row {index + 1}", [t.entry_price, t.exit_price, t.qty, t.pnl, t.fees])
    for at, value, cash_now in recorded.equity:
        refuse_non_finite(f"equity.csv: {iso(at)}", [value, cash_now])
    texts = {"trades.csv": trades_csv(trades), "equity.csv": equity_csv(recorded.equity)}
    if html:
        texts["report.html"] = html_report(summary, trades, recorded.equity, data, start, end)
    # summary.json says the run finished, so it is written last; each file whole or not at all (a kill while
    # writing leaves no half a file that reads as a whole one)
    texts["summary.json"] = json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
    for name, text in texts.items():
        replace_whole(out / name, functools.partial(Path.write_text, data=text, encoding="utf-8"), fsync=False)
    files = [out / name for name in REPORT_FILES if name in texts]
    return summary, tuple(files)


# --- report.html ---------------------------------------------------------------------------------------------


def thinned(values: Any, points: int = PLOT_POINTS) -> Any:
    """The indices of `values` (a numpy array) a plot keeps: all of them up to `points`, else in each of about
    `points / 4` buckets its first, lowest, highest and last. A plain stride would drop the spikes and the worst
    drawdown a reader looks for; these keep every extreme where it happened."""
    import numpy as np

    count = len(values)
    if count <= points:
        return np.arange(count)
    size = math.ceil(count / max(points // 4, 1))
    whole = count // size * size
    starts = np.arange(0, count, size)
    blocks = values[:whole].reshape(-1, size)
    picks = [starts, np.minimum(starts + size - 1, count - 1)]
    picks += [np.argmin(blocks, axis=1) + starts[: len(blocks)], np.argmax(blocks, axis=1) + starts[: len(blocks)]]
    if whole < count:  # the last, shorter bucket
        tail = values[whole:]
        picks.append(np.array([whole + int(np.argmin(tail)), whole + int(np.argmax(tail))]))
    return np.unique(np.concatenate(picks))


def _price_line(data: DataSet, symbol: str, start: datetime, end: datetime) -> tuple[Any, Any]:
    """The symbol's price over the window (quote mids, else bar closes), thinned to about PLOT_POINTS points (numpy
    arrays: plotly writes them into the page as binary, not as a list of numbers in text)."""
    import pyarrow.compute as pc  # type: ignore[import-untyped]  # pyarrow ships no type hints

    kind: Kind = "quotes" if data.rows("quotes", symbol) else "bars"
    table = data.table(kind, symbol)
    stamps = table.column("timestamp")
    table = table.filter(pc.and_(pc.greater_equal(stamps, start), pc.less_equal(stamps, end)))
    if kind == "quotes":
        prices = (table.column("bid").to_numpy() + table.column("ask").to_numpy()) / 2
    else:
        prices = table.column("close").to_numpy()
    keep = thinned(prices)
    return _utc_times(table.column("timestamp").to_numpy()[keep]), prices[keep]


def _utc_times(stamps: Any) -> Any:
    """Timestamps as naive UTC datetime64: plotly draws a time as written, so every time on the page is UTC (the
    page says so), the markers' as the lines'."""
    import numpy as np

    return np.asarray(stamps).astype("datetime64[ms]")


def _utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(tzinfo=None)


def html_report(
    summary: dict[str, Any],
    trades: Sequence[TradeRow],
    equity: Sequence[tuple[datetime, float, float]],
    data: DataSet,
    start: datetime,
    end: datetime,
) -> str:
    import numpy as np
    import plotly.graph_objects as go  # type: ignore[import-untyped]  # plotly ships no type hints
    from plotly.subplots import make_subplots  # type: ignore[import-untyped]

    times = np.array([_utc(at) for at, _e, _c in equity], dtype="datetime64[ms]")
    values = np.array([e for _at, e, _c in equity], dtype=float)
    peaks = np.maximum.accumulate(values) if len(values) else values
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peaks > 0, -(peaks - values) / peaks * 100, 0.0)
    kept_values, kept_drawdown = thinned(values), thinned(drawdown)
    curve = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        vertical_spacing=0.04,
        subplot_titles=("Equity (USD)", "Drawdown from the peak (%)"),
    )
    curve.add_trace(go.Scatter(x=times[kept_values], y=values[kept_values], mode="lines", name="equity"), row=1, col=1)
    curve.add_trace(
        go.Scatter(
            x=times[kept_drawdown],
            y=drawdown[kept_drawdown],
            mode="lines",
            name="drawdown",
            fill="tozeroy",
            line={"color": "#c0392b"},
        ),
        row=2,
        col=1,
    )
    curve.update_layout(height=560, showlegend=False, margin={"t": 40, "b": 30})

    figures = [("equity", curve)]
    traded = sorted({t.symbol for t in trades})
    for symbol in traded:
        mine = [t for t in trades if t.symbol == symbol]
        figure = go.Figure()
        if symbol in data.symbols:
            x, y = _price_line(data, symbol, start, end)
            figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=symbol, line={"color": "#7f8c8d"}))
        else:  # an option priced from its underlying: its round trips alone
            for t in mine:
                figure.add_trace(
                    go.Scatter(
                        x=[_utc(t.opened_at), _utc(t.closed_at)],
                        y=[t.entry_price, t.exit_price],
                        mode="lines",
                        line={"color": "#bdc3c7"},
                        showlegend=False,
                    )
                )
        text = [f"{t.bot_id} qty {t.qty:g} P&L {money(t.pnl)}" for t in mine]
        figure.add_trace(
            go.Scatter(
                x=[_utc(t.opened_at) for t in mine],
                y=[t.entry_price for t in mine],
                mode="markers",
                name="entry",
                text=text,
                marker={"symbol": "triangle-up", "size": 10, "color": "#27ae60"},
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[_utc(t.closed_at) for t in mine],
                y=[t.exit_price for t in mine],
                mode="markers",
                name="exit",
                text=[f"{s} ({t.exit_trigger})" for s, t in zip(text, mine, strict=True)],
                marker={"symbol": "x", "size": 9, "color": "#c0392b"},
            )
        )
        figure.update_layout(title=f"{symbol}: trades on the price", height=380, margin={"t": 50, "b": 30})
        figures.append((f"trades-{symbol}", figure))

    bots = summary["bots"]
    pnl = go.Figure(
        go.Bar(
            x=list(bots),
            y=[bots[b]["realized_pnl"] for b in bots],
            marker={"color": ["#27ae60" if bots[b]["realized_pnl"] >= 0 else "#c0392b" for b in bots]},
        )
    )
    for bot_id in bots:
        mine = [t for t in trades if t.bot_id == bot_id]
        running, xs, ys = 0.0, [_utc(start)], [0.0]
        for t in mine:
            running += t.pnl
            xs.append(_utc(t.closed_at))
            ys.append(running)
        pnl.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{bot_id} cumulative", xaxis="x2", yaxis="y2"))
    pnl.update_layout(
        title="Realized P&L by bot (USD): total, and over time",
        height=420,
        margin={"t": 50, "b": 30},
        xaxis={"domain": [0, 0.3]},
        xaxis2={"domain": [0.38, 1.0]},
        yaxis2={"anchor": "x2"},
    )
    figures.append(("pnl", pnl))

    parts = [figure.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=name) for i, (name, figure) in enumerate(figures)]
    total = summary["total"]
    rows = "".join(_row(name, f) for name, f in [("total", total), *bots.items()])
    period = summary["period"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest {period["start"]} to {period["end"]}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}} td:first-child,th:first-child{{text-align:left}}</style>
</head><body>
<h1>Backtest</h1>
<p>{period["start"]} to {period["end"]} ({period["trading_days"]} trading days, {period["frames"]} ticks);
starting cash {summary["starting_cash"]:.2f}, final equity {total["final_equity"]:.2f} ({total["return_pct"]:+.2f} %).
Times on the charts are UTC.</p>
{_notes_html(summary.get("notes") or [])}
<table><tr><th></th><th>trades</th><th>win rate</th><th>realized P&amp;L</th><th>fees</th><th>max drawdown</th><th>Sharpe</th>
<th>exposure</th><th>halts</th></tr>{rows}</table>
{"".join(parts)}
</body></html>
"""


def _notes_html(notes: Sequence[str]) -> str:
    """The backtest's notes, above the figures they qualify (nothing when there is none)."""
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>"


def _row(name: str, f: dict[str, Any]) -> str:
    win_rate = "" if f["win_rate"] is None else f"{f['win_rate'] * 100:.1f} %"
    sharpe = "" if f["sharpe"] is None else f"{f['sharpe']:.2f}"
    return (
        f"<tr><td>{html.escape(name)}</td><td>{f['trades']}</td><td>{win_rate}</td><td>{money(f['realized_pnl'])}</td>"
        f"<td>{money(f['fees'], sign=False)}</td>"
        f"<td>{f['max_drawdown_pct']:.2f} %</td><td>{sharpe}</td><td>{f['exposure_pct']:.1f} %</td>"
        f"<td>{len(f['halts'])}</td></tr>"
    )
