"""An OptionsBot entry never fills above the price it was sized at. It is sized from the chain's ask, which the
snapshot reuses for up to broker.option_chain_cache_seconds; sent as a market order it filled at the live ask: on
the shipped config's 2026-11-23, sized at 12.23 (a quote 30 s old) and filled at 12.44, so it risked more than
its budget allowed. It goes out as a day limit at the sized ask, and one that does not fill is cancelled once
`entry_timed_out` holds, as a momentum entry is."""

from __future__ import annotations

from engine.brokers.sim.exchange import QuoteMode
from engine.core.store import OrderRow
from tests.trading.conftest import Rig


def _entries(rig: Rig) -> list[OrderRow]:
    return [r for r in rig.store.orders(bot_id="opt_core") if r.purpose == "entry"]


def test_every_entry_is_a_day_limit_at_the_ask_it_was_sized_at_and_fills_no_higher(rig: Rig) -> None:
    rig.until(lambda r: len(_entries(r)) >= 3 and all(e.status in ("filled", "canceled", "expired") for e in _entries(r)))
    chosen = {e["symbol"]: e["ask"] for e in rig.events("contract_chosen") if e["bot"] == "opt_core"}
    fills = [e for e in rig.events("fill") if e["bot"] == "opt_core" and e["side"] == "buy"]
    assert fills
    for entry in _entries(rig):
        assert (entry.order_type, entry.time_in_force, entry.limit_price) == ("limit", "day", chosen[entry.symbol])
        assert all(f["price"] <= entry.limit_price for f in fills if f["client_order_id"] == entry.client_order_id)


def test_an_entry_that_does_not_fill_is_cancelled_when_it_times_out(rig: Rig) -> None:
    rig.until(lambda r: bool(_entries(r)))
    [entry] = _entries(rig)
    rig.exchange.set_quote_mode(entry.symbol, QuoteMode(no_ask=True))  # nothing to buy from: it cannot fill
    waited = rig.until(lambda r: r.engine.bot("opt_core").model.state != "entering")
    assert 2 * 60 <= waited * 5 <= 2 * 60 + 10  # the machine's entry_timed_out: two minutes, then a tick
    rig.ticks(2)  # the cancel is asked for as the bot leaves `entering`, and done at the exchange's next step
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status == "canceled" and row.filled_qty == 0
    [gave_up] = [e for e in rig.events("transition") if e["bot"] == "opt_core" and e["trigger"] == "abandon_entry"]
    assert gave_up["guards"][-1] == "entry_timed_out"
