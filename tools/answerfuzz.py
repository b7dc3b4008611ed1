"""A seeded fuzzer of the broker's JSON answers, through the whole engine on the Alpaca path.

The real `Engine` runs on the Alpaca adapter (engine/brokers/alpaca.py, the real alpaca-py clients) against the
project's emulator on 127.0.0.1 (engine/brokers/emulator.py), tick by tick on a `ManualClock`, over the shipped
config/, machines/ and rules/ (read only), with a state file and a log in a temporary folder. At seeded random
ticks one answer's JSON is mutated on its way out (`Fault.rewrite`): the account, the positions, the open orders,
one order (a lookup), the clock, the assets, the latest stock and crypto quotes, the option chain snapshots and
contracts, an order POST's answer, a cancel's answer, a position close's answer. The mutations:

- a field dropped, made null, given a wrong type (string, number, bool, object, list), an extreme or negative
  number, an unknown enum value, a timestamp in an odd form (no zone, far past or future, nanoseconds, a space,
  epoch seconds), the id of another order, an extra field;
- a list doubled, emptied, cut, or one entry twice (the same order twice, a position twice);
- the whole body replaced (HTML, nothing, a JSON scalar, a cut JSON text, a list for an object or the reverse);
- the HTTP status swapped (200 <-> 201/204/404/422/429/500, with the real body, an odd one or none).

The engine is also restarted (a new Engine on the same state file and log, a new client) at seeded ticks. The
last `--quiet` ticks throw nothing. After every tick, the invariants (each a `check_*` below):

- no exception escapes the tick, none is caught at its boundary, and no API call raises anything but a
  BrokerError (a bad answer is a BrokerError, then a halt or a deferred step: never a traceback);
- an answer that cannot be read (a body replaced, an error status, a required field of the account, a position,
  an order or the clock dropped, null or of a type no reader can take) makes its call fail: it is never read as
  a good answer, and never as a default;
- no entry is sent in a tick whose snapshot was incomplete (fail closed: unknown means halt);
- no client_order_id is sent twice (but the resend after a restart the engine does by design, said in the log);
- a halt ends only by its cooloff (at or after its `until`): one recorded stays, across restarts too, and a system
  halt in force holds the system machine `halted`;
- the state file opens and passes SQLite's quick_check; the JSONL log parses line by line; no key or secret is in
  the log or the state file;
- after the faults stop, the engine reads good answers again: the last ticks' snapshots are complete and their
  calls all succeed.

A violation prints the seed, the tick, the mutation and the one-line command that replays it; the exit status
is then 1. The schedule and each mutation are the seed's alone:

    PYTHONPATH=. .venv/bin/python tools/answerfuzz.py --seed 3 --ticks 300
    PYTHONPATH=. .venv/bin/python tools/answerfuzz.py --seeds 1-200 --ticks 300   # one core, a few s a seed

docs/alpaca.md ("Fuzzing the answers") says more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _folder in (ROOT, ROOT / "tools"):  # run as a script from anywhere: the engine and fuzzkit beside this file
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from fuzzkit import LogTail, RecordingBroker, seed_folder, seed_range  # noqa: E402

from engine.brokers.alpaca import AlpacaAPI  # noqa: E402
from engine.brokers.base import BrokerError, Order, OrderRequest  # noqa: E402
from engine.brokers.emulator import Emulator, Fault  # noqa: E402
from engine.brokers.ratelimit import TokenBucket  # noqa: E402
from engine.brokers.sim.exchange import SimExchange  # noqa: E402
from engine.core.clock import ManualClock  # noqa: E402
from engine.core.journal import Journal  # noqa: E402
from engine.core.store import SYSTEM_SCOPE, StateStore  # noqa: E402
from engine.trading.engine import Engine  # noqa: E402
from engine.trading.runner import operator_resume  # noqa: E402
from engine.validate import Report, load_valid  # noqa: E402

OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 New York
KEY = "PKFUZZKEY0123456789"
SECRET = "fuzzsecret0123456789abcdefghijklmnopqrst"


@dataclass(frozen=True)
class Target:
    """One kind of answer: where it is asked, and the fields a reader cannot do without (dotted, `*` any item)."""

    name: str
    method: str
    path: str  # the exact path, or a prefix when `prefix`
    prefix: bool = False
    required: tuple[str, ...] = ()


POSITION_FIELDS = ("symbol", "qty", "side", "avg_entry_price", "asset_class")
QUOTE_FIELDS = ("quotes.*.bp", "quotes.*.ap", "quotes.*.t")
ORDER_FIELDS = ("id", "client_order_id", "symbol", "side", "status", "filled_qty", "created_at")
TARGETS = (
    Target("account", "GET", "/v2/account", required=("cash", "equity", "buying_power", "last_equity", "status")),
    Target("positions", "GET", "/v2/positions", required=tuple(f"*.{f}" for f in POSITION_FIELDS)),
    Target("open orders", "GET", "/v2/orders", required=tuple(f"*.{f}" for f in ORDER_FIELDS)),
    Target("order by client id", "GET", "/v2/orders:by_client_order_id", required=ORDER_FIELDS),
    Target("order by id", "GET", "/v2/orders/", prefix=True, required=ORDER_FIELDS),
    Target("clock", "GET", "/v2/clock", required=("is_open", "next_open", "next_close", "timestamp")),
    Target("assets", "GET", "/v2/assets", prefix=True),
    Target("stock quotes", "GET", "/v2/stocks/quotes/latest", required=QUOTE_FIELDS),
    Target("crypto quotes", "GET", "/v1beta3/crypto/us/latest/quotes", required=QUOTE_FIELDS),
    Target("option snapshots", "GET", "/v1beta1/options/snapshots/", prefix=True),
    Target("option contracts", "GET", "/v2/options/contracts", prefix=True),
    Target("order POST", "POST", "/v2/orders", required=ORDER_FIELDS),
    Target("cancel", "DELETE", "/v2/orders/", prefix=True),
    Target("position close", "DELETE", "/v2/positions/", prefix=True, required=ORDER_FIELDS),
)  # fmt: skip
# drawn more often: the answers of every tick
WEIGHTS = {"account": 4, "positions": 4, "open orders": 4, "stock quotes": 3, "crypto quotes": 3, "order POST": 4}
VALUE_KINDS = ("drop", "null", "wrong type", "extreme", "enum", "timestamp", "other id", "extra field")
LIST_KINDS = ("doubled", "emptied", "cut", "duplicate")
BODY_KINDS = ("html", "empty", "scalar", "cut json", "other shape")
# Answers well formed, each field readable, that say something the real API can plausibly send and that cannot be
# true together or with an earlier answer: an order whose status moves back (filled, then new again), a fill far from
# any quote, a position whose qty's sign disagrees with its side, an account whose equity is not its cash and
# market values summed. Drawn (by `meaning`) in place of a value mutation of a target that has them, from a stream
# of their own: with `--meaning 0` a seed replays as before these were added.
ORDER_MEANINGS = ("status backwards", "fill far")
MEANINGS = {
    "account": ("equity off",),
    "positions": ("sign flipped",),
    "open orders": ORDER_MEANINGS,
    "order by client id": ORDER_MEANINGS,
    "order by id": ORDER_MEANINGS,
    "order POST": ORDER_MEANINGS,
    "position close": ORDER_MEANINGS,
}
MEANING_KINDS = frozenset(k for kinds in MEANINGS.values() for k in kinds)
STATUSES = (201, 204, 404, 422, 429, 500)
WRONG_TYPES: tuple[Any, ...] = ("abc", 12345, True, False, {}, [], "12.5", {"a": 1}, [1, 2])
EXTREMES: tuple[Any, ...] = (1e308, -1e308, 1e-300, 9.99e15, -5, 0, "-1", "1e400", "-0", "NaN", "Infinity", -1)
TIMESTAMPS = (
    "2026-11-23T15:00:00",  # no zone
    "1970-01-01T00:00:00Z",
    "1900-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-11-23T15:00:00.123456789123Z",  # more than nanoseconds
    "2026-11-23 15:00:00+00:00",
    "2026-11-23T15:00:00+14:00",
    "2026-13-45T99:99:99Z",
    1763910000,
)
ODD_BODIES = ("", "<html><body>502 Bad Gateway</body></html>", "null", '{"code": 1}', "not json")
# What a reader cannot take as a value, whatever the field: an answer holding one where a required field is must
# fail its call (a BrokerError), never be read with a default.
UNREADABLE: tuple[Any, ...] = (None, True, False, {}, [], {"a": 1}, [1, 2], "abc")


@dataclass
class Mutation:
    """One answer mutated: what was asked, when, and (once served) what was done to it."""

    tick: int
    target: Target
    kind: str
    done: str = ""  # said when served
    served_at: int | None = None
    unreadable: bool = False  # the answer as served cannot be read: its call must fail

    def __str__(self) -> str:
        at = f", served at tick {self.served_at}" if self.served_at is not None else ", not served"
        return f"tick {self.tick}: {self.target.method} {self.target.name}: {self.kind} {self.done}".rstrip() + at


def _paths(node: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Every dotted path under `node` (list items by index), a few levels deep."""
    out: list[str] = []
    if depth > 4:
        return out
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        path = f"{prefix}{key}"
        out.append(path)
        out += _paths(child, path + ".", depth + 1)
    return out


def _resolve(node: Any, pattern: str, rng: random.Random) -> str | None:
    """`pattern`'s `*` replaced by one present key or index; None when the answer has no such path."""
    parts, out = pattern.split("."), []
    for part in parts:
        if part == "*":
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                return None
            part = str(rng.choice(keys))
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
        out.append(part)
    return ".".join(out)


def _locate(root: Any, path: str) -> tuple[Any, Any]:
    parent: Any = None
    key: Any = None
    node = root
    for part in path.split("."):
        parent, key = node, int(part) if isinstance(node, list) else part
        node = node[key]
    return parent, key


def _looks_like_time(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] in ("T", " ")


class Mutator:
    """Builds the `Fault` of a mutation: its `rewrite` edits the real answer, drawn from the mutation's own seed."""

    def __init__(self, fuzz: AnswerFuzz, mutation: Mutation, seed: str):
        self.fuzz, self.mutation, self.rng = fuzz, mutation, random.Random(seed)

    def fault(self) -> Fault:
        t = self.mutation.target
        prefix, exact = (t.path, "") if t.prefix else ("", t.path)
        return Fault(method=t.method, path_prefix=prefix, path_equals=exact, rewrite=self.rewrite)

    def rewrite(self, status: int, payload: Any) -> tuple[int, str]:
        m = self.mutation
        m.served_at = self.fuzz.tick_no
        try:
            status, text, m.done, m.unreadable = self._mutate(status, payload)
        except Exception as exc:  # the fuzzer's own bug: say it, send the answer unchanged
            m.done = f"(mutation failed: {type(exc).__name__}: {exc})"
            self.fuzz.fail(f"the fuzzer's own mutation failed: {m}")
            return status, "" if payload is None else json.dumps(payload)
        self.fuzz.served.append(m)
        return status, text

    def _mutate(self, status: int, payload: Any) -> tuple[int, str, str, bool]:
        rng, kind = self.rng, self.mutation.kind
        text = "" if payload is None else json.dumps(payload)
        error = status >= 400
        if kind == "status":
            new = rng.choice([s for s in (200, *STATUSES) if s != status])
            body = rng.choice([text, *ODD_BODIES]) if new != 204 else ""
            # a 201 or 200 with the real body is still the answer; anything else is not
            readable = new in (200, 201) and body == text and not error
            # A cancel's success is its status (204, no body; reference/alpaca-api.md): no reader reads a cancel's
            # body (alpaca-py's cancel_order_by_id drops it), as the body kinds above already assume for an answer
            # with none. A 2xx is then a cancel taken, whatever the real answer or the body, and no reader can tell it
            # from one: its call is not failed for succeeding (false alarms: seeds 1057, 1064, 1195).
            readable = readable or (self.mutation.target.name == "cancel" and new in (200, 201, 204))
            return new, body, f"status {status} -> {new} with {body[:40]!r}", not readable
        if kind in BODY_KINDS:
            if kind == "html":
                body = "<!DOCTYPE html><html><head><title>Error</title></head><body>oops</body></html>"
            elif kind == "empty":
                body = ""
            elif kind == "scalar":
                body = rng.choice(["null", "0", '"x"', "true", "1e999", "-1"])
            elif kind == "cut json":
                body = text[: rng.randint(1, max(1, len(text) - 1))] if len(text) > 1 else "{"
            else:
                body = "{}" if isinstance(payload, list) else "[]"
                # an empty list for an empty list, or an object for an answer with no body, may still be read
                if payload in ([], None):
                    return status, body, f"body {text[:20]!r} -> {body!r}", False
            unreadable = not (error or payload is None)  # an error's body or a 204's: the status says it
            return status, body, f"body -> {body[:40]!r}", unreadable
        if not isinstance(payload, (dict, list)) or error:
            return status, text, f"(an answer {status} with nothing to edit: sent as it was)", False
        out = json.loads(text)
        if kind in LIST_KINDS:
            return status, *self._list(out, kind)
        if kind in MEANING_KINDS:
            return status, *self._meaning(out, kind)
        return status, *self._value(out, kind)

    def _list(self, out: Any, kind: str) -> tuple[str, str, bool]:
        rng = self.rng
        lists = [p for p in ["", *_paths(out)] if isinstance(out if p == "" else _locate(out, p)[0][_locate(out, p)[1]], list)]
        if not lists:
            return json.dumps(out), f"{kind}: no list in the answer", False
        path = rng.choice(lists)
        items = out if path == "" else _locate(out, path)[0][_locate(out, path)[1]]
        if kind == "doubled":
            items.extend(json.loads(json.dumps(items)))
        elif kind == "emptied":
            items.clear()
        elif kind == "cut":
            del items[len(items) // 2 :]
        elif items:
            items.insert(rng.randrange(len(items) + 1), json.loads(json.dumps(rng.choice(items))))
        # the same order or position twice is an answer no reader can take as it is
        twice = kind in ("doubled", "duplicate") and bool(items) and self.mutation.target.name in ("positions", "open orders")
        return json.dumps(out), f"{kind} list {path or '(the body)'} ({len(items)} items now)", twice

    def _value(self, out: Any, kind: str) -> tuple[str, str, bool]:
        rng, target = self.rng, self.mutation.target
        paths = _paths(out)
        required = [p for p in (_resolve(out, r, rng) for r in target.required) if p is not None]
        if kind == "extra field":
            objects = [""] + [p for p in paths if isinstance(_get(out, p), dict)]
            where = rng.choice(objects)
            node = out if where == "" else _get(out, where)
            if not isinstance(node, dict):
                return json.dumps(out), "extra field: no object", False
            node["zz_extra_" + str(rng.randint(0, 99))] = rng.choice(["x", 1, None, {"nested": [1]}, []])
            return json.dumps(out), f"extra field in {where or '(the body)'}", False
        if kind == "timestamp":
            candidates = [p for p in paths if _looks_like_time(_get(out, p))]
        elif kind == "other id":
            candidates = [p for p in paths if p.rsplit(".", 1)[-1] in ("id", "client_order_id", "replaced_by", "replaces")]
        elif kind == "enum":
            candidates = [p for p in paths if isinstance(_get(out, p), str) and not _looks_like_time(_get(out, p))]
        else:
            candidates = paths
        if not candidates:
            return json.dumps(out), f"{kind}: nothing to edit", False
        # half the time one of the fields a reader cannot do without, when the answer has it
        pool = [p for p in required if p in candidates]
        path = rng.choice(pool) if pool and rng.random() < 0.5 else rng.choice(candidates)
        parent, key = _locate(out, path)
        before = parent[key]
        if kind == "drop":
            if isinstance(parent, list):
                del parent[key]
            else:
                del parent[key]
            value: Any = "(dropped)"
        else:
            if kind == "null":
                value = None
            elif kind == "wrong type":
                value = rng.choice([v for v in WRONG_TYPES if type(v) is not type(before)])
            elif kind == "extreme":
                value = rng.choice(EXTREMES)
            elif kind == "enum":
                value = rng.choice(["zz_unknown", "", "FILLED", "new ", "\u00e9t\u00e9"])
            elif kind == "timestamp":
                value = rng.choice(TIMESTAMPS)
            else:  # another order's id or client_order_id
                value = self.fuzz.other_id(str(before), path.rsplit(".", 1)[-1])
            parent[key] = value
        unreadable = path in required and (kind == "drop" or _unreadable(value))
        return json.dumps(out), f"{path}: {before!r} -> {value!r}"[:200], unreadable

    def _meaning(self, out: Any, kind: str) -> tuple[str, str, bool]:
        """One of the MEANINGS: every field stays readable, what the answer says together is wrong."""
        rng = self.rng
        items = out if isinstance(out, list) else [out]
        objects = [o for o in items if isinstance(o, dict)]
        if kind == "equity off":
            account = objects[0] if objects else {}
            try:
                equity = float(account["equity"])
            except (KeyError, TypeError, ValueError):
                return json.dumps(out), "equity off: no equity to move", False
            factor = rng.choice([0.5, 0.7, 1.4, 3.0])
            account["equity"] = f"{equity * factor:.2f}"
            # the adapter holds equity to cash + long_market_value + short_market_value when both values are given
            held = all(isinstance(account.get(k), str) for k in ("cash", "long_market_value", "short_market_value"))
            return json.dumps(out), f"equity {equity:g} -> {account['equity']} (x{factor:g})", held and equity > 100
        if kind == "sign flipped":
            if not objects:
                return json.dumps(out), "sign flipped: no position", False
            position = rng.choice(objects)
            qty, side = str(position.get("qty", "")), position.get("side")
            if rng.random() < 0.5:  # the qty's sign flipped, the side kept
                position["qty"] = qty[1:] if qty.startswith("-") else "-" + qty
                done = f"{position.get('symbol')}: qty {qty} -> {position['qty']} ({side})"
                # a long with a negative qty says two things at once; a short's sign comes from its side
                return json.dumps(out), done, side == "long" and position["qty"].startswith("-") and float(qty) != 0
            position["side"] = "short" if side == "long" else "long"  # the side flipped, the qty kept
            done = f"{position.get('symbol')}: side {side} -> {position['side']} (qty {qty})"
            return json.dumps(out), done, position["side"] == "long" and qty.startswith("-")
        orders = [o for o in objects if "status" in o]
        if kind == "status backwards":
            moved = [o for o in orders if o.get("status") in ("filled", "partially_filled", "canceled", "expired", "accepted")]
            if not moved:
                return json.dumps(out), "status backwards: no order past new", False
            order = rng.choice(moved)
            before = order["status"]
            order["status"] = rng.choice(["new", "pending_new"] if before != "accepted" else ["pending_new"])
            return json.dumps(out), f"{order.get('client_order_id')}: status {before} -> {order['status']}", False
        filled = [o for o in orders if o.get("filled_avg_price") not in (None, "", "0")]
        if not filled:
            return json.dumps(out), "fill far: no fill", False
        order = rng.choice(filled)
        before = order["filled_avg_price"]
        factor = rng.choice([0.1, 0.5, 2.0, 10.0])
        order["filled_avg_price"] = f"{float(before) * factor:.4f}"
        return json.dumps(out), f"{order.get('client_order_id')}: filled_avg_price {before} -> {order['filled_avg_price']}", False


def _get(root: Any, path: str) -> Any:
    parent, key = _locate(root, path)
    return parent[key]


def _unreadable(value: Any) -> bool:
    return any(type(value) is type(u) and value == u for u in UNREADABLE)


class Crash(BaseException):
    """The process dies here (kill -9): no `except Exception` of the engine catches it, nothing after it runs."""


@dataclass
class CheckedAPI:
    """The real AlpacaAPI: every call counted, and a call that was served an unreadable answer must fail. A crash
    armed at this tick's Nth call kills the process there, before or after the call reached the broker."""

    api: AlpacaAPI
    fuzz: AnswerFuzz
    failed: list[str] = field(default_factory=list)  # this tick's failed calls
    calls: int = 0
    crash_at: int | None = None
    crash_after: bool = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.api, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            fuzz = self.fuzz
            served = len(fuzz.served)
            self.calls += 1
            dying = self.crash_at == self.calls
            if dying and not self.crash_after:
                raise Crash(f"before {name}")
            try:
                result = target(*args, **kwargs)
            except BrokerError as exc:
                self.failed.append(f"{name}: {exc.kind}")
                raise
            except Exception as exc:
                fuzz.fail(f"{name} raised {type(exc).__name__}: {exc} (not a BrokerError)")
                raise
            for m in fuzz.served[served:]:
                if m.unreadable:
                    fuzz.fail(f"{name} read an unreadable answer as good: {m}")
            if dying:
                raise Crash(f"after {name}")
            return result

        return call


_REPORTS: dict[Path, Report] = {}


def _load(config_dir: Path) -> Report:
    if config_dir not in _REPORTS:
        _REPORTS[config_dir] = load_valid(config_dir, ROOT / "machines", ROOT / "rules")
    return _REPORTS[config_dir]


@dataclass
class AnswerFuzz:
    seed: int
    ticks: int
    root: Path
    rate: float = 0.15
    quiet: int = 40  # the last ticks, with no mutation: the engine must read good answers again
    meaning: float = 0.25  # the share of value mutations made one of the MEANINGS, where the target has one
    config_dir: Path = ROOT / "config"
    violations: list[str] = field(default_factory=list)
    history: list[Mutation] = field(default_factory=list)
    served: list[Mutation] = field(default_factory=list)
    tick_no: int = 0
    entries: int = 0
    restarts: int = 0
    resumes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    engine: Engine = field(init=False)
    emulator: Emulator = field(init=False)
    api: CheckedAPI = field(init=False)
    broker: RecordingBroker = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        minutes = self.rng.choice([0, 5, 60, 200, 370])
        self.clock = ManualClock(OPEN + timedelta(minutes=minutes))
        self.exchange = SimExchange(self.clock, seed=7)
        self.db, self.log = self.root / "state.db", self.root / "app.jsonl"
        self.log_tail = LogTail(self.log)
        self.report = _load(self.config_dir)
        self.sent: set[str] = set()
        real_submit = self.exchange.submit

        def submit(request: OrderRequest) -> Order:
            self.before_post(request)
            order = real_submit(request)
            self.sent.add(request.client_order_id)
            return order

        self.exchange.submit = submit  # type: ignore[assignment,method-assign]

    # --- the parts ------------------------------------------------------------------------------------------

    def fail(self, what: str) -> None:
        self.violations.append(f"tick {self.tick_no} ({self.clock.now().isoformat()}): {what}")

    def build(self) -> Engine:
        api = AlpacaAPI(KEY, SECRET, paper=True, api_base_url=self.emulator.url, data_base_url=self.emulator.url,
                        timeout_seconds=2.0, bucket=TokenBucket(190, self.clock), feed="iex",
                        options_feed="indicative", clock=self.clock)  # fmt: skip
        self.api = CheckedAPI(api, self)
        self.broker = RecordingBroker(self.api, self.clock)
        report = self.report
        assert report.config is not None and report.book is not None
        journal = Journal(self.log, self.clock, (KEY, SECRET))
        return Engine(report.config, report.book, report.machines, self.broker, StateStore(self.db), journal, self.clock)

    def other_id(self, value: str, key: str) -> str:
        """Another order's id (or client_order_id): one the exchange has, else a made-up one."""
        orders = self.exchange.orders.values()
        ids = sorted({(o.request.client_order_id if key == "client_order_id" else o.id) for o in orders} - {value})
        made_up = "zz-other-order" if key == "client_order_id" else "00000000-0000-4000-8000-000000000000"
        return self.rng.choice(ids) if ids else made_up

    def before_post(self, request: OrderRequest) -> None:
        """At the moment an order reaches the broker: never twice, and an entry only on a complete snapshot."""
        cid = request.client_order_id
        if cid in self.sent and not self.resent_by_design(cid):
            self.fail(f"client_order_id {cid} sent again after the broker took it")
        row = self.engine.store.order(cid)
        if row is None:
            self.fail(f"order {cid} sent with no intent in the state file")
            return
        if row.purpose != "entry":
            return
        self.entries += 1
        first = self.broker.first
        if first is None or not first.complete:
            said = [f"{e.operation}: {e.kind}" for e in first.errors] if first else ["no snapshot"]
            self.fail(f"entry {cid} sent in a tick whose snapshot failed ({said})")
        now = self.clock.now()
        halts = [h for h in self.engine.store.halts(open_only=True) if h.in_force(now) and h.scope in (SYSTEM_SCOPE, row.bot_id)]
        if halts:
            self.fail(f"entry {cid} sent under the halt {halts[-1].reason!r}")

    def resent_by_design(self, client_order_id: str) -> bool:
        self.check_log()
        said = [e.get("action") for e in self.events if e.get("event") == "order" and e.get("client_order_id") == client_order_id]
        return bool(said) and said[-1] in ("resend_after_restart", "send_before_reconciled")

    # --- the schedule ---------------------------------------------------------------------------------------

    def inject(self) -> None:
        """This tick's mutation and restart, if any (the seed's alone)."""
        rng = self.rng
        # a mutation not served within 30 ticks (an order POST none came for) is withdrawn
        self.emulator.faults = type(self.emulator.faults)(
            f
            for f in self.emulator.faults
            if getattr(f.rewrite, "__self__", None) is None or f.rewrite.__self__.mutation.tick + 30 > self.tick_no  # type: ignore[union-attr]
        )
        if self.tick_no >= self.ticks - self.quiet:
            self.emulator.faults.clear()
            return
        if rng.random() < 0.02:
            self.restart()
        elif rng.random() < 0.02:  # the process is killed at one of the coming tick's calls
            self.api.crash_at, self.api.crash_after = rng.randint(1, 12), rng.random() < 0.5
        if rng.random() < 0.03 and self.engine.store.halts(open_only=True):
            self.resume()
        if rng.random() >= self.rate:
            return
        target = rng.choices(TARGETS, weights=[WEIGHTS.get(t.name, 1) for t in TARGETS])[0]
        family = rng.choices(["value", "list", "body", "status"], weights=[8, 2, 2, 2])[0]
        kinds = {"value": VALUE_KINDS, "list": LIST_KINDS, "body": BODY_KINDS, "status": ("status",)}[family]
        kind = rng.choice(kinds)
        drawn = random.Random(f"{self.seed}/meaning/{len(self.history)}")  # its own stream: the schedule stays
        if family == "value" and target.name in MEANINGS and drawn.random() < self.meaning:
            kind = drawn.choice(MEANINGS[target.name])
        mutation = Mutation(self.tick_no, target, kind)
        self.history.append(mutation)
        self.emulator.faults.append(Mutator(self, mutation, f"{self.seed}/{len(self.history)}").fault())

    def resume(self) -> None:
        """The operator's `resume`, on its own connection as the command opens it: every halt ended."""
        outside = StateStore(self.db)
        try:
            operator_resume(outside, Journal(self.log, self.clock), self.clock.now())
        finally:
            outside.close()
        self.resumes += 1

    def restart(self, *, crashed: bool = False) -> None:
        """A new engine on the same state file and log, with a new client (the process ended; the broker did not).
        A crashed one's unwritten log is lost."""
        before = {h.id for h in self.engine.store.halts(open_only=True) if h.in_force(self.clock.now())}
        if crashed:
            self.engine.journal.discard()
        self.engine.journal.close()
        self.engine.store.close()
        self.engine = self.build()
        self.restarts += 1
        after = {h.id for h in self.engine.store.halts(open_only=True) if h.in_force(self.clock.now())}
        if before - after:
            self.fail(f"halts {sorted(before - after)} in force before a restart are not after it")

    # --- the run --------------------------------------------------------------------------------------------

    def run(self) -> None:
        with Emulator(self.exchange, key=KEY, secret=SECRET) as self.emulator:
            self.engine = self.build()
            try:
                interval = self.engine.config.settings.runner.loop_interval_seconds
                for tick_no in range(self.ticks):
                    self.tick_no = tick_no
                    self.inject()
                    self.one_tick()
                    self.clock.advance(interval)
                    if self.violations:
                        break
                self.check_files(final=True)
            finally:
                with contextlib.suppress(Exception):
                    self.engine.journal.close()
                with contextlib.suppress(Exception):
                    self.engine.store.close()

    def one_tick(self) -> None:
        self.broker.first = None
        self.api.failed, self.api.calls = [], 0
        try:
            report = self.engine.tick()
        except Crash:
            self.restart(crashed=True)
            return
        except Exception as exc:
            self.fail(f"the tick raised {type(exc).__name__}: {exc}")
            return
        finally:
            self.api.crash_at = None
        if report.error is not None:
            self.fail(f"an exception was caught at the tick boundary: {report.error}")
        self.check_halts()
        self.check_log()
        if self.tick_no % 25 == 0:
            self.check_files()
        if self.tick_no >= self.ticks - 10 and (self.api.failed or (self.broker.first and not self.broker.first.complete)):
            first = self.broker.first
            said: tuple[BrokerError, ...] = first.errors if first else ()
            errors = [f"{e.operation}: {e.kind}: {e.message}"[:160] for e in said]
            self.fail(f"the faults stopped {self.quiet - (self.ticks - self.tick_no)} ticks ago and reads still fail: "
                      f"{self.api.failed or errors}")  # fmt: skip

    # --- the checks -----------------------------------------------------------------------------------------

    def check_halts(self) -> None:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT id, scope, reason, until, ended_at, ended_by FROM halts").fetchall()
        for halt_id, scope, reason, until, ended_at, ended_by in rows:
            if ended_at is None:
                continue
            early = until is None or datetime.fromisoformat(ended_at) < datetime.fromisoformat(until)
            if ended_by != "operator" and (ended_by != "cooloff" or early):
                self.fail(f"halt {halt_id} ({scope}: {reason}) ended by {ended_by!r} at {ended_at}, until {until}")
        now = self.clock.now()
        system = [h for h in self.engine.store.halts(open_only=True) if h.scope == SYSTEM_SCOPE and h.in_force(now)]
        if system and self.engine.system.state != "halted":
            self.fail(f"a system halt ({system[-1].reason}) is in force and the system machine is {self.engine.system.state}")

    def check_log(self) -> None:
        """Every whole line of the log parses and is an event, read from where the last check stopped; no key."""
        self.events += self.log_tail.read(self.fail, (KEY, SECRET))

    def check_files(self, *, final: bool = False) -> None:
        """The state file opens read-only and passes quick_check; no key in it (its WAL included)."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as exc:
            self.fail(f"the state file does not open: {exc}")
            return
        if verdict != "ok":
            self.fail(f"the state file fails quick_check: {verdict}")
        for path in (self.db, self.db.with_name(self.db.name + "-wal")):
            if path.exists() and (KEY.encode() in (data := path.read_bytes()) or SECRET.encode() in data):
                self.fail(f"{path.name} holds a key")
        if final:
            self.engine.journal.flush()
            self.check_log()


def run_seed(
    seed: int, ticks: int, *, rate: float = 0.15, quiet: int = 40, meaning: float = 0.25, keep: Path | None = None
) -> AnswerFuzz:
    """One seed's run; its `violations` are empty when every invariant held."""
    with seed_folder(keep, seed, "answerfuzz") as root:
        fuzz = AnswerFuzz(seed, ticks, root, rate=rate, quiet=min(quiet, ticks), meaning=meaning)
        fuzz.run()
    return fuzz


def describe(fuzz: AnswerFuzz) -> str:
    lines = [f"seed {fuzz.seed}: {v}" for v in fuzz.violations]
    lines.append(
        f"reproduce: python tools/answerfuzz.py --seed {fuzz.seed} --ticks {fuzz.ticks} --rate {fuzz.rate:g} --quiet {fuzz.quiet}"
        f" --meaning {fuzz.meaning:g}"
    )
    served = [m for m in fuzz.history if m.served_at is not None]  # a bad id served early shows late: all of them
    lines.append("the mutations served (tick: answer: mutation):" if served else "no mutation served")
    lines += [f"  {m}" for m in served]
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="one seed")
    parser.add_argument("--seeds", help="a range of seeds, e.g. 1-200")
    parser.add_argument("--ticks", type=int, default=300, help="ticks a seed (default 300: 25 simulated minutes)")
    parser.add_argument("--rate", type=float, default=0.15, help="the chance of a mutation at each tick (default 0.15)")
    parser.add_argument("--quiet", type=int, default=40, help="the last ticks with no mutation (default 40)")
    said = "the share of value mutations that say something false but readable (default 0.25; 0: as before)"
    parser.add_argument("--meaning", type=float, default=0.25, help=said)
    parser.add_argument("--keep", type=Path, help="keep each seed's state file and log under this folder")
    args = parser.parse_args(argv)
    if (args.seed is None) == (args.seeds is None):
        parser.error("give --seed S or --seeds A-B")
    seeds = [args.seed] if args.seed is not None else seed_range(args.seeds)
    failed = 0
    for seed in seeds:
        fuzz = run_seed(seed, args.ticks, rate=args.rate, quiet=args.quiet, meaning=args.meaning, keep=args.keep)
        if fuzz.violations:
            failed += 1
            out(describe(fuzz))
        else:
            served = sum(m.served_at is not None for m in fuzz.history)
            said = f"{served} of {len(fuzz.history)} mutations served, {fuzz.restarts} restarts, {fuzz.resumes} resumes"
            said += f", {fuzz.entries} entries sent"
            out(f"seed {seed}: ok ({said})")
    if len(seeds) > 1:
        out(f"{failed} of {len(seeds)} seeds broke an invariant")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
