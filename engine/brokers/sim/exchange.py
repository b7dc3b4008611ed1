"""The simulated exchange: one account, positions, orders and fills against deterministic quotes.

It enforces the server-side rules the SDK does not check, so that the engine meets them on sim as it would on
Alpaca (docs/alpaca.md lists each with its source): unique client_order_id, fractional and notional stock
orders only as market/day, crypto only gtc/ioc, buying power, no shorting, the $10 minimum of a USD-quoted
crypto buy, wash trades (an order that would cross our own working opposite order on the symbol), and an
asynchronous cancel (pending_cancel, then canceled at the next step, or filled meanwhile). Market orders fill
at the ask (buys) or the bid (sells) while the asset's market is open, never against an empty side; limit
orders fill when marketable; size beyond a step's liquidity fills over the following steps (partial fills).
Equity and option markets keep New York hours (09:30-16:00, weekdays); crypto trades around the clock.

An order is answered `pending_new` (`accepted` while its market is closed). With `fill_at_submit` (the
in-process default, which keeps a simulated day fast) it is matched at once; without it (the emulator, as
Alpaca) its fill comes at a later step. Test hooks reproduce what Alpaca may do on its own: quotes with an
empty side or a frozen time (`set_quote_mode`), an order suspended or replaced (`suspend_order`,
`replace_order`), a position opened by hand (`set_position`), cash moved in or out (`move_cash`), account flags
(`flags`), assets delisted or not tradable (`set_asset`).
Both fronts use it: `SimBroker` in process, and the HTTP emulator. The replay (engine/replay) runs the same
exchange on recorded prices: it passes its own `PriceSource` (`prices`) and overrides the fill seams
(`execution_price`, `fee_rate`, `commission`) and the market hours.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import repeat
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt

from engine.brokers import order_rules
from engine.brokers.base import (
    ACCOUNT_STATUSES,
    NON_TRADE_ACTIVITY_TYPES,
    Account,
    Asset,
    AssetClass,
    MarketClock,
    NonTradeActivity,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    Quote,
    Snapshot,
)
from engine.brokers.sim import options
from engine.brokers.sim.prices import BASE_PRICES, SPREAD, PricePaths, PriceSource, spread_sides
from engine.brokers.sim.rounding import round_to
from engine.brokers.symbols import OPTION_CONTRACT_SIZE, asset_class_of, occ_symbol, parse_occ
from engine.core import order_lifecycle as lifecycle
from engine.core.calendar import NEW_YORK, MarketCalendar, market_calendar
from engine.core.clock import Clock

LIQUIDITY = {"us_equity": 2_000.0, "crypto": 1e9, "us_option": 50.0}  # units per step
CRYPTO_FEE = {"limit": 0.0015, "market": 0.0025}  # maker and taker rates, Alpaca's lowest tier
# A USD-quoted crypto buy under $10 is refused: 403 40310000 "cost basis must be >= minimal amount of order 10"
# (ccxt PR #30101, probed on the paper API; it applies to buys of */USD pairs only).
CRYPTO_MIN_COST_USD = 10.0
HISTORY = timedelta(days=2)  # closed orders older than this are not saved: the state stays small
# Statuses at which an order is still working here. `suspended` works but is not matched; `pending_cancel` gets
# one more match (a fill may win the race) before it is cancelled.
OPEN_STATUSES = lifecycle.WORKING  # the statuses this exchange gives an order that may still fill or change
_MATCHED = frozenset({"pending_new", "accepted", "new", "partially_filled", "pending_cancel", "pending_replace"})
_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(OrderRequest))
NON_TRADE_TYPES = NON_TRADE_ACTIVITY_TYPES
_STOCK_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,9}")  # fullmatch: `$` matches before a final newline
_CRYPTO_SYMBOL = re.compile(r"[A-Z0-9]{2,10}/[A-Z]{3,4}")


# Alpaca's order types and times in force (trading-api.json POST /v2/orders); the sim models the subset below.
ALPACA_ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
ALPACA_TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
MODELLED_ORDER_TYPES = frozenset({"market", "limit"})
MODELLED_TIME_IN_FORCE = frozenset({"day", "gtc", "ioc"})


def kept_in_state(status: str, created_at: datetime, now: datetime) -> bool:
    """Whether the saved state keeps an order: open ones, and two days of history for lookups (the file stays small)."""
    return status in OPEN_STATUSES or now - created_at < HISTORY


def well_formed(symbol: str) -> bool:
    """A symbol the data API would look up (an unknown one is left out of its answer); anything else is a 400."""
    return bool(_STOCK_SYMBOL.fullmatch(symbol) or _CRYPTO_SYMBOL.fullmatch(symbol) or parse_occ(symbol))


class SimReject(Exception):
    """The exchange refused a request; mirrors Alpaca's status, code, message and any extra body fields."""

    def __init__(self, status: int, code: int | None, message: str, **extra: Any):
        self.status, self.code, self.message, self.extra = status, code, message, extra
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> dict[str, Any]:
        head: dict[str, Any] = {"code": self.code} if self.code is not None else {}
        return {**head, "message": self.message, **self.extra}


@dataclass
class SimOrder:
    id: str
    request: OrderRequest
    asset_class: str
    created_at: datetime
    status: str = "accepted"
    qty: float | None = None  # shares/coins/contracts asked for (from notional once priced)
    filled_qty: float = 0.0
    filled_value: float = 0.0
    updated_at: datetime | None = None
    last_fill_step: int | None = None
    cancel_requested_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    replacement: dict[str, Any] | None = None  # a replace asked for, done at the next step (pending_replace)

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class SimPosition:
    qty: float = 0.0
    avg_price: float = 0.0
    asset_class: str = "us_equity"


@dataclass(frozen=True)
class QuoteMode:
    """How one symbol's quote departs from the model, as real feeds do: a side at 0 when it is empty (Alpaca
    sends `bp: 0` / `ap: 0`), sides crossed, or the last quote frozen at an earlier time (a thin ticker)."""

    no_bid: bool = False
    no_ask: bool = False
    crossed: bool = False
    frozen_at: datetime | None = None


@dataclass(frozen=True)
class AccountFlags:
    """The account's status fields (trading-api.json Account). The sim has no margin: every buying power is cash."""

    status: str = "ACTIVE"
    crypto_status: str = "ACTIVE"
    trading_blocked: bool = False
    account_blocked: bool = False
    trade_suspended_by_user: bool = False
    options_approved_level: int = 2
    options_trading_level: int = 2  # effective: min(approved, the user's cap)
    shorting_enabled: bool = False


class OptionModel(NamedTuple):
    """One contract's model values at one instant (theta per day, vega and rho per point)."""

    price: float
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    iv: float


@dataclass
class _Memo:
    """What cannot change while the clock stands still: the same instant always gives the same quotes, option
    prices and chains, so within a tick each is computed once however many times it is read."""

    at: datetime | None = None
    quotes: dict[str, Quote] = field(default_factory=dict)
    alone: dict[str, options.Priced] = field(default_factory=dict)  # contracts priced one by one
    tables: list[tuple[_ChainLayout, options.Priced]] = field(default_factory=list)  # chains priced whole
    chains: dict[tuple[str, int, int], list[OptionContract]] = field(default_factory=dict)
    processed: int | None = None  # the revision `process` left at this instant


@dataclass(frozen=True)
class _ChainLayout:
    """The contracts of one chain in expiry, strike, call/put order, and the columns that do not move with time."""

    underlying: str
    symbols: list[str]
    types: list[str]
    strike_list: list[float]
    expiry_list: list[date]
    fixed: list[dict[str, Any]]  # each contract's fields that do not move: symbol, underlying, type, strike, expiry
    strikes: npt.NDArray[np.float64]
    is_call: npt.NDArray[np.bool_]
    per_expiry: int
    index: dict[str, int]

    @classmethod
    def build(cls, underlying: str, expiries: tuple[date, ...], strikes: list[float]) -> _ChainLayout:
        strikes = [round(k * 1000) / 1000 for k in strikes]  # as the OCC symbol carries it
        contracts = [(expiry, strike, kind) for expiry in expiries for strike in strikes for kind in ("call", "put")]
        symbols = [occ_symbol(underlying, expiry, kind, strike) for expiry, strike, kind in contracts]
        return cls(
            underlying=underlying,
            symbols=symbols,
            types=[kind for _, _, kind in contracts],
            strike_list=[strike for _, strike, _ in contracts],
            expiry_list=[expiry for expiry, _, _ in contracts],
            fixed=[
                {"symbol": occ, "underlying": underlying, "option_type": kind, "strike": strike, "expiry": expiry}
                for occ, (expiry, strike, kind) in zip(symbols, contracts, strict=True)
            ],
            strikes=np.array([strike for _, strike, _ in contracts]),
            is_call=np.array([kind == "call" for _, _, kind in contracts]),
            per_expiry=2 * len(strikes),
            index={occ: i for i, occ in enumerate(symbols)},
        )


_CONTRACT_FIELDS = ("symbol", "underlying", "option_type", "strike", "expiry", "bid", "ask", "quote_time", "delta", "gamma",
                    "theta", "vega", "implied_volatility")  # fmt: skip
# A chain is hundreds of frozen OptionContracts a minute, and their generated __init__ (an object.__setattr__ per
# field) was half of what a chain cost. They are built the way pickle restores one instead: a new instance given its
# field dict. Only while OptionContract is a plain dataclass of exactly these fields; otherwise through __init__.
_CONTRACTS_FROM_STATE = (
    tuple(f.name for f in dataclasses.fields(OptionContract)) == _CONTRACT_FIELDS
    and not hasattr(OptionContract, "__post_init__")
    and not hasattr(OptionContract, "__slots__")
)


def _contracts(
    layout: _ChainLayout, priced: options.Priced, quote_time: datetime, from_state: bool = _CONTRACTS_FROM_STATE
) -> list[OptionContract]:
    """The chain's OptionContracts, row i of `priced` for contract i of `layout`."""
    p = priced
    if not from_state:
        return list(
            map(
                OptionContract, layout.symbols, repeat(layout.underlying), layout.types, layout.strike_list, layout.expiry_list,
                p.bid, p.ask, repeat(quote_time), p.delta, p.gamma, p.theta, p.vega, p.iv,
            )
        )  # fmt: skip
    new = object.__new__
    chain = []
    for fixed, bid, ask, delta, gamma, theta, vega, iv in zip(
        layout.fixed, p.bid, p.ask, p.delta, p.gamma, p.theta, p.vega, p.iv, strict=True
    ):
        contract = new(OptionContract)
        contract.__dict__.update(fixed, bid=bid, ask=ask, quote_time=quote_time, delta=delta, gamma=gamma, theta=theta, vega=vega,
                                 implied_volatility=iv)  # fmt: skip
        chain.append(contract)
    return chain


@dataclass
class SimExchange:
    clock: Clock
    seed: int = 7
    starting_cash: float = 100_000.0
    # Where prices come from: None is the seeded synthetic paths (`paths` then holds them). Anything else is the
    # caller's (the replay's recorded frames), and is not saved by `to_state`.
    prices: PriceSource | None = field(default=None, repr=False)
    paths: PriceSource = field(init=False)
    cash: float = field(init=False)
    last_equity: float = field(init=False)
    positions: dict[str, SimPosition] = field(default_factory=dict)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)
    # False: an order is answered pending_new/accepted and matched only at a later step, as at Alpaca (the emulator).
    fill_at_submit: bool = True
    flags: AccountFlags = field(default_factory=AccountFlags)
    activities: list[NonTradeActivity] = field(default_factory=list)  # cash moved without a trade
    moved: dict[str, float] = field(default_factory=dict)  # by activity id: what a holdings transfer was worth
    # Counts every change of what `to_state` saves (orders, fills, cash, the day), so a saver can tell, without
    # serialising anything, whether the account moved since it last wrote it. Code that edits the fields above
    # directly must call `changed()`.
    revision: int = field(default=0, init=False)
    # When the equity market is open: the exchange's own calendar, as Alpaca's clock follows it.
    calendar: MarketCalendar = field(default_factory=market_calendar, repr=False)
    # Called by SimAPI after a request that changed the exchange, before its answer is given (a run saves the
    # exchange there: `persist.SimPersistence`). A real broker holds what it answered whatever happens to the
    # engine; saved only at the end of the engine's tick, an answer the engine had committed (an order's fill,
    # its position) was lost from the exchange by a kill in between, and the next run halted on the difference.
    on_change: Callable[[], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        now = self.clock.now()
        # Paths start at the minute the exchange opens for business, so nothing is generated that no one reads.
        self.paths = self.prices if self.prices is not None else PricePaths(
            self.seed, now.replace(second=0, microsecond=0), calendar=self.calendar
        )
        self.cash = self.starting_cash
        self.last_equity = self.starting_cash
        self._day = now.astimezone(NEW_YORK).date()
        # Alpaca's last_equity is the equity at the previous trading day's close (docs/alpaca.md), not at midnight:
        # the latest session close passed and the equity valued at its prices, taken at the first step after it;
        # `last_equity_close` is the close the current `last_equity` is from.
        self.close_at: datetime = self.calendar.previous_close(now)
        self.close_equity: float = self.starting_cash
        self.last_equity_close: datetime = self.close_at
        self._ids = random.Random(f"{self.seed}:ids")
        self._memo = _Memo()
        self._working: dict[str, SimOrder] = {}  # every open order, and closed ones until `_open_orders` drops them
        self._classes: dict[str, str] = {}
        self._layouts: dict[tuple[str, tuple[date, ...], tuple[float, ...]], _ChainLayout] = {}
        self._formed: dict[str, bool] = {}
        self._listed: set[str] = set()  # symbols `answerable` found listed
        self.quote_modes: dict[str, QuoteMode] = {}  # market-data quirks, by symbol (not saved: the feed's, not ours)
        self.asset_overrides: dict[str, dict[str, Any] | None] = {}  # None: no such asset
        self.lock = threading.RLock()
        self._clock_span: tuple[datetime, datetime, bool, datetime, datetime] | None = None  # `market_clock`'s answer
        self._flat_account: tuple[tuple[Any, ...], Account] | None = None  # `account`'s last answer while flat
        self.calendar.is_open(now)  # its sessions read now, when the exchange is built, not in the first tick

    def changed(self) -> None:
        self.revision += 1

    # --- durability: the simulated account survives restarts like a real one --------------------------------

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            return {
                "seed": self.seed,
                "epoch": self.paths.epoch.isoformat(),
                "now": now.isoformat(),
                "cash": self.cash,
                "last_equity": self.last_equity,
                "last_equity_close": self.last_equity_close.isoformat(),
                "day": self._day.isoformat(),
                "positions": {s: [p.qty, p.avg_price, p.asset_class] for s, p in self.positions.items()},
                "orders": [_order_row(o) for o in self.orders.values() if kept_in_state(o.status, o.created_at, now)],
                "flags": dataclasses.asdict(self.flags),
                "activities": [
                    {**dataclasses.asdict(a), "created_at": a.created_at.isoformat() if a.created_at else None}
                    for a in self.activities
                ],
                "moved": dict(self.moved),
            }

    @classmethod
    def from_state(cls, state: dict[str, Any], clock: Clock) -> SimExchange:
        """Rebuild an exchange saved by `to_state`; the clock must not be behind the saved time. Every value is
        checked first (`check_state`): ValueError names the first one `to_state` never writes."""
        check_state(state)
        if clock.now() < datetime.fromisoformat(state["now"]):
            raise ValueError(f"the simulation already reached {state['now']}; time cannot go backwards")
        exchange = cls(clock, seed=int(state["seed"]), starting_cash=float(state["cash"]))
        exchange.paths = PricePaths(exchange.seed, datetime.fromisoformat(state["epoch"]), calendar=exchange.calendar)
        exchange.cash = float(state["cash"])
        exchange.last_equity = float(state["last_equity"])
        exchange._day = date.fromisoformat(state["day"])
        # A state saved before it was: last_equity is as of the saved day. A close after it is taken again by the
        # next step (`close_at`), valued at that close's prices.
        saved_close = state.get("last_equity_close") or state["now"]
        exchange.close_at = exchange.last_equity_close = datetime.fromisoformat(saved_close)
        exchange.close_equity = exchange.last_equity
        exchange.positions = {s: SimPosition(q, a, c) for s, (q, a, c) in state["positions"].items()}
        exchange.flags = AccountFlags(**state.get("flags", {}))
        exchange.activities = [
            NonTradeActivity(**{**a, "created_at": datetime.fromisoformat(a["created_at"]) if a.get("created_at") else None})
            for a in state.get("activities", [])
        ]
        exchange.moved = {str(k): float(v) for k, v in state.get("moved", {}).items()}
        for row in state["orders"]:
            cancel_at = row.get("cancel_requested_at")
            order = SimOrder(
                row["id"],
                OrderRequest(**row["request"]),
                row["asset_class"],
                datetime.fromisoformat(row["created_at"]),
                status=row["status"],
                qty=row["qty"],
                filled_qty=row["filled_qty"],
                filled_value=row["filled_value"],
                last_fill_step=row["last_fill_step"],
                cancel_requested_at=datetime.fromisoformat(cancel_at) if cancel_at else None,
                replaced_by=row.get("replaced_by"),
                replaces=row.get("replaces"),
                replacement=row.get("replacement"),
            )
            exchange.orders[order.id] = order
            exchange.by_client_id[order.request.client_order_id] = order.id
            if order.open:
                exchange._working[order.id] = order
        exchange.revision = int(state.get("revision", 0))
        # A stream of its own for each saved revision (which only grows): seeded by the count of orders kept alone,
        # a later load keeping as many (older ones aged out) drew the ids a kept order already had (`_new_id`)
        exchange._ids = random.Random(f"{exchange.seed}:ids:{len(exchange.orders)}:{exchange.revision}")
        return exchange

    # --- time and markets ----------------------------------------------------------------------------------

    def open_paths(self, symbols: Iterable[str]) -> None:
        """Draw the opening stretch of these symbols' synthetic paths now (each a seeded generator of its own),
        as the simulator opens, rather than in the first tick that quotes them: about 30 ms at 1,000 symbols.
        Prices are the same either way. A replay's prices come from its data: nothing to draw."""
        if isinstance(self.paths, PricePaths):
            self.paths.open(symbols, self.clock.now())

    def equity_market_open(self, at: datetime) -> bool:
        """Open by the exchange calendar (XNYS): weekends, holidays and early closes as the real market has them."""
        return self.calendar.is_open(at)

    def market_clock(self) -> MarketClock:
        now = self.clock.now()
        span = self._clock_span
        if span is None or not span[0] <= now < span[1]:
            calendar = self.calendar
            is_open, next_open, next_close = calendar.is_open(now), calendar.next_open(now), calendar.next_close(now)
            # All three hold until the market next opens or closes: the calendar is asked once per boundary.
            span = self._clock_span = (now, next_close if is_open else next_open, is_open, next_open, next_close)
        return make(MarketClock, timestamp=now, is_open=span[2], next_open=span[3], next_close=span[4])

    def tradable(self, asset_class: str, at: datetime) -> bool:
        return asset_class == "crypto" or self.equity_market_open(at)

    def _new_id(self) -> str:
        """A new order's id, never one the exchange holds: a repeat would replace the order that has it (its
        client_order_id would find the new one, a cancel of it would cancel the new one)."""
        while True:
            order_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
            if order_id not in self.orders:
                return order_id

    # --- prices --------------------------------------------------------------------------------------------

    def _asset_class(self, symbol: str) -> str:
        """`asset_class_of`, remembered: telling an option from a stock takes a regular expression."""
        asset_class = self._classes.get(symbol)
        if asset_class is None:
            asset_class = self._classes[symbol] = asset_class_of(symbol)
        return asset_class

    def _memo_at(self, at: datetime) -> _Memo:
        if self._memo.at != at:
            self._memo = _Memo(at)
        return self._memo

    def _option_row(self, occ: str, at: datetime) -> tuple[options.Priced, int]:
        memo = self._memo_at(at)
        alone = memo.alone.get(occ)
        if alone is not None:
            return alone, 0
        for layout, table in memo.tables:
            i = layout.index.get(occ)
            if i is not None:
                return table, i
        parsed = parse_occ(occ)
        if parsed is None:
            raise SimReject(422, 42210000, f"invalid symbol: {occ}")
        root, expiry, option_type, strike = parsed
        years = options.years_to_expiry(expiry, at)
        priced = options.price_one(self.paths.price(root, at), strike, years, option_type, SPREAD["us_option"])
        memo.alone[occ] = priced
        return priced, 0

    def _option_model(self, occ: str, at: datetime) -> OptionModel:
        priced, i = self._option_row(occ, at)
        return OptionModel(*(column[i] for column in priced[: len(OptionModel._fields)]))

    def last_price(self, symbol: str, at: datetime | None = None) -> float:
        at = at or self.clock.now()
        if self._asset_class(symbol) == "us_option":
            sides = self.paths.quote_sides(symbol, at)  # a contract the source has data for is priced by it
            if sides is not None:
                return (sides[0] + sides[1]) / 2
            priced, i = self._option_row(symbol, at)
            return priced.mid[i]
        return self.paths.price(symbol, at)

    def quote(self, symbol: str) -> Quote:
        now = self.clock.now()
        known = self._memo_at(now).quotes
        quote = known.get(symbol)
        if quote is None:
            self._quote_now([symbol], now)
            quote = known[symbol]
        return quote

    def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """`quote` of each symbol, as one call: what a data request for many symbols reads. Stocks and coins come
        from the price source in one call (`PriceSource.quotes`), which at a thousand symbols a tick is most of
        what the simulator's snapshot costs."""
        now = self.clock.now()
        known = self._memo_at(now).quotes
        todo = [symbol for symbol in symbols if symbol not in known]
        if todo:
            self._quote_now(todo, now)
        return {symbol: known[symbol] for symbol in symbols}

    def _quote_now(self, symbols: list[str], now: datetime) -> None:
        """The quotes of `symbols` (none of them in the memo yet) at `now`, into the memo."""
        known = self._memo_at(now).quotes
        classes = self._classes
        plain = [symbol for symbol in symbols if (classes.get(symbol) or self._asset_class(symbol)) != "us_option"]
        if plain:
            bids, asks, times = self.paths.quotes(plain, now)
            if _QUOTES_FROM_STATE:  # `_new_quote`'s way, inline: a quote per symbol per tick
                new = object.__new__
                for symbol, bid, ask, when in zip(plain, bids, asks, times, strict=True):
                    quote = known[symbol] = new(Quote)
                    quote.__dict__.update(symbol=symbol, bid=bid, ask=ask, timestamp=when)
            else:
                for symbol, bid, ask, when in zip(plain, bids, asks, times, strict=True):
                    known[symbol] = _new_quote(symbol, bid, ask, when)
        if len(plain) < len(symbols):
            for symbol in symbols:
                if classes[symbol] == "us_option":
                    known[symbol] = self._option_quote(symbol, now)
        if self.quote_modes:
            for symbol in symbols:
                if symbol in self.quote_modes:
                    known[symbol] = self._apply_mode(known[symbol])

    def _option_quote(self, occ: str, now: datetime) -> Quote:
        """A contract's quote: the price source's when it has data for it, else the option model's."""
        step_time = self.paths.price_time(occ, now)
        sides = self.paths.quote_sides(occ, now)
        if sides is not None:
            return Quote(occ, sides[0], sides[1], step_time)
        priced, i = self._option_row(occ, now)
        return Quote(occ, priced.bid[i], priced.ask[i], step_time)

    def set_quote_mode(self, symbol: str, mode: QuoteMode | None) -> None:
        """Make `symbol`'s quotes depart from the model (None: back to normal), from this instant on."""
        with self.lock:
            if mode is None:
                self.quote_modes.pop(symbol, None)
            else:
                self.quote_modes[symbol] = mode
            self._memo = _Memo()  # what was handed out at this instant no longer holds

    def _apply_mode(self, quote: Quote) -> Quote:
        mode = self.quote_modes.get(quote.symbol)
        if mode is None:
            return quote
        if mode.frozen_at is not None:
            quote = self._quote_at(quote.symbol, min(mode.frozen_at, self.clock.now()))
        bid, ask = quote.bid, quote.ask
        if mode.crossed:
            bid, ask = ask, bid
        return Quote(quote.symbol, 0.0 if mode.no_bid else bid, 0.0 if mode.no_ask else ask, quote.timestamp)

    def _quote_at(self, symbol: str, at: datetime) -> Quote:
        """The model's quote at an earlier instant, without touching this instant's memo. Before the paths begin
        the price is their first, but the time is the one asked for: a quote can be older than the simulation."""
        step_time = min(self.paths.step_time(self.paths.step_of(at)), at)
        if self._asset_class(symbol) != "us_option":
            return _quote(symbol, self._asset_class(symbol), self.paths.price(symbol, at), step_time)
        parsed = parse_occ(symbol)
        assert parsed is not None
        root, expiry, option_type, strike = parsed
        priced = options.price_one(
            self.paths.price(root, at), strike, options.years_to_expiry(expiry, at), option_type, SPREAD["us_option"]
        )
        return Quote(symbol, priced.bid[0], priced.ask[0], step_time)

    def option_chain(self, underlying: str, dte_min: int, dte_max: int) -> list[OptionContract]:
        now = self.clock.now()
        memo = self._memo_at(now)
        chain = memo.chains.get((underlying, dte_min, dte_max))
        if chain is None:
            chain = self._price_chain(memo, underlying, dte_min, dte_max)
            if self.quote_modes:
                chain = [self._moded_contract(c) if c.symbol in self.quote_modes else c for c in chain]
            memo.chains[(underlying, dte_min, dte_max)] = chain
        return list(chain)

    def _moded_contract(self, contract: OptionContract) -> OptionContract:
        quote = self._apply_mode(Quote(contract.symbol, contract.bid, contract.ask, contract.quote_time))
        return dataclasses.replace(contract, bid=quote.bid, ask=quote.ask, quote_time=quote.timestamp)

    def _price_chain(self, memo: _Memo, underlying: str, dte_min: int, dte_max: int) -> list[OptionContract]:
        """Every contract of the chain priced in one vectorised pass; the contracts in expiry, strike, call/put order."""
        assert memo.at is not None
        now = memo.at
        spot = self.paths.price(underlying, now)
        expiries = options.expiries(now.astimezone(NEW_YORK).date(), dte_min, dte_max)
        if not expiries:
            return []
        layout = self._layout(underlying, expiries, options.strikes(spot))
        years = np.array([options.years_to_expiry(expiry, now) for expiry in expiries])
        priced = options.price_contracts(
            spot, layout.strikes, np.repeat(years, layout.per_expiry), layout.is_call, SPREAD["us_option"]
        )
        chain = _contracts(layout, priced, self.paths.price_time(underlying, now))
        # A contract already priced alone this tick (a held option is quoted before chains are read) keeps the values
        # handed out then, so a tick never shows two prices for it (the two ways agree to about 1e-9, not to the bit).
        # Chains of one instant share contracts priced alike: the same inputs through the same function.
        memo.tables.append((layout, priced))
        for occ in memo.alone.keys() & layout.index.keys():
            alone, i = memo.alone[occ], layout.index[occ]
            chain[i] = dataclasses.replace(
                chain[i], bid=alone.bid[0], ask=alone.ask[0], delta=alone.delta[0], gamma=alone.gamma[0],
                theta=alone.theta[0], vega=alone.vega[0], implied_volatility=alone.iv[0],
            )  # fmt: skip
        return chain

    def _layout(self, underlying: str, expiries: tuple[date, ...], strikes: list[float]) -> _ChainLayout:
        """A chain's symbols and fixed columns: the same for every chain until the expiries or the strikes move."""
        key = (underlying, expiries, tuple(strikes))
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 64:
                self._layouts.clear()
            layout = self._layouts[key] = _ChainLayout.build(underlying, expiries, strikes)
        return layout

    def greeks(self, occ: str) -> dict[str, float]:
        return self._option_model(occ, self.clock.now())._asdict()

    # --- account -------------------------------------------------------------------------------------------

    def _multiplier(self, asset_class: str) -> float:
        return OPTION_CONTRACT_SIZE if asset_class == "us_option" else 1.0  # the one constant (brokers/symbols.py)

    def equity(self) -> float:
        now = self.clock.now()
        value = sum(p.qty * self.last_price(s, now) * self._multiplier(p.asset_class) for s, p in self.positions.items())
        return self.cash + value

    def _reserved(self) -> float:
        """Cash held for open buy orders: Alpaca's buying power is reduced by them."""
        total = 0.0
        for order in self._open_orders():
            r = order.request
            if r.side != "buy" or order.status == "suspended":
                continue
            if order.qty is None:
                total += r.notional or 0.0
                continue
            price = r.limit_price or self.quote(r.symbol).ask
            total += max(order.qty - order.filled_qty, 0.0) * price * self._multiplier(order.asset_class)
        return total

    def intraday_adjustments(self) -> float:
        """Cash moved without a trade since the close `last_equity` is from, so that equity − last_equity −
        adjustments is the trading P&L also on the day after a weekend (a Saturday withdrawal is no Monday loss)."""
        if not self.activities:
            return 0  # what the sum of none is, without finding the close
        since = self.last_equity_close
        return sum(self.moved.get(a.id, a.net_amount) for a in self.activities if a.created_at and a.created_at > since)

    def account(self) -> Account:
        self.process()
        if self.positions or self._open_orders():
            self._flat_account = None
            return self._account()
        # Nothing held and nothing working: no price enters the account, which is then a function of these figures
        # alone (`_account`). Unchanged (most ticks of a backtest), the last answer is the answer: an Account is
        # frozen, so the one handed out again cannot have been changed by whoever read it before.
        key = (self.cash, self.last_equity, self.flags, self.last_equity_close, tuple(self.activities))
        kept = self._flat_account
        if kept is not None and kept[0] == key:
            return kept[1]
        account = self._account()
        self._flat_account = (key, account)
        return account

    def _account(self) -> Account:
        f = self.flags
        spendable = round_to(max(self.cash - self._reserved(), 0.0), 2)
        adjustments = round_to(self.intraday_adjustments(), 2)
        return make(
            Account,
            equity=round_to(self.equity(), 2),
            last_equity=round_to(self.last_equity, 2),
            cash=round_to(self.cash, 2),
            buying_power=spendable,
            status=f.status,
            trading_blocked=f.trading_blocked,
            account_blocked=f.account_blocked,
            crypto_status=f.crypto_status,
            options_trading_level=f.options_trading_level,
            options_approved_level=f.options_approved_level,
            non_marginable_buying_power=spendable,
            options_buying_power=spendable,
            trade_suspended_by_user=f.trade_suspended_by_user,
            non_trade_cash_today=adjustments,
            non_trade_cash_source="intraday_adjustments",
            non_trade_activities=(),
            non_trade_cash_unknown=None,
            account_id=None,  # the emulator names its own (Emulator.account_id); a simulated run checks none
        )

    def move_cash(self, amount: float, activity_type: str = "CSD") -> NonTradeActivity:
        """Cash in (positive) or out (negative) without a trade: a deposit, a withdrawal, a fee, a dividend."""
        if activity_type not in NON_TRADE_TYPES:
            raise ValueError(f"{activity_type} is not a non-trade cash activity")
        return self._book(amount, activity_type, amount)

    def transfer_holdings(self, value: float, activity_type: str = "ACATS") -> NonTradeActivity:
        """Holdings worth `value` moved into (positive) or out of (negative) the account without a trade: ACATS or
        JNLS securities, OCT on-chain crypto, or a type no list knows. The equity moves by the value (the sim keeps it
        as cash: it models no transferred position); the activity's net_amount is 0, as a securities transfer moves
        no cash, and `intraday_adjustments` counts it (Alpaca's figure is the day's non-trade movement)."""
        if activity_type in NON_TRADE_TYPES:
            raise ValueError(f"{activity_type} moves cash: move_cash books it")
        return self._book(value, activity_type, 0.0)

    def _book(self, value: float, activity_type: str, net_amount: float) -> NonTradeActivity:
        with self.lock:
            self.process()  # a close passed since the last step is valued before the cash moves, not after
            now = self.clock.now()
            activity = NonTradeActivity(
                # Alpaca's ids begin with the New York time of the booking, to the millisecond (alpaca._id_time)
                id=f"{now.astimezone(NEW_YORK):%Y%m%d%H%M%S}{now.microsecond // 1000:03d}::{self._new_id()}",
                activity_type=activity_type,
                net_amount=round(net_amount, 2),
                created_at=now,
                date=f"{now.astimezone(NEW_YORK):%Y-%m-%d}",
            )
            self.activities.append(activity)
            self.moved[activity.id] = round(value, 2)
            self.cash += value
            self.changed()
            return activity

    def non_trade_activities(self, types: frozenset[str] | None = None) -> list[NonTradeActivity]:
        """The activities booked, of `types` (every one when None)."""
        return [a for a in self.activities if types is None or a.activity_type in types]

    def set_position(self, symbol: str, qty: float, avg_price: float) -> None:
        """A position opened outside the engine (by hand, or a short Alpaca let through): cash moves as the
        trade would have moved it, so equity is unchanged."""
        with self.lock:
            asset_class = self._asset_class(symbol)
            mult = self._multiplier(asset_class)
            held = self.positions.get(symbol)
            delta = qty - (held.qty if held else 0.0)
            self.cash -= delta * avg_price * mult
            if abs(qty) < 1e-12:
                self.positions.pop(symbol, None)
            else:
                self.positions[symbol] = SimPosition(qty, avg_price, asset_class)
            self.changed()

    def position_views(self) -> list[Position]:
        self.process()
        return self.position_views_as_is()

    def position_views_as_is(self) -> list[Position]:
        """`position_views` without bringing the exchange up to the clock first: for a caller that just did (the
        replay's snapshot, right after the account read: `process` would do nothing again)."""
        now = self.clock.now()
        selling: dict[str, float] = {}  # what open sell orders hold of each symbol (`_check_sell` counts the same)
        for o in self._open_orders():
            if o.request.side == "sell":
                selling[o.request.symbol] = selling.get(o.request.symbol, 0.0) + (o.qty or 0) - o.filled_qty
        views = []
        for symbol, p in sorted(self.positions.items()):
            price = self.last_price(symbol, now)
            mult = self._multiplier(p.asset_class)
            value, pnl = p.qty * price * mult, p.qty * (price - p.avg_price) * mult
            available = max(p.qty - selling.get(symbol, 0.0), 0.0) if p.qty > 0 else None
            views.append(
                make(Position, symbol=symbol, qty=p.qty, avg_entry_price=p.avg_price, current_price=price, market_value=value,
                      unrealized_pl=pnl, asset_class=cast(AssetClass, p.asset_class), qty_available=available)
            )  # fmt: skip
        return views

    # --- assets --------------------------------------------------------------------------------------------

    def well_formed(self, symbol: str) -> bool:
        """`well_formed`, remembered: the data API checks every symbol of every request."""
        known = self._formed.get(symbol)
        if known is None:
            known = self._formed[symbol] = well_formed(symbol)
        return known

    def listed(self, symbol: str) -> bool:
        """Whether the symbol exists (quotes are given for it), without building its Asset."""
        return self.well_formed(symbol) and not (symbol in self.asset_overrides and self.asset_overrides[symbol] is None)

    def answerable(self, symbols: Sequence[str]) -> list[str]:
        """The symbols a latest-quotes request answers for, in their order: a malformed one refuses the whole
        request (400, as the data API does), one not listed is left out. A symbol found listed is remembered
        until `set_asset` (a replay lists a symbol once its data starts, and never unlists it)."""
        known = self._listed
        if known.issuperset(symbols):
            return list(symbols)
        bad = [symbol for symbol in symbols if symbol not in known and not self.well_formed(symbol)]
        if bad:
            raise SimReject(400, None, f"invalid symbol: {bad[0]}")
        for symbol in symbols:
            if symbol not in known and self.listed(symbol):
                known.add(symbol)
        return [symbol for symbol in symbols if symbol in known]

    def set_asset(self, symbol: str, **fields: Any) -> None:
        """Override an asset's fields (`status="inactive"`, `tradable=False`, `fractionable=False`), or
        `exists=False` for a symbol Alpaca does not list."""
        with self.lock:
            self._listed.clear()
            if fields.get("exists", True) is False:
                self.asset_overrides[symbol] = None
            else:
                self.asset_overrides[symbol] = {**(self.asset_overrides.get(symbol) or {}), **fields}

    def asset(self, symbol: str) -> Asset | None:
        """The asset as /v2/assets/{symbol} gives it; None when there is none (404). Every well-formed stock
        and USD/USDT/USDC/BTC crypto pair exists unless `set_asset` says otherwise (the synthetic universe).
        Crypto increments change with the price, modelled simply: the minimum order is about a dollar's worth
        (4 significant digits), the price increment a ten-thousandth of the price's power of ten (BTC/USD at
        $60,000: 1, as Alpaca's crypto docs show; ETH/USD at $3,000: 0.1), quantities in steps of 1e-9."""
        if symbol in self.asset_overrides and self.asset_overrides[symbol] is None:
            return None
        if not well_formed(symbol) or parse_occ(symbol):
            return None
        overrides = self.asset_overrides.get(symbol) or {}
        if self._asset_class(symbol) == "crypto":
            price = self.paths.price(symbol, self.clock.now())
            asset = Asset(
                symbol=symbol,
                asset_class="crypto",
                exchange="CRYPTO",
                status="active",
                tradable=True,
                fractionable=True,
                min_order_size=float(f"{1.0 / price:.4g}"),
                min_trade_increment=1e-9,
                price_increment=10.0 ** (math.floor(math.log10(price)) - 4),
            )
        else:
            asset = Asset(symbol, "us_equity", "NASDAQ", "active", True, True, marginable=True, shortable=True)
        known = {f.name for f in dataclasses.fields(Asset)}
        return dataclasses.replace(asset, **{k: v for k, v in overrides.items() if k in known})

    def assets(self, asset_class: str | None = None) -> list[Asset]:
        """The listed universe: the named symbols, every symbol this exchange has priced, and overrides."""
        names = sorted({*BASE_PRICES, *self._classes, *self.asset_overrides})
        if asset_class is not None:  # only those of the class are built (an override may change a symbol's)
            names = [n for n in names if n in self.asset_overrides or self._asset_class(n) == asset_class]
        found = (self.asset(name) for name in names)
        return [a for a in found if a is not None and (asset_class is None or a.asset_class == asset_class)]

    # --- orders --------------------------------------------------------------------------------------------

    def order_view(self, order: SimOrder) -> Order:
        r = order.request
        avg = order.filled_value / order.filled_qty if order.filled_qty else None
        return make(
            Order,
            id=order.id,
            client_order_id=r.client_order_id,
            symbol=r.symbol,
            side=r.side,
            qty=order.qty if r.qty else None,
            notional=r.notional,
            filled_qty=order.filled_qty,
            filled_avg_price=avg,
            order_type=r.order_type,
            time_in_force=r.time_in_force,
            limit_price=r.limit_price,
            status=order.status,
            created_at=order.created_at,
            asset_class=order.asset_class,
            replaced_by=order.replaced_by,
            replaces=order.replaces,
        )

    def _open_orders(self) -> list[SimOrder]:
        """The open orders, oldest first, without walking the whole history: an order that closed leaves the
        working set for good (no status ever goes back to open)."""
        working = self._working
        for order_id in [i for i, o in working.items() if not o.open]:
            del working[order_id]
        return list(working.values())

    def open_orders(self) -> list[Order]:
        self.process()
        return self.open_orders_as_is()

    def open_orders_as_is(self) -> list[Order]:
        """`open_orders` without `process` first (as `position_views_as_is`)."""
        return [self.order_view(o) for o in self._open_orders()]

    def find_by_client_id(self, client_order_id: str) -> Order:
        self.process()
        order_id = self.by_client_id.get(client_order_id)
        if order_id is None:
            raise SimReject(404, 40410000, "order not found")
        return self.order_view(self.orders[order_id])

    def find(self, order_id: str) -> Order:
        self.process()
        if order_id not in self.orders:
            raise SimReject(404, 40410000, "order not found")
        return self.order_view(self.orders[order_id])

    def _validate(self, r: OrderRequest, asset_class: str) -> None:
        """Alpaca's refusals, in the order a request meets them. Messages quoted from a source say so in
        docs/alpaca.md; the others are ours (marked there), with Alpaca's status and code."""
        if r.order_type not in ALPACA_ORDER_TYPES:  # alpaca-trade-api-go #202: 422 "invalid order type"
            raise SimReject(422, 40010001, "invalid order type")
        if r.time_in_force not in ALPACA_TIME_IN_FORCE:  # alpaca-py #167: 422 40010001 "invalid time_in_force"
            raise SimReject(422, 40010001, "invalid time_in_force")
        if r.order_type not in MODELLED_ORDER_TYPES or r.time_in_force not in MODELLED_TIME_IN_FORCE:
            # Alpaca takes these; the sim does not model them, and filling one as a market day order would pass a
            # test on behaviour live trading does not have. Refused, with our message (docs/alpaca.md).
            raise SimReject(422, 40010000, f"{r.order_type} {r.time_in_force} orders are not modelled by the simulated exchange")
        if len(r.client_order_id) > order_rules.CLIENT_ORDER_ID_MAX:  # trading-api.json "(<= 128 characters)"
            raise SimReject(422, 40010000, f"client_order_id must be at most {order_rules.CLIENT_ORDER_ID_MAX} characters")
        if r.client_order_id in self.by_client_id:
            raise SimReject(422, 40010001, "client_order_id must be unique")
        if (r.qty is None) == (r.notional is None):
            raise SimReject(422, 40010000, "qty or notional is required, not both")
        amounts = [(name, value) for name, value in (("qty", r.qty), ("notional", r.notional)) if value is not None]
        if any(not math.isfinite(value) or value <= 0 for _, value in amounts):
            raise SimReject(422, 40010000, "qty and notional must be positive")
        for name, value in amounts:  # trading-api.json: "can take up to 9 decimal points"
            if order_rules.decimals(value) > order_rules.AMOUNT_DECIMALS:
                raise SimReject(422, 40010000, f"{name} must have at most {order_rules.AMOUNT_DECIMALS} decimal places")
        if r.order_type == "limit" and r.limit_price is None:
            raise SimReject(422, 40010000, "limit_price is required for limit orders")
        stock_limit = r.limit_price if r.order_type == "limit" and asset_class == "us_equity" else None
        if stock_limit is not None and order_rules.decimals(stock_limit) > order_rules.stock_price_decimals(stock_limit):
            # alpaca-trade-api-go #260, -csharp #497: 422 42210000, the price as sent
            raise SimReject(422, 42210000, f"invalid limit_price {r.limit_price!r}. {order_rules.SUB_PENNY_MESSAGE}")
        fractional = r.notional is not None or (r.qty is not None and r.qty != int(r.qty))
        if asset_class == "crypto":
            if r.time_in_force not in ("gtc", "ioc"):
                raise SimReject(422, 42210000, "invalid crypto time_in_force")
        elif asset_class == "us_option" and r.time_in_force != "day":
            raise SimReject(422, 42210000, order_rules.OPTION_TIF_MESSAGE)
        elif asset_class == "us_option" and self._expired(r.symbol):
            raise SimReject(422, 42210000, f"asset {r.symbol} is not active")
        else:
            if fractional and (r.order_type != "market" or r.time_in_force != "day"):
                raise SimReject(422, 42210000, "fractional orders must be market and day orders")
            if asset_class == "us_option" and fractional:
                raise SimReject(422, 42210000, "option orders take whole contracts")
        if asset_class != "us_option":
            asset = self.asset(r.symbol)
            if asset is None:
                raise SimReject(422, 40010001, f"asset {r.symbol} not found")
            if not asset.active or not asset.tradable:
                raise SimReject(422, 42210000, f"asset {r.symbol} is not {'active' if not asset.active else 'tradable'}")
            if fractional and not asset.fractionable:
                raise SimReject(422, 42210000, f"asset {r.symbol} is not fractionable")
        self._check_account(r, asset_class)
        quote = self.quote(r.symbol)
        if asset_class == "crypto" and r.side == "buy" and r.symbol.endswith("/USD"):
            price = r.limit_price or quote.ask
            cost = r.notional if r.notional is not None else (r.qty or 0.0) * price
            if price > 0 and cost < CRYPTO_MIN_COST_USD - 1e-9:
                raise SimReject(403, 40310000, f"cost basis must be >= minimal amount of order {CRYPTO_MIN_COST_USD:g}")
        for other in self._open_orders():
            o = other.request
            if o.symbol == r.symbol and o.side != r.side and other.status != "suspended" and _crosses(r, o):
                # alpaca-java #145: 422 42210000; the order that would trade with our own opposite order
                raise SimReject(422, 42210000, "potential wash trade detected. use complex orders")
        if r.side == "sell":
            self._check_sell(r, asset_class)

    def _expired(self, occ: str) -> bool:
        """Whether a contract's expiry has closed (or its expiry is no trading day): it is listed no longer."""
        parsed = parse_occ(occ)
        if parsed is None:
            return False
        session = self.calendar.session(parsed[1])
        return session is None or self.clock.now() >= session.close

    def _check_account(self, r: OrderRequest, asset_class: str) -> None:
        f = self.flags
        if f.status != "ACTIVE" or f.trading_blocked or f.account_blocked or f.trade_suspended_by_user:
            raise SimReject(403, 40310000, "account is not authorized to trade")
        if asset_class == "crypto" and f.crypto_status != "ACTIVE":
            raise SimReject(403, 40310000, "account is not approved for crypto trading")
        if asset_class == "us_option" and r.side == "buy" and f.options_trading_level < 2:
            raise SimReject(403, 40310000, "account not eligible to trade long option contracts")

    def _check_sell(self, r: OrderRequest, asset_class: str) -> None:
        held = self.positions.get(r.symbol)
        existing = held.qty if held else 0.0
        pending = sum(
            (o.qty or 0) - o.filled_qty for o in self._open_orders() if o.request.side == "sell" and o.request.symbol == r.symbol
        )
        available = max(existing - pending, 0.0)
        if r.qty is not None and existing > 0 and available >= r.qty - 1e-9:
            return
        if asset_class == "crypto":  # reported for crypto sells beyond the coins held
            raise SimReject(403, 40310000, f"insufficient balance for {r.symbol.split('/')[0]}")
        if existing <= 0 and not self.flags.shorting_enabled:  # alpaca-py test_position_routes.py
            raise SimReject(403, 40310000, "account is not allowed to short")
        # alpaca-py test_position_routes.py: the message and the extra fields
        raise SimReject(
            403,
            40310000,
            f"insufficient qty available for order (requested: {_num(r.qty or 0)}, available: {_num(available)})",
            available=_num(available),
            existing_qty=_num(existing),
            held_for_orders=_num(pending),
            symbol=r.symbol,
        )

    def submit(self, r: OrderRequest) -> Order:
        with self.lock:
            self.process()
            asset_class = self._asset_class(r.symbol)
            self._validate(r, asset_class)
            now = self.clock.now()
            quote = self.quote(r.symbol)
            if r.side == "buy":
                price = r.limit_price or quote.ask
                cost = r.notional or (r.qty or 0) * price * self._multiplier(asset_class)
                if cost > self.cash - self._reserved() + 1e-6:
                    # "insufficient balance for USD" is reported for crypto buys; "insufficient buying power" for the rest
                    message = "insufficient balance for USD" if asset_class == "crypto" else "insufficient buying power"
                    raise SimReject(403, 40310000, message)
            status = "pending_new" if self.tradable(asset_class, now) else "accepted"
            order = SimOrder(self._new_id(), r, asset_class, now, status=status, qty=r.qty, updated_at=now)
            if r.notional is not None:
                price = r.limit_price or (quote.ask if r.side == "buy" else quote.bid)
                order.qty = r.notional / price if price > 0 else None
            self.orders[order.id] = order
            self._working[order.id] = order
            self.by_client_id[r.client_order_id] = order.id
            self.changed()
            if self.fill_at_submit:
                self._step(order, now)
            return self.order_view(order)

    def cancel(self, order_id: str) -> None:
        """Asks for the cancel: the order is `pending_cancel` now and ends at the next step, canceled or, if a
        fill won the race, filled (trading-api.json: DELETE answers 204; 422 when not cancelable). An order that has
        ended is refused in Alpaca's words, 422 42210000 'order is already in "filled" state' (logged by public
        projects cancelling a filled order, the same for a canceled one); a pending_replace in ours."""
        with self.lock:
            self.process()
            order = self.orders.get(order_id)
            if order is None:
                raise SimReject(404, 40410000, "order not found")
            if order.status == "pending_cancel":
                return  # asked already: nothing more to do
            if not order.open:
                raise SimReject(422, 42210000, f'order is already in "{order.status}" state')
            if order.status == "pending_replace":
                raise SimReject(422, 42210000, f"order is not cancelable (status: {order.status})")
            self._ask_cancel(order)

    def _ask_cancel(self, order: SimOrder) -> None:
        now = self.clock.now()
        order.status = "pending_cancel"
        order.cancel_requested_at = now
        order.updated_at = now
        self.changed()

    def cancel_all(self) -> list[tuple[str, int]]:
        """Each open order's cancel asked for; per order 200, or 500 for one that cannot be cancelled
        (trading-api.json: DELETE /v2/orders answers 207 with one status per order)."""
        with self.lock:
            self.process()
            results = []
            for order in self._open_orders():
                if order.status == "pending_replace":
                    results.append((order.id, 500))
                    continue
                if order.status != "pending_cancel":
                    self._ask_cancel(order)
                results.append((order.id, 200))
            return results

    def _cancel_now(self, order: SimOrder) -> None:
        """A cancel the server does itself as part of a liquidation: no race."""
        order.status = "canceled"
        order.updated_at = self.clock.now()
        self.changed()

    def close_position(self, symbol: str) -> Order:
        with self.lock:
            self.process()
            held = self.positions.get(symbol)
            if held is None or held.qty == 0:
                raise SimReject(404, 40410000, "position does not exist")
            side = "sell" if held.qty > 0 else "buy"
            for order in self._open_orders():  # the symbol's orders on the closing side give way to the close
                if order.request.symbol == symbol and order.request.side == side and order.status != "pending_replace":
                    self._cancel_now(order)
            tif = "gtc" if held.asset_class == "crypto" else "day"
            cid = f"close-{self._new_id()[:8]}"
            # the whole position, to Alpaca's nine decimals (a fee or a notional fill leaves a float's tail; the
            # rest, under 1e-9, is no position: see _apply_fill)
            qty = round_to(abs(held.qty), order_rules.AMOUNT_DECIMALS)
            return self.submit(OrderRequest(symbol, side, cid, "market", tif, qty=qty))  # type: ignore[arg-type]

    def close_all(self) -> list[tuple[str, int, Order | SimReject]]:
        """Every open order cancelled (the `cancel_orders=true` Alpaca is asked for), then every position closed;
        one (symbol, status, closing order or refusal) per position, for the 207 answer."""
        with self.lock:
            self.process()
            for order in self._open_orders():
                if order.status != "pending_replace":
                    self._cancel_now(order)
            results: list[tuple[str, int, Order | SimReject]] = []
            for symbol in sorted(self.positions):
                try:
                    results.append((symbol, 200, self.close_position(symbol)))
                except SimReject as exc:
                    results.append((symbol, exc.status, exc))
            return results

    # --- what Alpaca may do to an order on its own (test hooks) -----------------------------------------------

    def _open_order(self, order_id: str) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise SimReject(404, 40410000, "order not found")
        if not order.open:
            raise SimReject(422, 42210000, f"order is {order.status}")
        return order

    def suspend_order(self, order_id: str) -> None:
        """`suspended`: "not eligible for trading" (trading-api.json OrderStatus); it is not matched until resumed."""
        with self.lock:
            order = self._open_order(order_id)
            order.status = "suspended"
            order.updated_at = self.clock.now()
            self.changed()

    def resume_order(self, order_id: str) -> None:
        with self.lock:
            order = self.orders[order_id]
            if order.status == "suspended":
                order.status = "new"
                order.updated_at = self.clock.now()
                self.changed()

    def replace_order(
        self,
        order_id: str,
        *,
        qty: float | None = None,
        limit_price: float | None = None,
        client_order_id: str | None = None,
        pending: bool = False,
    ) -> str | None:
        """Replace an open order (as PATCH /v2/orders/{id} does, or Alpaca itself after a corporate action): the
        old one ends `replaced` with `replaced_by`, the new one carries `replaces`. With `pending` the order
        sits in `pending_replace` (refusing cancels) until the next step. Returns the new order's id, or None
        while pending."""
        with self.lock:
            self.process()
            order = self._open_order(order_id)
            if order.status in ("pending_cancel", "pending_replace"):
                raise SimReject(422, 42210000, f"order is {order.status}")
            order.replacement = {"qty": qty, "limit_price": limit_price, "client_order_id": client_order_id}
            if pending:
                order.status = "pending_replace"
                order.updated_at = self.clock.now()
                self.changed()
                return None
            return self._finish_replace(order, self.clock.now())

    def _finish_replace(self, order: SimOrder, now: datetime) -> str:
        change = order.replacement or {}
        r = order.request
        remaining = change.get("qty") or max((order.qty or 0.0) - order.filled_qty, 0.0)
        request = dataclasses.replace(
            r,
            client_order_id=change.get("client_order_id") or str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            qty=remaining,
            notional=None,
            limit_price=change.get("limit_price") or r.limit_price,
        )
        status = "new" if self.tradable(order.asset_class, now) else "accepted"
        new = SimOrder(self._new_id(), request, order.asset_class, now, status=status, qty=remaining, updated_at=now,
                       replaces=order.id)  # fmt: skip
        order.status = "replaced"
        order.replaced_by = new.id
        order.replacement = None
        order.updated_at = now
        self.orders[new.id] = new
        self._working[new.id] = new
        self.by_client_id[request.client_order_id] = new.id
        self.changed()
        if self.fill_at_submit:
            self._step(new, now)
        return new.id

    # --- matching ------------------------------------------------------------------------------------------

    def process(self) -> None:
        """Bring the exchange up to the clock: roll the day, move every open order one step."""
        with self.lock:
            now = self.clock.now()
            memo = self._memo_at(now)
            if memo.processed == self.revision:  # done at this instant, and nothing happened since
                return
            closed = self.calendar.previous_close(now)
            if closed > self.close_at:  # a session closed since the last step: its equity, at its prices
                self._take_close(closed)
                self._settle_expired(closed)
            today = now.astimezone(NEW_YORK).date()
            if today > self._day:  # forward only: a clock set back starts no day again (last_equity would reset)
                self._roll_day(today)
            for order in self._open_orders():
                if not self.fill_at_submit and order.created_at >= now:
                    continue  # answered at submit; its first step comes later
                self._step(order, now)
            memo.processed = self.revision

    def _step(self, order: SimOrder, now: datetime) -> None:
        """One step of an open order: a pending replace or cancel completes, a day order expires, a marketable
        order fills, an order the venue took becomes `new`, an ioc order's rest is cancelled."""
        r = order.request
        status = order.status
        if status == "suspended":
            return
        if status == "pending_replace":
            if order.updated_at is not None and order.updated_at < now:
                self._finish_replace(order, now)
            return
        if status == "pending_cancel":
            if order.cancel_requested_at is not None and order.cancel_requested_at < now:
                self._match(order, now)  # a fill may beat the cancel
                if order.open:
                    self._cancel_now(order)
            return
        if r.time_in_force == "day" and self._past_close(order, now):
            order.status = "expired"
            self.changed()
            return
        self._match(order, now)
        if not order.open or not self.tradable(order.asset_class, now):
            return
        if r.time_in_force == "ioc":
            self._cancel_now(order)
        elif order.status in ("pending_new", "accepted"):
            order.status = "new"
            self.changed()

    def _take_close(self, closed: datetime) -> None:
        """The account valued at a session's close (positions as now held: the steps since the close filled
        nothing in a closed market but crypto). Not saved: a loaded exchange takes it again at its first step
        (`from_state`); `_roll_day`, which uses it, saves `last_equity_close`."""
        value = sum(p.qty * self.last_price(s, closed) * self._multiplier(p.asset_class) for s, p in self.positions.items())
        self.close_at, self.close_equity = closed, self.cash + value

    def _settle_expired(self, closed: datetime) -> None:
        """Every contract whose expiry's close has passed leaves the book, as at Alpaca: one in the money by a cent
        or more at that close is exercised (a call into 100 shares a contract bought at the strike, a put into 100
        sold), any other expires worthless. Held on, a contract was priced at the underlying's later price and
        could be sold days after it expired (a weekend's walk sold a 0.75 call at 716)."""
        last = closed.astimezone(NEW_YORK).date()
        for symbol, position in list(self.positions.items()):
            parsed = parse_occ(symbol) if position.asset_class == "us_option" else None
            if parsed is None or parsed[1] > last:
                continue
            root, expiry, option_type, strike = parsed
            session = self.calendar.session(expiry)
            spot = self.paths.price(root, session.close if session is not None else closed)
            del self.positions[symbol]
            self.changed()
            if (spot - strike if option_type == "call" else strike - spot) < 0.01:
                continue  # expired worthless
            shares = position.qty * OPTION_CONTRACT_SIZE * (1.0 if option_type == "call" else -1.0)
            self.cash -= shares * strike
            held = self.positions.setdefault(root, SimPosition(asset_class="us_equity"))
            total = held.qty + shares
            if abs(total) <= 1e-9:
                del self.positions[root]
                continue
            if held.qty == 0 or (held.qty > 0) == (shares > 0):  # adds to the position: a new average
                held.avg_price = (held.avg_price * abs(held.qty) + strike * abs(shares)) / abs(total)
            elif (total > 0) != (held.qty > 0):  # through zero: what is left was bought (or sold) at the strike
                held.avg_price = strike
            held.qty = total

    def _roll_day(self, today: date) -> None:
        """A new New York day: last_equity becomes the latest close's equity. Over a weekend or a holiday it stays
        the last trading day's, as Alpaca's does, so a loss since Friday's close is still Monday's daily loss."""
        if self.close_at > self.last_equity_close:
            self.last_equity, self.last_equity_close = self.close_equity, self.close_at
        self._day = today
        self.changed()

    def _past_close(self, order: SimOrder, now: datetime) -> bool:
        """A day order lives until the close of its session: the one it was placed in, or, placed while the market
        was closed, the next one (an early close ends it early)."""
        return now >= self.calendar.next_close(order.created_at)

    def _match(self, order: SimOrder, now: datetime) -> None:
        r = order.request
        if order.status not in _MATCHED or not self.tradable(order.asset_class, now):
            return
        price = self.execution_price(order, self.quote(r.symbol), now)
        if price is None:
            return
        if order.qty is None and r.notional is not None:
            order.qty = r.notional / (r.limit_price or price)
        if order.qty is None:
            return
        step = self.paths.step_of(now)
        if order.last_fill_step == step:
            return
        remaining = order.qty - order.filled_qty
        fill = min(remaining, LIQUIDITY[order.asset_class])
        if fill <= 0:
            return
        if order.asset_class == "us_equity" and r.notional is None and r.qty == int(r.qty or 0):
            fill = float(int(fill)) or remaining
        order.last_fill_step = step
        self._apply_fill(order, fill, price, now)

    # --- the fill seams: the replay's fill model (engine/replay/fills.py) overrides these three ---------------

    def execution_price(self, order: SimOrder, quote: Quote, now: datetime) -> float | None:
        """The price `order` trades at now, or None when it cannot trade now: the quote's side (never an empty
        one), and for a limit order only when that side is within the limit."""
        r = order.request
        price = quote.ask if r.side == "buy" else quote.bid
        if price <= 0:
            return None  # nothing on that side to trade with
        if r.order_type == "limit" and r.limit_price is not None and not _marketable(r.side, price, r.limit_price):
            return None
        return price

    def fee_rate(self, order: SimOrder) -> float:
        """The share of a fill the venue keeps, in the asset received: Alpaca's crypto fee (none on stocks and
        options)."""
        return CRYPTO_FEE[order.request.order_type] if order.asset_class == "crypto" else 0.0

    def commission(self, order: SimOrder, qty: float, price: float) -> float:
        """Cash charged for a fill beyond its price: Alpaca charges no commission, so none here."""
        return 0.0

    def _apply_fill(self, order: SimOrder, qty: float, price: float, now: datetime) -> None:
        r = order.request
        mult = self._multiplier(order.asset_class)
        position = self.positions.setdefault(r.symbol, SimPosition(asset_class=order.asset_class))
        # Crypto pays a fee in the asset credited (as at Alpaca): a buy delivers fewer coins than it filled, a
        # sell fewer dollars. The order still reports the gross quantity.
        fee = self.fee_rate(order)
        self.cash -= self.commission(order, qty, price)
        if r.side == "buy":
            self.cash -= qty * price * mult
            received = qty * (1 - fee)
            if position.qty < 0:  # buying back a short
                position.qty += received
                if position.qty > 1e-9:
                    position.avg_price = price
            else:
                total = position.qty + received
                position.avg_price = (position.avg_price * position.qty + price * qty) / total
                position.qty = total
        else:
            self.cash += qty * price * mult * (1 - fee)
            position.qty -= qty
        if abs(position.qty) <= 1e-9:
            del self.positions[r.symbol]
        order.filled_qty += qty
        order.filled_value += qty * price
        order.updated_at = now
        order.status = "filled" if order.filled_qty >= (order.qty or 0) - 1e-9 else "partially_filled"
        self.changed()


_ACCOUNT_LEVELS = range(4)  # Alpaca's options trading levels, 0 to 3


def check_state(state: dict[str, Any]) -> None:
    """ValueError naming the first value of a saved exchange (`to_state`'s shape) that `to_state` never writes.

    The state file's `sim_exchange.book` is a JSON text anyone can edit, and the rebuild took its values as they
    came: a NaN cash or quantity ended the run in a traceback from deep in a tick, an account status of "FOO" or a
    `trading_blocked` of "no" (true, as any text) passed to the engine as the account's, which the Alpaca adapter
    would have refused, a position filed under another asset class or at a price of 0 stood as it was, a day
    ahead of the time held yesterday's equity as the daily P&L's basis until then. Each is refused here, before
    anything is rebuilt: the run refuses the file (exit 2)."""
    _whole(state.get("seed"), "seed")
    now = _aware(state.get("now"), "now")
    _aware(state.get("epoch"), "epoch")
    if state.get("last_equity_close") is not None:
        _aware(state["last_equity_close"], "last_equity_close")
    _finite(state.get("cash"), "cash")
    if _finite(state.get("last_equity"), "last_equity") < 0:
        raise ValueError(f"last_equity {state['last_equity']!r} is below 0")
    if not isinstance(state.get("day"), str):
        raise ValueError(f"day {state.get('day')!r} is not a date")
    if date.fromisoformat(state["day"]) > now.astimezone(NEW_YORK).date():
        raise ValueError(f"day {state['day']} is after the simulation's time {state['now']}")
    flags = state.get("flags", {})
    if not isinstance(flags, dict):
        raise ValueError(f"flags {flags!r} is not an object")
    defaults = dataclasses.asdict(AccountFlags())
    for key, value in flags.items():
        if key not in defaults:
            raise ValueError(f"flags.{key} is not an account flag")
        kind = type(defaults[key])
        if type(value) is not kind:
            raise ValueError(f"flags.{key} {value!r} is not of type {kind.__name__}")
        if kind is str and value not in ACCOUNT_STATUSES:
            raise ValueError(f"flags.{key} {value!r} is no account status Alpaca reports")
        if kind is int and value not in _ACCOUNT_LEVELS:
            raise ValueError(f"flags.{key} {value!r} is no options trading level (0 to 3)")
    positions = state.get("positions")
    if not isinstance(positions, dict):
        raise ValueError(f"positions {positions!r} is not an object")
    for symbol, held in positions.items():
        where = f"positions[{symbol!r}]"
        if not isinstance(held, list) or len(held) != 3:
            raise ValueError(f"{where} {held!r} is not [qty, avg_price, asset_class]")
        qty, avg_price, asset_class = held
        if _finite(qty, f"{where} qty") == 0:  # below 0 is a short (one Alpaca let through: `set_position`)
            raise ValueError(f"{where} qty 0 is no position")
        if _finite(avg_price, f"{where} avg_price") <= 0:
            raise ValueError(f"{where} avg_price {avg_price!r} is not above 0")
        if asset_class != asset_class_of(symbol):
            raise ValueError(f"{where} asset class {asset_class!r} is not {symbol}'s ({asset_class_of(symbol)!r})")
        if asset_class == "us_option" and not float(qty).is_integer():  # Alpaca holds whole contracts only
            raise ValueError(f"{where} qty {qty!r} is not a whole number of contracts")
    orders = state.get("orders")
    if not isinstance(orders, list):
        raise ValueError(f"orders {orders!r} is not a list")
    for n, row in enumerate(orders):
        _check_order_row(row, f"orders[{n}]")


def _check_order_row(row: object, where: str) -> None:
    """One saved order (`_order_row`'s shape): its request as an OrderRequest is made, its status one Alpaca
    reports, its quantities finite and not below 0."""
    if not isinstance(row, dict):
        raise ValueError(f"{where} {row!r} is not an object")
    request = row.get("request")
    if not isinstance(request, dict) or set(request) != set(_REQUEST_FIELDS):
        raise ValueError(f"{where}.request is not an order request")
    kinds = (("side", ("buy", "sell")), ("order_type", ("market", "limit")), ("time_in_force", ("day", "gtc", "ioc")))
    for name, allowed in kinds:
        if request[name] not in allowed:
            raise ValueError(f"{where}.request.{name} {request[name]!r} is none of {', '.join(allowed)}")
    for name in ("symbol", "client_order_id"):
        if not isinstance(request[name], str):
            raise ValueError(f"{where}.request.{name} {request[name]!r} is not text")
    for name in ("qty", "notional", "limit_price"):
        if request[name] is not None and _finite(request[name], f"{where}.request.{name}") <= 0:
            raise ValueError(f"{where}.request.{name} {request[name]!r} is not above 0")
    if row.get("asset_class") != asset_class_of(request["symbol"]):
        raise ValueError(f"{where}.asset_class {row.get('asset_class')!r} is not {request['symbol']}'s")
    if row.get("status") not in lifecycle.BROKER:
        raise ValueError(f"{where}.status {row.get('status')!r} is no order status Alpaca reports")
    if row.get("qty") is not None and _finite(row["qty"], f"{where}.qty") <= 0:
        raise ValueError(f"{where}.qty {row['qty']!r} is not above 0")
    for name in ("filled_qty", "filled_value"):
        if _finite(row.get(name), f"{where}.{name}") < 0:
            raise ValueError(f"{where}.{name} {row[name]!r} is below 0")
    if row.get("last_fill_step") is not None and _whole(row["last_fill_step"], f"{where}.last_fill_step") < 0:
        raise ValueError(f"{where}.last_fill_step {row['last_fill_step']!r} is below 0")


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} is not a whole number")
    return value


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not a time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{name} {value!r} has no time zone")
    return moment


def _order_row(o: SimOrder) -> dict[str, Any]:
    return {
        "id": o.id,
        "request": {name: getattr(o.request, name) for name in _REQUEST_FIELDS},
        "asset_class": o.asset_class,
        "created_at": o.created_at.isoformat(),
        "status": o.status,
        "qty": o.qty,
        "filled_qty": o.filled_qty,
        "filled_value": o.filled_value,
        "last_fill_step": o.last_fill_step,
        "cancel_requested_at": o.cancel_requested_at.isoformat() if o.cancel_requested_at else None,
        "replaced_by": o.replaced_by,
        "replaces": o.replaces,
        "replacement": o.replacement,
    }


def _quote(symbol: str, asset_class: str, mid: float, step_time: datetime) -> Quote:
    """A stock's or a coin's quote (an option's is `options.cent_quote`, in cents)."""
    return Quote(symbol, *spread_sides(mid, asset_class), step_time)


# A snapshot makes a Quote per symbol per tick, and the frozen dataclass's generated __init__ (an object.__setattr__
# per field) is most of what one costs; as for OptionContract, a quote is made the way pickle restores one. Only
# while Quote is a plain dataclass of exactly these fields; otherwise through __init__.
_QUOTES_FROM_STATE = (
    tuple(f.name for f in dataclasses.fields(Quote)) == ("symbol", "bid", "ask", "timestamp")
    and not hasattr(Quote, "__post_init__")
    and not hasattr(Quote, "__slots__")
)


def _new_quote(symbol: str, bid: float, ask: float, timestamp: datetime, from_state: bool = _QUOTES_FROM_STATE) -> Quote:
    if not from_state:
        return Quote(symbol, bid, ask, timestamp)
    quote = object.__new__(Quote)
    quote.__dict__.update(symbol=symbol, bid=bid, ask=ask, timestamp=timestamp)
    return quote


_T = TypeVar("_T")
# The account, positions and orders the snapshot reads every tick are built the same way, for the same reason: the
# classes below, while each is a plain dataclass (no __post_init__, no slots, no default factories). The market clock
# and the replay's snapshot too (engine/replay/broker.py): its ten fields were a tenth of what reading it cost.
_FROM_STATE: dict[type, bool] = {
    cls: not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
    and all(f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls))
    for cls in (Account, Position, Order, MarketClock, Snapshot)
}  # fmt: skip


def make(cls: type[_T], **values: Any) -> _T:
    """`cls(**values)`; `values` names every field, defaults included (tests/brokers/test_sim_exchange.py compares
    each answer with the class's own constructor)."""
    if not _FROM_STATE.get(cls, False):
        return cls(**values)
    made = object.__new__(cls)
    made.__dict__.update(values)
    return made


def _marketable(side: str, price: float, limit: float) -> bool:
    return price <= limit if side == "buy" else price >= limit


def _crosses(new: OrderRequest, resting: OrderRequest) -> bool:
    """Whether `new` could trade with `resting`, the account's own order on the other side: a market order
    crosses anything, two limits cross when the buy's price reaches the sell's."""
    buy, sell = (new, resting) if new.side == "buy" else (resting, new)
    if buy.order_type == "market" or sell.order_type == "market" or buy.limit_price is None or sell.limit_price is None:
        return True
    return buy.limit_price >= sell.limit_price


def _num(value: float) -> str:
    """A quantity as Alpaca writes one in a message: no trailing zeros."""
    return f"{value:.10g}"
