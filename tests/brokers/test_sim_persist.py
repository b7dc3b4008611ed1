"""Saving the simulated exchange: only what moved, the same restart as the whole-state save, today's files load."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.brokers.sim.persist import BOOK_KEY, STATE_KEY, SimPersistence, SimStateError, load_state
from engine.core.clock import ManualClock
from engine.core.store import StateStore
from engine.trading.runner import SIM_STATE_KEY
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import engine

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)

# What `python -m engine run` saved before version 2, byte for byte in its layout (`to_state` as it was, through
# json.dumps): one record, no version. An open limit buy, a filled crypto buy with its fee, a stock position,
# and a closed order three days old that the old save would already have dropped had it saved later.
VERSION_1: dict[str, Any] = {
    "seed": 7,
    "epoch": "2026-11-23T09:30:00-05:00",
    "now": "2026-11-23T15:59:55-05:00",
    "cash": 98153.08211,
    "last_equity": 100000.0,
    "day": "2026-11-23",
    "positions": {"AAPL": [5.0, 187.5, "us_equity"], "ETH/USD": [0.016575, 3009.94, "crypto"]},
    "orders": [
        {
            "id": "895bdb2a-11e0-4aba-b65c-c5a58cac39f0",
            "request": {"symbol": "ETH/USD", "side": "buy", "client_order_id": "crypto_core-20261123-0001", "order_type": "limit",
                        "time_in_force": "gtc", "qty": None, "notional": 50.0, "limit_price": 3009.94},
            "asset_class": "crypto",
            "created_at": "2026-11-23T09:31:00-05:00",
            "status": "filled",
            "qty": 0.01661162680983674,
            "filled_qty": 0.01661162680983674,
            "filled_value": 50.0,
            "last_fill_step": 12,
        },
        {
            "id": "1c0e9a52-7d1b-4f0e-9a57-0b3b8e1f7a10",
            "request": {"symbol": "AAPL", "side": "buy", "client_order_id": "mom_AAPL-20261123-0001", "order_type": "market",
                        "time_in_force": "day", "qty": 5.0, "notional": None, "limit_price": None},
            "asset_class": "us_equity",
            "created_at": "2026-11-23T10:02:05-05:00",
            "status": "filled",
            "qty": 5.0,
            "filled_qty": 5.0,
            "filled_value": 937.5,
            "last_fill_step": 385,
        },
        {
            "id": "5d6f2c1e-3b4a-4c8d-9e0f-1a2b3c4d5e6f",
            "request": {"symbol": "AAPL", "side": "buy", "client_order_id": "mom_AAPL-20261123-0002", "order_type": "limit",
                        "time_in_force": "gtc", "qty": 2.0, "notional": None, "limit_price": 150.0},
            "asset_class": "us_equity",
            "created_at": "2026-11-23T15:00:00-05:00",
            "status": "accepted",
            "qty": 2.0,
            "filled_qty": 0.0,
            "filled_value": 0.0,
            "last_fill_step": None,
        },
    ],
}  # fmt: skip


def _store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.db")


def _old_save(exchange: SimExchange) -> dict[str, object]:
    """What the hook saved before: the whole `to_state`, through JSON."""
    saved: dict[str, object] = json.loads(json.dumps(exchange.to_state()))
    return saved


def _loaded(store: StateStore) -> dict[str, object]:
    state = load_state(store)
    assert state is not None
    state.pop("revision")
    return state


def test_the_runner_and_status_read_the_same_key() -> None:
    assert STATE_KEY == SIM_STATE_KEY


def test_a_version_1_state_loads_as_it_is(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_meta(STATE_KEY, json.dumps(VERSION_1))
    assert load_state(store) == VERSION_1
    clock = ManualClock(datetime.fromisoformat(VERSION_1["now"]) + timedelta(seconds=5))
    exchange = SimExchange.from_state(VERSION_1, clock)
    assert exchange.cash == 98153.08211 and exchange.positions["AAPL"].qty == 5.0
    assert [o.status for o in exchange.orders.values()] == ["filled", "filled", "accepted"]
    assert exchange.open_orders()[0].client_order_id == "mom_AAPL-20261123-0002"
    assert exchange.revision == 0


def test_the_first_save_after_a_version_1_state_writes_version_2(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_meta(STATE_KEY, json.dumps(VERSION_1))
    clock = ManualClock(datetime.fromisoformat(VERSION_1["now"]) + timedelta(seconds=5))
    exchange = SimExchange.from_state(VERSION_1, clock)
    SimPersistence(exchange, store)()
    record = json.loads(store.meta(STATE_KEY) or "")
    assert record == {"version": 2, "now": clock.now().isoformat(), "revision": 0}
    assert json.loads(store.meta(BOOK_KEY) or "")["version"] == 2
    assert _loaded(store) == _old_save(exchange)


def test_a_restart_from_either_version_continues_alike(tmp_path: Path) -> None:
    """The order ids after a restart depend on how many orders were kept: both versions keep the same."""
    resume = datetime.fromisoformat(VERSION_1["now"]) + timedelta(days=1, hours=-6)
    store = _store(tmp_path)
    store.set_meta(STATE_KEY, json.dumps(VERSION_1))
    via_v2 = SimExchange.from_state(VERSION_1, ManualClock(resume))
    SimPersistence(via_v2, store)()
    from_v1 = SimExchange.from_state(VERSION_1, ManualClock(resume))
    from_v2 = SimExchange.from_state(load_state(store) or {}, ManualClock(resume))
    request = OrderRequest("MSFT", "buy", "next-1", qty=3)
    assert from_v1.submit(request) == from_v2.submit(request)
    assert from_v1.to_state() == from_v2.to_state()


def test_a_save_writes_only_what_moved(tmp_path: Path) -> None:
    store = _store(tmp_path)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    save = SimPersistence(exchange, store)
    save()
    assert (save.book_writes, save.time_writes) == (1, 1)
    book = store.meta(BOOK_KEY)
    save()  # nothing moved: the engine's second call of a tick without orders
    assert (save.book_writes, save.time_writes) == (1, 1)
    clock.advance(5)
    exchange.quote("AAPL"), exchange.account(), exchange.option_chain("SPY", 7, 45)  # reads change nothing
    save()
    assert (save.book_writes, save.time_writes) == (1, 2) and store.meta(BOOK_KEY) == book
    assert json.loads(store.meta(STATE_KEY) or "")["now"] == clock.now().isoformat()
    exchange.submit(OrderRequest("AAPL", "buy", "a-1", qty=1))
    save()  # an order sent in the same tick: the book, not the time
    assert (save.book_writes, save.time_writes) == (2, 3)
    assert _loaded(store) == _old_save(exchange)


def test_a_rolled_back_save_is_written_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    save = SimPersistence(exchange, store)
    save()
    exchange.submit(OrderRequest("AAPL", "buy", "a-1", qty=1))
    with pytest.raises(RuntimeError), store.transaction():
        save()  # inside the tick's transaction, which then fails
        raise RuntimeError("the tick failed after saving")
    assert "a-1" not in (store.meta(BOOK_KEY) or "")
    save()
    assert "a-1" in (store.meta(BOOK_KEY) or "") and _loaded(store) == _old_save(exchange)


def _random_session(seed: int, store: StateStore) -> None:
    """Orders of every kind over four days; after every save the file must hold what the whole-state save held."""
    rng = random.Random(seed)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock, starting_cash=1_000_000)
    save = SimPersistence(exchange, store)
    symbols = ["AAPL", "TSLA", "BTC/USD"]
    for n in range(1500):
        action = rng.random()
        try:
            if action < 0.08:
                symbol = rng.choice(symbols)
                crypto = "/" in symbol
                tif = "gtc" if crypto else rng.choice(["day", "gtc"])
                kind = rng.choice(["market", "limit"])
                limit = exchange.quote(symbol).bid * rng.uniform(0.998, 1.002) if kind == "limit" else None
                qty = rng.choice([1.0, 3.0, 2500.0]) if not crypto else 0.01
                exchange.submit(OrderRequest(symbol, "buy", f"c-{n}", kind, tif, qty=qty, limit_price=limit))  # type: ignore[arg-type]
            elif action < 0.11 and exchange.positions:
                exchange.close_position(rng.choice(sorted(exchange.positions)))
            elif action < 0.13 and exchange.open_orders():
                exchange.cancel(rng.choice(exchange.open_orders()).id)
            elif action < 0.135:
                exchange.cancel_all()
            elif action < 0.16:
                exchange.option_chain("SPY", 7, 45)
            elif action < 0.17:
                exchange.account()
        except SimReject:
            pass
        if rng.random() < 0.7:
            save()
            assert _loaded(store) == _old_save(exchange), n
        clock.advance(rng.choice([5, 5, 5, 60, 3600, 6 * 3600]))
    assert save.book_writes < save.time_writes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_save_holds_what_the_whole_state_save_held(tmp_path: Path, seed: int) -> None:
    _random_session(seed, _store(tmp_path))


def test_closed_orders_age_out_as_of_the_saved_time(tmp_path: Path) -> None:
    """The book is not rewritten when only time passes, so it may still hold an order the whole-state save
    would have dropped by then; loading drops it as of the saved time."""
    store = _store(tmp_path)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    save = SimPersistence(exchange, store)
    exchange.submit(OrderRequest("AAPL", "buy", "old", qty=1))
    save()
    clock.advance(3 * 24 * 3600)
    save()
    assert "old" in (store.meta(BOOK_KEY) or "")
    assert _loaded(store)["orders"] == [] == _old_save(exchange)["orders"]


def _write_version_2(store: StateStore, record: object, book: object) -> None:
    store.set_meta(STATE_KEY, json.dumps(record))
    if book is not None:
        store.set_meta(BOOK_KEY, json.dumps(book))


@pytest.mark.parametrize(
    ("record", "book", "message"),
    [
        ({"version": 3, "now": "2026-11-23T10:00:00-05:00", "revision": 1}, None, "version 3"),
        ({"version": 2, "now": "2026-11-23T10:00:00-05:00", "revision": 1}, None, "without its sim_exchange.book"),
        ({"version": 2, "now": "2026-11-23T10:00:00-05:00", "revision": 2}, {"version": 2, "revision": 1}, "does not match"),
        ("not an object", None, "not a JSON object"),
        ({"seed": 7, "cash": 1.0}, None, "no simulated time"),
    ],
)
def test_a_state_that_cannot_be_read_is_refused(tmp_path: Path, record: object, book: object, message: str) -> None:
    store = _store(tmp_path)
    _write_version_2(store, record, book)
    with pytest.raises(SimStateError, match=message):
        load_state(store)


def test_nothing_saved_loads_as_nothing(tmp_path: Path) -> None:
    assert load_state(_store(tmp_path)) is None


def test_every_change_counts(tmp_path: Path) -> None:
    clock = ManualClock(MONDAY_10AM.replace(hour=20, minute=50))  # 15:50 in New York
    exchange = SimExchange(clock, starting_cash=10_000_000)
    seen = [exchange.revision]

    def moved() -> bool:
        seen.append(exchange.revision)
        return seen[-1] > seen[-2]

    exchange.submit(OrderRequest("AAPL", "buy", "big", qty=5_000))  # filled partly
    assert moved()
    clock.advance(5)
    exchange.account()  # fills the next part
    assert moved()
    exchange.account(), exchange.quote("AAPL"), exchange.position_views(), exchange.open_orders()  # same instant: nothing
    assert not moved()
    exchange.submit(OrderRequest("AAPL", "buy", "limit", "limit", "day", qty=1, limit_price=1.0))
    assert moved()
    exchange.cancel(exchange.find_by_client_id("limit").id)
    assert moved()
    exchange.submit(OrderRequest("AAPL", "buy", "limit-2", "limit", "day", qty=1, limit_price=1.0))
    exchange.cancel_all()
    assert moved()
    exchange.submit(OrderRequest("AAPL", "buy", "day", "limit", "day", qty=1, limit_price=1.0))
    moved()
    clock.set(MONDAY_10AM.replace(hour=21, minute=1))  # 16:01: the day order expires
    exchange.open_orders()
    assert moved()
    exchange.close_position("AAPL")  # after the close: the sell waits for the next session
    assert moved()
    exchange.cancel_all()  # asked for: pending_cancel now, canceled at the next step
    assert moved() and [o.status for o in exchange.open_orders()] == ["pending_cancel"]
    clock.advance(5)
    assert exchange.open_orders() == [] and moved()
    clock.set(MONDAY_10AM + timedelta(days=1))  # only the day rolls
    exchange.account()
    assert moved()


def test_a_run_continues_a_version_1_state_file(project: ProjectCopy) -> None:
    """A state file written before version 2 (its sim record, through the real store) continues where it stopped."""
    assert engine(project, "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (BOOK_KEY,))
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps({**VERSION_1, "orders": []}), STATE_KEY))
    result = engine(project, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "continuing the simulation" in result.stdout and "1 ticks to 2026-11-23T13:00:05-08:00" in result.stdout
    store = StateStore(project.root / "s.db")
    assert json.loads(store.meta(STATE_KEY) or "")["version"] == 2
    assert (_loaded(store)["cash"], _loaded(store)["positions"]) == (VERSION_1["cash"], VERSION_1["positions"])


def test_a_run_refuses_a_state_it_cannot_read(project: ProjectCopy) -> None:
    assert engine(project, "run", "--ticks", "1", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (BOOK_KEY,))
    result = engine(project, "run", "--once")
    # a damaged state file is exit 2 (README), not 1, a failure of the moment that a retry could get past
    assert result.returncode == 2 and "the saved simulation cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [("cash", None), ("positions", []), ("epoch", "soon"), ("flags", None), ("activities", [1]), ("seed", "a")],
)
def test_a_run_refuses_a_saved_book_whose_values_cannot_be_read(project: ProjectCopy, field: str, value: object) -> None:
    """JSON that parses but holds a value of the wrong kind (a hand edit, a damaged write) was a traceback from
    deep in the exchange's rebuild; it is the same refusal as a book that is not JSON."""
    assert engine(project, "run", "--ticks", "1", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        book = json.loads(conn.execute("SELECT value FROM meta WHERE key = ?", (BOOK_KEY,)).fetchone()[0])
        book[field] = value
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(book), BOOK_KEY))
    conn.close()
    result = engine(project, "run", "--once")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2 and "the saved simulation cannot be read" in result.stderr and BOOK_KEY in result.stderr
    assert "ticks to" not in result.stdout


def _order(**changes: object) -> dict[str, Any]:
    row = json.loads(json.dumps(VERSION_1["orders"][2]))
    row.update(changes)
    return row


# Values `to_state` never writes, each in JSON that parses and of a kind the rebuild took: a NaN ended the run in a
# traceback mid-tick; the others passed to the engine as the account's (an account status the Alpaca adapter
# refuses, "no" read as true), or stood as a position or an order no exchange holds.
IMPOSSIBLE_VALUES: dict[str, dict[str, Any]] = {
    "a NaN cash": {"cash": float("nan")},
    "an infinite basis": {"last_equity": float("inf")},
    "a basis in words": {"last_equity": "100000"},
    "a basis below 0": {"last_equity": -1.0},
    "a seed with a fraction": {"seed": 7.9},
    "a naive time": {"now": "2026-11-23T15:59:55"},
    "a day after the time": {"day": "2026-11-24"},
    "an account status no broker reports": {"flags": {"status": "FOO"}},
    "a flag in words": {"flags": {"trading_blocked": "no"}},
    "an options level past 3": {"flags": {"options_trading_level": 9}},
    "an unknown flag": {"flags": {"margin": True}},
    "a NaN position": {"positions": {"AAPL": [float("nan"), 187.5, "us_equity"]}},
    "a position of 0": {"positions": {"AAPL": [0, 187.5, "us_equity"]}},
    "a position's price in words": {"positions": {"AAPL": [5.0, "187.5", "us_equity"]}},
    "a position bought for nothing": {"positions": {"AAPL": [5.0, 0.0, "us_equity"]}},
    "a position under another class": {"positions": {"AAPL": [5.0, 187.5, "crypto"]}},
    "a position in part of a contract": {"positions": {"SPY261204C00500000": [2.5, 3.1, "us_option"]}},
    "an order status no broker reports": {"orders": [_order(status="FOO")]},
    "an order's side unknown": {"orders": [_order(request={**_order()["request"], "side": "short"})]},
    "an order's quantity below 0": {"orders": [_order(filled_qty=-1.0)]},
    "an order's fill step in words": {"orders": [_order(last_fill_step="12")]},
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE_VALUES))
def test_a_saved_value_to_state_never_writes_is_refused_by_name(case: str) -> None:
    state = {**json.loads(json.dumps(VERSION_1)), **IMPOSSIBLE_VALUES[case]}
    with pytest.raises(ValueError) as refused:
        SimExchange.from_state(state, ManualClock(MONDAY_10AM + timedelta(days=1)))
    named = next(iter(IMPOSSIBLE_VALUES[case]))
    assert named in str(refused.value)


def test_the_saved_states_it_writes_pass_the_check(tmp_path: Path) -> None:
    """The check refuses nothing `to_state` writes: a session of every kind of change, saved and loaded."""
    store = _store(tmp_path)
    _random_session(3, store)
    state = _state(store)
    SimExchange.from_state(state, ManualClock(datetime.fromisoformat(state["now"])))
    SimExchange.from_state(json.loads(json.dumps(VERSION_1)), ManualClock(MONDAY_10AM + timedelta(days=1)))


def test_a_run_refuses_an_account_status_no_broker_reports(project: ProjectCopy) -> None:
    """`flags.status` "FOO" passed through the rebuild unchecked (the Alpaca adapter refuses it): the run now
    refuses the file, naming the flag, exit 2."""
    assert engine(project, "run", "--ticks", "1", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        book = json.loads(conn.execute("SELECT value FROM meta WHERE key = ?", (BOOK_KEY,)).fetchone()[0])
        book["flags"]["status"] = "FOO"
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(book), BOOK_KEY))
    conn.close()
    result = engine(project, "run", "--once")
    assert result.returncode == 2 and "flags.status 'FOO'" in result.stderr and "Traceback" not in result.stderr
    assert "ticks to" not in result.stdout


def test_an_order_after_restarts_never_takes_the_id_of_one_the_exchange_still_holds(tmp_path: Path) -> None:
    """The ids of a loaded exchange's orders were drawn from a stream seeded by how many orders the state kept: a
    later restart keeping as many (older ones aged out meanwhile) drew the same ids again, and a new order took
    the id of one still held, replacing it (its client_order_id then found the new order)."""
    store = _store(tmp_path)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    for n in range(2):
        exchange.submit(OrderRequest("AAPL", "buy", f"monday-{n}", qty=1))
    SimPersistence(exchange, store)()
    clock.advance(8 * 3600)
    exchange = SimExchange.from_state(_state(store), clock)  # the two orders kept: ids drawn from a new stream
    for n in range(2):
        exchange.submit(OrderRequest("AAPL", "buy", f"evening-{n}", qty=1))
    save = SimPersistence(exchange, store)
    save()
    clock.advance(2 * 24 * 3600 - 4 * 3600)  # Monday's morning orders aged out, its evening ones not yet
    save()
    state = _state(store)
    assert sorted(o["request"]["client_order_id"] for o in state["orders"]) == ["evening-0", "evening-1"]
    exchange = SimExchange.from_state(state, clock)
    held = set(exchange.orders)
    new = exchange.submit(OrderRequest("AAPL", "buy", "wednesday-0", qty=1))
    assert new.id not in held
    assert exchange.find_by_client_id("evening-0").client_order_id == "evening-0"


def _state(store: StateStore) -> dict[str, Any]:
    state = load_state(store)
    assert state is not None
    return state
