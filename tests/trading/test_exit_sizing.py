"""How much an exit sells (handlers._exit_qty): never more than the account holds, never a float's last digit more,
never a billionth less than a clean decimal, and the shortfall a tick's own fills explain is no shortfall.

Each case reads a real snapshot from the simulated exchange, whose position is set as the case needs."""

from __future__ import annotations

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.trading.exitbot import KillVerdict
from engine.trading.gate import Gate
from engine.trading.handlers import POSITIONS_STAND_IN, TickContext, _exit_qty
from engine.trading.view import read_view
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

SYMBOL = "BTC/USD"


def tick_with_broker_holding(rig: Rig, qty: float, symbol: str = SYMBOL) -> TickContext:
    rig.exchange.set_position(symbol, qty, 50_000.0)
    snapshot = rig.engine.broker.snapshot(rig.engine.needs)
    view = read_view(rig.store, snapshot, rig.clock.now(), rig.engine.tz)
    return TickContext(rig.engine, view, Gate.open(0, None, snapshot), KillVerdict((), {}, ()))


def limited(rig: Rig) -> list[tuple[float, float]]:
    return [(e["owned"], e["sent"]) for e in rig.events("exit_limited")]


def test_two_exits_whose_float_sum_passes_the_holding_by_a_last_digit_never_oversell(rig: Rig) -> None:
    """A fee adoption's split (0.0997 into two) leaves each bot a float a hair above half: the second exit sold
    that hair past what the account holds, which Alpaca refuses for a coin, so the stop never executed."""
    tick = tick_with_broker_holding(rig, 0.0997)
    half = 0.049850000000000005
    first, second = _exit_qty(tick, "a", SYMBOL, half), _exit_qty(tick, "b", SYMBOL, half)
    assert first is not None and second is not None
    assert first + second <= 0.0997 and second == 0.04985
    assert limited(rig) == []  # a float's last digit is no difference worth saying


def test_a_limited_exit_sells_the_clean_decimal_the_account_holds(rig: Rig) -> None:
    tick = tick_with_broker_holding(rig, 8.2)
    assert _exit_qty(tick, "a", SYMBOL, 10.0) == 8.2  # not 8.199999999, which leaves a billionth behind
    assert limited(rig) == [(10.0, 8.2)]


def test_a_difference_is_said_again_when_it_comes_back(rig: Rig) -> None:
    """Said once per difference, and again after an exit that was not limited: the same quantity sold by hand
    on another day is news again."""
    assert _exit_qty(tick_with_broker_holding(rig, 0.0), "a", SYMBOL, 5.0) is None
    assert _exit_qty(tick_with_broker_holding(rig, 0.0), "a", SYMBOL, 5.0) is None  # the same: not said again
    assert _exit_qty(tick_with_broker_holding(rig, 5.0), "a", SYMBOL, 5.0) == 5.0
    assert _exit_qty(tick_with_broker_holding(rig, 0.0), "a", SYMBOL, 5.0) is None
    assert limited(rig) == [(5.0, 0.0), (5.0, 0.0)]
    assert rig.engine.exits_limited == {("a", SYMBOL): (5.0, 0.0)}


@pytest.mark.parametrize(("bought", "sent"), [(2.0, 5.0), (1.0, 3.0)])
def test_a_shortfall_this_ticks_fills_explain_is_the_snapshots_order_of_reads_not_a_sale(
    rig: Rig, bought: float, sent: float
) -> None:
    """The snapshot reads the positions before the orders: a buy filled in between is in the bots' count and not
    yet in the broker's. The exit sells what the bots own when this tick's fills explain the difference, and
    only what the account holds when they do not."""
    tick = tick_with_broker_holding(rig, 3.0)
    rig.engine.orders.bought_this_tick[SYMBOL] = bought
    assert _exit_qty(tick, "a", SYMBOL, 5.0) == sent


def test_an_exit_waits_while_the_brokers_positions_are_unknown_or_the_account_may_not_trade(rig: Rig) -> None:
    """The chaos run's finding: with the positions read failing, the bots' count went out blind, every tick,
    though the account held none (on a margin account, a short). With positions never read the exit waits; so it
    does while the broker blocks the account's orders (each order would be refused, again each tick)."""
    import dataclasses

    tick = tick_with_broker_holding(rig, 0.0)
    unread = dataclasses.replace(tick.view.snapshot, positions=None)
    tick.view = dataclasses.replace(tick.view, snapshot=unread)
    assert rig.engine.last_positions is None  # never read
    assert _exit_qty(tick, "a", SYMBOL, 5.0) is None
    assert _exit_qty(tick, "a", SYMBOL, 5.0) is None  # said once
    tick = tick_with_broker_holding(rig, 5.0)
    account = tick.view.snapshot.account
    assert account is not None
    blocked = dataclasses.replace(tick.view.snapshot, account=dataclasses.replace(account, trading_blocked=True))
    tick.view = dataclasses.replace(tick.view, snapshot=blocked)
    assert _exit_qty(tick, "b", SYMBOL, 5.0) is None
    waiting = [(e["bot"], e["reason"]) for e in rig.events("exit_waiting")]
    assert waiting == [("a", "the broker's positions could not be read lately"),
                       ("b", "the broker says the account may not place these orders (trading_blocked, account_blocked, "
                             "suspended, or crypto not active)")]  # fmt: skip
    assert _exit_qty(tick_with_broker_holding(rig, 5.0), "b", SYMBOL, 5.0) == 5.0  # known again: it goes


@pytest.mark.parametrize(("held_when_last_read", "sent"), [(5.0, 5.0), (0.0, None), (2.0, 2.0)])
def test_while_the_positions_read_fails_an_exit_is_sized_against_the_last_one_read(
    rig: Rig, held_when_last_read: float, sent: float | None
) -> None:
    """From review: waiting for a read that fails for good (one position the adapter cannot read makes the whole
    list unreadable) would stop every stop-loss of every bot. The positions last read stand in: the engine's own
    fills since are in what the bots own, and its own sells in what is being sold."""
    import dataclasses

    rig.engine.last_positions = tick_with_broker_holding(rig, held_when_last_read).view.snapshot.positions
    rig.engine.last_positions_at = rig.clock.now()
    rig.clock.advance(50)
    tick = tick_with_broker_holding(rig, 5.0)
    tick.view = dataclasses.replace(tick.view, snapshot=dataclasses.replace(tick.view.snapshot, positions=None))
    assert _exit_qty(tick, "a", SYMBOL, 5.0) == sent
    rig.clock.advance(20)  # read more than a minute ago: what the account holds is unknown again
    tick = tick_with_broker_holding(rig, 5.0)
    tick.view = dataclasses.replace(tick.view, snapshot=dataclasses.replace(tick.view.snapshot, positions=None))
    assert _exit_qty(tick, "b", SYMBOL, 5.0) is None


def test_the_positions_last_read_are_aged_when_the_exit_is_sized_not_when_the_tick_began(rig: Rig) -> None:
    """From the chaos run (seeds 911, 2916): a snapshot whose reads hung took most of a minute, and the positions
    read 50 s before the tick began were trusted as 50 s old when the exit went out at 90 s."""
    import dataclasses

    rig.engine.last_positions = tick_with_broker_holding(rig, 5.0).view.snapshot.positions
    rig.engine.last_positions_at = rig.clock.now()
    rig.clock.advance(50)
    tick = tick_with_broker_holding(rig, 5.0)  # the tick begins: its view is stamped now
    tick.view = dataclasses.replace(tick.view, snapshot=dataclasses.replace(tick.view.snapshot, positions=None))
    rig.clock.advance(40)  # the failing positions read (and the others) hung this long
    assert _exit_qty(tick, "a", SYMBOL, 5.0) is None
    assert [e["reason"] for e in rig.events("exit_waiting")] == ["the broker's positions could not be read lately"]


def test_after_a_refused_exit_the_next_waits_a_minute_and_a_coin_waits_while_crypto_is_not_active(rig: Rig) -> None:
    """From the chaos re-run: a refused exit (the broker holding less than a stale read said, or crypto trading
    not active) was sent again every tick, each under a new id."""
    import dataclasses

    rig.engine.orders.exits_refused[("a", SYMBOL)] = rig.clock.now()
    assert _exit_qty(tick_with_broker_holding(rig, 5.0), "a", SYMBOL, 5.0) is None
    assert _exit_qty(tick_with_broker_holding(rig, 5.0), "b", SYMBOL, 5.0) == 5.0  # another bot's is not held back
    rig.clock.advance(61)
    assert _exit_qty(tick_with_broker_holding(rig, 5.0), "a", SYMBOL, 5.0) == 5.0
    tick = tick_with_broker_holding(rig, 5.0)
    account = tick.view.snapshot.account
    assert account is not None
    inactive = dataclasses.replace(tick.view.snapshot, account=dataclasses.replace(account, crypto_status="INACTIVE"))
    tick.view = dataclasses.replace(tick.view, snapshot=inactive)
    assert _exit_qty(tick, "c", SYMBOL, 5.0) is None


@pytest.mark.parametrize("through_alpaca_py", [False, True], ids=["sim", "alpaca-py"])
def test_an_exit_sells_only_what_an_order_placed_by_hand_leaves_available(
    project: ProjectCopy, clock: ManualClock, through_alpaca_py: bool
) -> None:
    """A sell placed by hand beside the engine holds 4 of the 10 shares (the position's qty_available is 6). The
    exit was sized to all 10, which Alpaca refuses ("insufficient qty available for order"), again each minute:
    the bot's stop sold nothing while 6 shares could have gone."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock) if through_alpaca_py else None
        rig = make_rig(project, clock, broker=broker, exchange=exchange if through_alpaca_py else None)
        rig.exchange.set_position("AAPL", 10.0, 190.0)
        rig.exchange.submit(OrderRequest("AAPL", "sell", "hand-1", "limit", "day", qty=4, limit_price=1000.0))
        tick = tick_with_broker_holding(rig, 10.0, "AAPL")
        assert [p.qty_available for p in tick.view.snapshot.positions or () if p.symbol == "AAPL"] == [6.0]
        assert _exit_qty(tick, "mom_AAPL", "AAPL", 10.0) == 6.0
        assert limited(rig) == [(10.0, 6.0)]


@pytest.mark.parametrize("spoil", ["current_price", "qty"])
def test_a_flatten_sells_what_is_known_while_one_position_cannot_be_read(
    project: ProjectCopy, clock: ManualClock, spoil: str
) -> None:
    """The task's finding: one unreadable field of one position (BTC/USD's current_price null, every answer) made
    the whole positions answer unreadable, and once the positions last read were past POSITIONS_STAND_IN the kill
    switch's flatten sold nothing, AAPL's readable position included. Now the answer still halts the system, but
    the flatten sells AAPL, and BTC/USD by the quantity and side the answer does say; only a quantity that cannot
    be read itself leaves its symbol's exit waiting."""
    from engine.brokers.emulator import Fault
    from engine.core.store import SYSTEM_SCOPE
    from engine.trading.exitbot import record_halt

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        api = make_api(emulator, clock)
        rig = make_rig(project, clock, broker=SnapshotBroker(api, clock), exchange=exchange)
        for bot, symbol, qty in (("mom_AAPL", "AAPL", 10.0), ("crypto_core", "BTC/USD", 0.5)):
            price = exchange.quote(symbol).bid  # bought at the market: no exit rule of its own fires meanwhile
            exchange.set_position(symbol, qty, price)
            rig.store.set_position(bot, symbol, qty, price, clock.now())
        rig.ticks(3)  # reconciled and armed
        assert rig.engine.reconciled
        index = [p.symbol for p in api.get_positions()].index("BTC/USD")
        emulator.faults.append(Fault(path_prefix="/v2/positions", method="GET", patch={f"{index}.{spoil}": None}, times=0))
        rig.ticks(3)  # the system halts on the answer
        assert rig.engine.system.state == "halted"
        clock.advance(POSITIONS_STAND_IN.total_seconds())  # the positions last read are too old to stand in
        record_halt(rig.store, rig.engine.journal, scope=SYSTEM_SCOPE, reason="kill switch", conditions=("operator",),
                    now=clock.now(), flatten=True)  # fmt: skip
        rig.ticks(1)
        exits = {r.symbol: r.qty for r in rig.store.orders() if r.purpose == "exit"}
        if spoil == "qty":
            assert exits == {"AAPL": 10.0}
            waiting = [(e["symbol"], e["reason"]) for e in rig.events("exit_waiting")]
            assert waiting == [("BTC/USD", "the broker's positions could not be read lately")]
        else:
            assert exits == {"AAPL": 10.0, "BTC/USD": 0.5}


def test_what_an_answer_read_in_part_says_is_held_caps_an_exit_as_the_positions_would(rig: Rig) -> None:
    """On the simulator: the positions unreadable in part (`Snapshot.positions_in_part`), never read whole before
    (no stand-in). The exit is sized against what the answer says of the symbol, as against a position: never more
    than held nor than available; a symbol whose quantity is unknown waits."""
    import dataclasses

    from engine.brokers.base import Holding, PositionsInPart

    tick = tick_with_broker_holding(rig, 5.0)
    in_part = PositionsInPart((Holding(SYMBOL, 3.0, 2.5),), frozenset({"ETH/USD"}))
    snapshot = dataclasses.replace(tick.view.snapshot, positions=None, positions_in_part=in_part)
    tick.view = dataclasses.replace(tick.view, snapshot=snapshot)
    assert rig.engine.last_positions is None
    assert _exit_qty(tick, "a", SYMBOL, 5.0) == 2.5
    assert _exit_qty(tick, "a", "ETH/USD", 1.0) is None
    assert [(e["symbol"], e["reason"]) for e in rig.events("exit_waiting")] == [
        ("ETH/USD", "the broker's positions could not be read lately")
    ]
