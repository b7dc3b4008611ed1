"""The Alpaca adapter over alpaca-py, hardened for a fail-closed engine (reference/alpaca-api.md §1, §6).

- Every HTTP request gets a timeout (the SDK sets none and would block forever on a stalled socket).
- The SDK's silent retry on 429/504 is switched off: the engine owns retries, and an order POST is never
  repeated blindly (after any error the engine looks the order up by client_order_id).
- Trading requests pass a client-side token bucket; the X-RateLimit-* headers tighten it.
- Every failure (timeouts, refused connections, 4xx/5xx, HTML or malformed bodies, shapes the SDK cannot
  validate) becomes one BrokerError with a kind. Keys never appear in a message.
- Symbols are normalised: positions say BTCUSD, the engine says BTC/USD.

alpaca-py is imported lazily: it takes about half a second, and `--validate` must stay fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from typing import Any, TypeVar

from engine.brokers.base import (
    Account,
    BrokerError,
    ErrorKind,
    MarketClock,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    Quote,
)
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.symbols import normalize, parse_occ, position_path_symbol

T = TypeVar("T")


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _required(value: Any, name: str) -> float:
    """A number the engine cannot do without: missing or empty is a bad response, never a zero."""
    number = _float(value)
    if number is None:
        raise ValueError(f"{name} is missing")
    return number


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class AlpacaAPI:
    name = "alpaca"

    def __init__(
        self,
        key: str,
        secret: str,
        *,
        paper: bool,
        api_base_url: str | None,
        data_base_url: str | None,
        timeout_seconds: float,
        bucket: TokenBucket,
        feed: str = "iex",
    ):
        from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        if not key or not secret:
            raise BrokerError("config", "ALPACA_KEY and ALPACA_SECRET must both be set")
        self._secrets = (key, secret)
        self.paper = paper
        self.feed = feed
        self.requests_made = 0
        self.bucket = bucket
        self.timeout = (min(timeout_seconds, 5.0), timeout_seconds)
        self.trading = TradingClient(key, secret, paper=paper, url_override=api_base_url)
        self.stocks = StockHistoricalDataClient(key, secret, url_override=data_base_url)
        self.crypto = CryptoHistoricalDataClient(key, secret, url_override=data_base_url)
        self.options = OptionHistoricalDataClient(key, secret, url_override=data_base_url)
        for client in (self.trading, self.stocks, self.crypto, self.options):
            self._harden(client, rate_limited=client is self.trading)

    def _harden(self, client: Any, *, rate_limited: bool) -> None:
        """Timeouts, no silent retries, request counting and the token bucket, on the SDK's private session."""
        for attribute in ("_session", "_retry", "_retry_codes"):
            if not hasattr(client, attribute):
                raise BrokerError("config", f"alpaca-py changed: {type(client).__name__} has no {attribute}")
        client._retry = 0
        client._retry_codes = []
        session = client._session
        send = session.request

        def request(method: str, url: str, **kwargs: Any) -> Any:
            if rate_limited and not self.bucket.try_acquire():
                raise BrokerError("rate_limited", "client-side budget of trading requests per minute is used up")
            kwargs.setdefault("timeout", self.timeout)
            self.requests_made += 1
            response = send(method, url, **kwargs)
            if rate_limited:
                self._observe_rate_limit(response.headers)
            return response

        session.request = request

    def _observe_rate_limit(self, headers: Any) -> None:
        try:
            remaining = headers.get("X-RateLimit-Remaining")
            reset = headers.get("X-RateLimit-Reset")
            reset_at = datetime.fromtimestamp(int(reset), timezone.utc) if reset else None
            self.bucket.observe(int(remaining) if remaining is not None else None, reset_at)
        except (TypeError, ValueError):
            return  # an unreadable header only means we keep our own count

    # --- errors --------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= 8:  # real keys are long; a short test key would mangle ordinary words
                text = text.replace(secret, "***")
        return text[:300]

    def to_error(self, exc: BaseException, operation: str) -> BrokerError:
        import pydantic
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, BrokerError):
            exc.operation = exc.operation or operation
            return exc
        kind: ErrorKind
        status: int | None = None
        if isinstance(exc, APIError):
            status = exc.status_code
            body = str(exc)
            try:
                parsed = json.loads(body)
                message = str(parsed.get("message", body)) if isinstance(parsed, dict) else body
            except json.JSONDecodeError:
                message = f"HTTP {status} with a non-JSON body"
            kind = _kind_for_status(status)
        elif isinstance(exc, requests.exceptions.Timeout):
            kind, message = "timeout", "no answer in time"
        elif isinstance(exc, requests.exceptions.JSONDecodeError):
            kind, message = "bad_response", "the body is not JSON"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            kind, message = "connection", "cannot connect"
        elif isinstance(exc, requests.exceptions.RequestException):
            kind, message = "connection", type(exc).__name__
        elif isinstance(exc, (pydantic.ValidationError, ValueError, TypeError, KeyError, AttributeError)):
            kind, message = "bad_response", f"unexpected answer ({type(exc).__name__})"
        else:
            kind, message = "bad_response", f"unexpected failure ({type(exc).__name__})"
        return BrokerError(kind, self._scrub(message), status=status, operation=operation)

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as exc:  # mapped to one typed BrokerError; nothing escapes untyped
            raise self.to_error(exc, operation) from None

    # --- reads ---------------------------------------------------------------------------------------------

    def get_account(self) -> Account:
        def read() -> Account:
            from alpaca.trading.models import TradeAccount

            a = _model(self.trading.get_account(), TradeAccount)
            return Account(
                equity=_required(a.equity, "equity"),
                last_equity=_required(a.last_equity, "last_equity"),
                cash=_required(a.cash, "cash"),
                buying_power=_required(a.buying_power, "buying_power"),
                status=_enum_value(a.status),
                trading_blocked=bool(a.trading_blocked),
                account_blocked=bool(a.account_blocked),
            )

        return self._call("account", read)

    def get_positions(self) -> list[Position]:
        def read() -> list[Position]:
            out = []
            from alpaca.trading.models import Position as AlpacaPosition

            for item in _models(self.trading.get_all_positions()):
                p = _model(item, AlpacaPosition)
                asset_class = _enum_value(p.asset_class)
                qty = float(p.qty) * (-1 if _enum_value(p.side) == "short" else 1)
                out.append(
                    Position(
                        normalize(p.symbol, asset_class),
                        qty,
                        _required(p.avg_entry_price, "avg_entry_price"),
                        _required(p.current_price, "current_price"),
                        _required(p.market_value, "market_value"),
                        _required(p.unrealized_pl, "unrealized_pl"),
                        asset_class,  # type: ignore[arg-type]
                    )
                )
            return out

        return self._call("positions", read)

    def _order(self, o: Any) -> Order:
        return Order(
            id=str(o.id),
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=_enum_value(o.side),  # type: ignore[arg-type]
            qty=_float(o.qty),
            notional=_float(o.notional),
            filled_qty=float(o.filled_qty or 0),
            filled_avg_price=_float(o.filled_avg_price),
            order_type=_enum_value(o.order_type or o.type),
            time_in_force=_enum_value(o.time_in_force),
            limit_price=_float(o.limit_price),
            status=_enum_value(o.status),
            created_at=_aware(o.created_at),
            asset_class=_enum_value(o.asset_class),  # type: ignore[arg-type]
        )

    def get_open_orders(self) -> list[Order]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        return self._call("open_orders", lambda: [self._order(o) for o in self.trading.get_orders(filter=request)])

    def _quotes(self, raw: Any) -> dict[str, Quote]:
        return {symbol: Quote(symbol, float(q.bid_price), float(q.ask_price), _aware(q.timestamp)) for symbol, q in raw.items()}

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockLatestQuoteRequest

        request = StockLatestQuoteRequest(symbol_or_symbols=list(symbols), feed=DataFeed(self.feed))
        return self._call("stock_quotes", lambda: self._quotes(self.stocks.get_stock_latest_quote(request)))

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.requests import CryptoLatestQuoteRequest

        request = CryptoLatestQuoteRequest(symbol_or_symbols=list(symbols))
        return self._call("crypto_quotes", lambda: self._quotes(self.crypto.get_crypto_latest_quote(request)))

    def get_option_chain(self, underlying: str, expiry_from: date, expiry_to: date) -> list[OptionContract]:
        from alpaca.data.requests import OptionChainRequest

        request = OptionChainRequest(underlying_symbol=underlying, expiration_date_gte=expiry_from, expiration_date_lte=expiry_to)

        def read() -> list[OptionContract]:
            out = []
            for occ, snap in self.options.get_option_chain(request).items():
                parsed = parse_occ(occ)
                quote, greeks = snap.latest_quote, snap.greeks
                if parsed is None or quote is None or greeks is None:
                    continue  # a contract without a quote or greeks cannot be chosen; it is left out, not guessed
                _root, expiry, option_type, strike = parsed
                if option_type not in ("call", "put"):
                    continue
                out.append(
                    OptionContract(
                        occ,
                        underlying,
                        "call" if option_type == "call" else "put",
                        strike,
                        expiry,
                        float(quote.bid_price),
                        float(quote.ask_price),
                        _aware(quote.timestamp),
                        float(greeks.delta),
                        float(greeks.gamma),
                        float(greeks.theta),
                        float(greeks.vega),
                        _float(snap.implied_volatility),
                    )
                )
            return out

        return self._call("option_chain", read)

    def get_clock(self) -> MarketClock:
        def read() -> MarketClock:
            from alpaca.trading.models import Clock

            c = _model(self.trading.get_clock(), Clock)
            return MarketClock(_aware(c.timestamp), bool(c.is_open), _aware(c.next_open), _aware(c.next_close))

        return self._call("clock", read)

    # --- orders --------------------------------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> Order:
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        def send() -> Order:
            common: dict[str, Any] = {
                "symbol": request.symbol,
                "side": OrderSide(request.side),
                "time_in_force": TimeInForce(request.time_in_force),
                "client_order_id": request.client_order_id,
            }
            if request.qty is not None:
                common["qty"] = request.qty
            else:
                common["notional"] = request.notional
            if request.order_type == "limit":
                sdk_request: Any = LimitOrderRequest(limit_price=request.limit_price, **common)
            else:
                sdk_request = MarketOrderRequest(**common)
            return self._order(self.trading.submit_order(sdk_request))

        return self._call("submit_order", send)

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        try:
            return self._call("get_order", lambda: self._order(self.trading.get_order_by_client_id(client_order_id)))
        except BrokerError as exc:
            if exc.kind == "not_found":
                return None
            raise

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", lambda: self.trading.cancel_order_by_id(order_id))

    def close_position(self, symbol: str) -> Order:
        return self._call("close_position", lambda: self._order(self.trading.close_position(position_path_symbol(symbol))))

    def cancel_all_orders(self) -> None:
        self._call("cancel_all_orders", self.trading.cancel_orders)

    def close_all_positions(self) -> None:
        self._call("close_all_positions", lambda: self.trading.close_all_positions(cancel_orders=True))


def _kind_for_status(status: int | None) -> ErrorKind:
    if status is None:
        return "bad_response"
    if status == 401:
        return "unauthorized"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server"
    return "rejected"


M = TypeVar("M")


def _model(value: object, cls: type[M]) -> M:
    """The SDK's answer as its model. alpaca-py may return raw JSON instead (`raw_data=True`); we never ask for
    it, so anything else is a shape we do not understand: a bad response, never a guess."""
    if not isinstance(value, cls):
        raise ValueError(f"expected {cls.__name__} from alpaca-py, got {type(value).__name__}")
    return value


def _models(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list from alpaca-py, got {type(value).__name__}")
    return value
