"""A local Alpaca emulator: the simulated exchange behind the subset of Alpaca's REST API the engine uses.

One `ThreadingHTTPServer` on 127.0.0.1 serves the trading API (/v2/account, /v2/orders, ...) and the data
APIs (/v2/stocks, /v1beta3/crypto, /v1beta1/options) on one origin, so the unmodified alpaca-py clients can
be pointed at it with `url_override` (reference/alpaca-api.md §5). It answers in Alpaca's shapes, not ours;
beside the code that writes each shape is the source it was read from. In short:

- money as strings on accounts, positions and orders; trading times RFC 3339 UTC with nanoseconds (order
  examples in trading-api.json), the clock in New York time (trading-api.json legacy_clock), data times with
  nanoseconds and Z (alpaca-py tests/data, alpaca-trade-api-go marketdata/options_test.go);
- crypto positions as BTCUSD, a short as `side: short` with `qty: "-5"` (Alpaca-API issue #86);
- an order answered `pending_new` (`accepted` while its market is closed) and filled at a later step; a cancel
  answered 204 and done at the next step (pending_cancel -> canceled, or filled meanwhile); 207 multi-status for
  cancel-all and close-all with each item's own status and body (alpaca-py test_position_routes.py);
- option chains paged by `next_page_token`, `limit` up to 1,000 (market-data-api.json), with contracts without
  greeks and contracts with only a quote (alpaca-trade-api-go options_test.go);
- the error bodies of Alpaca's refusals (engine/brokers/errors.py lists them), 401 for bad keys on the trading
  API and 403 "forbidden." on the data API, 429 past the per-minute budget;
- /v2/assets, /v2/account/activities, /v2/options/contracts; PATCH /v2/orders/{id} (an order edited beside the
  engine: replaced by a new one);
- historical bars: /v2/stocks/bars, /v1beta3/crypto/us/bars and /v1beta1/options/bars, multi-symbol, sorted by
  symbol then time, `limit` 1..10,000 (default 1,000) counted across symbols, and `next_page_token`
  (market-data-api.json), drawn from the simulator's price model (`History` below).

Fault injection: a queue of answers given before routing (or after processing, to reproduce a gateway timeout
after an order was accepted), hangs, and a log of every request; in process for tests, and over HTTP under
/__emulator/ for rehearsing failures against a running engine (faults, quote modes, cash movements).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import math
import random
import re
import socket
import sys
import threading
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from engine.brokers.base import Asset, NonTradeActivity, OptionContract, Order, OrderRequest, Position
from engine.brokers.sim import options
from engine.brokers.sim.exchange import SPREAD, QuoteMode, SimExchange, SimReject
from engine.brokers.sim.prices import PricePaths
from engine.brokers.symbols import asset_class_of, normalize, parse_occ, position_path_symbol
from engine.core.calendar import NEW_YORK

ADMIN_PREFIX = "/__emulator"
CHAIN_LIMIT_DEFAULT, CHAIN_LIMIT_MAX = 100, 1000  # market-data-api.json, /v1beta1/options/snapshots/{underlying}
ACTIVITIES_PAGE_MAX = 100  # trading-api.json, /v2/account/activities page_size
CONTRACTS_LIMIT_MAX = 10_000  # reference/alpaca-api.md §7, /v2/options/contracts
ORDERS_LIMIT_DEFAULT, ORDERS_LIMIT_MAX = 50, 500  # reference/alpaca-api.md §2, GET /v2/orders
INDICATIVE_TRADE_DELAY = timedelta(minutes=15)  # market-data-api.json: indicative trades are delayed
SIP_RECENT = timedelta(minutes=15)  # without a SIP subscription, SIP data of the last 15 minutes is refused
BARS_LIMIT_DEFAULT, BARS_LIMIT_MAX = 1000, 10_000  # market-data-api.json, /v2/stocks/bars and the crypto and option bars
_STOCK_FEEDS = frozenset({"iex", "sip", "delayed_sip", "boats", "overnight", "otc"})  # reference §2, alpaca-py DataFeed
_ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})  # market-data-api.json, comma-separated
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Fault:
    """One scripted answer. `after=True` processes the request first, then answers with the fault.

    A bad answer is rarely a whole body of junk: more often one field of a real answer is wrong. `patch` and
    `drop` edit the real answer instead of replacing it, so a test can say "the account, with cash NaN" without
    restating the account. Their keys are dotted paths into the JSON, where `*` stands for every item of a list
    or every value of an object: `{"cash": "NaN"}`, `{"*.qty": "-5"}`, `{"quotes.*.bp": -1}`. A patched answer
    keeps the route's own status (the fault's `status` is not used)."""

    status: int = 500
    body: str = '{"code":50010000,"message":"internal server error"}'
    content_type: str = "application/json"
    after: bool = False
    hang_seconds: float = 0.0
    path_prefix: str = ""  # only requests whose path starts with this take the fault
    method: str = ""  # ... and, when set, only requests with this method
    patch: dict[str, Any] = field(default_factory=dict)  # path -> the value put there (created when missing)
    drop: list[str] = field(default_factory=list)  # paths removed from the answer
    headers: dict[str, str] = field(default_factory=dict)  # added to the answer (Retry-After, X-RateLimit-*)
    times: int = 1  # how many requests take it; 0: every matching request until the faults are cleared
    disconnect: bool = False  # close the connection without an answer (a dropped connection)
    # The answer's body, shaped on the wire: only its first `cut_at` bytes sent under the whole body's
    # Content-Length, then the connection closed (a connection lost mid-body); or sent `trickle_bytes` at a time
    # with `trickle_seconds` between them (a body slower than the client's timeout, each piece within it).
    cut_at: int | None = None
    trickle_seconds: float = 0.0
    trickle_bytes: int = 16
    path_equals: str = ""  # when set, only requests with exactly this path (/v2/orders, not /v2/orders/{id})
    # In process only (a fuzzer's): the route's real status and JSON answer in, the status and the body text to send
    # instead out. Whatever a test cannot say as a patch: a type changed, a list doubled, a status swapped.
    rewrite: Callable[[int, Any], tuple[int, str]] | None = None
    # The answer's status line and headers sent one line at a time, `header_seconds` between them, `header_lines`
    # more headers after the answer's own (a server slow to answer, each line within the client's read timeout).
    header_seconds: float = 0.0
    header_lines: int = 20

    @property
    def edits(self) -> bool:
        return bool(self.patch or self.drop or self.rewrite)



# What each field of a Fault takes over HTTP (`fault_from_json`): a number where a float is meant, never a bool.
_FAULT_FIELDS: dict[str, tuple[type, ...]] = {
    "status": (int,), "body": (str,), "content_type": (str,), "after": (bool,), "hang_seconds": (int, float),
    "path_prefix": (str,), "method": (str,), "patch": (dict,), "drop": (list,), "headers": (dict,), "times": (int,),
    "disconnect": (bool,), "cut_at": (int, type(None)), "trickle_seconds": (int, float), "trickle_bytes": (int,),
    "path_equals": (str,), "header_seconds": (int, float), "header_lines": (int,),
}  # fmt: skip


def fault_from_json(item: Any) -> Fault:
    """A fault queued over HTTP, checked field by field when it is queued: one taken as it came (a body given as a
    JSON object, a status as text) broke the request it was meant for, which got no answer at all instead of the
    fault, with a traceback in the emulator's output. A body given as JSON (an object or a list, as Alpaca's error
    bodies are) is sent as that JSON. ValueError names what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    fields = dict(item)
    if isinstance(fields.get("body"), (dict, list)):
        fields["body"] = json.dumps(fields["body"])
    for name, value in fields.items():
        allowed = _FAULT_FIELDS.get(name)
        if allowed is None:
            raise ValueError(f"unknown field {name!r} (known: {', '.join(_FAULT_FIELDS)})")
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ValueError(f"{name} is {value!r}, not {' or '.join(t.__name__ for t in allowed)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} is {value!r}, not a finite number of 0 or more")
    if not 100 <= fields.get("status", 500) <= 599:
        raise ValueError(f"status {fields['status']} is not an HTTP status")
    if not all(isinstance(path, str) for path in fields.get("drop", [])):
        raise ValueError("drop holds paths, as text")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.get("headers", {}).items()):
        raise ValueError("headers are names and values, as text")
    return Fault(**fields)


_ASSET_FIELDS = {"exists": bool, "tradable": bool, "fractionable": bool, "status": str}


def _asset_change(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The symbol and the fields of a POST /__emulator/asset, checked (`SimExchange.set_asset` takes them)."""
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("symbol is required, as text")
    fields = {k: v for k, v in body.items() if k != "symbol"}
    for name, value in fields.items():
        kind = _ASSET_FIELDS.get(name)
        if kind is None:
            raise ValueError(f"unknown field {name!r} (known: symbol, {', '.join(_ASSET_FIELDS)})")
        if not isinstance(value, kind):
            raise ValueError(f"{name} is {value!r}, not {kind.__name__}")
    if fields.get("status", "active") not in ("active", "inactive"):
        raise ValueError(f"status is {fields['status']!r}, not 'active' or 'inactive'")
    return symbol, fields

@dataclass
class LoggedRequest:
    method: str
    requestline: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


def _ts(value: datetime) -> str:
    """Trading and data API times: RFC 3339 in UTC with nine fraction digits, e.g. "2022-02-04T16:53:29.534279170Z"
    (trading-api.json order examples; data: "2024-04-25T20:00:00.259610112Z", alpaca-py test_historical_option_data)."""
    utc = value.astimezone(timezone.utc)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}000Z"


def _ny(value: datetime) -> str:
    """The clock's times: New York, with its offset (trading-api.json legacy_clock "2025-06-24T14:15:22-04:00"),
    and nanoseconds, which alpaca-py truncates."""
    local = value.astimezone(NEW_YORK)
    offset = f"{local:%z}"
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}000{offset[:3]}:{offset[3:]}"


def _money(value: float) -> str:
    """Money and quantities as Alpaca writes them: a plain decimal string of up to nine decimals ("0.00005",
    "12.123456789", "1250000"), never an exponent ("5e-05") and never cut to ten significant digits (trading-api.json:
    qty and notional "can take up to 9 decimal points")."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _decimal(value: float) -> str:
    """A decimal string without an exponent ("0.00001667", not "1.667e-05"), as Alpaca writes increments."""
    return f"{value:.12f}".rstrip("0").rstrip(".") or "0"


def _bool(values: list[str] | None, default: bool = False) -> bool:
    """alpaca-py sends booleans capitalised (`True`): read them case-insensitively (reference §1)."""
    return values[0].lower() == "true" if values else default


def _page_token(symbol: str) -> str:
    # a chain's next_page_token is the base64 of the last symbol given (alpaca-trade-api-go options_test.go:
    # "QUFQTDI0MDQyNkMwMDE1MjUwMA==" is AAPL240426C00152500)
    return base64.b64encode(symbol.encode()).decode()


def _after_token(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return base64.b64decode(token.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SimReject(400, None, "invalid page_token") from None


# --- history: bars of the past, from the simulator's price model ---------------------------------------------

_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D)$")
_TIMEFRAME_UNIT = {"Min": 60, "T": 60, "Hour": 3600, "H": 3600, "Day": 86400, "D": 86400}
_TIMEFRAME_MAX = {60: 59, 3600: 23, 86400: 1}  # market-data-api.json: [1-59]Min, [1-23]Hour, 1Day
_HISTORY_ANCHOR = date(2000, 1, 3)  # the day-level walk starts here; any day after it has a level
_STEPS_PER_MINUTE = 12  # the simulator's 5-second steps
_LEVEL_BLOCK = 256
# Minute bars as (start in epoch seconds, open, high, low, close, volume, trade count, VWAP).
MinuteBar = tuple[float, float, float, float, float, float, int, float]


class History:
    """Minute bars of any past day, drawn from the simulator's price model (engine/brokers/sim/prices.py).

    A day is a `PricePaths` walk of 5-second steps (its drift regimes included), seeded by the day, so that any
    window gives the same bars whatever was asked before it: a resumed download must find what a whole one would
    have. Each day's walk is bent to start at the day's level and end at the next day's, levels that follow a
    mean-reverting walk from day to day; the next session then opens where the last one closed, and a price
    stays within tens of percent of the symbol's base price over years. Stocks have bars in the sessions of the
    exchange calendar (holidays and early closes included); crypto around the clock; an option contract in its
    underlying's sessions until it expires, priced from the underlying by the simulator's model.
    """

    def __init__(self, seed: int, cached_days: int = 256):
        self.seed = seed
        self._base = PricePaths(seed, datetime(2000, 1, 3, tzinfo=timezone.utc))
        self._levels: dict[str, list[float]] = {}
        self._days: OrderedDict[tuple[str, date], list[MinuteBar]] = OrderedDict()
        self._cached_days = cached_days
        self._lock = threading.Lock()  # the server answers on several threads; the caches are shared

    def _level(self, symbol: str, day: date) -> float:
        """The symbol's log level on `day`: x' = 0.98 x + N(0, 1.5 %), from 0 at the anchor (a stationary spread of
        about 7.5 %)."""
        levels = self._levels.setdefault(symbol, [])
        index = max((day - _HISTORY_ANCHOR).days, 0)
        while index >= len(levels):  # a block of days at a time, each block from its own generator: the same
            block = len(levels) // _LEVEL_BLOCK  # levels whatever day was asked for first
            rng = random.Random(f"{self.seed}:level:{symbol}:{block}")
            x = levels[-1] if levels else 0.0
            for _ in range(_LEVEL_BLOCK):
                x = 0.98 * x + rng.gauss(0.0, 0.015)
                levels.append(x)
        return levels[index]

    def _spans(self, symbol: str, first: date, last: date) -> list[tuple[date, datetime, datetime]]:
        """(day, its first instant, its end) of each day with trading from `first` to `last`."""
        if asset_class_of(symbol) == "crypto":
            return [
                (
                    day,
                    datetime.combine(day, datetime.min.time(), timezone.utc),
                    datetime.combine(day + timedelta(days=1), datetime.min.time(), timezone.utc),
                )
                for day in (first + timedelta(days=n) for n in range((last - first).days + 1))
            ]
        from engine.core.calendar import market_calendar

        return [(s.day, s.open, s.close) for s in market_calendar().sessions(first, last)]

    def _walk(self, symbol: str, day: date, opened: datetime, closes: datetime) -> list[float]:
        """The day's 5-second prices, bent from the day's level to the next day's."""
        steps = int((closes - opened).total_seconds() // 5)
        paths = PricePaths(self.seed * 1_000_003 + day.toordinal(), opened)
        raw = paths.history(symbol, paths.step_time(steps - 1), steps)
        base = self._base.base_price(symbol)
        start, end = self._level(symbol, day), self._level(symbol, day + timedelta(days=1))
        first, drift = math.log(raw[0]), math.log(raw[-1] / raw[0])
        last = max(len(raw) - 1, 1)
        return [base * math.exp(math.log(p) - first + start + (end - start - drift) * i / last) for i, p in enumerate(raw)]

    def _minutes_of_day(self, symbol: str, day: date, opened: datetime, closes: datetime) -> list[MinuteBar]:
        key = (symbol, day)
        with self._lock:
            cached = self._days.get(key)
            if cached is not None:
                self._days.move_to_end(key)
                return cached
        occ = parse_occ(symbol)
        if occ is not None:
            bars = self._option_minutes(occ, day, opened, closes)
        else:
            digits = 2 if asset_class_of(symbol) == "us_equity" else 4
            prices = [round(p, digits) for p in self._walk(symbol, day, opened, closes)]
            rng = random.Random(f"{self.seed}:volume:{symbol}:{day.isoformat()}")
            shares = asset_class_of(symbol) == "us_equity"
            bars = []
            start = opened.timestamp()
            for m in range(len(prices) // _STEPS_PER_MINUTE):
                chunk = prices[m * _STEPS_PER_MINUTE : (m + 1) * _STEPS_PER_MINUTE]
                trades = rng.randint(5, 60)
                volume = float(round(trades * rng.uniform(20, 200))) if shares else round(trades * rng.uniform(0.2, 2.0), 4)
                vwap = round(sum(chunk) / len(chunk), digits + 2)
                bars.append((start + 60 * m, chunk[0], max(chunk), min(chunk), chunk[-1], volume, trades, vwap))
        with self._lock:
            self._days[key] = bars
            while len(self._days) > self._cached_days:
                self._days.popitem(last=False)
        return bars

    def _option_minutes(
        self, occ: tuple[str, date, str, float], day: date, opened: datetime, closes: datetime
    ) -> list[MinuteBar]:
        root, expiry, option_type, strike = occ
        if day > expiry:
            return []
        bars = []
        for t, o, h, low, c, _v, trades, _vw in self._minutes_of_day(root, day, opened, closes):
            when = datetime.fromtimestamp(t, timezone.utc)
            years = options.years_to_expiry(expiry, when)

            def mid(spot: float, years: float = years) -> float:
                return options.price_one(spot, strike, years, option_type, SPREAD["us_option"]).mid[0]

            at_open, at_close, at_high, at_low = mid(o), mid(c), mid(h), mid(low)
            high, low_price = max(at_open, at_close, at_high, at_low), min(at_open, at_close, at_high, at_low)
            count = max(trades // 10, 1)
            bars.append((t, at_open, high, low_price, at_close, float(count), count, round((high + low_price) / 2, 4)))
        return bars

    def minutes(self, symbol: str, start: datetime, end: datetime) -> Iterator[MinuteBar]:
        """Every minute bar of `symbol` starting in [start, end), oldest first, a day at a time."""
        first = start.astimezone(NEW_YORK).date() - timedelta(days=1)
        last = end.astimezone(NEW_YORK).date() + timedelta(days=1)
        underlying = parse_occ(symbol)
        calendar_symbol = underlying[0] if underlying else symbol
        lo, hi = start.timestamp(), end.timestamp()
        for day, opened, closes in self._spans(calendar_symbol, first, last):
            if closes.timestamp() <= lo or opened.timestamp() >= hi:
                continue
            for bar in self._minutes_of_day(symbol, day, opened, closes):
                if lo <= bar[0] < hi:
                    yield bar

    def bars(self, symbol: str, seconds: int, start: datetime, end: datetime) -> Iterator[MinuteBar]:
        """Bars of `seconds` (60 × N, 3600 × N, or 86400: a day in New York, stamped at its midnight) starting in
        [start, end), aggregated from minute bars as Alpaca does: first open, highest high, lowest low, last close,
        volume and trades summed, VWAP by volume."""
        if seconds == 60:
            yield from self.minutes(symbol, start, end)
            return
        daily = seconds == 86400

        def bucket(t: float) -> float:
            if daily:
                local = datetime.fromtimestamp(t, timezone.utc).astimezone(NEW_YORK)
                return datetime.combine(local.date(), datetime.min.time(), NEW_YORK).timestamp()
            return t - t % seconds

        lo = start.timestamp()
        group: list[MinuteBar] = []
        for bar in self.minutes(symbol, datetime.fromtimestamp(bucket(lo), timezone.utc), end):
            if group and bucket(bar[0]) != bucket(group[0][0]):
                if bucket(group[0][0]) >= lo:  # a bar is in the window when its own timestamp is
                    yield _aggregate(bucket(group[0][0]), group)
                group = []
            group.append(bar)
        if group and bucket(group[0][0]) >= lo:
            yield _aggregate(bucket(group[0][0]), group)


def _aggregate(start: float, group: list[MinuteBar]) -> MinuteBar:
    volume = sum(b[5] for b in group)
    vwap = sum(b[7] * b[5] for b in group) / volume if volume else group[-1][4]
    return (start, group[0][1], max(b[2] for b in group), min(b[3] for b in group), group[-1][4], round(volume, 4),
            sum(b[6] for b in group), round(vwap, 4))  # fmt: skip


def _timeframe_seconds(text: str | None) -> int:
    match = _TIMEFRAME.fullmatch(text or "")
    if not match:
        raise SimReject(400, None, f"invalid timeframe: {text!r} (the emulator serves [1-59]Min, [1-23]Hour and 1Day)")
    amount, unit = int(match.group(1)), _TIMEFRAME_UNIT[match.group(2)]
    if not 1 <= amount <= _TIMEFRAME_MAX[unit]:
        raise SimReject(400, None, f"invalid timeframe: {text!r}")
    return amount * unit


def _bars_token(symbol: str, start: float) -> str:
    # opaque to clients; here the base64 of the last bar given, so the next page starts after it
    return base64.b64encode(f"{symbol}|{start:.0f}".encode()).decode()


def _after_bars_token(token: str | None) -> tuple[str, float] | None:
    text = _after_token(token)
    if text is None:
        return None
    symbol, _, stamp = text.rpartition("|")
    try:
        return symbol, float(stamp)
    except ValueError:
        raise SimReject(400, None, "invalid page_token") from None


@dataclass
class Emulator:
    exchange: SimExchange
    key: str | None = None
    secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[LoggedRequest] = field(default_factory=list)
    rate_limit: int = 200  # trading requests per minute (reference §7), then 429
    # Real chains hold contracts without greeks and contracts with only a quote: about one in ten of each here,
    # chosen by the contract's symbol so that every page and filter agrees.
    chain_gaps: bool = True
    # Alpaca's account carries intraday_adjustments (trading-api.json example); False leaves it out, as alpaca-py's
    # model does, so readers must fall back to the day's activities.
    intraday_adjustments: bool = True
    # An activity carries created_at here; False leaves it out, as the NonTradeActivities example of Alpaca's docs
    # does (activity_type, id, date, net_amount...): readers must place it by its id or its date.
    activity_created_at: bool = True
    opra_subscription: bool = False  # without it, feed=opra is refused 403
    # Without it (Alpaca's free plan), recent SIP stock data is refused 403 and the default stock feed is iex
    # (reference §9; settings.schema.json: "free plans need iex").
    sip_subscription: bool = False
    fill_at_submit: bool = False  # Alpaca answers an order before it fills; True only to reproduce old behaviour
    # Historical bars per page at most, whatever `limit` asks (None: as asked). Alpaca may also answer fewer than
    # asked with a token; this lets a test see the SDK follow `next_page_token` without 10,000 bars a page.
    bars_page_cap: int | None = None

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self._fault_lock = threading.Lock()
        self._minute: tuple[int, int] = (0, 0)
        self.account_id = str(uuid.UUID(int=self.exchange.seed, version=4))
        self.exchange.fill_at_submit = self.fill_at_submit
        self.history = History(self.exchange.seed)

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "emulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Emulator:
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the loop's next poll: 50 ms instead of the default half second per stop
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="alpaca-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run in the foreground until Ctrl-C (the `python -m engine emulator` command)."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()

    # --- JSON shapes: trading API --------------------------------------------------------------------------

    def account_json(self) -> dict[str, Any]:
        """trading-api.json Account (its example-1 for the field set); money as strings (alpaca-py's TradeAccount
        refuses numbers)."""
        a = self.exchange.account()
        f = self.exchange.flags
        long_value = sum(p.market_value for p in self.exchange.position_views() if p.qty > 0)
        short_value = sum(p.market_value for p in self.exchange.position_views() if p.qty < 0)
        account = {
            "id": self.account_id,
            "account_number": "PA0EMULATOR1",
            "status": a.status,
            "crypto_status": a.crypto_status,
            "currency": "USD",
            "cash": _money(a.cash),
            "buying_power": _money(a.buying_power),
            "regt_buying_power": _money(a.buying_power),
            "non_marginable_buying_power": _money(a.non_marginable_buying_power or 0.0),
            "options_buying_power": _money(a.options_buying_power or 0.0),
            "equity": _money(a.equity),
            "last_equity": _money(a.last_equity),
            "portfolio_value": _money(a.equity),
            "long_market_value": _money(long_value),
            "short_market_value": _money(short_value),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_reg_taf_fees": "0",
            "balance_asof": f"{self.exchange.last_equity_close.astimezone(NEW_YORK):%Y-%m-%d}",  # the close last_equity is from
            "trading_blocked": a.trading_blocked,
            "account_blocked": a.account_blocked,
            "transfers_blocked": False,
            "trade_suspended_by_user": a.trade_suspended_by_user,
            "shorting_enabled": f.shorting_enabled,
            "multiplier": "1",
            "options_approved_level": a.options_approved_level,
            "options_trading_level": a.options_trading_level,
            # pattern_day_trader, daytrade_count, daytrading_buying_power: deprecated since 2026-04-27 (trading-api.json)
            "pattern_day_trader": False,
            "daytrade_count": 0,
            "created_at": "2024-01-02T00:00:00.000000000Z",
        }
        if self.intraday_adjustments:
            account["intraday_adjustments"] = _money(a.non_trade_cash_today or 0.0)
        return account

    @staticmethod
    def _asset_id(symbol: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, symbol))

    def order_json(self, o: Order) -> dict[str, Any]:
        """trading-api.json Order; alpaca-py test_position_routes.py close-all body for the full field set."""
        sim = self.exchange.orders.get(o.id)
        updated = sim.updated_at if sim and sim.updated_at else o.created_at
        return {
            "id": o.id,
            "client_order_id": o.client_order_id,
            "created_at": _ts(o.created_at),
            "updated_at": _ts(updated),
            "submitted_at": _ts(o.created_at),
            "filled_at": _ts(updated) if o.status == "filled" else None,
            "expired_at": _ts(updated) if o.status == "expired" else None,
            "canceled_at": _ts(updated) if o.status == "canceled" else None,
            "failed_at": None,
            "replaced_at": _ts(updated) if o.status == "replaced" else None,
            "replaced_by": o.replaced_by,
            "replaces": o.replaces,
            "asset_id": self._asset_id(o.symbol),
            "symbol": o.symbol,
            "asset_class": o.asset_class,
            "qty": _money(o.qty) if o.qty is not None else None,
            "notional": _money(o.notional) if o.notional is not None else None,
            "filled_qty": _money(o.filled_qty),
            "filled_avg_price": _money(o.filled_avg_price) if o.filled_avg_price is not None else None,
            "order_class": "simple",  # reference §4 (alpaca-py reads "" as simple too)
            "type": o.order_type,
            "order_type": o.order_type,
            "side": o.side,
            "position_intent": None,
            "time_in_force": o.time_in_force,
            "limit_price": _money(o.limit_price) if o.limit_price else None,
            "stop_price": None,
            "status": o.status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            # newer fields (trading-api.json Order): readers must tolerate what they do not use
            "expires_at": None,
            "subtag": None,
            "source": None,
        }

    def position_json(self, p: Position) -> dict[str, Any]:
        """trading-api.json Position; crypto as BTCUSD (reference §5), a short as side "short" with a negative
        qty, market value and cost basis (Alpaca-API issue #86)."""
        exchange = {"crypto": "CRYPTO", "us_option": ""}.get(p.asset_class, "NASDAQ")
        cost_basis = p.market_value - p.unrealized_pl
        return {
            "asset_id": self._asset_id(p.symbol),
            "symbol": position_path_symbol(p.symbol),
            "exchange": exchange,
            "asset_class": p.asset_class,
            "asset_marginable": p.asset_class == "us_equity",
            "qty": _money(p.qty),
            # qty less what open sell orders hold (trading-api.json Position: "Total number of shares available
            # minus open orders"); a short's, not modelled, is its qty as before
            "qty_available": _money(p.qty_available if p.qty_available is not None else p.qty),
            "avg_entry_price": _money(p.avg_entry_price),
            "side": "long" if p.qty >= 0 else "short",
            "market_value": _money(p.market_value),
            "cost_basis": _money(cost_basis),
            "unrealized_pl": _money(p.unrealized_pl),
            "unrealized_plpc": _money(p.unrealized_pl / abs(cost_basis) if cost_basis else 0.0),
            "unrealized_intraday_pl": _money(p.unrealized_pl),
            "unrealized_intraday_plpc": _money(p.unrealized_pl / abs(cost_basis) if cost_basis else 0.0),
            "current_price": _money(p.current_price),
            "lastday_price": _money(p.current_price),
            "change_today": "0",
        }

    def asset_json(self, a: Asset) -> dict[str, Any]:
        """trading-api.json Assets; crypto with min_order_size, min_trade_increment and price_increment as decimal
        strings (Alpaca's crypto docs: BTC/USD "min_order_size": "0.0001", "price_increment": "1")."""
        out: dict[str, Any] = {
            "id": self._asset_id(a.symbol),
            "class": a.asset_class,
            "exchange": a.exchange,
            "symbol": a.symbol,
            "name": f"{a.symbol} pair" if a.asset_class == "crypto" else f"{a.symbol} Common Stock",
            "status": a.status,
            "tradable": a.tradable,
            "marginable": a.marginable,
            "shortable": a.shortable,
            "easy_to_borrow": a.shortable,
            "fractionable": a.fractionable,
            "attributes": list(a.attributes),
        }
        for name in ("min_order_size", "min_trade_increment", "price_increment"):
            value = getattr(a, name)
            if value is not None:
                out[name] = _decimal(value)
        return out

    def activity_json(self, a: NonTradeActivity) -> dict[str, Any]:
        """trading-api.json NonTradeActivities (its example: "net_amount": "1.02", "status": "executed")."""
        out = {
            "id": a.id,
            "activity_type": a.activity_type,
            "date": a.date,
            "created_at": _ts(a.created_at) if a.created_at else None,
            "net_amount": _money(a.net_amount),
            "currency": "USD",
            "status": a.status,
            "description": "",
        }
        if not self.activity_created_at:
            del out["created_at"]
        return out

    def clock_json(self) -> dict[str, Any]:
        c = self.exchange.market_clock()
        return {
            "timestamp": _ny(c.timestamp),
            "is_open": c.is_open,
            "next_open": _ny(c.next_open),
            "next_close": _ny(c.next_close),
        }

    # --- JSON shapes: data API -----------------------------------------------------------------------------

    def quote_json(self, symbol: str) -> dict[str, Any]:
        """A latest quote (alpaca-py tests/data fixtures); `bp`/`ap` 0 when that side is empty, as Alpaca sends. A
        crypto quote has only t, bp, bs, ap and as, its sizes in coins (reference §4: no exchange, condition or tape)."""
        q = self.exchange.quote(symbol)
        if asset_class_of(symbol) == "crypto":
            return {"t": _ts(q.timestamp), "bp": q.bid, "bs": 0.5 if q.bid else 0, "ap": q.ask, "as": 0.5 if q.ask else 0}
        return {
            "t": _ts(q.timestamp),
            "bp": q.bid,
            "bs": 1 if q.bid else 0,
            "ap": q.ask,
            "as": 1 if q.ask else 0,
            "bx": "V",
            "ax": "V",
            "c": ["R"],
            "z": "C",
        }

    def _contract_json(self, c: OptionContract, feed: str) -> dict[str, Any]:
        """An option snapshot (alpaca-py test_get_option_chain). With `chain_gaps`, some contracts come as Alpaca
        sends thin ones (alpaca-trade-api-go options_test.go): without greeks or IV, or with only a quote."""
        gap = zlib.crc32(c.symbol.encode()) % 10 if self.chain_gaps else None
        quote = {"t": _ts(c.quote_time), "bp": c.bid, "bs": 10 if c.bid else 0, "bx": "C", "ap": c.ask, "as": 10 if c.ask else 0,
                 "ax": "C", "c": "A"}  # fmt: skip
        if gap == 1:
            return {"latestQuote": quote}
        traded = c.quote_time - (INDICATIVE_TRADE_DELAY if feed == "indicative" else timedelta(0))
        snapshot: dict[str, Any] = {
            "latestQuote": quote,
            "latestTrade": {"t": _ts(traded), "p": round((c.bid + c.ask) / 2, 2), "s": 1, "x": "C", "c": "I"},
        }
        if gap != 0:
            snapshot["impliedVolatility"] = c.implied_volatility
            snapshot["greeks"] = {"delta": c.delta, "gamma": c.gamma, "rho": 0.01, "theta": c.theta, "vega": c.vega}
        return snapshot

    def _feed(self, query: dict[str, list[str]]) -> str:
        feed = query.get("feed", ["opra" if self.opra_subscription else "indicative"])[0]
        if feed not in ("indicative", "opra"):
            raise SimReject(400, None, f"invalid feed: {feed}")
        if feed == "opra" and not self.opra_subscription:
            raise SimReject(403, None, "subscription does not permit querying recent OPRA data")
        return feed

    def _stock_feed(self, query: dict[str, list[str]], until: datetime) -> str:
        """The stock feed asked for (sip by default with a SIP subscription, else iex: market-data-api.json), as
        Alpaca answers it: a feed it does not know is 400, and SIP data later than 15 minutes ago without a SIP
        subscription is 403 "subscription does not permit querying recent SIP data" (reference §9). The emulator
        served any feed, latest quotes whatever the feed: an engine set to `broker.stock_feed: sip` quoted every
        stock against it, and on a free plan would have no stock quote at all."""
        feed = query.get("feed", ["sip" if self.sip_subscription else "iex"])[0]
        if feed not in _STOCK_FEEDS:
            raise SimReject(400, None, f"invalid feed: {feed}")
        if feed == "sip" and not self.sip_subscription and until > self.exchange.clock.now() - SIP_RECENT:
            raise SimReject(403, None, "subscription does not permit querying recent SIP data")
        return feed

    def chain_json(self, underlying: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """/v1beta1/options/snapshots/{underlying}: filters, `limit` (default 100, at most 1,000) and
        `next_page_token` (market-data-api.json)."""
        feed = self._feed(query)
        limit = _limit(query, CHAIN_LIMIT_DEFAULT, CHAIN_LIMIT_MAX)
        today = self.exchange.clock.now().astimezone(NEW_YORK).date()
        # Alpaca's chain has no default expiry bound; the simulated chain is drawn 60 days out at most
        chosen = self._matching_contracts([underlying], query, today + timedelta(days=60))
        after = _after_token(query.get("page_token", [None])[0])
        if after is not None:
            chosen = [c for c in chosen if c.symbol > after]
        page, rest = chosen[:limit], chosen[limit:]
        return {
            "snapshots": {c.symbol: self._contract_json(c, feed) for c in page},
            "next_page_token": _page_token(page[-1].symbol) if rest else None,
        }

    def bars_json(self, asset_class: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """Historical bars (market-data-api.json StockBars, CryptoBars, OptionBars): `symbols` (required),
        `timeframe`, `start` (default: the start of today in New York), `end` (default: now; never after the
        simulated now, and only bars that have ended), `limit` (1..10,000, default 1,000, counted across
        symbols), `sort` (asc or desc), `page_token`. Bars come sorted by symbol, then time; a symbol with no bar
        in the window is left out of `bars`; each bar has t, o, h, l, c, v, n, vw (alpaca-py refuses a bar without
        n or vw: reference §4)."""
        symbols = sorted(dict.fromkeys(s for s in ",".join(query.get("symbols", [])).split(",") if s))
        if not symbols:
            raise SimReject(400, None, "symbols is required")
        for symbol in symbols:
            if not self.exchange.well_formed(symbol) or asset_class_of(symbol) != asset_class:
                raise SimReject(400, None, f"invalid symbol: {symbol}")
        seconds = _timeframe_seconds(query.get("timeframe", [None])[0])
        limit = _limit(query, BARS_LIMIT_DEFAULT, BARS_LIMIT_MAX)
        page = min(limit, self.bars_page_cap) if self.bars_page_cap else limit
        sort = query.get("sort", ["asc"])[0]
        if sort not in ("asc", "desc"):
            raise SimReject(400, None, f"invalid sort: {sort}")
        now = self.exchange.clock.now()
        today = datetime.combine(now.astimezone(NEW_YORK).date(), datetime.min.time(), NEW_YORK)
        start = _instant(query.get("start", [None])[0], "start") or today
        asked_end = _instant(query.get("end", [None])[0], "end") or now
        if asset_class == "us_equity":  # the stock endpoint's own parameters (market-data-api.json StockBars)
            self._stock_feed(query, asked_end)
            adjustment = query.get("adjustment", ["raw"])[0]
            if not set(adjustment.split(",")) <= _ADJUSTMENTS:
                raise SimReject(400, None, f"invalid adjustment: {adjustment}")
        if asked_end < start:  # the end asked for, not the end served: a window in the future is only empty
            raise SimReject(400, None, "end should not be before start")
        end = min(asked_end, now)
        ended = now.timestamp() - seconds  # a bar is given once it has ended (a day bar: its day has)
        after = _after_bars_token(query.get("page_token", [None])[0])
        given: list[tuple[str, MinuteBar]] = []
        more = False
        for symbol in symbols if sort == "asc" else symbols[::-1]:
            if after is not None and (symbol < after[0] if sort == "asc" else symbol > after[0]):
                continue  # a page before this one gave it whole
            if not self.exchange.listed(symbol):
                continue
            rows = [b for b in self.history.bars(symbol, seconds, start, end + timedelta(microseconds=1)) if b[0] <= ended]
            if sort == "desc":
                rows.reverse()
            if after is not None and symbol == after[0]:
                rows = [b for b in rows if (b[0] > after[1] if sort == "asc" else b[0] < after[1])]
            room = page - len(given)
            given += [(symbol, bar) for bar in rows[:room]]
            if len(rows) > room:
                more = True
                break
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in given:
            bars.setdefault(symbol, []).append(_bar_json(bar, whole_volume=asset_class != "crypto"))
        token = _bars_token(given[-1][0], given[-1][1][0]) if more else None
        return {"bars": bars, "next_page_token": token}

    def contract_json(self, c: OptionContract) -> dict[str, Any]:
        """trading-api.json OptionContract (reference §4 compact example)."""
        return {
            "id": self._asset_id(c.symbol),
            "symbol": c.symbol,
            "name": f"{c.underlying} {c.expiry:%b %d %Y} {c.strike:g} {c.option_type.title()}",
            "status": "active",
            "tradable": True,
            "expiration_date": c.expiry.isoformat(),
            "root_symbol": _occ_root(c.symbol),
            "underlying_symbol": c.underlying,
            "underlying_asset_id": self._asset_id(c.underlying),
            "type": c.option_type,
            "style": "american",
            "strike_price": _money(c.strike),
            "multiplier": "100",  # trading-api.json OptionContract: required
            "size": "100",
            "open_interest": "0",
            "close_price": _money(round((c.bid + c.ask) / 2, 2)),
        }

    # --- the emulator's own controls (loopback only), for rehearsing failures against a running engine -----

    def admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """POST /__emulator/faults [{status, body, after, hang_seconds, path_prefix, method}, ...] queues faults;
        GET lists them; DELETE clears them. GET /__emulator/requests is the request log. POST
        /__emulator/quote_mode {symbol, no_bid, no_ask, crossed} (or {symbol} alone for normal quotes). POST
        /__emulator/cash {amount, activity_type} moves cash without a trade (a deposit, a withdrawal). POST
        /__emulator/asset {symbol, exists, status, tradable, fractionable} changes how /v2/assets answers for a symbol
        (every well-formed symbol exists otherwise): `exists: false` for one Alpaca does not list."""
        if path == f"{ADMIN_PREFIX}/faults":
            if method == "POST":
                items = body if isinstance(body, list) else [body]
                try:
                    faults = [fault_from_json(item) for item in items]
                except ValueError as exc:
                    return 422, {"message": f"not a fault: {exc}"}
                self.faults.extend(faults)
                return 200, {"queued": len(self.faults)}
            if method == "DELETE":
                self.faults.clear()
                return 200, {"queued": 0}
            listed = [dataclasses.asdict(f) for f in self.faults]
            return 200, [{**f, "rewrite": f["rewrite"] and "in process"} for f in listed]
        if path == f"{ADMIN_PREFIX}/requests" and method == "GET":
            return 200, [{"method": r.method, "path": r.path, "query": r.query, "body": r.body} for r in self.requests]
        if path == f"{ADMIN_PREFIX}/quote_mode" and method == "POST" and isinstance(body, dict) and "symbol" in body:
            no_bid, no_ask, crossed = (bool(body.get(k, False)) for k in ("no_bid", "no_ask", "crossed"))
            mode = QuoteMode(no_bid=no_bid, no_ask=no_ask, crossed=crossed) if no_bid or no_ask or crossed else None
            self.exchange.set_quote_mode(str(body["symbol"]), mode)
            return 200, {"symbol": body["symbol"], "no_bid": no_bid, "no_ask": no_ask, "crossed": crossed}
        if path == f"{ADMIN_PREFIX}/asset" and method == "POST" and isinstance(body, dict):
            try:
                symbol, fields = _asset_change(body)
            except ValueError as exc:
                return 422, {"message": f"not an asset change: {exc}"}
            self.exchange.set_asset(symbol, **fields)
            return 200, {"symbol": symbol, **fields}
        if path == f"{ADMIN_PREFIX}/cash" and method == "POST" and isinstance(body, dict):
            try:
                moved = self.exchange.move_cash(float(body["amount"]), str(body.get("activity_type", "CSD")))
            except (KeyError, TypeError, ValueError) as exc:
                return 422, {"message": f"not a cash movement: {exc}"}
            return 200, self.activity_json(moved)
        return 404, {"message": "unknown emulator control"}

    # --- routing -------------------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._fault_lock:  # the server answers on several threads
            for fault in list(self.faults):
                if path.startswith(fault.path_prefix) and fault.method in ("", method) and fault.path_equals in ("", path):
                    if fault.times == 1:
                        self.faults.remove(fault)
                    elif fault.times > 1:
                        fault.times -= 1
                    return fault
        return None

    def count_request(self) -> tuple[dict[str, str], bool]:
        """The X-RateLimit-* headers of a trading request (reference §7), and whether it is over the budget."""
        now = self.exchange.clock.now()
        minute = int(now.timestamp() // 60)
        count = self._minute[1] + 1 if self._minute[0] == minute else 1
        self._minute = (minute, count)
        reset = (minute + 1) * 60
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - count, 0)),
            "X-RateLimit-Reset": str(reset),
        }
        return headers, count > self.rate_limit

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        x = self.exchange
        symbols = [s for s in ",".join(query.get("symbols", [])).split(",") if s]
        if method == "GET":
            if path == "/v2/account":
                return 200, self.account_json()
            if path == "/v2/clock":
                return 200, self.clock_json()
            if path == "/v2/positions":
                return 200, [self.position_json(p) for p in x.position_views()]
            if path == "/v2/orders":
                return 200, self.orders_json(query)
            if path == "/v2/orders:by_client_order_id":
                return 200, self.order_json(x.find_by_client_id(query.get("client_order_id", [""])[0]))
            if m := re.fullmatch(r"/v2/orders/([0-9a-f-]{36})", path):
                return 200, self.order_json(x.find(m.group(1)))
            if path == "/v2/assets":
                return 200, self.assets_json(query)
            if m := re.fullmatch(r"/v2/assets/(.+)", path):
                return self.asset_answer(unquote(m.group(1)))
            if m := re.fullmatch(r"/v2/account/activities(?:/([A-Z]+))?", path):
                return 200, self.activities_json(query, m.group(1))
            if path == "/v2/options/contracts":
                return 200, self.contracts_json(query)
            if path == "/v2/stocks/quotes/latest" or path == "/v1beta3/crypto/us/latest/quotes":
                if path.startswith("/v2/stocks"):
                    self._stock_feed(query, x.clock.now())  # the latest quote is recent data
                crypto = path.startswith("/v1beta3")
                return 200, {"quotes": {s: self.quote_json(s) for s in self._data_symbols(symbols, crypto=crypto)}}
            if m := re.fullmatch(r"/v1beta1/options/snapshots/([A-Z.]+)", path):
                return 200, self.chain_json(m.group(1), query)
            if path == "/v2/stocks/bars":
                return 200, self.bars_json("us_equity", query)
            if path == "/v1beta3/crypto/us/bars":
                return 200, self.bars_json("crypto", query)
            if path == "/v1beta1/options/bars":
                return 200, self.bars_json("us_option", query)
        if method == "POST" and path == "/v2/orders":
            return 200, self.order_json(x.submit(_order_request(body)))
        if method == "PATCH" and (m := re.fullmatch(r"/v2/orders/([0-9a-f-]{36})", path)):
            # an order edited (in Alpaca's dashboard, or by another program): the old one ends `replaced`, the
            # answer is the new one (trading-api.json PATCH /v2/orders/{order_id}; alpaca-py replace_order_by_id)
            replaced_by = x.replace_order(m.group(1), **_replacement(body))  # not `pending`: replaced at once
            return 200, self.order_json(x.find(replaced_by or ""))
        if method == "DELETE":
            if m := re.fullmatch(r"/v2/orders/([0-9a-f-]{36})", path):
                x.cancel(m.group(1))  # asked for; it ends at a later step (trading-api.json: 204 No Content)
                return 204, None
            if path == "/v2/orders":
                return 207, [self.cancel_item(oid, status) for oid, status in x.cancel_all()]
            if path == "/v2/positions":
                return 207, [self.close_item(s, st, outcome) for s, st, outcome in x.close_all()]
            if m := re.fullmatch(r"/v2/positions/([A-Z0-9.]+)", path):  # BRK.B is a position's symbol too
                symbol = _position_symbol(m.group(1), x)
                return 200, self.order_json(x.close_position(symbol))
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def orders_json(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """GET /v2/orders with trading-api.json's filters: `status` (open, closed or all; open by default), `symbols`
        (a pair as BTCUSD, the spec's own example, or BTC/USD), `side`, `asset_class` (a comma-separated list, or
        all), `after` and `until` (the submission time, both exclusive), `direction` (by submission time, desc by
        default) and `limit`. The emulator ignored side, asset_class, after and until, and matched a pair only as
        BTC/USD: asked for the BTCUSD orders the spec's example names, it answered none."""
        x = self.exchange
        status = query.get("status", ["open"])[0]
        direction = query.get("direction", ["desc"])[0]
        for name, value, allowed in (("status", status, ("open", "closed", "all")), ("direction", direction, ("asc", "desc"))):
            if value not in allowed:
                raise SimReject(400, None, f"invalid {name}: {value}")
        # Alpaca's default is 50, its most 500 (reference §2, §7): a larger limit answers 500 orders, never more,
        # so a test that asks for more does not pass on a list live trading will not return.
        limit = min(_limit(query, ORDERS_LIMIT_DEFAULT, sys.maxsize), ORDERS_LIMIT_MAX)
        after, until = _instant(query.get("after", [None])[0], "after"), _instant(query.get("until", [None])[0], "until")
        if status == "open":
            orders = x.open_orders()
        else:
            x.process()
            views = [x.order_view(o) for o in x.orders.values()]
            orders = views if status == "all" else [o for o in views if not o.is_open]
        wanted = {position_path_symbol(s) for s in ",".join(query.get("symbols", [])).split(",") if s}
        side = query.get("side", [None])[0]
        classes = {c for c in ",".join(query.get("asset_class", [])).split(",") if c} - {"all"}
        orders = [
            o
            for o in orders
            if (not wanted or position_path_symbol(o.symbol) in wanted)
            and (side is None or o.side == side)
            and (not classes or o.asset_class in classes)
            and (after is None or o.created_at > after)
            and (until is None or o.created_at < until)
        ]
        orders = sorted(orders, key=lambda o: o.created_at, reverse=direction == "desc")
        return [self.order_json(o) for o in orders[:limit]]

    def cancel_item(self, order_id: str, status: int) -> dict[str, Any]:
        """One item of DELETE /v2/orders (trading-api.json CanceledOrderResponse; reference §4)."""
        if status < 300:
            return {"id": order_id, "status": status}
        return {"id": order_id, "status": status, "body": {"code": 50010000, "message": "order is not cancelable"}}

    def close_item(self, symbol: str, status: int, outcome: Order | SimReject) -> dict[str, Any]:
        """One item of DELETE /v2/positions: the position's symbol as /v2/positions writes it, its status, and the
        closing order or the refusal (alpaca-py test_position_routes.py test_close_all_positions)."""
        body = outcome.body() if isinstance(outcome, SimReject) else self.order_json(outcome)
        return {"symbol": position_path_symbol(symbol), "status": status, "body": body}

    def _asset_symbol(self, raw: str) -> str:
        """A path symbol as the engine spells it: BTCUSD (old crypto symbology) or BTC/USD (URL-encoded) for a
        pair (trading-api.json, /v2/assets/{symbol_or_asset_id}), an asset id for what it names."""
        if _UUID.fullmatch(raw):
            for asset in self.exchange.assets():
                if self._asset_id(asset.symbol) == raw:
                    return asset.symbol
            return raw
        if "/" in raw:
            return raw
        pair = normalize(raw, "crypto")
        if pair == raw:
            return raw
        # BTCUSD: a pair when the exchange knows it as one, or when it is too long for a listed stock's ticker
        known = {a.symbol for a in self.exchange.assets("crypto")} | _known_pairs()
        return pair if pair in known or len(raw) >= 6 else raw

    def asset_answer(self, raw: str) -> tuple[int, Any]:
        asset = self.exchange.asset(self._asset_symbol(raw))
        if asset is None:
            return 404, {"code": 40410000, "message": "asset not found"}
        return 200, self.asset_json(asset)

    def assets_json(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        status = query.get("status", [None])[0]
        found = self.exchange.assets(query.get("asset_class", [None])[0])
        return [self.asset_json(a) for a in found if status is None or a.status == status]

    def activities_json(self, query: dict[str, list[str]], path_type: str | None) -> list[dict[str, Any]]:
        """/v2/account/activities: `activity_types` (or the type in the path), `date`/`after`/`until` on the creation
        time, `direction` (default desc), `page_size` (at most 100) and `page_token`, the last id given
        (trading-api.json). Only non-trade activities are kept here; FILL is not modelled."""
        types = {t for t in ",".join(query.get("activity_types", [])).split(",") if t}
        if path_type:
            types = {path_type}
        category = query.get("category", [None])[0]
        if category == "trade_activity":
            return []
        size = _limit(query, ACTIVITIES_PAGE_MAX, ACTIVITIES_PAGE_MAX, name="page_size")
        on, after, until = (_instant(query.get(k, [None])[0], k) for k in ("date", "after", "until"))
        items = [
            a
            for _, a in sorted(enumerate(self.exchange.non_trade_activities()), key=_chronological)
            if (not types or a.activity_type in types)
            and a.created_at is not None
            and (on is None or a.created_at.astimezone(timezone.utc).date() == on.date())
            and (after is None or a.created_at > after)
            and (until is None or a.created_at < until)
        ]
        if query.get("direction", ["desc"])[0] == "desc":
            items.reverse()
        token = query.get("page_token", [None])[0]
        if token:
            ids = [a.id for a in items]
            items = items[ids.index(token) + 1 :] if token in ids else []
        return [self.activity_json(a) for a in items[:size]]

    def contracts_json(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """/v2/options/contracts?underlying_symbols=...: the contracts an engine can check a symbol against, with the
        filters of trading-api.json: those of `_matching_contracts`, `status` (active by default; every simulated
        contract is active) and `style` (every simulated contract is american), and `expiration_date_lte` "by default
        set to the next weekend" (read here as the first Saturday after today). The emulator ignored every filter
        but the expiry window, whose default was 60 days out: asked for puts at 500 and up, it answered calls at 450."""
        limit = _limit(query, 100, CONTRACTS_LIMIT_MAX)
        today = self.exchange.clock.now().astimezone(NEW_YORK).date()
        status = query.get("status", ["active"])[0]
        style = query.get("style", ["american"])[0]
        if status not in ("active", "inactive"):
            raise SimReject(400, None, f"invalid status: {status}")
        if style not in ("american", "european"):
            raise SimReject(400, None, f"invalid style: {style}")
        underlyings = [s for s in ",".join(query.get("underlying_symbols", [])).split(",") if s]
        next_weekend = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
        contracts = self._matching_contracts(underlyings, query, next_weekend)
        if status == "inactive" or style == "european":
            contracts = []
        after = _after_token(query.get("page_token", [None])[0])
        if after is not None:
            contracts = [c for c in contracts if c.symbol > after]
        page, rest = contracts[:limit], contracts[limit:]
        return {
            "option_contracts": [self.contract_json(c) for c in page],
            "next_page_token": _page_token(page[-1].symbol) if rest else None,
        }

    def _matching_contracts(self, underlyings: list[str], query: dict[str, list[str]], default_lte: date) -> list[OptionContract]:
        """The contracts of `underlyings` that the filters both option endpoints share keep, sorted by symbol
        (trading-api.json /v2/options/contracts, market-data-api.json /v1beta1/options/snapshots/{underlying}): an
        exact `expiration_date` (any default bound aside), else `expiration_date_gte` and `expiration_date_lte`
        (`default_lte` when not given), `type` (call or put), `strike_price_gte` and `strike_price_lte`, and
        `root_symbol` (the OCC root: BRKB for BRK.B). A value that cannot be read is a 400."""
        today = self.exchange.clock.now().astimezone(NEW_YORK).date()
        exact = _query_date(query, "expiration_date")
        gte, lte = _query_date(query, "expiration_date_gte"), _query_date(query, "expiration_date_lte")
        if exact is not None:
            gte, lte = max(gte or exact, exact), min(lte or exact, exact)
        lte = lte or default_lte
        kind = query.get("type", [None])[0]
        if kind not in (None, "call", "put"):
            raise SimReject(400, None, f"invalid type: {kind}")
        low, high = _query_number(query, "strike_price_gte"), _query_number(query, "strike_price_lte")
        root = query.get("root_symbol", [None])[0]
        dte_min, dte_max = (gte - today).days if gte else 0, (lte - today).days
        if dte_max < dte_min:
            return []
        return sorted(
            (
                c
                for underlying in underlyings
                for c in self.exchange.option_chain(underlying, dte_min, dte_max)
                if (kind is None or c.option_type == kind)
                and (low is None or c.strike >= low)
                and (high is None or c.strike <= high)
                and (root is None or _occ_root(c.symbol) == root)
            ),
            key=lambda c: c.symbol,
        )

    def _data_symbols(self, symbols: list[str], *, crypto: bool = False) -> list[str]:
        """The data API leaves an unknown well-formed symbol out of its answer and refuses a malformed one with
        400 (issue 14, item 12). Each endpoint knows its own class: a pair on the stock endpoint is malformed there
        (400), and a ticker on the crypto endpoint names no pair (left out); both were quoted, BTCUSD as a share."""
        bad = [s for s in symbols if not self.exchange.well_formed(s) or (not crypto and "/" in s)]
        if bad:
            raise SimReject(400, None, f"invalid symbol: {bad[0]}")
        return [s for s in symbols if self.exchange.listed(s) and ("/" in s) == crypto]


def _occ_root(symbol: str) -> str:
    """An OCC symbol's root (BRKB of BRK.B's contracts); the symbol itself when it is not one."""
    parsed = parse_occ(symbol)
    return parsed[0] if parsed else symbol


def _bar_json(bar: MinuteBar, *, whole_volume: bool = True) -> dict[str, Any]:
    """A bar as the data API writes it: stock and option volumes are whole numbers (`"v": 4553`), crypto volumes
    decimals (`"v": 0.3724`) (alpaca-py tests/data/test_historical_*_data.py)."""
    t, o, h, low, c, v, n, vw = bar
    volume: float | int = int(v) if whole_volume and float(v).is_integer() else v
    return {"t": _ts(datetime.fromtimestamp(t, timezone.utc)), "o": o, "h": h, "l": low, "c": c, "v": volume, "n": n,
            "vw": vw}  # fmt: skip


def _chronological(pair: tuple[int, NonTradeActivity]) -> tuple[datetime, int]:
    """By creation time, then as recorded (ids of one instant need not sort as they happened)."""
    return pair[1].created_at or datetime.min.replace(tzinfo=timezone.utc), pair[0]


def _known_pairs() -> set[str]:
    from engine.brokers.sim.prices import BASE_PRICES

    return {s for s in BASE_PRICES if "/" in s}


def _limit(query: dict[str, list[str]], default: int, maximum: int, *, name: str = "limit") -> int:
    raw = query.get(name, [None])[0]
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise SimReject(400, None, f"invalid {name}: {raw}") from None
    if not 1 <= value <= maximum:
        raise SimReject(400, None, f"invalid {name}: {value} is not between 1 and {maximum}")
    return value


def _instant(text: str | None, name: str = "time") -> datetime | None:
    """A query time: YYYY-MM-DD or RFC 3339 (trading-api.json accepts both). One that is neither is a 400 naming the
    parameter (market-data-api.json: "One of the request parameters is invalid"; our message), as `_limit` answers
    a limit: raised as it was, the ValueError left the handler, which printed a traceback on the emulator's console
    and closed the connection without an answer, where Alpaca answers the client."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SimReject(400, None, f"invalid {name}: {text}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _query_date(query: dict[str, list[str]], name: str) -> date | None:
    """A query date (YYYY-MM-DD: the option endpoints' expiration dates), or None when not given; one that is not a
    date is a 400, as `_instant`."""
    raw = query.get(name, [None])[0]
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise SimReject(400, None, f"invalid {name}: {raw}") from None


def _query_number(query: dict[str, list[str]], name: str) -> float | None:
    """A query number (a strike price bound), or None when not given; one that is not a finite number is a 400, as
    `_instant`."""
    raw = query.get(name, [None])[0]
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SimReject(400, None, f"invalid {name}: {raw}") from None
    if not math.isfinite(value):
        raise SimReject(400, None, f"invalid {name}: {raw}")
    return value


def _order_request(body: Any) -> OrderRequest:
    if not isinstance(body, dict):
        raise SimReject(422, 40010000, "request body must be a JSON object")
    kind = body.get("type")
    # A stop order's required price (our message): without it the order is malformed, never a market order.
    if kind in ("stop", "stop_limit") and body.get("stop_price") is None:
        raise SimReject(422, 40010000, f"stop_price is required for {kind} orders")
    if kind == "trailing_stop" and body.get("trail_price") is None and body.get("trail_percent") is None:
        raise SimReject(422, 40010000, "trail_price or trail_percent is required for trailing_stop orders")
    if kind == "stop_limit" and body.get("limit_price") is None:
        raise SimReject(422, 40010000, "limit_price is required for stop_limit orders")
    try:
        return OrderRequest(
            symbol=str(body["symbol"]),
            side=body["side"],
            client_order_id=str(body.get("client_order_id") or uuid.uuid4()),
            # No default: Alpaca answers a body without a type "invalid order type" (alpaca-trade-api-go #202),
            # and one without a time in force is no day order either; the exchange refuses both.
            order_type=cast(Any, str(body.get("type") or "")),  # checked by the exchange, not by the type
            time_in_force=cast(Any, str(body.get("time_in_force") or "")),
            qty=float(body["qty"]) if body.get("qty") is not None else None,
            notional=float(body["notional"]) if body.get("notional") is not None else None,
            limit_price=float(body["limit_price"]) if body.get("limit_price") is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SimReject(422, 40010000, f"invalid order: {exc}") from None


def _replacement(body: Any) -> dict[str, Any]:
    """The changes a PATCH of an order asks for: `qty`, `limit_price` and `client_order_id` (trading-api.json also
    takes `time_in_force`, `stop_price` and `trail`, which the simulated exchange does not model: refused, our
    message, never silently ignored)."""
    if not isinstance(body, dict):
        raise SimReject(422, 40010000, "request body must be a JSON object")
    given = {k: v for k, v in body.items() if v is not None}
    other = sorted(set(given) - {"qty", "limit_price", "client_order_id"})
    if other:
        raise SimReject(422, 40010000, f"replacing {', '.join(other)} is not modelled by the emulator")
    if not given:
        raise SimReject(422, 40010000, "nothing to replace")
    out: dict[str, Any] = {}
    for name in ("qty", "limit_price"):
        if name in given:
            try:
                number = float(str(given[name]))
            except ValueError:
                raise SimReject(422, 40010000, f"invalid {name}: {given[name]!r}") from None
            if not math.isfinite(number) or number <= 0:
                raise SimReject(422, 40010000, f"invalid {name}: {given[name]!r}")
            out[name] = number
    if "client_order_id" in given:
        out["client_order_id"] = str(given["client_order_id"])
    return out


def _position_symbol(path_symbol: str, exchange: SimExchange) -> str:
    for symbol in exchange.positions:
        if position_path_symbol(symbol) == path_symbol:
            return symbol
    return path_symbol


def edited(payload: Any, patch: dict[str, Any], drop: list[str]) -> Any:
    """A deep copy of `payload` with `patch`'s values put at their paths and `drop`'s paths removed (Fault)."""
    out = json.loads(json.dumps(payload))
    for path, value in patch.items():
        _edit(out, path.split("."), value, remove=False)
    for path in drop:
        _edit(out, path.split("."), None, remove=True)
    return out


def _edit(node: Any, parts: list[str], value: Any, *, remove: bool) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        indexes = range(len(node)) if head == "*" else [int(head)] if head.lstrip("-").isdigit() else []
        children: list[tuple[Any, Any]] = [(node, i) for i in indexes if -len(node) <= i < len(node)]
    elif isinstance(node, dict):
        keys = list(node) if head == "*" else [head]
        children = [(node, k) for k in keys if k in node or (not rest and not remove)]
    else:
        return
    for parent, key in children:
        if rest:
            _edit(parent[key], rest, value, remove=remove)
        elif remove:
            del parent[key]
        else:
            parent[key] = value


def _data_path(path: str) -> bool:
    return path.startswith(("/v2/stocks", "/v1beta1/", "/v1beta3/"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm each answer waited for the client's
    # delayed ACK (about 20 ms a request on loopback).
    disable_nagle_algorithm = True
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
        return

    def handle(self) -> None:
        """A client that dies mid-connection (an engine killed with SIGKILL, as the crash tests and a rehearsal
        with `kill -9` do) resets it: the client's end, not the emulator's error, so no traceback on its console."""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def _handle(self, method: str) -> None:
        emulator = self.emulator
        self._shaping: Fault | None = None  # this request's fault, if it shapes the body on the wire
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {k: v for k, v in self.headers.items() if k.lower() != "apca-api-secret-key"}
        if path.startswith(ADMIN_PREFIX):  # the emulator's own controls: not logged, never faulted
            with emulator.exchange.lock:
                return self._send(*emulator.admin(method, path, body))
        emulator.requests.append(LoggedRequest(method, self.requestline, path, query, body, headers))
        if self.requestline.split(" ")[1].startswith("//"):  # a trailing slash in the base URL (see the reference)
            return self._send(404, {"code": 40410000, "message": "double slash in path"})
        refusal = self._auth_refusal(path)
        if refusal is not None:
            return self._send(*refusal)
        trading = path.startswith("/v2/") and not path.startswith("/v2/stocks")
        rate_headers, over = emulator.count_request() if trading else ({}, False)
        if over:
            return self._send(429, {"code": 42910000, "message": "rate limit exceeded"}, rate_headers)
        fault = emulator.take_fault(method, path)
        if fault and fault.hang_seconds:
            emulator._release.wait(fault.hang_seconds)
        if fault and fault.disconnect and not fault.after:
            return self._disconnect()
        if fault:
            rate_headers = {**rate_headers, **fault.headers}
            self._shaping = fault if fault.cut_at is not None or fault.trickle_seconds or fault.header_seconds else None
        if fault and not fault.after and fault.status and not fault.edits:
            return self._send_raw(fault.status, fault.body, fault.content_type, rate_headers)
        try:
            with emulator.exchange.lock:
                status, payload = emulator.route(method, path, query, body)
        except SimReject as exc:
            status, payload = exc.status, exc.body()
        if fault and fault.disconnect:
            return self._disconnect()
        if fault and fault.rewrite is not None:
            return self._send_raw(*fault.rewrite(status, payload), fault.content_type, rate_headers)
        if fault and fault.edits:
            return self._send(status, edited(payload, fault.patch, fault.drop), rate_headers)
        if fault and fault.after and fault.status:
            return self._send_raw(fault.status, fault.body, fault.content_type, rate_headers)
        self._send(status, payload, rate_headers)

    def _disconnect(self) -> None:
        """No answer at all: the connection closes under the client (a dropped connection, a crashed proxy)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _auth_refusal(self, path: str) -> tuple[int, Any] | None:
        """Bad keys: 401 code 40110000 on the trading API (reference §5); 403 {"message": "forbidden."} on the data
        API (alpaca-trade-api-go issue #194, Alpaca-API issue #228). Crypto data needs no keys, but wrong ones
        given are refused like the other data paths."""
        emulator = self.emulator
        if emulator.key is None:
            return None
        key, secret = self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")
        if key == emulator.key and secret == emulator.secret:
            return None
        if path.startswith("/v1beta3/crypto"):
            return None if key is None and secret is None else (403, {"message": "forbidden."})
        if _data_path(path):
            return 403, {"message": "forbidden."}
        return 401, {"code": 40110000, "message": "request is not authorized"}

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, "" if payload is None else json.dumps(payload), "application/json", headers or {})

    def _send_raw(self, status: int, text: str, content_type: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode("utf-8")
        if data and (status < 200 or status in (204, 304)):
            # HTTP gives these no body, so the client reads none: the bytes would be left on the kept-alive
            # connection and read as the start of the next answer (a test's next request failing by the timing)
            self.close_connection = True
        try:
            self.send_response(status)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if not self._write_headers_slowly():
                self.end_headers()
            self._write_body(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def _write_headers_slowly(self) -> bool:
        """The headers gathered so far, and `Fault.header_lines` more, sent a line at a time with
        `Fault.header_seconds` between them, then the blank line that ends them. False, nothing sent, when the
        request's fault does not ask for it (`end_headers` sends them at once)."""
        shaping = getattr(self, "_shaping", None)
        if shaping is None or not shaping.header_seconds:
            return False
        gathered: list[bytes] = getattr(self, "_headers_buffer", [])
        lines = b"".join(gathered).splitlines(keepends=True)
        gathered.clear()  # sent below, not by end_headers
        lines += [f"X-Slow-{n}: {n}\r\n".encode() for n in range(shaping.header_lines)]
        for line in [*lines, b"\r\n"]:
            if self.emulator._release.wait(shaping.header_seconds):  # the emulator is stopping
                self._disconnect()
                return True
            self.wfile.write(line)
            self.wfile.flush()
        return True

    def _write_body(self, data: bytes) -> None:
        """The body as the request's fault shapes it (`Fault.cut_at`, `Fault.trickle_seconds`), else at once."""
        shaping = getattr(self, "_shaping", None)
        if shaping is None:
            self.wfile.write(data)
            return
        if shaping.cut_at is not None:
            self.wfile.write(data[: shaping.cut_at])
            self.wfile.flush()
            return self._disconnect()
        step = max(shaping.trickle_bytes, 1)
        for at in range(0, len(data), step):
            if self.emulator._release.wait(shaping.trickle_seconds):  # the emulator is stopping
                return self._disconnect()
            self.wfile.write(data[at : at + step])
            self.wfile.flush()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")
