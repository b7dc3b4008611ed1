"""Dates that belong to the exchange are New York's, whatever system.timezone says.

The trading date (counters, budgets, client_order_ids) is the wall-clock date of system.timezone; an option's
expiry is a New York date, and its days to expiry count from New York's date. In a zone east of UTC+9:30 where
the session does not cross midnight (Pacific/Auckland: 03:30-10:00 in November), the trading date is New York's
date plus one during the whole session: counted from it, a contract expiring today was a day past expiry.
"""

from __future__ import annotations

from datetime import datetime, timezone

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

FRIDAY_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=timezone.utc)  # 09:30 New York; Saturday 03:30 in Auckland


def _in_auckland(project: ProjectCopy) -> None:
    """The shipped bots moved to Auckland's wall clock (the session is 03:30-10:00 there in November); the
    options bot trades contracts that expire today (Friday, in New York) to three days out."""
    project.replace("config/settings.yaml", "timezone: America/Los_Angeles", "timezone: Pacific/Auckland")
    project.replace("config/bots.yaml", 'trade_start: "06:40"', 'trade_start: "03:40"')
    project.replace("config/bots.yaml", 'trade_end: "09:50"', 'trade_end: "06:50"')
    project.replace("config/bots.yaml", 'manage_until: "12:55"', 'manage_until: "09:50"', count=3)
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "03:35"', count=2)
    project.replace("config/bots.yaml", 'trade_end: "09:30"', 'trade_end: "06:30"', count=2)
    project.replace("config/bots.yaml", "dte_min: 7", "dte_min: 0")
    project.replace("config/bots.yaml", "dte_max: 45", "dte_max: 3")
    # a contract expiring today costs about a dollar and is a cent wide, 1 % of it: under the shipped 0.30 % stop it
    # is at its stop the moment it fills, and is not bought (`entries.at_stop_on_fill`)
    project.replace("config/bots.yaml", "stop_loss_pct: 0.30", "stop_loss_pct: 3.0")


def test_days_to_expiry_count_from_new_yorks_date(project: ProjectCopy) -> None:
    _in_auckland(project)
    rig = make_rig(project, ManualClock(FRIDAY_OPEN))
    assert rig.engine.trading_date(FRIDAY_OPEN).isoformat() == "2026-11-21"  # Saturday in Auckland
    rig.ticks(400)  # the window opens at 03:40 Auckland, 120 ticks in
    chosen = [e for e in rig.events("contract_chosen") if e["bot"] == "opt_core"]
    assert chosen, [e["reason"] for e in rig.events("entry_blocked") if e["bot"] == "opt_core"]
    assert {e["expiry"] for e in chosen} == {"2026-11-20"} and {e["dte"] for e in chosen} == {0}
    entries = [r for r in rig.store.orders(bot_id="opt_core") if r.purpose == "entry"]
    assert entries and all(r.trading_date.isoformat() == "2026-11-21" for r in entries)  # counted on Auckland's day
