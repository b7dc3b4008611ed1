"""The Alpaca adapter over alpaca-py, hardened for a fail-closed engine (reference/alpaca-api.md §1, §6).

- Every HTTP request gets a timeout (the SDK sets none and would block forever on a stalled socket).
- The SDK's silent retry on 429/504 is switched off: the engine owns retries, and an order POST is never
  repeated blindly (after any error the engine looks the order up by client_order_id).
- Trading requests pass a client-side token bucket, market-data requests one of their own (a budget apart at
  Alpaca); each host's X-RateLimit-* and Retry-After headers tighten its bucket, and a request held back while the
  server says to wait is a BrokerError with `held` set (the engine counts the hold once, not each such request).
- Every failure (timeouts, refused connections, 4xx/5xx, HTML or malformed bodies, shapes the SDK cannot
  validate) becomes one BrokerError with a kind and a reason: what the answer means, read from its status,
  Alpaca's code and its message (engine/brokers/errors.py). Keys never appear in a message.
- Symbols are normalised: positions say BTCUSD, the engine says BTC/USD.
- Values are passed through as sent: a short position's sign is applied once, a quote side at 0 stays 0, a
  contract without greeks is kept (NaN greeks), every order status is kept as Alpaca names it.
- The account is read raw through the SDK's own REST client (`TradingClient.get`): alpaca-py 0.44.0's model
  drops `intraday_adjustments` and it has no activities method, and both are needed for daily P&L.
- The account (not through its model either), positions and orders (the open-order list, lookups, the answers to
  a submit or a close) are read raw too, each field the engine reads checked here: alpaca-py's models also
  validate fields the engine never reads, against enums that lag the API (a position's `exchange`, alpaca-py
  issue #704; an order's `order_class`, `position_intent`, legs) or as types Alpaca need not keep (an account's
  `sma` as text), and one new value there made a whole answer unreadable and the engine halt for ever.
  Assets are read raw for the same reason (their `exchange`).

alpaca-py is imported lazily: it takes about half a second, and `--validate` must stay fast.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from time import monotonic as _monotonic
from typing import Any, TypeVar

from engine.brokers import account_rules, order_rules
from engine.brokers.account_rules import LAST_EQUITY_CONFIRMATIONS, BasisKeeper
from engine.brokers.base import (
    ACCOUNT_STATUSES,
    NON_TRADE_ACTIVITY_TYPES,
    NOT_OURS,
    ORDER_AMOUNTS,
    ORDER_FIXED,
    TRADE_LIKE_ACTIVITY_TYPES,
    Account,
    Asset,
    AssetClass,
    BrokerError,
    BulkResult,
    ErrorKind,
    Holding,
    MarketClock,
    NonTradeActivity,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    PositionsInPart,
    PositionsUnreadable,
    Quote,
    same_amount,
    worse_than_limit,
)
from engine.brokers.deadline import answer_by, bound_answers
from engine.brokers.errors import classify
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.snapshot import log
from engine.brokers.symbols import asset_class_of, contract_multiplier, normalize, parse_occ, position_path_symbol
from engine.core import jsontext
from engine.core.calendar import NEW_YORK
from engine.core.clock import Clock, SystemClock
from engine.core.journal import quoted

T = TypeVar("T")
OPEN_ORDERS_LIMIT = 500  # /v2/orders answers at most 500 orders, and gives no next page (reference §2)
ACTIVITY_PAGE_SIZE = 100  # the endpoint's maximum (trading-api.json)
ACTIVITY_PAGES = 20  # a day of cash movements is a handful; more pages than this is not an answer we understand
OPTION_FEEDS = ("indicative", "opra")
ASSET_CLASSES = frozenset({"us_equity", "us_option", "crypto"})  # base.AssetClass
# The values of the fields the engine reads from positions and orders, as alpaca-py 0.44.0's enums name them
# (PositionSide, OrderSide, OrderType, TimeInForce). Positions and orders are read raw (see get_positions): a
# value outside these in a field the engine reads is refused; fields it does not read are not looked at.
POSITION_SIDES = frozenset({"long", "short"})
ASSET_STATUSES = frozenset({"active", "inactive"})
ORDER_SIDES = frozenset({"buy", "sell"})
ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
NAN = float("nan")
GREEK_SLACK = 1e-4  # how far a model's rounding may put a greek past its bound (a far call's delta at -0.00001)
NOTIONAL_SLACK = 1.05  # a notional order's fill may pass its amount by a rounding of the quantity, not by more
# A day's largest answers are an option chain page (1,000 contracts, well under a megabyte) and the asset list
# (tens of thousands of assets, a few megabytes); a body past this is not an answer we understand.
MAX_BODY_BYTES = 64 * 1024 * 1024
# The SDK follows `next_page_token` for as long as the server gives one. A chain of 100 pages of 1,000 contracts
# is past any underlying's; more is a server that never stops paging, and the tick would never end.
MAX_REQUESTS_PER_CALL = 100
# The longest a server's X-RateLimit-Reset or Retry-After may hold our trading (or data) requests back: Alpaca's budget is
# per minute, so a later reset is a header we cannot read, and it must not stop the engine from ever asking again.
MAX_BACKOFF = timedelta(seconds=60)
# The market-data API's budget (reference §7: Basic plan 200 requests per minute, a budget apart from trading's),
# when no `broker.max_data_requests_per_minute` is given.
DATA_REQUESTS_PER_MINUTE = 190
# How far the broker's clock may be from ours. An emulator started at a simulated time (`emulator --start`) is
# days away, and the engine judges quotes by its own clock anyway; a clock years away (9999-01-01) is junk, and
# the exchange calendar could not say whether the market is open then.
MAX_CLOCK_SKEW = timedelta(days=366)
# The longest the market stays shut is a long weekend with holidays on both sides (four or five days, or a week
# in 2001 and 2012): a next open or close further away than this is not a clock we can read.
MAX_SESSION_GAP = timedelta(days=14)
# How long after the close the broker's clock may still say open (our clock a little ahead of Alpaca's, an answer
# on its way across the close). Past it, the answer is not about now: a cached or replayed one (a proxy, a CDN).
CLOCK_LAG = timedelta(seconds=60)
# The largest sum of dollars an answer may hold: a trillion, more than any one account at any broker. An equity of
# 1e300, every figure of the account consistent with it, was read as one: the budgets and the room grew with it,
# and the bots sent orders for 2.5e297 shares of AAPL and 4e296 option contracts. A price, a market value, a
# position's cost or an order's amount past it is junk, not money (a position of 1e15 shares of AAPL, too).
MAX_USD = 1e12
# Orders remembered by `_OrderMemory` (a day has tens to a few hundred; the oldest are forgotten first).
ORDERS_REMEMBERED = 20_000
# Answers in a row about one order that contradict what the broker said of it before, after which that earlier word
# is dropped (`_OrderMemory.check`): a lie said twice is still refused, a glitch is not held to for ever.
MEMORY_OVERRULED = 3


def _not_stopping() -> str | None:
    """`AlpacaAPI.stopping` until a runner says otherwise: never stopping."""
    return None


class Unreadable(ValueError):
    """A value in a broker answer that the engine cannot read (missing where required, not a finite number, a
    negative quantity or price, an unknown enum, a time without a zone). The whole answer is then a bad response:
    a value is never guessed, defaulted or passed on as NaN or infinity, which every comparison would misread."""


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _shown(value: Any) -> str:
    """A value of an answer, quoted in a message: cut to 40 characters only when the adapter scrubs the message
    (`AlpacaAPI._scrub`), after both keys are masked. Cut here, a key straddling the cut kept its first characters,
    which no mask then found (an account whose currency held a key showed its first seven)."""
    return quoted(repr(value), 40)


def _float(value: Any, name: str = "a number", *, minimum: float | None = None, usd: bool = False) -> float | None:
    """An optional number: None (or "") when the broker did not send it, otherwise a finite float. "NaN", "inf",
    "1e400" (infinity once parsed), "abc", "1_000" and booleans are unreadable, never a value; so is a number
    under `minimum` (a negative price or quantity), and a sum of dollars (`usd`) past MAX_USD either way."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Unreadable(f"{name} is {_shown(value)}, not a number")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        # float() also reads "1_000", Arabic-Indic or full-width digits and padding: no JSON writer spells a number
        # so, and what it would make of one is a guess
        raise Unreadable(f"{name} is {_shown(value)}, not a decimal number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise Unreadable(f"{name} is {_shown(value)}, not a number") from None
    if not math.isfinite(number):
        raise Unreadable(f"{name} is {_shown(value)}, not a finite number")
    if minimum is not None and number < minimum:
        raise Unreadable(f"{name} is {_shown(value)}, below {minimum:g}")
    if usd:
        _within_usd(number, name)
    return number


def _within_usd(dollars: float, name: str) -> None:
    """Unreadable when a sum of dollars is past MAX_USD, either way."""
    if abs(dollars) > MAX_USD:
        raise Unreadable(f"{name} is {dollars:g} USD, past {MAX_USD:g}: more than any account holds")


def _required(value: Any, name: str, *, minimum: float | None = None, usd: bool = False) -> float:
    """A number the engine cannot do without: missing or empty is a bad response, never a zero."""
    number = _float(value, name, minimum=minimum, usd=usd)
    if number is None:
        raise Unreadable(f"{name} is missing")
    return number


def _flag(raw: Mapping[str, Any], name: str, of: str = "") -> bool:
    """A flag the engine blocks trading on: a JSON true or false, never a default for one that is missing."""
    value = raw.get(name)
    if not isinstance(value, bool):
        whose = f"{of}'s " if of else ""
        raise Unreadable(f"{whose}{name} is {'missing' if value is None else _shown(value)}, not true or false")
    return value


def _level(value: Any, name: str) -> int | None:
    """An options level: absent when the broker did not say (None), else a whole number from 0 up, as a JSON
    integer or its decimal text ("2"); a fraction (2.0 too, which pydantic took), a word or a negative is unreadable."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unreadable(f"{name} is {_shown(value)}, not a level from 0 up")
    return value


def _text(value: Any, name: str) -> str:
    """A name the engine keys on (a symbol, a side): present and not empty."""
    text = _enum_value(value) if value is not None else ""
    if not text or text == "None":
        raise Unreadable(f"{name} is missing")
    return text


def _raw_text(raw: Mapping[str, Any], key: str, name: str) -> str:
    """A name the engine keys on, from a raw answer: a JSON string, present and not empty (a number is not a
    symbol, an id or a side)."""
    value = raw.get(key)
    if value is None or value == "":
        raise Unreadable(f"{name} is missing")
    if not isinstance(value, str):
        raise Unreadable(f"{name} is {_shown(value)}, not text")
    return value


def _choice(raw: Mapping[str, Any], key: str, name: str, allowed: frozenset[str]) -> str:
    """An enum the engine reads, from a raw answer: one of the values it knows, exactly as Alpaca spells them."""
    text = _raw_text(raw, key, name)
    if text not in allowed:
        raise Unreadable(f"{name} is {_shown(text)}, not one of {', '.join(sorted(allowed))}")
    return text



def _account_id(value: Any) -> str | None:
    """The account's `id`, a UUID as Alpaca writes it, or None. Only the run's start reads it (which account a
    state file holds): a missing or odd one leaves that unknown, which refuses the start, and does not make every
    later account answer unreadable."""
    try:
        return _uuid(value, "the account's id")
    except Unreadable:
        return None

def _uuid(value: Any, name: str) -> str:
    """An id the engine keys on and sends back (an order's id): a UUID, in its canonical lower-case spelling."""
    if not isinstance(value, str):
        raise Unreadable(f"{name} is {'missing' if value is None else _shown(value)}, not a UUID")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Unreadable(f"{name} is {_shown(value)}, not a UUID") from None


def _objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    """A raw list answer whose items are JSON objects."""
    if not isinstance(value, list):
        raise Unreadable(f"expected a list of {what}, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, dict):
            raise Unreadable(f"an item of the {what} is {type(item).__name__}, not an object")
    return value


def _aware(value: datetime, name: str = "a time") -> datetime:
    """A time with its zone. One without is unreadable: guessing UTC would move the clock's New York times by
    four or five hours, and a quote's age with them."""
    if not isinstance(value, datetime):
        raise Unreadable(f"{name} is {_shown(value)}, not a time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise Unreadable(f"{name} is {value.isoformat()}, a time without a zone")
    try:
        value.astimezone(timezone.utc)  # 0001-01-01T00:00+05:00 is in year 0 in UTC: no datetime holds it
    except OverflowError:
        raise Unreadable(f"{name} is {value.isoformat()}, a time that cannot be told in UTC") from None
    return value


def _timestamp(value: Any, name: str = "a time") -> datetime | None:
    """An RFC 3339 time from a raw answer; its fraction may have nine digits (Python reads six)."""
    if value is None or value == "":
        return None
    text = _NANOS.sub(r"\1", str(value)).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Unreadable(f"{name} is {_shown(value)}, not a time") from None
    return _aware(parsed, name)


def _unique(items: Sequence[T], key: Callable[[T], str], what: str) -> list[T]:
    """The items, refused when two share a key: two positions in one symbol, or two orders with one id, cannot
    both be true, and a dict built from them would silently keep one."""
    seen: set[str] = set()
    for item in items:
        k = key(item)
        if k in seen:
            raise Unreadable(f"the broker listed {what} {k!r} twice")
        seen.add(k)
    return list(items)


_NANOS = re.compile(r"(\.\d{6})\d+")
# A number as Alpaca writes one in a string ("99429", "0.00005", "-5"), in JSON's grammar (ASCII digits only).
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
# The numbers of the data API, which pydantic reads from the wire (quotes, trades, option snapshots): sent as a
# string, one that is not a plain decimal ("1_0", full-width digits) would be read as pydantic reads it (10).
_DATA_NUMBER_AS_ODD_TEXT = re.compile(
    rb'"(?:bp|ap|bs|as|p|s|delta|gamma|rho|theta|vega|impliedVolatility)"\s*:\s*'
    rb'"(?!-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")'
)
# The numbers the engine reads, where pydantic's lax parsing turns a JSON true/false into 1.0/0.0 (or 1/0): a
# quote's `"bp": true`, an order's `"filled_qty": true` or an account's `"options_trading_level": false` would
# be read as a price, a quantity or a level. Alpaca sends these as numbers or decimal strings, never booleans.
_NUMBER_AS_BOOL = re.compile(
    rb'"(?:bp|ap|bs|as|p|qty|filled_qty|filled_avg_price|limit_price|stop_price|notional|delta|gamma|rho|theta|vega|'
    rb"impliedVolatility|options_trading_level|options_approved_level|daytrade_count|min_order_size|"
    rb'min_trade_increment|price_increment|net_amount|status)"\s*:\s*(?:true|false)\b'
)


def _body(text: str) -> tuple[int | None, str]:
    """Alpaca's error code and message from an error body; (None, a description) when it is not JSON."""
    try:
        parsed = jsontext.loads(text)
    except ValueError:  # not JSON, or nested past the recursion limit (which json.loads raises as RecursionError)
        return None, "a non-JSON body"
    if not isinstance(parsed, dict):
        return None, text
    code = parsed.get("code")
    readable = isinstance(code, int) and not isinstance(code, bool) and abs(code) < 10**12
    return (code if readable else None), str(parsed.get("message", text))


def read_body(response: Any, *, deadline: float, limit: int) -> None:
    """A streamed response's whole body, read now into `response.content`: refused when it declares or reaches more
    than `limit` bytes, or is still arriving at `deadline` (a `time.monotonic()` instant; a server that trickles
    would otherwise hold the caller for ever).

    Read as it arrives (`read1`: one read of the socket, whatever it holds), so the deadline is looked at between
    reads of at most the read timeout each. requests' `iter_content` waits for each chunk to fill: a body trickled
    a few bytes at a time, each within the read timeout, held the call until all of it came (a 1 KB account at 20
    bytes a second: 49 s against a 0.5 s timeout; a chain page, hours), and only then was it found late."""
    from requests.exceptions import ChunkedEncodingError, ContentDecodingError, ReadTimeout
    from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

    try:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise BrokerError("bad_response", f"an answer of {int(declared):,} bytes (more than {limit:,})")
        chunks: list[bytes] = []
        size = 0
        while True:
            if _monotonic() > deadline:
                raise BrokerError("timeout", "the answer was still arriving at its deadline")
            try:  # as requests' iter_content names urllib3's failures, a timeout named as one
                chunk = response.raw.read1(64 * 1024, decode_content=True)
            except ReadTimeoutError as exc:
                raise ReadTimeout(exc) from None
            except ProtocolError as exc:  # the connection closed mid-body, a broken chunk
                raise ChunkedEncodingError(exc) from None
            except DecodeError as exc:
                raise ContentDecodingError(exc) from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BrokerError("bad_response", f"an answer of more than {limit:,} bytes")
            chunks.append(chunk)
    except BaseException:
        response.close()  # the connection is in an unknown state: never reused
        raise
    response._content = b"".join(chunks)  # what requests keeps a read body in; .text and .json() read it
    response._content_consumed = True


def _strict_json(content: bytes, **_: Any) -> Any:
    """A broker answer's JSON, read as `jsontext.loads_strict` reads it (keyword arguments of `response.json`
    ignored: the SDK passes none). What two readers would read two ways is an unreadable answer."""
    try:
        return jsontext.loads_strict(content)
    except jsontext.Ambiguous as exc:
        said = f"the key {_shown(exc.key)} is given twice in one object" if exc.key is not None else str(exc)
        raise Unreadable(f"the body is not JSON to rely on: {said}") from None


class _OrderMemory:
    """What this run asked for and what the broker has said about each order, so that an answer contradicting an
    earlier one is refused (`Unreadable`), never booked. An order never changes what it is: its client_order_id,
    symbol, side, type, time in force, quantity, notional and limit price are fixed (Alpaca changes an order by
    replacing it with another, under a new id), and its filled quantity never goes down. The broker's order under
    one of our client_order_ids is the order we asked for, and a replacement is in the symbol and on the side of
    the order it replaces. Each of these, believed, moved a bot's position: a fill counted twice (filled_qty 5,
    then 3, then 5 again booked 7), a sell of MSFT booked as a buy of AAPL, an order of 100 shares for one of 10.

    Forgetful by design: a restart starts empty (the engine's own rows are then the record), past
    ORDERS_REMEMBERED the oldest are forgotten, and what MEMORY_OVERRULED answers in a row contradict is dropped
    (`_overruled_once`): the memory cannot tell the glitch from the truth, only the engine's rows can."""

    IDENTITY = ("client_order_id", *ORDER_FIXED, "asset_class")
    AMOUNTS = ORDER_AMOUNTS

    def __init__(self, size: int = ORDERS_REMEMBERED):
        self.size = size
        self._orders: OrderedDict[str, Order] = OrderedDict()  # order id -> the latest answer read
        self._ids: OrderedDict[str, str] = OrderedDict()  # client_order_id -> order id
        self._asked: OrderedDict[str, OrderRequest] = OrderedDict()  # client_order_id -> what we sent
        self._replaced: OrderedDict[str, str] = OrderedDict()  # replacement id -> the id of the order it replaces
        self._overruled: OrderedDict[str, int] = OrderedDict()  # client_order_id -> answers in a row contradicting

    def asked(self, request: OrderRequest) -> None:
        """Recorded before the request leaves: an answer that is lost and then looked up is held to it too."""
        self._put(self._asked, request.client_order_id, request)

    def check(self, order: Order, *, looked_up: bool = False, sent: bool = False) -> None:
        """Unreadable when the answer contradicts what was asked or said before about the order. `looked_up`: the
        answer to a lookup by our client_order_id, which ends the memory's pairing it contradicts (`_unpair`).
        `sent`: the answer to our own POST, the order that request made; any other answer (a lookup, a listing) that
        is not what we sent is the order of someone else using our id, and said so (`_as_asked`)."""
        name = f"order {order.client_order_id!r}"
        request = self._asked.get(order.client_order_id)
        if request is not None:
            self._as_asked(order, request, name, found=not sent)  # what we sent is known: never overruled
        try:
            self._as_said(order, name, looked_up=looked_up)
        except Unreadable:
            self._overruled_once(order)
            raise
        self._overruled.pop(order.client_order_id, None)

    def _overruled_once(self, order: Order) -> None:
        """One more answer in a row contradicting what was said of the order before; at MEMORY_OVERRULED, that
        earlier word is dropped, and the next answer is read as it stands. The memory cannot tell which answer was
        the glitch, and what it remembers may be one that nothing confirmed: after a restart, the first listing of a
        working order glitched (its symbol, its time in force, a fill further than the truth) was held to, every
        true answer after it refused for the rest of the run, and the halt never ended once the faults stopped. The
        engine's rows stay the record of what was booked (orders.py `_contradicts`), as after a restart."""
        count = self._overruled.get(order.client_order_id, 0) + 1
        if count < MEMORY_OVERRULED:
            self._put(self._overruled, order.client_order_id, count)
            return
        self._overruled.pop(order.client_order_id, None)
        ids = {order.id, self._ids.pop(order.client_order_id, order.id)}
        for order_id in ids:
            self._orders.pop(order_id, None)
        for replacement, replaced in list(self._replaced.items()):
            if replacement in ids or replaced in ids:
                del self._replaced[replacement]

    def _as_said(self, order: Order, name: str, *, looked_up: bool) -> None:
        known = self._ids.get(order.client_order_id)
        if known is not None and known != order.id:
            if looked_up:
                self._unpair(order.client_order_id, known)
            raise Unreadable(f"{name} is {order.id}, where the broker said {known} before")
        before = self._orders.get(order.id)
        if before is not None:
            for field in self.IDENTITY:
                if getattr(before, field) != getattr(order, field):
                    raise Unreadable(f"order {order.id}'s {field} was {_shown(getattr(before, field))}, now "
                                     f"{_shown(getattr(order, field))}")  # fmt: skip
            for field in self.AMOUNTS:
                was, now = getattr(before, field), getattr(order, field)
                if was is not None and now is not None and not same_amount(was, now):
                    raise Unreadable(f"{name}'s {field} was {was:g}, now {now:g}")
            if order.filled_qty < before.filled_qty and not same_amount(order.filled_qty, before.filled_qty):
                raise Unreadable(f"{name}'s filled_qty went down from {before.filled_qty:g} to {order.filled_qty:g}")
            if _replaced_by(before) and order.replaced_by != before.replaced_by:
                raise Unreadable(f"{name} was replaced by {before.replaced_by}, now {_shown(order.replaced_by)}")
        replaced_id = self._replaced.get(order.id) or order.replaces
        replaced = self._orders.get(replaced_id) if replaced_id else None
        if order.id in self._replaced and order.replaces != replaced_id:
            raise Unreadable(f"{name} replaced {replaced_id}, the broker says it replaces {_shown(order.replaces)}")
        if replaced is not None:
            for field in ("symbol", "side", "asset_class"):
                if getattr(replaced, field) != getattr(order, field):
                    raise Unreadable(f"{name} replaces an order with {field} {_shown(getattr(replaced, field))}, "
                                     f"not {_shown(getattr(order, field))}")  # fmt: skip

    def _unpair(self, client_order_id: str, order_id: str) -> None:
        """Forget that `client_order_id` is `order_id`, when a lookup by the client_order_id (the broker's own index
        of our ids, unique in the account) names another id. The pairing came from one earlier answer, and may be
        the glitch: a send answered with another order's id was remembered, and every lookup after it, each naming
        the order's true id, was refused for the rest of the run; the engine's own correction (orders.py
        `_id_confirmed`, which reads the listing and this lookup) never got an answer, and the halt never ended once
        the faults stopped (answerfuzz seed 1073). The lookup is still refused (the broker contradicted itself: one
        halt); the next one is read as it stands, against the engine's row (orders.py `_contradicts`)."""
        self._ids.pop(client_order_id, None)
        said = self._orders.get(order_id)
        if said is not None and said.client_order_id == client_order_id:
            del self._orders[order_id]  # the order under that id, if another, is no longer held to be this one

    def remember(self, order: Order) -> None:
        self._put(self._orders, order.id, order)
        self._put(self._ids, order.client_order_id, order.id)
        replaced_by = _replaced_by(order)
        if replaced_by:
            self._put(self._replaced, replaced_by, order.id)

    def _as_asked(self, order: Order, request: OrderRequest, name: str, *, found: bool) -> None:
        """Unreadable when `order` is not the order `request` asked for. `found`: read under our id by a lookup or a
        listing, not the POST's own answer: then the order may be another engine's (two state files on one
        account give the same ids), and the reason says so, as the engine says of an order made before its row
        (orders.py `_foreign`). Said as a glitch only, the halt left the trader looking for a broker fault."""
        said = "the broker's order under that id has" if found else "the broker has"
        whose = f": not the order sent; {NOT_OURS}" if found else ""
        for field in ORDER_FIXED:
            value = getattr(request, field)
            if getattr(order, field) != value:
                raise Unreadable(f"{name} was sent with {field} {_shown(value)}, {said} {_shown(getattr(order, field))}{whose}")
        for field in self.AMOUNTS:
            value, got = getattr(request, field), getattr(order, field)
            if value is not None and (got is None or not same_amount(value, got)):
                shown = "none" if got is None else f"{got:g}"
                raise Unreadable(f"{name} was sent with {field} {value:g}, {said} {shown}{whose}")

    def _put(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.size:
            table.popitem(last=False)


def _replaced_by(order: Order) -> str | None:
    """The order that replaced `order`, held to for good only once its status says it was replaced (an end: Alpaca
    replaces an order once). A `replaced_by` on an order still working, filled or cancelled says nothing the order's
    status does: held to, one glitched listing naming a replacement for a working order made every true answer
    after it (none named) a change of replacement, and the order it named one that replaced nothing, refused for the
    rest of the run: a halt that never ended once the faults stopped (answerfuzz seed 1054)."""
    return order.replaced_by if order.status == "replaced" else None


def _retry_after_seconds(value: Any, now: datetime) -> float | None:
    """A Retry-After header in seconds from `now`: delay-seconds, or an HTTP date (RFC 9110 §10.2.3); None when it
    cannot be read (the bucket keeps its own count)."""
    if not value:
        return None
    text = str(value).strip()
    try:
        wait = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": a date said to be UTC
            when = when.replace(tzinfo=timezone.utc)
        wait = (when - now).total_seconds()
    return wait if math.isfinite(wait) else None


class AlpacaAPI:
    name = "alpaca"

    def __init__(
        self,
        key: str,
        secret: str,
        *,
        paper: bool,
        api_base_url: str | None,
        data_base_url: str | None,
        timeout_seconds: float,
        bucket: TokenBucket,
        data_bucket: TokenBucket | None = None,
        feed: str = "iex",
        options_feed: str = "indicative",
        clock: Clock | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_requests_per_call: int = MAX_REQUESTS_PER_CALL,
    ):
        from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        from engine.brokers.factory import check_key
        from engine.core.journal import Secrets

        if not key or not secret:
            raise BrokerError("config", "ALPACA_KEY and ALPACA_SECRET must both be set")
        check_key("ALPACA_KEY", key)  # as the factory checks them: every message here is masked of both keys
        check_key("ALPACA_SECRET", secret)
        if options_feed not in OPTION_FEEDS:
            raise BrokerError("config", f"options feed {options_feed!r} is not one of {', '.join(OPTION_FEEDS)}")
        self._secrets = Secrets((key, secret))
        self.paper = paper
        self.feed = feed
        # Without an OPRA subscription Alpaca serves `indicative` (trades delayed 15 minutes, quotes modified);
        # the feed is named on every option data request so the answer never depends on the subscription.
        self.options_feed = options_feed
        self.clock: Clock = clock or SystemClock()
        self.requests_made = 0
        # (balance_asof, last_equity): the basis of the daily P&L (`_last_equity_steady`)
        self._basis: BasisKeeper[str | None] = BasisKeeper()
        self._cash_moved_seen: tuple[str, float, float] | None = None  # (balance_asof, equity, moved): see
        self._cash_moved_alone: tuple[float, int] | None = None  # `_cash_moved_with_equity`
        self._orders_seen = _OrderMemory()  # what the broker said about each order: see _order
        self.bucket = bucket  # the trading API's budget
        # The market-data API's, a separate one at Alpaca (reference §7): without one, a 429 from the data host (a
        # `data fetch` beside the engine spends the same plan's budget) was asked again every tick.
        self.data_bucket = data_bucket or TokenBucket(DATA_REQUESTS_PER_MINUTE, self.clock)
        self.timeout = (min(timeout_seconds, 5.0), timeout_seconds)
        # Reading one answer (its pages included) must end: a body is read up to `max_body_bytes` and for at most
        # twice the timeout, and one call makes at most `max_requests_per_call` requests.
        self.max_body_bytes = max_body_bytes
        self.max_requests_per_call = max_requests_per_call
        self._call_requests: int | None = None
        self._page_tokens: set[str] = set()
        # Why the run is stopping (a signal's name), or None: once it says one, no read is asked (`_harden`). A
        # tick cut short by a stop, and the summary after it, waited out every read of a hung broker, each its own
        # timeout: a SIGTERM took 50 to 130 s to end the run, past systemd's TimeoutStopSec. Set by the runner.
        self.stopping: Callable[[], str | None] = _not_stopping
        self.trading = TradingClient(key, secret, paper=paper, url_override=api_base_url)
        self.stocks = StockHistoricalDataClient(key, secret, url_override=data_base_url)
        self.crypto = CryptoHistoricalDataClient(key, secret, url_override=data_base_url)
        self.options = OptionHistoricalDataClient(key, secret, url_override=data_base_url)
        self._harden(self.trading, self.bucket, host="trading")
        for client in (self.stocks, self.crypto, self.options):
            self._harden(client, self.data_bucket, host="data")

    def _harden(self, client: Any, bucket: TokenBucket, *, host: str) -> None:
        """Timeouts, no silent retries, request counting and the host's token bucket (its answers' rate-limit
        headers observed), on the SDK's private session."""
        for attribute in ("_session", "_retry", "_retry_codes"):
            if not hasattr(client, attribute):
                raise BrokerError("config", f"alpaca-py changed: {type(client).__name__} has no {attribute}")
        client._retry = 0
        client._retry_codes = []
        session = client._session
        missing = bound_answers(session)  # headers and body within one deadline, not per line (`_read_body`)
        if missing is not None:
            raise BrokerError("config", missing)
        send = session.request

        def request(method: str, url: str, **kwargs: Any) -> Any:
            stopping = self.stopping() if method.upper() == "GET" else None
            if stopping is not None:
                # A read asked for once the run is stopping is not sent: what it would have said is unread, as for any
                # failed read (the tick's entries blocked), held (`BrokerError.held`: not a failure of the broker's).
                # Writes still go: an order whose intent the tick committed is sent, a cancel asked for is asked.
                raise BrokerError("stopping", f"not asked: the run is stopping ({stopping})", held=True)
            self._count_page(kwargs.get("params"))
            refused = bucket.take()
            if refused == "held":  # the server said to wait: not sent, and not one more failure (`BrokerError.held`)
                until = bucket.held_until()
                till = f" until {until:%H:%M:%S} UTC" if until is not None else ""
                message = f"held back: the {host} API's rate limit says to wait{till}"
                raise BrokerError("rate_limited", message, held=True)
            if refused == "empty":
                raise BrokerError("rate_limited", f"client-side budget of {host} requests per minute is used up")
            kwargs.setdefault("timeout", self.timeout)
            kwargs["stream"] = True  # the body is read here, within a size and a time limit
            self.requests_made += 1
            started = _monotonic()
            with answer_by(self._deadline(started)):
                response = send(method, url, **kwargs)
                self._observe_rate_limit(response.headers, bucket)
                self._read_body(response, started)
            if 300 <= response.status_code < 400:
                # alpaca-py follows no redirect (allow_redirects=False) and raises from 400 up only: a 3xx would be
                # read as the answer, and one with no body as a DELETE the broker took (204)
                status = response.status_code
                raise BrokerError(
                    "bad_response", f"HTTP {status}: a redirect, not an answer", status=status, reason="bad_response"
                )
            self._json_answer(response)
            self._no_misread_numbers(response, data_api=host == "data")
            return response

        session.request = request

    @staticmethod
    def _no_misread_numbers(response: Any, *, data_api: bool) -> None:
        """A JSON true or false where Alpaca sends a number is refused on the wire, before pydantic reads it as
        1.0 or 0.0 (a quote's bid, an order's filled quantity). Quote and chain pages seldom hold a boolean at
        all: the substring test spares them the pattern. So is a data-API number sent as a string that is not a
        plain decimal ("1_0", which pydantic reads as 10); the trading API's answers are read raw, their numbers
        held to the same by `_float`, so their bodies are spared that scan (1.5 ms on a 350 KB page)."""
        body = response.content
        if response.status_code >= 300:
            return
        found = _DATA_NUMBER_AS_ODD_TEXT.search(body) if data_api else None
        if found:
            name = found.group().split(b'"')[1].decode()
            raise BrokerError("bad_response", f"unreadable answer: {name} is text that is not a decimal number")
        if b"true" not in body and b"false" not in body:
            return
        found = _NUMBER_AS_BOOL.search(body)
        if found:
            name = found.group().split(b'"')[1].decode()
            raise BrokerError("bad_response", f"unreadable answer: {name} is a JSON boolean, not a number")

    def _count_page(self, params: Any) -> None:
        """One more request for the call in progress: refused past the budget, or when the SDK is sent back to
        a page it has already read (a `next_page_token` that repeats would page for ever)."""
        if self._call_requests is None:
            return
        self._call_requests += 1
        if self._call_requests > self.max_requests_per_call:
            limit = self.max_requests_per_call
            raise BrokerError("bad_response", f"more than {limit} requests for one answer (pages that never end)")
        token = params.get("page_token") if isinstance(params, dict) else None
        if token:
            if token in self._page_tokens:
                raise BrokerError("bad_response", "the broker gave the same next_page_token twice (pages that never end)")
            self._page_tokens.add(str(token))

    def _deadline(self, started: float) -> float:
        """When an answer asked for at `started` must be in whole, its headers and its body: twice the read timeout
        (`answer_by`, `read_body`). Each line of the headers within the read timeout, 100 lines of them
        held a call for 100 timeouts."""
        return started + 2 * self.timeout[1]

    def _read_body(self, response: Any, started: float) -> None:
        """The whole body, read now (`read_body`): within `max_body_bytes` and by the answer's deadline."""
        read_body(response, deadline=self._deadline(started), limit=self.max_body_bytes)

    def _json_answer(self, response: Any) -> None:
        """A 2xx answer with a body is Alpaca's JSON, or a bad response: said to be JSON (Content-Type), and read by
        the SDK (its `response.json()`) strictly (`jsontext.loads_strict`). A key given twice in one object has
        two values: Python keeps the last, and `"trading_blocked": true, "trading_blocked": false` was read as not
        blocked, `"side": "short", "side": "long"` as a long; NaN and Infinity are no JSON. A body sent as
        text/html or text/plain is not the API's answer (a proxy's, a portal's), whatever it holds."""
        status = response.status_code
        if not 200 <= status < 300 or not response.content:
            return
        declared = response.headers.get("Content-Type") or ""
        media = declared.split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            said = quoted(declared, 60) if declared else "no Content-Type"
            raise BrokerError("bad_response", f"HTTP {status} answered with {said}, not JSON")
        response.encoding = "utf-8"  # JSON's (RFC 8259): the SDK's `response.text` never guesses another
        response.json = functools.partial(_strict_json, response.content)

    def _observe_rate_limit(self, headers: Any, bucket: TokenBucket) -> None:
        """X-RateLimit-Remaining/Reset and Retry-After (seconds, or an HTTP date) tighten the bucket of the host
        that answered. A header we cannot read is ignored (we keep our own count), and no header holds requests
        back longer than MAX_BACKOFF: a reset in the year 3000 would otherwise stop the engine from ever asking
        again, and so from ever recovering."""
        now = self.clock.now()
        latest = now + MAX_BACKOFF
        try:
            remaining = headers.get("X-RateLimit-Remaining")
            reset = headers.get("X-RateLimit-Reset")
            reset_at = min(datetime.fromtimestamp(int(reset), timezone.utc), latest) if reset else None
            bucket.observe(max(int(remaining), 0) if remaining is not None else None, reset_at)
        except (TypeError, ValueError, OverflowError, OSError):
            pass
        wait = _retry_after_seconds(headers.get("Retry-After"), now)
        if wait is not None and wait > 0:  # capped in seconds: a timedelta of 1e20 s is an OverflowError
            bucket.observe(0, now + timedelta(seconds=min(wait, MAX_BACKOFF.total_seconds())))

    # --- errors --------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """A message to pass on: both keys masked wherever they appear (whatever their length: the constructor
        refuses keys too short to be real), then cut to 300 characters (after masking, so no cut leaves part of
        a key behind)."""
        return self._secrets.scrubbed(text, 300)

    def to_error(self, exc: BaseException, operation: str, *, data_api: bool = False) -> BrokerError:
        import pydantic
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, BrokerError):  # one of the adapter's own: it may quote a value too (`_shown`)
            exc.operation = exc.operation or operation
            exc.message = self._scrub(exc.message)
            exc.args = (str(exc),)  # its repr too
            return exc
        kind: ErrorKind
        status: int | None = None
        code: int | None = None
        if isinstance(exc, APIError):
            status = exc.status_code
            code, message = _body(str(exc))
            if code is None and message == "a non-JSON body":
                message = f"HTTP {status} with a non-JSON body"
            kind = _kind_for_status(status)
            reason = classify(status, code, message, data_api=data_api)
            if reason == "unauthorized":
                kind = "unauthorized"
            if status == 404 and not (code is not None and code // 100_000 == 404) and not data_api:
                # The trading API says "no such order" (or asset, or position) with its own body, code 40410000. A
                # 404 without one (a proxy's page, an empty body) says nothing of the order: read as "not found", a
                # lookup after a lost POST answer concluded the order never sent, and its bot entered again. Nor
                # does a 404 with a code that is not a 404's (Alpaca's codes begin with the HTTP status: 1, or
                # 42210000, is no "not found"; answerfuzz seed 1192).
                kind = reason = "bad_response"
                # masked before the cut: cut first, a key straddling it kept its first characters, which no mask finds
                said = quoted(message, 80)
                message = f"HTTP 404 without Alpaca's error code ({said}): not the broker saying nothing is there"
            return BrokerError(kind, self._scrub(message), status=status, operation=operation, reason=reason, code=code)
        if isinstance(exc, requests.exceptions.Timeout):
            kind, message = "timeout", "no answer in time"
        elif isinstance(exc, (requests.exceptions.JSONDecodeError, json.JSONDecodeError)):  # ours: `_strict_json`
            kind, message = "bad_response", "the body is not JSON"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            kind, message = "connection", "cannot connect"
        elif isinstance(exc, requests.exceptions.RequestException):
            kind, message = "connection", type(exc).__name__
        elif isinstance(exc, Unreadable):
            kind, message = "bad_response", f"unreadable answer: {exc}"
        elif isinstance(exc, pydantic.ValidationError):  # the fields by name, never their values
            fields = sorted({".".join(str(part) for part in e["loc"]) for e in exc.errors()})
            kind, message = "bad_response", f"unexpected answer (ValidationError: {', '.join(fields[:4])})"
        elif isinstance(exc, (ValueError, TypeError, KeyError, AttributeError)):
            kind, message = "bad_response", f"unexpected answer ({type(exc).__name__})"
        else:
            kind, message = "bad_response", f"unexpected failure ({type(exc).__name__})"
        return BrokerError(kind, self._scrub(message), status=status, operation=operation)

    def _call(self, operation: str, call: Callable[[], T], *, data_api: bool = False) -> T:
        outermost = self._call_requests is None
        if outermost:  # one budget of requests and page tokens per call, however the SDK pages
            self._call_requests, self._page_tokens = 0, set()
        try:
            return call()
        except Exception as exc:  # mapped to one typed BrokerError; nothing escapes untyped
            raise self.to_error(exc, operation, data_api=data_api) from None
        finally:
            if outermost:
                self._call_requests = None

    def _found(self, operation: str, call: Callable[[], T]) -> T | None:
        try:
            return self._call(operation, call)
        except BrokerError as exc:
            if exc.kind == "not_found":
                return None
            raise

    # --- reads ---------------------------------------------------------------------------------------------

    def get_account(self) -> Account:
        def read() -> Account:
            # Read raw, as positions and orders are: alpaca-py's TradeAccount also validates fields the engine never
            # reads (`sma` or `accrued_fees` as text, `created_at` as a time, `id` as a UUID, the deprecated day-trade
            # fields), and one value there made every account answer unreadable, so the engine halted every tick for
            # ever. The fields the engine reads are checked here, as strictly as the model did.
            raw = self.trading.get("/account")
            if not isinstance(raw, dict):
                raise ValueError(f"expected the account as a JSON object, got {type(raw).__name__}")
            if raw.get("currency") != "USD":  # every amount below is read as dollars
                raise Unreadable(f"the account's currency is {_shown(raw.get('currency'))}, not 'USD'")
            status = _choice(raw, "status", "the account's status", ACCOUNT_STATUSES)
            crypto_status = raw.get("crypto_status")
            if crypto_status is not None:
                crypto_status = _choice(raw, "crypto_status", "the account's crypto_status", ACCOUNT_STATUSES)
            activities: tuple[NonTradeActivity, ...] = ()
            unknown: str | None = None
            moved = _float(raw.get("intraday_adjustments"), "intraday_adjustments", usd=True)
            if moved is not None:
                source = "intraday_adjustments"
            else:
                found, unknown = self._activities_since_close(raw.get("balance_asof"))
                activities, source = tuple(found), "activities"
                # unknown: the daily P&L is missing (the kill condition halts, selling nothing), never a loss
                moved = None if unknown is not None else round(sum(x.net_amount for x in activities), 2)
            # Money may be negative where Alpaca means it (cash borrowed on margin, a deficit): finite is the rule.
            # The flags that block trading must be there: a missing one is not "not blocked".
            equity, cash = _required(raw.get("equity"), "equity", usd=True), _required(raw.get("cash"), "cash", usd=True)
            _check_equity(equity, cash, raw)
            # The base of the daily P&L's percent: a debt at yesterday's close would turn its sign over, and every
            # gain read as a loss past the limit tripped the daily-loss kill condition, whose flatten sold every
            # position (0, an account funded today, leaves the percent missing: facts_builder.daily_pnl_pct).
            last_equity = _required(raw.get("last_equity"), "last_equity", minimum=0.0, usd=True)
            self._last_equity_steady(raw.get("balance_asof"), last_equity)
            self._cash_moved_with_equity(raw.get("balance_asof"), equity, moved, source)
            level = _level(raw.get("options_trading_level"), "options_trading_level")
            approved = _level(raw.get("options_approved_level"), "options_approved_level")
            if level is not None and approved is not None and level > approved:
                # the effective level is the least of the approved one and the owner's cap (trading-api.json): one
                # above what was approved is not the account's, and the options bot would trade on it
                raise Unreadable(f"options_trading_level {level} is above options_approved_level {approved}")
            return Account(
                equity=equity,
                last_equity=last_equity,
                cash=cash,
                buying_power=_required(raw.get("buying_power"), "buying_power", usd=True),
                status=status,
                trading_blocked=_flag(raw, "trading_blocked"),
                account_blocked=_flag(raw, "account_blocked"),
                crypto_status=crypto_status,
                options_trading_level=level,
                options_approved_level=approved,
                non_marginable_buying_power=_float(
                    raw.get("non_marginable_buying_power"), "non_marginable_buying_power", usd=True
                ),
                options_buying_power=_float(raw.get("options_buying_power"), "options_buying_power", usd=True),
                trade_suspended_by_user=_flag(raw, "trade_suspended_by_user"),
                non_trade_cash_today=moved,
                non_trade_cash_source=source,  # type: ignore[arg-type]  # one of the two literals above
                non_trade_activities=activities,
                non_trade_cash_unknown=unknown,
                account_id=_account_id(raw.get("id")),
            )

        return self._call("account", read)

    def _last_equity_steady(self, asof: Any, last_equity: float) -> None:
        """Unreadable when the basis of the daily P&L, `last_equity` and the `balance_asof` naming the close it is
        the equity of, changed as no broker's day changes it. Read as the basis, a last_equity doubled in a single
        answer was a 50 % loss, the daily-loss kill condition and its flatten of every position.

        The basis first read is the reference. A new one is taken at once only as a new day's: `balance_asof`
        moved forward to a date whose session has closed (`_not_a_new_day`). Anything else is refused: a
        last_equity that moved while balance_asof did not (it does not move within a day), a balance_asof that
        went back, names a close still to come (today's, mid-session), is no date, or went missing. So is a first
        basis naming a close still to come. The same new basis LAST_EQUITY_CONFIRMATIONS answers in a row is a
        correction, and becomes the reference (that rule is `account_rules.BasisKeeper`'s, which basis.py keeps
        too). A refused answer is a bad response: the system halts, and sells nothing for it; a genuine loss moves
        the equity, not the basis, and still trips the kill condition."""
        key = asof if isinstance(asof, str) and asof else None
        same = f"the same balance_asof {_shown(key)}" if key is not None else "an answer with no balance_asof either"
        why = self._basis.refused(
            key,
            last_equity,
            why_new=lambda reference: self._close_to_come(key) if reference is None else self._not_a_new_day(reference[0], key),
            moved=lambda before: f"last_equity {last_equity:.2f} is not the {before:.2f} read before for {same}",
        )
        if why is not None:
            raise Unreadable(why)

    def _latest_close(self) -> date:
        """The New York date of the latest session close at or before now: the newest close a last_equity can be of."""
        from engine.core.calendar import market_calendar

        return market_calendar().previous_close(self.clock.now()).astimezone(NEW_YORK).date()

    def _close_to_come(self, asof: str | None) -> str | None:
        """Why `balance_asof` cannot name the close last_equity is the equity of: a session that has not closed."""
        day = _date_or_none(asof)
        if day is None:
            return None
        latest = self._latest_close()
        if day <= latest:
            return None
        return f"balance_asof {day} names a close still to come (the latest was on {latest}): last_equity is not that close's"

    def _not_a_new_day(self, before: str | None, asof: str | None) -> str | None:
        """None when `balance_asof` moving from `before` to `asof` is a new day's basis: a later date, whose session
        has closed. Otherwise why not."""
        if asof is None:
            return f"balance_asof is missing, where the answers before named {_shown(before)}"
        if before is None:
            return f"balance_asof {_shown(asof)} appeared, where the answers before had none"
        was, now = _date_or_none(before), _date_or_none(asof)
        if was is None or now is None:
            return f"balance_asof moved from {_shown(before)} to {_shown(asof)}, which is not a date"
        if now < was:
            return f"balance_asof went back from {was} to {now}"
        return self._close_to_come(asof)

    def _cash_moved_with_equity(self, asof: Any, equity: float, moved: float | None, source: str) -> None:
        """Unreadable when the day's non-trade cash (`intraday_adjustments`, or the activities summed) moved since the
        last answer read and the equity did not move with it. The daily P&L leaves that cash out (equity -
        last_equity - moved), so a deposit or a withdrawal moves the equity and the cash moved together and the P&L
        not at all; one figure moving alone moves the P&L by all of it, and read as one, a single answer saying 30 %
        of the equity had been deposited was a 30 % loss, the daily-loss kill condition and its flatten of every
        position. The equity must show at least half the movement, in its direction (the rest is the market over
        one tick); otherwise the new figure is refused until the same one comes back LAST_EQUITY_CONFIRMATIONS
        answers in a row (a broker that books the movement a moment after the cash). Per `balance_asof`, as
        `_last_equity_steady`; without it, per New York day (the day's cash moved starts again at midnight). An
        unknown figure (None: the daily P&L is missing then) is no reference: the next one read is taken afresh."""
        if moved is None:
            self._cash_moved_seen, self._cash_moved_alone = None, None
            return
        if not isinstance(asof, str) or not asof:
            asof = f"no balance_asof, {self.clock.now().astimezone(NEW_YORK).date()}"
        reference = self._cash_moved_seen
        if reference is not None and reference[0] == asof:
            _, equity_before, moved_before = reference
            change = moved - moved_before
            slack = account_rules.slack(equity, equity_before)
            if abs(change) > slack and abs(equity - equity_before - change) > abs(change) / 2:
                alone = self._cash_moved_alone
                count = alone[1] + 1 if alone is not None and alone[0] == moved else 1
                if count < LAST_EQUITY_CONFIRMATIONS:
                    self._cash_moved_alone = (moved, count)
                    name = "intraday_adjustments" if source == "intraday_adjustments" else "the day's cash activities"
                    raise Unreadable(f"{name} moved from {moved_before:.2f} to {moved:.2f} while the equity moved "
                                     f"{equity - equity_before:+.2f}: cash moved without the equity")  # fmt: skip
        self._cash_moved_seen, self._cash_moved_alone = (asof, equity, moved), None

    def _activities_since_close(self, balance_asof: Any) -> tuple[list[NonTradeActivity], str | None]:
        """The non-trade cash activities since the close `last_equity` is the equity of, every page: the close of
        the trading day `balance_asof` names (today's New York midnight when it names today). Counted
        from midnight, a withdrawal on Saturday was left out of Monday's cash moved while `last_equity` stayed
        Friday's close: Monday's daily P&L read it as a loss, and could trip the daily-loss kill switch. `after`/
        `until` bound the creation time, which is what the endpoint filters on (trading-api.json); pages go by the
        last id (`page_token`). Unreadable without a `balance_asof` naming a day up to today: nothing says then
        which close `last_equity` is from.

        Every non-trade activity is asked for (`category`, not a list of types: Alpaca's list grows, and a type
        left off it was never seen), and each sorted by base.NON_TRADE_ACTIVITY_TYPES. The second value is why the
        day's non-trade cash is unknown (else None): an activity since the close that moved holdings in or out, or
        of a type not known, or one that cannot be placed before or after the close (`_placed`)."""
        now = self.clock.now().astimezone(NEW_YORK)
        start = datetime.combine(now.date(), time(0), NEW_YORK)
        asof = _date_or_none(balance_asof)
        if asof is None or asof > now.date():
            # Counted from midnight instead (a guess), a withdrawal on Saturday was Monday's loss, enough for the
            # daily-loss kill switch to flatten every position, and a deposit hid one
            raise Unreadable(f"balance_asof is {_shown(balance_asof)}, not a day up to today: without intraday_adjustments "
                             "the cash moved since last_equity's close cannot be counted")  # fmt: skip
        if asof < now.date():
            from engine.core.calendar import market_calendar

            session = market_calendar().session(asof)
            start = session.close if session is not None else datetime.combine(asof + timedelta(days=1), time(0), NEW_YORK)
        end = datetime.combine(now.date() + timedelta(days=1), time(0), NEW_YORK)
        params: dict[str, Any] = {
            "category": "non_trade_activity",
            "after": _utc(start - timedelta(microseconds=1)),
            "until": _utc(end),
            "direction": "asc",
            "page_size": ACTIVITY_PAGE_SIZE,
        }
        found: list[NonTradeActivity] = []
        unknown: str | None = None
        for _ in range(ACTIVITY_PAGES):
            page = _objects(self.trading.get("/account/activities", params), "account activities")
            for item in page:
                activity = _activity(item)
                if activity is None:
                    continue
                placed = _placed(activity, start)
                if placed is None:
                    unknown = unknown or (
                        f"the {activity.activity_type} activity {_shown(activity.id)} dated {_shown(activity.date)} "
                        f"cannot be placed before or after the close at {start:%Y-%m-%d %H:%M} New York"
                    )
                elif not placed:
                    continue
                elif activity.activity_type in NON_TRADE_ACTIVITY_TYPES:
                    found.append(activity)
                else:
                    unknown = unknown or (
                        f"the {activity.activity_type} activity {_shown(activity.id)} moved holdings into or out of "
                        "the account, or is of a type not known, by a value its net_amount does not give"
                    )
            if len(page) < ACTIVITY_PAGE_SIZE:
                return found, unknown
            last = page[-1].get("id")
            if not last or last == params.get("page_token"):
                raise Unreadable("a full page of account activities whose last id cannot take us further")
            params["page_token"] = last
        raise ValueError(f"more than {ACTIVITY_PAGES} pages of account activities since the last close")

    def get_positions(self) -> list[Position]:
        """Every position, read raw (GET /v2/positions, as the account and the clock are): alpaca-py's Position
        model validates fields the engine never reads against enums that lag the API (`exchange`, alpaca-py issue
        #704), and one value it does not know made the whole list unreadable, and so the engine halt for ever.
        The fields the engine reads are checked here, each as strictly as before; the others are not looked at."""

        def read() -> list[Position]:
            return _positions(_objects(self.trading.get("/positions"), "positions"))

        return self._call("positions", read)

    def _order(
        self, raw: Any, *, remember: bool = True, looked_up: bool = False, sent: bool = False, **expected: str
    ) -> Order:
        """An order, every field the engine reads checked: quantities and prices finite and not negative, one of
        qty and notional, no more filled than ordered, the side, symbol and class present, a time with a zone.
        `expected` names fields (id, client_order_id, symbol, side) the answer must carry as asked: an answer
        about another order is not an answer to this question, and booked it would move the wrong order. Nor may
        it contradict what was asked or an earlier answer (`_OrderMemory`); it is remembered unless `remember` is
        False (a list remembers its orders once the whole list is read).

        Read raw, as positions are: alpaca-py's Order model also validates fields the engine never reads against
        enums that lag the API (`order_class`, `position_intent`, the legs), and one new value there made every
        order answer, the open-order list included, unreadable."""
        if not isinstance(raw, dict):
            raise Unreadable(f"expected an order as a JSON object, got {type(raw).__name__}")
        order = self._read_order(raw)
        for field, value in expected.items():
            if str(getattr(order, field)) != value:
                raise Unreadable(f"asked about {field} {_shown(value)}, the broker answered {_shown(getattr(order, field))}")
        self._orders_seen.check(order, looked_up=looked_up, sent=sent)
        if remember:
            self._orders_seen.remember(order)
        return order

    def _read_order(self, o: Mapping[str, Any]) -> Order:
        client_order_id = _raw_text(o, "client_order_id", "an order's client_order_id")
        name = f"order {client_order_id!r}"
        qty = _float(o.get("qty"), f"{name}'s qty", minimum=0.0)
        notional = _float(o.get("notional"), f"{name}'s notional", minimum=0.0, usd=True)
        if qty is None and notional is None:
            raise Unreadable(f"{name} has neither qty nor notional")
        filled = _required(o.get("filled_qty"), f"{name}'s filled_qty", minimum=0.0)
        if qty is not None and filled > qty * (1 + 1e-9):
            raise Unreadable(f"{name} has {filled:g} filled of {qty:g}")
        status = _choice(o, "status", f"{name}'s status", Order.ALL_STATUSES)
        average = _float(o.get("filled_avg_price"), f"{name}'s filled_avg_price", minimum=0.0, usd=True)
        limit_price = _float(o.get("limit_price"), f"{name}'s limit_price", minimum=0.0, usd=True)
        if average:
            _within_usd(filled * average, f"{name}'s filled value")
        if limit_price and qty is not None:
            _within_usd(qty * limit_price, f"{name}'s value at its limit price")
        if (status in ("filled", "partially_filled") and not filled > 0) or (filled > 0 and not average):
            # a fill of nothing, or at no price under any status (an order canceled after a partial fill keeps its
            # filled_qty): booked, it would record the fill on the order and own none of what the broker holds
            raise Unreadable(f"{name} is {status} with {filled:g} filled at {average if average is not None else 'no price'}")
        if status == "filled" and qty is not None and filled < qty and not same_amount(filled, qty):
            # "filled" is the whole order: booked, it would end with the rest neither owned nor working
            raise Unreadable(f"{name} is filled with {filled:g} filled of {qty:g}")
        if notional is not None and average and filled * average > notional * NOTIONAL_SLACK:
            raise Unreadable(f"{name} has {filled:g} filled at {average:g}, more than its notional {notional:g}")
        asset_class = _asset_class(o.get("asset_class"))
        _whole_contracts(asset_class, f"{name}'s qty", qty)
        _whole_contracts(asset_class, f"{name}'s filled_qty", filled)
        created_at = _timestamp(o.get("created_at"), f"{name}'s created_at")
        if created_at is None:
            raise Unreadable(f"{name}'s created_at is missing")
        type_key = "order_type" if o.get("order_type") else "type"  # the SDK read `order_type or type`
        replaced_by = _uuid(o["replaced_by"], f"{name}'s replaced_by") if o.get("replaced_by") else None
        if status == "replaced" and replaced_by is None:
            # Alpaca replaces an order with another (replaced_by names it) that works on in its place: booked, the
            # order ended here and its replacement worked on unfollowed, an exit of it selling what the bot's next
            # exit sold again
            raise Unreadable(f"{name} is replaced, by no order it names")
        side = _choice(o, "side", f"{name}'s side", ORDER_SIDES)
        order_type = _choice(o, type_key, f"{name}'s type", ORDER_TYPES)
        # A limit order fills at its limit or better, never worse: a buy at no more, a sell at no less (within the
        # rounding of an average). A buy limit at 1 "filled" at 100 was booked at 100, and the bot's P&L (and its stop
        # loss) went with it.
        if average and limit_price and order_type in ("limit", "stop_limit") and worse_than_limit(side, limit_price, average):
            raise Unreadable(f"{name}, a {side} limit at {limit_price:g}, filled at {average:g}: worse than its limit")
        return Order(
            id=_uuid(o.get("id"), f"{name}'s id"),
            client_order_id=client_order_id,
            # crypto as BTC/USD whichever spelling the order carries (positions and old orders say BTCUSD)
            symbol=_named(_raw_text(o, "symbol", f"{name}'s symbol"), asset_class, f"{name}'s"),
            side=side,  # type: ignore[arg-type]  # buy or sell
            qty=qty,
            notional=notional,
            filled_qty=filled,
            filled_avg_price=average,
            order_type=order_type,
            time_in_force=_choice(o, "time_in_force", f"{name}'s time_in_force", TIME_IN_FORCE),
            limit_price=limit_price,
            status=status,
            created_at=self._not_ahead(created_at, f"{name}'s created_at"),
            asset_class=asset_class,
            replaced_by=replaced_by,
            replaces=_uuid(o["replaces"], f"{name}'s replaces") if o.get("replaces") else None,
        )

    def _not_ahead(self, moment: datetime, name: str) -> datetime:
        """A time the broker says has passed: one further ahead of our clock than MAX_CLOCK_SKEW is junk, and an
        order created in 9999 would never grow old enough to be cancelled."""
        if moment - self.clock.now() > MAX_CLOCK_SKEW:
            raise Unreadable(f"{name} is {moment.isoformat()}, far ahead of our clock")
        return moment

    def get_open_orders(self) -> list[Order]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        params = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=OPEN_ORDERS_LIMIT).to_request_fields()

        def read() -> list[Order]:
            listed = _objects(self.trading.get("/orders", params), "open orders")  # raw: see _order
            if len(listed) >= OPEN_ORDERS_LIMIT:
                # /v2/orders has no next_page_token: a full page may have cut orders off, and an order of ours
                # missing from the list would be taken for one that ended.
                raise Unreadable(f"{len(listed)} open orders, the most one answer gives: the list may be cut short")
            orders = [self._order(o, remember=False) for o in _multi_legs_as_legs(listed)]
            _unique(orders, lambda o: o.client_order_id, "the client_order_id")
            _unique(orders, lambda o: o.id, "the order id")
            for order in orders:
                self._orders_seen.remember(order)
            return orders

        return self._call("open_orders", read)

    def _quotes(self, raw: Any, asked: Sequence[str]) -> dict[str, Quote]:
        """Bid and ask as sent (0 for an empty side, crossed as crossed) and the quote's own time: the engine
        judges those. A side that is not a finite number at least 0, or a time without a zone, is unreadable; so
        is a quote for a symbol we did not ask for (the answer to another question: a symbol left out is only
        missing, one put in its place would be read as its price)."""
        if not isinstance(raw, dict):
            raise Unreadable(f"expected quotes by symbol, got {type(raw).__name__}")
        wanted = set(asked)
        quotes = {}
        for symbol, q in raw.items():
            if symbol not in wanted:
                raise Unreadable(f"a quote for {_shown(symbol)}, which was not asked for")
            bid, ask, at = q.bid_price, q.ask_price, q.timestamp
            # What the checks below would pass as it is, passed without them (a thousand quotes a tick): a float
            # from 0 to MAX_USD (NaN fails both comparisons), a time with its zone.
            if (
                type(bid) is float
                and type(ask) is float
                and 0.0 <= bid <= MAX_USD
                and 0.0 <= ask <= MAX_USD
                and type(at) is datetime
                and at.tzinfo is not None
                and at.utcoffset() is not None
                and 1 < at.year < 9999  # the first and last years may not be told in UTC (`_aware`)
            ):
                quotes[symbol] = Quote(symbol, bid, ask, at)
            else:  # the checks name the field that is wrong
                bid = _required(bid, f"{symbol}'s bid", minimum=0.0, usd=True)
                ask = _required(ask, f"{symbol}'s ask", minimum=0.0, usd=True)
                quotes[symbol] = Quote(symbol, bid, ask, _aware(at, f"{symbol}'s quote time"))
        return quotes

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockLatestQuoteRequest

        request = StockLatestQuoteRequest(symbol_or_symbols=list(symbols), feed=DataFeed(self.feed))
        read = functools.partial(self.stocks.get_stock_latest_quote, request)
        return self._call("stock_quotes", lambda: self._quotes(read(), symbols), data_api=True)

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.requests import CryptoLatestQuoteRequest

        request = CryptoLatestQuoteRequest(symbol_or_symbols=list(symbols))
        read = functools.partial(self.crypto.get_crypto_latest_quote, request)
        return self._call("crypto_quotes", lambda: self._quotes(read(), symbols), data_api=True)

    def get_option_chain(self, underlying: str, expiry_from: date, expiry_to: date) -> list[OptionContract]:
        from alpaca.data.enums import OptionsFeed
        from alpaca.data.requests import OptionChainRequest

        request = OptionChainRequest(
            underlying_symbol=underlying,
            feed=OptionsFeed(self.options_feed),
            expiration_date_gte=expiry_from,
            expiration_date_lte=expiry_to,
        )

        base = underlying.replace(".", "")  # BRK.B's contracts are BRKB...

        def read() -> list[OptionContract]:
            out = []
            # the SDK follows next_page_token, 1,000 contracts a page (each page one counted request)
            for occ, snap in self.options.get_option_chain(request).items():
                parsed = parse_occ(occ)
                quote, greeks = snap.latest_quote, snap.greeks
                if parsed is None or quote is None:
                    continue  # no quote, no price: nothing to choose or to value it by
                root, expiry, option_type, strike = parsed
                if root != base:
                    if root.startswith(base):
                        continue  # a variant root (SPXW): not the standard contract the engine values
                    raise Unreadable(f"{occ} in the chain of {underlying}: a contract of another underlying")
                if not expiry_from <= expiry <= expiry_to:
                    raise Unreadable(f"{occ} expires {expiry}, outside the {expiry_from}..{expiry_to} asked for")
                if greeks is not None:
                    for greek in ("delta", "gamma", "theta", "vega"):
                        _required(getattr(greeks, greek), f"{occ}'s {greek}")
                    if abs(greeks.delta) > 1:
                        raise Unreadable(f"{occ}'s delta is {greeks.delta}, outside -1..1")
                    # A call gains with its underlying, a put loses (delta 0..1 and -1..0), and a bought option's
                    # gamma and vega are never below 0. The chain rules choose a call by |delta|: a call said to be
                    # at -0.5 was chosen as one at 0.5 and bought.
                    low, high = (0.0, 1.0) if option_type == "call" else (-1.0, 0.0)
                    if not low - GREEK_SLACK <= greeks.delta <= high + GREEK_SLACK:
                        raise Unreadable(f"{occ}'s delta is {greeks.delta}, outside {low:g}..{high:g} for a {option_type}")
                    for greek in ("gamma", "vega"):
                        if getattr(greeks, greek) < -GREEK_SLACK:
                            raise Unreadable(f"{occ}'s {greek} is {getattr(greeks, greek)}, below 0")
                out.append(
                    OptionContract(
                        occ,
                        underlying,
                        "call" if option_type == "call" else "put",
                        strike,
                        expiry,
                        _required(quote.bid_price, f"{occ}'s bid", minimum=0.0, usd=True),
                        _required(quote.ask_price, f"{occ}'s ask", minimum=0.0, usd=True),
                        _aware(quote.timestamp, f"{occ}'s quote time"),
                        # Thin contracts come without greeks (alpaca-trade-api-go marketdata/options_test.go):
                        # kept, with NaN greeks that no delta range admits; `OptionContract.greeks` is None.
                        float(greeks.delta) if greeks else NAN,
                        float(greeks.gamma) if greeks else NAN,
                        float(greeks.theta) if greeks else NAN,
                        float(greeks.vega) if greeks else NAN,
                        _float(snap.implied_volatility, f"{occ}'s implied volatility", minimum=0.0),
                    )
                )
            return _unique(out, lambda c: c.symbol, "the contract")

        return self._call("option_chain", read, data_api=True)

    def get_clock(self) -> MarketClock:
        def read() -> MarketClock:
            from alpaca.trading.models import Clock

            # read raw, as the account is: the model's lax bool would read "is_open": "yes" or 1 as true
            raw = self.trading.get("/clock")
            if not isinstance(raw, dict):
                raise ValueError(f"expected the clock as a JSON object, got {type(raw).__name__}")
            c = Clock(**raw)  # the SDK's own check of the shape
            return self._checked_clock(
                MarketClock(
                    _aware(c.timestamp, "the clock's timestamp"),
                    _flag(raw, "is_open"),
                    _aware(c.next_open, "the clock's next_open"),
                    _aware(c.next_close, "the clock's next_close"),
                )
            )

        return self._call("clock", read)

    def _checked_clock(self, clock: MarketClock) -> MarketClock:
        """The market clock, if it can be believed: within MAX_CLOCK_SKEW of ours and not ahead of it by more than
        CLOCK_LAG, its next open and close ahead of its own time and in the order `is_open` implies, not open past
        its own next close nor closed past its own next open by our clock (more than CLOCK_LAG), and not open when
        the exchange calendar has no session then (a clock that says open on a holiday), nor closing later than the
        calendar says (16:00 on an early-close day). The calendar may not know an unscheduled closure, so a clock
        that says closed, or closing earlier, is believed."""
        now = self.clock.now()
        if abs(clock.timestamp - now) > MAX_CLOCK_SKEW:
            raise Unreadable(f"the broker's clock says {clock.timestamp.isoformat()}, ours {now.isoformat()}")
        if clock.timestamp - now > CLOCK_LAG:
            # Its is_open is about a moment that has not come yet by ours (an answer about another day, an emulator
            # started at a later time): Monday's "open" read on a Saturday passed every check below, and the stock
            # and option bots entered while the market was shut (Alpaca queues a day order for the next open).
            raise Unreadable(f"the broker's clock says {clock.timestamp.isoformat()}, ahead of ours "
                             f"({now.isoformat()}): an answer that is not about now")  # fmt: skip
        if not (clock.timestamp < clock.next_open <= clock.timestamp + MAX_SESSION_GAP
                and clock.timestamp < clock.next_close <= clock.timestamp + MAX_SESSION_GAP):  # fmt: skip
            raise Unreadable("the clock's next_open or next_close is not within days after its own time")
        if clock.is_open != (clock.next_close < clock.next_open):
            raise Unreadable(f"the clock says is_open {clock.is_open} with next_open {clock.next_open.isoformat()} "
                             f"and next_close {clock.next_close.isoformat()}")  # fmt: skip
        if clock.is_open and now >= clock.next_close + CLOCK_LAG:
            # An answer about a session that has ended by our clock (a cached or replayed answer: Friday's "open"
            # read on Saturday): believed, every stock bot may enter while the market is shut, and Alpaca queues
            # a day order for the next open.
            raise Unreadable(f"the clock says open until {clock.next_close.isoformat()}, already past by ours "
                             f"({now.isoformat()}): an answer that is not about now")  # fmt: skip
        if not clock.is_open and now >= clock.next_open + CLOCK_LAG:
            # Saturday's "closed until Monday 09:30" read on Monday at noon: it blocks entries, but the options bot's
            # flatten before the close reads the clock too (`near_close` needs the market open), and believed for a
            # session it never fires. Not believed either: the system halts and says why.
            raise Unreadable(f"the clock says closed until {clock.next_open.isoformat()}, already past by ours "
                             f"({now.isoformat()}): an answer that is not about now")  # fmt: skip
        if clock.is_open:
            from engine.core.calendar import market_calendar

            calendar = market_calendar()
            if not calendar.is_open(clock.timestamp):
                at = clock.timestamp.isoformat()
                raise Unreadable(f"the clock says open at {at}, when the exchange calendar has no session")
            # A close later than the calendar's (16:00 on an early-close day) would keep positions past the real
            # close: every rule that flattens before the close reads it. An earlier one (a closure the calendar
            # does not know yet) is believed.
            close = calendar.next_close(clock.timestamp)
            if clock.next_close > close:
                raise Unreadable(f"the clock says the market closes at {clock.next_close.isoformat()}, "
                                 f"the exchange calendar at {close.isoformat()}")  # fmt: skip
        return clock

    def get_asset(self, symbol: str) -> Asset | None:
        """/v2/assets/{symbol}, read raw (see `_asset`); crypto by its old spelling BTCUSD (trading-api.json: "the
        symbol has to follow old symbology"), which also keeps the slash out of the path."""

        def read() -> Asset:
            raw = self.trading.get(f"/assets/{position_path_symbol(symbol)}")
            if not isinstance(raw, dict):
                raise Unreadable(f"expected the asset {_shown(symbol)} as a JSON object, got {type(raw).__name__}")
            asset = _asset(raw)
            if position_path_symbol(asset.symbol) != position_path_symbol(symbol).upper():
                raise Unreadable(f"asked for the asset {_shown(symbol)}, the broker answered {_shown(asset.symbol)}")
            return asset

        return self._found("asset", read)

    def get_assets(self, asset_class: str | None = None) -> list[Asset]:
        """The active assets (of a class), read raw (see `_asset`). The list holds hundreds of assets the engine
        never trades: one of them it cannot read is left out and said on the `engine.brokers` logger, not a reason
        to refuse the others. Nor is a symbol listed twice one to choose from: both are left out. So an asset the
        engine needs and cannot read is missing, and what needs it fails closed (a crypto entry cannot be sized)."""
        params = {"status": "active", **({"asset_class": asset_class} if asset_class else {})}

        def read() -> list[Asset]:
            assets: dict[str, Asset] = {}
            left_out: dict[str, str] = {}  # symbol (BTC/USD for BTCUSD) -> why
            for raw in _objects(self.trading.get("/assets", params), "assets"):
                sent = raw.get("symbol")
                try:
                    asset = _asset(raw)
                except Unreadable as exc:
                    left_out[normalize(sent, asset_class) if isinstance(sent, str) else repr(sent)] = str(exc)
                    continue
                if asset.symbol in assets or asset.symbol in left_out:  # BTC/USD and BTCUSD are one pair too
                    left_out[asset.symbol] = f"{_shown(sent)} is listed twice"
                    continue
                assets[asset.symbol] = asset
            for symbol, why in left_out.items():
                assets.pop(symbol, None)
                log.info("asset left out: %s", self._scrub(why))
            return list(assets.values())

        return self._call("assets", read)

    # --- orders --------------------------------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> Order:
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        wrong = order_rules.problem(request)
        if wrong is not None:  # Alpaca would answer 422: nothing is sent (docs/alpaca.md, "Orders")
            raise BrokerError("rejected", f"not sent: {wrong}", operation="submit_order", reason="invalid")

        def send() -> Order:
            common: dict[str, Any] = {
                "symbol": request.symbol,
                "side": OrderSide(request.side),
                "time_in_force": TimeInForce(request.time_in_force),
                "client_order_id": request.client_order_id,
            }
            if request.qty is not None:
                common["qty"] = request.qty
            else:
                common["notional"] = request.notional
            if request.order_type == "limit":
                sdk_request: Any = LimitOrderRequest(limit_price=request.limit_price, **common)
            else:
                sdk_request = MarketOrderRequest(**common)
            # the SDK's own submit_order, read raw (see _order): the request is built and checked by its model
            self._orders_seen.asked(request)
            answer = self.trading.post("/orders", _wire_amounts(sdk_request.to_request_fields(), request))
            return self._order(
                answer, sent=True, client_order_id=request.client_order_id, symbol=request.symbol, side=request.side
            )

        return self._call("submit_order", send)

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        def read() -> Order:
            answer = self.trading.get("/orders:by_client_order_id", {"client_order_id": client_order_id})
            return self._order(answer, looked_up=True, client_order_id=client_order_id)

        return self._found("get_order", read)

    def get_order(self, order_id: str) -> Order | None:
        canonical = self._call("get_order", lambda: _order_id(order_id, "get_order"))  # its message scrubbed (to_error)

        def read() -> Order:
            answer = self.trading.get(f"/orders/{canonical}")  # as the SDK asks, read raw (see _order)
            return self._order(answer, id=canonical)

        return self._found("get_order", read)

    def cancel_order(self, order_id: str) -> None:
        canonical = self._call("cancel_order", lambda: _order_id(order_id, "cancel_order"))  # its message scrubbed (to_error)
        self._call("cancel_order", lambda: self.trading.cancel_order_by_id(canonical))

    def close_position(self, symbol: str) -> Order:
        def close() -> Order:
            answer = self.trading.delete(f"/positions/{position_path_symbol(symbol)}", {})  # as the SDK asks; raw
            return self._order(answer, symbol=symbol)

        return self._call("close_position", close)

    def cancel_all_orders(self) -> tuple[BulkResult, ...]:
        def cancel() -> tuple[BulkResult, ...]:
            from alpaca.trading.requests import CancelOrderResponse

            out = []
            for raw in _models(self.trading.cancel_orders()):  # 207: one status per order
                item = _model(raw, CancelOrderResponse)
                error = None if item.status < 300 else self._item_error(item.status, item.body, "cancel_all_orders")
                out.append(BulkResult(str(item.id), item.status, error=error))
            return tuple(out)

        return self._call("cancel_all_orders", cancel)

    def close_all_positions(self) -> tuple[BulkResult, ...]:
        def close() -> tuple[BulkResult, ...]:
            out = []
            # 207: one status per position (alpaca-py test_position_routes.py), read raw as orders are (_order);
            # `cancel_orders` goes out as the SDK sends it
            for item in _objects(self.trading.delete("/positions", {"cancel_orders": True}), "close-all answer"):
                status = item.get("status")
                if not isinstance(status, int) or isinstance(status, bool):
                    raise Unreadable(f"an item of the close-all answer has {'no' if status is None else 'an unreadable'} status")
                symbol = _raw_text(item, "symbol", "an item of the close-all answer's symbol")
                body = item.get("body")
                if not isinstance(body, dict):
                    raise Unreadable(f"{symbol}'s close answered {status} with {'no' if body is None else 'an unreadable'} body")
                closed = "id" in body  # an Order carries its id; a refusal is {code, message, ...}
                if closed != (200 <= status < 300):  # an order under an error status, or a refusal under a 2xx
                    raise Unreadable(f"{symbol}'s close answered {status} with {'an order' if closed else 'an error'}")
                if closed:  # BTCUSD at the top, BTC/USD in the order (alpaca-py fixture)
                    order = self._order(body, remember=False)  # remembered once the whole answer is read
                    target = normalize(symbol, order.asset_class)
                    if order.symbol != target:
                        raise Unreadable(f"the close of {symbol} answered with an order in {order.symbol}")
                    out.append(BulkResult(target, status, order=order))
                else:
                    out.append(BulkResult(symbol, status, error=self._item_error(status, body, "close_all_positions")))
            for result in out:
                if result.order is not None:
                    self._orders_seen.remember(result.order)
            return tuple(out)

        return self._call("close_all_positions", close)

    def _item_error(self, status: int, body: Any, operation: str) -> BrokerError:
        """The error one item of a 207 answer carries in its body."""
        code = body.get("code") if isinstance(body, dict) else None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        reason = classify(status, code if isinstance(code, int) else None, message)
        kind = "unauthorized" if reason == "unauthorized" else _kind_for_status(status)
        return BrokerError(kind, self._scrub(message or f"HTTP {status}"), status=status, operation=operation, reason=reason,
                           code=code if isinstance(code, int) else None)  # fmt: skip


def _multi_legs_as_legs(listed: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The open-order list with each multi-leg options order (`order_class` mleg) given as its legs. Such an order
    (trading-api.json's getAllOrders example MultilegOptions; alpaca-py's Order turns its empty fields to None)
    names no symbol, side or asset class of its own: each of its legs is an order in one contract on one side,
    under its own id and client_order_id, whose `type` is empty (the parent's is the legs' type). Read as it came,
    one spread placed by hand made the whole list unreadable, so the engine followed none of its own orders
    (their fills went unbooked) and reconciliation could not name the order that is no bot's. A leg also listed
    on its own is read once, from its parent; a parent without legs stays unreadable, as does a leg listed alone
    without a type."""
    legs_of: dict[int, list[Mapping[str, Any]]] = {}
    for at, raw in enumerate(listed):
        if raw.get("order_class") != "mleg" or raw.get("symbol"):
            continue
        legs = raw.get("legs")
        if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
            said = "no legs" if not legs else "a leg that is not an object"
            raise Unreadable(f"the multi-leg order {_shown(raw.get('client_order_id'))} lists {said}")
        kind = raw.get("order_type") or raw.get("type")
        legs_of[at] = [{**leg, "order_type": leg.get("order_type") or kind, "type": leg.get("type") or kind} for leg in legs]
    if not legs_of:
        return list(listed)
    in_parents = {leg["id"] for legs in legs_of.values() for leg in legs if leg.get("id")}
    out: list[Mapping[str, Any]] = []
    for at, raw in enumerate(listed):
        if at in legs_of:
            out.extend(legs_of[at])
        elif raw.get("id") not in in_parents:
            out.append(raw)
    return out


def _order_id(order_id: str, operation: str) -> str:
    """The id in its canonical spelling, before anything is sent. Alpaca's order ids are UUIDs (and alpaca-py
    refuses any other with a ValueError, which read as "unexpected answer" from a broker that was never asked);
    an id that is not one came from a state file or a caller, not from Alpaca: said so, and nothing is sent."""
    try:
        return str(uuid.UUID(order_id))
    except (ValueError, TypeError, AttributeError):
        raise BrokerError("bad_response", f"not sent: the order id {_shown(order_id)} is not a UUID, as every order id "
                          "Alpaca gives is", operation=operation) from None  # fmt: skip


def _wire_amounts(body: dict[str, Any], request: OrderRequest) -> dict[str, Any]:
    """The SDK's body with qty, notional and limit_price as plain decimal strings, as trading-api.json types them:
    a JSON float goes out as Python writes it, `1e-05` for a coin's quantity, `0.30000000000000004` for a sum.
    Each string is the same amount as the request's (`order_rules.problem` refused any other before this)."""
    out = dict(body)
    for name in ORDER_AMOUNTS:
        value = getattr(request, name)
        if value is not None and name in out:
            text = order_rules.wire_number(value, order_rules.AMOUNT_DECIMALS)
            if text is None:  # not reached: problem() checked it
                raise BrokerError("rejected", f"not sent: {name} {value!r} cannot be written", reason="invalid")
            out[name] = text
    return out


def _kind_for_status(status: int | None) -> ErrorKind:
    if status is None:
        return "bad_response"
    if status == 401:
        return "unauthorized"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server"
    return "rejected"


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _activity(item: Mapping[str, Any]) -> NonTradeActivity | None:
    """One non-trade activity (trading-api.json NonTradeActivities), or None for one that moves nothing into or
    out of the account: a trade-like one (base.TRADE_LIKE_ACTIVITY_TYPES), a cancelled entry. Every other type is
    kept, the ones whose cash is not counted too: since the close, they make the day's cash moved unknown."""
    kind = item.get("activity_type")
    if not isinstance(kind, str) or not kind:
        raise Unreadable(f"the account activity {_shown(item.get('id'))} has no activity_type")
    if kind in TRADE_LIKE_ACTIVITY_TYPES or item.get("status") == "canceled":
        return None
    if not item.get("created_at") and not item.get("date"):  # undated, it would silently count on no day at all
        raise Unreadable(f"the {kind} activity {_shown(item.get('id'))} has neither created_at nor date")
    counted = kind in NON_TRADE_ACTIVITY_TYPES  # another type's net_amount is never summed: it may say nothing
    amount = _required(item.get("net_amount"), "an activity's net_amount", usd=True) if counted else 0.0
    return NonTradeActivity(
        id=str(item.get("id", "")),
        activity_type=kind,
        net_amount=amount,
        created_at=_timestamp(item.get("created_at"), "an activity's created_at"),
        date=str(item.get("date", "")),
        status=str(item.get("status", "executed")),
    )


# Alpaca's activity ids start with the New York time they were booked at, to the millisecond: its documented
# TradeActivity has id 20190524113406977::8efc7b9a-... and transaction_time 2019-05-24T15:34:06.977Z (EDT, -4 h).
_ID_TIME = re.compile(r"(\d{14})(\d{3})::")


def _id_time(activity_id: str) -> datetime | None:
    """When the activity was booked, read from its id's prefix (New York time); None when the id has none."""
    m = _ID_TIME.match(activity_id)
    if m is None:
        return None
    try:
        moment = datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return moment.replace(microsecond=int(m.group(2)) * 1000, tzinfo=NEW_YORK)


def _placed(activity: NonTradeActivity, start: datetime) -> bool | None:
    """Whether the activity came at or after `start` (the close last_equity is from, or a New York midnight): by
    its creation time; without one, by the time its id begins with; else by its `date`, which places it only on
    another day than `start`'s, or on it when `start` is its midnight. None when nothing places it: dated the day
    of that close, it may be before the close (in last_equity already) or after it (cash moved since), and either
    guess can read the whole amount as a trading loss. Dropped, a withdrawal booked after yesterday's close was
    today's 5 % loss, and the daily-loss kill switch flattened every position."""
    if activity.created_at is not None:
        return activity.created_at >= start
    booked = _id_time(activity.id)
    if booked is not None:
        return booked >= start
    day = _date_or_none(activity.date[:10])
    if day is None:
        return None
    local = start.astimezone(NEW_YORK)
    if day != local.date():
        return day > local.date()
    return True if local.time() == time(0) else None


def _date_or_none(value: Any) -> date | None:
    """`balance_asof` as a date, or None when it is missing or not a plain YYYY-MM-DD."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _check_equity(equity: float, cash: float, raw: Mapping[str, Any]) -> None:
    """Unreadable when the account's equity is not its cash and market values summed (account_rules.slack). An answer
    without the market values is not checked: an older or thinner account shape is no reason to refuse it. Long
    positions are worth 0 or more and shorts 0 or less (a debt: their proceeds are in the cash): a long_market_value
    made negative by as much as the equity fell kept the sum, and a third of the equity gone in one answer
    tripped the daily-loss kill condition, whose flatten sold every position."""
    long_value = _float(raw.get("long_market_value"), "long_market_value", minimum=0.0, usd=True)
    short_value = _float(raw.get("short_market_value"), "short_market_value", usd=True)
    if short_value is not None and short_value > 0:
        raise Unreadable(f"short_market_value is {short_value:.2f}, above 0: shorts are a debt, their proceeds in the cash")
    if long_value is None or short_value is None:
        return
    held = cash + long_value + short_value
    slack = account_rules.slack(equity, held)
    if abs(equity - held) > slack:
        raise Unreadable(f"equity {equity:.2f} is not cash + long_market_value + short_market_value ({held:.2f})")


def _asset(raw: Mapping[str, Any]) -> Asset:
    """One raw asset, as positions are read: alpaca-py's Asset model checks `exchange` against an enum that lags
    the API, and one new venue made the whole crypto list unreadable, so no crypto entry could be sized again; it
    also reads "yes" or 1 as a flag. The fields the engine reads (symbol, class, status, tradable, fractionable,
    the sizes and increments) are checked strictly; the others are kept only when they are what they claim."""
    symbol = _raw_text(raw, "symbol", "an asset's symbol")
    name = f"the asset {_shown(symbol)}"
    asset_class = _choice(raw, "class", f"{name}'s class", ASSET_CLASSES)
    attributes = raw.get("attributes")
    exchange = raw.get("exchange")
    return Asset(
        symbol=normalize(symbol, asset_class),
        asset_class=asset_class,
        exchange=exchange if isinstance(exchange, str) else "",
        status=_choice(raw, "status", f"{name}'s status", ASSET_STATUSES),
        tradable=_flag(raw, "tradable", name),
        fractionable=_flag(raw, "fractionable", name),
        marginable=raw.get("marginable") is True,
        shortable=raw.get("shortable") is True,
        # absent: the broker gives none (stocks); present, a size or step must be a finite number above 0
        min_order_size=_positive(raw.get("min_order_size"), f"{symbol}'s min_order_size"),
        min_trade_increment=_positive(raw.get("min_trade_increment"), f"{symbol}'s min_trade_increment"),
        price_increment=_positive(raw.get("price_increment"), f"{symbol}'s price_increment"),
        attributes=tuple(a for a in attributes if isinstance(a, str)) if isinstance(attributes, list) else (),
    )


def _positive(value: Any, name: str) -> float | None:
    number = _float(value, name, minimum=0.0)
    if number == 0:
        raise Unreadable(f"{name} is 0")
    return number


def _asset_class(value: Any) -> AssetClass:
    """One of the classes the engine trades. alpaca-py also knows crypto_perp: a position or order in it is
    nothing the engine can value or attribute, so it is not read as one of ours."""
    name = _enum_value(value) if value is not None else "missing"
    if name not in ASSET_CLASSES:
        raise Unreadable(f"asset class {name!r} is not one the engine trades")
    return name  # type: ignore[return-value]  # checked against ASSET_CLASSES just above


def _named(symbol: str, asset_class: AssetClass, whose: str) -> str:
    """The engine's spelling of a position's or an order's symbol, refused when its asset class is not the one the
    symbol's own spelling names (an OCC symbol is an option, BASE/QUOTE a coin, the rest a share). AAPL said to
    be a us_option was read as a contract, which may be worth nothing: at a current_price of 0 (its market value 0
    to match) it passed the position's checks, and the momentum bot's stop loss sold every share it held."""
    name = normalize(symbol, asset_class)
    if asset_class_of(name) != asset_class:
        raise Unreadable(f"{whose} symbol {_shown(symbol)} is a {asset_class_of(name)} symbol, its asset_class {asset_class}")
    return name


def _position(raw: Mapping[str, Any]) -> Position:
    """One raw position. A position in an asset class the engine does not trade (crypto_perp, or one alpaca-py
    does not know yet) is the account's all the same: dropped, the engine would value and risk the account
    without it; read as one of its own classes, it would be valued and traded as what it is not. It is refused,
    so the positions are a bad answer until the position is gone (fail closed: the engine stops trading)."""
    symbol = _raw_text(raw, "symbol", "a position's symbol")
    try:
        asset_class = _asset_class(raw.get("asset_class"))
    except Unreadable as exc:
        raise Unreadable(f"the position in {_shown(symbol)}: {exc}") from None
    # Alpaca writes a short as side "short" with a signed qty ("-5", Alpaca-API issue #86): the sign comes from
    # the side, applied once, whatever the qty's own sign. A long with a negative qty says two things at once:
    # unreadable.
    short = _choice(raw, "side", f"{symbol}'s side", POSITION_SIDES) == "short"
    qty = _required(raw.get("qty"), f"{symbol}'s qty", minimum=None if short else 0.0)
    name = _named(symbol, asset_class, "a position's")
    price = _required(raw.get("current_price"), f"{symbol}'s current_price", minimum=0.0, usd=True)
    value = _required(raw.get("market_value"), f"{symbol}'s market_value", usd=True)
    entry = _required(raw.get("avg_entry_price"), f"{symbol}'s avg_entry_price", minimum=0.0, usd=True)
    multiplier = contract_multiplier(name)
    _whole_contracts(asset_class, f"{symbol}'s qty", qty)
    _check_position_value(symbol, asset_class, qty, price, value, multiplier)
    _within_usd(abs(qty) * entry * multiplier, f"{symbol}'s cost")  # a contract now worth 0 was bought at a price
    return Position(
        name,
        -abs(qty) if short else qty,
        entry,
        price,
        value,
        _required(raw.get("unrealized_pl"), f"{symbol}'s unrealized_pl", usd=True),
        asset_class,
        None if short else _available(raw.get("qty_available"), symbol, qty, asset_class),
    )


def _positions(listed: Sequence[Mapping[str, Any]]) -> list[Position]:
    """Every position of the answer; when some cannot be read, a `PositionsUnreadable` naming each of them (all at
    once, not the first alone) and carrying what exits may still size against: the readable positions, and the
    symbol, side and qty of the others where those can be read (`_holding`). The answer stays unreadable as a
    whole (the engine halts on it and values nothing from it): one bad field of one position (a current_price
    null) made every exit wait once the positions last read were too old to stand in, the kill switch's included."""
    read: list[Position] = []
    problems: list[str] = []
    holdings: list[Holding] = []
    unknown: set[str] = set()
    for raw in listed:
        try:
            position = _position(raw)
        except Unreadable as exc:
            problems.append(str(exc))
            try:
                holdings.append(_holding(raw))
            except Unreadable:
                symbol = raw.get("symbol")
                if isinstance(symbol, str) and symbol:  # as either class would name it: its class may be what failed
                    unknown.update((normalize(symbol), normalize(symbol, "crypto")))
            continue
        read.append(position)
        holdings.append(Holding(position.symbol, position.qty, position.qty_available))
    if not problems:
        return _unique(read, lambda p: p.symbol, "a position in")
    counts: dict[str, int] = {}
    for holding in holdings:
        counts[holding.symbol] = counts.get(holding.symbol, 0) + 1
    unknown.update(symbol for symbol, n in counts.items() if n > 1)  # listed twice: which one is true is not known
    known = PositionsInPart(tuple(h for h in holdings if h.symbol not in unknown), frozenset(unknown))
    raise PositionsUnreadable(f"unreadable answer: {'; '.join(problems)}", known)


def _holding(raw: Mapping[str, Any]) -> Holding:
    """What exits need of a position that could not be read whole: its symbol, side and qty, each checked as
    `_position` checks it; its qty_available when that reads too (None, as when not sent, when it does not: an exit
    sized past it is refused by the broker, never more than held). Unreadable when any of the first three is."""
    symbol = _raw_text(raw, "symbol", "a position's symbol")
    asset_class = _asset_class(raw.get("asset_class"))
    short = _choice(raw, "side", f"{symbol}'s side", POSITION_SIDES) == "short"
    qty = _required(raw.get("qty"), f"{symbol}'s qty", minimum=None if short else 0.0)
    name = _named(symbol, asset_class, "a position's")
    _whole_contracts(asset_class, f"{symbol}'s qty", qty)
    if short:
        return Holding(name, -abs(qty))
    try:
        available = _available(raw.get("qty_available"), symbol, qty, asset_class)
    except Unreadable:
        available = None
    return Holding(name, qty, available)


def _available(value: Any, symbol: str, qty: float, asset_class: AssetClass) -> float | None:
    """A long position's `qty_available`: its qty less what open sell orders hold (trading-api.json Position), ours
    and any placed beside the engine. Not read, an exit was sized to the whole holding while an order placed by hand
    held part of it, and Alpaca refused it (403 "insufficient qty available") every minute: the stop sold nothing.
    None when not sent; more than the qty held, or below 0, says two things at once: unreadable."""
    available = _float(value, f"{symbol}'s qty_available", minimum=0.0)
    if available is None:
        return None
    if available > qty and not same_amount(available, qty):
        raise Unreadable(f"{symbol}'s qty_available {available:g} is more than its qty {qty:g}")
    _whole_contracts(asset_class, f"{symbol}'s qty_available", available)
    return available


def _whole_contracts(asset_class: str, what: str, qty: float | None) -> None:
    """Unreadable when an option's quantity is not a whole number of contracts: Alpaca takes orders for whole
    contracts only, so it never holds or fills part of one. Read as it came, 2.5 contracts held were sold as 2.5,
    refused each time, and a fill of 1.5 booked half a contract that no exit could sell."""
    if asset_class == "us_option" and qty is not None and not float(qty).is_integer():
        raise Unreadable(f"{what} {qty:g} is not a whole number of contracts")


def _check_position_value(symbol: str, asset_class: str, qty: float, price: float, value: float, multiplier: float) -> None:
    """Unreadable when a position's market value is not its quantity times its price (times 100 for a contract),
    beyond the equity's slack (account_rules.slack), or when a share or a coin is priced at 0. The
    engine values a bot's position at the broker's current_price first (facts_builder.position_pnl_pct): one
    glitched answer with a price of 0 was a 100 % loss, and every bot's stop loss sold all it held at market. An
    option may be worth nothing; a share or a coin the broker holds never is. Signs are left out: a short's qty
    and market value are negative on the wire (Alpaca-API issue #86), and its side is read separately."""
    if price == 0 and qty and asset_class != "us_option":
        raise Unreadable(f"{symbol}'s current_price is 0: no price for a position of {abs(qty):g}")
    held = abs(qty) * price * multiplier
    slack = account_rules.slack(value, held)
    if abs(abs(value) - held) > slack:
        raise Unreadable(f"{symbol}'s market_value {value:.2f} is not its qty {abs(qty):g} times its current_price "
                         f"{price:g} ({held:.2f})")  # fmt: skip


M = TypeVar("M")


def _model(value: object, cls: type[M]) -> M:
    """The SDK's answer as its model. alpaca-py may return raw JSON instead (`raw_data=True`); we never ask for
    it, so anything else is a shape we do not understand: a bad response, never a guess."""
    if not isinstance(value, cls):
        raise ValueError(f"expected {cls.__name__} from alpaca-py, got {type(value).__name__}")
    return value


def _models(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list from alpaca-py, got {type(value).__name__}")
    return value
