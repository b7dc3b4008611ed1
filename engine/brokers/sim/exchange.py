"""The simulated exchange: one account, positions, orders and fills against deterministic quotes.

It enforces the server-side rules the SDK does not check (reference/alpaca-api.md §3): unique
client_order_id, fractional and notional stock orders only as market/day, crypto only gtc/ioc, buying power,
no shorting. Market orders fill at the ask (buys) or the bid (sells) while the asset's market is open; limit
orders fill when marketable; size beyond a step's liquidity fills over the following steps (partial fills).
Equity and option markets keep New York hours (09:30-16:00, weekdays); crypto trades around the clock.
Both fronts use it: `SimBroker` in process, and the HTTP emulator.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import repeat
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from engine.brokers.base import Account, AssetClass, MarketClock, OptionContract, Order, OrderRequest, Position, Quote
from engine.brokers.sim import options
from engine.brokers.sim.prices import PricePaths
from engine.brokers.symbols import asset_class_of, occ_symbol, parse_occ
from engine.core.clock import Clock

NEW_YORK = ZoneInfo("America/New_York")
OPEN_TIME, CLOSE_TIME = time(9, 30), time(16, 0)
SPREAD = {"us_equity": 0.0002, "crypto": 0.0005, "us_option": 0.002}  # full spread, as a fraction of the mid
LIQUIDITY = {"us_equity": 2_000.0, "crypto": 1e9, "us_option": 50.0}  # units per step
CRYPTO_FEE = {"limit": 0.0015, "market": 0.0025}  # maker and taker rates, Alpaca's lowest tier
HISTORY = timedelta(days=2)  # closed orders older than this are not saved: the state stays small
OPEN_STATUSES = ("accepted", "new", "partially_filled")
_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(OrderRequest))


def kept_in_state(status: str, created_at: datetime, now: datetime) -> bool:
    """Whether the saved state keeps an order: open ones, and two days of history for lookups (the file stays small)."""
    return status in OPEN_STATUSES or now - created_at < HISTORY


class SimReject(Exception):
    """The exchange refused a request; mirrors Alpaca's status and code."""

    def __init__(self, status: int, code: int, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{status} {code}: {message}")


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

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class SimPosition:
    qty: float = 0.0
    avg_price: float = 0.0
    asset_class: str = "us_equity"


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
    paths: PricePaths = field(init=False)
    cash: float = field(init=False)
    last_equity: float = field(init=False)
    positions: dict[str, SimPosition] = field(default_factory=dict)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)
    # Counts every change of what `to_state` saves (orders, fills, cash, the day), so a saver can tell, without
    # serialising anything, whether the account moved since it last wrote it. Code that edits the fields above
    # directly must call `changed()`.
    revision: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        now = self.clock.now()
        # Paths start at the minute the exchange opens for business, so nothing is generated that no one reads.
        self.paths = PricePaths(self.seed, now.replace(second=0, microsecond=0))
        self.cash = self.starting_cash
        self.last_equity = self.starting_cash
        self._day = now.astimezone(NEW_YORK).date()
        self._ids = random.Random(f"{self.seed}:ids")
        self._memo = _Memo()
        self._working: dict[str, SimOrder] = {}  # every open order, and closed ones until `_open_orders` drops them
        self._classes: dict[str, str] = {}
        self._layouts: dict[tuple[str, tuple[date, ...], tuple[float, ...]], _ChainLayout] = {}
        self.lock = threading.RLock()

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
                "day": self._day.isoformat(),
                "positions": {s: [p.qty, p.avg_price, p.asset_class] for s, p in self.positions.items()},
                "orders": [
                    {
                        "id": o.id,
                        "request": {name: getattr(o.request, name) for name in _REQUEST_FIELDS},
                        "asset_class": o.asset_class,
                        "created_at": o.created_at.isoformat(),
                        "status": o.status,
                        "qty": o.qty,
                        "filled_qty": o.filled_qty,
                        "filled_value": o.filled_value,
                        "last_fill_step": o.last_fill_step,
                    }
                    for o in self.orders.values()
                    if kept_in_state(o.status, o.created_at, now)
                ],
            }

    @classmethod
    def from_state(cls, state: dict[str, Any], clock: Clock) -> SimExchange:
        """Rebuild an exchange saved by `to_state`; the clock must not be behind the saved time."""
        if clock.now() < datetime.fromisoformat(state["now"]):
            raise ValueError(f"the simulation already reached {state['now']}; time cannot go backwards")
        exchange = cls(clock, seed=int(state["seed"]), starting_cash=float(state["cash"]))
        exchange.paths = PricePaths(exchange.seed, datetime.fromisoformat(state["epoch"]))
        exchange.cash = float(state["cash"])
        exchange.last_equity = float(state["last_equity"])
        exchange._day = date.fromisoformat(state["day"])
        exchange.positions = {s: SimPosition(q, a, c) for s, (q, a, c) in state["positions"].items()}
        for row in state["orders"]:
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
            )
            exchange.orders[order.id] = order
            exchange.by_client_id[order.request.client_order_id] = order.id
            if order.open:
                exchange._working[order.id] = order
        exchange._ids = random.Random(f"{exchange.seed}:ids:{len(exchange.orders)}")
        exchange.revision = int(state.get("revision", 0))
        return exchange

    # --- time and markets ----------------------------------------------------------------------------------

    @staticmethod
    def equity_market_open(at: datetime) -> bool:
        local = at.astimezone(NEW_YORK)
        return local.weekday() < 5 and OPEN_TIME <= local.time() < CLOSE_TIME

    def market_clock(self) -> MarketClock:
        now = self.clock.now()
        local = now.astimezone(NEW_YORK)
        is_open = self.equity_market_open(now)
        day = local.date()
        if local.time() >= OPEN_TIME or local.weekday() >= 5:
            day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        next_open = datetime.combine(day, OPEN_TIME, NEW_YORK)
        close_day = local.date() if is_open or (local.weekday() < 5 and local.time() < OPEN_TIME) else day
        next_close = datetime.combine(close_day, CLOSE_TIME, NEW_YORK)
        return MarketClock(now, is_open, next_open, next_close)

    def tradable(self, asset_class: str, at: datetime) -> bool:
        return asset_class == "crypto" or self.equity_market_open(at)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

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
            priced, i = self._option_row(symbol, at)
            return priced.mid[i]
        return self.paths.price(symbol, at)

    def quote(self, symbol: str) -> Quote:
        now = self.clock.now()
        memo = self._memo_at(now)
        quote = memo.quotes.get(symbol)
        if quote is None:
            asset_class = self._asset_class(symbol)
            step_time = self.paths.step_time_at(now)
            if asset_class == "us_option":
                priced, i = self._option_row(symbol, now)
                quote = Quote(symbol, priced.bid[i], priced.ask[i], step_time)
            else:
                quote = _quote(symbol, asset_class, self.paths.price(symbol, now), step_time)
            memo.quotes[symbol] = quote
        return quote

    def option_chain(self, underlying: str, dte_min: int, dte_max: int) -> list[OptionContract]:
        now = self.clock.now()
        memo = self._memo_at(now)
        chain = memo.chains.get((underlying, dte_min, dte_max))
        if chain is None:
            chain = memo.chains[(underlying, dte_min, dte_max)] = self._price_chain(memo, underlying, dte_min, dte_max)
        return list(chain)

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
        chain = _contracts(layout, priced, self.paths.step_time_at(now))
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
        return options.CONTRACT_SIZE if asset_class == "us_option" else 1.0

    def equity(self) -> float:
        now = self.clock.now()
        value = sum(p.qty * self.last_price(s, now) * self._multiplier(p.asset_class) for s, p in self.positions.items())
        return self.cash + value

    def account(self) -> Account:
        self.process()
        return Account(
            equity=round(self.equity(), 2),
            last_equity=round(self.last_equity, 2),
            cash=round(self.cash, 2),
            buying_power=round(max(self.cash, 0.0), 2),
            status="ACTIVE",
            trading_blocked=False,
            account_blocked=False,
        )

    def position_views(self) -> list[Position]:
        self.process()
        now = self.clock.now()
        views = []
        for symbol, p in sorted(self.positions.items()):
            price = self.last_price(symbol, now)
            mult = self._multiplier(p.asset_class)
            value, pnl = p.qty * price * mult, p.qty * (price - p.avg_price) * mult
            views.append(Position(symbol, p.qty, p.avg_price, price, value, pnl, cast(AssetClass, p.asset_class)))
        return views

    # --- orders --------------------------------------------------------------------------------------------

    def order_view(self, order: SimOrder) -> Order:
        r = order.request
        avg = order.filled_value / order.filled_qty if order.filled_qty else None
        return Order(
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
            asset_class=order.asset_class,  # type: ignore[arg-type]
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
        if r.client_order_id in self.by_client_id:
            raise SimReject(422, 40010001, "client_order_id must be unique")
        if (r.qty is None) == (r.notional is None):
            raise SimReject(422, 40010000, "qty or notional is required, not both")
        if (r.qty is not None and r.qty <= 0) or (r.notional is not None and r.notional <= 0):
            raise SimReject(422, 40010000, "qty and notional must be positive")
        if r.order_type == "limit" and r.limit_price is None:
            raise SimReject(422, 40010000, "limit_price is required for limit orders")
        if asset_class == "crypto":
            if r.time_in_force not in ("gtc", "ioc"):
                raise SimReject(422, 42210000, "invalid crypto time_in_force")
        else:
            fractional = r.notional is not None or (r.qty is not None and r.qty != int(r.qty))
            if fractional and (r.order_type != "market" or r.time_in_force != "day"):
                raise SimReject(422, 42210000, "fractional orders must be market and day orders")
            if asset_class == "us_option" and fractional:
                raise SimReject(422, 42210000, "option orders take whole contracts")
        if r.side == "sell":
            held = self.positions.get(r.symbol)
            pending = sum(o.qty or 0 for o in self._open_orders() if o.request.side == "sell" and o.request.symbol == r.symbol)
            if r.qty is None or held is None or held.qty - pending < r.qty - 1e-9:
                raise SimReject(403, 40310000, f"insufficient qty available for order (requested: {r.qty})")

    def submit(self, r: OrderRequest) -> Order:
        with self.lock:
            self.process()
            asset_class = self._asset_class(r.symbol)
            self._validate(r, asset_class)
            now = self.clock.now()
            if r.side == "buy":
                price = r.limit_price or self.quote(r.symbol).ask
                cost = r.notional or (r.qty or 0) * price * self._multiplier(asset_class)
                if cost > self.cash + 1e-6:
                    raise SimReject(403, 40310000, "insufficient buying power")
            order = SimOrder(self._new_id(), r, asset_class, now, qty=r.qty, updated_at=now)
            if r.notional is not None:
                order.qty = r.notional / (r.limit_price or self.quote(r.symbol).ask)
            self.orders[order.id] = order
            self._working[order.id] = order
            self.by_client_id[r.client_order_id] = order.id
            self.changed()
            self._match(order, now)
            if r.time_in_force == "ioc" and order.open:
                order.status = "canceled"
                self.changed()
            return self.order_view(order)

    def cancel(self, order_id: str) -> None:
        with self.lock:
            self.process()
            order = self.orders.get(order_id)
            if order is None:
                raise SimReject(404, 40410000, "order not found")
            if not order.open:
                raise SimReject(422, 42210000, f"order is already {order.status}")
            order.status = "canceled"
            self.changed()

    def cancel_all(self) -> list[tuple[str, int]]:
        with self.lock:
            results = []
            for order in self._open_orders():
                order.status = "canceled"
                self.changed()
                results.append((order.id, 200))
            return results

    def close_position(self, symbol: str) -> Order:
        with self.lock:
            self.process()
            held = self.positions.get(symbol)
            if held is None or held.qty <= 0:
                raise SimReject(404, 40410000, "position does not exist")
            for order in self._open_orders():  # Alpaca cancels the symbol's open sells first
                if order.request.symbol == symbol and order.request.side == "sell":
                    order.status = "canceled"
                    self.changed()
            tif = "gtc" if held.asset_class == "crypto" else "day"
            cid = f"close-{self._new_id()[:8]}"
            return self.submit(OrderRequest(symbol, "sell", cid, "market", tif, qty=held.qty))  # type: ignore[arg-type]

    def close_all(self) -> list[tuple[str, int]]:
        with self.lock:
            self.cancel_all()
            results = []
            for symbol in list(self.positions):
                try:
                    self.close_position(symbol)
                    results.append((symbol, 200))
                except SimReject as exc:
                    results.append((symbol, exc.status))
            return results

    # --- matching ------------------------------------------------------------------------------------------

    def process(self) -> None:
        """Bring the exchange up to the clock: roll the day, expire day orders, fill what is fillable."""
        with self.lock:
            now = self.clock.now()
            memo = self._memo_at(now)
            if memo.processed == self.revision:  # done at this instant, and nothing happened since
                return
            today = now.astimezone(NEW_YORK).date()
            if today != self._day:
                self._roll_day(today)
            for order in self._open_orders():
                if order.request.time_in_force == "day" and self._past_close(order, now):
                    order.status = "expired"
                    self.changed()
                    continue
                self._match(order, now)
            memo.processed = self.revision

    def _roll_day(self, today: date) -> None:
        self.last_equity = self.equity()
        self._day = today
        self.changed()

    def _past_close(self, order: SimOrder, now: datetime) -> bool:
        created = order.created_at.astimezone(NEW_YORK)
        close = datetime.combine(created.date(), CLOSE_TIME, NEW_YORK)
        if created.time() >= CLOSE_TIME:  # placed after the close: lives through the next session
            close = datetime.combine(self.market_clock().next_close.date(), CLOSE_TIME, NEW_YORK)
        return now >= close

    def _match(self, order: SimOrder, now: datetime) -> None:
        r = order.request
        if not self.tradable(order.asset_class, now) or order.qty is None:
            return
        quote = self.quote(r.symbol)
        price = quote.ask if r.side == "buy" else quote.bid
        if r.order_type == "limit" and r.limit_price is not None and not _marketable(r.side, price, r.limit_price):
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

    def _apply_fill(self, order: SimOrder, qty: float, price: float, now: datetime) -> None:
        r = order.request
        mult = self._multiplier(order.asset_class)
        position = self.positions.setdefault(r.symbol, SimPosition(asset_class=order.asset_class))
        # Crypto pays a fee in the asset credited (as at Alpaca): a buy delivers fewer coins than it filled, a
        # sell fewer dollars. The order still reports the gross quantity.
        fee = CRYPTO_FEE[r.order_type] if order.asset_class == "crypto" else 0.0
        if r.side == "buy":
            self.cash -= qty * price * mult
            received = qty * (1 - fee)
            total = position.qty + received
            position.avg_price = (position.avg_price * position.qty + price * qty) / total
            position.qty = total
        else:
            self.cash += qty * price * mult * (1 - fee)
            position.qty -= qty
            if position.qty <= 1e-9:
                del self.positions[r.symbol]
        order.filled_qty += qty
        order.filled_value += qty * price
        order.updated_at = now
        order.status = "filled" if order.filled_qty >= (order.qty or 0) - 1e-9 else "partially_filled"
        self.changed()


def _quote(symbol: str, asset_class: str, mid: float, step_time: datetime) -> Quote:
    """A stock's or a coin's quote (an option's is `options.cent_quote`, in cents)."""
    half = mid * SPREAD[asset_class] / 2
    return Quote(symbol, round(mid - half, 4), round(mid + half, 4), step_time)


def _marketable(side: str, price: float, limit: float) -> bool:
    return price <= limit if side == "buy" else price >= limit
