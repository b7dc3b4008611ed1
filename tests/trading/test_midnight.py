"""A bot's day ends at its session.manage_until: whatever it holds then is closed, whatever the ticks' spacing.

The windows are wall-clock times of one date (validation refuses one that wraps past midnight), so a position
still held when the trading date changes was opened in a window that is over. A tick need not fall inside the
last minute of a day: a backtest on minute bars ticks at 23:59:00 (not past trade_end 23:59) and then at 00:00:00,
where the wall clock starts again; a run whose loop_interval_seconds is 60 can do the same. The bot then carried
its position into the next day, where a live run on 5-second ticks had flattened it at 23:59.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

LATE = datetime(2026, 11, 24, 7, 40, tzinfo=timezone.utc)  # 23:40 Monday in Los Angeles
AFTER_MIDNIGHT = datetime(2026, 11, 24, 8, 10, tzinfo=timezone.utc)  # 00:10 Tuesday there


def _crypto_holding(project: ProjectCopy) -> None:
    """crypto_core alone, ticking once a minute on the minute, its exits out of reach: only the day's end closes."""
    project.replace("config/settings.yaml", "loop_interval_seconds: 5", "loop_interval_seconds: 60")
    project.replace("config/bots.yaml", "- bot_id: mom_AAPL\n    enabled: true", "- bot_id: mom_AAPL\n    enabled: false")
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.75", "stop_loss_pct: 50")
    project.replace("config/bots.yaml", "take_profit_pct: 1.50", "take_profit_pct: 90")
    project.replace("config/bots.yaml", "time_stop_minutes: 240", "time_stop_minutes: 1439")


def test_a_position_held_into_the_next_day_is_flattened(project: ProjectCopy) -> None:
    _crypto_holding(project)
    rig = make_rig(project, ManualClock(LATE))
    rig.until(lambda r: bool(r.store.positions("crypto_core")), limit=15)  # entered before 23:55
    rig.until(lambda r: r.clock.now() >= AFTER_MIDNIGHT, limit=60)
    flattens = [e for e in rig.events("transition") if e["bot"] == "crypto_core" and e["trigger"] == "flatten"]
    assert flattens, [(e["ts"], e["trigger"]) for e in rig.events("transition") if e["bot"] == "crypto_core"]
    midnight = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    exits = [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "exit"]
    assert exits and all(midnight <= r.created_at <= midnight + timedelta(minutes=2) for r in exits)
    assert all(r.trading_date.isoformat() == "2026-11-24" for r in exits)
    assert all(p.opened_at >= midnight for p in rig.store.positions("crypto_core"))  # only the new day's, if any


def test_a_day_that_ended_does_not_begin_again_in_the_hour_the_clocks_repeat(project: ProjectCopy) -> None:
    """crypto_core trading 00:00-01:30 and managing until 01:45 in Los Angeles, on the night the clocks fall back
    (02:00 PDT is 01:00 PST, 09:00 UTC): read as it is, the wall clock went back to 01:00 after the bot's day had
    ended, so it armed again and opened a second session's positions on the same day. Its day ends once."""
    _crypto_holding(project)
    project.replace("config/bots.yaml", 'trade_end: "23:59"\n    manage_until: "23:59"',
                    'trade_end: "01:30"\n    manage_until: "01:45"')  # fmt: skip
    project.replace("config/bots.yaml", "time_stop_minutes: 1439", "time_stop_minutes: 105")  # the longest it may be
    rig = make_rig(project, ManualClock(datetime(2026, 11, 1, 6, 50, tzinfo=timezone.utc)))  # 23:50 PDT
    rig.until(lambda r: r.clock.now() >= datetime(2026, 11, 1, 10, 30, tzinfo=timezone.utc), limit=300)  # 02:30 PST
    entries = [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]
    assert entries, "the bot entered in its window"
    assert all(r.created_at < datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc) for r in entries)  # by 01:30 PDT
    arms = [e["ts"] for e in rig.events("transition") if e["bot"] == "crypto_core" and e["to"] == "armed"]
    assert all(datetime.fromisoformat(ts) < datetime(2026, 11, 1, 9, tzinfo=timezone.utc) for ts in arms), arms
    assert rig.store.positions("crypto_core") == []
