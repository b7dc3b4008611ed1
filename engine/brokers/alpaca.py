"""The Alpaca adapter over alpaca-py, hardened for a fail-closed engine (reference/alpaca-api.md §1, §6).

- Every HTTP request gets a timeout (the SDK sets none and would block forever on a stalled socket).
- The SDK's silent retry on 429/504 is switched off: the engine owns retries, and an order POST is never
  repeated blindly (after any error the engine looks the order up by client_order_id).
- Trading requests pass a client-side token bucket; the X-RateLimit-* headers tighten it.
- Every failure (timeouts, refused connections, 4xx/5xx, HTML or malformed bodies, shapes the SDK cannot
  validate) becomes one BrokerError with a kind and a reason: what the answer means, read from its status,
  Alpaca's code and its message (engine/brokers/errors.py). Keys never appear in a message.
- Symbols are normalised: positions say BTCUSD, the engine says BTC/USD.
- Values are passed through as sent: a short position's sign is applied once, a quote side at 0 stays 0, a
  contract without greeks is kept (NaN greeks), every order status is kept as Alpaca names it.
- The account is read raw through the SDK's own REST client (`TradingClient.get`): alpaca-py 0.44.0's model
  drops `intraday_adjustments` and it has no activities method, and both are needed for daily P&L.

alpaca-py is imported lazily: it takes about half a second, and `--validate` must stay fast.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from engine.brokers.base import (
    NON_TRADE_ACTIVITY_TYPES,
    Account,
    Asset,
    BrokerError,
    BulkResult,
    ErrorKind,
    MarketClock,
    NonTradeActivity,
    OptionContract,
    Order,
    OrderRequest,
    Position,
    Quote,
)
from engine.brokers.errors import classify
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.symbols import normalize, parse_occ, position_path_symbol
from engine.core.clock import Clock, SystemClock

T = TypeVar("T")
NEW_YORK = ZoneInfo("America/New_York")
ACTIVITY_PAGE_SIZE = 100  # the endpoint's maximum (trading-api.json)
ACTIVITY_PAGES = 20  # a day of cash movements is a handful; more pages than this is not an answer we understand
OPTION_FEEDS = ("indicative", "opra")
NAN = float("nan")


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


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 time from a raw answer; its fraction may have nine digits (Python reads six)."""
    if not value:
        return None
    text = _NANOS.sub(r"\1", str(value)).replace("Z", "+00:00")
    return _aware(datetime.fromisoformat(text))


_NANOS = re.compile(r"(\.\d{6})\d+")


def _body(text: str) -> tuple[int | None, str]:
    """Alpaca's error code and message from an error body; (None, a description) when it is not JSON."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None, "a non-JSON body"
    if not isinstance(parsed, dict):
        return None, text
    code = parsed.get("code")
    return (int(code) if isinstance(code, (int, float)) else None), str(parsed.get("message", text))


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
        options_feed: str = "indicative",
        clock: Clock | None = None,
    ):
        from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        if not key or not secret:
            raise BrokerError("config", "ALPACA_KEY and ALPACA_SECRET must both be set")
        if options_feed not in OPTION_FEEDS:
            raise BrokerError("config", f"options feed {options_feed!r} is not one of {', '.join(OPTION_FEEDS)}")
        self._secrets = (key, secret)
        self.paper = paper
        self.feed = feed
        # Without an OPRA subscription Alpaca serves `indicative` (trades delayed 15 minutes, quotes modified);
        # the feed is named on every option data request so the answer never depends on the subscription.
        self.options_feed = options_feed
        self.clock: Clock = clock or SystemClock()
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

    def to_error(self, exc: BaseException, operation: str, *, data_api: bool = False) -> BrokerError:
        import pydantic
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, BrokerError):
            exc.operation = exc.operation or operation
            return exc
        kind: ErrorKind
        status: int | None = None
        code: int | None = None
        if isinstance(exc, APIError):
            status = exc.status_code
            code, message = _body(str(exc))
            if code is None and message == "a non-JSON body":
                message = f"HTTP {status} with a non-JSON body"
            kind = _kind_for_status(status)
            reason = classify(status, code, message, data_api=data_api)
            if reason == "unauthorized":
                kind = "unauthorized"
            return BrokerError(kind, self._scrub(message), status=status, operation=operation, reason=reason, code=code)
        if isinstance(exc, requests.exceptions.Timeout):
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

    def _call(self, operation: str, call: Callable[[], T], *, data_api: bool = False) -> T:
        try:
            return call()
        except Exception as exc:  # mapped to one typed BrokerError; nothing escapes untyped
            raise self.to_error(exc, operation, data_api=data_api) from None

    def _found(self, operation: str, call: Callable[[], T]) -> T | None:
        try:
            return self._call(operation, call)
        except BrokerError as exc:
            if exc.kind == "not_found":
                return None
            raise

    # --- reads ---------------------------------------------------------------------------------------------

    def get_account(self) -> Account:
        def read() -> Account:
            from alpaca.trading.models import TradeAccount

            raw = self.trading.get("/account")
            if not isinstance(raw, dict):
                raise ValueError(f"expected the account as a JSON object, got {type(raw).__name__}")
            a = TradeAccount(**raw)  # the SDK's own check of the shape
            crypto_status = _enum_value(a.crypto_status) if a.crypto_status is not None else None
            activities: tuple[NonTradeActivity, ...] = ()
            if raw.get("intraday_adjustments") not in (None, ""):
                moved: float | None = float(raw["intraday_adjustments"])
                source = "intraday_adjustments"
            else:
                activities = tuple(self._activities_today())
                moved, source = round(sum(x.net_amount for x in activities), 2), "activities"
            return Account(
                equity=_required(a.equity, "equity"),
                last_equity=_required(a.last_equity, "last_equity"),
                cash=_required(a.cash, "cash"),
                buying_power=_required(a.buying_power, "buying_power"),
                status=_enum_value(a.status),
                trading_blocked=bool(a.trading_blocked),
                account_blocked=bool(a.account_blocked),
                crypto_status=crypto_status,
                options_trading_level=a.options_trading_level,
                options_approved_level=a.options_approved_level,
                non_marginable_buying_power=_float(a.non_marginable_buying_power),
                options_buying_power=_float(a.options_buying_power),
                trade_suspended_by_user=bool(a.trade_suspended_by_user),
                non_trade_cash_today=moved,
                non_trade_cash_source=source,  # type: ignore[arg-type]  # one of the two literals above
                non_trade_activities=activities,
            )

        return self._call("account", read)

    def _activities_today(self) -> list[NonTradeActivity]:
        """Today's (New York) non-trade cash activities, every page. `after`/`until` bound the creation time,
        which is what the endpoint filters on (trading-api.json); pages go by the last id (`page_token`)."""
        now = self.clock.now().astimezone(NEW_YORK)
        start = datetime.combine(now.date(), time(0), NEW_YORK)
        end = start + timedelta(days=1)
        params: dict[str, Any] = {
            "activity_types": ",".join(sorted(NON_TRADE_ACTIVITY_TYPES)),
            "after": _utc(start - timedelta(microseconds=1)),
            "until": _utc(end),
            "direction": "asc",
            "page_size": ACTIVITY_PAGE_SIZE,
        }
        found: list[NonTradeActivity] = []
        for _ in range(ACTIVITY_PAGES):
            page = self.trading.get("/account/activities", params)
            if not isinstance(page, list):
                raise ValueError(f"expected a list of activities, got {type(page).__name__}")
            for item in page:
                activity = _activity(item)
                if activity is not None and _on_day(activity, now.date()):
                    found.append(activity)
            if len(page) < ACTIVITY_PAGE_SIZE:
                return found
            params["page_token"] = page[-1]["id"]
        raise ValueError(f"more than {ACTIVITY_PAGES} pages of account activities for one day")

    def get_positions(self) -> list[Position]:
        def read() -> list[Position]:
            out = []
            from alpaca.trading.models import Position as AlpacaPosition

            for item in _models(self.trading.get_all_positions()):
                p = _model(item, AlpacaPosition)
                asset_class = _enum_value(p.asset_class)
                # Alpaca writes a short as side "short" with a signed qty ("-5", Alpaca-API issue #86): the sign
                # comes from the side, applied once, whatever the qty's own sign.
                qty = abs(float(p.qty)) * (-1 if _enum_value(p.side) == "short" else 1)
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
            replaced_by=str(o.replaced_by) if o.replaced_by else None,
            replaces=str(o.replaces) if o.replaces else None,
        )

    def get_open_orders(self) -> list[Order]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        return self._call("open_orders", lambda: [self._order(o) for o in self.trading.get_orders(filter=request)])

    def _quotes(self, raw: Any) -> dict[str, Quote]:
        # bid and ask as sent (0 for an empty side), and the quote's own time: the engine judges both
        return {symbol: Quote(symbol, float(q.bid_price), float(q.ask_price), _aware(q.timestamp)) for symbol, q in raw.items()}

    def get_stock_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockLatestQuoteRequest

        request = StockLatestQuoteRequest(symbol_or_symbols=list(symbols), feed=DataFeed(self.feed))
        return self._call("stock_quotes", lambda: self._quotes(self.stocks.get_stock_latest_quote(request)), data_api=True)

    def get_crypto_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        from alpaca.data.requests import CryptoLatestQuoteRequest

        request = CryptoLatestQuoteRequest(symbol_or_symbols=list(symbols))
        return self._call("crypto_quotes", lambda: self._quotes(self.crypto.get_crypto_latest_quote(request)), data_api=True)

    def get_option_chain(self, underlying: str, expiry_from: date, expiry_to: date) -> list[OptionContract]:
        from alpaca.data.enums import OptionsFeed
        from alpaca.data.requests import OptionChainRequest

        request = OptionChainRequest(
            underlying_symbol=underlying,
            feed=OptionsFeed(self.options_feed),
            expiration_date_gte=expiry_from,
            expiration_date_lte=expiry_to,
        )

        def read() -> list[OptionContract]:
            out = []
            # the SDK follows next_page_token, 1,000 contracts a page (each page one counted request)
            for occ, snap in self.options.get_option_chain(request).items():
                parsed = parse_occ(occ)
                quote, greeks = snap.latest_quote, snap.greeks
                if parsed is None or quote is None:
                    continue  # no quote, no price: nothing to choose or to value it by
                _root, expiry, option_type, strike = parsed
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
                        # Thin contracts come without greeks (alpaca-trade-api-go marketdata/options_test.go):
                        # kept, with NaN greeks that no delta range admits; `OptionContract.greeks` is None.
                        float(greeks.delta) if greeks else NAN,
                        float(greeks.gamma) if greeks else NAN,
                        float(greeks.theta) if greeks else NAN,
                        float(greeks.vega) if greeks else NAN,
                        _float(snap.implied_volatility),
                    )
                )
            return out

        return self._call("option_chain", read, data_api=True)

    def get_clock(self) -> MarketClock:
        def read() -> MarketClock:
            from alpaca.trading.models import Clock

            c = _model(self.trading.get_clock(), Clock)
            return MarketClock(_aware(c.timestamp), bool(c.is_open), _aware(c.next_open), _aware(c.next_close))

        return self._call("clock", read)

    def get_asset(self, symbol: str) -> Asset | None:
        """/v2/assets/{symbol}; crypto by its old spelling BTCUSD (trading-api.json: "the symbol has to follow
        old symbology"), which also keeps the slash out of the path."""
        return self._found("asset", lambda: _asset(self.trading.get_asset(position_path_symbol(symbol))))

    def get_assets(self, asset_class: str | None = None) -> list[Asset]:
        from alpaca.trading.enums import AssetClass, AssetStatus
        from alpaca.trading.requests import GetAssetsRequest

        request = GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass(asset_class) if asset_class else None)
        return self._call("assets", lambda: [_asset(a) for a in _models(self.trading.get_all_assets(request))])

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
        return self._found("get_order", lambda: self._order(self.trading.get_order_by_client_id(client_order_id)))

    def get_order(self, order_id: str) -> Order | None:
        return self._found("get_order", lambda: self._order(self.trading.get_order_by_id(order_id)))

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", lambda: self.trading.cancel_order_by_id(order_id))

    def close_position(self, symbol: str) -> Order:
        return self._call("close_position", lambda: self._order(self.trading.close_position(position_path_symbol(symbol))))

    def cancel_all_orders(self) -> tuple[BulkResult, ...]:
        def cancel() -> tuple[BulkResult, ...]:
            from alpaca.trading.requests import CancelOrderResponse

            out = []
            for raw in _models(self.trading.cancel_orders()):  # 207: one status per order
                item = _model(raw, CancelOrderResponse)
                error = None if item.status < 300 else self._item_error(item.status, item.body, "cancel_all_orders")
                out.append(BulkResult(str(item.id), item.status, error=error))
            return tuple(out)

        return self._call("cancel_all_orders", cancel)

    def close_all_positions(self) -> tuple[BulkResult, ...]:
        def close() -> tuple[BulkResult, ...]:
            from alpaca.trading.models import ClosePositionResponse
            from alpaca.trading.models import Order as AlpacaOrder

            out = []
            for raw in _models(self.trading.close_all_positions(cancel_orders=True)):  # 207: one status per position
                item = _model(raw, ClosePositionResponse)
                status, symbol = int(item.status or 0), str(item.symbol or "")
                if isinstance(item.body, AlpacaOrder):  # BTCUSD at the top, BTC/USD in the order (alpaca-py fixture)
                    order = self._order(item.body)
                    out.append(BulkResult(normalize(symbol, order.asset_class), status, order=order))
                else:
                    error = self._item_error(status, item.body.model_dump(), "close_all_positions")
                    out.append(BulkResult(symbol, status, error=error))
            return tuple(out)

        return self._call("close_all_positions", close)

    def _item_error(self, status: int, body: Any, operation: str) -> BrokerError:
        """The error one item of a 207 answer carries in its body."""
        code = body.get("code") if isinstance(body, dict) else None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        reason = classify(status, code if isinstance(code, int) else None, message)
        kind = "unauthorized" if reason == "unauthorized" else _kind_for_status(status)
        return BrokerError(kind, self._scrub(message or f"HTTP {status}"), status=status, operation=operation, reason=reason,
                           code=code if isinstance(code, int) else None)  # fmt: skip


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


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _activity(item: Any) -> NonTradeActivity | None:
    """One non-trade activity (trading-api.json NonTradeActivities), or None for one that moved no cash today:
    a trade, another type, a cancelled entry."""
    if not isinstance(item, dict) or item.get("activity_type") not in NON_TRADE_ACTIVITY_TYPES:
        return None
    if item.get("status") == "canceled":
        return None
    return NonTradeActivity(
        id=str(item.get("id", "")),
        activity_type=str(item["activity_type"]),
        net_amount=_required(item.get("net_amount"), "net_amount"),
        created_at=_timestamp(item.get("created_at")),
        date=str(item.get("date", "")),
        status=str(item.get("status", "executed")),
    )


def _on_day(activity: NonTradeActivity, day: date) -> bool:
    """Dated by its creation time in New York; by its `date` when it has none."""
    if activity.created_at is not None:
        return activity.created_at.astimezone(NEW_YORK).date() == day
    return activity.date[:10] == day.isoformat()


def _asset(a: Any) -> Asset:
    from alpaca.trading.models import Asset as AlpacaAsset

    a = _model(a, AlpacaAsset)
    asset_class = _enum_value(a.asset_class)
    return Asset(
        symbol=normalize(a.symbol, asset_class),
        asset_class=asset_class,
        exchange=_enum_value(a.exchange),
        status=_enum_value(a.status),
        tradable=bool(a.tradable),
        fractionable=bool(a.fractionable),
        marginable=bool(a.marginable),
        shortable=bool(a.shortable),
        min_order_size=_finite(a.min_order_size),
        min_trade_increment=_finite(a.min_trade_increment),
        price_increment=_finite(a.price_increment),
        attributes=tuple(a.attributes or ()),
    )


def _finite(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and math.isfinite(number) else None


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
