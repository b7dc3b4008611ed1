"""`run_backtest`: the real engine, ticked over recorded market data on the replay exchange (issue 9, item 4).

What runs is what trades live: `Engine.tick()` with the user's machines, guards, preflight, kill switch,
PortfolioBot budgets and order path, a fresh StateStore and Journal in the output folder, the broker fronted
by the same `SnapshotBroker` and `SimAPI` as the simulator (as `ReplayAPI`, without the lock no other thread
needs: engine/replay/api.py; as `ReplayBroker`, its snapshot read from the exchange without the request layers:
engine/replay/broker.py). Only the clock and the prices differ: a `ManualClock` set to each instant of the
data in turn (no sleeping, no instant without data), and a price source that answers from the present frame.

The engine ticks once per instant of the data, not every `loop_interval_seconds`: on minute bars it decides
once a minute. A recording made by `run --record` holds its run's tick instants (`ticks/`): its replay ticks at
those, where the run decided, and nowhere else. A bar is replayed when it became known (its timestamp plus the
bar's length, inferred from the data), never at its start, so a tick never sees a close before it happened.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from engine.brokers.symbols import asset_class_of
from engine.config.errors import Problem
from engine.config.model import BotsConfig
from engine.core.calendar import NEW_YORK, market_calendar
from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.lock import WRONG_KIND
from engine.core.store import StateFileError, StateStore, aware_time
from engine.data.dataset import DataSet, TickFrames
from engine.data.errors import DataError
from engine.data.files import iso, iso_micros
from engine.data.recorder import NOTES_FILE, read_notes
from engine.data.records import SUFFIXES, Kind, file_stem
from engine.paths import ensure_writable_folder
from engine.replay import report as reporting
from engine.replay import timeframes
from engine.replay.api import ReplayAPI
from engine.replay.broker import ReplayBroker
from engine.replay.exchange import ReplayExchange
from engine.replay.feed import FramePrices
from engine.replay.fills import FillModel
from engine.replay.gaps import GapTicks, markets_traded, with_gap_ticks
from engine.replay.report import Recorded
from engine.trading.engine import Engine
from engine.trading.facts_builder import close_margin_minutes, history_gap_seconds
from engine.trading.runner import BACKTEST_BROKER, LAST_RUN_KEY, LAST_TICK_KEY
from engine.trading.startup import ZONE_KEY, symbols_by_bot
from engine.validate import Report

STATE_FILE, LOG_FILE = "state.db", "app.jsonl"
# Every file a run leaves in --out (its state, its log, reporting.REPORT_FILES): a folder holding any of them is
# another run's. Refusing only the state and log took a folder keeping an earlier run's summary.json (its state
# deleted to save space), and a run stopped there left that summary, which says "finished", beside its own state.
RUN_FILES = (STATE_FILE, LOG_FILE, *reporting.REPORT_FILES)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EQUITY_EVERY = timedelta(minutes=1)  # equity.csv keeps a row at most this often (and the last one)
PROGRESS_EVERY = 500  # frames between progress calls
# Transactions committed together (StateStore.hold_commits): only the run reads its state file, and a commit a tick
# was a seventh of a one-symbol backtest's tick. Killed, a run's file lacks at most its last few hundred ticks.
COMMIT_EVERY = 500


class BacktestError(Exception):
    """The backtest cannot run as asked (a folder already holding a run, no data in the window)."""


class OutputFailed(BacktestError):
    """The --out folder cannot be written now (a full disk, read-only, no permission): a runtime failure, exit 1,
    as for the state file and the log; the request itself was sound."""


class DataBusy(BacktestError):
    """The data folder is being written now (a `run --record` or a `data fetch` holds its lock): a failure of the
    moment, exit 1, as a state file another engine holds; the same command works once the writer has ended."""


def being_written(folder: Path) -> str | None:
    """Why `folder` cannot be replayed now, or None: a recording or a fetch holds its lock (told by the kernel's
    table of locks, never by taking the lock, which would refuse the writer starting in that instant). Its files
    are each whole (written aside, then renamed), but each symbol's as of its own last write: the replay ran to a
    moment that depended on when it was started, said nothing of it, and a symbol read a flush (up to 2,500
    quotes) behind the others was replayed as a feed that went quiet. Where the table cannot be read, nothing is
    said."""
    from engine.core.lock import flock_holders
    from engine.data.fetch import LOCK_FILE as FETCH_LOCK
    from engine.data.recorder import LOCK_FILE as RECORDING_LOCK

    for lock, writer, until in ((RECORDING_LOCK, "recorded by a `run --record`", "the run has ended"),
                                (FETCH_LOCK, "fetched by a `data fetch`", "the fetch has finished")):  # fmt: skip
        holders = flock_holders(folder / lock)
        if holders:
            pids = ", ".join(str(pid) for pid in sorted(holders))
            return (f"{folder} is being {writer} now (pid {pids} holds {lock}): each symbol's data there is as of its "
                    f"own last write; backtest it once {until}, or a copy of it")  # fmt: skip
    return None




def _still_in_place(out: Path, store: StateStore, journal: Journal) -> None:
    """OutputFailed when the run's state file or log is no longer the file at its path in `out` (the folder
    deleted or moved away during the run, a cleanup job's `rm -rf backtests/`). SQLite goes on writing a file
    deleted under it, and the log is opened again at its path, folder and all: the run ended "wrote state.db,
    app.jsonl" and exit 0, over a folder that held no state.db and a log without its first part. One stat each,
    every PROGRESS_EVERY frames and before the report, which is then not written."""
    try:
        store.check_at_path()
        gone = None if journal.whole_at_path() else LOG_FILE
    except StateFileError:
        gone = STATE_FILE
    if gone is not None:
        raise OutputFailed(f"{out}: its {gone} was deleted or replaced during the backtest (the folder removed or moved "
                           "away?): the run's records are not all there, so no report is written; run it again")


class MissingData(DataError):
    """Bots whose symbols the data folder does not have (or not in the window): told at start, not left idle."""


@dataclass(frozen=True)
class BacktestProgress:
    at: datetime
    frames: int
    fraction: float  # of the window's time
    equity: float


@dataclass(frozen=True)
class BacktestResult:
    out_dir: Path
    summary: dict[str, Any]
    start: datetime
    end: datetime
    frames: int  # engine ticks, one per instant of the data
    bar_events: int  # rows replayed (bars and quotes, each symbol's one)
    wall_seconds: float
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()

    @property
    def bar_events_per_second(self) -> float:
        return self.bar_events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def bar_interval(data: DataSet) -> timedelta:
    """The bars' length: the smallest gap between two bars of a symbol (60 s for minute bars); a minute when the
    data has only quotes."""
    return min((smallest for smallest, _usual in bar_gaps(data).values()), default=timedelta(minutes=1))


def bar_gaps(data: DataSet) -> dict[str, tuple[timedelta, timedelta]]:
    """Each bar symbol's smallest and median gap between two of its bars, when it has two bars.

    Over every bar, not a sample of the first: a file whose bars change length after its first few thousand (a
    week of 5-minute bars going on in minute bars) had its minute bars replayed 5 minutes after they started, and
    one mostly of longer bars went without the note. A pass over the timestamps costs milliseconds a million."""
    import numpy as np
    import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

    gaps: dict[str, tuple[timedelta, timedelta]] = {}
    for symbol in data.bar_symbols:
        stamps = data.table("bars", symbol).column("timestamp").cast(pa.int64()).to_numpy()
        if len(stamps) > 1:
            between = np.diff(stamps)
            gaps[symbol] = (timedelta(microseconds=int(between.min())), timedelta(microseconds=int(np.median(between))))
    return gaps


def tick_seconds(data: DataSet, interval: timedelta, loop_interval_seconds: float) -> float:
    """The seconds between two of the replay's ticks, as the engine's close margin and signal history gap take them
    (`close_margin_minutes`, `history_gap_seconds`): a recording's (`ticks/`) are its run's, which took them from
    its config's `runner.loop_interval_seconds`, as the replay given that config does; other data ticks once a bar.
    A recording of quotes alone has no bars, and the bar length (a minute, then) reset a signal's history after a
    gap of 60 s plus the staleness limit where the run's 5 s loop reset it after 5 s plus that limit: a run's tick
    that lasted, or a quick restart, fed its signal a fresh history and the replay the old prices across the gap."""
    return float(loop_interval_seconds) if data.ticks is not None else interval.total_seconds()


def _other_tick_spacing(data: DataSet, loop_interval_seconds: float) -> str | None:
    """A note when a recording's ticks are mostly (by the median gap) not `loop_interval_seconds` apart (within half
    of it): the run was given another loop interval than the config the replay is given, so its signals' history
    gaps and close margin are not the run's; None otherwise."""
    import numpy as np

    if data.ticks is None or len(data.ticks) < 2:
        return None
    usual = float(np.median(np.diff(np.asarray(data.ticks, dtype=np.int64)))) / 1e6
    if abs(usual - loop_interval_seconds) <= loop_interval_seconds / 2:
        return None
    return (f"{data.folder}'s recorded ticks are mostly {usual:g} s apart, but runner.loop_interval_seconds here is "
            f"{loop_interval_seconds:g}: the replay resets its signals' history and sets its close margin by the "
            "config's loop interval, as the run did by its own, so give the replay the config the run had")


def _longer_bars(data: DataSet, interval: timedelta) -> str | None:
    """A note naming the bar symbols whose bars are mostly (by the median gap) at least twice the replay's bar
    length apart, or None.

    One length is inferred for every bar, the smallest gap of any symbol: hourly bars in a folder of minute bars,
    or minute bars two of which are a second apart, are replayed a minute (a second) after they start, each one's
    close seen before it happened. The data cannot say which bars are long and which are sparse (a thin option's
    minute bars), so this is said, not refused."""
    gaps = bar_gaps(data)
    longer = sorted(symbol for symbol, (_smallest, usual) in gaps.items() if usual >= 2 * interval)
    if not longer:
        return None
    shortest = min(gaps, key=lambda symbol: (gaps[symbol][0], symbol))
    named = ", ".join(f"{symbol}'s bars are mostly {gaps[symbol][1]} apart" for symbol in longer[:5])
    more = f" (and {len(longer) - 5} more symbols')" if len(longer) > 5 else ""
    return (f"{named}{more}, but each bar is replayed {interval} after its timestamp (the smallest gap between two bars "
            f"of a symbol, {shortest}'s): a bar longer than that is seen before it ends; keep one bar length (one "
            "--timeframe) per data folder, and bars of a symbol at least one length apart")


def _first_known(data: DataSet, symbol: str, interval: timedelta) -> tuple[datetime, datetime] | None:
    """When a symbol's first and last rows became known (bars at their end), or None when it has none."""
    spans = []
    # A recording's unusable quotes (a side at 0, crossed) are what its run read of the symbol: a symbol whose every
    # quote was one (a thin stock before the open) has data, replayed as read, its bots blocked as they were.
    kinds: tuple[tuple[Kind, timedelta], ...] = (("quotes", timedelta(0)), ("unusable", timedelta(0)), ("bars", interval))
    for kind, shift in kinds:
        if data.rows(kind, symbol):
            stamps = data.table(kind, symbol).column("timestamp")
            spans.append((stamps[0].as_py() + shift, stamps[-1].as_py() + shift))
    if not spans:
        return None
    return min(s[0] for s in spans).astimezone(timezone.utc), max(s[1] for s in spans).astimezone(timezone.utc)


def missing_data(
    bots: BotsConfig, data: DataSet, interval: timedelta, start: datetime | None = None, end: datetime | None = None
) -> list[Problem]:
    """One problem per enabled bot's symbol that has no data, or none inside [start, end]. Stock data with no row
    in a session is one too (New York's times written as UTC, a holiday's file), except in a recording (`ticks/`):
    its times are the engine's own instants, and a run over a weekend or a night, where only the crypto bots
    trade, is replayed as it ran, the stock bots idle as they were."""
    problems = []
    for bot_id, symbol, _fractional in symbols_by_bot(bots):
        span = _first_known(data, symbol, interval)
        stem = file_stem(symbol)
        if span is None and symbol in data.symbols:  # its file is there, with no row: said as that, not as no file
            kinds: tuple[tuple[Kind, tuple[str, ...]], ...] = (("bars", data.bar_symbols), ("quotes", data.quote_symbols))
            empty = [_shown_source(data, kind, symbol) for kind, symbols in kinds if symbol in symbols]
            holds = f"{' and '.join(empty)} hold{'s' if len(empty) == 1 else ''} none"
            problems.append(
                Problem(
                    str(data.folder),
                    0,
                    0,
                    "",
                    f"{bot_id} trades {symbol}, whose data here has no rows ({holds}): fetch it, or disable the bot",
                )
            )
        elif span is None:
            joined = symbol.replace("/", "")  # a pair's file named without its dash (BTCUSD.csv) is BTCUSD's: say so
            there = f"; {joined}'s data is here, but a pair's file is named {stem}" if joined in data.symbols else ""
            problems.append(
                Problem(
                    str(data.folder),
                    0,
                    0,
                    "",
                    f"{bot_id} trades {symbol}, which has no data here "
                    f"(bars/{stem}.parquet or .csv, or quotes/{stem}){there}: fetch it, or disable the bot",
                )
            )
        elif (start is not None and span[1] < start) or (end is not None and span[0] > end):
            problems.append(
                Problem(
                    str(data.folder),
                    0,
                    0,
                    "",
                    f"{bot_id} trades {symbol}, whose data ({iso(span[0])} to {iso(span[1])}) is outside the backtest's window",
                )
            )
        elif (data.ticks is None and asset_class_of(symbol) != "crypto"
              and (closed := _closed_throughout(data, symbol, interval, start, end))):  # fmt: skip
            problems.append(
                Problem(
                    str(data.folder),
                    0,
                    0,
                    "",
                    f"{bot_id} trades {symbol}, whose data in the window ({iso(closed[0])} to {iso(closed[1])}) has no row "
                    "while its market is open (XNYS sessions): only weekends, holidays or nights, where it cannot trade; "
                    "if the times are New York's, write them with their offset (-05:00 in winter, -04:00 in summer)",
                )
            )
    return problems


def _ended_before(bots: BotsConfig, data: DataSet, interval: timedelta, ready: datetime) -> list[Problem]:
    """One problem per enabled bot's symbol whose data ends before `ready`, the instant the last of the bots' symbols
    has a price, where the run starts: that data is never replayed (as data outside a window given is refused)."""
    spans = {symbol: span for _bot, symbol, _f in symbols_by_bot(bots) if (span := _first_known(data, symbol, interval))}
    last = min((symbol for symbol, span in spans.items() if span[0] == ready), default="")
    return [
        Problem(str(data.folder), 0, 0, "",
                f"{bot_id} trades {symbol}, whose data ({iso(span[0])} to {iso(span[1])}) ends before the backtest can start: "
                f"it starts at {iso(ready)}, when every enabled bot's symbols have a price ({last}'s first); give them data "
                "over the same days, or disable the bot")
        for bot_id, symbol, _f in symbols_by_bot(bots) if (span := spans.get(symbol)) is not None and span[1] < ready
    ]  # fmt: skip


DAY = timedelta(days=1)


def _days_without_data(stamped: BotsStamps, interval: timedelta, start: datetime, end: datetime) -> list[str]:
    """A note for each enabled bot's symbol without data where another of the bots' symbols has rows: a stock (an
    option's underlying) with no row in a whole session of the window, a coin with no row for 24 hours or more (it
    trades around the clock); a day missing from one file, or one file ending days before the others. The replay
    leaves its bots idle there, rightly (no price, no entry: a stale symbol blocks its own bots, and halts nothing
    while the others are current), but nothing said so: the summary's figures for them (trades, Sharpe over days,
    exposure) counted days they could not trade as days they chose not to. A coin's gap is looked for between its
    rows, not in whole UTC days: one from 03:00 to 03:00 the next day left no UTC day empty, and went unsaid. The
    start needs no note: the window starts when every symbol has a price."""
    import numpy as np

    bots_of, stamps = stamped
    if len(stamps) < 2:
        return []
    lo, hi = _us(start - interval), _us(end)  # a bar stamped at the first session's open is known at `start`
    opens, closes = _session_bounds(start.date() - DAY, end.date() + DAY)
    whole = (opens >= lo) & (closes <= hi)
    begins, ends = opens[whole], closes[whole]
    held = {symbol: sum(np.searchsorted(rows, ends, "left") - np.searchsorted(rows, begins, "left") for rows in parts) > 0
            for symbol, parts in stamps.items()}  # fmt: skip
    day_us = DAY // timedelta(microseconds=1)
    notes = []
    for symbol, parts in stamps.items():
        others = [rows for other, other_parts in stamps.items() if other != symbol for rows in other_parts]
        if asset_class_of(symbol) != "crypto":
            has = np.zeros(len(begins), bool)
            for other, sessions in held.items():
                if other != symbol:
                    has |= sessions
            missing = [(_EPOCH + timedelta(microseconds=int(at))).astimezone(NEW_YORK).date().isoformat()
                       for at in begins[has & ~held[symbol]]]  # fmt: skip
            kind, plural, span, joined = "a session", f"{len(missing)} sessions", "those days", ", "
        else:
            own = np.unique(np.concatenate(parts))
            points = np.concatenate(([lo], own[(own > lo) & (own < hi)], [hi]))
            wide = np.flatnonzero(np.diff(points) >= day_us)  # a year of minute bars: only the gaps are looked at
            missing = [f"no row after {iso_micros(int(a))} until {iso_micros(int(b))}"
                       for a, b in zip(points[wide], points[wide + 1], strict=True)
                       if any(np.searchsorted(rows, b) > np.searchsorted(rows, a, "right") for rows in others)]  # fmt: skip
            kind, plural, span, joined = "a stretch of 24 hours or more", f"{len(missing)} stretches of 24 hours or more", \
                "that time", "; "
        if not missing:
            continue
        shown = joined.join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        notes.append(f"{symbol} has no data in {kind if len(missing) == 1 else plural} of the backtest where other symbols "
                     f"have ({shown}): {', '.join(bots_of[symbol])} could not trade it then, and the summary's figures count "
                     f"{span} all the same; give it data over the same days, or backtest those days apart")
    return notes


BotsStamps = tuple[dict[str, list[str]], dict[str, list[Any]]]  # `_bots_stamps`: read once for both notes


def _bots_stamps(bots: BotsConfig, data: DataSet) -> BotsStamps:
    """The enabled bots of each of their symbols, and each symbol's timestamps (µs) by file, bars' and quotes' (each
    sorted already: a file's timestamps strictly increase); a symbol without rows has none."""
    import pyarrow as pa

    bots_of: dict[str, list[str]] = {}
    for bot_id, symbol, _fractional in symbols_by_bot(bots):
        bots_of.setdefault(symbol, []).append(bot_id)
    stamps = {}
    for symbol in sorted(bots_of):
        kinds: tuple[Kind, ...] = ("bars", "quotes")
        parts = [data.table(kind, symbol).column("timestamp").cast(pa.int64()).to_numpy()
                 for kind in kinds if data.rows(kind, symbol)]  # fmt: skip
        if parts:
            stamps[symbol] = parts
    return bots_of, stamps


def _rows_without_session(stamped: BotsStamps, interval: timedelta, start: datetime, end: datetime) -> list[str]:
    """A note for each enabled bot's stock (an option's underlying) with rows in the window on a New York day the
    exchange had no session: a holiday or a weekend. Alpaca has no such bars (the exchange is shut, extended hours
    too), so they are the data's mistake (a wrong calendar, a time zone); the replay trades nothing there (the
    market is closed), and only the exchange's sessions are trading days in the summary (`report.trades_on`). Such
    a day counted as one, a zero return among the Sharpe's, and nothing said the data was off. Not asked of a
    recording: its run read every symbol's quote each tick, over a holiday too, and was told its dates were off."""
    import numpy as np

    bots_of, stamps = stamped
    calendar = market_calendar()
    lo, hi = _us(start - interval), _us(end)
    first, last = (start - interval).astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()
    shut = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    shut = [day for day in shut if calendar.session(day) is None]
    bounds = [(max(lo, _us(datetime.combine(day, datetime.min.time(), NEW_YORK))),
               min(hi + 1, _us(datetime.combine(day + DAY, datetime.min.time(), NEW_YORK)))) for day in shut]  # fmt: skip
    coins = any(asset_class_of(symbol) == "crypto" for symbol in bots_of)
    notes = []
    for symbol, parts in stamps.items():
        if asset_class_of(symbol) == "crypto":
            continue
        days = [day.isoformat() for day, (begin, until) in zip(shut, bounds, strict=True)
                if any(np.searchsorted(rows, until) > np.searchsorted(rows, begin) for rows in parts)]  # fmt: skip
        if not days:
            continue
        shown = ", ".join(days[:3]) + (f" and {len(days) - 3} more" if len(days) > 3 else "")
        counted = ("" if coins else ", and the summary counts the exchange's sessions only as trading days")
        notes.append(f"{symbol} has rows on {'a day' if len(days) == 1 else f'{len(days)} days'} the exchange (XNYS) had no "
                     f"session ({shown}), a holiday or a weekend: {', '.join(bots_of[symbol])} could not trade it then"
                     f"{counted}; check the data's dates and time zone")
    return notes


def _closed_throughout(
    data: DataSet, symbol: str, interval: timedelta, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime] | None:
    """When every row of `symbol` known in [start, end] starts while its exchange is closed, the first and last of
    them (as known); None when one starts in a session, or none is in the window. Such data replays to a report of
    no trades, as sound-looking as any other: a holiday's file, or New York's times written as UTC at night."""
    import numpy as np
    import pyarrow as pa

    assert data.start is not None and data.end is not None  # the symbol has rows
    opens, closes = _session_bounds(data.start.date() - timedelta(days=1), data.end.date() + timedelta(days=1))
    known: list[int] = []
    kinds: tuple[tuple[Kind, int], ...] = (("quotes", 0), ("bars", interval // timedelta(microseconds=1)))
    for kind, shift in kinds:
        if not data.rows(kind, symbol):
            continue
        stamps = data.table(kind, symbol).column("timestamp").cast(pa.int64()).to_numpy()
        first = 0 if start is None else int(np.searchsorted(stamps + shift, _us(start), "left"))
        last = len(stamps) if end is None else int(np.searchsorted(stamps + shift, _us(end), "right"))
        stamps = stamps[first:last]
        if not len(stamps):
            continue
        index = np.searchsorted(opens, stamps, "right") - 1
        if bool(((index >= 0) & (stamps < closes[np.maximum(index, 0)])).any()):
            return None
        known += [int(stamps[0]) + shift, int(stamps[-1]) + shift]
    if not known:
        return None
    return _EPOCH + timedelta(microseconds=min(known)), _EPOCH + timedelta(microseconds=max(known))


@functools.lru_cache(maxsize=4)
def _session_bounds(first: date, last: date) -> tuple[Any, Any]:
    """The opens and closes (µs) of the exchange's sessions from `first` to `last`, once for every symbol of a data
    set (a thousand symbols' years of sessions are not built a thousand times); [0], [0] when there is none."""
    import numpy as np

    days = market_calendar().sessions(first, last)
    return (np.array([_us(session.open) for session in days] or [0], np.int64),
            np.array([_us(session.close) for session in days] or [0], np.int64))


def _us(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def _shown_source(data: DataSet, kind: Kind, symbol: str) -> str:
    """Where `symbol`'s `kind` data is in the data folder, as the user named it: `bars/AAPL.csv`, `quotes/AAPL/`."""
    stem = file_stem(symbol)
    for suffix in SUFFIXES:
        if (data.folder / kind / f"{stem}{suffix}").exists():
            return f"{kind}/{stem}{suffix}"
    return f"{kind}/{stem}/"


def _starts_inside_the_run(data: DataSet, start: datetime) -> str | None:
    """A note when a recording's replay starts after its run's first tick (`--from` inside it, or a second day of a
    folder two runs recorded): the run then held what it had bought, its cash and its machines' states, which the
    replay does not know; it starts flat with `--cash`, so its first decisions are not the run's. None otherwise."""
    if data.ticks is None or not len(data.ticks) or int(data.ticks[0]) >= _us(start):
        return None
    before = int(data.ticks[(data.ticks < _us(start)).sum() - 1])
    return (f"the replay starts at {iso(start)}, after the first recorded tick of {data.folder} "
            f"({iso(_EPOCH + timedelta(microseconds=int(data.ticks[0])))}; the last before the start: "
            f"{iso(_EPOCH + timedelta(microseconds=before))}): what the recorded run held then (positions, cash, its "
            "machines' states, halts) is not known here, and the replay starts flat with --cash, so it is not the "
            "run's from there; replay from the recording's start for that")


def _options_bots(bots: BotsConfig) -> list[str]:
    """The enabled options bots' ids: their contracts are priced by the simulator's model in a replay."""
    from engine.config.checks import trading_bots
    from engine.config.model import OptionsBotConfig

    return [bot.bot_id for _path, bot in trading_bots(bots) if bot.enabled and isinstance(bot, OptionsBotConfig)]


def _not_the_runs(folder: Path, start: datetime, end: datetime, cash: float, store: StateStore,
                  options_bots: list[str] | None = None) -> list[str]:  # fmt: skip
    """Notes where a recording's replay cannot be its run, from what the run wrote in `recording.jsonl`
    (engine/data/recorder.py) between `start` and `end`: the run started holding positions, or other cash, or
    halted (an operator's halt from before it: the replay starts unhalted); a halt came into force in the run and not
    in the replay (an operator's, one for broker errors), or one in the replay the run did not have; the run's
    broker calls failed (a replay's never do). None of it can be replayed: it is said, so the user knows where the
    replay and the run part."""
    records, unread = read_notes(folder)
    said: list[str] = []
    if unread:
        said.append(f"{len(unread)} line{'s' if len(unread) > 1 else ''} of {folder / NOTES_FILE} cannot be read "
                    f"({', '.join(unread[:3])}): what the run met there (halts, broker errors) is not known here")
    if not records:
        return said
    inside = [r for r in records if start <= r["at"] <= end]
    runs = [r for r in inside if r["event"] == "run"]
    if runs and runs[0]["at"] == start:  # the replay starts with this run: what it held, the replay does not
        first = runs[0]
        held = first.get("positions")
        if isinstance(held, dict) and held:
            shown = ", ".join(f"{symbol} {qty}" for symbol, qty in sorted(held.items())[:5])
            shown += ", ..." if len(held) > 5 else ""
            said.append(f"the recorded run started at {iso(start)} holding {shown}; the replay starts with no position, so "
                        "its exits and budgets are not the run's")
        run_cash = first.get("cash")
        if isinstance(run_cash, (int, float)) and abs(run_cash - cash) >= 0.005:
            said.append(f"the recorded run started at {iso(start)} with cash {run_cash:,.2f}, the replay with {cash:,.2f}: "
                        f"give --cash {run_cash:.2f} to size as it did")
    theirs: list[tuple[datetime, str, str]] = [(r["at"], str(h.get("scope")), str(h.get("reason"))) for r in runs
                                               for h in r.get("halts") or () if isinstance(h, dict)]
    theirs += [(r["at"], str(r.get("scope")), str(r.get("reason"))) for r in inside if r["event"] == "halt"]
    ours = store.halts()
    missing = [(at, scope, reason) for at, scope, reason in sorted(theirs) if not any(
        h.scope == scope and h.started_at <= at and (h.ended_at is None or h.ended_at > at) for h in ours)]
    if missing:
        listed = "; ".join(f"{scope} at {iso(at)} ({reason})" for at, scope, reason in missing[:3])
        said.append(f"the recorded run was halted where the replay was not: {listed}"
                    f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}; the replay traded on where the run "
                    "could not")
    seen = {(at, scope) for at, scope, _reason in theirs}
    extra = [h for h in ours if start <= h.started_at <= end and (h.started_at, h.scope) not in seen]
    if extra:
        listed = "; ".join(f"{h.scope} at {iso(h.started_at)} ({h.reason})" for h in extra[:3])
        said.append(f"the replay was halted where the recorded run was not: {listed}"
                    f"{f' and {len(extra) - 3} more' if len(extra) > 3 else ''}")
    for run in (r for r in records if r["event"] == "run"):  # ticks the state ran that the folder lost (a kill)
        try:
            ran, kept = (None if (t := run.get(key)) is None else aware_time(str(t))
                         for key in ("state_last_tick", "recorded_last_tick"))
        except ValueError:
            said.append(f"{folder / NOTES_FILE}: the run at {iso(run['at'])} has a last tick that is not a time")
            continue
        if ran is not None and kept is not None and ran > kept and kept < end and ran >= start:
            said.append(f"the recorded run ticked from {iso(kept)} to {iso(ran)} with nothing recorded (a kill loses the "
                        "quotes and ticks buffered since the last flush): the replay has no tick there, and what the run "
                        "did then is not in it")
    live = sorted({str(r.get("broker")) for r in inside if r["event"] == "run" and r.get("broker") != "sim"})
    if options_bots and live:  # a recording holds the stocks' and coins' quotes, not the option chains the run read
        said.append(f"{', '.join(options_bots)}: the recorded run read its option chains from {', '.join(live)}, which a "
                    "recording does not hold; the replay prices contracts with the simulator's model from the "
                    "underlying's recorded quotes, so its option entries, prices and exits are not the run's")
    errors = [r for r in inside if r["event"] == "broker_error"]
    if errors:
        said.append(f"the recorded run's broker calls failed at {len(errors)} tick{'s' if len(errors) > 1 else ''} (the first "
                    f"at {iso(errors[0]['at'])}: {errors[0].get('operation')}: {errors[0].get('message')}), the replay's "
                    "never do: from there its orders and halts can differ from the run's")
    return said


def _gap_note(added: int, first: datetime) -> str:
    """Where the replay ticked with no row in any file (engine/replay/gaps.py): said, since a bot's price there is
    the one from before the hole and one older than five bars halts the run (data_stale_halt), as live."""
    return (f"{added} tick{'s' if added > 1 else ''} at instants no file has a row at (the first at {iso(first)}), while a "
            "market a bot trades was open: the engine ticked there as a live run would, on the prices known before "
            "(five bars without a new one are stale data: docs/backtest.md, Stale data halts)")


def out_in_data(out: Path, data_folder: Path) -> str | None:
    """Why `out` cannot hold a backtest or a sweep, when it is the data folder or inside it (the run's files there,
    trades.csv or a folder of runs, would be read as data by the next backtest of that folder, or refused as files
    no symbol maps to); None when it is elsewhere. A relative path from a working folder deleted under the shell
    names nothing: said so (resolving it raised FileNotFoundError, a traceback)."""
    try:
        out_real, data_real = out.resolve(), data_folder.resolve()
    except OSError as exc:
        return (f"cannot be found ({exc.strerror or exc}): the working folder it is relative to is gone; "
                "cd to a folder that exists, or give absolute paths")  # fmt: skip
    if out_real == data_real or data_real in out_real.parents:
        return f"inside the data folder {data_folder}: a backtest writes elsewhere (give another --out)"
    return None


def _claim(state_file: Path) -> None:
    """Make the run's state file, empty, or FileExistsError when it is there already: the folder is this run's
    from then on. Looked at first and made later, two backtests given one --out at once both found none, and
    both ran into the one state file and log, each one's report read from both runs. A file is made by one
    process only (O_EXCL); SQLite writes the new database into it."""
    os.close(os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))


def _bound(value: date | datetime | None, *, end: bool, tz: Any) -> datetime | None:
    """A date is a day in the engine's time zone (an end date includes the whole day)."""
    if value is None or isinstance(value, datetime):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone: give an offset or a date")
        return value.astimezone(timezone.utc) if value is not None else None
    day = value + timedelta(days=1) if end else value
    moment = datetime.combine(day, datetime.min.time(), tz).astimezone(timezone.utc)
    return moment - timedelta(microseconds=1) if end else moment


def run_backtest(
    report: Report,
    data_dir: Path | str | DataSet,
    *,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    cash: float = 100_000.0,
    out_dir: Path | str,
    fill_model: FillModel | None = None,
    progress: Callable[[BacktestProgress], None] | None = None,
    html: bool = True,
    secrets: Sequence[str] = (),
) -> BacktestResult:
    """Run the engine configured by `report` (a validated config, rules and machines) over the data in `data_dir`,
    from `start` to `end` (dates are days in system.timezone, both included; default: the whole data, from the
    first instant every bot's symbols have a price), starting with `cash`; write the run and its report to
    `out_dir`, which must not hold a run already.

    Raises DataError for bad data (every problem of every file), MissingData when an enabled bot's symbol has no
    data, BacktestError when the window holds no data or `out_dir` holds a run (DataBusy when `data_dir` is being
    recorded or fetched now), ValueError for bad arguments. `secrets` (the keys and token of the environment,
    `runner.maskable_keys`) are masked in the run's log and state file, as a real run's journal masks them: the
    user's signals run here too, and what one raises is recorded.
    """
    from zoneinfo import ZoneInfo

    assert report.config is not None and report.book is not None, "run_backtest needs a validated Report"
    if not cash > 0:
        raise ValueError(f"cash must be above 0, not {cash!r}")
    config = report.config
    tz = ZoneInfo(config.settings.system.timezone)
    if not isinstance(data_dir, DataSet):
        busy = being_written(Path(data_dir))
        if busy is not None:
            raise DataBusy(busy)
    data = data_dir if isinstance(data_dir, DataSet) else DataSet.open(data_dir)
    begin, finish = _bound(start, end=False, tz=tz), _bound(end, end=True, tz=tz)
    if begin is not None and finish is not None and finish < begin:
        raise ValueError(f"the end ({iso(finish)}) is before the start ({iso(begin)})")
    day_bars = timeframes.day_bar_problems(config.bots, data, bar_gaps(data))
    if day_bars:
        raise DataError(day_bars)
    interval = bar_interval(data)
    problems = missing_data(config.bots, data, interval, begin, finish)
    if problems:
        raise MissingData(problems)
    notes: list[str] = []
    longer = _longer_bars(data, interval)
    if longer is not None:
        notes.append(longer)
    other_spacing = _other_tick_spacing(data, config.settings.runner.loop_interval_seconds)
    if other_spacing is not None:
        notes.append(other_spacing)
    # Quotes set the price only once there is one: a quotes file with no row (a header only) leaves the bars to it.
    both = sorted(s for s in set(data.bar_symbols) & set(data.quote_symbols) if data.rows("quotes", s))
    if both:  # documented, but easy to miss: the bars given for them set no price
        notes.append(f"{', '.join(both)}: both bars and quotes given; quotes set the price (docs/backtest.md, Prices)")
    # Every bot has a price from the first tick: the window starts when the last of their symbols has one.
    needed = {symbol for _bot, symbol, _f in symbols_by_bot(config.bots)}
    ready = max((known[0] for s in needed if (known := _first_known(data, s, interval)) is not None), default=None)
    if ready is not None and (begin is None or ready > begin):
        ended = _ended_before(config.bots, data, interval, ready)
        if ended:
            raise MissingData(ended)
        if begin is not None:
            notes.append(f"starts at {iso(ready)}, when every bot's symbols have a price")
        begin = ready
    out = Path(out_dir)
    inside = out_in_data(out, data.folder)
    if inside is not None:
        raise BacktestError(f"{out}: {inside}")
    held = [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]
    if held:
        raise BacktestError(f"{out / held[0]} exists: a backtest writes a new folder (give another --out; it holds "
                            f"{', '.join(held)} of another run)")  # fmt: skip
    calendar = market_calendar()
    frames = data.frames(begin, finish, bars_known_after=interval)
    rows_only = frames
    if data.ticks is None:  # a hole no file has a row in is ticked through as a live run would (engine/replay/gaps.py)
        crypto, stocks = markets_traded(needed)
        frames = with_gap_ticks(frames, interval, crypto=crypto, stocks=stocks, calendar=calendar)
    first = next(frames, None)
    if first is None:
        between = f"between {iso(begin) if begin else 'its start'} and {iso(finish) if finish else 'its end'}"
        if data.ticks is not None and len(data.ticks):  # a replay ticks at the recording's ticks only: say theirs
            ticked = f"{iso_micros(int(data.ticks[0]))} to {iso_micros(int(data.ticks[-1]))}"
            raise BacktestError(f"{data.folder} has no recorded tick {between}: its ticks/ (where a replay of a recording "
                                f"ticks) runs from {ticked}; remove ticks/ to replay at each row's time")
        raise BacktestError(f"{data.folder} has no data {between}")
    window_start = first.at
    spacing = tick_seconds(data, interval, config.settings.runner.loop_interval_seconds)
    notes.extend(timeframes.signals_without_history(report.book, config.bots, spacing, tz, window_start))
    window_end = finish if finish is not None else (data.end + interval if data.end else first.at)
    cut = _starts_inside_the_run(data, window_start)
    if cut is not None:
        notes.append(cut)
    if out.exists() and not out.is_dir():
        raise BacktestError(f"{out} is a file: a backtest writes a folder (give another --out)")
    try:  # an --out that cannot be written is told before the run, not after it
        ensure_writable_folder(out)
        _claim(out / STATE_FILE)
    except FileExistsError:
        raise BacktestError(f"{out / STATE_FILE} exists: a backtest writes a new folder (give another --out; another "
                            "backtest may be writing to it now)") from None  # fmt: skip
    except OSError as exc:
        refused = BacktestError if exc.errno in WRONG_KIND else OutputFailed
        raise refused(f"{out}: cannot write the backtest there ({exc.strerror or exc})") from None
    model = fill_model or FillModel()
    clock = ManualClock(first.at)
    feed = FramePrices(interval, calendar=calendar)
    feed.advance(first)
    exchange = ReplayExchange(
        clock, seed=config.settings.sim.seed, starting_cash=cash, prices=feed, fill_model=model, calendar=calendar
    )
    broker = ReplayBroker(ReplayAPI(exchange), clock, config.settings.broker)
    store = StateStore(out / STATE_FILE, synced=False)  # written again by running again: nothing is sent on it
    store.hold_commits(COMMIT_EVERY)
    journal = Journal(out / LOG_FILE, clock, secrets)
    recorded = Recorded()
    journal.subscribe(recorded.journal_event, events=Recorded.EVENTS)
    started = time.perf_counter()
    try:
        engine = Engine(config, report.book, report.machines, broker, store, journal, clock, flush_each_tick=False)
        engine.orders.fill_band = False  # fills are the fill model's own (slippage included), not a broker's answer
        # it ticks once a bar, not every loop_interval_seconds; an order sent at one fills at the next row with "next"
        engine.close_margin = close_margin_minutes(spacing, 2 if model.timing == "next" else 1)
        engine.history_gap_s = history_gap_seconds(spacing, config.settings.health)
        # what the operator commands read a state file by (`status`, `health`: engine/trading/runner.py state_now):
        # a backtest's time is its data's, its days counted in this zone, its run the window
        store.set_meta("broker", BACKTEST_BROKER)
        store.set_meta(ZONE_KEY, config.settings.system.timezone)
        store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": window_start.isoformat(), "broker": BACKTEST_BROKER}))
        journal.log("backtest_start", data=str(data.folder), start=window_start, end=window_end, cash=cash,
                    fill_model=model.as_dict(), tick_seconds=spacing, history_gap_seconds=engine.history_gap_s)  # fmt: skip
        span = max((window_end - window_start).total_seconds(), 1.0)
        last_kept: datetime | None = None
        frame = first
        while True:
            engine.tick()
            recorded.frames += 1
            recorded.bar_events += len(frame.new_bars) + len(frame.new_quotes)
            if last_kept is None or frame.at - last_kept >= EQUITY_EVERY:
                recorded.equity.append((frame.at, exchange.equity(), exchange.cash))
                last_kept = frame.at
            if recorded.frames % PROGRESS_EVERY == 0:
                _still_in_place(out, store, journal)
            if progress is not None and recorded.frames % PROGRESS_EVERY == 0:
                fraction = min((frame.at - window_start).total_seconds() / span, 1.0)
                progress(BacktestProgress(frame.at, recorded.frames, fraction, recorded.equity[-1][1]))
            following = next(frames, None)
            if following is None:
                break
            frame = following
            feed.advance(frame)
            clock.set(frame.at)
        if recorded.equity[-1][0] != frame.at:
            recorded.equity.append((frame.at, exchange.equity(), exchange.cash))
        stamped = _bots_stamps(config.bots, data)  # every file's timestamps, read once for the two notes
        notes.extend(_days_without_data(stamped, interval, window_start, frame.at))
        if data.ticks is None:  # a recording's rows are its run's reads, made shut or not: its dates are the engine's
            notes.extend(_rows_without_session(stamped, interval, window_start, frame.at))
        notes.extend(_not_the_runs(data.folder, window_start, frame.at, cash, store, _options_bots(config.bots)))
        if isinstance(frames, GapTicks) and frames.added and frames.first_added is not None:
            notes.append(_gap_note(frames.added, frames.first_added))
        if isinstance(rows_only, TickFrames) and rows_only.unseen and rows_only.first_unseen is not None:
            notes.append(f"{rows_only.unseen} rows of {data.folder} were seen by no tick of the recording there (the first at "
                         f"{iso(rows_only.first_unseen)}): data not recorded with these ticks (another recording's, merged "
                         "into the folder?) or ticks lost, so the replay is not that run's there")
        wall = time.perf_counter() - started
        store.set_meta(LAST_TICK_KEY, frame.at.isoformat())
        store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": window_start.isoformat(), "ended_at": frame.at.isoformat(),
                                                 "reason": "backtest: the data ended", "broker": BACKTEST_BROKER}))  # fmt: skip
        journal.log("backtest_end", frames=recorded.frames, bar_events=recorded.bar_events, equity=round(exchange.equity(), 2))
        journal.flush()
        store.commit_held()
        if progress is not None:
            progress(BacktestProgress(frame.at, recorded.frames, 1.0, recorded.equity[-1][1]))
        _still_in_place(out, store, journal)
        try:
            summary, files = reporting.write(
                out,
                engine=engine,
                exchange=exchange,
                data=data,
                recorded=recorded,
                cash=cash,
                model=model,
                start=window_start,
                end=frame.at,
                html=html,
                notes=notes,
            )
        except OSError as exc:  # a full disk, a folder made read-only meanwhile: the run's state and log stay
            raise OutputFailed(f"{out}: the run ended but its report could not be written ({exc.strerror or exc})") from None
        except reporting.FigureNotFinite as exc:  # no file of the report is written: none would be read right
            raise OutputFailed(f"{out}: the run ended but its report was not written: {exc} (the run's state.db and "
                               "app.jsonl stay)") from None  # fmt: skip
    finally:
        try:
            journal.close()
        finally:  # the state file's held ticks are committed even when the log cannot be closed
            store.close()
    return BacktestResult(
        out,
        summary,
        window_start,
        frame.at,
        recorded.frames,
        recorded.bar_events,
        wall,
        (*files, out / STATE_FILE, out / LOG_FILE),
        tuple(notes),
    )
