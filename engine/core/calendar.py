"""The exchange's calendar: when the US equity market is open, from exchange-calendars' XNYS, not hand-written.

Holidays and early closes change by law and by decree (a national day of mourning closes the market at a few
days' notice), so they come from a maintained calendar. Asking it is slow (tens of milliseconds, and importing
it pulls in pandas), while the engine asks "is the market open?" every tick; so the sessions of a span of years
are read once into sorted lists of open and close instants, and a question is a bisection over them (about a
microsecond). A question outside the span widens it, once.

exchange-calendars is imported on first use, never at import: `python -m engine --validate` must stay fast.
For XNYS, a span inside the years of engine/core/xnys_sessions.py (exchange-calendars' own sessions, written by
tools/make_xnys_sessions.py and checked against it by the tests) is built from that table instead: the import
costs about 0.45 s, which a simulated day or a short backtest would otherwise spend before its first tick.
"""

from __future__ import annotations

import threading
import warnings
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
_DAY = 86400.0


@dataclass(frozen=True)
class Session:
    """One trading day: its open and close as aware UTC datetimes, and whether it closes early."""

    day: date
    open: datetime
    close: datetime
    early_close: bool


@dataclass(frozen=True)
class _Span:
    """Every session of the days [first, last], as parallel sorted lists: replaced whole, never changed."""

    first: date
    last: date
    lo: float  # instants in [lo, hi) are answered from this span alone
    hi: float
    opens: Sequence[float]
    closes: Sequence[float]
    sessions: Sequence[Session]
    days: Sequence[date]


def _shift(day: date, delta: timedelta) -> date:
    """`day + delta`, held to the dates Python has: a question near year 1 or 9999 is then refused by the calendar
    as a span it cannot cover (ValueError, with the span), not an OverflowError from the date arithmetic."""
    try:
        return day + delta
    except OverflowError:
        return date.max if delta > timedelta(0) else date.min


def _midnight_utc(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def _seconds(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"{at!r} is naive: the calendar needs timezone-aware datetimes")
    return at.timestamp()


class MarketCalendar:
    """An exchange's sessions (default XNYS, the New York Stock Exchange), answered from precomputed bounds.

    Sessions are half-open: the market is open from `open` included to `close` excluded, as Alpaca's clock says.
    Pass `start`/`end` to read a known span up front (a backtest's dates); otherwise the first question reads the
    `margin_years` on each side of it.
    """

    def __init__(
        self,
        exchange: str = "XNYS",
        *,
        start: date | None = None,
        end: date | None = None,
        margin_years: int = 5,
        table: bool = True,
    ):
        self.exchange = exchange
        self._table = table and exchange == "XNYS"  # False: always ask exchange-calendars (the table's own check)
        self._margin = timedelta(days=366 * margin_years)
        self._lock = threading.Lock()
        self._span: _Span | None = None
        if start is not None or end is not None:
            first = start or end
            last = end or start
            assert first is not None and last is not None
            self._span = self._read(first, last)

    # --- the span -------------------------------------------------------------------------------------------

    def _read(self, first: date, last: date) -> _Span:
        if self._table:
            from engine.core import xnys_sessions as table

            if first >= table.FIRST and last <= table.LAST:
                return _span_of(first, last, _table_sessions(first, last))
            # Past the table's years (or the margin reaching past them): exchange-calendars itself.
        try:
            import exchange_calendars  # type: ignore[import-untyped]  # ships no type hints
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise RuntimeError("exchange-calendars is not installed: pip install -e . installs it") from exc
        # Deprecations inside exchange-calendars' use of pandas are theirs to fix, not a user's: kept out of the log.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            try:
                calendar = exchange_calendars.get_calendar(self.exchange, start=first.isoformat(), end=last.isoformat())
            except Exception as exc:  # its errors are many types; each means this span cannot be read
                raise ValueError(f"the {self.exchange} calendar cannot cover {first} to {last}: {exc}") from exc
            early = {label.date() for label in calendar.early_closes}
            schedule = calendar.schedule
        sessions = [
            Session(label.date(), opened.to_pydatetime().astimezone(timezone.utc),
                    closed.to_pydatetime().astimezone(timezone.utc), label.date() in early)
            for label, opened, closed in zip(schedule.index, schedule["open"], schedule["close"], strict=True)
        ]
        return _span_of(first, last, sessions)

    def _cover(self, first: date, last: date) -> _Span:
        """The span, widened (by the margin, so this is rare) until it includes the days [first, last]."""
        with self._lock:
            span = self._span
            if span is not None and span.first < first and last < span.last:
                return span
            lo, hi = _shift(first, -self._margin), _shift(last, self._margin)
            if span is not None:
                lo, hi = min(lo, span.first), max(hi, span.last)
            self._span = span = self._read(lo, hi)
            return span

    def _at(self, t: float) -> _Span:
        span = self._span
        if span is not None and span.lo <= t < span.hi:
            return span
        day = datetime.fromtimestamp(t, timezone.utc).date()
        return self._cover(_shift(day, timedelta(days=-2)), _shift(day, timedelta(days=2)))

    def _days(self, first: date, last: date) -> _Span:
        span = self._span
        if span is not None and span.first < first and last < span.last:
            return span
        return self._cover(first, last)

    # --- instants -------------------------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """Is the market open at `at`: inside a session, holidays, weekends and early closes counted."""
        t = _seconds(at)
        span = self._span
        if span is None or not span.lo <= t < span.hi:
            span = self._at(t)
        index = bisect_right(span.opens, t) - 1
        return index >= 0 and t < span.closes[index]

    def session_at(self, at: datetime) -> Session | None:
        """The session open at `at`, or None when the market is closed then."""
        t = _seconds(at)
        span = self._at(t)
        index = bisect_right(span.opens, t) - 1
        return span.sessions[index] if index >= 0 and t < span.closes[index] else None

    def next_open(self, at: datetime) -> datetime:
        """The first open after `at` (while the market is open, the next session's), as Alpaca's clock says it."""
        t = _seconds(at)
        span = self._at(t)
        index = bisect_right(span.opens, t)
        while index >= len(span.opens):  # past the span's last session: widen it forward
            span = self._cover(span.last, _shift(span.last, timedelta(days=14)))
            index = bisect_right(span.opens, t)
        return span.sessions[index].open

    def next_close(self, at: datetime) -> datetime:
        """The first close after `at`: today's close while the market is open, else the next session's."""
        t = _seconds(at)
        span = self._at(t)
        index = bisect_right(span.closes, t)
        while index >= len(span.closes):
            span = self._cover(span.last, _shift(span.last, timedelta(days=14)))
            index = bisect_right(span.closes, t)
        return span.sessions[index].close

    def previous_close(self, at: datetime) -> datetime:
        """The last close at or before `at`."""
        t = _seconds(at)
        span = self._at(t)
        index = bisect_right(span.closes, t) - 1
        while index < 0:
            span = self._cover(_shift(span.first, timedelta(days=-14)), span.first)
            index = bisect_right(span.closes, t) - 1
        return span.sessions[index].close

    # --- days -----------------------------------------------------------------------------------------------

    def session(self, day: date) -> Session | None:
        """The session of `day` (a date in New York), or None on a weekend or holiday."""
        span = self._days(day, day)
        index = bisect_left(span.days, day)
        return span.sessions[index] if index < len(span.days) and span.days[index] == day else None

    def is_trading_day(self, day: date) -> bool:
        return self.session(day) is not None

    def sessions(self, start: date, end: date) -> list[Session]:
        """Every session from `start` to `end`, both included."""
        span = self._days(start, end)
        return list(span.sessions[bisect_left(span.days, start) : bisect_right(span.days, end)])

    def trading_days(self, start: date, end: date) -> list[date]:
        """Every trading day from `start` to `end`, both included."""
        span = self._days(start, end)
        return list(span.days[bisect_left(span.days, start) : bisect_right(span.days, end)])

    def holidays(self, start: date, end: date) -> list[date]:
        """Every weekday from `start` to `end` (both included) on which the market does not open."""
        open_days = set(self.trading_days(start, end))
        days = (start + timedelta(days=n) for n in range((end - start).days + 1))
        return [day for day in days if day.weekday() < 5 and day not in open_days]


def _span_of(first: date, last: date, sessions: Sequence[Session]) -> _Span:
    # A day's session lies within a day of its UTC midnight, so one day inside each edge is fully known.
    return _Span(
        first,
        last,
        _midnight_utc(first) + _DAY,
        _midnight_utc(last),
        tuple(s.open.timestamp() for s in sessions),
        tuple(s.close.timestamp() for s in sessions),
        tuple(sessions),
        tuple(s.day for s in sessions),
    )


def _table_sessions(first: date, last: date) -> list[Session]:
    """The sessions of the days [first, last] from the shipped XNYS table (engine/core/xnys_sessions.py)."""
    from engine.core import xnys_sessions as table

    closed = frozenset(date.fromisoformat(d) for d in table.CLOSED)
    special = {date.fromisoformat(d): hours for d, hours in table.SPECIAL.items()}
    regular = (*table.REGULAR, False)
    sessions = []
    day = first
    while day <= last:
        if day.weekday() < 5 and day not in closed:
            opens, closes, early = special.get(day, regular)
            sessions.append(Session(day, _at_new_york(day, opens), _at_new_york(day, closes), early))
        day += timedelta(days=1)
    return sessions


def _at_new_york(day: date, hhmm: str) -> datetime:
    hour, minute = hhmm.split(":")
    return datetime(day.year, day.month, day.day, int(hour), int(minute), tzinfo=NEW_YORK).astimezone(timezone.utc)


_SHARED: dict[str, MarketCalendar] = {}
_SHARED_LOCK = threading.Lock()


def market_calendar(exchange: str = "XNYS") -> MarketCalendar:
    """One calendar per exchange for the whole process: the engine, the simulator and the replay share its span."""
    with _SHARED_LOCK:
        if exchange not in _SHARED:
            _SHARED[exchange] = MarketCalendar(exchange)
        return _SHARED[exchange]
