"""The simulated exchange as a `BrokerAPI`, in process: each call counts as the one request Alpaca would take,
and each refusal reaches the engine as the BrokerError the Alpaca adapter would raise for the same answer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

from engine.brokers.base import (
    Account,
    Asset,
    BrokerError,
    BulkResult,
    ErrorKind,
    MarketClock,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    Quote,
)
from engine.brokers.errors import classify
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.core.calendar import NEW_YORK

T = TypeVar("T")
_KIND_BY_STATUS: dict[int, ErrorKind] = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}


def to_error(exc: SimReject, operation: str, *, data_api: bool = False) -> BrokerError:
    """The BrokerError for a refusal: the same status, code, message and class as through the adapter."""
    reason = classify(exc.status, exc.code, exc.message, data_api=data_api)
    kind: ErrorKind = _KIND_BY_STATUS.get(exc.status, "server" if exc.status >= 500 else "rejected")
    if reason == "unauthorized":
        kind = "unauthorized"
    return BrokerError(kind, exc.message, status=exc.status, operation=operation, reason=reason, code=exc.code)


class SimAPI:
    name = "sim"

    def __init__(self, exchange: SimExchange):
        self.exchange = exchange
        self.requests_made = 0

    def _call(self, operation: str, call: Callable[[], T], *, data_api: bool = False) -> T:
        """One request. When it changed the exchange (an order taken, a fill, a cancel, a day rolled, also by a
        read, which brings the exchange up to the clock first), the exchange's `on_change` saves it before the
        answer (or the refusal) leaves: what the engine is told and commits, the saved exchange already holds."""
        self.requests_made += 1
        exchange = self.exchange
        try:
            with exchange.lock:
                revision = exchange.revision
                try:
                    return call()
                finally:
                    if exchange.on_change is not None and exchange.revision != revision:
                        exchange.on_change()
        except SimReject as exc:
            raise to_error(exc, operation, data_api=data_api) from None

    def get_account(self) -> Account:
        return self._call("account", self.exchange.account)

    def get_positions(self) -> list[Position]:
        return self._call("positions", self.exchange.position_views)

    def get_open_orders(self) -> list[Order]:
        return self._call("open_orders", self.exchange.open_orders)

    def _quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """As the data API answers: a malformed symbol refuses the request, an unknown one is left out."""
        return self.exchange.quotes(self.exchange.answerable(symbols))

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._call("stock_quotes", lambda: self._quotes(symbols), data_api=True)

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._call("crypto_quotes", lambda: self._quotes(symbols), data_api=True)

    def get_option_chain(self, underlying: str, expiry_from: date, expiry_to: date) -> list[OptionContract]:
        today = self.exchange.clock.now().astimezone(NEW_YORK).date()  # as the adapter counts DTE: New York days
        dte_min, dte_max = (expiry_from - today).days, (expiry_to - today).days
        return self._call("option_chain", lambda: self.exchange.option_chain(underlying, dte_min, dte_max), data_api=True)

    def get_clock(self) -> MarketClock:
        return self._call("clock", self.exchange.market_clock)

    def get_asset(self, symbol: str) -> Asset | None:
        return self._call("asset", lambda: self.exchange.asset(symbol))

    def get_assets(self, asset_class: str | None = None) -> list[Asset]:
        return self._call("assets", lambda: self.exchange.assets(asset_class))

    def submit_order(self, request: OrderRequest) -> Order:
        return self._call("submit_order", lambda: self.exchange.submit(request))

    def _found(self, operation: str, call: Callable[[], Order]) -> Order | None:
        try:
            return self._call(operation, call)
        except BrokerError as exc:
            if exc.kind == "not_found":
                return None
            raise

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return self._found("get_order", lambda: self.exchange.find_by_client_id(client_order_id))

    def get_order(self, order_id: str) -> Order | None:
        return self._found("get_order", lambda: self.exchange.find(order_id))

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", lambda: self.exchange.cancel(order_id))

    def close_position(self, symbol: str) -> Order:
        return self._call("close_position", lambda: self.exchange.close_position(symbol))

    def cancel_all_orders(self) -> tuple[BulkResult, ...]:
        def cancel() -> tuple[BulkResult, ...]:
            results = []
            for order_id, status in self.exchange.cancel_all():
                refusal = SimReject(status, None, "order is not cancelable")
                error = None if status < 300 else to_error(refusal, "cancel_all_orders")
                results.append(BulkResult(order_id, status, error=error))
            return tuple(results)

        return self._call("cancel_all_orders", cancel)

    def close_all_positions(self) -> tuple[BulkResult, ...]:
        def close() -> tuple[BulkResult, ...]:
            results = []
            for symbol, status, outcome in self.exchange.close_all():
                if isinstance(outcome, SimReject):
                    results.append(BulkResult(symbol, status, error=to_error(outcome, "close_all_positions")))
                else:
                    results.append(BulkResult(symbol, status, order=outcome))
            return tuple(results)

        return self._call("close_all_positions", close)
