"""Downloading history (issue 9, item 2): bars from Alpaca's historical data API into a data folder (docs/data.md).

Through alpaca-py's own historical clients, so what works here works against Alpaca, and the emulator's history
endpoints test it through the same SDK on loopback. Each symbol is asked for a window of time at a time (a week
of minute bars, a year of hour bars); alpaca-py follows `next_page_token` inside a window by itself, and the
window is written (atomically, `files.write_bars`) before the next is asked for. So a fetch that stops (Ctrl-C,
a network error, a 403, a kill) keeps every window it finished, and the next call starts at the last stored bar
(`_stored`): it asks only for what is missing, and for that one bar again, which must come back as it
was stored. A file is only ever appended to, so bars of another history (corrected since, another feed, another
adjustment) or of another timeframe would otherwise be joined to it without a word.

One fetch at a time writes into a folder: two at once would each read a file, append their window and rename
it over the other's, and a window one of them wrote could be lost under the other's, leaving a hole in the bars
that no reader sees. The folder is locked (`.fetch.lock`, the kernel's lock, which a kill releases) while a fetch
runs, and a second fetch into it is refused at once.

Every HTTP request, a page included, first takes a token from the same client-side `TokenBucket` the adapter
uses (190 a minute by default; Alpaca's free data plan allows 200). The bucket never sleeps; here, unlike in a
tick, waiting is the right answer, so the fetch waits for the next token (through `sleep`, which tests replace).
alpaca-py's silent retries are switched off; a 429 is waited out here, a few times, before it is an error.

Dates are New York days: `--from 2026-10-01 --to 2026-10-31` is from 00:00 on 1 October to the end of
31 October in New York, whatever the asset. Datetimes are taken as given, the end excluded.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

from engine.brokers.alpaca import MAX_BODY_BYTES, read_body
from engine.brokers.base import BrokerError
from engine.brokers.deadline import answer_by, bound_answers
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.symbols import asset_class_of, parse_occ
from engine.config.errors import Problem
from engine.core import jsontext
from engine.core.calendar import NEW_YORK
from engine.core.clock import Clock, SystemClock
from engine.core.journal import Secrets, quoted
from engine.core.lock import LockFileError, LockHeld, RunLock
from engine.data.errors import DataError
from engine.data.files import iso, iter_bars, locate, read_source, shown_path, write_bars
from engine.data.records import SUFFIXES, Bar, Format, file_stem
from engine.paths import PathKind, folders_to_make, path_kind, remove_unused

_TIMEFRAME = re.compile(r"^([1-9]\d*)(Min|Hour|Day)$")
_UNIT_SECONDS = {"Min": 60, "Hour": 3600, "Day": 86400}
_UNIT_MAX = {"Min": 59, "Hour": 23, "Day": 1}  # Alpaca's bars: [1-59]Min, [1-23]Hour, 1Day
# Days of data asked for in one window: about a page (10,000 bars) of a symbol trading around the clock.
_WINDOW_DAYS = {"Min": 7, "Hour": 365, "Day": 3650}
RATE_LIMIT_RETRIES = 3
SETTLE = timedelta(minutes=15)  # a bar is stored only this long after it ended (late trades revise it until then)
LOCK_FILE = ".fetch.lock"  # hidden: readers ignore names that start with "."


class FetchError(Exception):
    """The fetch stopped: what was written before stays, and the next call resumes after it (`kept` False: what
    was written is gone, the message says so, and the next call fetches it again)."""

    def __init__(self, symbol: str, message: str, *, kept: bool = True):
        self.symbol = symbol
        self.message = message
        self.kept = kept
        self.nothing_stored = False  # set by `fetch`: no bar was stored, and the folder was left as it was found
        super().__init__(f"{symbol}: {message}" if symbol else message)


@dataclass(frozen=True)
class Timeframe:
    """A bar length as Alpaca names it (`1Min`, `15Min`, `1Hour`, `1Day`)."""

    amount: int
    unit: str  # Min, Hour or Day

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _TIMEFRAME.fullmatch(text.strip())
        if not match or int(match.group(1)) > _UNIT_MAX[match.group(2)]:
            raise ValueError(f"timeframe {text!r} is not one of [1-59]Min, [1-23]Hour, 1Day (e.g. 1Min, 15Min, 1Hour)")
        return cls(int(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def seconds(self) -> int:
        return self.amount * _UNIT_SECONDS[self.unit]

    @property
    def after_last(self) -> timedelta:
        """How far after the last stored bar the next one may start. A day bar is stamped at midnight in New
        York, which is 23 or 25 hours after the last one when the clocks change: an hour later is safe."""
        return timedelta(hours=1) if self.unit == "Day" else timedelta(seconds=self.seconds)

    def alpaca(self) -> Any:
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        unit = {"Min": TimeFrameUnit.Minute, "Hour": TimeFrameUnit.Hour, "Day": TimeFrameUnit.Day}[self.unit]
        return TimeFrame(self.amount, unit)


@dataclass
class HistoryClients:
    """alpaca-py's historical clients (any may be None when that asset class is not fetched), and the keys they
    send, masked in every FetchError: the data API's refusal is quoted, and a body (a proxy's, a gateway's) that
    echoes the request's key headers would print the keys on the terminal and in a service's journal."""

    stocks: Any = None  # StockHistoricalDataClient
    crypto: Any = None  # CryptoHistoricalDataClient
    options: Any = None  # OptionHistoricalDataClient
    secrets: Secrets = field(default_factory=lambda: Secrets(()))

    @classmethod
    def from_api(cls, api: Any) -> HistoryClients:
        """The clients of an `AlpacaAPI` (engine/brokers/alpaca.py), already given their timeouts, and its keys."""
        secrets = getattr(api, "_secrets", None)
        return cls(
            getattr(api, "stocks", None),
            getattr(api, "crypto", None),
            getattr(api, "options", None),
            secrets if isinstance(secrets, Secrets) else Secrets(()),
        )


def history_clients(key: str | None, secret: str | None, *, data_base_url: str | None = None) -> HistoryClients:
    """New historical clients. Keys are needed for stocks and options; crypto bars need none (then only crypto
    can be fetched). `data_base_url` points them elsewhere (the emulator)."""
    from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient

    crypto = (
        CryptoHistoricalDataClient(key, secret, url_override=data_base_url)
        if key and secret
        else (CryptoHistoricalDataClient(url_override=data_base_url))
    )
    if not (key and secret):
        return HistoryClients(crypto=crypto)
    return HistoryClients(
        stocks=StockHistoricalDataClient(key, secret, url_override=data_base_url),
        crypto=crypto,
        options=OptionHistoricalDataClient(key, secret, url_override=data_base_url),
        secrets=Secrets((key, secret)),
    )


@dataclass(frozen=True)
class FetchProgress:
    """Told after each window written: `symbol`'s bars are stored up to `through` (of `start`..`end`)."""

    symbol: str
    index: int  # the symbol's place in the fetch, from 0
    symbols: int
    start: datetime
    end: datetime
    through: datetime
    rows: int  # rows written for this symbol by this call so far
    requests: int  # HTTP requests of the whole fetch so far

    @property
    def fraction(self) -> float:
        """Of the whole fetch, assuming symbols take alike."""
        span = (self.end - self.start).total_seconds()
        done = min(max((self.through - self.start).total_seconds() / span, 0.0), 1.0) if span > 0 else 1.0
        return (self.index + done) / self.symbols


@dataclass(frozen=True)
class SymbolFetch:
    symbol: str
    rows: int  # written by this call
    requests: int  # HTTP requests for it (pages included)
    asked_from: datetime | None  # where this call started asking; None when nothing was missing
    last: datetime | None  # the last stored bar after this call
    file: Path | None
    note: str = ""


@dataclass(frozen=True)
class FetchResult:
    symbols: tuple[SymbolFetch, ...]
    requests: int
    waited_seconds: float  # spent waiting for the rate limiter's tokens
    timeframe: str
    out: Path

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.symbols)


# A window's bars fit in a few pages (a week of minute bars is about 10,000, one page's limit); past this many
# distinct next_page_tokens the answer is not one we understand, and alpaca-py would follow it for ever.
PAGES_PER_WINDOW = 50
# How long one read of the socket may wait; a whole page may take twice this (`read_body`).
READ_TIMEOUT = 30.0


class _BadPage(Exception):
    """A page of bars that alpaca-py must not be given: it would loop forever on it, or fail with a traceback."""


_BAR_NUMBERS = ("o", "h", "l", "c", "v", "n", "vw")  # a bar's numbers in the data API's JSON
_BAR_STORED = frozenset(("o", "h", "l", "c", "v"))  # ... those stored: the others may be null (alpaca-py's Optional)
_JSON_KINDS = {bool: "a JSON boolean", str: "a text", list: "a JSON array", dict: "a JSON object", type(None): "null"}
_EXACT = 2**53  # past it, a JSON integer read as a float is another number


def _row_problem(row: dict[str, Any]) -> str | None:
    """What makes one bar of a page unreadable as the data API meant it, worded to follow "a bar of X at T", or
    None. alpaca-py's pydantic model reads a JSON true as the price 1.0, the text "101.5" as a price, an integer
    `t` as seconds or milliseconds since 1970 by its size, and a volume of 2**60 as the float next to it; a bar
    without a field was a ValidationError of several lines (a URL of pydantic's among them), naming no bar."""
    if "t" not in row:
        return "without its time ('t')"
    if not isinstance(row["t"], str):
        return f"whose time ('t') is {quoted(json.dumps(row['t']), 40)}, not a text (Alpaca's are RFC 3339, in UTC)"
    for key in _BAR_NUMBERS:
        if key not in row:
            return f"without {key!r}"
        value = row[key]
        if value is None and key not in _BAR_STORED:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = _JSON_KINDS.get(type(value), "not a number")
            return f"whose {key!r} is {quoted(json.dumps(value), 40)}, {kind}, not a number"
        if isinstance(value, int) and abs(value) > _EXACT:
            return f"whose {key!r} is {value}, a whole number beyond 2**53 that no float holds exactly"
    return None


@dataclass
class _Pages:
    """What each page of a window's bars is checked for before alpaca-py reads it (it follows `next_page_token`
    by itself, and trusts it): a token already given in this window would make it ask for the same pages forever
    (reference §2), and `"bars": null`, which Alpaca's own Go client reads as no bars, makes alpaca-py fail with
    an AttributeError; it is read as `{}`. Anything else that is not an object of lists is refused here."""

    tokens: set[str] = field(default_factory=set)

    def new_window(self) -> None:
        self.tokens.clear()

    def check(self, url: str, response: Any) -> None:
        if not url.endswith("/bars") or not 200 <= getattr(response, "status_code", 0) < 300:
            return
        try:
            # strictly: a key given twice (a bar's "c", a symbol's list) has two values, and alpaca-py keeps the
            # last without a word; a bar stored with one of them is a price the API may never have given. A NaN is
            # read, for `_bar_problem` to refuse naming the bar.
            body = jsontext.loads_strict(response.content, non_finite=True)
        except jsontext.Ambiguous as exc:
            said = f"the key {quoted(json.dumps(exc.key), 60)} twice in one object" if exc.key is not None else str(exc)
            raise _BadPage(f"the data API answered a page of bars that is not JSON to rely on: {said}") from None
        except jsontext.TooDeep:  # a traceback, not a failed fetch, before
            raise _BadPage("the data API answered a page of bars nested too deeply to read") from None
        except ValueError:
            if not response.content.strip():  # alpaca-py reads it as None: "'NoneType' object is not iterable"
                raise _BadPage(f"the data API answered {response.status_code} with an empty body, not a page of bars") from None
            return  # alpaca-py raises its own JSONDecodeError, a RequestException
        if not isinstance(body, dict):
            raise _BadPage(f"the data API answered a page of bars that is not a JSON object: {quoted(str(body), 100)}")
        error = body.get("message")  # Alpaca's error field: an error answered with a success's status (a proxy's)
        if "bars" not in body or error is not None:
            what = quoted(error if isinstance(error, str) else json.dumps(body), 100)
            raise _BadPage(f"the data API answered {response.status_code} with an error, not a page of bars: {what}")
        bars = body["bars"]
        if bars is None:
            bars = body["bars"] = {}
            response._content = json.dumps(body).encode()
        elif not isinstance(bars, dict) or not all(isinstance(v, list) and all(isinstance(b, dict) for b in v)
                                                   for v in bars.values()):
            raise _BadPage("the data API answered 'bars' that is not an object of lists of bars: "
                           f"{quoted(json.dumps(bars), 100)}")  # fmt: skip
        for symbol, rows in bars.items():
            for number, row in enumerate(rows, 1):
                problem = _row_problem(row)
                if problem is not None:
                    at = row.get("t")
                    where = f"at {quoted(at, 40)}" if isinstance(at, str) else f"(bar {number} of its page)"
                    raise _BadPage(f"the data API sent a bar of {symbol} {where} {problem}")
        token = body.get("next_page_token")
        if token is None:
            return
        if not isinstance(token, str) or not token:
            raise _BadPage(f"the data API answered a next_page_token that is not a text: {token!r}")
        if len(self.tokens) >= PAGES_PER_WINDOW:
            raise _BadPage(f"the data API answered more than {PAGES_PER_WINDOW} pages for one window, whose bars fit in a "
                           "few: its pages may never end")  # fmt: skip
        if token in self.tokens:
            raise _BadPage(f"the data API answered the next_page_token {token!r} a second time in one window "
                           "(its pages would be asked for again and again)")  # fmt: skip
        self.tokens.add(token)


@dataclass
class _Throttle:
    """Every request waits for a token of the bucket; waiting is counted, never done by spinning."""

    bucket: TokenBucket
    per_minute: int
    sleep: Callable[[float], None]
    requests: int = 0
    waited: float = 0.0
    pages: _Pages = field(default_factory=lambda: _Pages())
    _restore: list[tuple[Any, Any]] = field(default_factory=list)

    def wait(self) -> None:
        while not self.bucket.try_acquire():
            pause = 60.0 / self.per_minute
            self.waited += pause
            self.sleep(pause)
        self.requests += 1

    def install(self, clients: Iterable[Any]) -> None:
        """On each client's requests session (each page is one request): the token first, no silent retries."""
        seen: set[int] = set()
        for client in clients:
            if client is None or id(client) in seen:
                continue
            seen.add(id(client))
            session = getattr(client, "_session", None)
            if session is None or not hasattr(client, "_retry"):
                raise FetchError("", f"alpaca-py changed: {type(client).__name__} has no _session or _retry")
            missing = bound_answers(session)  # headers and body within one deadline (`answer_by` below)
            if missing is not None:
                raise FetchError("", missing)
            send = session.request
            retry = (client._retry, getattr(client, "_retry_codes", None))
            self._restore.append((client, (send, retry)))
            client._retry = 0

            def request(method: str, url: str, _send: Any = send, **kwargs: Any) -> Any:
                self.wait()
                kwargs.setdefault("timeout", (5.0, READ_TIMEOUT))
                kwargs["stream"] = True  # the body is read here, within a size and a time limit
                started = time.monotonic()
                # headers as well as body: a header line every few seconds, each within the read timeout, held a
                # page for 100 of them before its body's deadline began
                with answer_by(started + 2 * READ_TIMEOUT):
                    response = _send(method, url, **kwargs)
                    if not response._content_consumed:  # an AlpacaAPI's client has read it already, as this does
                        # read whole by alpaca-py (requests' iter_content), a page trickled a few bytes at a time,
                        # each within the read timeout, held the fetch for as long as the server liked
                        read_body(response, deadline=started + 2 * READ_TIMEOUT, limit=MAX_BODY_BYTES)
                self.pages.check(url, response)
                return response

            session.request = request

    def remove(self) -> None:
        for client, (send, (retry, codes)) in self._restore:
            client._session.request = send
            client._retry = retry
            if codes is not None:
                client._retry_codes = codes
        self._restore.clear()


def _instant(value: date | datetime, *, end: bool) -> datetime:
    """A bound as an aware UTC instant: a date is its New York midnight (an end date: the next day's)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone: give an offset or a date")
        return value.astimezone(timezone.utc)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time_of_day(0), NEW_YORK).astimezone(timezone.utc)


def _request(
    symbol: str, asset_class: str, timeframe: Timeframe, start: datetime, end: datetime, feed: str, adjustment: str
) -> tuple[str, Any]:
    """(which client, the request) for one window; Alpaca's end is inclusive, so it stops a microsecond short."""
    from alpaca.data.requests import CryptoBarsRequest, OptionBarsRequest, StockBarsRequest

    last = end - timedelta(microseconds=1)
    if asset_class == "crypto":
        return "crypto", CryptoBarsRequest(symbol_or_symbols=symbol, timeframe=timeframe.alpaca(), start=start, end=last)
    if asset_class == "us_option":
        return "options", OptionBarsRequest(symbol_or_symbols=symbol, timeframe=timeframe.alpaca(), start=start, end=last)
    from alpaca.data.enums import Adjustment, DataFeed

    return "stocks", StockBarsRequest(
        symbol_or_symbols=symbol,
        timeframe=timeframe.alpaca(),
        start=start,
        end=last,
        feed=DataFeed(feed),
        adjustment=Adjustment(adjustment),
    )


def _rows(answer: Any, symbol: str) -> list[Bar]:
    """The bars of `symbol` in a BarSet (or in the raw dict alpaca-py gives with raw_data=True), times as given
    (a time without a zone stays naive, for `_checked` to refuse: astimezone would take it as local time).
    Bars under another key (BTCUSD, btc/usd, another symbol) are refused: read as none, they were a hole no word
    told of, and that the next call never fills (it resumes after the last stored bar)."""
    data = answer if isinstance(answer, dict) else getattr(answer, "data", {})
    other = next((key for key, rows in data.items() if key != symbol and rows), None)
    if other is not None:
        raise FetchError(symbol, f"the data API answered bars of {other!r}, not asked for, where {symbol}'s were asked: "
                                 "nothing of this window was written")  # fmt: skip
    if isinstance(answer, dict):
        raw = answer.get(symbol) or []
        return [Bar(_parse_time(b["t"]), float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]), float(b["v"])) for b in raw]
    return [
        Bar(b.timestamp, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume))
        for b in answer.data.get(symbol, [])
    ]


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))


def _bar_problem(bar: Bar, start: datetime, end: datetime, after: datetime | None, frame: Timeframe | None) -> str | None:
    """Why `bar` (of the window [start, end), following the bar or stored row at `after`, of `frame`) cannot be
    stored. Bars of a timeframe start on a whole minute and at least its length apart (a day bar: 23 hours, when
    the clocks change): closer ones are of another timeframe (a proxy that dropped it), stored as this one."""
    when = bar.timestamp
    if when.utcoffset() is None:
        return "has a time without a time zone (Alpaca's are UTC, with Z)"
    if not start <= when < end:
        return f"lies outside the window asked for ({iso(start)} to {iso(end)}, the end excluded)"
    if after is not None and when <= after:
        return f"is not after the bar before it ({iso(after)}): a duplicate, or out of order"
    if frame is not None:
        if when.second or when.microsecond:
            return "is not on a whole minute, as bars of any timeframe are"
        apart = timedelta(hours=23) if frame.unit == "Day" else timedelta(seconds=frame.seconds)
        if after is not None and when - after < apart:
            return f"is less than {frame} after the bar before it ({iso(after)}): a bar of another timeframe"
        off_grid = _off_grid(when, frame)
        if off_grid is not None:
            return off_grid
    for name in ("open", "high", "low", "close"):
        value = getattr(bar, name)
        if not (math.isfinite(value) and value > 0):
            return f"has {name} {value!r} (a price must be a number above 0)"
    if not (math.isfinite(bar.volume) and bar.volume >= 0):
        return f"has volume {bar.volume!r} (it must be a number, 0 or more)"
    if bar.high < bar.low:
        return f"has high {bar.high!r} below low {bar.low!r}"
    for name in ("open", "close"):
        if not bar.low <= getattr(bar, name) <= bar.high:
            return f"has {name} {getattr(bar, name)!r} outside low..high ({bar.low!r}..{bar.high!r})"
    return None


def _off_grid(when: datetime, frame: Timeframe) -> str | None:
    """Why a bar at `when` (on a whole minute) cannot be one of `frame`'s, or None. N-minute bars (N dividing an
    hour) start on the hour's multiples of N, hour bars on a whole hour, day bars at a midnight (a whole hour in
    UTC): one at 14:31 is a 15Min bar of another grid (a proxy's own aggregation), and a backtest would read it as
    ending at 14:46. Only what every reading of Alpaca's grid agrees on is asked (7Min bars: a whole minute)."""
    when = when.astimezone(timezone.utc)  # an offset of +05:30 moves the minute
    if frame.unit == "Min":
        if 60 % frame.amount or not when.minute % frame.amount:
            return None
        return f"is not on the {frame} grid (its bars start every {frame.amount} minutes from the hour)"
    if when.minute:
        return f"is not on a whole hour, as {frame} bars are"
    return None


def _checked(
    symbol: str, bars: list[Bar], start: datetime, end: datetime, last: datetime | None, frame: Timeframe | None = None
) -> list[Bar]:
    """`bars` if every one can be stored; otherwise FetchError naming the first bad one (nothing is dropped
    or repaired: a window with one bad bar is not written at all). A bar at or after the window's end is left to
    the next window, which asks for it and checks it: the API may read the end asked for loosely. Only at the end:
    one followed by a bar inside the window is out of order, and refused like any bar outside the window."""
    after = last
    kept = len(bars)
    while kept and bars[kept - 1].timestamp.utcoffset() is not None and bars[kept - 1].timestamp >= end:
        kept -= 1
    bars = bars[:kept]
    for bar in bars:
        problem = _bar_problem(bar, start, end, after, frame)
        if problem is not None:
            when = bar.timestamp.isoformat() if bar.timestamp.utcoffset() is None else iso(bar.timestamp)
            raise FetchError(symbol, f"the data API sent a bar at {when} that {problem}; "
                                     f"nothing from {iso(start)} on was written")  # fmt: skip
        after = bar.timestamp
    return [b if b.timestamp.tzinfo is timezone.utc else b._replace(timestamp=b.timestamp.astimezone(timezone.utc))
            for b in bars]  # fmt: skip


def _explain(exc: BaseException, secrets: Secrets) -> str:
    """What went wrong, in Alpaca's words when it answered: the keys masked before the words are cut to 300
    characters (cut first, a key that straddled the cut kept its first characters, which no mask then found)."""
    status = getattr(exc, "status_code", None)
    text = secrets.scrubbed(str(exc), 300)
    if status is not None:
        hint = " (are ALPACA_KEY and ALPACA_SECRET right, and does the plan include this feed?)" if status in (401, 403) else ""
        return f"the data API answered {status}: {text}{hint}"
    return f"{type(exc).__name__}: {text}"


def unstorable(symbols: Iterable[str]) -> str | None:
    """What is wrong with the symbols no file can be named for (`file_stem` refuses them: a space, `..`, a letter
    outside A-Z), or None. Checked before the first request: a list with one bad symbol was fetched up to it, and
    a symbol with a space was taken for a stock that needed keys. An option contract whose expiry is no date
    (`AAPL261131C00190000`) is named too: it ended in a traceback that named no symbol."""
    bad, undated = [], []
    for symbol in symbols:
        try:
            file_stem(symbol)
        except ValueError:
            bad.append(repr(symbol))
            continue
        try:  # an option contract whose expiry is no date: "day is out of range for month", and a traceback
            parse_occ(symbol)
        except ValueError as exc:
            undated.append(str(exc))
    if not bad:
        return "; ".join(undated) or None
    what = "not a symbol" if len(bad) == 1 else "not symbols"
    return "; ".join([f"{', '.join(bad)}: {what} the data format can store (upper case letters and digits, e.g. AAPL, "
                      "BRK.B, BTC/USD)", *undated])  # fmt: skip


def fetch(
    api_or_clients: Any,
    symbols: Sequence[str],
    start: date | datetime,
    end: date | datetime,
    timeframe: str | Timeframe,
    out: Path | str,
    *,
    progress: Callable[[FetchProgress], None] | None = None,
    feed: str = "iex",
    adjustment: str = "raw",
    fmt: Format | None = None,
    per_minute: int = 190,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
) -> FetchResult:
    """Download `symbols`' bars from `start` to `end` into `out/bars/`, resuming after whatever is stored.

    `api_or_clients` is an `AlpacaAPI` or a `HistoryClients`. `feed` (stocks: iex on the free plan, or sip) and
    `adjustment` (raw, as the engine sees prices live; or split, dividend, all) are Alpaca's. `fmt` is the format
    of a new file (Parquet unless csv); an existing file keeps its own. Raises FetchError (keeping what was
    written; also when another fetch is writing into `out`), ValueError for bad arguments (`out` a file, or under
    one), DataError when a stored file is unreadable, or its last bar is not what the data API serves now at its
    time (another history or timeframe: nothing is appended to it).
    """
    frame = timeframe if isinstance(timeframe, Timeframe) else Timeframe.parse(timeframe)
    begin, finish = _instant(start, end=False), _instant(end, end=True)
    if finish <= begin:
        raise ValueError(f"the end ({finish.isoformat()}) is not after the start ({begin.isoformat()})")
    if per_minute < 1:
        raise ValueError("per_minute must be at least 1")
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    if not wanted:
        raise ValueError("no symbols to fetch")
    refused = unstorable(wanted)
    if refused is not None:
        raise ValueError(refused)
    clients = api_or_clients if isinstance(api_or_clients, HistoryClients) else HistoryClients.from_api(api_or_clients)
    folder = Path(out)
    clock = clock or SystemClock()
    if begin > clock.now():
        # A window wholly in the future (2030 typed for 2026) has no bar yet: it was "nothing missing, no bars
        # stored", exit 0, and a new folder made for nothing, as if the history were there and complete.
        raise ValueError(f"the start ({begin.isoformat()}) is in the future: no bar of it has been made yet")
    _check_folder(folder)
    # Only bars that have ended, and settled: one still forming (today's day bar, this minute's) would be stored for
    # good, since a file is only ever appended to, and Alpaca revises a bar that just ended with trades reported late
    # (its stream sends them as "updated bars"): the next fetch, asking for the last stored bar again, would find
    # it changed and refuse to go on (`_check_seam`). A bar stamped t ends at t + its length.
    length = timedelta(days=1) if frame.unit == "Day" else timedelta(seconds=frame.seconds)
    settled = clock.now().astimezone(timezone.utc) - length - SETTLE
    finish = min(finish, settled + timedelta(microseconds=1))
    throttle = _Throttle(TokenBucket(per_minute, clock), per_minute, sleep or time.sleep)
    results: list[SymbolFetch] = []
    unmade: list[bool] = []  # `_folder_lock` appends True when it left the folder as it found it
    try:
        with _folder_lock(folder, unmade) as keep_lock:
            throttle.install([clients.stocks, clients.crypto, clients.options])
            try:
                for index, symbol in enumerate(wanted):
                    results.append(
                        _fetch_symbol(
                            clients, throttle, symbol, index, len(wanted), frame, begin, finish, folder, feed, adjustment, fmt,
                            progress, keep_lock,
                        )
                    )
            except FetchError as exc:  # what the data API said is quoted: never with the keys the request carried
                if not clients.secrets.found_in(str(exc)):
                    raise
                raise FetchError(exc.symbol, clients.secrets.masked(exc.message), kept=exc.kept) from None
            finally:
                throttle.remove()
    except FetchError as exc:  # one that stored no bar says so: the folder is as it was found, or not made
        exc.nothing_stored = bool(unmade)
        raise
    return FetchResult(tuple(results), throttle.requests, throttle.waited, str(frame), folder)


def _check_folder(folder: Path) -> None:
    """`folder` can be a data folder: ValueError when it, or a folder above it, is a file (or no folder at all).
    Found later, it was `folder/bars/AAPL: cannot be read: Not a directory`, a path that names nothing there."""
    for path in (folder, *folder.parents):
        try:
            found = path_kind(path)
        except NotADirectoryError:  # a file above it: found on the way up
            continue
        except OSError:  # a folder that may not be searched, a symlink loop: the write says it, with its path
            return
        if found is PathKind.FOLDER:
            return
        if not found.absent:
            kind = "a file" if found is PathKind.FILE else f"not a folder ({found.value})"
            if path == folder:
                raise ValueError(f"{shown_path(folder)} is {kind}: the data folder (--out) is a folder, which holds bars/")
            raise ValueError(f"{shown_path(folder)} cannot be a data folder (--out): {shown_path(path)} is {kind}")


@contextlib.contextmanager
def _folder_lock(folder: Path, unmade: list[bool] | None = None) -> Iterator[Callable[[], None]]:
    """Hold `folder`'s fetch lock (`.fetch.lock`) while the fetch runs; yields what takes it again before each
    window is written. The engine's own run lock (engine/core/lock.py `RunLock`): the kernel's flock, which a fetch
    killed outright releases, the holder's pid in the file, and the file locked again when a cleanup deleted or
    replaced it under the fetch (a second fetch would lock the new file and write beside this one). FetchError when
    another fetch holds it, or took it meanwhile, or when it cannot be made.

    A fetch that stored no bar leaves the folder as it found it (`_unmade`): the lock file it made is removed, and
    so are the folders it made for it, `--out` included (`unmade` then gets True). A first fetch refused at its
    first page (keys refused, the data API down) left a folder holding only `.fetch.lock`, as if a fetch had made
    it and found no bars."""
    lock = RunLock(folder / LOCK_FILE.removesuffix(".lock"))  # RunLock's lock file is its path + ".lock"
    made = folders_to_make(folder)  # what the lock's mkdir will make, deepest first
    bars = folder / "bars"
    new_lock, new_bars = not os.path.lexists(lock.path), not os.path.lexists(bars)
    try:
        lock.acquire()
    except LockHeld:
        raise FetchError("", f"another fetch is writing to {shown_path(folder)} now (it holds {shown_path(lock.path)}); "
                             "two at once could lose each other's bars. Let it finish, then run this one: it fetches "
                             "only what is still missing") from None  # fmt: skip
    except LockFileError as exc:  # a read-only place, a full disk, a folder where the file goes: nothing was written
        if new_lock and new_bars:  # a full disk after the mkdir: the folder made for the lock is not left behind
            _unmade(lock.path, bars, made)
        why = os.strerror(exc.errno) if exc.errno else "not a regular file"
        if not exc.runtime:  # a folder or a FIFO where the lock goes: the user's to fix (exit 2), not a failure of now
            raise ValueError(f"{shown_path(lock.path)} cannot be the fetch's lock: {why} (remove it); "
                             "nothing was fetched") from None
        raise FetchError("", f"cannot write {shown_path(lock.path)}: {why}; nothing was fetched") from None

    def keep() -> None:
        try:
            lock.keep()
        except LockFileError:  # deleted or replaced under this fetch, and another fetch holds the new one
            raise FetchError("", f"{shown_path(lock.path)} was deleted or replaced while this fetch ran, and another "
                                 "fetch now holds it: stopped before writing beside it; the bars written so far stay, "
                                 "the same command resumes") from None  # fmt: skip

    try:
        yield keep
    finally:
        try:
            if new_lock and new_bars and _unmade(lock.path, bars, made) and unmade is not None:
                unmade.append(True)
        finally:
            lock.release()


def _unmade(lock_file: Path, bars: Path, made: list[Path]) -> bool:
    """Undo what a fetch made before it stored any bar (`_folder_lock`), while its lock is still held: `bars/` if it
    is empty (a window's write that failed, a full disk), then, when `bars/` is not there, the lock file and the
    folders made for it, each only while empty. What cannot be removed stays (a file another process put there).
    True when no bar was stored (whatever could not be removed)."""
    with contextlib.suppress(OSError):
        bars.rmdir()  # only an empty folder: the bars of a window this fetch wrote stay
    if os.path.lexists(bars):
        return False
    remove_unused(lock_file, made)  # a folder another fetch began in meanwhile is not empty: it stays
    return True


def _kept_format(folder: Path, symbol: str, fmt: Format) -> str:
    """The note for a --format other than the stored file's own: its rows are appended in the file's format (the
    help's "a file keeps its own"), where the fetch used to stop on it, exit 2, after asking for its first window."""
    source = locate(folder, "bars", symbol)
    if source is None or source.is_folder:
        return ""
    own = SUFFIXES.get(source.path.suffix)
    return f"{shown_path(source.path)} keeps its own format, {own} (--format {fmt} is for a new file)" if own != fmt else ""


def _stored(folder: Path, symbol: str) -> Any:
    """`symbol`'s stored bars as a typed table, None when there are none; a DataError says what to do about a file
    that cannot be read (a fetch appends to it, so it cannot go on while it is broken)."""
    table: Any = None
    try:
        source = locate(folder, "bars", symbol)
        if source is None:
            return None
        table, problems = read_source(source)
    except DataError as exc:
        problems, source = exc.problems, None
    if not problems:
        return table
    where = shown_path(source.path) if source is not None else "it"
    hint = (f"    a fetch appends to {symbol}'s stored bars, so it cannot go on while they cannot be read: move {where} "
            f"away (or delete it), and the same command fetches {symbol} afresh")  # fmt: skip
    raise DataError([*problems[:-1], replace(problems[-1], excerpt=hint)])


def _same_bar(stored: Bar, served: Bar) -> bool:
    return stored.timestamp == served.timestamp and all(
        getattr(stored, name) == getattr(served, name) for name in ("open", "high", "low", "close", "volume")
    )


def _check_seam(symbol: str, stored: Bar, bars: list[Bar], file: str) -> list[Bar]:
    """`bars` (asked from the last stored bar's time on) without their first, which must be the stored bar as it
    was stored; DataError otherwise, since the bars after it would be another history's, or another timeframe's."""
    first = bars[0] if bars else None
    if first is not None and first.timestamp.utcoffset() is None:
        return bars  # `_checked` refuses it, saying why
    if first is not None and _same_bar(stored, first):
        return bars[1:]

    def text(bar: Bar) -> str:
        return f"open {bar.open!r}, high {bar.high!r}, low {bar.low!r}, close {bar.close!r}, volume {bar.volume!r}"

    when = iso(stored.timestamp)
    if first is not None and first.timestamp == stored.timestamp:
        what = f"the data API's bar at {when} is not the one stored: stored {text(stored)}; now {text(first)}"
    else:
        what = f"the data API has no bar at {when}, where the stored bars end"
    raise DataError([Problem(file, 0, 0, "", (
        f"{symbol}: {what}. The bars stored here are of another history than the one served now (corrected since, "
        "another feed or adjustment), or of another timeframe, and the bars fetched now would be joined to them. "
        f"Nothing was written: fetch into a new --out, or move {file} away and run the same command again"))])


def _seam_file(folder: Path, symbol: str) -> str:
    source = locate(folder, "bars", symbol)
    return shown_path(source.path) if source is not None else str(folder)


def _fetch_symbol(
    clients: HistoryClients,
    throttle: _Throttle,
    symbol: str,
    index: int,
    count: int,
    frame: Timeframe,
    begin: datetime,
    finish: datetime,
    folder: Path,
    feed: str,
    adjustment: str,
    fmt: Format | None,
    progress: Callable[[FetchProgress], None] | None,
    keep_lock: Callable[[], None] = lambda: None,
) -> SymbolFetch:
    asset_class = asset_class_of(symbol)
    table = _stored(folder, symbol)
    last: datetime | None = None
    seam: Bar | None = None  # the last stored bar, asked for again with the first window (`_check_seam`)
    note = ""
    asked = begin
    if table is not None and len(table):
        seam = next(iter_bars(table.slice(len(table) - 1)))
        last = seam.timestamp
        asked = max(begin, last + frame.after_last)
        first_stored = next(iter_bars(table.slice(0, 1))).timestamp
        if begin.astimezone(NEW_YORK).date() < first_stored.astimezone(NEW_YORK).date():
            note = f"bars before {first_stored.isoformat()} are not fetched: a stored file is only ever appended to"
        if asked > last + frame.after_last:  # a later start: the seam is asked for on its own (below)
            note = (f"bars from {iso(last)} (the last stored) to {iso(asked)} are not fetched: --from is later, "
                    "and the file has a gap there")  # fmt: skip
    kept = ""
    if table is not None and fmt is not None:  # a stored file keeps its own format: --format is a new file's
        kept = _kept_format(folder, symbol, fmt)
        fmt = None
    del table
    if asked >= finish:
        said = "; ".join(filter(None, (note or "complete: nothing is missing", kept)))
        return SymbolFetch(symbol, 0, 0, None, last, None, said)
    note = "; ".join(filter(None, (note, kept)))
    which = {"us_equity": "stocks", "crypto": "crypto", "us_option": "options"}[asset_class]
    if getattr(clients, which) is None:
        raise FetchError(symbol, f"no {which} client: fetching {asset_class} bars needs ALPACA_KEY and ALPACA_SECRET")
    requests_before = throttle.requests
    written = 0
    path: Path | None = None
    left: tuple[int, int] | None = None  # (device, inode) of the file this fetch last wrote, as it left it
    window = timedelta(days=_WINDOW_DAYS[frame.unit] * (frame.amount if frame.unit == "Min" else 1))
    cursor = asked
    if seam is not None and asked > seam.timestamp + frame.after_last:
        # the last stored bar alone: skipped, bars of another timeframe (day bars after minute bars) or history
        # were appended after a gap without a word
        client_name, request = _request(symbol, asset_class, frame, seam.timestamp, seam.timestamp + frame.after_last,
                                        feed, adjustment)  # fmt: skip
        answer = _ask(getattr(clients, client_name), client_name, request, symbol, throttle, seam.timestamp, clients.secrets)
        rest = _check_seam(symbol, seam, _rows(answer, symbol), _seam_file(folder, symbol))
        _checked(symbol, rest, seam.timestamp, seam.timestamp + frame.after_last, seam.timestamp)  # a time without a zone
        seam = None
    while cursor < finish:
        upto = min(cursor + window, finish)
        ask_from = seam.timestamp if seam is not None else cursor
        client_name, request = _request(symbol, asset_class, frame, ask_from, upto, feed, adjustment)
        answer = _ask(getattr(clients, client_name), client_name, request, symbol, throttle, ask_from, clients.secrets)
        bars = _rows(answer, symbol)
        if seam is not None:
            bars = _check_seam(symbol, seam, bars, _seam_file(folder, symbol))
            seam = None
        rows = _checked(symbol, bars, cursor, upto, last, frame)
        if rows:
            keep_lock()  # the folder's lock still ours: no other fetch writes beside this one
            if path is not None and _identity(path) != left:
                raise _written_gone(symbol, path, cursor)
            try:
                path = write_bars(folder, symbol, rows, fmt)
                left = _identity(path)
            except OSError as exc:  # a full disk, a read-only folder: nothing of this window was written
                where = exc.filename or folder
                raise FetchError(symbol, f"cannot write {where}: {exc.strerror or exc}; nothing from {iso(cursor)} "
                                         "on was written") from None  # fmt: skip
            if left is None:  # gone as soon as it was put in place
                raise _written_gone(symbol, path, upto)
            written += len(rows)
            last = rows[-1].timestamp
        cursor = upto
        if progress is not None:
            progress(FetchProgress(symbol, index, count, asked, finish, cursor, written, throttle.requests))
    return SymbolFetch(symbol, written, throttle.requests - requests_before, asked, last, path, note)


def _written_gone(symbol: str, path: Path, until: datetime) -> FetchError:
    return FetchError(symbol, f"{shown_path(path)} was deleted or replaced while this fetch ran (its folder removed?): "
                              f"the bars it wrote before {iso(until)} are not in it, and the next window would have "
                              "started the file again there without a word. Nothing more was written; the same "
                              "command fetches what is missing", kept=False)  # fmt: skip


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none. A window's write replaces the file whole
    (a new inode), so the next write finds at the path the file the last one left, unless it was deleted or
    replaced meanwhile; each write reads what is there and appends to it, so a file deleted under the fetch
    was started again from that window on, its earlier bars gone, and the fetch said it had written them all."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _ask(client: Any, which: str, request: Any, symbol: str, throttle: _Throttle, start: datetime, secrets: Secrets) -> Any:
    """One window (alpaca-py follows its pages); a 429 is waited out a few times before it is an error. `secrets`:
    the keys, masked in what the data API said (`_explain`)."""
    import requests
    from alpaca.common.exceptions import APIError

    call = {"stocks": "get_stock_bars", "crypto": "get_crypto_bars", "options": "get_option_bars"}[which]
    window = f" (the window from {iso(start)})"
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        throttle.pages.new_window()
        try:
            return getattr(client, call)(request)
        except _BadPage as exc:
            raise FetchError(symbol, secrets.scrubbed(f"{exc}{window}")) from None  # quoted values cut, masked first
        except APIError as exc:
            if getattr(exc, "status_code", None) == 429 and attempt < RATE_LIMIT_RETRIES:
                pause = 60.0
                throttle.waited += pause
                throttle.sleep(pause)
                continue
            raise FetchError(symbol, _explain(exc, secrets)) from None
        # ValueError: pydantic's ValidationError (a bar without n or vw, a time that is no time); the others: a
        # shape alpaca-py does not expect ({"bars": [...]}), which it meets with a traceback
        except (requests.RequestException, BrokerError, ValueError, TypeError, AttributeError, KeyError) as exc:
            raise FetchError(symbol, _explain(exc, secrets)) from None
    raise FetchError(symbol, "rate limited")  # pragma: no cover - the loop returns or raises
