"""The simulated exchange as a `BrokerAPI`, in process: each call counts as the one request Alpaca would take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

from engine.brokers.base import Account, BrokerError, MarketClock, OptionContract, Order, OrderRequest, Position, Quote
from engine.brokers.sim.exchange import SimExchange, SimReject

T = TypeVar("T")
_KIND_BY_STATUS = {401: "unauthorized", 403: "rejected", 404: "not_found", 422: "rejected", 429: "rate_limited"}


class SimAPI:
    name = "sim"

    def __init__(self, exchange: SimExchange):
        self.exchange = exchange
        self.requests_made = 0

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        self.requests_made += 1
        try:
            with self.exchange.lock:
                return call()
        except SimReject as exc:
            kind = _KIND_BY_STATUS.get(exc.status, "server" if exc.status >= 500 else "rejected")
            raise BrokerError(kind, exc.message, status=exc.status, operation=operation) from None  # type: ignore[arg-type]

    def get_account(self) -> Account:
        return self._call("account", self.exchange.account)

    def get_positions(self) -> list[Position]:
        return self._call("positions", self.exchange.position_views)

    def get_open_orders(self) -> list[Order]:
        return self._call("open_orders", self.exchange.open_orders)

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._call("stock_quotes", lambda: {s: self.exchange.quote(s) for s in symbols})

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._call("crypto_quotes", lambda: {s: self.exchange.quote(s) for s in symbols})

    def get_option_chain(self, underlying: str, expiry_from: date, expiry_to: date) -> list[OptionContract]:
        today = self.exchange.clock.now().date()
        dte_min, dte_max = (expiry_from - today).days, (expiry_to - today).days
        return self._call("option_chain", lambda: self.exchange.option_chain(underlying, dte_min, dte_max))

    def get_clock(self) -> MarketClock:
        return self._call("clock", self.exchange.market_clock)

    def submit_order(self, request: OrderRequest) -> Order:
        return self._call("submit_order", lambda: self.exchange.submit(request))

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        try:
            return self._call("get_order", lambda: self.exchange.find_by_client_id(client_order_id))
        except BrokerError as exc:
            if exc.kind == "not_found":
                return None
            raise

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", lambda: self.exchange.cancel(order_id))

    def close_position(self, symbol: str) -> Order:
        return self._call("close_position", lambda: self.exchange.close_position(symbol))

    def cancel_all_orders(self) -> None:
        self._call("cancel_all_orders", self.exchange.cancel_all)

    def close_all_positions(self) -> None:
        self._call("close_all_positions", self.exchange.close_all)
