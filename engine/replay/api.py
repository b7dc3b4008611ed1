"""`ReplayAPI`: the simulator's `SimAPI` for the replay exchange, each request without the lock and the saving check.

`SimAPI` takes the exchange's lock around every request, because the emulator serves the same exchange to its HTTP
threads, and compares the exchange's revision before and after it, because a simulated run saves the exchange on
every change (`on_change`). A backtest's exchange has neither: the engine's tick is its only caller, on one thread,
and nothing saves it (its state is the run's output folder, written by the engine). Five such requests a tick (the
snapshot's account, positions, open orders, quotes, the clock) spent more in that machinery than in reading the
account. Everything else stays SimAPI's: each request counts as one, and a refusal is the BrokerError the Alpaca
adapter would raise for it (`to_error`). An exchange given an `on_change` goes through SimAPI's own path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from engine.brokers.base import Quote
from engine.brokers.sim.api import SimAPI, to_error
from engine.brokers.sim.exchange import SimReject
from engine.replay.exchange import ReplayExchange

T = TypeVar("T")


class ReplayAPI(SimAPI):
    def __init__(self, exchange: ReplayExchange):
        super().__init__(exchange)

    def _call(self, operation: str, call: Callable[[], T], *, data_api: bool = False) -> T:
        if self.exchange.on_change is not None:  # something saves this exchange: SimAPI's path, which calls it
            return super()._call(operation, call, data_api=data_api)
        self.requests_made += 1
        try:
            return call()
        except SimReject as exc:
            raise to_error(exc, operation, data_api=data_api) from None

    def _read_quotes(self, operation: str, symbols: Sequence[str]) -> dict[str, Quote]:
        if self.exchange.on_change is not None:
            return super()._call(operation, lambda: self._quotes(symbols), data_api=True)
        self.requests_made += 1
        exchange = self.exchange
        try:
            return exchange.quotes(exchange.answerable(symbols))
        except SimReject as exc:
            raise to_error(exc, operation, data_api=True) from None

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._read_quotes("stock_quotes", symbols)

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return self._read_quotes("crypto_quotes", symbols)
