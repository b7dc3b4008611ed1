"""The broker interface and the immutable snapshot the engine reads once per tick.

A read that fails leaves its field None and records a `BrokerError` in `Snapshot.errors`; nothing is ever
filled in with a stale or default value. Every failure of a broker call, whatever raised it underneath,
reaches the engine as one `BrokerError` with a `kind` (what failed: transport, status) and a `reason` (what it
means for trading: engine/brokers/errors.py). Values arrive as the broker sent them: a quote side at 0 stays
0, a contract without greeks keeps NaN greeks; deciding what is usable is the engine's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, NamedTuple, Protocol

from engine.brokers.errors import REFUSALS, SUBMIT_ORDER, ErrorReason, classify
from engine.core import order_lifecycle as lifecycle

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
    "stopping",  # not asked: the run is stopping (a signal), and a read's answer would only be waited for
]
AssetClass = Literal["us_equity", "us_option", "crypto"]


_REASON_OF_KIND: dict[str, ErrorReason] = {
    "timeout": "timeout",
    "connection": "connection",
    "rate_limited": "rate_limited",
    "unauthorized": "unauthorized",
    "not_found": "not_found",
    "server": "server_error",
    "bad_response": "bad_response",
    "config": "config",
    "stopping": "stopping",
}


class BrokerError(Exception):
    """One failure of one broker call. `kind` says what went wrong (kept for callers that branch on it),
    `reason` what it means (one class per response the engine may choose), `status` and `code` are the HTTP
    status and Alpaca's error code when the broker answered. `held`: the request was never sent, held back by the
    adapter while the server's own rate limit says to wait (a 429's Retry-After, X-RateLimit-Remaining 0 until
    X-RateLimit-Reset), or because the run is stopping (kind `stopping`: a read asked for after a stop signal): the
    read failed (the snapshot is incomplete, entries are blocked) but the broker did not fail again, so it is not
    one more failure towards api_failure_halt; the answer that started the hold was counted."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        operation: str = "",
        reason: ErrorReason | None = None,
        code: int | None = None,
        held: bool = False,
    ):
        self.kind = kind
        self.held = held
        self.status = status
        self.operation = operation
        self.message = message
        self.code = code
        if reason is None:
            reason = classify(status, code, message) if status is not None else _REASON_OF_KIND.get(kind, "invalid")
        self.reason: ErrorReason = reason
        super().__init__(f"{operation + ': ' if operation else ''}{kind}{f' ({status})' if status else ''}: {message}")

    @property
    def refusal(self) -> bool:
        """An order refused on its merits (`errors.REFUSALS`: insufficient funds, below the minimum, a wash trade,
        forbidden): the broker answered, understood the order and said no. That bot's denial (three of one kind
        pause it), not a failure of the broker: counted towards api_failure_halt, five refused entries halted the
        whole account for its cooloff."""
        return self.operation == SUBMIT_ORDER and self.reason in REFUSALS

    def __str__(self) -> str:  # the operation may be named after construction (SnapshotBroker does)
        where = f"{self.operation}: " if self.operation else ""
        return f"{where}{self.kind}{f' ({self.status})' if self.status else ''}: {self.message}"


# Non-trade account activities, by what they do to the daily P&L (`equity - last_equity - non_trade_cash_today`).
# Alpaca's ActivityType (alpaca-py 0.44.0's enum, trading-api.json and its 2026-11 changelog) lists far more types
# than the cash ones, and the list grows; the adapter reads every non-trade activity of the day
# (`category=non_trade_activity`) and sorts each into one of three kinds:
# - NON_TRADE_ACTIVITY_TYPES, cash that came in or went out without a trade, counted by `net_amount` and left out of
#   the P&L (issue 14, item 6): CSD deposits, CSW withdrawals, CSR, ACATC (an ACATS transfer of cash), JNLC cash
#   journals, FEE, PTC/PTR pass-through charges and rebates, the INT (interest) and DIV (dividend) families, WH tax
#   withheld.
# - TRADE_LIKE_ACTIVITY_TYPES, value exchanged inside the account (fills, option exercise, assignment and expiry,
#   splits, mergers, cash in lieu, a crypto fee): their effect on the equity is the account's own, part of the P&L.
# - every other type (ACATS and JNLS securities moved in or out, OCT on-chain crypto transfers, a journal of either
#   kind, a type this list does not know): it moves holdings into or out of the account by a value `net_amount` does
#   not give, so the day's non-trade cash is unknown and the daily P&L missing. Left out, an outgoing transfer of
#   5,000 USD was a 5 % trading loss, the daily-loss kill condition, and its flatten sold every position.
NON_TRADE_ACTIVITY_TYPES = frozenset(
    {"CSD", "CSW", "CSR", "ACATC", "JNLC", "FEE", "PTC", "PTR", "INT", "INTNRA", "INTTW", "DIV", "DIVCGL", "DIVCGS",
     "DIVFEE", "DIVFT", "DIVNRA", "DIVROC", "DIVTW", "DIVTXEX", "DIVWH", "WH"}
)  # fmt: skip
TRADE_LIKE_ACTIVITY_TYPES = frozenset(
    {"FILL", "TRD", "CFEE", "CIL", "MA", "NC", "SC", "OPASN", "OPCSH", "OPEXC", "OPEXP", "OPTRD", "REORG", "SPIN",
     "SPLIT", "SSO", "SSP"}
)  # fmt: skip


@dataclass(frozen=True)
class NonTradeActivity:
    """A cash movement that is not a trade (Alpaca's account activities of the NON_TRADE_ACTIVITY_TYPES)."""

    id: str
    activity_type: str
    net_amount: float  # signed: a deposit is positive, a withdrawal or a fee negative
    created_at: datetime | None
    date: str  # as the broker gave it (YYYY-MM-DD, or a timestamp)
    status: str = "executed"


# The account's `status` and `crypto_status` (the adapter refuses any other as a bad answer; validation refuses a
# rule comparing either with another, engine/rules/facts.py): alpaca-py 0.44.0's AccountStatus,
# and ACCOUNT_CLOSED_PENDING, which trading-api.json's AccountStatus lists and alpaca-py's enum lacks (held to
# alpaca-py's list alone, an account being closed halted the system as an unreadable answer every tick; read, it is
# not ACTIVE, and preflight names it and blocks entries).
ACCOUNT_STATUSES = frozenset(
    {"ACCOUNT_CLOSED", "ACCOUNT_CLOSED_PENDING", "ACCOUNT_UPDATED", "ACTION_REQUIRED", "ACTIVE", "AML_REVIEW",
     "APPROVAL_PENDING", "APPROVED", "DISABLED", "DISABLE_PENDING", "EDITED", "INACTIVE", "KYC_SUBMITTED", "LIMITED",
     "ONBOARDING", "PAPER_ONLY", "REAPPROVAL_PENDING", "REJECTED", "RESUBMITTED", "SIGNED_UP", "SUBMISSION_FAILED",
     "SUBMITTED"}
)  # fmt: skip


@dataclass(frozen=True)
class Account:
    equity: float
    last_equity: float
    cash: float
    buying_power: float  # a margin figure: 1x under $2,000 equity, else 2x or 4x, less open buy orders
    status: str
    trading_blocked: bool
    account_blocked: bool
    # Fields the broker may leave out; None means it did not say (never "fine").
    crypto_status: str | None = None
    options_trading_level: int | None = None  # effective: min(approved level, the user's own cap)
    options_approved_level: int | None = None
    non_marginable_buying_power: float | None = None  # what crypto is bought with
    options_buying_power: float | None = None  # what options are bought with
    trade_suspended_by_user: bool = False
    # The day's cash movements that are not trades (deposits, withdrawals, fees, dividends, interest), net, so
    # that daily P&L is `equity - last_equity - non_trade_cash_today`. From the account's
    # `intraday_adjustments` when it carries one, else from the day's account activities (New York date).
    non_trade_cash_today: float | None = None
    non_trade_cash_source: Literal["intraday_adjustments", "activities"] | None = None
    non_trade_activities: tuple[NonTradeActivity, ...] = ()
    # Why non_trade_cash_today is None although the account was read (an activity that moved holdings in or out, or
    # one that cannot be placed before or after the close last_equity is from): said where the daily P&L is missing.
    non_trade_cash_unknown: str | None = None
    # The broker's own id of the account (Alpaca's `id`): which account a state file holds (`startup.other_account_id`).
    # None when the broker did not say, or said something that is not an id.
    account_id: str | None = None

    @property
    def usable(self) -> bool:
        return (
            self.status == "ACTIVE" and not self.trading_blocked and not self.account_blocked and not self.trade_suspended_by_user
        )


@dataclass(frozen=True)
class Position:
    symbol: str  # normalised: crypto as BASE/QUOTE
    qty: float  # negative when short (the sign applied once, whether or not the wire's qty carries it)
    avg_entry_price: float
    current_price: float
    market_value: float
    unrealized_pl: float
    asset_class: AssetClass
    # What of a long position may be sold now: its qty less what open sell orders hold (Alpaca's `qty_available`),
    # ours and any placed beside the engine. None when the broker did not say (a short, an older shape).
    qty_available: float | None = None


@dataclass(frozen=True)
class Holding:
    """What exits need of one position: its symbol, its quantity (negative when short) and what of it may be sold
    now. Read from a position whose other fields (a price, a market value) could not be: see `PositionsInPart`."""

    symbol: str
    qty: float
    qty_available: float | None = None


@dataclass(frozen=True)
class PositionsInPart:
    """The positions answer when some of its positions could not be read: every readable one as a `Holding`, and
    of each unreadable one the symbol, side and qty when those could be read. The answer is a bad response all the
    same (the snapshot's positions stay None, so nothing values, reconciles or enters on it, and the engine halts);
    this is only what exits size against, so that one bad field (a position's current_price null) does not stop the
    kill switch from selling what is known to be held. `unknown`: the symbols whose quantity could not be read
    (their exits fall back to the positions last read, then wait)."""

    holdings: tuple[Holding, ...]
    unknown: frozenset[str] = frozenset()


class PositionsUnreadable(BrokerError):
    """A positions answer some of whose positions could not be read: a bad_response as any other (the engine
    halts on it), which carries what could be read (`known`) for the snapshot to keep for exits alone."""

    def __init__(self, message: str, known: PositionsInPart):
        super().__init__("bad_response", message)
        self.known = known


# What an order is, which never changes: Alpaca changes an order only by replacing it with another, under a new id.
# An answer about an order saying otherwise is about another order (engine/brokers/alpaca.py `_OrderMemory`, against
# what this run sent and read; engine/trading/orders.py `_contradicts`, against the order's row).
ORDER_FIXED: tuple[str, ...] = ("symbol", "side", "order_type", "time_in_force")
ORDER_AMOUNTS: tuple[str, ...] = ("qty", "notional", "limit_price")
# Why an order found under one of our client_order_ids (looked up, or listed) that is not the order we sent (another
# amount, type or side, or made before we recorded it) is never taken for ours. Two state files on one account count
# the same ids. Said alike by the adapter, which holds a lookup to what this process sent (engine/brokers/alpaca.py
# `_OrderMemory`), and the engine, which holds it to the order's row (engine/trading/orders.py `_foreign`).
NOT_OURS = (
    "another engine or state file may be trading this account under the same client_order_ids (one account takes one state file)"
)


def same_amount(a: float, b: float) -> bool:
    """Two quantities or prices the same to Alpaca's nine decimals."""
    return abs(a - b) <= 1e-9 + 1e-9 * max(abs(a), abs(b))


# How far an order's filled value (filled_qty times filled_avg_price) may seem to move between two answers by the
# rounding of the average price alone: a cent, or this fraction of the value.
FILL_VALUE_SLACK = 1e-4


def fill_value_contradicts(old_qty: float, old_avg: float | None, new_qty: float, new_avg: float | None) -> bool:
    """Whether two answers about one order's fills cannot both be true: the value filled went down while the filled
    quantity grew (5 filled at 100, then 6 at 50, is a sixth share bought at -200), or moved while it stayed (the
    same 5 at 100, then at 50), beyond a rounding of the averages. A fill at some price only ever adds value."""
    if new_avg is None:
        return False  # nothing filled, or a fill at no price, which the adapter refuses
    before, now = (old_avg or 0.0) * old_qty, new_avg * new_qty
    slack = fill_value_slack(before, now)
    if same_amount(old_qty, new_qty):
        return abs(now - before) > slack
    return new_qty > old_qty and now < before - slack


def fill_value_slack(before: float, now: float) -> float:
    """How far an order's filled value (quantity times average price) may move by the rounding of the averages
    alone: a cent, or FILL_VALUE_SLACK of the value."""
    return max(0.01, FILL_VALUE_SLACK * max(before, now))


def added_fill_price(old_qty: float, old_avg: float | None, new_qty: float, new_avg: float) -> float:
    """The average price of what an order filled between two answers about it (more filled in the second), from
    the filled quantity and average price of each. A value that rose by no more than the rounding of the averages
    (`fill_value_contradicts` refuses one that went down further) says nothing of the new part's price: it is
    priced at the order's average. Divided, that rounding priced a sixth share after 5 at 100 at 0.04 (6 at 83.34)
    and a tiny crypto fill of a large order at any price at all."""
    before, now = (old_avg or 0.0) * old_qty, new_avg * new_qty
    added = now - before
    return added / (new_qty - old_qty) if added > fill_value_slack(before, now) else new_avg


# How far an average fill price may be past its limit by the rounding of the average: this fraction of the limit,
# and 1e-4 (`worse_than_limit`).
LIMIT_SLACK = 1e-6


def worse_than_limit(side: str, limit_price: float, price: float) -> bool:
    """Whether `price` is worse than a limit order's `limit_price` allows, beyond the rounding of an average: a limit
    fills at its limit or better, a buy at no more, a sell at no less. Held by the adapter to every order answer and
    by the engine to every fill it books (engine/trading/fillprice.py), whichever broker gave it."""
    worse = price - limit_price if side == "buy" else limit_price - price
    return worse > LIMIT_SLACK * limit_price + 1e-4


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
    status: str  # any of Alpaca's statuses, passed through (ALL_STATUSES)
    created_at: datetime
    asset_class: AssetClass
    replaced_by: str | None = None  # for `replaced`: the id of the order that replaced this one
    replaces: str | None = None  # for a replacement: the id of the order it replaced

    # Alpaca's OrderStatus enum (trading-api.json) plus alpaca-py's `pending_review`, and which of them are still
    # working: one table for the whole engine (engine/core/order_lifecycle.py), read here, never restated.
    ALL_STATUSES = lifecycle.BROKER
    OPEN_STATUSES = lifecycle.WORKING

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


@dataclass(frozen=True)
class Quote:
    """A quote as the broker sent it: `bid` or `ask` is 0 when that side is empty (Alpaca sends `bp: 0` /
    `ap: 0` for thin names, outside the session, options, crypto at times); `timestamp` is the quote's own."""

    symbol: str
    bid: float
    ask: float
    timestamp: datetime

    @property
    def mid(self) -> float:
        """Arithmetic only: meaningless unless `two_sided`."""
        return (self.bid + self.ask) / 2

    @property
    def two_sided(self) -> bool:
        """Both sides present and not crossed."""
        return self.bid > 0 and self.ask > 0 and self.ask >= self.bid


class Greeks(NamedTuple):
    delta: float
    gamma: float
    theta: float
    vega: float


@dataclass(frozen=True)
class OptionContract:
    symbol: str  # OCC, e.g. SPY261204C00500000
    underlying: str
    option_type: Literal["call", "put"]
    strike: float
    expiry: date
    bid: float  # 0 when the side is empty, as sent
    ask: float
    quote_time: datetime  # the contract's own quote time
    # NaN when the broker sent no greeks for the contract (thin contracts often have none): a NaN compares false
    # with every bound, so a delta range never picks it. Read `greeks`, which is None then.
    delta: float
    gamma: float
    theta: float
    vega: float
    implied_volatility: float | None

    @property
    def greeks(self) -> Greeks | None:
        if math.isnan(self.delta):
            return None
        return Greeks(self.delta, self.gamma, self.theta, self.vega)


@dataclass(frozen=True)
class Asset:
    """/v2/assets/{symbol}: whether a symbol exists, trades, and in what sizes. The increments are given for
    crypto only and change with the price: read them, never hard-code them."""

    symbol: str  # normalised: crypto as BASE/QUOTE
    asset_class: str
    exchange: str
    status: str  # active | inactive
    tradable: bool
    fractionable: bool
    marginable: bool = False
    shortable: bool = False
    min_order_size: float | None = None
    min_trade_increment: float | None = None
    price_increment: float | None = None
    attributes: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class BulkResult:
    """One item of a 207 multi-status answer to an account-wide call (cancel all orders, close all positions)."""

    target: str  # the order id, or the position's symbol (normalised)
    status: int  # the item's own HTTP status
    order: Order | None = None  # the closing order, for a position closed
    error: BrokerError | None = None  # what the item's body said when it failed

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


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
    # chain_rules.max_quote_age_seconds: a chain is reused no longer than this (past it, every quote in it is older)
    option_max_quote_age_s: float | None = None


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
    # When `positions` is None because some positions could not be read: what the others, and the readable parts of
    # those, say is held. For sizing exits only (engine/trading/handlers.py `_sellable`).
    positions_in_part: PositionsInPart | None = None
    # Option chains the data API refused to this account (403 `forbidden`: "subscription does not permit querying
    # recent OPRA data", `options.feed: opra` without that subscription), by underlying: not a failed read (the
    # broker answered, and will answer the same until the plan changes), so not in `errors`, which would fail every
    # bot's `broker_ok` and count towards api_failure_halt each tick; only the bots trading those underlyings are
    # blocked (their `data_denied` fact, preflight's `data_permitted`).
    chains_denied: Mapping[str, BrokerError] = field(default_factory=dict)
    # The same for quotes, by symbol: `broker.stock_feed: sip` on a plan without SIP data (403 "subscription does not
    # permit querying recent SIP data"). The bots watching them are blocked (`data_denied`); their market's feed is
    # neither stale nor unknown for it (a refused feed is no stale one: no data_stale_halt of the whole account).
    quotes_denied: Mapping[str, BrokerError] = field(default_factory=dict)
    # When each chain in `option_chains` was read from the broker, by underlying: `taken_at` for a chain read for this
    # snapshot, earlier for one reused from the cache (broker.option_chain_cache_seconds). Only a chain read now is a
    # quote of the market now: a fill is held to no other (engine/trading/fillprice.py `quote_of`). A chain missing here
    # is one whose reading time is unknown: never taken as read now.
    chains_read_at: Mapping[str, datetime] = field(default_factory=dict)

    def chain_read_now(self, underlying: str) -> bool:
        """Whether `underlying`'s chain was read for this snapshot, not reused from the cache."""
        return self.chains_read_at.get(underlying) == self.taken_at

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

    def get_order(self, order_id: str) -> Order | None:
        """The order by the broker's id (to follow a `replaced` order to its `replaced_by`); None when unknown."""
        ...

    def get_asset(self, symbol: str) -> Asset | None:
        """The asset, or None when the broker has no such symbol (404)."""
        ...

    def get_assets(self, asset_class: str | None = None) -> list[Asset]:
        """Every active asset (of one class), e.g. every crypto pair with its minimums."""
        ...

    def cancel_order(self, order_id: str) -> None:
        """Asks for the cancel (204); the order then moves pending_cancel -> canceled, or fills meanwhile."""
        ...

    def close_position(self, symbol: str) -> Order: ...

    def cancel_all_orders(self) -> tuple[BulkResult, ...]:
        """Account-wide: for the kill switch only. One result per order (a 207 answer)."""
        ...

    def close_all_positions(self) -> tuple[BulkResult, ...]:
        """Account-wide: for the kill switch only. One result per position (a 207 answer)."""
        ...
