"""The account's flags (issue 14, item 4): each blocks the bots it concerns, with the flag named in the
preflight event, at start and on any later tick; the other bots trade on."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

BOTS = ("mom_AAPL", "opt_core", "crypto_core")


def last_failed(rig: Rig) -> dict[str, list[str]]:
    return {e["bot"]: e["failed"] for e in rig.events("preflight")}


def entry_count(rig: Rig, bot: str) -> int:
    return sum(1 for r in rig.store.orders(bot_id=bot) if r.purpose == "entry")


def set_flags(rig: Rig, **flags: Any) -> None:
    rig.exchange.flags = dataclasses.replace(rig.exchange.flags, **flags)


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        ({"status": "ACCOUNT_UPDATED"}, "account_active"),
        ({"trading_blocked": True}, "trading_not_blocked"),
        ({"account_blocked": True}, "account_not_blocked"),
        ({"trade_suspended_by_user": True}, "trading_not_suspended_by_user"),
    ],
)
def test_an_account_flag_blocks_every_bot_from_the_start(rig: Rig, flags: dict[str, Any], check: str) -> None:
    set_flags(rig, **flags)
    rig.ticks(240)
    failed = last_failed(rig)
    assert all(check in failed[bot] for bot in BOTS), failed
    assert rig.store.orders() == [] and rig.engine.system.state == "idle"  # the system does not arm either


def test_crypto_status_blocks_the_crypto_bot_only(rig: Rig) -> None:
    set_flags(rig, crypto_status="INACTIVE")
    rig.ticks(240)
    failed = last_failed(rig)
    assert "crypto_enabled" in failed["crypto_core"] and rig.store.orders(bot_id="crypto_core") == []
    assert "crypto_enabled" not in failed["mom_AAPL"] + failed["opt_core"]
    assert rig.store.orders(bot_id="opt_core")  # the others trade on


def test_the_effective_options_level_blocks_the_options_bot_only(rig: Rig) -> None:
    set_flags(rig, options_approved_level=3, options_trading_level=1)  # approved for more, capped by the owner at 1
    rig.ticks(240)
    failed = last_failed(rig)
    assert "options_level_ok" in failed["opt_core"] and rig.store.orders(bot_id="opt_core") == []
    assert "options_level_ok" not in failed["mom_AAPL"] + failed["crypto_core"]
    assert rig.store.orders(bot_id="crypto_core")


def test_a_flag_raised_mid_run_blocks_from_the_next_tick(rig: Rig) -> None:
    rig.until(lambda r: bool(r.store.orders(bot_id="crypto_core")))
    before = {bot: entry_count(rig, bot) for bot in BOTS}
    set_flags(rig, crypto_status="SUSPENDED", options_trading_level=0)
    rig.ticks(1)
    failed = last_failed(rig)
    assert "crypto_enabled" in failed["crypto_core"] and "options_level_ok" in failed["opt_core"]
    rig.ticks(300)
    assert entry_count(rig, "crypto_core") == before["crypto_core"]
    assert entry_count(rig, "opt_core") == before["opt_core"]


def test_the_flags_through_alpaca_py(project: ProjectCopy, clock: ManualClock) -> None:
    exchange = SimExchange(clock, seed=7)
    exchange.flags = dataclasses.replace(exchange.flags, crypto_status="INACTIVE", options_trading_level=1)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(3)
        failed = last_failed(rig)
        assert "crypto_enabled" in failed["crypto_core"] and "options_level_ok" in failed["opt_core"]
        assert not {"crypto_enabled", "options_level_ok"} & set(failed["mom_AAPL"])
        set_flags(rig, trade_suspended_by_user=True)
        rig.ticks(1)
        assert all("trading_not_suspended_by_user" in failed for failed in last_failed(rig).values())
