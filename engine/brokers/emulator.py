"""A local Alpaca emulator: the simulated exchange behind the subset of Alpaca's REST API the engine uses.

One `ThreadingHTTPServer` on 127.0.0.1 serves the trading API (/v2/account, /v2/orders, ...) and the data
APIs (/v2/stocks, /v1beta3/crypto, /v1beta1/options) on one origin, so the unmodified alpaca-py clients can
be pointed at it with `url_override` (reference/alpaca-api.md §5). JSON shapes follow alpaca-py's models:
money as strings on accounts and positions, RFC 3339 times with Z, real UUIDs, crypto positions as BTCUSD.

Fault injection: a queue of answers given before routing (or after processing, to reproduce a gateway timeout
after an order was accepted), hangs, and a log of every request; in process for tests, and over HTTP under
/__emulator/ for rehearsing failures against a running engine.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.brokers.base import Order, OrderRequest, Position
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.brokers.symbols import position_path_symbol

ADMIN_PREFIX = "/__emulator"


@dataclass
class Fault:
    """One scripted answer. `after=True` processes the request first, then answers with the fault."""

    status: int = 500
    body: str = '{"code":50010000,"message":"internal server error"}'
    content_type: str = "application/json"
    after: bool = False
    hang_seconds: float = 0.0
    path_prefix: str = ""  # only requests whose path starts with this take the fault
    method: str = ""  # ... and, when set, only requests with this method


@dataclass
class LoggedRequest:
    method: str
    requestline: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


def _ts(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _money(value: float) -> str:
    return f"{value:.10g}"


@dataclass
class Emulator:
    exchange: SimExchange
    key: str | None = None
    secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[LoggedRequest] = field(default_factory=list)
    rate_limit: int = 200

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self._minute: tuple[int, int] = (0, 0)
        self.account_id = str(uuid.UUID(int=self.exchange.seed, version=4))

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "emulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Emulator:
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alpaca-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run in the foreground until Ctrl-C (the `python -m engine emulator` command)."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()

    # --- JSON shapes ---------------------------------------------------------------------------------------

    def account_json(self) -> dict[str, Any]:
        a = self.exchange.account()
        return {
            "id": self.account_id,
            "account_number": "PA0EMULATOR1",
            "status": a.status,
            "currency": "USD",
            "cash": _money(a.cash),
            "buying_power": _money(a.buying_power),
            "equity": _money(a.equity),
            "last_equity": _money(a.last_equity),
            "portfolio_value": _money(a.equity),
            "trading_blocked": a.trading_blocked,
            "account_blocked": a.account_blocked,
            "transfers_blocked": False,
            "pattern_day_trader": False,
            "shorting_enabled": False,
            "multiplier": "1",
            "daytrade_count": 0,
            "options_trading_level": 2,
            "options_approved_level": 2,
            "created_at": "2024-01-02T00:00:00Z",
        }

    @staticmethod
    def _asset_id(symbol: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, symbol))

    def order_json(self, o: Order) -> dict[str, Any]:
        return {
            "id": o.id,
            "client_order_id": o.client_order_id,
            "created_at": _ts(o.created_at),
            "updated_at": _ts(o.created_at),
            "submitted_at": _ts(o.created_at),
            "filled_at": _ts(o.created_at) if o.status == "filled" else None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "asset_id": self._asset_id(o.symbol),
            "symbol": o.symbol,
            "asset_class": o.asset_class,
            "qty": _money(o.qty) if o.qty is not None else None,
            "notional": _money(o.notional) if o.notional is not None else None,
            "filled_qty": _money(o.filled_qty),
            "filled_avg_price": _money(o.filled_avg_price) if o.filled_avg_price is not None else None,
            "order_class": "simple",
            "type": o.order_type,
            "order_type": o.order_type,
            "side": o.side,
            "time_in_force": o.time_in_force,
            "limit_price": _money(o.limit_price) if o.limit_price else None,
            "stop_price": None,
            "status": o.status,
            "extended_hours": False,
            "legs": None,
        }

    def position_json(self, p: Position) -> dict[str, Any]:
        exchange = {"crypto": "CRYPTO", "us_option": ""}.get(p.asset_class, "NASDAQ")
        return {
            "asset_id": self._asset_id(p.symbol),
            "symbol": position_path_symbol(p.symbol),
            "exchange": exchange,
            "asset_class": p.asset_class,
            "qty": _money(p.qty),
            "qty_available": _money(p.qty),
            "avg_entry_price": _money(p.avg_entry_price),
            "side": "long" if p.qty >= 0 else "short",
            "market_value": _money(p.market_value),
            "cost_basis": _money(p.market_value - p.unrealized_pl),
            "unrealized_pl": _money(p.unrealized_pl),
            "current_price": _money(p.current_price),
        }

    def quote_json(self, symbol: str) -> dict[str, Any]:
        q = self.exchange.quote(symbol)
        return {"t": _ts(q.timestamp), "bp": q.bid, "bs": 1, "ap": q.ask, "as": 1, "bx": "V", "ax": "V", "c": ["R"], "z": "C"}

    def chain_json(self, underlying: str, query: dict[str, list[str]]) -> dict[str, Any]:
        today = self.exchange.clock.now().date()
        gte = query.get("expiration_date_gte", [None])[0]
        lte = query.get("expiration_date_lte", [None])[0]
        dte_min = (datetime.fromisoformat(gte).date() - today).days if gte else 0
        dte_max = (datetime.fromisoformat(lte).date() - today).days if lte else 60
        snapshots = {}
        for c in self.exchange.option_chain(underlying, dte_min, dte_max):
            t = _ts(c.quote_time)
            snapshots[c.symbol] = {
                "latestQuote": {"t": t, "bp": c.bid, "bs": 10, "bx": "C", "ap": c.ask, "as": 10, "ax": "C", "c": "A"},
                "latestTrade": {"t": t, "p": round((c.bid + c.ask) / 2, 2), "s": 1, "x": "C", "c": "I"},
                "impliedVolatility": c.implied_volatility,
                "greeks": {"delta": c.delta, "gamma": c.gamma, "rho": 0.01, "theta": c.theta, "vega": c.vega},
            }
        return {"snapshots": snapshots, "next_page_token": None}

    def clock_json(self) -> dict[str, Any]:
        c = self.exchange.market_clock()
        return {
            "timestamp": _ts(c.timestamp),
            "is_open": c.is_open,
            "next_open": _ts(c.next_open),
            "next_close": _ts(c.next_close),
        }

    # --- the emulator's own controls (loopback only), for rehearsing failures against a running engine -----

    def admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """POST /__emulator/faults [{status, body, after, hang_seconds, path_prefix, method}, ...] queues faults;
        GET /__emulator/faults lists them; DELETE clears them; GET /__emulator/requests is the request log."""
        if path == f"{ADMIN_PREFIX}/faults":
            if method == "POST":
                items = body if isinstance(body, list) else [body]
                try:
                    self.faults.extend(Fault(**item) for item in items)
                except TypeError as exc:
                    return 422, {"message": f"not a fault: {exc}"}
                return 200, {"queued": len(self.faults)}
            if method == "DELETE":
                self.faults.clear()
                return 200, {"queued": 0}
            return 200, [dataclasses.asdict(f) for f in self.faults]
        if path == f"{ADMIN_PREFIX}/requests" and method == "GET":
            return 200, [{"method": r.method, "path": r.path, "query": r.query, "body": r.body} for r in self.requests]
        return 404, {"message": "unknown emulator control"}

    # --- routing -------------------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in list(self.faults):
            if path.startswith(fault.path_prefix) and fault.method in ("", method):
                self.faults.remove(fault)
                return fault
        return None

    def rate_headers(self) -> dict[str, str]:
        now = self.exchange.clock.now()
        minute = int(now.timestamp() // 60)
        count = self._minute[1] + 1 if self._minute[0] == minute else 1
        self._minute = (minute, count)
        reset = (minute + 1) * 60
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - count, 0)),
            "X-RateLimit-Reset": str(reset),
        }

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        x = self.exchange
        symbols = [s for s in ",".join(query.get("symbols", [])).split(",") if s]
        if method == "GET":
            if path == "/v2/account":
                return 200, self.account_json()
            if path == "/v2/clock":
                return 200, self.clock_json()
            if path == "/v2/positions":
                return 200, [self.position_json(p) for p in x.position_views()]
            if path == "/v2/orders":
                status = query.get("status", ["open"])[0]
                limit = int(query.get("limit", ["50"])[0])
                orders = x.open_orders() if status == "open" else [x.order_view(o) for o in x.orders.values()]
                return 200, [self.order_json(o) for o in orders[:limit]]
            if path == "/v2/orders:by_client_order_id":
                return 200, self.order_json(x.find_by_client_id(query.get("client_order_id", [""])[0]))
            if m := re.fullmatch(r"/v2/orders/([0-9a-f-]{36})", path):
                return 200, self.order_json(x.find(m.group(1)))
            if path == "/v2/stocks/quotes/latest" or path == "/v1beta3/crypto/us/latest/quotes":
                return 200, {"quotes": {s: self.quote_json(s) for s in symbols}}
            if m := re.fullmatch(r"/v1beta1/options/snapshots/([A-Z.]+)", path):
                return 200, self.chain_json(m.group(1), query)
        if method == "POST" and path == "/v2/orders":
            return 200, self.order_json(x.submit(_order_request(body)))
        if method == "DELETE":
            if m := re.fullmatch(r"/v2/orders/([0-9a-f-]{36})", path):
                x.cancel(m.group(1))
                return 204, None
            if path == "/v2/orders":
                return 207, [{"id": oid, "status": status} for oid, status in x.cancel_all()]
            if path == "/v2/positions":
                return 207, [{"symbol": s, "status": st, "body": {}} for s, st in x.close_all()]
            if m := re.fullmatch(r"/v2/positions/([A-Z0-9]+)", path):
                symbol = _position_symbol(m.group(1), x)
                return 200, self.order_json(x.close_position(symbol))
        return 404, {"code": 40410000, "message": "endpoint not found"}


def _order_request(body: Any) -> OrderRequest:
    if not isinstance(body, dict):
        raise SimReject(422, 40010000, "request body must be a JSON object")
    try:
        return OrderRequest(
            symbol=str(body["symbol"]),
            side=body["side"],
            client_order_id=str(body.get("client_order_id") or uuid.uuid4()),
            order_type=body.get("type", "market"),
            time_in_force=body.get("time_in_force", "day"),
            qty=float(body["qty"]) if body.get("qty") is not None else None,
            notional=float(body["notional"]) if body.get("notional") is not None else None,
            limit_price=float(body["limit_price"]) if body.get("limit_price") is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SimReject(422, 40010000, f"invalid order: {exc}") from None


def _position_symbol(path_symbol: str, exchange: SimExchange) -> str:
    for symbol in exchange.positions:
        if position_path_symbol(symbol) == path_symbol:
            return symbol
    return path_symbol


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
        return

    def _handle(self, method: str) -> None:
        emulator = self.emulator
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {k: v for k, v in self.headers.items() if k.lower() != "apca-api-secret-key"}
        if path.startswith(ADMIN_PREFIX):  # the emulator's own controls: not logged, never faulted
            return self._send(*emulator.admin(method, path, body))
        emulator.requests.append(LoggedRequest(method, self.requestline, path, query, body, headers))
        if self.requestline.split(" ")[1].startswith("//"):  # a trailing slash in the base URL (see the reference)
            return self._send(404, {"code": 40410000, "message": "double slash in path"})
        if emulator.key is not None and not path.startswith("/v1beta3/crypto") and not self._authorized():
            return self._send(401, {"code": 40110000, "message": "request is not authorized"})
        fault = emulator.take_fault(method, path)
        if fault and fault.hang_seconds:
            emulator._release.wait(fault.hang_seconds)
        if fault and not fault.after and fault.status:
            return self._send_raw(fault.status, fault.body, fault.content_type)
        try:
            with emulator.exchange.lock:
                status, payload = emulator.route(method, path, query, body)
        except SimReject as exc:
            status, payload = exc.status, {"code": exc.code, "message": exc.message}
        if fault and fault.after and fault.status:
            return self._send_raw(fault.status, fault.body, fault.content_type)
        self._send(status, payload)

    def _authorized(self) -> bool:
        key, secret = self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")
        return key == self.emulator.key and secret == self.emulator.secret

    def _send(self, status: int, payload: Any) -> None:
        self._send_raw(status, "" if payload is None else json.dumps(payload), "application/json")

    def _send_raw(self, status: int, text: str, content_type: str) -> None:
        data = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.path.startswith("/v2/") and not self.path.startswith("/v2/stocks"):
                for name, value in self.emulator.rate_headers().items():
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
