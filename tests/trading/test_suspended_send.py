"""A process suspended between a tick's commit and its sends (SIGSTOP, a paused VM, a laptop asleep), or an entry
held for ticks behind an opposite order: the entry was decided on quotes that are stale by the time it leaves. It
ends `not_sent` then, its count of the day's trades given back, as preflight would have refused it on such quotes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from engine.brokers.base import Snapshot
from engine.core.store import OrderRow
from engine.trading.facts_builder import stale_at_send
from tests.trading.conftest import Rig


def suspend_after_first_entry(rig: Rig, seconds: float) -> list[OrderRow]:
    """Tick until a tick commits an entry; the clock then moves `seconds` inside that tick's transaction, before its
    sends (the process stopped and resumed there). The entries that tick recorded."""
    recorded: list[OrderRow] = []

    def stopped() -> None:
        pending = [r for r in rig.store.orders(statuses=("pending",)) if r.purpose == "entry"]
        if pending and not recorded:
            recorded.extend(pending)
            rig.clock.advance(seconds)

    rig.engine.on_persist = stopped
    rig.until(lambda r: bool(recorded), limit=400)
    return recorded


def test_an_entry_decided_before_a_suspension_is_not_sent_on_stale_quotes(rig: Rig) -> None:
    [entry] = suspend_after_first_entry(rig, 180)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status == "not_sent" and row.broker_order_id is None
    assert "past the staleness limit of 15 s" in (row.error or "")
    assert rig.store.counter(row.trading_date, row.bot_id, "entries") == 0  # no trade: the count given back
    [said] = [e for e in rig.events("order") if e["action"] == "not_sent"]
    assert said["client_order_id"] == entry.client_order_id
    assert not [e for e in rig.events("order") if e["action"] == "submitted"]


def test_an_entry_sent_within_the_staleness_limit_goes_out(rig: Rig) -> None:
    [entry] = suspend_after_first_entry(rig, 2)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status != "not_sent" and row.broker_order_id is not None


def _fresh(rig: Rig) -> tuple[OrderRow, Snapshot]:
    [entry] = suspend_after_first_entry(rig, 0)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.broker_order_id is not None
    snapshot = rig.engine.broker.snapshot(rig.engine.needs)
    return dataclasses.replace(row, created_at=snapshot.taken_at), snapshot


def test_stale_at_send_judges_the_decision_and_each_quote_by_the_clock_at_the_send(rig: Rig) -> None:
    row, snapshot = _fresh(rig)
    bot, now = rig.engine.bot(row.bot_id), snapshot.taken_at
    assert stale_at_send(row, bot, snapshot, now + timedelta(seconds=1), 15) is None
    held = dataclasses.replace(row, created_at=now - timedelta(seconds=16))  # held behind an opposite order
    assert "decided 16.0 s before its send" in (stale_at_send(held, bot, snapshot, now, 15) or "")
    symbol = bot.symbols[0]
    quote = snapshot.quotes[symbol]
    old = dataclasses.replace(snapshot, quotes={**snapshot.quotes, symbol: dataclasses.replace(quote, timestamp=now - timedelta(seconds=20))})
    assert f"its quote of {symbol} is 20.0 s old" in (stale_at_send(row, bot, old, now, 15) or "")
    gone = dataclasses.replace(snapshot, quotes={s: q for s, q in snapshot.quotes.items() if s != symbol})
    assert f"its quote of {symbol} is missing" in (stale_at_send(row, bot, gone, now, 15) or "")


@pytest.mark.parametrize("age_s", [None, 121.0])
def test_stale_at_send_judges_an_options_entry_by_its_contract_quote(rig: Rig, age_s: float | None) -> None:
    row, snapshot = _fresh(rig)
    bot = rig.engine.bot("opt_core")
    now = snapshot.taken_at
    underlying = bot.symbols[0]
    chain = snapshot.option_chains[underlying]
    contract = dataclasses.replace(chain[0], quote_time=now - timedelta(seconds=60))  # within chain_rules' 120 s
    fresh = dataclasses.replace(snapshot, option_chains={**snapshot.option_chains, underlying: (contract, *chain[1:])})
    row = dataclasses.replace(row, bot_id="opt_core", symbol=contract.symbol)
    assert stale_at_send(row, bot, fresh, now, 15) is None
    if age_s is None:
        changed_chain = chain[1:]
        told = "not in this tick's chains"
    else:
        changed_chain = (dataclasses.replace(contract, quote_time=now - timedelta(seconds=age_s)), *chain[1:])
        told = f"{age_s:.1f} s old"
    changed = dataclasses.replace(snapshot, option_chains={**snapshot.option_chains, underlying: changed_chain})
    assert f"its contract's quote ({contract.symbol}) is {told}" in (stale_at_send(row, bot, changed, now, 15) or "")


@pytest.mark.parametrize("read", ["get_account", "get_clock"])
def test_a_stall_in_the_snapshot_is_a_failed_read_not_a_stale_feed(rig: Rig, read: str) -> None:
    """The process stopped (or a read hung) for 30 s in the tick's reads. After the account read: the quotes read
    after it are the newest there are, and judged by the clock read before the snapshot they were stamped 30 s
    ahead of it, past the staleness limit. After the quotes (the clock is read last): they are 30 s old when the
    tick decides. Either way the feed read as stale and the kill switch halted for its cooloff (390 minutes) over
    one slow answer. It is a failed read now: no entry this tick, no halt, counted as a broker failure."""
    rig.ticks(20)
    assert rig.engine.system.state == "armed"
    api = rig.engine.broker.api  # type: ignore[attr-defined]
    rig.engine.broker._market_clock = None  # type: ignore[attr-defined]  # read this tick, not from the cache
    real = getattr(api, read)
    stalls = [30.0]

    def stalled() -> object:
        answer = real()
        if stalls:
            rig.clock.advance(stalls.pop())
        return answer

    setattr(api, read, stalled)
    before = rig.clock.now()
    sent = len(rig.store.orders())
    report = rig.engine.tick()
    assert not stalls  # the read stalled
    assert rig.store.halts() == [] and not rig.events("halt")
    assert report.at == before + timedelta(seconds=30)  # the tick's time is read once the snapshot is
    [slow] = [e for e in rig.events("broker_error") if e["operation"] == "snapshot"]
    assert "took 30.0 s, longer than health.max_price_staleness_seconds (15 s)" in slow["message"]
    assert all(r.purpose == "exit" for r in rig.store.orders()[sent:])
    rig.ticks(3)
    assert rig.engine.system.state == "armed"
