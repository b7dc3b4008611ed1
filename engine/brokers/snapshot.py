"""`SnapshotBroker`: one snapshot per tick at a constant number of requests, whatever the number of bots.

Per snapshot: account, positions, open orders (one request each), stock quotes in chunks of
`symbols_per_request`, one crypto request, option chains only when their cache expired, the clock only when
its cache expired or a session boundary passed. Every failed read is recorded (the field stays None) and
the snapshot is still returned (a positions answer unreadable in part keeps what it says is held, for exits alone:
`Snapshot.positions_in_part`): deciding what a failure means is the engine's job, not the broker's. An account
whose equity its cash and the positions read with it do not explain (`account_rules.equity_unexplained`) is such a
failed read too: a bad_response, whichever broker gave it.

Every call passes through here, so here every failure is logged once with its class (`reason`), on the
`engine.brokers` logger at INFO (the engine's journal records what it decides about it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from engine.brokers.account_rules import equity_unexplained
from engine.brokers.api import BrokerAPI
from engine.brokers.base import (
    Account,
    Asset,
    BrokerError,
    BulkResult,
    DataNeeds,
    MarketClock,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    PositionsUnreadable,
    Quote,
    Snapshot,
)
from engine.brokers.errors import plan_lacks_feed
from engine.config.model import BrokerSettings
from engine.core.calendar import NEW_YORK
from engine.core.clock import Clock

T = TypeVar("T")
log = logging.getLogger("engine.brokers")


def log_error(error: BrokerError) -> None:
    log.info(
        "broker error: %s reason=%s status=%s code=%s: %s",
        error.operation,
        error.reason,
        error.status,
        error.code,
        error.message,
        extra={"operation": error.operation, "reason": error.reason, "kind": error.kind, "status": error.status},
    )


@dataclass
class SnapshotBroker:
    api: BrokerAPI
    clock: Clock
    settings: BrokerSettings = field(default_factory=BrokerSettings)
    _chains: dict[str, tuple[datetime, tuple[OptionContract, ...]]] = field(default_factory=dict)
    _market_clock: tuple[datetime, MarketClock] | None = None
    _sorted: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)  # the needs' symbols, sorted once

    def _symbols(self, needed: tuple[str, ...]) -> tuple[str, ...]:
        """`needed` without repeats, sorted: the same few tuples come every tick, so each is sorted once."""
        symbols = self._sorted.get(needed)
        if symbols is None:
            if len(self._sorted) >= 64:
                self._sorted.clear()
            symbols = self._sorted[needed] = tuple(sorted(set(needed)))
        return symbols

    @property
    def name(self) -> str:
        return self.api.name

    def _read(self, errors: list[BrokerError], operation: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except BrokerError as exc:
            exc.operation = exc.operation or operation
            log_error(exc)
            errors.append(exc)
            return None

    def _read_permitted(
        self,
        errors: list[BrokerError],
        denied: dict[str, BrokerError],
        symbols: tuple[str, ...],
        operation: str,
        call: Callable[[], T],
    ) -> T | None:
        """`_read`, but a read the data API refuses because the account's plan lacks the feed (`plan_lacks_feed`:
        Alpaca's words, not any 403) goes to `denied`, for each of `symbols`, not to `errors`
        (`Snapshot.quotes_denied`, `Snapshot.chains_denied`)."""
        read: list[BrokerError] = []
        got = self._read(read, operation, call)
        for error in read:
            if plan_lacks_feed(error.reason, error.message):
                denied.update(dict.fromkeys(symbols, error))
            else:
                errors.append(error)
        return got

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except BrokerError as exc:
            exc.operation = exc.operation or operation
            log_error(exc)
            raise

    def market_clock(self) -> MarketClock:
        """The broker's market clock, read now (never the snapshot's cache): when a run must know the close before
        its first tick (`run --until-close`). BrokerError when it cannot be read."""
        return self._call("clock", self.api.get_clock)

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        errors: list[BrokerError] = []
        before = self.api.requests_made
        now = self.clock.now()
        account = self._read(errors, "account", self.api.get_account)
        positions = self._read(errors, "positions", self.api.get_positions)
        in_part = None  # some positions unreadable: what the others say, kept for exits alone (Snapshot)
        if positions is None and isinstance(errors[-1], PositionsUnreadable):
            in_part = errors[-1].known
        if account is not None and positions is not None and equity_unexplained(account, positions) is not None:
            account, positions = self._explained(positions, errors)
        orders = self._read(errors, "open_orders", self.api.get_open_orders)
        quotes: dict[str, Quote] = {}
        refused: dict[str, BrokerError] = {}  # quotes the data API refused to the account (`Snapshot.quotes_denied`)
        chunk = self.settings.symbols_per_request
        stocks = self._symbols(needs.stocks)
        for start in range(0, len(stocks), chunk):
            part = stocks[start : start + chunk]
            got = self._read_permitted(errors, refused, part, "stock_quotes", functools.partial(self.api.get_stock_quotes, part))
            quotes.update(got or {})
        crypto = self._symbols(needs.crypto)
        if crypto:
            got = self._read_permitted(errors, refused, crypto, "crypto_quotes", lambda: self.api.get_crypto_quotes(crypto))
            quotes.update(got or {})
        denied: dict[str, BrokerError] = {}
        chains = {
            u: c for u in sorted(set(needs.option_underlyings)) if (c := self._chain(u, needs, now, errors, denied)) is not None
        }
        market_clock = self._clock(now, errors)
        missing = tuple(s for s in (*stocks, *crypto) if s not in quotes)
        return Snapshot(
            taken_at=now,
            account=account,
            positions=tuple(positions) if positions is not None else None,
            open_orders=tuple(orders) if orders is not None else None,
            quotes=quotes,
            option_chains=chains,
            clock=market_clock,
            errors=tuple(errors),
            broker_requests=self.api.requests_made - before,
            missing_quotes=missing,
            chains_denied=denied,
            quotes_denied=refused,
            positions_in_part=in_part,
            chains_read_at={u: self._chains[u][0] for u in chains},
        )

    def _explained(
        self, positions: list[Position], errors: list[BrokerError]
    ) -> tuple[Account | None, list[Position] | None]:
        """The account read again, when the one read before the positions is not explained by them (its equity is not
        its cash and their market values summed). A fill between the two reads moves cash into a position: the
        account read after the positions agrees with them, and is taken. One that still does not is a snapshot that
        contradicts itself, several figures glitched that agree with each other (equity and cash halved, the equity
        made the cash), which read as a loss tripped the daily-loss flatten: neither read is taken (one bad_response,
        as the adapters record an answer they cannot read), and the system halts without selling."""
        account = self._read(errors, "account", self.api.get_account)
        if account is None:
            return None, None
        why = equity_unexplained(account, positions)
        if why is None:
            return account, positions
        error = BrokerError("bad_response", f"unreadable answer: {why}", operation="account")
        log_error(error)
        errors.append(error)
        return None, None

    def _chain(
        self, underlying: str, needs: DataNeeds, now: datetime, errors: list[BrokerError], denied: dict[str, BrokerError]
    ) -> tuple[OptionContract, ...] | None:
        """The chain of `underlying`, from the cache while it is fresh enough. A read the data API refuses because
        the account's plan does not include that feed (`_read_permitted`) goes to `denied`, not `errors` (`Snapshot`)."""
        cached = self._chains.get(underlying)
        # reused for broker.option_chain_cache_seconds, but never once every quote in it is older than the chain
        # rules take: a chain kept 60 s under a 30 s limit offered no contract for half of each minute
        reuse = self.settings.option_chain_cache_seconds
        if needs.option_max_quote_age_s is not None:
            reuse = min(reuse, needs.option_max_quote_age_s)
        if cached and (now - cached[0]).total_seconds() < reuse:
            return cached[1]
        today = now.astimezone(NEW_YORK).date()  # expiries are New York dates; after 19:00 there, UTC is tomorrow
        expiry_from = today + timedelta(days=needs.option_dte_min)
        expiry_to = today + timedelta(days=needs.option_dte_max)
        fetched = self._read_permitted(
            errors, denied, (underlying,), "option_chain", lambda: self.api.get_option_chain(underlying, expiry_from, expiry_to)
        )
        if fetched is None:
            return None  # a failed read is never replaced by the old chain
        self._chains[underlying] = (now, tuple(fetched))
        return self._chains[underlying][1]

    def _clock(self, now: datetime, errors: list[BrokerError]) -> MarketClock | None:
        if self._market_clock is not None:
            fetched_at, cached = self._market_clock
            boundary = cached.next_close if cached.is_open else cached.next_open
            fresh = (now - fetched_at).total_seconds() < self.settings.clock_cache_seconds
            if fresh and now < boundary:
                return MarketClock(now, cached.is_open, cached.next_open, cached.next_close)
        got = self._read(errors, "clock", self.api.get_clock)
        self._market_clock = (now, got) if got is not None else None
        return got

    # --- orders and lookups: straight through, errors as BrokerError -----------------------------------------

    def submit_order(self, request: OrderRequest) -> Order:
        return self._call("submit_order", lambda: self.api.submit_order(request))

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return self._call("get_order", lambda: self.api.get_order_by_client_id(client_order_id))

    def get_order(self, order_id: str) -> Order | None:
        return self._call("get_order", lambda: self.api.get_order(order_id))

    def get_asset(self, symbol: str) -> Asset | None:
        return self._call("asset", lambda: self.api.get_asset(symbol))

    def get_assets(self, asset_class: str | None = None) -> list[Asset]:
        return self._call("assets", lambda: self.api.get_assets(asset_class))

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", lambda: self.api.cancel_order(order_id))

    def close_position(self, symbol: str) -> Order:
        return self._call("close_position", lambda: self.api.close_position(symbol))

    def cancel_all_orders(self) -> tuple[BulkResult, ...]:
        return self._call("cancel_all_orders", self.api.cancel_all_orders)

    def close_all_positions(self) -> tuple[BulkResult, ...]:
        return self._call("close_all_positions", self.api.close_all_positions)
