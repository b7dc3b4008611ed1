"""An OptionsBot does not open inside its exits.flatten_before_close_minutes: what it bought there was sold by
`near_close` at the next tick, losing the spread on each of up to max_trades_per_day round trips a day."""

from __future__ import annotations

from datetime import datetime, timezone

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def test_no_entry_inside_the_flatten_period(project: ProjectCopy) -> None:
    """An early close (10:00 Los Angeles the day after Thanksgiving) brings the flatten period over the whole
    window: 200 minutes before it is 06:40. (A window wholly inside it on every regular day is refused by
    --validate: `tests/config/test_loader.py`.)"""
    project.replace("config/bots.yaml", "flatten_before_close_minutes: 10", "flatten_before_close_minutes: 200")
    rig = make_rig(project, ManualClock(datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)))
    rig.ticks(400)  # the window opens at 06:40, 120 ticks in; with the shipped 10 minutes it enters by then
    assert not [r for r in rig.store.orders(bot_id="opt_core") if r.purpose == "entry"]
    reasons = [e["reason"] for e in rig.events("entry_blocked") if e["bot"] == "opt_core"]
    assert reasons == ["the close is within exits.flatten_before_close_minutes (200): an entry would be flattened at once"]
    assert [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "entry"]  # the others trade on


def test_entries_before_the_flatten_period_go_on(project: ProjectCopy, clock: ManualClock) -> None:
    rig = make_rig(project, clock)
    rig.ticks(400)
    assert [r for r in rig.store.orders(bot_id="opt_core") if r.purpose == "entry"]
