"""The replay's exchange: the simulated exchange's order handling and Alpaca's rules (buying power, no shorting,
the crypto minimum, wash trades, asynchronous cancels, partial fills), priced by recorded data (`FramePrices`),
filled by the `FillModel`, open when the exchange calendar says (holidays and early closes included).

Only the seams the simulator exposes for this are overridden: where prices come from, the price an order trades
at, the venue's fee and the commission. Everything else is the simulator's code, so a backtest meets the same
refusals a simulated or a live run would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from engine.brokers.base import Asset, Quote
from engine.brokers.sim.exchange import SimExchange, SimOrder
from engine.brokers.symbols import parse_occ
from engine.data.records import Bar
from engine.replay.feed import FramePrices
from engine.replay.fills import FillModel


@dataclass
class ReplayExchange(SimExchange):
    fill_model: FillModel = field(default_factory=FillModel)
    # What each order paid beyond its price, in dollars, by client_order_id: commissions and crypto fees (the
    # latter valued at the fill price), for the report's fees by bot.
    fees: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def __post_init__(self) -> None:
        if not isinstance(self.prices, FramePrices):
            raise TypeError("a ReplayExchange is priced by FramePrices (pass prices=FramePrices(...))")
        super().__post_init__()
        self.feed: FramePrices = self.prices
        self.fill_at_submit = self.fill_model.timing == "submit"

    # --- symbols exist once the data has them ------------------------------------------------------------

    def listed(self, symbol: str) -> bool:
        """The data API leaves out a symbol it has nothing for: here, one the data has no price for yet (an option
        is priced from its underlying)."""
        if not super().listed(symbol):
            return False
        if self.feed.has(symbol):
            return True
        occ = parse_occ(symbol) if self._asset_class(symbol) == "us_option" else None
        return occ is not None and self.feed.has(occ[0])

    def answerable(self, symbols: Sequence[str]) -> list[str]:
        """As the simulator's, less the symbols the recorded run got no quote for at this tick (its `missing/`):
        the data API left them out of its answer then, and the replay's answer leaves them out too, so the engine
        sees the same hole (a quote missing, its age unknown) instead of the last quote before it."""
        answered = super().answerable(symbols)
        missing = self.feed.missing
        return [symbol for symbol in answered if symbol not in missing] if missing else answered

    def asset(self, symbol: str) -> Asset | None:
        """A crypto pair's minimum order and increments follow its price, so one the data has no price for yet is
        not listed. The simulator's universe names pairs the data may not hold (ETH/USD): priced here, their 404
        failed the whole /v2/assets read, at every tick of a backtest of BTC/USD alone, and the CryptoBot never
        sized an entry. A pair whose data starts later is listed from then (`_read_assets` asks again)."""
        if self._asset_class(symbol) == "crypto" and not self.listed(symbol):
            return None
        return super().asset(symbol)

    # --- the fill model --------------------------------------------------------------------------------------

    def execution_price(self, order: SimOrder, quote: Quote, now: datetime) -> float | None:
        model = self.fill_model
        r = order.request
        if model.timing == "submit":
            price = super().execution_price(order, quote, now)
            return model.slipped(price, r.side) if price is not None and r.order_type == "market" else price
        row = self.feed.new_row(r.symbol)
        if row is None:
            occ = parse_occ(r.symbol)
            if occ is None or self.feed.has(r.symbol) or self.feed.new_row(occ[0]) is None:
                return None  # no price since the order was sent
        if isinstance(row, Bar):
            return self._bar_price(order, row)
        price = super().execution_price(order, quote, now)  # the quote's side, within the limit
        return model.slipped(price, r.side) if price is not None and r.order_type == "market" else price

    def _bar_price(self, order: SimOrder, bar: Bar) -> float | None:
        """A market order at the bar's open (slipped); a limit order when the bar's range reaches its limit, at the
        limit, or at the open when the bar opened through it."""
        r = order.request
        if r.order_type == "market" or r.limit_price is None:
            return self.fill_model.slipped(bar.open, r.side)
        if r.side == "buy":
            return min(bar.open, r.limit_price) if bar.low <= r.limit_price else None
        return max(bar.open, r.limit_price) if bar.high >= r.limit_price else None

    def fee_rate(self, order: SimOrder) -> float:
        if order.asset_class != "crypto":
            return 0.0
        model = self.fill_model
        return model.crypto_maker_fee if order.request.order_type == "limit" else model.crypto_taker_fee

    def commission(self, order: SimOrder, qty: float, price: float) -> float:
        model = self.fill_model
        per_unit = {"us_equity": model.commission_per_share, "us_option": model.commission_per_contract}
        commission = per_unit.get(order.asset_class, 0.0) * qty
        self.fees[order.request.client_order_id] += commission + qty * price * self.fee_rate(order)
        return commission
