"""risk.max_concurrent_positions counts symbols (issue 14, item 13): the distinct symbols a bot holds or has a
working entry on. An entry never adds to one of them, so a CryptoBot with a cap of 2 cannot send a third entry
on one pair (it did: a second fill on a held pair left the count at one)."""

from __future__ import annotations

from engine.core import order_lifecycle as lifecycle
from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import OPEN, Rig, make_rig

EAGER = 'mode: "placeholder_crypto_momo_v1"\n    params: {lookback_ticks: 2, min_move_pct: 0.0}'


def eager_crypto(project: ProjectCopy, pairs: str) -> Rig:
    project.replace("config/bots.yaml", 'mode: "placeholder_crypto_momo_v1"\n    params: {}', EAGER)
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', f"pairs: {pairs}")
    project.replace("config/bots.yaml", "max_trades_per_day: 6", "max_trades_per_day: 50")
    return make_rig(project, ManualClock(OPEN))


def busy_symbols(rig: Rig) -> tuple[set[str], set[str]]:
    held = {p.symbol for p in rig.store.positions("crypto_core")}
    working = {r.symbol for r in rig.store.orders(bot_id="crypto_core", statuses=lifecycle.OPEN) if r.purpose == "entry"}
    return held, working


def test_a_bot_never_enters_a_pair_it_holds_or_is_entering(project: ProjectCopy) -> None:
    rig = eager_crypto(project, '["BTC/USD"]')
    assert rig.engine.bot("crypto_core").config.risk.max_concurrent_positions == 2
    seen: set[str] = set()
    for _ in range(400):
        held, working = busy_symbols(rig)
        rig.ticks(1)
        new = [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry" and r.client_order_id not in seen]
        seen |= {r.client_order_id for r in new}
        assert not [r for r in new if r.symbol in held | working], (held, working, new)
    assert len(seen) >= 2  # it did trade, one position at a time


def test_the_cap_counts_distinct_symbols_held_or_being_entered(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "max_concurrent_positions: 2", "max_concurrent_positions: 1")
    project.replace("config/bots.yaml", "time_stop_minutes: 240", "time_stop_minutes: 10")  # round trips come quicker
    rig = eager_crypto(project, '["BTC/USD", "ETH/USD"]')
    entered: set[str] = set()
    for _ in range(1200):  # until both pairs were entered
        rig.ticks(1)
        held, working = busy_symbols(rig)
        assert len(held | working) <= 1, (held, working)
        entered = {r.symbol for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"}
        if len(entered) == 2:
            break
    assert entered == {"BTC/USD", "ETH/USD"}  # both pairs traded, never together


def test_two_pairs_are_held_together_under_a_cap_of_two(project: ProjectCopy) -> None:
    rig = eager_crypto(project, '["BTC/USD", "ETH/USD"]')
    most = 0
    for _ in range(400):
        rig.ticks(1)
        held, working = busy_symbols(rig)
        assert len(held | working) <= 2
        most = max(most, len(held))
    assert most == 2
