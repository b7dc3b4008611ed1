"""The broker interface and the immutable snapshot the engine reads once per tick.

A read that fails leaves its field None and records a `BrokerError` in `Snapshot.errors`; nothing is ever
filled in with a stale or default value. Every failure of a broker call, whatever raised it underneath,
reaches the engine as one `BrokerError` with a `kind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

ErrorKind = Literal[
    "timeout",  # the broker did not answer in time
    "connection",  # refused, reset, DNS
    "rate_limited",  # 429, or our own token bucket is empty
    "unauthorized",  # 401/403 on auth
    "not_found",  # 404
    "rejected",  # 4xx on an order or request the broker understood and refused
    "server",  # 5xx
    "bad_response",  # HTML, malformed JSON, a shape the SDK could not validate, an empty body
    "config",  # the adapter is misconfigured (missing keys, empty base URL)
]
AssetClass = Literal["us_equity", "us_option", "crypto"]


class BrokerError(Exception):
    """One failure of one broker call. `kind` says what went wrong; `status` is the HTTP status if any."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None, operation: str = ""):
        self.kind = kind
        self.status = status
        self.operation = operation
        self.message = message
        super().__init__(f"{operation + ': ' if operation else ''}{kind}{f' ({status})' if status else ''}: {message}")


@dataclass(frozen=True)
class Account:
    equity: float
    last_equity: float
    cash: float
    buying_power: float
    status: str
    trading_blocked: bool
    account_blocked: bool

    @property
    def usable(self) -> bool:
        return self.status == "ACTIVE" and not self.trading_blocked and not self.account_blocked


@dataclass(frozen=True)
class Position:
    symbol: str  # normalised: crypto as BASE/QUOTE
    qty: float  # negative when short
    avg_entry_price: float
    current_price: float
    market_value: float
    unrealized_pl: float
    asset_class: AssetClass


@dataclass(frozen=True)
class Order:
    id: str
    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float | None
    notional: float | None
    filled_qty: float
    filled_avg_price: float | None
    order_type: str
    time_in_force: str
    limit_price: float | None
    status: str
    created_at: datetime
    asset_class: AssetClass

    OPEN_STATUSES = frozenset(
        {
            "new",
            "partially_filled",
            "accepted",
            "pending_new",
            "accepted_for_bidding",
            "pending_cancel",
            "pending_replace",
            "pending_review",
            "held",
            "calculated",
            "stopped",
            "done_for_day",
            "replaced",
        }
    )

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: float
    ask: float
    timestamp: datetime

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class OptionContract:
    symbol: str  # OCC, e.g. SPY261204C00500000
    underlying: str
    option_type: Literal["call", "put"]
    strike: float
    expiry: date
    bid: float
    ask: float
    quote_time: datetime
    delta: float
    gamma: float
    theta: float
    vega: float
    implied_volatility: float | None


@dataclass(frozen=True)
class MarketClock:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True)
class DataNeeds:
    """What the enabled bots need this tick: the symbols to quote and the option chains to read."""

    stocks: tuple[str, ...] = ()
    crypto: tuple[str, ...] = ()
    option_underlyings: tuple[str, ...] = ()
    option_dte_min: int = 0
    option_dte_max: int = 60


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    account: Account | None
    positions: tuple[Position, ...] | None
    open_orders: tuple[Order, ...] | None
    quotes: Mapping[str, Quote]
    option_chains: Mapping[str, tuple[OptionContract, ...]]
    clock: MarketClock | None
    errors: tuple[BrokerError, ...] = ()
    broker_requests: int = 0
    missing_quotes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Every read succeeded."""
        return not self.errors


@dataclass(frozen=True)
class OrderRequest:
    """An order as the engine asks for it. Exactly one of qty and notional."""

    symbol: str
    side: Literal["buy", "sell"]
    client_order_id: str
    order_type: Literal["market", "limit"] = "market"
    time_in_force: Literal["day", "gtc", "ioc"] = "day"
    qty: float | None = None
    notional: float | None = None
    limit_price: float | None = None


class Broker(Protocol):
    """What the engine needs from a broker. Every method raises only BrokerError."""

    @property
    def name(self) -> str:
        """'sim' or 'alpaca': which kind of account the state file belongs to."""
        ...

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        """Everything for one tick; failed reads are None fields plus errors, never an exception."""
        ...

    def submit_order(self, request: OrderRequest) -> Order: ...

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order, or None when the broker has no order with that id."""
        ...

    def cancel_order(self, order_id: str) -> None: ...

    def close_position(self, symbol: str) -> Order: ...

    def cancel_all_orders(self) -> None:
        """Account-wide: for the kill switch only."""
        ...

    def close_all_positions(self) -> None:
        """Account-wide: for the kill switch only."""
        ...
