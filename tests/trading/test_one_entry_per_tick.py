"""A bot gets one entry a tick, whatever its machine asks: its facts and its plan, sized to its whole budget, were
worked out once, before the first entry was granted, so a second would be sized the same: twice the risk its config
allows (a machine listing open_entry twice sent two; validation refuses that, and this holds whatever else would)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.trading import engine as engine_module
from engine.trading import handlers
from tests.trading.conftest import Rig


def test_a_second_entry_asked_in_the_same_tick_is_refused(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def twice(tick: handlers.TickContext, intent: Any) -> None:
        handlers.dispatch(tick, intent)
        if intent.action == "open_entry":
            handlers.dispatch(tick, intent)

    monkeypatch.setattr(engine_module, "dispatch", twice)
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: True
    rig.until(lambda r: any(o.bot_id == "mom_AAPL" and o.purpose == "entry" for o in r.store.orders()))
    entries = [o for o in rig.store.orders() if o.bot_id == "mom_AAPL" and o.purpose == "entry"]
    assert len(entries) == 1
    [blocked] = [e for e in rig.events("entry_blocked") if e["bot"] == "mom_AAPL"]
    assert blocked["failed"] == ["one_entry_per_tick"]
