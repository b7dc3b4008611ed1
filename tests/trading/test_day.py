"""A simulated morning on the default config: bots arm, enter, exit by their rules; status, SQLite and JSONL agree."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.brokers.symbols import parse_occ
from engine.core.money import cents
from engine.trading.runner import status_text
from tests.trading.conftest import Rig


def test_a_simulated_session(rig: Rig) -> None:
    rig.ticks(900)  # 09:30 to 10:45 in New York
    transitions = rig.events("transition")
    assert all({"bot", "from", "to", "trigger", "guards"} <= set(e) for e in transitions)  # the log's contract
    by_bot = Counter((e["bot"], e["trigger"]) for e in transitions)
    for bot_id in ("mom_AAPL", "opt_core", "crypto_core"):
        assert by_bot[(bot_id, "arm")] >= 1 and by_bot[(bot_id, "enter")] >= 1 and by_bot[(bot_id, "exit")] >= 1, by_bot
    assert by_bot[("system", "arm")] == 1 and rig.engine.system.state == "armed"

    # the options bot chose contracts inside its DTE and delta ranges
    chosen = rig.events("contract_chosen")
    assert chosen
    for event in chosen:
        assert 7 <= event["dte"] <= 45 and 0.25 <= abs(event["delta"]) <= 0.60
        assert parse_occ(event["symbol"]) is not None

    # the crypto bot trades notional, as configured
    crypto = [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]
    assert crypto and all(r.notional == 50.0 and r.qty is None for r in crypto)
    assert all(r.order_type == "limit" and r.time_in_force == "gtc" for r in crypto)

    # SQLite and the JSONL log agree with each other and with the broker
    rows = rig.store.orders()
    intents = {e["client_order_id"] for e in rig.events("order") if e["action"] == "intent"}
    assert intents == {r.client_order_id for r in rows}
    assert len(rig.events("fill")) == sum(
        c.get("fills", 0) for c in rig.store.counters(rig.engine.trading_date(rig.clock.now())).values()
    )
    broker_orders = {o.request.client_order_id for o in rig.exchange.orders.values()}
    assert broker_orders == {r.client_order_id for r in rows if r.status != "pending"}
    owned = {(p.symbol, round(p.qty, 9)) for p in rig.store.positions()}
    assert owned == {(p.symbol, round(p.qty, 9)) for p in rig.exchange.position_views()}
    saved = {(s.bot_id, s.state) for s in rig.store.machine_states()}
    assert saved == {(b.bot_id, b.model.state) for b in rig.engine.bots} | {("system", "armed"), ("portfolio", "armed")}
    text = status_text(rig.store, rig.clock.now())
    for bot in rig.engine.bots:
        assert f"{bot.bot_id}" in text and bot.model.state in text

    # every tick logged its duration and broker requests, and the requests are a constant handful
    ticks = rig.events("tick")
    assert len(ticks) == 900 and all(t["duration_ms"] >= 0 for t in ticks)
    assert max(t["broker_requests"] for t in ticks if t["transitions"] == 0) <= 12


def test_client_order_ids_are_deterministic(rig: Rig) -> None:
    rig.ticks(200)
    ids = [r.client_order_id for r in rig.store.orders(bot_id="crypto_core")]
    assert ids and ids[0] == "crypto_core-20261123-0001"
    assert ids == [f"crypto_core-20261123-{n:04d}" for n in range(1, len(ids) + 1)]


def test_trade_cap_is_respected(rig: Rig) -> None:
    rig.ticks(2000)
    day = rig.engine.trading_date(rig.clock.now())
    for bot in rig.engine.bots:
        entries = [r for r in rig.store.orders(bot_id=bot.bot_id) if r.purpose == "entry"]
        assert len(entries) <= bot.config.risk.max_trades_per_day
        assert rig.store.counter(day, bot.bot_id, "entries") == len(entries)


def test_every_round_trip_is_a_trade_in_sqlite_and_the_log(rig: Rig) -> None:
    rig.ticks(900)
    trades = rig.store.trades()
    assert {t.bot_id for t in trades} == {"mom_AAPL", "opt_core", "crypto_core"}
    events = rig.events("trade")
    assert [(e["bot"], e["symbol"], e["pnl"]) for e in events] == [(t.bot_id, t.symbol, cents(t.pnl)) for t in trades]
    rules = {"stop_loss_hit", "take_profit_hit", "time_stop_hit", "flatten_requested", "near_close", "past_manage_until"}
    for t in trades:
        assert t.opened_at < t.closed_at and t.qty > 0
        trigger, _, rule = t.exit_trigger.partition(": ")
        assert trigger in ("exit", "flatten") and rule in rules, t.exit_trigger  # which exit rule, not only "exit"
        sign = 1 if t.exit_price >= t.entry_price else -1
        assert (t.pnl >= 0) == (sign > 0) or abs(t.pnl) < 1e-9
    held = {p.bot_id: p.realized for p in rig.store.positions()}  # partial exits of what is still open
    day = rig.engine.trading_date(rig.clock.now())
    for bot, realized in rig.store.realized_pnl(day).items():
        closed = sum(t.pnl for t in trades if t.bot_id == bot)
        assert closed + held.get(bot, 0.0) == pytest.approx(realized), bot


def test_status_shows_the_counters_of_the_states_today(rig: Rig) -> None:
    """`status` shows today's counters (README): the day after a day of trading, before any order of its own, it
    showed the day before's under that day's date, a bot at its max_trades_per_day read as capped today."""
    from datetime import timedelta

    from engine.operator.local import LocalTime

    rig.ticks(200)
    day = rig.engine.trading_date(rig.clock.now())
    assert rig.store.counters(day)  # the bots traded today
    local = LocalTime("America/Los_Angeles")
    lines = status_text(rig.store, rig.clock.now() + timedelta(days=1), local=local).splitlines()
    at = lines.index(f"counters {(day + timedelta(days=1)).isoformat()}:")
    assert lines[at + 1] == "  none"
    lines = status_text(rig.store, rig.clock.now(), local=local).splitlines()
    assert f"counters {day.isoformat()}:" in lines and lines[lines.index(f"counters {day.isoformat()}:") + 1] != "  none"


def test_a_round_trip_of_less_than_a_cent_is_logged_with_its_pnl_not_minus_zero(rig: Rig) -> None:
    """The `trade` event rounded its P&L to the cent: a round trip that lost 0.004 was logged as -0.0, and the
    live console and the alerts' daily summary, which read the event, showed it as nothing (or -0.00)."""
    from dataclasses import replace

    from engine.core.store import OrderRow, PositionRow

    now = rig.clock.now()
    day = rig.engine.trading_date(now)
    exit_row = OrderRow("mom_AAPL-x", "mom_AAPL", day, "exit", "AAPL", "sell", 1.0, None, "market", None, "day", "filled",
                        "b-1", 1.0, 99.996, "exit: stop_loss_hit", None, now, now)  # fmt: skip
    held = PositionRow("mom_AAPL", "AAPL", 0.0, 100.0, now, bought_qty=1.0, sold_qty=1.0, sold_value=99.996, realized=-0.004)
    rig.engine.orders._close_trade(held, exit_row, now, day)
    rig.engine.orders._close_trade(replace(held, sold_value=100.0, realized=-1e-13), exit_row, now, day)  # float residue: 0
    logged = [e["pnl"] for e in rig.events("trade")]
    assert logged == [-0.004, 0.0] and str(logged[1]) == "0.0"
    assert [t.pnl for t in rig.store.trades()] == [-0.004, -1e-13]  # the record keeps what was realized
