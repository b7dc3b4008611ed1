"""An early close (13:00 New York, the day after Thanksgiving): a stock bot whose session.manage_until lies past
it must not hold its position over the close, nor flatten it by an order sent while the market is shut."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

NEW_YORK = ZoneInfo("America/New_York")
EARLY_OPEN = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)  # 09:30 New York; the market closes at 13:00
EARLY_CLOSE = datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)


def _hold_until_manage_until(project: ProjectCopy) -> None:
    """mom_AAPL exits only at manage_until (12:55 Los Angeles, 15:55 New York: past an early close)."""
    project.replace("config/bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 375")  # 06:35-12:50 at most
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 50")
    project.replace("config/bots.yaml", "take_profit_pct: 1.00", "take_profit_pct: 90")
    project.replace("config/bots.yaml", "  enabled: true\n  bot_id: opt_core", "  enabled: false\n  bot_id: opt_core")
    project.replace("config/bots.yaml", "  enabled: true\n  bot_id: crypto_core", "  enabled: false\n  bot_id: crypto_core")


def test_a_position_is_flattened_before_an_early_close(project: ProjectCopy) -> None:
    _hold_until_manage_until(project)
    clock = ManualClock(EARLY_OPEN)
    rig = make_rig(project, clock)
    rig.until(lambda r: r.clock.now() >= EARLY_CLOSE, limit=3000)
    entries = [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "entry"]
    assert entries, "the bot entered during the session"
    exits = [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "exit"]
    assert exits and all(r.created_at < EARLY_CLOSE for r in exits)  # sent while the market was open
    assert rig.store.positions() == [] and not list(rig.exchange.position_views())
    flatten = [e for e in rig.events("transition") if e["bot"] == "mom_AAPL" and e["trigger"] == "flatten"]
    [event] = flatten
    at = datetime.fromisoformat(event["ts"]).astimezone(NEW_YORK)
    assert (at.hour, at.minute) == (12, 55)  # five minutes before the early close


def test_a_manage_until_before_the_close_is_kept(project: ProjectCopy) -> None:
    """On a regular day 12:55 Los Angeles is 15:55 New York, before the close: the bot's own clock decides."""
    _hold_until_manage_until(project)
    project.replace("config/bots.yaml", 'manage_until: "12:55"', 'manage_until: "12:50"')
    clock = ManualClock(datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc))
    rig = make_rig(project, clock)
    rig.until(lambda r: r.clock.now() >= datetime(2026, 11, 23, 21, 0, tzinfo=timezone.utc), limit=5000)
    [event] = [e for e in rig.events("transition") if e["bot"] == "mom_AAPL" and e["trigger"] == "flatten"]
    at = datetime.fromisoformat(event["ts"]).astimezone(NEW_YORK)
    assert (at.hour, at.minute) == (15, 50)


def test_a_loop_slower_than_the_margin_still_flattens_before_an_early_close(project: ProjectCopy) -> None:
    """A position is flattened before the close at the tick that falls within CLOSE_MARGIN_MINUTES of it; with
    loop_interval_seconds 600 no tick may fall there (12:50, then 13:00, shut). The position was held over the
    early close, its flatten sent at 13:00 to wait for Monday. The margin now covers one interval and a minute."""
    _hold_until_manage_until(project)
    project.replace("config/settings.yaml", "loop_interval_seconds: 5", "loop_interval_seconds: 600")
    project.replace("config/settings.yaml", "api_failure_window_seconds: 60", "api_failure_window_seconds: 1800")
    project.replace(  # a lookback of two 10-minute ticks, not twelve: an entry before the early close
        "config/bots.yaml", 'mode: "placeholder_momentum_v1"\n      params: {}',
        'mode: "placeholder_momentum_v1"\n      params: {lookback_ticks: 2, min_move_pct: 0.0}',
    )
    clock = ManualClock(EARLY_OPEN)
    rig = make_rig(project, clock)
    rig.until(lambda r: r.clock.now() >= EARLY_CLOSE, limit=40)
    entries = [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "entry"]
    assert entries, "the bot entered during the session"
    exits = [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "exit"]
    assert exits and all(r.created_at < EARLY_CLOSE for r in exits)  # sent while the market was open
    assert rig.store.positions("mom_AAPL") == []
