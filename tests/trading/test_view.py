"""The TickView: everything the tick needs from SQLite, in a number of queries that does not depend on the
number of bots, and rows that do not depend on how much history the file holds."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.brokers.base import Snapshot
from engine.core.store import SYSTEM_SCOPE, OrderRow, StateStore
from engine.trading.view import read_view

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
TZ = ZoneInfo("America/New_York")
TODAY = date(2026, 11, 23)
SNAPSHOT = Snapshot(NOW, None, (), (), {}, {}, None)


def order(cid: str, bot: str, *, day: date = TODAY, purpose: str = "entry", status: str = "filled", at: datetime = NOW) -> OrderRow:
    side = "buy" if purpose == "entry" else "sell"  # as the engine writes them: the store refuses an exit that buys
    return OrderRow(cid, bot, day, purpose, "AAPL", side, 1.0, None, "market", None, "day", status, None, 0.0, None, "", None, at, at)


def store_with_bots(tmp_path: Path, bots: int, history_days: int = 0) -> StateStore:
    store = StateStore(tmp_path / "state.db")
    with store.transaction():
        for b in range(bots):
            bot = f"bot{b}"
            for d in range(history_days):
                store.add_order(order(f"{bot}-old{d}", bot, day=TODAY - timedelta(days=d + 1), at=NOW - timedelta(days=d + 1)))
            store.add_order(order(f"{bot}-1", bot, status="canceled", at=NOW - timedelta(minutes=5)))
            store.add_order(order(f"{bot}-2", bot, status="new", at=NOW - timedelta(minutes=1)))
            store.set_position(bot, "AAPL", 1.0, 100.0, NOW - timedelta(minutes=3))
            store.bump_counter(TODAY, bot, "entries", 2)
    return store


def test_each_bot_gets_its_own_records(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 3)
    with store.transaction():
        store.add_order(order("bot1-x", "bot1", purpose="exit", status="pending"))
        store.start_halt("bot2", "guard failed", ("guard_error",), False, NOW - timedelta(minutes=1), None)
        store.add_realized_pnl(TODAY, "bot0", -12.5)
    view = read_view(store, SNAPSHOT, NOW, TZ)
    assert view.day == TODAY and view.local_time.hour == 10
    bot0, bot1, bot2 = view.bot("bot0"), view.bot("bot1"), view.bot("bot2")
    assert [p.symbol for p in bot0.positions] == ["AAPL"] and bot0.realized_pnl == -12.5
    assert [o.client_order_id for o in bot0.open_entries] == ["bot0-2"] and bot0.open_exits == ()
    assert [o.client_order_id for o in bot1.open_exits] == ["bot1-x"]
    assert bot0.last_entry is not None and bot0.last_entry.client_order_id == "bot0-2"
    assert bot0.counter("entries") == 2 and bot0.counter("fills") == 0
    assert bot2.halt is not None and bot0.halt is None and view.system_halt is None
    assert view.bot("nobody").positions == () and view.bot("nobody").last_entry is None
    assert view.orders_last_minute == 4  # the three bots' newest entries and bot1's exit


def test_the_number_of_queries_does_not_grow_with_the_bots(tmp_path: Path) -> None:
    few, many = store_with_bots(tmp_path / "a", 2), store_with_bots(tmp_path / "b", 60)
    counts = []
    for store in (few, many):
        before = store.statements
        read_view(store, SNAPSHOT, NOW, TZ)
        counts.append(store.statements - before)
    assert counts[0] == counts[1] <= 8


def test_no_query_of_the_view_scans_a_table(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 2, history_days=30)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    view = read_view(store, SNAPSHOT, NOW, TZ)
    store._conn.set_trace_callback(None)
    assert view.bot("bot0").last_entry.client_order_id == "bot0-2"  # type: ignore[union-attr]
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) >= 6
    for sql in reads:
        plan = " | ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))
        table = sql.split(" FROM ")[1].split()[0]
        # the tables that grow with history: only index searches (the partial index of open halts holds no history)
        if table in ("orders", "halts"):
            assert f"SCAN {table}" not in plan.replace("SCAN halts USING INDEX halts_open", ""), (sql, plan)


def test_a_halt_written_during_the_tick_is_seen_through_a_new_view(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 1)
    view = read_view(store, SNAPSHOT, NOW, TZ)
    store.start_halt(SYSTEM_SCOPE, "kill", ("x",), True, NOW, NOW + timedelta(minutes=5))
    store.start_halt("bot0", "mine", ("y",), False, NOW, None)
    after = view.with_halts(tuple(store.halts(open_only=True)))
    assert view.system_halt is None and after.system_halt is not None and after.system_halt.flatten
    assert after.bot("bot0").halt is not None and after.bot("bot0").positions == view.bot("bot0").positions
    later = after.with_halts(tuple(store.halts(open_only=True)))
    assert later.bot("bot0").halt is not None


def test_nothing_written_since_the_last_tick_costs_one_query_and_reads_the_same(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 3)
    store.add_order(order("bot1-x", "bot1", purpose="exit", status="pending"))
    first = read_view(store, SNAPSHOT, NOW, TZ)
    before = store.statements
    second = read_view(store, SNAPSHOT, NOW, TZ, first)
    assert store.statements - before == 1
    assert second.bots == first.bots and second.orders_last_minute == first.orders_last_minute == 4
    later = NOW + timedelta(seconds=30)  # the entries made a minute before NOW leave the window; the exit stays
    assert read_view(store, SNAPSHOT, later, TZ, second).orders_last_minute == 1


def test_a_halt_written_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 1)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    operator = StateStore(tmp_path / "state.db")  # another connection, as `python -m engine halt` is
    operator.start_halt(SYSTEM_SCOPE, "operator", ("operator",), False, NOW, None)
    operator.close()
    assert read_view(store, SNAPSHOT, NOW + timedelta(seconds=5), TZ, first).system_halt is not None


def test_our_own_write_is_read_back(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 1)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    store.set_position("bot0", "MSFT", 2.0, 50.0, NOW)
    second = read_view(store, SNAPSHOT, NOW + timedelta(seconds=5), TZ, first)
    assert {p.symbol for p in second.bot("bot0").positions} == {"AAPL", "MSFT"}


def test_a_new_trading_day_reads_again(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 1)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    tomorrow = read_view(store, SNAPSHOT, NOW + timedelta(days=1), TZ, first)
    assert tomorrow.day == TODAY + timedelta(days=1) and tomorrow.bot("bot0").counter("entries") == 0


def test_a_halt_whose_cooloff_runs_out_leaves_the_reused_records(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 2)
    store.start_halt("bot0", "paused", ("refusals",), False, NOW, NOW + timedelta(minutes=1))
    store.start_halt("bot1", "mine", ("operator",), False, NOW, None)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    assert first.bot("bot0").paused is not None and first.bot("bot1").halt is not None
    same = read_view(store, SNAPSHOT, NOW + timedelta(seconds=30), TZ, first)  # nothing written, still in force
    assert same.bot("bot0").paused is not None and same.bots == first.bots
    later = read_view(store, SNAPSHOT, NOW + timedelta(minutes=2), TZ, same)
    assert later.bot("bot0").paused is None and later.bot("bot0").positions == first.bot("bot0").positions
    assert later.bot("bot1").halt is not None and [h.scope for h in later.halts] == ["bot1"]


def test_the_simulated_exchange_saving_itself_does_not_make_the_view_read_again(tmp_path: Path) -> None:
    # The simulator saves its book into `meta` every tick it changed; that is not what a tick reads.
    store = store_with_bots(tmp_path, 2)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    store.set_meta("sim_exchange", "{}")
    before = store.statements
    read_view(store, SNAPSHOT, NOW + timedelta(seconds=5), TZ, first)
    assert store.statements - before == 1


def test_a_clock_set_back_reads_the_orders_of_the_last_minute_again(tmp_path: Path) -> None:
    """The reused view keeps only orders still in the window; set back, the window holds orders it never read."""
    store = store_with_bots(tmp_path, 1)  # bot0-2 created a minute before NOW, bot0-1 five minutes before
    first = read_view(store, SNAPSHOT, NOW + timedelta(minutes=3), TZ)
    assert first.orders_last_minute == 0
    back = read_view(store, SNAPSHOT, NOW - timedelta(seconds=30), TZ, first)
    assert back.orders_last_minute == 1


def test_read_again_in_the_same_tick_with_nothing_written_it_is_the_same_view(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 2)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    before = store.statements
    assert read_view(store, SNAPSHOT, NOW, TZ, first) is first
    assert store.statements - before == 1  # the stamp is still read: another process may have written
    other = Snapshot(NOW, None, (), (), {}, {}, None)
    assert read_view(store, other, NOW, TZ, first).snapshot is other  # another tick's snapshot: a view of its own


def test_a_halt_another_process_writes_between_the_tick_s_two_reads_is_seen(tmp_path: Path) -> None:
    store = store_with_bots(tmp_path, 1)
    first = read_view(store, SNAPSHOT, NOW, TZ)
    operator = StateStore(tmp_path / "state.db")
    operator.start_halt(SYSTEM_SCOPE, "operator", ("operator",), False, NOW, None)
    operator.close()
    again = read_view(store, SNAPSHOT, NOW, TZ, first)
    assert first.system_halt is None and again.system_halt is not None


def test_a_pause_is_read_apart_from_a_halt_and_never_hides_one(tmp_path: Path) -> None:
    """A bot's pause (its orders refused on their merits) keeps its positions; any other halt of the bot closes
    them. Read as the bot's one latest halt, a pause written after a fault's halt hid it, and the kill switch kept
    what the faulted bot held; and a pause read as a halt sold what a merely refused bot held."""
    store = store_with_bots(tmp_path, 2)
    store.start_halt("bot0", "signal failed: boom", ("signal_error",), False, NOW, None)
    store.start_halt("bot0", "orders refused repeatedly (wash_trade)", ("refusals",), False, NOW, NOW + timedelta(minutes=30))
    store.start_halt("bot1", "orders refused repeatedly (insufficient_funds)", ("refusals",), False, NOW,
                     NOW + timedelta(minutes=30))  # fmt: skip
    for view in (read_view(store, SNAPSHOT, NOW, TZ), read_view(store, SNAPSHOT, NOW, TZ).with_halts(())):
        if not view.halts:  # with_halts: the same halts, given back
            view = view.with_halts(tuple(store.halts(open_only=True)))
        faulted, refused = view.bot("bot0"), view.bot("bot1")
        assert faulted.halt is not None and faulted.halt.conditions == ("signal_error",) and faulted.paused is not None
        assert refused.halt is None and refused.paused is not None and refused.paused.pause
