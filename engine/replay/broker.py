"""`ReplayBroker`: a backtest's snapshot read straight from the replay exchange, not through the request layers.

`SnapshotBroker.snapshot` reads a broker through its `BrokerAPI`: each read a closure handed to `_read`, then to
the API's request wrapper, which counts it, and turns a refusal into the BrokerError the Alpaca adapter would raise.
A backtest's API is in process (`ReplayAPI`), so most of that is calls around calls: about a third of the snapshot
of a 10-symbol tick. Here each read calls the exchange itself, and keeps everything a read can change: it counts as
the same requests (`requests_made`, the snapshot's `broker_requests`), a refusal is the same BrokerError (`to_error`,
the same operation and class) logged once and recorded while the snapshot is still returned, the quotes are asked
in the same chunks (a malformed symbol refuses its chunk), a symbol the data has no quote for at this tick stays
out of them (`missing_quotes`), the account is still checked against the positions read with it. Only what cannot
differ is skipped: the closures, the quotes of a single request copied into a second dictionary, and the frozen
dataclass's `__init__` of the snapshot (built as the exchange builds its answers: `make`).

An exchange that something saves (`on_change`) takes `SnapshotBroker`'s path, as `ReplayAPI` takes `SimAPI`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engine.brokers.account_rules import equity_unexplained
from engine.brokers.base import BrokerError, DataNeeds, PositionsUnreadable, Quote, Snapshot
from engine.brokers.sim.api import to_error
from engine.brokers.sim.exchange import SimReject, make
from engine.brokers.snapshot import SnapshotBroker, log_error
from engine.replay.api import ReplayAPI

T = TypeVar("T")


@dataclass
class ReplayBroker(SnapshotBroker):
    api: ReplayAPI

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        """What `SnapshotBroker.snapshot` gives for the same exchange at the same instant, read the same way."""
        api = self.api
        exchange = api.exchange
        if exchange.on_change is not None:  # each read must go through SimAPI's saving check
            return super().snapshot(needs)
        errors: list[BrokerError] = []
        before = api.requests_made
        now = self.clock.now()
        account = self._take(errors, "account", exchange.account)
        # An account read brings the exchange up to the clock (`process`), and nothing that reads it changes it: the
        # next reads' own `process` would do nothing then. After a failed one, each read tries it again, as before.
        processed = account is not None
        positions = self._take(errors, "positions", exchange.position_views_as_is if processed else exchange.position_views)
        in_part = None  # as SnapshotBroker.snapshot: what readable positions say, kept for exits alone
        if positions is None and isinstance(errors[-1], PositionsUnreadable):
            in_part = errors[-1].known
        if account is not None and positions is not None and equity_unexplained(account, positions) is not None:
            account, positions = self._explained(positions, errors)
        processed = processed or positions is not None
        orders = self._take(errors, "open_orders", exchange.open_orders_as_is if processed else exchange.open_orders)
        stocks = self._symbols(needs.stocks)
        crypto = self._symbols(needs.crypto) if needs.crypto else ()
        quotes = self._quotes(errors, stocks, crypto)
        denied: dict[str, BrokerError] = {}  # a recording is never refused its chains: kept empty, as a live run's
        chains = (
            {u: c for u in sorted(set(needs.option_underlyings)) if (c := self._chain(u, needs, now, errors, denied)) is not None}
            if needs.option_underlyings
            else {}
        )
        market_clock = self._clock(now, errors)
        # every symbol asked answered: none is missing (quotes holds only symbols asked; one asked as both a stock
        # and a coin makes the count fall short, and is looked for as below)
        answered = len(quotes) == len(stocks) + len(crypto)
        missing = () if answered else tuple(s for s in (*stocks, *crypto) if s not in quotes)
        return make(
            Snapshot,
            taken_at=now,
            account=account,
            positions=tuple(positions) if positions is not None else None,
            open_orders=tuple(orders) if orders is not None else None,
            quotes=quotes,
            option_chains=chains,
            clock=market_clock,
            errors=tuple(errors),
            broker_requests=api.requests_made - before,
            missing_quotes=missing,
            positions_in_part=in_part,
            chains_denied=denied,
            quotes_denied={},
            chains_read_at={u: self._chains[u][0] for u in chains},
        )

    def _take(self, errors: list[BrokerError], operation: str, read: Callable[[], T]) -> T | None:
        """One request, as `ReplayAPI._call` then `SnapshotBroker._read` make it: counted, a refusal recorded."""
        self.api.requests_made += 1
        try:
            return read()
        except SimReject as exc:
            self._failed(errors, to_error(exc, operation))
        except BrokerError as exc:
            exc.operation = exc.operation or operation
            self._failed(errors, exc)
        return None

    @staticmethod
    def _failed(errors: list[BrokerError], error: BrokerError) -> None:
        log_error(error)
        errors.append(error)

    def _quotes(self, errors: list[BrokerError], stocks: tuple[str, ...], crypto: tuple[str, ...]) -> dict[str, Quote]:
        """The stocks' quotes in requests of `symbols_per_request`, then the coins' in one, as `ReplayAPI` answers
        each (`_read_quotes`): a malformed symbol refuses its request, a symbol not listed, or without a quote at
        this tick, is left out."""
        chunk = self.settings.symbols_per_request
        quotes: dict[str, Quote] | None = None
        for start in range(0, len(stocks), chunk):
            got = self._read_quotes(errors, "stock_quotes", stocks[start : start + chunk] if len(stocks) > chunk else stocks)
            if quotes is None:
                quotes = got  # a dictionary of its own (`SimExchange.quotes` builds one a call): no copy needed
            elif got:
                quotes.update(got)
        if crypto:
            got = self._read_quotes(errors, "crypto_quotes", crypto)
            if quotes is None:
                quotes = got
            elif got:
                quotes.update(got)
        return quotes if quotes is not None else {}

    def _read_quotes(self, errors: list[BrokerError], operation: str, symbols: tuple[str, ...]) -> dict[str, Quote]:
        self.api.requests_made += 1
        exchange = self.api.exchange
        try:
            return exchange.quotes(exchange.answerable(symbols))
        except SimReject as exc:
            self._failed(errors, to_error(exc, operation, data_api=True))
        except BrokerError as exc:
            exc.operation = exc.operation or operation
            self._failed(errors, exc)
        return {}
